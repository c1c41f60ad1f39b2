"""A running platform (node/platform.py) for the relay drills and the tour test (issue 13 item 7).

Rules this rig keeps:
1. Everything is real: `platform_up` starts the three chains and their relayers as OS processes
   in a temporary folder on free ports; records, forgeries and governance decisions are SM2-signed
   transactions sent over JSON-RPC; progress is read from the chains.
2. A drill that needs to control relayers stops the platform's own (`stop_platform_relayers`)
   and starts `gmchain relay` processes of its own (`RelayerProc`), with their logs in the
   platform folder; `close` stops every process the rig started, relayers first.
3. `check_exactly_once` is the end-of-drill invariant: every record the business chain queued
   (its outbox) is on the regulator exactly once under its own seq (the stored copy names the same
   transaction and record id), nothing else is there, and nothing is missing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gmchain.crypto_sm import PrivateKey, load_private_key
from gmchain.node.daemon import DEV_PASSPHRASE
from gmchain.node.platform import (
    BUSINESS,
    CHAINS,
    REGULATOR,
    load_platform,
    platform_down,
    platform_up,
    stop_relayers,
)
from gmchain.node.sdk import SyncClient
from tests.cluster_helpers import free_port_block, rpc_call, wait_until
from tests.node_helpers import evidence_args, sign_tx

__all__ = ["Platform", "RelayerProc", "start_platform"]

PW = DEV_PASSPHRASE.encode()
PORTS = 64  # node/platform.py: 3 chains x 20 ports + the relayers' metrics ports


@dataclass
class RelayerProc:
    """One `gmchain relay` process started by a drill (rule 2)."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """SIGKILL: what a crash does."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Platform:
    d: Path
    doc: dict[str, Any]
    relayers: list[RelayerProc] = field(default_factory=list)
    _keys: dict[str, PrivateKey] = field(default_factory=dict)
    _info: dict[str, tuple[str, int]] = field(default_factory=dict)

    # --- addresses and keys ---

    def port(self, chain: str) -> int:
        return int(self.doc["chains"][chain]["rpc_port"])

    def url(self, chain: str) -> str:
        return f"http://127.0.0.1:{self.port(chain)}"

    def rpc(self, chain: str, method: str, params: list[Any] | None = None, t: float = 10) -> Any:
        return rpc_call(self.port(chain), method, params or [], timeout_s=t)

    def call(self, chain: str, contract: str, method: str, args: list[Any]) -> Any:
        return self.rpc(chain, "gm_call", [contract, method, args])

    def sdk(self, chain: str) -> SyncClient:
        return SyncClient(self.url(chain), timeout_s=30)

    def _key(self, name: str, path: Path) -> PrivateKey:
        if name not in self._keys:
            self._keys[name] = load_private_key(path, PW)
        return self._keys[name]

    def admin_key(self, chain: str) -> PrivateKey:
        return self._key(f"admin:{chain}", self.d / chain / "client.key")

    def relayer_key(self, firm: str) -> PrivateKey:
        return self._key(f"relayer:{firm}", self.d / "relayers" / f"{firm}.key")

    def validator_keys(self, chain: str) -> list[PrivateKey]:
        nodes = sorted(p for p in (self.d / chain).glob("node*/node.key"))
        return [self._key(f"node:{p}", p) for p in nodes]

    def height(self, chain: str) -> int:
        return int(self.rpc(chain, "gm_status")["height"])

    def receipt(self, chain: str, tx_id: str, timeout_s: float = 60) -> dict[str, Any]:
        """The committed receipt of `tx_id` (whatever its status); AssertionError on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            r = self.rpc(chain, "gm_waitForReceipt", [tx_id, 10000], t=20)
            if r is not None and not r.get("pending"):
                return dict(r)
        raise AssertionError(f"no receipt for {tx_id} on {chain} within {timeout_s} s")

    def _chain_info(self, chain: str) -> tuple[str, int]:
        if chain not in self._info:
            info = self.rpc(chain, "gm_nodeInfo")
            self._info[chain] = (str(info["chainId"]), max(1, int(info["replayWindow"]) // 2))
        return self._info[chain]

    # --- records ---

    def submit_records(
        self, firm: str, ids: list[str], *, wait: bool = True, flow: str | None = None
    ) -> list[str]:
        """One `evidence.submit` per id by the firm's admin (each its own flow unless `flow`:
        then linked in order); the tx ids. With `wait`, returns once all committed OK."""
        chain_id, delta = self._chain_info(firm)
        head = self.height(firm)
        key = self.admin_key(firm)
        out = []
        prev = None
        for rid in ids:
            args = evidence_args(rid, flow, prev=prev if flow else None)
            tx = sign_tx(key, expiry=head + delta, chain_id=chain_id, args=args)
            out.append(self.rpc(firm, "gm_sendRawTransaction", ["0x" + tx.encode().hex()]))
            prev = rid
        if wait:
            for tx_id in out:
                r = self.receipt(firm, tx_id)
                assert r["statusName"] == "OK", r
        return out

    def queued(self, firm: str) -> int:
        return int(self.call(firm, "evidence", "outbox_count", []))

    def outbox(self, firm: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = self.call(firm, "evidence", "outbox", [len(out) + 1, 1000])
            if not page:
                return out
            out += page

    def arrivals(self, firm: str, missing_limit: int = 100) -> dict[str, Any]:
        got: dict[str, Any] = self.call(REGULATOR, "xclient", "arrivals", [firm, missing_limit])
        return got

    def wait_delivered(self, firm: str, timeout_s: float = 90) -> dict[str, Any]:
        """Until the regulator holds every record `firm` queued; the arrivals then."""

        def done() -> dict[str, Any] | None:
            a = self.arrivals(firm)
            return a if int(a["count"]) == self.queued(firm) and not a["missing"] else None

        got: dict[str, Any] = wait_until(done, timeout_s, f"every record of {firm} delivered", 0.5)
        return got

    def check_exactly_once(self, firm: str) -> int:
        """Rule 3; the number of records checked."""
        queued = self.outbox(firm)
        a = self.arrivals(firm)
        assert int(a["count"]) == len(queued), (a, len(queued))
        assert int(a["contiguous"]) == len(queued) and int(a["maxSeq"]) == len(queued), a
        assert a["missing"] == [], a
        seen_tx = set()
        for item in queued:
            seq = int(item["seq"])
            copy = self.call(REGULATOR, "xclient", "packet", [firm, seq])
            assert copy is not None, f"{firm} seq {seq} is not on the regulator"
            assert copy["txId"] == item["txId"] and copy["recordId"] == item["recordId"], (
                copy,
                item,
            )
            assert copy["txId"] not in seen_tx, f"tx {copy['txId']} stored twice"
            seen_tx.add(copy["txId"])
        assert self.call(REGULATOR, "xclient", "packet", [firm, len(queued) + 1]) is None
        return len(queued)

    # --- relayers (rule 2) ---

    def start_relayer(self, firm: str, name: str, *extra: str) -> RelayerProc:
        log = self.d / "relayers" / f"{name}.log"
        env = dict(os.environ)
        env["GMCHAIN_PASSPHRASE"] = DEV_PASSPHRASE
        cmd = [
            sys.executable,
            "-m",
            "gmchain.node.cli",
            "relay",
            "--business",
            self.url(firm),
            "--regulator",
            self.url(REGULATOR),
            "--key",
            str(self.d / "relayers" / f"{firm}.key"),
            *extra,
        ]
        with open(log, "ab") as f:
            proc = subprocess.Popen(
                cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        r = RelayerProc(name=name, proc=proc, log=log)
        self.relayers.append(r)
        return r

    def close(self) -> None:
        for r in self.relayers:
            r.stop()
        platform_down(self.d)


def start_platform(d: Path, *, validators: int = 1) -> Platform:
    """Rule 1: `gmchain platform up` in `d` on a free block of ports."""
    base = free_port_block(PORTS)
    t0 = time.monotonic()
    try:
        platform_up(d, validators=validators, base_port=base, wait_s=60)
    except BaseException:
        platform_down(d) if (d / "platform.json").exists() else None
        raise
    print(f"platform up in {time.monotonic() - t0:.1f} s (base port {base})")
    return Platform(d=d, doc=load_platform(d))


def stop_platform_relayers(p: Platform) -> None:
    stop_relayers(p.d, p.doc)


assert set(CHAINS) == {REGULATOR, *BUSINESS}

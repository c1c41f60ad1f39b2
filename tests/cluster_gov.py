"""Governance transactions for real-process drills (tests/test_drill_governance.py; issue 12).

Rules this module keeps:
1. Every governance transaction is built and SM2-signed by the SDK (`gmchain.node.sdk`) with the
   real key of an org's admin account, and submitted with `gm_sendRawTransaction` to a running
   node; nothing is written to a node's state any other way.
2. A transaction the node acknowledged (it returned the id) is recorded in `acked`, so the
   drill's end-of-run invariant (every acknowledged tx in exactly one block) covers governance
   transactions too.
3. A proposal is decided the way a committee decides it (contracts/governance.py G1-G5): one org
   proposes, then just enough committee orgs vote yes (all their votes submitted together); the
   helper waits for each receipt and fails with the receipt's own error if the contract refused.
4. `cli` runs the `gmchain` command line as an operator would (a separate process).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gmchain.contracts.governance import propose_args, vote_args
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.codec import Value
from gmchain.ledger.types import SignedTx
from gmchain.node.sdk import SyncClient
from tests.cluster_helpers import Cluster, rpc_call

__all__ = ["Governance", "cli"]

GOV = "governance"
EXPIRY_BLOCKS = 1000  # a drill decides within a few blocks


def cli(*args: str, timeout_s: float = 60.0) -> str:
    """Rule 4: `gmchain ARGS...`; its stdout, AssertionError with stderr if it failed."""
    done = subprocess.run(
        [sys.executable, "-m", "gmchain.node.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, f"gmchain {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return done.stdout


@dataclass
class Governance:
    """Submit governance transactions to the first answering node of `via` (rules 1-3)."""

    cluster: Cluster
    via: list[str]
    committee: list[str]  # committee orgs, in the order they vote
    acked: dict[str, str] = field(default_factory=dict)  # tx id -> node that acknowledged it
    decided: list[tuple[int, str, str]] = field(default_factory=list)  # (id, kind, height)
    _keys: dict[str, PrivateKey] = field(default_factory=dict)

    def key(self, org: str) -> PrivateKey:
        if org not in self._keys:
            self._keys[org] = self.cluster.admin_key(org)
        return self._keys[org]

    def _node(self) -> str:
        for name in self.via:
            if self.cluster.status(name) is not None:
                return name
        raise AssertionError(f"none of {self.via} answers")

    def build(self, key: PrivateKey, contract: str, method: str, args: Sequence[Value]) -> SignedTx:
        """Rule 1: a transaction signed by `key`, expiring half a replay window from the head."""
        port = self.cluster.rpc_port(self._node())
        sdk = SyncClient(f"http://127.0.0.1:{port}")
        info = sdk.node_info()
        head = int(sdk.status()["height"])
        return sdk.build_tx(
            key,
            contract,
            method,
            args,
            chain_id=info["chainId"],
            expiry=head + max(1, int(info["replayWindow"]) // 2),
        )

    def submit(self, txs: Sequence[SignedTx]) -> tuple[str, list[str]]:
        """Rule 2: submit each; (the node, the tx ids it acknowledged). RuntimeError if refused."""
        name = self._node()
        port = self.cluster.rpc_port(name)
        ids = []
        for tx in txs:
            tx_id = rpc_call(port, "gm_sendRawTransaction", ["0x" + tx.encode().hex()])
            assert tx_id == "0x" + tx.tx_id.hex(), "node computed a different tx id"
            self.acked[tx_id] = name
            ids.append(tx_id)
        return name, ids

    def wait_receipts(self, tx_ids: Sequence[str], timeout_s: float = 60.0) -> list[dict[str, Any]]:
        """Each tx's receipt once committed (any node of `via` may answer)."""
        out = []
        deadline = time.monotonic() + timeout_s
        for tx_id in tx_ids:
            while True:
                left = deadline - time.monotonic()
                assert left > 0, f"no receipt for {tx_id} within {timeout_s}s"
                port = self.cluster.rpc_port(self._node())
                chunk = int(min(left, 5.0) * 1000)
                try:
                    r = rpc_call(
                        port, "gm_waitForReceipt", [tx_id, chunk], timeout_s=chunk / 1e3 + 5
                    )
                except (OSError, RuntimeError):
                    time.sleep(0.2)  # the node may be busy switching epochs
                    continue
                if r is not None and not r.get("pending", False):
                    out.append(r)
                    break
        return out

    def send(self, org: str, method: str, args: Sequence[Value]) -> dict[str, Any]:
        """One governance call by `org`'s admin; its receipt, which must be OK."""
        _, ids = self.submit([self.build(self.key(org), GOV, method, args)])
        (r,) = self.wait_receipts(ids)
        assert r["statusName"] == "OK", f"governance.{method} by {org} failed: {r['error']}"
        return r

    def propose(self, org: str, kind: str, values: Sequence[Value]) -> int:
        head = int(rpc_call(self.cluster.rpc_port(self._node()), "gm_status")["height"])
        r = self.send(org, "propose", propose_args(kind, values, head + EXPIRY_BLOCKS))
        pid = r["result"]
        assert isinstance(pid, int), f"propose returned {pid!r}"
        return pid

    def vote(self, pid: int, orgs: Sequence[str], yes: bool = True) -> list[dict[str, Any]]:
        """Rule 3: the votes of `orgs`, submitted together; their receipts (each must be OK)."""
        txs = [self.build(self.key(org), GOV, "vote", vote_args(pid, yes)) for org in orgs]
        _, ids = self.submit(txs)
        receipts = self.wait_receipts(ids)
        for org, r in zip(orgs, receipts, strict=True):
            assert r["statusName"] == "OK", f"vote of {org} on {pid} failed: {r['error']}"
        return receipts

    def decide(
        self, kind: str, values: Sequence[Value], *, proposer: str | None = None
    ) -> dict[str, Any]:
        """Rule 3: propose and approve `kind`; the receipt of the vote that executed it, which
        must say "executed" (an ExecutionFailed proposal is a drill failure). Returns once every
        node of `via` has committed it."""
        proposer = proposer or self.committee[0]
        pid = self.propose(proposer, kind, values)
        # G4 (default thresholds): more than 2/3 of the committee weight, one seat per org.
        need = len(self.committee) * 2 // 3 + 1
        receipts = self.vote(pid, self.committee[:need])
        statuses = [r["result"] for r in receipts]
        assert "executed" in statuses, f"{kind} proposal {pid}: votes gave {statuses}"
        final = receipts[statuses.index("executed")]
        self.decided.append((pid, kind, str(final.get("blockNumber"))))
        # Every node of `via` has committed the decision before the caller looks at it.
        self.cluster.wait_height(int(final["blockNumber"]), self.via, timeout_s=60)
        return final

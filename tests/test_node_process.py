"""Issue 3's acceptance on a real `gmchain dev` process: start-up, RPC fuzz, kill -9 under load.

Rules under test (DESIGN.md "Reliability strategy": bad input gets a clear error and changes
nothing; real-process drills; "every acknowledged transaction in exactly one block"; REFERENCES.md
restart bugs: store and state heights disagreeing after a kill):
1. `gmchain dev` with a fresh data dir answers gm_status; the shared START_DEADLINE_S
   (tests/node_helpers.py, load-tolerant) is only the failure deadline.
2. >= 10,000 malformed requests and raw transactions (tests/rpc_fuzz.py, plus well-formed but
   invalid signed transactions, singly and in batches): every reply is a JSON-RPC error, the
   process lives, and head height, head hash and the total tx count are unchanged.
3. SIGKILL at a seeded random moment while a submitter waits for receipts, restart on the same
   data dir: every tx whose receipt was returned has the same receipt (status, height, index)
   and the block at that height the same hash; the node then commits new txs. 3 cycles in CI,
   more under `@pytest.mark.soak`.
"""

from __future__ import annotations

import asyncio
import http.client
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.types import SignedTx
from tests.node_helpers import (
    RESTART_DEADLINE_S,
    START_DEADLINE_S,
    NodeProcess,
    RpcFailure,
    RpcSession,
    evidence_args,
    sign_tx,
)
from tests.rpc_fuzz import fuzz_rpc_async


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    proc = NodeProcess(data_dir=tmp_path / "dev", home=tmp_path / "home")
    try:
        yield proc
    finally:
        proc.stop()


def send_and_wait(rpc: RpcSession, tx: SignedTx, timeout_ms: int = 30_000) -> dict[str, Any]:
    tx_hex = "0x" + tx.tx_id.hex()
    assert rpc.call("gm_sendRawTransaction", "0x" + tx.encode().hex()) == tx_hex
    receipt = rpc.call("gm_waitForReceipt", tx_hex, timeout_ms)
    assert receipt is not None and not receipt.get("pending", False), receipt
    return dict(receipt)


def chain_fingerprint(rpc: RpcSession) -> tuple[int, str, int, int]:
    st = rpc.call("gm_status")
    return (
        st["height"],
        st["head"],
        st["committedTxs"],
        rpc.call("gm_getTotalTransactionCount")["transactionCount"],
    )


def settle(rpc: RpcSession) -> None:
    """Wait until the head stops moving (a tx's block is followed by empty certifying blocks)."""
    last, stable = -1, 0
    for _ in range(100):
        height = rpc.call("gm_status")["height"]
        stable = stable + 1 if height == last else 0
        if stable >= 3:
            return
        last = height
        time.sleep(0.1)
    raise AssertionError("the head kept moving with no transactions pending")


# --- 1. start-up ---------------------------------------------------------------------------------


def test_dev_node_answers_status_within_the_deadline(node: NodeProcess) -> None:
    node.start()
    status = node.wait_ready(START_DEADLINE_S)  # the deadline is the failure condition only
    assert status["chainId"] == "gmchain-dev" and status["role"] == "validator"
    assert status["height"] == 0 and status["pendingTxs"] == 0
    for name in ("client.key", "node.key", "genesis.json", "config.toml"):
        assert (node.data_dir / name).is_file(), name


# --- 2. fuzz ------------------------------------------------------------------------------------


def _invalid_signed_txs(
    key: PrivateKey, chain_id: str, head: int, window: int, committed: SignedTx, n: int
) -> list[tuple[SignedTx, int]]:
    """Well-formed signed transactions that must each be refused, with the expected code."""
    rng = random.Random(7)
    outsider = PrivateKey.generate()
    out: list[tuple[SignedTx, int]] = []
    for i in range(n):
        kind = i % 6
        if kind == 0:
            out.append(
                (sign_tx(key, chain_id=chain_id, expiry=head + 5, bad_signature=True), -31004)
            )
        elif kind == 1:
            out.append(
                (sign_tx(key, chain_id=chain_id, expiry=max(1, head - rng.randrange(3))), -31005)
            )
        elif kind == 2:
            out.append((sign_tx(key, chain_id=chain_id, expiry=head + window + 1 + i), -31006))
        elif kind == 3:
            out.append((sign_tx(key, chain_id="not-" + chain_id, expiry=head + 5), -31003))
        elif kind == 4:
            out.append((sign_tx(outsider, chain_id=chain_id, expiry=head + 5), -31010))
        else:
            out.append((committed, -31007))
    return out  # fmt: skip


def test_fuzz_a_running_node(node: NodeProcess) -> None:
    node.start()
    node.wait_ready(START_DEADLINE_S)
    key = node.client_key()
    rpc = RpcSession(node.port)
    try:
        info = rpc.call("gm_nodeInfo")
        chain_id, window = info["chainId"], info["replayWindow"]
        committed = []
        for i in range(3):  # a non-empty chain to keep unchanged
            tx = sign_tx(key, chain_id=chain_id, expiry=rpc.call("gm_blockNumber") + 10,
                         args=evidence_args(f"fz-{i}"))  # fmt: skip
            assert send_and_wait(rpc, tx)["statusName"] == "OK"
            committed.append(tx)
        settle(rpc)
        before = chain_fingerprint(rpc)
        assert before[0] >= 1 and before[2] == before[3] == 3

        # (a) the RPC engineer's fuzzer: 10,000 malformed requests, 8 keep-alive workers
        unsent = sign_tx(key, chain_id=chain_id, expiry=before[0] + 10)
        report = asyncio.run(
            fuzz_rpc_async(f"http://127.0.0.1:{node.port}/", 10_000, 20261126,
                           valid_raw_tx=unsent.encode())
        )  # fmt: skip
        assert report.sent == 10_000 and not report.violations
        assert report.by_kind["mutated_tx"] > 500 and report.by_kind["garbage_tx"] > 500
        assert report.height_before == report.height_after == before[0]
        assert node.alive(), node.log()

        # (b) well-formed, correctly encoded, invalid transactions: singly and in batches
        cases = _invalid_signed_txs(key, chain_id, before[0], window, committed[0], 600)
        for tx, code in cases[:200]:
            with pytest.raises(RpcFailure) as exc:
                rpc.call("gm_sendRawTransaction", "0x" + tx.encode().hex())
            assert exc.value.code == code, (exc.value.error, code)
        for start in range(200, 600, 50):
            chunk = cases[start : start + 50]
            batch = [
                {"jsonrpc": "2.0", "id": start + j, "method": "gm_sendRawTransaction",
                 "params": ["0x" + tx.encode().hex()]}
                for j, (tx, _) in enumerate(chunk)
            ]  # fmt: skip
            replies = rpc.post(batch)
            assert isinstance(replies, list) and len(replies) == len(chunk)
            by_id = {r["id"]: r for r in replies}
            for j, (_, code) in enumerate(chunk):
                reply = by_id[start + j]
                assert "result" not in reply and reply["error"]["code"] == code, reply

        assert node.alive(), node.log()
        time.sleep(0.3)  # a block that something slipped into would have been cut by now
        assert chain_fingerprint(rpc) == before
        assert rpc.call("gm_status")["pendingTxs"] == 0
        # and the node still works
        tx = sign_tx(key, chain_id=chain_id, expiry=before[0] + 10, args=evidence_args("fz-after"))
        assert send_and_wait(rpc, tx)["statusName"] == "OK"
    finally:
        rpc.close()


# --- 3. kill -9 under load ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Seen:
    status: int
    height: int
    index: int
    block_hash: str


class _Submitter:
    """Threads that submit evidence txs and wait for their receipts until the node dies."""

    def __init__(self, node: NodeProcess, key: PrivateKey, chain_id: str, tag: str) -> None:
        self.node, self.key, self.chain_id, self.tag = node, key, chain_id, tag
        self.receipts: dict[str, _Seen] = {}
        self.sent = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(3)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)
            assert not t.is_alive()

    def _run(self, worker: int) -> None:
        rpc = RpcSession(self.node.port, timeout_s=15)
        n = 0
        try:
            while not self._stop.is_set():
                n += 1
                head = rpc.call("gm_blockNumber")
                tx = sign_tx(self.key, chain_id=self.chain_id, expiry=head + 50,
                             args=evidence_args(f"k-{self.tag}-{worker}-{n}"))  # fmt: skip
                tx_hex = "0x" + tx.tx_id.hex()
                rpc.call("gm_sendRawTransaction", "0x" + tx.encode().hex())
                with self._lock:
                    self.sent += 1
                r = rpc.call("gm_waitForReceipt", tx_hex, 5000)
                if r is None or r.get("pending", False):
                    continue
                seen = _Seen(r["status"], r["blockNumber"], r["transactionIndex"], r["blockHash"])
                with self._lock:
                    self.receipts[tx_hex] = seen
                time.sleep(0.005)
        except (OSError, http.client.HTTPException, ValueError):
            pass  # the node was killed under us
        except RpcFailure as exc:  # a valid tx refused: that is a finding, not the kill
            with self._lock:
                self.errors.append(f"worker {worker}: {exc}")
        finally:
            rpc.close()


def _kill_restart_cycles(node: NodeProcess, cycles: int, seed: int) -> None:
    rng = random.Random(seed)
    node.start()
    node.wait_ready(START_DEADLINE_S)
    key = node.client_key()
    chain_id = "gmchain-dev"
    all_seen: dict[str, _Seen] = {}
    for cycle in range(cycles):
        sub = _Submitter(node, key, chain_id, f"{seed}-{cycle}")
        sub.start()
        time.sleep(rng.uniform(0.3, 2.0))
        node.kill9()
        sub.stop()
        assert not sub.errors, sub.errors
        all_seen.update(sub.receipts)
        print(f"cycle {cycle}: {sub.sent} sent, {len(sub.receipts)} receipts before the kill")
        node.start()
        node.wait_ready(RESTART_DEADLINE_S)
        rpc = RpcSession(node.port)
        try:
            lost = []
            for tx_hex, seen in all_seen.items():
                r = rpc.call("gm_getTransactionReceipt", tx_hex)
                now = (
                    None
                    if r is None
                    else _Seen(r["status"], r["blockNumber"], r["transactionIndex"], r["blockHash"])
                )
                if now != seen:
                    lost.append((tx_hex, seen, now))
                    continue
                block = rpc.call("gm_getBlockByNumber", seen.height)
                assert block is not None and block["hash"] == seen.block_hash, (tx_hex, block)
            assert not lost, f"cycle {cycle}: {len(lost)} acknowledged txs changed: {lost[:3]}"
            # the restarted node commits new transactions
            head = rpc.call("gm_blockNumber")
            tx = sign_tx(key, chain_id=chain_id, expiry=head + 20,
                         args=evidence_args(f"after-{seed}-{cycle}"))  # fmt: skip
            r = send_and_wait(rpc, tx)
            assert r["statusName"] == "OK" and r["blockNumber"] > head - 1
        finally:
            rpc.close()
    assert len(all_seen) >= cycles, f"too few receipts under load to mean anything: {all_seen}"


def test_kill9_under_load_keeps_every_acknowledged_tx(node: NodeProcess) -> None:
    _kill_restart_cycles(node, cycles=3, seed=3)


@pytest.mark.soak
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_kill9_under_load_soak(node: NodeProcess, seed: int) -> None:
    _kill_restart_cycles(node, cycles=10, seed=seed)

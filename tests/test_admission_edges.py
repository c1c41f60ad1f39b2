"""node/admission.py at its edges (found by review): nothing left to verify with worker processes,
a failing pool log, and a node stopping with submissions queued or being admitted. Each caller
must get its own, clear outcome; nothing unacknowledged may stay in the pool."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import gmchain.node.admission as admission_module
from gmchain.ledger.store import Store
from gmchain.ledger.types import Block
from gmchain.node.api import ApiError, ErrorCode
from gmchain.node.config import NodeConfig
from gmchain.node.poolwal import PoolWal
from gmchain.node.service import NodeService
from tests.node_helpers import TestNet, evidence_args, make_net, sign_tx


async def _build(tmp: Path, *, procs: int = 0) -> tuple[NodeService, TestNet, Store, PoolWal]:
    net = make_net(2, replay_window=50)
    store = Store.open(tmp / "db", chain_id=net.genesis.chain_id)
    cfg = NodeConfig(
        data_dir=str(tmp / "db"), genesis_file="-", key_file="-", verify_processes=procs
    )
    wal = PoolWal(tmp / "wal")
    svc = NodeService(config=cfg, genesis=net.genesis, key=net.node_key, store=store, wal=wal)
    await svc.start()
    return svc, net, store, wal


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[NodeService, TestNet, PoolWal]]:
    svc, net, store, wal = await _build(tmp_path)
    try:
        yield svc, net, wal
    finally:
        await svc.stop()
        await wal.close()
        store.close()


async def test_nothing_to_verify_with_worker_processes(tmp_path: Path) -> None:
    svc, net, store, wal = await _build(tmp_path, procs=1)
    try:
        h = svc.height()
        tx = sign_tx(net.accounts[0], expiry=h + 20, args=evidence_args("edge-1"))
        await svc.submit_raw_tx(tx.encode())
        assert await svc.wait_tx(tx.tx_id, 10) is not None
        # Resubmitting a committed tx: its signature is known good, so nothing goes to the
        # workers — the caller must get DUPLICATE, not an internal error.
        with pytest.raises(ApiError) as info:
            await svc.submit_raw_tx(tx.encode())
        assert info.value.code is ErrorCode.DUPLICATE
        # A tx already verified in a proposal, then gossiped: admitted.
        fresh = sign_tx(net.accounts[1], expiry=h + 20, args=evidence_args("edge-2"))
        svc.rules.verified.mark((fresh.tx_id,))
        assert await svc.admit_many([(fresh, fresh.encode())], gossip=False) == [None]
    finally:
        await svc.stop()
        await wal.close()
        store.close()


async def test_a_failing_pool_log_fails_only_the_transactions_it_held(
    node: tuple[NodeService, TestNet, PoolWal],
) -> None:
    svc, net, wal = node
    real_write = wal._write
    calls = []

    def failing_once(batch: object) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk full")
        real_write(batch)  # type: ignore[arg-type]

    wal._write = failing_once  # type: ignore[method-assign]
    h = svc.height()
    good = [
        sign_tx(net.accounts[k % 2], expiry=h + 30, args=evidence_args(f"w{k}")) for k in range(3)
    ]
    stranger = sign_tx(net.outsider, expiry=h + 30, args=evidence_args("w-out"))
    got = await asyncio.gather(
        *(svc.submit_raw_tx(t.encode()) for t in [*good, stranger]), return_exceptions=True
    )
    codes = [r.code if isinstance(r, ApiError) else r for r in got]
    assert codes == [ErrorCode.STORAGE_UNAVAILABLE] * 3 + [ErrorCode.UNKNOWN_SENDER]
    assert len(svc.mempool) == 0 and len(wal) == 0  # not acknowledged: not kept either
    again = await asyncio.gather(*(svc.submit_raw_tx(t.encode()) for t in good))
    assert again == [t.tx_id for t in good]  # the disk is back: the retry is admitted


async def test_stopping_answers_every_queued_submission_and_refuses_new_ones(
    tmp_path: Path,
) -> None:
    svc, net, store, wal = await _build(tmp_path)
    try:
        h = svc.height()
        txs = [
            sign_tx(net.accounts[k % 2], expiry=h + 20, args=evidence_args(f"s{k}"))
            for k in range(20)
        ]
        tasks = [asyncio.create_task(svc.submit_raw_tx(t.encode())) for t in txs]
        await asyncio.sleep(0)  # queued; the batch may be starting
        await svc.stop()
        done, pending = await asyncio.wait(tasks, timeout=5)
        assert not pending
        for t in done:
            exc = t.exception()
            assert exc is None or (isinstance(exc, ApiError) and exc.code is ErrorCode.NOT_READY)
        with pytest.raises(ApiError) as info:
            await svc.submit_raw_tx(txs[0].encode())
        assert info.value.code is ErrorCode.NOT_READY
    finally:
        await wal.close()
        store.close()


async def test_admission_waits_while_a_block_executes_but_not_longer_than_its_bound(
    node: tuple[NodeService, TestNet, PoolWal], monkeypatch: pytest.MonkeyPatch
) -> None:
    """node/admission.py rule 5: while the consensus thread validates a block (here a real
    `validate_block` call run on it, held inside), a batch waits before its checks, then runs
    anyway after the bound (YIELD_MAX_S, here 1 s); a step that executes no block (here a
    `call` that only blocks it) holds nothing (regression: the whole step held admission)."""
    svc, net, _ = node
    h = svc.height()
    tx = sign_tx(net.accounts[0], expiry=h + 20, args=evidence_args("yield-1"))
    loop = asyncio.get_running_loop()
    entered, release = threading.Event(), threading.Event()

    def hold() -> bool:  # holds the consensus thread until released
        entered.set()
        return release.wait(10)

    svc.driver.call(hold)
    assert await asyncio.to_thread(entered.wait, 10)
    try:
        assert not svc.admission._consensus_busy(), "a step that executes no block held admission"
    finally:
        release.set()
    entered.clear()
    release.clear()
    # (a long bound, so a loaded machine's late wake-up cannot end the wait before we look)
    monkeypatch.setattr(admission_module, "YIELD_MAX_S", 1.0)
    monkeypatch.setattr(svc.chain, "_validate", lambda block, parent, now_ms: hold())
    head = svc.chain.head
    svc.driver.call(lambda: svc.chain.validate_block(Block(header=head, txs=()), head, now_ms=0))
    assert await asyncio.to_thread(entered.wait, 10)
    try:
        assert svc.chain.executing
        t0 = loop.time()
        task = asyncio.create_task(svc.admit_many([(tx, tx.encode())], gossip=False))
        await asyncio.sleep(0.1)
        assert tx.tx_id not in svc.mempool, "admitted while the consensus thread was executing"
        assert await task == [None]
        assert loop.time() - t0 >= 1.0
        assert tx.tx_id in svc.mempool
    finally:
        release.set()

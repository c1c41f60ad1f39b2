"""node/verifypool.py: SM2 verification in worker processes gives exactly the in-process verdicts,
survives a killed worker (rule 3) even with its requests in flight, runs no helper thread in the
node (rule 5), and admission through it refuses a bad signature."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import uvloop

from gmchain.chain.txrules import KeyCache
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.store import Store
from gmchain.node.api import ErrorCode
from gmchain.node.config import NodeConfig
from gmchain.node.service import NodeService
from gmchain.node.verifypool import VerifyProcesses, verify_triples
from tests.node_helpers import evidence_args, make_net, sign_tx


def _triples() -> tuple[list[tuple[bytes, bytes, bytes]], list[bool]]:
    a, b = PrivateKey.generate(), PrivateKey.generate()
    msgs = [os.urandom(32) for _ in range(6)]
    good = [(a.public_key.to_bytes(), m, a.sign(m)) for m in msgs[:3]]
    wrong_key = (b.public_key.to_bytes(), msgs[3], a.sign(msgs[3]))
    tampered = (a.public_key.to_bytes(), msgs[4], bytes(64))
    not_a_point = (b"\x04" + bytes(64), msgs[5], a.sign(msgs[5]))
    items = [*good, wrong_key, tampered, not_a_point]
    return items, [True, True, True, False, False, False]


async def test_worker_verdicts_match_in_process_and_survive_a_killed_worker() -> None:
    items, expected = _triples()
    assert verify_triples(items) == expected
    fallback = ThreadPoolExecutor(max_workers=1)
    pool = VerifyProcesses(1, fallback, KeyCache())
    try:
        await pool.start()
        assert pool.active and len(pool.pids()) == 1
        assert await pool.verify(items) == expected
        for pid in pool.pids():  # rule 3: a worker dies
            os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.2)
        assert await pool.verify(items) == expected  # verified in-process instead
        assert not pool.active
    finally:
        pool.close()
        fallback.shutdown()


async def test_the_loop_talks_to_the_workers_without_helper_threads() -> None:
    """Rule 5 (regression: a ProcessPoolExecutor ran a feeder and a result thread in the node,
    each of which had to win the GIL from the consensus thread for every batch)."""
    items, expected = _triples()
    fallback = ThreadPoolExecutor(max_workers=1)
    before = {t.ident for t in threading.enumerate()}
    pool = VerifyProcesses(2, fallback, KeyCache())
    try:
        await pool.start()
        assert pool.active
        pids = pool.pids()
        assert await pool.verify(items * 4) == expected * 4
        assert {t.ident for t in threading.enumerate()} <= before
    finally:
        pool.close()
        fallback.shutdown()
    assert len(pids) == 2 and not any(os.path.exists(f"/proc/{p}") for p in pids)  # reaped


async def test_admission_with_verify_processes(tmp_path: Path) -> None:
    net = make_net(2, replay_window=50)
    store = Store.open(tmp_path / "db", chain_id=net.genesis.chain_id)
    cfg = NodeConfig(
        data_dir=str(tmp_path / "db"), genesis_file="-", key_file="-", verify_processes=1
    )
    service = NodeService(config=cfg, genesis=net.genesis, key=net.node_key, store=store)
    await service.start()
    try:
        h = service.height()
        good = sign_tx(net.accounts[0], expiry=h + 10, args=evidence_args("vp-1"))
        forged = sign_tx(net.accounts[1], expiry=h + 10, bad_signature=True)
        stranger = sign_tx(net.outsider, expiry=h + 10, args=evidence_args("vp-2"))
        out = await service.admit_many([(t, t.encode()) for t in (forged, good, stranger)])
        assert [None if r is None else r.code for r in out] == [
            ErrorCode.BAD_SIGNATURE,
            None,
            ErrorCode.UNKNOWN_SENDER,
        ]
        assert await service.wait_tx(good.tx_id, 10) is not None
    finally:
        await service.stop()
        store.close()


async def test_a_worker_outlives_a_ctrl_c_or_a_group_sigterm() -> None:
    """A Ctrl-C or a service manager's SIGTERM reaches the node's whole process group; the
    node's stop ends the workers, so they ignore both (otherwise each would die and the node
    log a dead worker and fall back in-process while it is still stopping)."""
    items, expected = _triples()
    fallback = ThreadPoolExecutor(max_workers=1)
    pool = VerifyProcesses(1, fallback, KeyCache())
    try:
        await pool.start()
        os.kill(pool.pids()[0], signal.SIGINT)
        os.kill(pool.pids()[0], signal.SIGTERM)
        await asyncio.sleep(0.2)
        assert await pool.verify(items) == expected
        assert pool.active
    finally:
        pool.close()
        fallback.shutdown()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _lose_a_worker_with_requests_in_flight() -> None:
    items, expected = _triples()
    fallback = ThreadPoolExecutor(max_workers=1)
    warm = VerifyProcesses(1, fallback, KeyCache())  # (multiprocessing's own helpers start once)
    await warm.start()
    warm.close()
    await asyncio.sleep(0.1)
    before = _open_fds()
    pool = VerifyProcesses(2, fallback, KeyCache())
    try:
        await pool.start()
        assert pool.active
        first = asyncio.ensure_future(pool.verify(items * 150))  # the workers are busy a while
        second = asyncio.ensure_future(pool.verify(items))
        await asyncio.sleep(0)  # both requests are written to the workers' sockets
        os.kill(pool.pids()[1], signal.SIGKILL)
        assert await first == expected * 150
        assert await second == expected
        assert not pool.active
        assert await pool.verify(items) == expected
    finally:
        pool.close()
        fallback.shutdown()
    await asyncio.sleep(0.1)
    assert _open_fds() == before, "a socket of the pool outlived it"


@pytest.mark.parametrize(
    "loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)
def test_requests_in_flight_when_a_worker_dies_are_verified_in_process(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """Rule 3 on the node's loop (uvloop, node/daemon.py) and the default one: a pool that
    lost a worker with requests in flight answers them all, verifies in-process from then on,
    and its sockets are closed once (rule 5: an event loop owns a socket's descriptor)."""
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_lose_a_worker_with_requests_in_flight())

"""node/verifypool.py: SM2 verification in worker processes gives exactly the in-process verdicts,
survives a killed worker (rule 3), and admission through it refuses a bad signature."""

from __future__ import annotations

import asyncio
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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
        assert await pool.verify(items) == expected
        assert pool._pool is not None
        for pid in list(pool._pool._processes):  # rule 3: a worker dies
            os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.2)
        assert await pool.verify(items) == expected  # verified in-process instead
        assert pool._pool is None
    finally:
        pool.close()
        fallback.shutdown()


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

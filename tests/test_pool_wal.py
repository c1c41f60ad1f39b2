"""An acknowledged transaction survives a crash before its block: the pool's write-ahead log."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gmchain.crypto_sm import PrivateKey, load_private_key, sm3_hash
from gmchain.ledger.store import Store
from gmchain.ledger.types import SignedTx, TxBody
from gmchain.node.config import NodeConfig, load_config, load_genesis
from gmchain.node.daemon import DEV_PASSPHRASE, init_dev
from gmchain.node.poolwal import PoolWal
from gmchain.node.service import NodeService


def _service(cfg: NodeConfig, key: PrivateKey) -> NodeService:
    genesis = load_genesis(cfg.genesis_file)
    store = Store.open(cfg.data_dir, chain_id=genesis.chain_id)
    wal = PoolWal(Path(cfg.data_dir + ".pool"))
    return NodeService(config=cfg, genesis=genesis, key=key, store=store, wal=wal)


def _dev_chain(tmp_path: Path) -> tuple[NodeConfig, PrivateKey, PrivateKey]:
    """A fresh one-validator dev chain: its config, node key and client key."""
    cfg = load_config(init_dev(tmp_path / "dev", rpc_port=0))
    node_key = load_private_key(cfg.key_file, DEV_PASSPHRASE.encode())
    client = load_private_key(tmp_path / "dev" / "client.key", DEV_PASSPHRASE.encode())
    return cfg, node_key, client


def _tx(svc: NodeService, client: PrivateKey, i: int) -> SignedTx:
    body = TxBody(
        chain_id=svc.genesis.chain_id,
        sender=client.public_key.to_bytes(),
        nonce=i,
        expiry=svc.height() + 100,
        contract="evidence",
        method="submit",
        args=[f"w{i}", f"wf{i}", "s", "kyc", sm3_hash(b"%d" % i), None, [], 2, None],
    )
    return SignedTx(body=body, signature=client.sign(body.compute_id()))


async def test_acknowledged_tx_survives_a_crash_before_commit(tmp_path: Path) -> None:
    cfg, node_key, client = _dev_chain(tmp_path)

    svc = _service(cfg, node_key)
    assert svc.wal is not None
    svc.wal.start()  # the log runs, consensus does not: nothing can commit (a crash "before")
    txs = [_tx(svc, client, i) for i in range(5)]
    acked = await asyncio.gather(*(svc.submit_raw_tx(t.encode()) for t in txs))
    assert set(acked) == {t.tx_id for t in txs}
    assert svc.get_receipt(acked[0]) is None
    # "Crash": drop the process state; only what is on disk remains.
    await svc.wal.close()
    svc.store.close()

    svc2 = _service(cfg, node_key)
    await svc2.start()
    try:
        for tx_id in acked:
            got = await svc2.wait_tx(tx_id, 10)
            assert got is not None, "an acknowledged transaction was lost in the crash"
            assert got[0].status == 0
        assert svc2.wal is not None and len(svc2.wal) == 0  # committed entries leave the log
    finally:
        await svc2.stop()
        svc2.store.close()


async def test_bad_log_entries_are_dropped_on_recovery(tmp_path: Path) -> None:
    cfg, node_key, client = _dev_chain(tmp_path)
    svc = _service(cfg, node_key)
    assert svc.wal is not None
    svc.wal.start()
    good = _tx(svc, client, 1)
    forged = SignedTx(body=_tx(svc, client, 2).body, signature=bytes(64))
    await svc.wal.append(good.tx_id, good.encode())
    await svc.wal.append(forged.tx_id, forged.encode())  # the file is not trusted
    await svc.wal.append(b"\x01" * 32, b"garbage")
    await svc.wal.close()
    svc.store.close()

    svc2 = _service(cfg, node_key)
    await svc2.start()
    try:
        assert await svc2.wait_tx(good.tx_id, 10) is not None
        assert svc2.get_receipt(forged.tx_id) is None and not svc2.is_pending(forged.tx_id)
        assert svc2.wal is not None and len(svc2.wal) == 0
    finally:
        await svc2.stop()
        svc2.store.close()


async def test_a_tx_committed_while_its_log_write_waits_never_enters_the_pool(
    tmp_path: Path,
) -> None:
    """Regression (cluster bench): a client retried a tx at a second node; the first node's
    copy committed while the second awaited its pool-log write, and the second then pooled a
    committed tx — which it proposed, as leader, in every round it led (rejected each time)."""
    import pytest

    from gmchain.node.api import ApiError, ErrorCode

    cfg, node_key, client = _dev_chain(tmp_path)
    svc = _service(cfg, node_key)
    assert svc.wal is not None
    svc.wal.start()
    tx = _tx(svc, client, 1)
    real_append = svc.wal.append

    async def append_while_it_commits(tx_id: bytes, raw: bytes) -> None:
        await real_append(tx_id, raw)
        # Meanwhile the same tx committed elsewhere and reached us in a block.
        svc.chain.recent.append((svc.chain.head.height + 1, frozenset({tx_id})))

    svc.wal.append = append_while_it_commits  # type: ignore[method-assign]
    with pytest.raises(ApiError) as err:
        await svc.submit_raw_tx(tx.encode())
    assert err.value.code == ErrorCode.DUPLICATE
    assert tx.tx_id not in svc.mempool
    await svc.wal.close()
    svc.store.close()

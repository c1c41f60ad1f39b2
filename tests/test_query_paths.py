"""The fast query paths give exactly what the full-decode paths give (block summary, tx slicing)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gmchain.crypto_sm import load_private_key, sm3_hash
from gmchain.ledger.jsonfmt import block_to_json
from gmchain.ledger.store import Store
from gmchain.ledger.types import SignedTx, TxBody
from gmchain.node.config import load_config, load_genesis
from gmchain.node.daemon import DEV_PASSPHRASE, init_dev
from gmchain.node.queries import extract_tx_bytes
from gmchain.node.rpcmethods import receipt_json, summary_json
from gmchain.node.service import NodeService


async def test_summary_and_sliced_txs_match_the_decoded_block(tmp_path: Path) -> None:
    cfg = load_config(init_dev(tmp_path / "dev", rpc_port=0))
    genesis = load_genesis(cfg.genesis_file)
    key = load_private_key(cfg.key_file, DEV_PASSPHRASE.encode())
    client = load_private_key(tmp_path / "dev" / "client.key", DEV_PASSPHRASE.encode())
    store = Store.open(cfg.data_dir, chain_id=genesis.chain_id)
    svc = NodeService(config=cfg, genesis=genesis, key=key, store=store)
    await svc.start()
    try:
        ids = []
        for i in range(25):
            body = TxBody(
                chain_id=genesis.chain_id,
                sender=client.public_key.to_bytes(),
                nonce=i,
                expiry=100,
                contract="evidence",
                method="submit",
                args=[f"q{i}", f"qf{i}", "s", "kyc", sm3_hash(b"%d" % i), None, [], 2, None],
            )
            tx = SignedTx(body=body, signature=client.sign(body.compute_id()))
            ids.append(await svc.submit_raw_tx(tx.encode()))
        for t in ids:
            assert await svc.wait_tx(t, 10) is not None
        await asyncio.sleep(0.1)
        seen = 0
        for h in range(1, svc.height() + 1):
            raw = store.get_block_by_height(h)
            assert raw is not None
            block = svc.get_block(h)
            assert block is not None
            assert summary_json(svc.get_block_summary(h)) == block_to_json(block, False)
            assert summary_json(svc.get_block_summary_by_hash(block.block_id)) == block_to_json(
                block, False
            )
            for i, tx in enumerate(block.txs):
                assert extract_tx_bytes(raw, i) == tx.encode()
                svc.queries.clear_cache()  # force the slicing path
                got = svc.get_tx(tx.tx_id)
                assert got is not None and got.tx == tx and got.index == i and got.height == h
                assert got.block_id == block.block_id
                seen += 1
        assert seen == 25
        assert svc.get_block_summary(svc.height() + 1) is None
    finally:
        await svc.stop()
        store.close()


async def test_receipt_json_reads_the_block_id_without_decoding_the_block(tmp_path: Path) -> None:
    # A receipt (gm_getTransactionReceipt, txCommit notifications) names its block's id: read by
    # height from the store, not by decoding and checking a whole block of up to max_block_txs
    # transactions on the event loop for one receipt.
    cfg = load_config(init_dev(tmp_path / "dev", rpc_port=0))
    genesis = load_genesis(cfg.genesis_file)
    key = load_private_key(cfg.key_file, DEV_PASSPHRASE.encode())
    client = load_private_key(tmp_path / "dev" / "client.key", DEV_PASSPHRASE.encode())
    store = Store.open(cfg.data_dir, chain_id=genesis.chain_id)
    svc = NodeService(config=cfg, genesis=genesis, key=key, store=store)
    await svc.start()
    try:
        ids = []
        for i in range(6):
            body = TxBody(
                chain_id=genesis.chain_id,
                sender=client.public_key.to_bytes(),
                nonce=i,
                expiry=100,
                contract="evidence",
                method="submit",
                args=[f"r{i}", f"rf{i}", "s", "kyc", sm3_hash(b"%d" % i), None, [], 2, None],
            )
            tx = SignedTx(body=body, signature=client.sign(body.compute_id()))
            ids.append(await svc.submit_raw_tx(tx.encode()))
        for t in ids:
            assert await svc.wait_tx(t, 10) is not None
        for t in ids:
            found = svc.get_receipt(t)
            assert found is not None
            svc.queries.clear_cache()
            got = receipt_json(svc, found)
            assert not svc.queries._block_cache, "a receipt decoded its whole block"
            block = svc.get_block(found[1])
            assert block is not None
            assert got["blockHash"] == "0x" + block.block_id.hex()
            assert got["blockNumber"] == found[1] and got["transactionIndex"] == found[2]
        assert svc.get_block_id(svc.height() + 1) is None
    finally:
        await svc.stop()
        store.close()

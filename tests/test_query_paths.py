"""The fast query paths give exactly what the full-decode paths give (block summary, tx slicing,
a receipt's block id)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gmchain.ledger.jsonfmt import block_to_json
from gmchain.node.queries import extract_tx_bytes
from gmchain.node.rpcmethods import receipt_json, summary_json
from tests.node_helpers import commit_evidence, running_dev_service


async def test_summary_and_sliced_txs_match_the_decoded_block(tmp_path: Path) -> None:
    async with running_dev_service(tmp_path) as (svc, genesis, client):
        await commit_evidence(svc, genesis, client, 25, "q")
        await asyncio.sleep(0.1)
        store = svc.store
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


async def test_receipt_json_reads_the_block_id_without_decoding_the_block(tmp_path: Path) -> None:
    # A receipt (gm_getTransactionReceipt, txCommit notifications) names its block's id: read by
    # height from the store, not by decoding and checking a whole block of up to max_block_txs
    # transactions on the event loop for one receipt.
    async with running_dev_service(tmp_path) as (svc, genesis, client):
        for t in await commit_evidence(svc, genesis, client, 6, "r"):
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

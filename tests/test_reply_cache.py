"""Answers kept as text (node/replycache.py) are byte-identical to answers built afresh, and the
cache stays within its bounds (issue 15 item 3)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from gmchain.crypto_sm import sm3_hash
from gmchain.ledger.jsonfmt import block_summary_to_json, block_to_json, tx_to_json
from gmchain.node.replycache import ReplyCache, with_height
from gmchain.node.rpc import RpcServer
from gmchain.node.rpcsend import JsonText, reply_text
from gmchain.node.rpcspec import dumps_compact
from tests.node_helpers import commit_evidence, running_dev_service


def _fresh(result: Any, req_id: Any = 1) -> str:
    """The reply text the server made before the cache: the whole reply encoded at once."""
    return dumps_compact({"jsonrpc": "2.0", "id": req_id, "result": result})


def test_splice_equals_encoding_the_value() -> None:
    value = {"hash": "0xab", "number": 7, "transactions": ["0x01"], "name": "\u8bc1\u636e"}
    text = dumps_compact(value)
    for req_id in (1, 'a\u00e9"b', None, 2**40):
        reply = {"jsonrpc": "2.0", "id": req_id, "result": JsonText(text)}
        assert reply_text(reply) == _fresh(value, req_id)
        spliced = {"jsonrpc": "2.0", "id": req_id, "result": with_height(text, 12)}
        assert reply_text(spliced) == _fresh({**value, "answeredAt": 12}, req_id)
    # a reply of another shape is encoded as a whole: the text stays a JSON string
    odd = {"jsonrpc": "2.0", "id": 1, "result": JsonText(text), "x": 1}
    assert json.loads(reply_text(odd))["result"] == text


def test_cache_is_bounded_in_total_and_per_entry() -> None:
    cache = ReplyCache(max_bytes=100, max_entry_bytes=40)
    big = {"v": "x" * 50}
    assert cache.put("big", big) == dumps_compact(big)
    assert cache.get("big") is None and len(cache) == 0  # over the entry cap: not kept
    for i in range(10):
        cache.put(i, {"v": "y" * 20})  # 28 characters each
    assert cache.size <= 100 and len(cache) == 3
    assert [cache.get(i) is not None for i in range(10)] == [False] * 7 + [True] * 3
    cache.get(7)  # 7 becomes the most recent: 8 is dropped next
    cache.put("z", {"v": "z" * 20})
    assert cache.get(8) is None and cache.get(7) is not None and cache.get("z") is not None


async def test_cached_answers_are_byte_identical(tmp_path: Path) -> None:
    async with running_dev_service(tmp_path) as (svc, genesis, client):
        server = RpcServer(svc, port=0)

        async def ask(method: str, *params: Any) -> str:
            body = json.dumps({"jsonrpc": "2.0", "id": 5, "method": method, "params": list(params)})
            text = await server.handle_payload(body.encode(), None, None)
            assert text is not None
            return text

        await commit_evidence(svc, genesis, client, 12, "c")
        await asyncio.sleep(0.1)
        methods = server._methods  # the handlers' cache, to see misses turn into hits
        seen = 0
        for h in range(0, svc.height() + 1):
            block = svc.get_block(h)
            assert block is not None
            for _ in range(2):  # built, then from the cache
                head = svc.height()
                want = _fresh({**block_to_json(block, False), "answeredAt": head}, 5)
                assert await ask("gm_getBlockByNumber", h, False) == want
                assert await ask("gm_getBlockByHash", "0x" + block.block_id.hex()) == want
            summary = block_summary_to_json(block.header, [t.tx_id for t in block.txs])
            assert methods.replies.get(("block", h)) == dumps_compact(summary)
            for i, tx in enumerate(block.txs):
                svc.queries.clear_cache()  # the tx is cut from the stored block: its bytes served
                for _ in range(2):
                    head = svc.height()
                    got = tx_to_json(tx, height=h, index=i, block_id=block.block_id)
                    want = _fresh({**got, "answeredAt": head}, 5)
                    assert await ask("gm_getTransactionByHash", "0x" + tx.tx_id.hex()) == want
                seen += 1
        assert seen == 12 and methods.replies.hits >= 12 + 2 * (svc.height() + 1)
        # Unknown: null, and not kept (it may commit later).
        unknown = "0x" + sm3_hash(b"nobody").hex()
        assert json.loads(await ask("gm_getTransactionByHash", unknown))["result"] is None
        assert methods.replies.get(("tx", bytes.fromhex(unknown[2:]))) is None
        assert json.loads(await ask("gm_getBlockByNumber", svc.height() + 5))["result"] is None
        assert methods.replies.get(("block", svc.height() + 5)) is None

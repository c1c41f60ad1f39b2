"""WebSocket endpoint of node/rpc.py: methods over /ws, the three subscription kinds, limits,
ordering (the subscribe reply precedes its notifications), cleanup on disconnect."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.jsonfmt import hex0x
from gmchain.node.api import ErrorCode
from gmchain.node.rpc import RpcConfig, RpcServer
from tests.test_rpc_fake import FakeNode, make_tx

E = ErrorCode
WAIT = 10.0  # generous bound on a reply that must come; never a speed assertion


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return PrivateKey.generate()


class Ws:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.n = 0
        self.notes: list[dict[str, Any]] = []

    async def recv(self) -> Any:
        return json.loads(await asyncio.wait_for(self.ws.receive_str(), WAIT))

    async def reply(self, method: str, params: Any = None) -> dict[str, Any]:
        self.n += 1
        await self.ws.send_str(
            json.dumps({"jsonrpc": "2.0", "id": self.n, "method": method, "params": params or []})
        )
        while True:
            msg = await self.recv()
            if isinstance(msg, dict) and msg.get("method") == "gm_subscription":
                self.notes.append(msg)
            elif isinstance(msg, dict) and msg.get("id") == self.n:
                return msg

    async def call(self, method: str, params: Any = None) -> Any:
        msg = await self.reply(method, params)
        assert "error" not in msg, msg
        return msg["result"]

    async def note(self) -> dict[str, Any]:
        if self.notes:
            return self.notes.pop(0)
        msg = await self.recv()
        assert msg["method"] == "gm_subscription" and "id" not in msg, msg
        return msg["params"]  # type: ignore[no-any-return]


@pytest.fixture
async def env() -> AsyncIterator[tuple[FakeNode, Ws, aiohttp.ClientSession, str]]:
    node = FakeNode()
    server = RpcServer(node, host="127.0.0.1", port=0, config=RpcConfig.minimal())
    await server.start()
    url = f"http://127.0.0.1:{server.port}/ws"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        yield node, Ws(ws), session, url
    await server.stop()


def _params(note: dict[str, Any]) -> dict[str, Any]:
    return note.get("params", note)


async def test_methods_over_ws(env: Any) -> None:
    node, ws, _, _ = env
    assert await ws.call("gm_blockNumber") == node.height()
    await ws.ws.send_str(json.dumps([{"jsonrpc": "2.0", "id": "x", "method": "gm_status"}]))
    batch = await ws.recv()
    assert batch[0]["id"] == "x" and batch[0]["result"]["height"] == node.height()
    await ws.ws.send_str("{not json")
    assert (await ws.recv())["error"]["code"] == E.PARSE_ERROR
    await ws.ws.send_bytes(b'{"jsonrpc":"2.0","id":5,"method":"gm_nope"}')
    assert (await ws.recv())["error"]["code"] == E.METHOD_NOT_FOUND


async def test_new_heads(env: Any) -> None:
    node, ws, _, _ = env
    sub = await ws.call("gm_subscribe", ["newHeads"])
    for _ in range(2):
        block = node.commit()
        note = _params(await ws.note())
        assert note["subscription"] == sub
        assert note["result"]["hash"] == hex0x(block.block_id)
        assert note["result"]["number"] == block.header.height
    assert await ws.call("gm_unsubscribe", [sub]) is True
    assert await ws.call("gm_unsubscribe", {"subscription": sub}) is False


async def test_events_filtered(env: Any, key: PrivateKey) -> None:
    node, ws, _, _ = env
    sub = await ws.call(
        "gm_subscribe", ["events", {"contract": "evidence", "name": "EvidenceSubmitted"}]
    )
    tx = make_tx(key, nonce=1, expiry=5, record_id="ev-1")
    await node.submit_raw_tx(tx.encode())
    node.commit()
    note = _params(await ws.note())
    assert note["subscription"] == sub
    res = note["result"]
    assert res["txId"] == hex0x(tx.tx_id) and res["blockNumber"] == 1
    assert res["name"] == "EvidenceSubmitted" and ["record_id", "ev-1"] in res["fields"]


async def test_tx_commit_pending_then_committed(env: Any, key: PrivateKey) -> None:
    node, ws, _, _ = env
    tx = make_tx(key, nonce=2, expiry=5)
    await node.submit_raw_tx(tx.encode())
    sub = await ws.call("gm_subscribe", ["txCommit", hex0x(tx.tx_id)])
    node.commit()
    note = _params(await ws.note())
    assert note["subscription"] == sub and note["result"]["txId"] == hex0x(tx.tx_id)
    assert note["result"]["statusName"] == "OK" and note["result"]["pending"] is False
    assert await ws.call("gm_unsubscribe", [sub]) is False  # it ended by itself


async def test_tx_commit_reply_precedes_notification(env: Any, key: PrivateKey) -> None:
    node, ws, _, _ = env
    tx = make_tx(key, nonce=3, expiry=5)
    await node.submit_raw_tx(tx.encode())
    node.commit()
    await ws.ws.send_str(
        json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 9,
                "method": "gm_subscribe",
                "params": ["txCommit", hex0x(tx.tx_id)],
            }
        )
    )
    first = await ws.recv()
    assert first["id"] == 9
    note = await ws.recv()
    assert note["params"]["subscription"] == first["result"]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        (["blocks"], E.INVALID_PARAMS),
        ([5], E.INVALID_PARAMS),
        (["newHeads", {"x": 1}], E.INVALID_PARAMS),
        (["txCommit"], E.INVALID_PARAMS),
        (["txCommit", "0x12"], E.INVALID_PARAMS),
        (["events", {"contract": 5}], E.INVALID_PARAMS),
        (["events", {"other": "x"}], E.INVALID_PARAMS),
        (["events", "evidence"], E.INVALID_PARAMS),
        (["newHeads", None, 3], E.INVALID_PARAMS),
    ],
)
async def test_bad_subscribe(env: Any, params: Any, code: int) -> None:
    node, ws, _, _ = env
    err = (await ws.reply("gm_subscribe", params))["error"]
    assert err["code"] == code and err["message"]
    assert not node.head_feeds and not node.event_feeds


async def test_subscription_limit(env: Any) -> None:
    _node, ws, _, _ = env
    limit = RpcConfig.minimal().max_subscriptions
    subs = [await ws.call("gm_subscribe", ["newHeads"]) for _ in range(limit)]
    assert len(set(subs)) == limit
    err = (await ws.reply("gm_subscribe", ["events"]))["error"]
    assert err["code"] == E.TOO_MANY_SUBSCRIPTIONS
    assert await ws.call("gm_unsubscribe", [subs[0]]) is True
    assert await ws.call("gm_subscribe", ["events"])


async def test_oversize_message_closes_1009(env: Any) -> None:
    node, _, session, url = env
    async with session.ws_connect(url) as ws:
        await ws.send_str("[" + " " * RpcConfig.minimal().max_ws_message_bytes + "]")
        msg = await asyncio.wait_for(ws.receive(), WAIT)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    async with session.ws_connect(url) as ws2:  # the server is still there
        await ws2.send_str(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "gm_blockNumber"}))
        assert (
            json.loads(await asyncio.wait_for(ws2.receive_str(), WAIT))["result"] == node.height()
        )


async def test_disconnect_drops_subscribers(env: Any) -> None:
    node, _, session, url = env
    async with session.ws_connect(url) as ws:
        w = Ws(ws)
        await w.call("gm_subscribe", ["newHeads"])
        await w.call("gm_subscribe", ["events"])
        assert len(node.head_feeds) == 1 and len(node.event_feeds) == 1
    for _ in range(int(WAIT * 100)):  # the server notices the close asynchronously
        if not node.head_feeds and not node.event_feeds:
            break
        await asyncio.sleep(0.01)
    assert not node.head_feeds and not node.event_feeds


async def test_slow_consumer_is_disconnected() -> None:
    """Notifications beyond the send queue close the socket with 1008; the server stays up."""
    node = FakeNode()
    server = RpcServer(node, host="127.0.0.1", port=0, config=RpcConfig(ws_send_queue=2))
    await server.start()
    url = f"http://127.0.0.1:{server.port}/ws"
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            await Ws(ws).call("gm_subscribe", ["newHeads"])
            for _ in range(50):  # no await in between: the server's writer cannot drain
                node.commit()
            texts = 0
            while (
                msg := await asyncio.wait_for(ws.receive(), WAIT)
            ).type == aiohttp.WSMsgType.TEXT:
                texts += 1
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1008
            assert texts < 50
            async with session.ws_connect(url) as ws2:
                assert await Ws(ws2).call("gm_blockNumber") == node.height()
    finally:
        await server.stop()

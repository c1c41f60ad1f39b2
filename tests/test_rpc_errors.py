"""Every error path of node/rpc.py: each bad input gets its specific JSON-RPC error, the chain is
unchanged, and the server keeps answering."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.jsonfmt import hex0x
from gmchain.ledger.types import MAX_TX_BYTES, SignedTx, TxBody
from gmchain.node.api import ErrorCode
from gmchain.node.rpc import RpcConfig, RpcServer
from tests.test_rpc import Rpc
from tests.test_rpc_fake import FakeNode, make_tx

E = ErrorCode


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture
async def env() -> AsyncIterator[tuple[FakeNode, Rpc]]:
    node = FakeNode(pool_limit=2)
    server = RpcServer(node, host="127.0.0.1", port=0, config=RpcConfig.minimal())
    await server.start()
    async with aiohttp.ClientSession() as session:
        yield node, Rpc(session, f"http://127.0.0.1:{server.port}")
    await server.stop()


def _req(**kw: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": "gm_blockNumber", **kw}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{", E.PARSE_ERROR),
        (b"", E.PARSE_ERROR),
        (b"\xff\xfe{}", E.PARSE_ERROR),
        (b'{"jsonrpc":"2.0","id":1,"method":"gm_blockNumber","params":[NaN]}', E.PARSE_ERROR),
        # a number too large for a double is Infinity in disguise: not JSON this server takes
        (b'{"jsonrpc":"2.0","id":1,"method":"gm_blockNumber","params":[1e400]}', E.PARSE_ERROR),
        (b'{"jsonrpc":"2.0","id":1,"method":"gm_blockNumber","params":[-1E999]}', E.PARSE_ERROR),
        (b"[" * 5000 + b"]" * 5000, E.PARSE_ERROR),
        (b'{"jsonrpc":"2.0","id":' + b"9" * 5000 + b',"method":"x"}', E.PARSE_ERROR),
        (b"[]", E.INVALID_REQUEST),
        (b"42", E.INVALID_REQUEST),
        (b'"gm_blockNumber"', E.INVALID_REQUEST),
        (json.dumps(_req(jsonrpc="1.0")).encode(), E.INVALID_REQUEST),
        (json.dumps({"id": 1, "method": "gm_blockNumber"}).encode(), E.INVALID_REQUEST),
        (json.dumps(_req(id=True)).encode(), E.INVALID_REQUEST),
        (json.dumps(_req(id=1.5)).encode(), E.INVALID_REQUEST),
        (json.dumps(_req(id={"a": 1})).encode(), E.INVALID_REQUEST),
        (json.dumps(_req(id=[1])).encode(), E.INVALID_REQUEST),
        (json.dumps(_req(id="x" * 300)).encode(), E.INVALID_REQUEST),
        (json.dumps(_req(method=7)).encode(), E.INVALID_REQUEST),
        (json.dumps({"jsonrpc": "2.0", "method": 7}).encode(), E.INVALID_REQUEST),
        (json.dumps(_req(method="gm_nope")).encode(), E.METHOD_NOT_FOUND),
        (json.dumps(_req(method="gm_subscribe", params=["newHeads"])).encode(), E.METHOD_NOT_FOUND),
        (json.dumps(_req(params="x")).encode(), E.INVALID_PARAMS),
        (json.dumps(_req(params=[1])).encode(), E.INVALID_PARAMS),
        (json.dumps([_req()] * 11).encode(), E.INVALID_REQUEST),
    ],
)
async def test_malformed_requests(env: Any, body: bytes, code: int) -> None:
    node, rpc = env
    before = node.fingerprint()
    status, reply = await rpc.raw(body)
    assert status == 200
    assert reply["jsonrpc"] == "2.0" and reply["error"]["code"] == code, reply
    assert isinstance(reply["error"]["message"], str) and reply["error"]["message"]
    assert node.fingerprint() == before
    assert await rpc.call("gm_blockNumber") == node.height()


@pytest.mark.parametrize(
    ("method", "params", "needle"),
    [
        ("gm_getTransactionByHash", [], "txId"),
        ("gm_getTransactionByHash", ["0x12"], "txId"),
        ("gm_getTransactionByHash", ["12" * 32], "txId"),
        ("gm_getTransactionByHash", ["0x" + "zz" * 32], "txId"),
        ("gm_getTransactionByHash", ["0x" + "1" * 63], "txId"),
        ("gm_getTransactionByHash", [12], "txId"),
        ("gm_getTransactionByHash", {"txid": "0x"}, "txid"),
        ("gm_getBlockByNumber", ["1"], "height"),
        ("gm_getBlockByNumber", [-1], "height"),
        ("gm_getBlockByNumber", [True], "height"),
        ("gm_getBlockByNumber", [1.0], "height"),
        ("gm_getBlockByNumber", [1, "yes"], "fullTxs"),
        ("gm_getBlockByNumber", [1, False, 3], "too many"),
        ("gm_getBlockByHash", {"fullTxs": True}, "hash"),
        ("gm_sendRawTransaction", ["0x"], "rawTx"),
        ("gm_sendRawTransaction", ["abc"], "rawTx"),
        ("gm_sendRawTransaction", [None], "rawTx"),
        ("gm_call", ["", "get", []], "contract"),
        ("gm_call", ["evidence", 5, []], "method"),
        ("gm_call", ["evidence", "get", {}], "args"),
        ("gm_call", ["evidence", "get", [0] * 65], "args"),
        ("gm_call", ["evidence", "get", [2**64]], "args"),
        ("gm_getConsistencyProof", [1], "newHeight"),
        ("gm_getTransactionProof", [hex0x(bytes(32)), "latest"], "atHeight"),
        ("gm_waitForReceipt", [hex0x(bytes(32)), -5], "timeoutMs"),
        ("gm_nodeInfo", [1], "too many"),
        ("rpc.discover", {"x": 1}, "x"),
    ],
)
async def test_invalid_params_name_the_param(
    env: Any, method: str, params: Any, needle: str
) -> None:
    _, rpc = env
    err = await rpc.error(method, params)
    assert err["code"] == E.INVALID_PARAMS, err
    assert needle in err["message"], err


async def test_transaction_admission_errors(env: Any, key: PrivateKey) -> None:
    node, rpc = env

    async def send(raw: bytes) -> int:
        err = await rpc.error("gm_sendRawTransaction", [hex0x(raw)])
        return int(err["code"])

    node.commit()  # head 1, so expiry 1 is expired
    good = make_tx(key, nonce=1, expiry=5)
    before = node.fingerprint()
    assert await send(good.encode()[:-1]) == E.BAD_ENCODING
    assert await send(good.encode() + b"\x00") == E.BAD_ENCODING
    assert await send(b"\xc1") == E.BAD_ENCODING
    flipped = bytearray(good.encode())
    flipped[-1] ^= 1
    assert await send(bytes(flipped)) == E.BAD_SIGNATURE
    other = PrivateKey.generate()
    body = good.body
    forged = SignedTx(body=body, signature=other.sign(body.compute_id()))
    assert await send(forged.encode()) == E.BAD_SIGNATURE
    assert await send(make_tx(key, nonce=1, expiry=5, chain_id="other").encode()) == E.WRONG_CHAIN
    assert await send(make_tx(key, nonce=2, expiry=1).encode()) == E.EXPIRED
    assert await send(make_tx(key, nonce=3, expiry=10_000).encode()) == E.EXPIRY_TOO_FAR
    assert (
        await send(make_tx(key, nonce=4, expiry=9, contract="nope").encode()) == E.UNKNOWN_CONTRACT
    )
    assert await send(b"\x00" * (MAX_TX_BYTES + 1)) == E.TOO_LARGE
    assert node.fingerprint() == before
    ok = make_tx(key, nonce=5, expiry=9)
    await rpc.call("gm_sendRawTransaction", [hex0x(ok.encode())])
    assert await send(ok.encode()) == E.DUPLICATE
    await rpc.call("gm_sendRawTransaction", [hex0x(make_tx(key, nonce=6, expiry=9).encode())])
    assert await send(make_tx(key, nonce=7, expiry=9).encode()) == E.POOL_FULL
    assert len(node.pool) == 2


async def test_huge_hex_rejected_before_decoding(env: Any) -> None:
    _, rpc = env
    err = await rpc.error("gm_sendRawTransaction", ["0x" + "00" * (MAX_TX_BYTES + 1)])
    assert err["code"] == E.TOO_LARGE


async def test_unused_key_is_not_a_signature(env: Any) -> None:
    """A body whose sender is not a curve point: BAD_SIGNATURE, not a crash."""
    _node, rpc = env
    body = TxBody(
        chain_id="gm-test",
        sender=b"\x04" + b"\x01" * 64,
        nonce=1,
        expiry=5,
        contract="evidence",
        method="submit",
        args=("x", b"\x00" * 32),
    )
    raw = SignedTx(body=body, signature=b"\x01" * 64).encode()
    err = await rpc.error("gm_sendRawTransaction", [hex0x(raw)])
    assert err["code"] == E.BAD_SIGNATURE


async def test_body_limit_413(env: Any) -> None:
    node, rpc = env
    limit = RpcConfig.minimal().max_body_bytes
    padding = " " * limit
    status, reply = await rpc.raw(json.dumps(_req()).encode() + padding.encode())
    assert status == 413 and reply["error"]["code"] == E.TOO_LARGE

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: streamed, cut at the limit
        for _ in range(limit // 4096 + 2):
            yield b" " * 4096

    json_ct = {"Content-Type": "application/json"}
    async with rpc.session.post(rpc.base + "/", data=chunks(), headers=json_ct) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == E.TOO_LARGE
    assert await rpc.call("gm_blockNumber") == node.height()


async def test_get_is_not_rpc(env: Any) -> None:
    _, rpc = env
    async with rpc.session.get(rpc.base + "/") as resp:
        assert resp.status == 405
        assert (await resp.json())["error"]["code"] == E.INVALID_REQUEST


async def test_notifications_get_no_reply(env: Any) -> None:
    _node, rpc = env
    note = {"jsonrpc": "2.0", "method": "gm_blockNumber"}
    status, reply = await rpc.raw(note)
    assert status == 204 and reply is None
    status, reply = await rpc.raw({"jsonrpc": "2.0", "method": "gm_nope"})
    assert status == 204 and reply is None
    status, reply = await rpc.raw([note, note])
    assert status == 204 and reply is None


async def test_batch_mixed(env: Any) -> None:
    node, rpc = env
    batch = [
        {"jsonrpc": "2.0", "id": "a", "method": "gm_blockNumber"},
        {"jsonrpc": "2.0", "method": "gm_blockNumber"},  # notification: no reply
        {"jsonrpc": "2.0", "id": "b", "method": "gm_nope"},
        17,
        {"jsonrpc": "2.0", "id": None, "method": "gm_blockNumber"},
    ]
    status, reply = await rpc.raw(batch)
    assert status == 200 and len(reply) == 4
    by_id = {json.dumps(r["id"]): r for r in reply if r["id"] is not None}
    assert by_id['"a"']["result"] == node.height()
    assert by_id['"b"']["error"]["code"] == E.METHOD_NOT_FOUND
    nulls = [r for r in reply if r["id"] is None]
    assert sorted(("error" in r) for r in nulls) == [False, True]


async def test_in_flight_limit() -> None:
    """Requests beyond a connection's in-flight cap get RATE_LIMITED (never a queue), and the
    cap recovers; a receipt wait counts in its own pool, not against other methods (fault 5)."""
    node = FakeNode()
    config = RpcConfig(max_batch=1, max_in_flight_per_conn=1, max_waits_per_conn=1)
    server = RpcServer(node, host="127.0.0.1", port=0, config=config)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"http://127.0.0.1:{server.port}/ws")
            tx_id = hex0x(b"\x09" * 32)

            async def ws_call(req_id: int, method: str, params: list[Any]) -> dict[str, Any]:
                req = {"jsonrpc": "2.0", "id": req_id, "method": method, "params": params}
                await ws.send_str(json.dumps(req))
                return dict(json.loads(await asyncio.wait_for(ws.receive_str(), 10)))

            await ws.send_str(
                json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "gm_waitForReceipt",
                        "params": [tx_id, 20_000],
                    }
                )
            )
            while not node.waiters:
                await asyncio.sleep(0.01)
            assert (await ws_call(2, "gm_blockNumber", []))["result"] == 0  # not held by the wait
            err = (await ws_call(3, "gm_waitForReceipt", [tx_id, 20_000]))["error"]
            assert err["code"] == E.RATE_LIMITED and "connection" in err["message"]
            node.waiters[b"\x09" * 32][0].set_result(None)  # the wait ends: tx unknown -> null
            first = json.loads(await asyncio.wait_for(ws.receive_str(), 10))
            assert first == {"jsonrpc": "2.0", "id": 1, "result": None}
            assert (await ws_call(4, "gm_waitForReceipt", [tx_id, 0]))["result"] is None
            await ws.close()
    finally:
        await server.stop()


def test_config_validate() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        RpcConfig(max_batch=0).validate()
    with pytest.raises(ValueError, match="max_body_bytes"):
        RpcServer(FakeNode(), port=0, config=RpcConfig(max_body_bytes=-1))


async def _raw_http(port: int, parts: list[bytes], pause_s: float = 0.0) -> tuple[int, bytes]:
    """Send `parts` on one connection (pausing between them); the reply's status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i, part in enumerate(parts):
            if i:
                await asyncio.sleep(pause_s)
            writer.write(part)
            await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status = int(head.split(b" ", 2)[1])
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return status, await asyncio.wait_for(reader.readexactly(length), 10)
    finally:
        writer.close()


async def test_body_whole_in_pieces_and_chunked() -> None:
    """The body is read the same whether it came with the headers (taken at once), arrives in
    pieces (read under the timeout) or chunked; a chunked body over the limit is refused even
    when all of it is already there."""
    node = FakeNode()
    config = RpcConfig.minimal()
    server = RpcServer(node, host="127.0.0.1", port=0, config=config)
    await server.start()
    try:
        body = json.dumps(_req()).encode()
        head = (
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        for parts, pause in (
            ([head + body], 0.0),
            ([head, body[:7], body[7:]], 0.2),
        ):
            status, reply = await _raw_http(server.port, parts, pause)
            assert status == 200 and json.loads(reply)["result"] == node.height(), parts

        chunked = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        chunked += b"Transfer-Encoding: chunked\r\n\r\n"
        one = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        status, reply = await _raw_http(server.port, [chunked + one])
        assert status == 200 and json.loads(reply)["result"] == node.height()

        big = b" " * (config.max_body_bytes + 1)
        over = b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big)
        status, reply = await _raw_http(server.port, [chunked + over])
        assert status == 413 and json.loads(reply)["error"]["code"] == E.TOO_LARGE
    finally:
        await server.stop()

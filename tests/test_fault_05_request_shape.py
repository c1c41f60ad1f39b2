"""Issue 10, fault 5 (review): what one request may hold, and whom the per-address caps key on.

In-process (a real RpcServer on a real socket, a fake node behind it). On main before this fix a
request object could carry any extra member (it was parsed, kept alive for the whole request,
and ignored), a message had no cap on its number of JSON values, the bytes an address had in
flight were not counted, every IPv6 address was its own "address", and `Host: fe80::1%evil.com`
passed as an IP literal.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gmchain.node.rpc import RpcConfig, RpcServer
from gmchain.node.rpclimits import address_key, is_allowed_host
from gmchain.node.rpcspec import json_elements
from tests.test_rpc_fake import FakeNode


@pytest.fixture
async def server() -> AsyncIterator[RpcServer]:
    config = RpcConfig(max_json_elements=1000, max_in_flight_bytes_per_ip=3 * 1024 * 1024)
    srv = RpcServer(FakeNode(), host="127.0.0.1", port=0, config=config)
    await srv.start()
    yield srv
    await srv.stop()


def _wait(i: int, timeout_ms: int, **extra: Any) -> dict[str, Any]:
    params = ["0x" + secrets.token_hex(32), timeout_ms]
    return {"jsonrpc": "2.0", "id": i, "method": "gm_waitForReceipt", "params": params, **extra}


async def _post(session: aiohttp.ClientSession, port: int, body: Any) -> Any:
    async with session.post(f"http://127.0.0.1:{port}/", json=body) as resp:
        return await resp.json()


async def test_unknown_request_member_is_refused(server: RpcServer) -> None:
    async with aiohttp.ClientSession() as session:
        reply = await _post(session, server.port, _wait(1, 0, pad=[{}] * 10))
        assert reply["error"]["code"] == -32600, reply
        assert "'pad'" in reply["error"]["message"], reply
        assert reply["id"] == 1
        batch = [_wait(2, 0), _wait(3, 0, extra=1)]
        replies = {r["id"]: r for r in await _post(session, server.port, batch)}
        assert replies[2]["result"] is None and replies[3]["error"]["code"] == -32600


async def test_message_with_too_many_json_values_is_refused(server: RpcServer) -> None:
    async with aiohttp.ClientSession() as session:
        reply = await _post(session, server.port, _wait(1, 0, params2=[0] * 2000))
        assert reply["error"]["code"] == -32600, reply
        assert "rpc_max_json_elements" in reply["error"]["message"], reply
        # Commas and brackets inside strings are not values.
        long_text = "x," * 5000
        body = {"jsonrpc": "2.0", "id": 2, "method": "gm_blockNumber", "params": [long_text]}
        reply = await _post(session, server.port, body)
        assert reply["error"]["code"] == -32602, reply  # too many params: parsed, not refused
    assert json_elements('["a,b", {"c": [1, 2]}]', 1) == 6


async def test_request_bytes_in_flight_are_capped_per_address(server: RpcServer) -> None:
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{server.port}/ws"
        async with session.ws_connect(url) as ws:
            # Waits padded with whitespace to ~0.9 MiB: three fit the 3 MiB budget, the fourth
            # does not (the message is held while its wait runs).
            for i in range(4):
                await ws.send_str(json.dumps(_wait(i, 2000)) + " " * (900 * 1024))
            reply = await asyncio.wait_for(ws.receive_json(), 30)
            assert reply["error"]["code"] == -31201, reply
            assert "rpc_max_in_flight_bytes_per_ip" in reply["error"]["message"], reply
            for _ in range(3):  # the three held ones end with their timeout: served
                reply = await asyncio.wait_for(ws.receive_json(), 30)
                assert reply.get("result", "missing") is None, reply
            # Their bytes are released: the same message is accepted again.
            await ws.send_str(json.dumps(_wait(9, 0)) + " " * (900 * 1024))
            reply = await asyncio.wait_for(ws.receive_json(), 30)
            assert reply == {"jsonrpc": "2.0", "id": 9, "result": None}, reply


def test_ipv6_addresses_share_their_64() -> None:
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert address_key("10.0.0.1") != address_key("10.0.0.2")


def test_host_with_ipv6_zone_id_is_a_name() -> None:
    allowed = frozenset({"localhost"})
    assert is_allowed_host("[fe80::1]:8545", allowed)
    assert not is_allowed_host("[fe80::1%evil.com]:8545", allowed)
    assert not is_allowed_host("fe80::1%evil.com", allowed)


async def test_websockets_per_address_are_capped() -> None:
    srv = RpcServer(FakeNode(), host="127.0.0.1", port=0, config=RpcConfig(max_ws_per_ip=2))
    await srv.start()
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{srv.port}/ws"
            first, second = await session.ws_connect(url), await session.ws_connect(url)
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(url)
            assert refused.value.status == 503
            # Plain HTTP from the same address is still served; a closed socket frees its place.
            reply = await _post(
                session, srv.port, {"jsonrpc": "2.0", "id": 1, "method": "gm_status"}
            )
            assert "result" in reply, reply
            await first.close()
            for _ in range(100):
                try:
                    third = await session.ws_connect(url)
                    break
                except aiohttp.WSServerHandshakeError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("a closed WebSocket did not free its place")
            await third.close()
            await second.close()
    finally:
        await srv.stop()

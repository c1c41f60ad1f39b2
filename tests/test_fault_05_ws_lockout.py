"""Issue 10, fault 5 (review): a few source addresses must not lock every other client out.

On main before this fix, 256 WebSockets from each of 127.0.0.2..5 filled the total connection
cap (1024; a WebSocket is exempt from the header and idle timers and answers pings), and a client
from 127.0.0.1 got HTTP 503 / -31201 for as long as they stayed open. Scaled down here: with
RLIMIT_NOFILE 1024 the node's total is 64 and its per-address cap 32, and two attacker addresses
hold all 64 as WebSockets. Now a newcomer from an address holding fewer connections than the
heaviest one takes the heaviest address's oldest connection (close code 1013), so the victim is
served while the attack holds. A real `gmchain dev` process with its default limits.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.node_helpers import NodeProcess, running_dev_node

START_DEADLINE_S = 120.0
BOUND_S = 60.0
ATTACKERS = ("127.0.0.2", "127.0.0.3")
PER_ATTACKER = 32  # the per-address cap in force at RLIMIT_NOFILE 1024 (total 64)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    with running_dev_node(tmp_path, nofile=1024, deadline_s=START_DEADLINE_S) as proc:
        yield proc


async def _victim(session: aiohttp.ClientSession, port: int) -> tuple[int, str]:
    body = {"jsonrpc": "2.0", "id": 1, "method": "gm_blockNumber"}
    try:
        async with session.post(f"http://127.0.0.1:{port}/", json=body) as resp:
            return resp.status, await resp.text()
    except aiohttp.ClientError as exc:
        return 0, repr(exc)


def _metric(port: int, name: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
        found = re.search(rf"^{name} (\d+)$", resp.read().decode(), re.M)
    return int(found.group(1)) if found else 0


async def _drain(ws: aiohttp.ClientWebSocketResponse) -> Any:
    """Read like any client library (pings are answered); the close code the server sent."""
    while True:
        msg = await ws.receive()
        if msg.type == aiohttp.WSMsgType.CLOSE:
            return msg.data
        if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            return None


def test_two_addresses_of_websockets_do_not_lock_out_a_third(node: NodeProcess) -> None:
    asyncio.run(_scenario(node))


async def _scenario(node: NodeProcess) -> None:
    url = f"http://127.0.0.1:{node.port}/ws"
    sessions: list[aiohttp.ClientSession] = []
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    readers: list[asyncio.Task[Any]] = []
    try:
        for addr in ATTACKERS:
            connector = aiohttp.TCPConnector(local_addr=(addr, 0), limit=0)
            session = aiohttp.ClientSession(connector=connector)
            sessions.append(session)
            for _ in range(PER_ATTACKER):
                sockets.append(await session.ws_connect(url))
        readers = [asyncio.create_task(_drain(ws)) for ws in sockets]
        # The total is full: the attackers' next socket is refused, whichever address.
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await sessions[0].ws_connect(url)
        assert refused.value.status == 503
        # The victim from 127.0.0.1 is served, again and again, while the attack holds.
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True)
        ) as victim:
            for i in range(5):
                end = time.monotonic() + BOUND_S
                status, text = await _victim(victim, node.port)
                assert status == 200 and '"result"' in text, (
                    f"victim call {i} refused while 2 addresses hold the total: {status} {text}"
                )
                assert time.monotonic() < end
        end = time.monotonic() + BOUND_S
        while not (evicted := [t.result() for t in readers if t.done()]):
            assert time.monotonic() < end, "no attacker socket was closed to let the victim in"
            await asyncio.sleep(0.1)
        assert all(code == 1013 for code in evicted), evicted
        assert await asyncio.to_thread(_metric, node.port, "gmchain_rpc_connections_evicted_total")
        still_open = sum(1 for ws in sockets if not ws.closed)
        assert still_open >= 2 * PER_ATTACKER - 10, "more attacker sockets closed than needed"
    finally:
        for task in readers:
            task.cancel()
        for ws in sockets:
            await ws.close()
        for session in sessions:
            await session.close()

"""Issue 10, fault 5: one client must not lock every other RPC caller out.

On 0921e03 the in-flight cap was one pool for the whole server and a `gm_waitForReceipt` held a
slot for up to 30 s, so eleven WebSocket batch messages of 100 waits gave every other client
-31201 for as long as the attacker renewed them. Now waits have their own caps, and every cap is
per connection and per address: the attacker's excess is refused (-31201, to the attacker), and
another client keeps being served. A real `gmchain dev` process with its default limits; the
second attacker connects from 127.0.0.2 (Linux routes all of 127/8 to the loopback interface).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.node_helpers import NodeProcess, RpcSession, running_dev_node

START_DEADLINE_S = 120.0
BOUND_S = 60.0  # generous bound on a condition a loaded 2-core machine must still reach


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    with running_dev_node(tmp_path, deadline_s=START_DEADLINE_S) as proc:
        yield proc


def _waits_batch(n: int, timeout_ms: int = 30_000) -> str:
    return json.dumps(
        [
            {
                "jsonrpc": "2.0",
                "id": i,
                "method": "gm_waitForReceipt",
                "params": ["0x" + secrets.token_hex(32), timeout_ms],
            }
            for i in range(n)
        ]
    )


def _requests_seen(port: int, method: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    found = re.search(rf'gmchain_rpc_requests_total{{method="{method}"}} (\d+)', text)
    return int(found.group(1)) if found else 0


def _victim_calls(rpc: RpcSession) -> list[Any]:
    """What an unrelated client does: reads, and a short wait of its own."""
    return [
        rpc.post({"jsonrpc": "2.0", "id": 1, "method": "gm_blockNumber"}),
        rpc.post({"jsonrpc": "2.0", "id": 2, "method": "gm_getBlockByNumber", "params": [0]}),
        rpc.post(
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "gm_waitForReceipt",
                "params": ["0x" + "ab" * 32, 50],
            }
        ),
    ]


def _assert_served(replies: list[Any]) -> None:
    for reply in replies:
        assert "error" not in reply, f"another client's request failed: {reply}"


async def _flood(url: str, messages: int, local_addr: str | None = None) -> list[Any]:
    """Open a WebSocket and send `messages` batches of 100 waits, then one single wait; return
    the open session and socket (the caller closes them)."""
    connector = aiohttp.TCPConnector(local_addr=(local_addr, 0) if local_addr else None)
    session = aiohttp.ClientSession(connector=connector)
    ws = await session.ws_connect(url)
    for _ in range(messages):
        await ws.send_str(_waits_batch(100))
    await ws.send_str(_waits_batch(1).strip("[]"))
    return [session, ws]


def test_eleven_wait_batches_on_one_websocket_lock_nobody_out(node: NodeProcess) -> None:
    asyncio.run(_scenario(node))


async def _scenario(node: NodeProcess) -> None:
    url = f"http://127.0.0.1:{node.port}/ws"
    victim = RpcSession(node.port)
    opened: list[Any] = []
    try:
        before = await asyncio.to_thread(_requests_seen, node.port, "gm_waitForReceipt")
        # The reproduction: 11 x 100 waits on one socket, from the victim's own address.
        opened.append(await _flood(url, 11))
        end = time.monotonic() + BOUND_S
        while await asyncio.to_thread(_requests_seen, node.port, "gm_waitForReceipt") < (
            before + 1101
        ):
            assert time.monotonic() < end, "the node never saw the attacker's 1,101 waits"
            await asyncio.sleep(0.1)
        # The attacker's requests are parsed; for the next 3 s every call of the victim succeeds.
        for _ in range(6):
            _assert_served(await asyncio.to_thread(_victim_calls, victim))
            await asyncio.sleep(0.5)
        # The caps are real: the attacker's own single wait beyond its connection's cap is refused.
        ws = opened[0][1]
        while True:
            reply = json.loads(await asyncio.wait_for(ws.receive_str(), BOUND_S))
            if isinstance(reply, dict):
                break
        assert reply["error"]["code"] == -31201, reply

        # More sockets from another address: that address's cap fills, the victim's does not.
        for _ in range(12):
            opened.append(await _flood(url, 2, local_addr="127.0.0.2"))
        await asyncio.sleep(1.0)
        for _ in range(4):
            _assert_served(await asyncio.to_thread(_victim_calls, victim))
            await asyncio.sleep(0.5)
    finally:
        victim.close()
        for session, ws in opened:
            await ws.close()
            await session.close()

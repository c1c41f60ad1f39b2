"""Issue 10, fault 5 (review): one client must not grow the node's memory by gigabytes.

On main before this fix, one WebSocket sending 64 messages, each a `gm_waitForReceipt` (30 s)
just under 1 MiB with an extra top-level member `"pad": [{}, {}, ...]`, grew the node's RSS by
about 1.6 GiB: every parsed message (~25x its size in Python objects) stayed alive for the whole
wait. Now a request object with members other than jsonrpc/method/params/id is refused (-32600),
a message with too many JSON elements is refused before it is parsed, nothing but the parsed
params stays alive during a wait, and the request bytes one address has in flight are bounded.
A real `gmchain dev` process with its default limits.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.node_helpers import NodeProcess, rss_mib, running_dev_node

START_DEADLINE_S = 120.0
BOUND_S = 60.0
MESSAGES = 64
RSS_GROWTH_BOUND_MIB = 200


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    with running_dev_node(tmp_path, deadline_s=START_DEADLINE_S) as proc:
        yield proc


def _padded_wait(i: int, pad: str) -> str:
    head = f'{{"jsonrpc":"2.0","id":{i},"method":"gm_waitForReceipt",'
    return head + f'"params":["0x{secrets.token_hex(32)}",30000],"pad":{pad}}}'


def test_padded_waits_on_one_websocket_do_not_grow_memory(node: NodeProcess) -> None:
    asyncio.run(_scenario(node))


async def _scenario(node: NodeProcess) -> None:
    assert node.proc is not None
    pid = node.proc.pid
    before = rss_mib(pid)
    pad = "[" + ",".join(["{}"] * ((1024 * 1024 - 300) // 3)) + "]"
    peak = before
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{node.port}/ws", max_msg_size=0) as ws,
    ):
        for i in range(MESSAGES):
            msg = _padded_wait(i, pad)
            assert len(msg) <= 1024 * 1024
            await ws.send_str(msg)
            peak = max(peak, rss_mib(pid))
        # Every message gets its reply (refusals come at once; nothing waits 30 s). A message
        # refused before it is parsed has no id: its reply's id is null.
        replies = []
        end = time.monotonic() + BOUND_S
        while len(replies) < MESSAGES:
            left = end - time.monotonic()
            assert left > 0, f"only {len(replies)} of {MESSAGES} replies within {BOUND_S} s"
            replies.append(json.loads(await asyncio.wait_for(ws.receive_str(), left)))
            peak = max(peak, rss_mib(pid))
        growth = peak - before
        assert growth < RSS_GROWTH_BOUND_MIB, (
            f"node RSS grew by {growth} MiB ({before} -> {peak}) under {MESSAGES} padded waits"
        )
        for reply in replies:
            assert reply.get("error", {}).get("code") == -32600, reply
            message = reply["error"]["message"]
            assert "rpc_max_json_elements" in message or "'pad'" in message, reply
        # The same wait without the padding is still served (and waits).
        await ws.send_str(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": "plain",
                    "method": "gm_waitForReceipt",
                    "params": ["0x" + secrets.token_hex(32), 100],
                }
            )
        )
        reply = json.loads(await asyncio.wait_for(ws.receive_str(), BOUND_S))
        assert reply == {"jsonrpc": "2.0", "id": "plain", "result": None}, reply

"""Issue 10, fault 6: a WebSocket client that does not read must not grow the node without bound.

On 0921e03 the send queue was bounded by a count of messages (1,024), not by their bytes: 200
`rpc.discover` batches (1.2 MB sent) queued about 4 MB of reply each and grew the node by 455 MiB,
never returned. Now queued bytes are bounded per connection (`rpc_ws_send_queue_bytes`) and in
total (`rpc_ws_send_total_bytes`), a connection over its budget is closed with 1008, and nothing
it sent after that is executed. A real `gmchain dev` process with its default limits; its growth
is read from /proc/<pid>/status.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from gmchain.node.rpc import RpcConfig, RpcServer, load_openrpc
from tests.node_helpers import NodeProcess, rss_mib, running_dev_node
from tests.test_rpc_fake import FakeNode

START_DEADLINE_S = 120.0
BOUND_S = 120.0  # generous bound on a condition a loaded 2-core machine must still reach
BATCHES = 200
GROWTH_BOUND_MIB = 160  # two per-connection budgets (32 MiB each) with room; base grew ~455


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    with running_dev_node(tmp_path, deadline_s=START_DEADLINE_S) as proc:
        yield proc


def _metric(port: int, text_re: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    found = re.search(text_re, text)
    return int(found.group(1)) if found else 0


def test_non_reading_client_is_closed_and_the_node_stays_small(node: NodeProcess) -> None:
    assert node.proc is not None
    pid = node.proc.pid
    batch = json.dumps([{"jsonrpc": "2.0", "id": i, "method": "rpc.discover"} for i in range(100)])
    texts, close_code = asyncio.run(_flood(node, pid, batch))
    assert close_code == 1008, f"closed with {close_code} after {texts} replies"
    assert texts < BATCHES // 4, f"{texts} replies of 200 were queued for a client not reading"


async def _flood(node: NodeProcess, pid: int, batch: str) -> tuple[int, int | None]:
    url = f"http://127.0.0.1:{node.port}/ws"
    before = peak = rss_mib(pid)
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url, max_msg_size=0, autoclose=False)
        for _ in range(BATCHES):
            try:
                await ws.send_str(batch)
            except ConnectionError:  # the server closed us: the fix at work
                break
        # Never read until the node has either run all 200 batches or dropped the socket.
        end = time.monotonic() + BOUND_S
        while True:
            peak = max(peak, rss_mib(pid))
            done = _metric(node.port, r'gmchain_rpc_requests_total\{method="rpc.discover"\} (\d+)')
            conns = _metric(node.port, r"gmchain_rpc_ws_connections (\d+)")
            if done >= 100 * BATCHES or conns == 0:
                break
            assert time.monotonic() < end, f"neither all batches ran nor the socket closed: {done}"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        peak = max(peak, rss_mib(pid))
        growth = peak - before
        print(f"rss {before:.0f} -> peak {peak:.0f} MiB, rpc.discover run {done}, conns {conns}")
        assert growth < GROWTH_BOUND_MIB, f"the node grew by {growth:.0f} MiB (from {before:.0f})"
        # Now read what was queued for us: a bounded number of replies, then the close.
        texts, close_code = 0, None
        while texts <= BATCHES:
            msg = await asyncio.wait_for(ws.receive(), BOUND_S)
            if msg.type == aiohttp.WSMsgType.TEXT:
                texts += 1
                continue
            if msg.type == aiohttp.WSMsgType.CLOSE:
                close_code = msg.data
            break
        await ws.close()
    return texts, close_code


# --- the same rules in-process, with small limits (node/rpc.py rules 3 and 6) -------------------

DISCOVER = {"jsonrpc": "2.0", "method": "rpc.discover"}
DOC_BYTES = len(json.dumps(load_openrpc(), separators=(",", ":")))


async def _get_metrics(session: aiohttp.ClientSession, port: int) -> str:
    async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
        return await resp.text()


def _metric_text(text: str, name: str) -> int:
    if name == "requests":
        found = re.search(r'gmchain_rpc_requests_total\{method="rpc.discover"\} (\d+)', text)
    else:
        found = re.search(rf"^gmchain_rpc_{name} (\d+)$", text, re.M)
    return int(found.group(1)) if found else 0


async def test_one_reply_is_bounded_in_bytes() -> None:
    """A 10-entry batch whose reply would be 10 OpenRPC documents: the entries past the limit
    are -31002 errors, the reply stays under `max_response_bytes`."""
    limit = 3 * DOC_BYTES
    config = RpcConfig(max_response_bytes=limit, ws_send_queue_bytes=limit)
    server = RpcServer(FakeNode(), host="127.0.0.1", port=0, config=config)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            batch = [{**DISCOVER, "id": i} for i in range(10)]
            url = f"http://127.0.0.1:{server.port}/"
            async with session.post(url, json=batch) as resp:
                text = await resp.text()
            assert len(text) <= limit
            replies = json.loads(text)
            assert len(replies) == 10
            served = [r for r in replies if "result" in r]
            too_large = [r for r in replies if r.get("error", {}).get("code") == -31002]
            assert len(served) == 2 and len(too_large) == 8, [list(r) for r in replies]
            info = {"jsonrpc": "2.0", "id": 1, "method": "gm_nodeInfo"}
            async with session.post(url, json=info) as resp:
                limits = (await resp.json())["result"]["limits"]
            assert limits["maxResponseBytes"] == limit  # clients can see the limit
    finally:
        await server.stop()


async def test_total_budget_closes_the_largest_queue() -> None:
    """Three clients that do not read, each under its own budget, together over the total: the
    one holding most is closed with 1008; the server's queued bytes end within the total, and a
    reading client is still served."""
    per_conn, total = 48 * 1024 * 1024, 64 * 1024 * 1024
    config = RpcConfig(ws_send_queue_bytes=per_conn, ws_send_total_bytes=total)
    server = RpcServer(FakeNode(), host="127.0.0.1", port=0, config=config)
    await server.start()
    url = f"http://127.0.0.1:{server.port}/ws"
    batch = json.dumps([{**DISCOVER, "id": i} for i in range(100)])  # 100 documents of reply
    # ~26 MB queued per client whatever the document's size: under 48 each, ~78 in all, and
    # ~52 once the largest is closed (under the total of 64: exactly one is closed)
    sends = max(1, -(-26 * 1024 * 1024 // (100 * DOC_BYTES)))  # rounded up: at least ~26 MB
    try:
        async with aiohttp.ClientSession() as session:
            socks = [await session.ws_connect(url, max_msg_size=0) for _ in range(3)]
            for ws in socks:
                for _ in range(sends):
                    await ws.send_str(batch)
            end = time.monotonic() + BOUND_S
            while _metric_text(await _get_metrics(session, server.port), "ws_connections") > 2:
                assert time.monotonic() < end, "the total send budget was never enforced"
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # whatever was still running has queued its reply
            metrics = await _get_metrics(session, server.port)
            assert _metric_text(metrics, "ws_queued_bytes") <= total
            assert _metric_text(metrics, "ws_connections") == 2, "not exactly one was closed"
            codes = []
            for ws in socks:  # read: the closed one gets its close frame after what was sent
                msg = await asyncio.wait_for(ws.receive(), BOUND_S)
                while msg.type == aiohttp.WSMsgType.TEXT and not ws.closed:
                    try:
                        msg = await asyncio.wait_for(ws.receive(), 2.0)
                    except TimeoutError:  # an open socket whose queue is drained
                        break
                codes.append(msg.data if msg.type == aiohttp.WSMsgType.CLOSE else "open")
            assert sorted(codes, key=str) == [1008, "open", "open"], codes
            async with session.ws_connect(url) as reader:
                await reader.send_str(
                    json.dumps({"jsonrpc": "2.0", "id": 1, "method": "gm_blockNumber"})
                )
                assert json.loads(await reader.receive_str(timeout=BOUND_S))["result"] == 0
            for ws in socks:
                await ws.close()
    finally:
        await server.stop()

"""The HTTP loopback ceiling for queries: what a minimal aiohttp + uvloop JSON-RPC server answers
per second on this machine, driven by the bench's own query client (issue 15: "block and tx
queries ≈ 0.55× of what aiohttp with uvloop serves on loopback here").

Rules this module keeps:
1. The server does nothing a node's query does not also do, and nothing more: one POST route,
   the JSON body parsed (`json.loads`), and a fixed result of `REPLY_BYTES` spliced with the
   request's id into the reply — the size of a `gm_getBlockByNumber(h, false)` answer for a
   block of two transactions (2,059 bytes here), so the kernel, aiohttp's parser and writer, and
   the client's JSON decoding cost what they cost for a real block query. No access log (the
   node has none on the RPC path either).
2. It runs in its own spawned process on uvloop, like a node (bench.nodes rule 1), and the
   client is the query client itself (bench.loadgen `run_queries`, kind "block", the same
   connections, in its own process: bench.loadgen rule 2). So a query kind's rate divided by
   this one is the share of the HTTP ceiling the node keeps (`ratio_to_http_loopback`).
3. It is a microbenchmark: measured before the nodes start, for `--micro-seconds`, and only when
   queries are measured (`--query-seconds` > 0).
"""

from __future__ import annotations

import json
import multiprocessing as mp
from multiprocessing.connection import Connection
from typing import Any

from gmchain.bench.loadgen import QUERY_CONNECTIONS, QueryPlan

__all__ = ["REPLY_BYTES", "fixed_result", "measure_loopback", "with_loopback_ratios"]

REPLY_BYTES = 2048  # rule 1: the whole reply, envelope included


def fixed_result(reply_bytes: int = REPLY_BYTES) -> str:
    """A JSON object whose reply `{"jsonrpc":"2.0","id":N,"result":...}` is `reply_bytes` long
    for a one-digit id (rule 1): a hex string, as most of a block summary is."""
    envelope = len('{"jsonrpc":"2.0","id":1,"result":}')
    pad = max(0, reply_bytes - envelope - len('{"data":"0x"}'))
    return '{"data":"0x' + "ab" * (pad // 2) + "a" * (pad % 2) + '"}'


def _serve(out: Connection, reply_bytes: int) -> None:
    """Rule 1, in the server process: send the port, serve until `out` is closed by the parent."""
    import asyncio

    from aiohttp import web

    result = fixed_result(reply_bytes)

    async def handle(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        reply = '{"jsonrpc":"2.0","id":' + json.dumps(body.get("id")) + ',"result":' + result + "}"
        return web.Response(text=reply, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        out.send(runner.addresses[0][1])  # (host, port) of the one bound socket
        closed = asyncio.Event()
        asyncio.get_running_loop().add_reader(out.fileno(), closed.set)  # EOF: the parent is done
        await closed.wait()
        await runner.cleanup()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:  # pragma: no cover - uvloop is a node dependency on Linux
        asyncio.run(main())


def measure_loopback(seconds: float, connections: int = QUERY_CONNECTIONS) -> dict[str, Any]:
    """Rules 2 and 3: the query client's rate against the loopback server for `seconds`."""
    from gmchain.bench.run import _child_query, _in_child

    ctx = mp.get_context("spawn")
    mine, theirs = ctx.Pipe()  # a socket pair: closing `mine` is EOF for the server
    proc = ctx.Process(target=_serve, args=(theirs, REPLY_BYTES), daemon=True)
    proc.start()
    theirs.close()
    try:
        if not mine.poll(60):
            raise RuntimeError("the loopback server did not start")
        port = int(mine.recv())
        plan = QueryPlan(
            port=port,
            kind="block",
            tx_ids=[],
            record_ids=[],
            max_height=1000,
            seconds=seconds,
            connections=connections,
        )
        res: dict[str, Any] = _in_child(_child_query, plan, timeout=seconds + 120)
    finally:
        mine.close()  # the server sees EOF and stops
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    return {
        "queries_per_s": res["queries_per_s"],
        "ok": res["ok"],
        "errors": res["errors"],
        "latency_ms": res["latency_ms"],
        "connections": connections,
        "seconds": res["seconds"],
        "reply_bytes": REPLY_BYTES,
        "server": "aiohttp + uvloop, one POST route, json.loads of the body, fixed result",
    }


def with_loopback_ratios(
    queries: list[dict[str, Any]], micro: dict[str, Any]
) -> list[dict[str, Any]]:
    """Each query kind's `ratio_to_http_loopback` (rule 2; None when the ceiling is unknown)."""
    ceiling = micro.get("http_loopback_qps")
    for q in queries:
        q["ratio_to_http_loopback"] = round(q["queries_per_s"] / ceiling, 3) if ceiling else None
    return queries

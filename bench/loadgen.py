"""The load generator: an open-loop sender and a commit watcher, in their own process.

Rules this module keeps:
1. Open loop (no coordinated omission): transaction i is *due* at t0 + i / rate whatever the node
   does; a batch of N leaves when its last transaction is due; latency is commit time minus each
   transaction's due time, so time spent queued behind a slow node is counted (G. Tene, "How NOT
   to measure latency").
2. The generator never shares the node's event loop: `run_load` runs in a separate OS process
   (multiprocessing, spawn) with its own asyncio loop, and reports its own CPU time.
3. HTTP/1.1 keep-alive on raw asyncio streams, a fixed pool of connections spread over the nodes'
   RPC ports; JSON-RPC batches of up to 100 requests (the server's cap). A refused connection
   fails over to the next node (what an integrator's SDK does) and is counted with its reason.
4. Committed = the transaction's id is in a block announced on the `newHeads` WebSocket of a
   node (a node announces a head only after its QC and synced batch: node/service.py); every
   node is watched and the commit time is the first announcement of that height to arrive
   here. Heights skipped by the subscription are fetched too. Validity (receipt status OK) is
   checked after the run, outside the window.
5. All times are `time.monotonic()` (CLOCK_MONOTONIC, shared by every process on the machine).
   Block timestamps are the proposer's wall clock; `wall_minus_mono` (rule 7) places them.
6. Every 5 s one progress line on stderr names the phase and the time left in it and in the run,
   then the counts, so an operator sees a stall while it happens.
7. For the latency split (bench.report rule 5) every committed transaction's height is kept,
   with the timestamp of every height seen (from newHeads, or from the block fetched to fill a
   gap) and the offset between the wall clock and the monotonic clock, read once at the start.
   The nodes stamp blocks from their wall clock, so the split is exact on one machine and off by
   the clock skew between machines otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "QUERY_CONNECTIONS",
    "LoadPlan",
    "LoadResult",
    "QueryPlan",
    "hms",
    "rpc_call",
    "run_load",
    "run_queries",
]

QUERY_CONNECTIONS = 32  # the closed-loop query client's connections (and bench/loopback.py's)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadPlan:
    ports: list[int]  # RPC ports of the nodes to send to (round-robin by connection)
    watch_ports: list[int]  # nodes whose newHeads define commit (first reachable one is used)
    raws: list[bytes]
    ids: list[bytes]
    rate: float  # offered transactions per second
    batch: int = 1
    connections: int = 32
    start_at: float = 0.0  # monotonic time of the first due transaction (0: now + 0.5 s)
    drain_s: float = 15.0  # after the last send, wait this long for outstanding commits
    verify_receipts: int = 1000  # receipts checked after the run (all if fewer committed)
    host: str = "127.0.0.1"
    label: str = "load"  # the phase, named in every progress line (rule 6)
    phase_end_at: float = 0.0  # monotonic end of the whole phase (0: this plan's last due time)
    run_end_at: float = 0.0  # monotonic estimate of the end of the whole run (0: unknown)


@dataclass(slots=True, kw_only=True)
class LoadResult:
    t0: float
    due: list[float]
    sent: list[float]  # when the request left (nan if never)
    acked: list[float]  # when the node acknowledged (nan if refused)
    committed: list[float]  # when the commit was seen (nan if never)
    errors: Counter[str] = field(default_factory=Counter)  # reason -> count of refused txs
    heads: list[tuple[int, float, int, int]] = field(default_factory=list)  # (h, t, txs, ts_ms)
    # Rule 7: the height each transaction committed at (-1: not seen), every seen height's
    # block timestamp (ms, the proposer's wall clock), and time.time() - time.monotonic() here.
    heights: list[int] = field(default_factory=list)
    stamps: dict[int, int] = field(default_factory=dict)
    wall_minus_mono: float = float("nan")
    receipts_checked: int = 0
    receipts_ok: int = 0
    receipt_failures: Counter[str] = field(default_factory=Counter)
    cpu_s: float = 0.0
    wall_s: float = 0.0
    watched_port: int = 0


_NAN = float("nan")


class _Http:
    """One HTTP/1.1 keep-alive connection (rule 3)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._r: asyncio.StreamReader | None = None
        self._w: asyncio.StreamWriter | None = None

    async def post(self, body: bytes, timeout: float = 30.0) -> bytes:
        if self._w is None or self._w.is_closing():
            self._r, self._w = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), 5.0
            )
        assert self._r is not None and self._w is not None
        self._w.write(
            b"POST / HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (self.host.encode(), self.port, len(body)) + body
        )
        try:
            return await asyncio.wait_for(self._read(), timeout)
        except BaseException:
            self.close()
            raise

    async def _read(self) -> bytes:
        assert self._r is not None
        head = await self._r.readuntil(b"\r\n\r\n")
        length = -1
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length < 0:
            raise ConnectionError("reply without Content-Length")
        return await self._r.readexactly(length)

    def close(self) -> None:
        if self._w is not None:
            self._w.close()
        self._w = self._r = None


async def rpc_call(conn: _Http, method: str, params: list[Any]) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    reply = json.loads(await conn.post(body))
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


def _reason(err: Any) -> str:
    if not isinstance(err, dict):
        return "malformed reply"
    msg = str(err.get("message", ""))
    words = msg.split(":")[0][:48]
    return f"{err.get('code')}: {words}"


class _Sender:
    def __init__(self, plan: LoadPlan, res: LoadResult, t0: float) -> None:
        self.plan, self.res, self.t0 = plan, res, t0
        self.queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        n = len(plan.raws)
        self.hexes = ["0x" + r.hex() for r in plan.raws]
        self.dead_until = dict.fromkeys(plan.ports, 0.0)
        self.n = n

    async def schedule(self) -> None:
        """Put batch [s, e) on the queue when its last transaction is due (rule 1)."""
        b, rate, t0 = self.plan.batch, self.plan.rate, self.t0
        for s in range(0, self.n, b):
            e = min(self.n, s + b)
            due = t0 + (e - 1) / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.queue.put_nowait((s, e))

    async def worker(self, idx: int) -> None:
        conns = {p: _Http(self.plan.host, p) for p in self.plan.ports}
        home = idx % len(self.plan.ports)
        while True:
            s, e = await self.queue.get()
            try:
                await self._send(conns, home, s, e)
            except Exception as exc:  # any failure is counted, and the queue still drains
                self.res.errors[f"client: {type(exc).__name__}"] += e - s
            finally:
                self.queue.task_done()

    async def _send(self, conns: dict[int, _Http], home: int, s: int, e: int) -> None:
        ports = self.plan.ports
        body = (
            "["
            + ",".join(
                f'{{"jsonrpc":"2.0","id":{i},"method":"gm_sendRawTransaction",'
                f'"params":["{self.hexes[i]}"]}}'
                for i in range(s, e)
            )
            + "]"
        ).encode()
        reason = "not sent"
        for k in range(len(ports)):
            port = ports[(home + k) % len(ports)]
            now = time.monotonic()
            if self.dead_until[port] > now and k < len(ports) - 1:
                continue
            for i in range(s, e):
                self.res.sent[i] = now
            try:
                data = await conns[port].post(body)
            except (OSError, asyncio.IncompleteReadError, ConnectionError, TimeoutError) as exc:
                self.dead_until[port] = time.monotonic() + 1.0
                reason = f"connection: {type(exc).__name__}"
                continue
            self._record(s, e, data)
            return
        self.res.errors[reason] += e - s

    def _record(self, s: int, e: int, data: bytes) -> None:
        now = time.monotonic()
        try:
            replies = json.loads(data)
        except ValueError:
            self.res.errors["unparseable reply"] += e - s
            return
        if isinstance(replies, dict):  # a whole-batch error
            self.res.errors[_reason(replies.get("error"))] += e - s
            return
        for rep in replies:
            i = rep.get("id")
            if not isinstance(i, int) or not s <= i < e:
                continue
            if "error" in rep:
                self.res.errors[_reason(rep["error"])] += 1
            else:
                self.res.acked[i] = now


class _Watcher:
    """Commit times from every node's newHeads + gm_getBlockByNumber (rule 4).

    Every node is watched, so a lagging, killed or restarting node does not hide commits: a
    height counts at its first announcement by any node (a block is committed, with its QC, as
    soon as one honest node has committed it; safety makes all nodes agree on it). The block is
    fetched from the node that announced it, or from any other if that one fails.
    """

    def __init__(self, plan: LoadPlan, res: LoadResult) -> None:
        self.plan, self.res = plan, res
        self.index = {"0x" + t.hex(): i for i, t in enumerate(plan.ids)}
        self.last_height = -1  # highest height announced by any node
        self.seen: set[int] = set()
        self.committed = 0
        self.fetch_q: asyncio.Queue[tuple[int, float, int]] = asyncio.Queue()
        self.conns = {p: _Http(plan.host, p) for p in plan.watch_ports}

    async def run(self) -> None:
        import aiohttp

        for port in self.plan.watch_ports:
            with contextlib.suppress(OSError, RuntimeError, asyncio.IncompleteReadError):
                self.last_height = int(await rpc_call(self.conns[port], "gm_blockNumber", []))
                self.res.watched_port = port
                break
        async with aiohttp.ClientSession() as session:
            tasks = [asyncio.create_task(self._watch(session, p)) for p in self.plan.watch_ports]
            tasks.append(asyncio.create_task(self._fetch()))
            try:
                await asyncio.gather(*tasks)
            finally:
                for t in tasks:
                    t.cancel()

    async def _watch(self, session: Any, port: int) -> None:
        import aiohttp

        sub = {"jsonrpc": "2.0", "id": 1, "method": "gm_subscribe", "params": ["newHeads"]}
        while True:
            try:
                async with session.ws_connect(f"http://{self.plan.host}:{port}/ws") as ws:
                    await ws.send_json(sub)
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        head = json.loads(msg.data).get("params", {}).get("result")
                        if isinstance(head, dict):
                            self._on_head(head, port)
            except (aiohttp.ClientError, OSError, ValueError):
                pass
            await asyncio.sleep(0.5)  # the node is down or restarting: try again

    def _on_head(self, head: dict[str, Any], port: int) -> None:
        now = time.monotonic()
        h = int(head["number"])
        if h in self.seen:
            return
        self.seen.add(h)
        self.res.heads.append((h, now, int(head["txCount"]), int(head["timestampMs"])))
        self.res.stamps[h] = int(head["timestampMs"])
        for missed in range(self.last_height + 1, h):
            if missed not in self.seen:
                self.seen.add(missed)
                self.fetch_q.put_nowait((missed, now, port))
        self.fetch_q.put_nowait((h, now, port))
        self.last_height = max(self.last_height, h)

    async def _fetch(self) -> None:
        ports = self.plan.watch_ports
        while True:
            h, t, port = await self.fetch_q.get()
            block = None
            order = [port] + [p for p in ports if p != port]
            for attempt in range(40):
                p = order[attempt % len(order)]
                try:
                    block = await rpc_call(self.conns[p], "gm_getBlockByNumber", [h, False])
                except (OSError, RuntimeError, asyncio.IncompleteReadError, TimeoutError):
                    await asyncio.sleep(0.05)
                    continue
                if block is not None:
                    break
            if block is None:
                continue
            self.res.stamps[h] = int(block["timestampMs"])
            for tx in block["transactions"]:
                i = self.index.get(tx)
                if i is not None and self.res.committed[i] != self.res.committed[i]:
                    self.res.committed[i] = t
                    self.res.heights[i] = h
                    self.committed += 1


async def _check_receipts(plan: LoadPlan, res: LoadResult) -> None:
    done = [i for i, t in enumerate(res.committed) if t == t]
    if len(done) > plan.verify_receipts:
        done = random.Random(1).sample(done, plan.verify_receipts)
    best = (-1, plan.ports[0])  # ask the node that is furthest ahead
    for p in plan.watch_ports:
        with contextlib.suppress(OSError, RuntimeError, asyncio.IncompleteReadError, TimeoutError):
            best = max(best, (int(await rpc_call(_Http(plan.host, p), "gm_blockNumber", [])), p))
    port = best[1]
    conns = [_Http(plan.host, port) for _ in range(8)]
    chunks = [done[k : k + 100] for k in range(0, len(done), 100)]

    async def go(conn: _Http, mine: list[list[int]]) -> None:
        for chunk in mine:
            body = json.dumps(
                [
                    {
                        "jsonrpc": "2.0",
                        "id": i,
                        "method": "gm_getTransactionReceipt",
                        "params": ["0x" + plan.ids[i].hex()],
                    }
                    for i in chunk
                ]
            ).encode()
            for rep in json.loads(await conn.post(body)):
                r = rep.get("result")
                res.receipts_checked += 1
                if isinstance(r, dict) and r.get("statusName") == "OK":
                    res.receipts_ok += 1
                else:
                    why = r.get("error") if isinstance(r, dict) else "no receipt"
                    res.receipt_failures[str(why)[:60]] += 1

    await asyncio.gather(*(go(c, chunks[k :: len(conns)]) for k, c in enumerate(conns)))
    for c in conns:
        c.close()


async def _progress(res: LoadResult, sender: _Sender, watcher: _Watcher) -> None:
    """Rule 6."""
    import sys

    plan = sender.plan
    phase_end = plan.phase_end_at or res.t0 + len(res.due) / plan.rate
    while True:
        await asyncio.sleep(5.0)
        now = time.monotonic()
        t = now - res.t0
        acked = sum(1 for x in res.acked if x == x)
        left = f"{hms(phase_end - now)} left in phase" if now < phase_end else "draining"
        if plan.run_end_at:
            left += f", ~{hms(plan.run_end_at - now)} in run"
        print(
            f"[bench]   {plan.label}: {left}; t={t:5.1f}s "
            f"due={min(len(res.due), int(t * plan.rate))} acked={acked} "
            f"refused={sum(res.errors.values())} committed={watcher.committed} "
            f"queued_batches={sender.queue.qsize()} head={watcher.last_height}",
            file=sys.stderr,
            flush=True,
        )


def hms(seconds: float) -> str:
    """A duration for people: `42 s`, `3 min 05 s`, `2 h 10 min`."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


async def _run_load(plan: LoadPlan) -> LoadResult:
    n = len(plan.raws)
    t0 = plan.start_at or time.monotonic() + 0.5
    res = LoadResult(
        t0=t0,
        due=[t0 + i / plan.rate for i in range(n)],
        sent=[_NAN] * n,
        acked=[_NAN] * n,
        committed=[_NAN] * n,
        heights=[-1] * n,
        wall_minus_mono=_wall_minus_mono(),
    )
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.monotonic()
    watcher = _Watcher(plan, res)
    watch_task = asyncio.create_task(watcher.run())
    await asyncio.sleep(max(0.0, t0 - time.monotonic()))
    sender = _Sender(plan, res, t0)
    progress = asyncio.create_task(_progress(res, sender, watcher))
    workers = [asyncio.create_task(sender.worker(k)) for k in range(plan.connections)]
    await sender.schedule()
    # Overloaded nodes leave a backlog of due batches; give it time to drain (open loop: their
    # latency still counts from the due time), but never hang forever.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(sender.queue.join(), 600.0 + n / plan.rate)
    for w in workers:
        w.cancel()
    acked = sum(1 for t in res.acked if t == t)
    deadline = time.monotonic() + plan.drain_s
    while watcher.committed < acked and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)
    watch_task.cancel()
    progress.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await watch_task
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    res.cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    res.wall_s = time.monotonic() - wall0
    with contextlib.suppress(OSError, ValueError, asyncio.IncompleteReadError):
        await _check_receipts(plan, res)
    return res


def _wall_minus_mono() -> float:
    """Rule 7: the offset between the wall clock and CLOCK_MONOTONIC, read where the two reads
    are closest together (of 5 tries), so block timestamps can be placed on the monotonic axis."""
    best = (math.inf, 0.0)
    for _ in range(5):
        a = time.monotonic()
        w = time.time()
        b = time.monotonic()
        best = min(best, (b - a, w - (a + b) / 2))
    return best[1]


def _loop_run(coro: Any) -> Any:
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def run_load(plan: LoadPlan) -> LoadResult:
    """Run one open-loop load phase (call in a child process: rule 2)."""
    return _loop_run(_run_load(plan))  # type: ignore[no-any-return]


# --- queries -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryPlan:
    port: int
    kind: str  # "block" | "tx" | "evidence" | "proof"
    tx_ids: list[str]  # 0x hex of committed transactions
    record_ids: list[str]
    max_height: int
    seconds: float = 5.0
    connections: int = QUERY_CONNECTIONS
    host: str = "127.0.0.1"
    count: int = 0  # > 0: stop after this many queries (bench/querycost.py), not at `seconds`


def _query_body(plan: QueryPlan, rng: random.Random) -> bytes:
    params: list[Any]
    if plan.kind == "block":
        method, params = "gm_getBlockByNumber", [rng.randint(1, plan.max_height), False]
    elif plan.kind == "tx":
        method, params = "gm_getTransactionByHash", [rng.choice(plan.tx_ids)]
    elif plan.kind == "evidence":
        method, params = "gm_call", ["evidence", "get", [rng.choice(plan.record_ids)]]
    else:
        method, params = "gm_getTransactionProof", [rng.choice(plan.tx_ids), None]
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()


async def _run_queries(plan: QueryPlan) -> dict[str, Any]:
    from gmchain.bench.hdr import Histogram

    hist = Histogram()
    errors: Counter[str] = Counter()
    done = issued = 0
    stop_at = time.monotonic() + (plan.seconds if plan.count <= 0 else 3600.0)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)

    async def worker(k: int) -> None:
        nonlocal done, issued
        rng = random.Random(k)
        conn = _Http(plan.host, plan.port)
        while (t := time.monotonic()) < stop_at and (plan.count <= 0 or issued < plan.count):
            issued += 1
            try:
                reply = json.loads(await conn.post(_query_body(plan, rng)))
            except (OSError, asyncio.IncompleteReadError, ConnectionError, TimeoutError) as exc:
                errors[type(exc).__name__] += 1
                await asyncio.sleep(0.01)
                continue
            if "error" in reply or reply.get("result") is None:
                errors[_reason(reply.get("error")) if "error" in reply else "null result"] += 1
            else:
                done += 1
                hist.record(int((time.monotonic() - t) * 1e6))
        conn.close()

    t0 = time.monotonic()
    await asyncio.gather(*(worker(k) for k in range(plan.connections)))
    wall = time.monotonic() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "kind": plan.kind,
        "queries_per_s": round(done / wall, 1),
        "ok": done,
        "errors": dict(errors),
        "latency_ms": hist.summary_ms(),
        "connections": plan.connections,
        "seconds": round(wall, 3),
        "generator_cpu_s": round(
            (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime), 3
        ),
    }


def run_queries(plan: QueryPlan) -> dict[str, Any]:
    """Closed-loop query throughput of one kind (in a child process)."""
    return _loop_run(_run_queries(plan))  # type: ignore[no-any-return]

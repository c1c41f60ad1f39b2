"""A seeded fuzzer for a running node's JSON-RPC endpoint: `fuzz_rpc(url, n, seed) -> FuzzReport`.

Rules it keeps:
1. Every generated request is invalid by construction (malformed JSON, bad envelope, unknown
   method, a param of the wrong type or bad hex, an oversize body or batch, a garbage or mutated
   raw transaction) and carries an id where an id is needed for a reply, so the only correct answer
   to each one is a JSON-RPC error object with an integer code; anything else is a violation.
2. Method signatures come from the node's own OpenRPC document (`rpc.discover`), so the fuzzer
   follows the API as documented, not as implemented. Limits come from `gm_nodeInfo`.
3. The same seed generates the same requests (`random.Random(seed)`); requests are sent with a
   few concurrent workers. Whether the chain is unchanged is for the caller to judge: the report
   carries height and pool size before and after.

Usage against a real node: `python -m tests.rpc_fuzz http://127.0.0.1:8545 10000 1`.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

__all__ = ["FuzzReport", "fuzz_rpc", "fuzz_rpc_async"]


@dataclass(slots=True)
class FuzzReport:
    sent: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    codes: Counter[int] = field(default_factory=Counter)
    http_statuses: Counter[int] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    height_before: int = -1
    height_after: int = -1
    pending_before: int = -1
    pending_after: int = -1


@dataclass(frozen=True, slots=True)
class _Case:
    kind: str
    body: bytes
    expect_id: Any  # the id the reply must echo; `...` when the reply's id may be null
    batch: int = 0  # > 0: a batch whose reply must be a list of this many errors


_HEXDIGITS = "0123456789abcdef"


def _bad_hash(rng: random.Random) -> Any:
    choice = rng.randrange(9)
    good = "".join(rng.choice(_HEXDIGITS) for _ in range(64))
    return [
        good,  # no 0x
        "0x" + good[:-1],  # odd length
        "0x" + good[: rng.randrange(0, 62, 2)],  # too short
        "0x" + good + "00",  # too long
        "0x" + good[:10] + rng.choice("gxz!é ") + good[11:],  # not hex
        rng.randrange(-(2**40), 2**40),
        [good],
        {"h": good},
        "0X" + good,
    ][choice]


def _bad_int(rng: random.Random) -> Any:
    return rng.choice(
        [
            -1,
            -rng.randrange(1, 2**63),
            2**64 + rng.randrange(1000),
            1.5,
            "1",
            "0x1",
            True,
            False,
            [1],
            {},
        ]
    )


def _bad_bool(rng: random.Random) -> Any:
    return rng.choice([0, 1, "true", "false", [], {}, 2])


def _bad_str(rng: random.Random) -> Any:
    return rng.choice(["", "x" * rng.randrange(65, 300), 5, [], {}, True])


def _bad_array(rng: random.Random) -> Any:
    return rng.choice(["x", 5, {}, True, "[]"])


def _bad_hex(rng: random.Random) -> Any:
    return rng.choice(
        ["0x", "abcd", "0xabc", "0xzz", 12, ["0x00"], "0x" + "0g" * rng.randrange(1, 50)]
    )


def _breaker(schema: dict[str, Any]) -> Callable[[random.Random], Any] | None:
    ref = schema.get("$ref", "")
    if ref.endswith("/Hash"):
        return _bad_hash
    if ref.endswith("/Hex"):
        return _bad_hex
    return {
        "integer": _bad_int,
        "boolean": _bad_bool,
        "string": _bad_str,
        "array": _bad_array,
    }.get(schema.get("type", ""))


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    r = rng.randrange(8 if depth < 3 else 5)
    if r == 0:
        return rng.randrange(-(2**70), 2**70)
    if r == 1:
        return rng.choice([None, True, False, 0.5, -1e300])
    if r == 2:
        return "".join(rng.choice('0xabcdefgh\u00e9\u4e2d "\\') for _ in range(rng.randrange(20)))
    if r == 3:
        return "0x" + "".join(rng.choice(_HEXDIGITS) for _ in range(rng.randrange(0, 80)))
    if r == 4:
        return ""
    if r in (5, 6):
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {str(rng.randrange(100)): _random_json(rng, depth + 1) for _ in range(rng.randrange(3))}


def _enc(obj: Any) -> bytes:
    return json.dumps(obj).encode()


class _Gen:
    def __init__(
        self, rng: random.Random, doc: dict[str, Any], info: dict[str, Any], raw: bytes | None
    ):
        self.rng = rng
        self.methods = [m for m in doc["methods"]]
        self.names = [m["name"] for m in self.methods]
        limits = info.get("limits", {})
        self.max_body = int(limits.get("maxBodyBytes", 1 << 20))
        self.max_batch = int(limits.get("maxBatch", 100))
        self.raw = raw
        self.next_id = 0

    def _id(self) -> Any:
        self.next_id += 1
        return self.next_id if self.rng.random() < 0.7 else f"id-{self.next_id}"

    def _req(self, method: Any, params: Any, **extra: Any) -> tuple[dict[str, Any], Any]:
        rid = self._id()
        req = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params, **extra}
        return req, rid

    def case(self) -> _Case:
        kinds = [
            (self.malformed_json, 15),
            (self.bad_envelope, 15),
            (self.unknown_method, 10),
            (self.wrong_params, 30),
            (self.garbage_tx, 15),
            (self.mutated_tx, 10 if self.raw else 0),
            (self.bad_batch, 4),
            (self.oversize, 1),
        ]
        fns = [k for k, _ in kinds]
        return self.rng.choices(fns, weights=[w for _, w in kinds])[0]()

    def malformed_json(self) -> _Case:
        rng = self.rng
        req, _ = self._req("gm_blockNumber", [])
        text = _enc(req)
        r = rng.randrange(5)
        if r == 0:
            body = text[: rng.randrange(len(text) - 1)]
        elif r == 1:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
            body = b"\xff" + body  # never valid UTF-8 JSON
        elif r == 2:
            body = text.replace(b'"', b"'", 1)
        elif r == 3:
            body = text[:-1] + b",}"
        else:
            body = b'{"jsonrpc":"2.0","id":1,"method":"gm_blockNumber","params":[NaN]}'
        return _Case("malformed_json", body, ...)

    def bad_envelope(self) -> _Case:
        rng = self.rng
        method = rng.choice(self.names)
        rid = self._id()
        bad = rng.randrange(6)
        req: Any = {"jsonrpc": "2.0", "id": rid, "method": method, "params": []}
        expect: Any = rid
        if bad == 0:
            req["jsonrpc"] = rng.choice(["1.0", "2", 2.0, None, ""])
        elif bad == 1:
            req["id"] = rng.choice([True, 1.5, [1], {"a": 1}, False])
            expect = ...
        elif bad == 2:
            req["method"] = rng.choice([None, 5, [], {}, True])
        elif bad == 3:
            req["params"] = rng.choice(["x", 5, True])
        elif bad == 4:
            del req["jsonrpc"]
        else:
            req = rng.choice([5, "x", None, True, [], 0.5])
            expect = ...
        return _Case("bad_envelope", _enc(req), expect)

    def unknown_method(self) -> _Case:
        rng = self.rng
        while True:
            name = rng.choice(
                [
                    "".join(rng.choice("abcgm_XYZ.") for _ in range(rng.randrange(1, 30))),
                    rng.choice(self.names) + rng.choice(["x", "_", " ", "2"]),
                    rng.choice(self.names).upper(),
                    "eth_" + rng.choice(["call", "blockNumber", "sendRawTransaction"]),
                ]
            )
            if name not in self.names:
                break
        req, rid = self._req(name, [_random_json(rng) for _ in range(rng.randrange(3))])
        return _Case("unknown_method", _enc(req), rid)

    def wrong_params(self) -> _Case:
        rng = self.rng
        m = rng.choice(self.methods)
        params = m["params"]
        breakable = [i for i, p in enumerate(params) if _breaker(p["schema"]) is not None]
        if not params or not breakable or rng.random() < 0.15:
            # too many params (every method has a fixed arity) or an unknown named param
            if rng.random() < 0.5:
                value: Any = [_random_json(rng) for _ in range(len(params) + 1 + rng.randrange(3))]
            else:
                value = {"zz_" + str(rng.randrange(1000)): 1}
            req, rid = self._req(m["name"], value)
            return _Case("wrong_params", _enc(req), rid)
        i = rng.choice(breakable)
        fn = _breaker(params[i]["schema"])
        assert fn is not None
        positional = [_random_json(rng) for _ in range(i)] + [fn(rng)]
        if rng.random() < 0.5:
            value = positional
        else:
            value = {p["name"]: v for p, v in zip(params, positional, strict=False)}
        req, rid = self._req(m["name"], value)
        kind = "bad_hex" if fn in (_bad_hash, _bad_hex) else "wrong_params"
        return _Case(kind, _enc(req), rid)

    def garbage_tx(self) -> _Case:
        rng = self.rng
        n = rng.choice([1, 2, 10, 100, 200, 300, 1000])
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, n + 1)))
        if rng.random() < 0.3:  # looks like a SignedTx array header, then garbage
            raw = bytes([0x93, 0x02, 0x98, 0x01]) + raw
        req, rid = self._req("gm_sendRawTransaction", ["0x" + raw.hex()])
        return _Case("garbage_tx", _enc(req), rid)

    def mutated_tx(self) -> _Case:
        rng = self.rng
        assert self.raw is not None
        raw = bytearray(self.raw)
        r = rng.randrange(4)
        if r == 0:
            for _ in range(rng.randrange(1, 4)):
                raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        elif r == 1:
            del raw[rng.randrange(len(raw)) :]
        elif r == 2:
            raw += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        else:
            i = rng.randrange(len(raw))
            raw[i] = (raw[i] + rng.randrange(1, 256)) % 256
        if bytes(raw) == self.raw or not raw:
            raw = bytearray(self.raw[:-1])
        req, rid = self._req("gm_sendRawTransaction", ["0x" + bytes(raw).hex()])
        return _Case("mutated_tx", _enc(req), rid)

    def bad_batch(self) -> _Case:
        rng = self.rng
        if rng.random() < 0.3:
            body = (
                b"[]"
                if rng.random() < 0.5
                else _enc([self._req("gm_blockNumber", [])[0]] * (self.max_batch + 1))
            )
            return _Case("bad_batch", body, ...)
        items = [self.unknown_method(), self.wrong_params(), self.garbage_tx()]
        parts = [json.loads(c.body) for c in rng.sample(items, rng.randrange(1, 4))]
        return _Case("bad_batch", _enc(parts), ..., batch=len(parts))

    def oversize(self) -> _Case:
        req, _ = self._req("gm_blockNumber", [])
        pad = b" " * (self.max_body + 1 - len(_enc(req)) + self.rng.randrange(1024))
        return _Case("oversize", _enc(req) + pad, ...)


def _check_error(obj: Any, expect_id: Any) -> str | None:
    if not isinstance(obj, dict):
        return f"reply is not an object: {str(obj)[:200]}"
    if obj.get("jsonrpc") != "2.0" or "result" in obj:
        return f"not a JSON-RPC error: {str(obj)[:200]}"
    err = obj.get("error")
    if not isinstance(err, dict) or type(err.get("code")) is not int:
        return f"error without an integer code: {str(obj)[:200]}"
    if not isinstance(err.get("message"), str):
        return f"error without a message: {str(obj)[:200]}"
    if expect_id is not ... and obj.get("id") != expect_id:
        return f"id {obj.get('id')!r} does not echo {expect_id!r}"
    return None


async def _status(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 1, "method": "gm_status", "params": []}
    async with session.post(url, json=body) as resp:
        return (await resp.json())["result"]  # type: ignore[no-any-return]


async def _call(session: aiohttp.ClientSession, url: str, method: str) -> Any:
    async with session.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method}) as resp:
        return (await resp.json())["result"]


async def fuzz_rpc_async(
    url: str, n: int, seed: int, *, valid_raw_tx: bytes | None = None, workers: int = 8
) -> FuzzReport:
    """Send `n` malformed requests to the node's HTTP JSON-RPC `url`; see the module doc.

    `valid_raw_tx`, if given, is a correctly signed transaction that the fuzzer only ever sends
    mutated. Raises AssertionError listing the first violations if any reply was not an error.
    """
    report = FuzzReport()
    rng = random.Random(seed)
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        doc = await _call(session, url, "rpc.discover")
        info = await _call(session, url, "gm_nodeInfo")
        st = await _status(session, url)
        report.height_before, report.pending_before = st["height"], st["pendingTxs"]
        gen = _Gen(rng, doc, info, valid_raw_tx)
        cases = [gen.case() for _ in range(n)]
        queue: asyncio.Queue[_Case] = asyncio.Queue()
        for c in cases:
            queue.put_nowait(c)

        async def worker() -> None:
            while not queue.empty():
                case = queue.get_nowait()
                await _send(session, url, case, report)

        await asyncio.gather(*(worker() for _ in range(workers)))
        st = await _status(session, url)
        report.height_after, report.pending_after = st["height"], st["pendingTxs"]
    report.elapsed_s = time.perf_counter() - started
    if report.violations:
        shown = "\n".join(report.violations[:5])
        raise AssertionError(f"{len(report.violations)} of {report.sent} replies wrong:\n{shown}")
    return report


async def _send(session: aiohttp.ClientSession, url: str, case: _Case, report: FuzzReport) -> None:
    report.sent += 1
    report.by_kind[case.kind] += 1
    try:
        headers = {"Content-Type": "application/json"}
        async with session.post(url, data=case.body, headers=headers) as resp:
            report.http_statuses[resp.status] += 1
            text = await resp.read()
    except aiohttp.ClientError as exc:
        report.violations.append(f"{case.kind}: transport error {exc!r}")
        return
    try:
        reply = json.loads(text)
    except ValueError:
        report.violations.append(f"{case.kind}: reply is not JSON: {text[:200]!r}")
        return
    items: list[Any]
    if case.batch:
        if not isinstance(reply, list) or len(reply) != case.batch:
            report.violations.append(f"{case.kind}: expected {case.batch} replies: {text[:200]!r}")
            return
        items = reply
    else:
        items = [reply]
    for item in items:
        problem = _check_error(item, case.expect_id)
        if problem:
            report.violations.append(f"{case.kind}: {problem} (request {case.body[:200]!r})")
        else:
            report.codes[item["error"]["code"]] += 1


def fuzz_rpc(url: str, n: int, seed: int, *, valid_raw_tx: bytes | None = None) -> FuzzReport:
    """Synchronous wrapper of `fuzz_rpc_async` (for scripts and non-async tests)."""
    return asyncio.run(fuzz_rpc_async(url, n, seed, valid_raw_tx=valid_raw_tx))


if __name__ == "__main__":
    target, count, seed_arg = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rep = fuzz_rpc(target, count, seed_arg)
    print(
        json.dumps(
            {
                "sent": rep.sent,
                "by_kind": rep.by_kind,
                "codes": rep.codes,
                "http_statuses": rep.http_statuses,
                "elapsed_s": round(rep.elapsed_s, 2),
                "height": [rep.height_before, rep.height_after],
                "pending": [rep.pending_before, rep.pending_after],
            },
            indent=2,
        )
    )

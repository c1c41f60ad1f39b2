"""The latency split of a load phase (bench/report.py rule 5, bench/loadgen.py rule 7): where a
transaction's latency goes, cut at its acknowledgement and at two block timestamps."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from gmchain.bench.loadgen import LoadResult, _wall_minus_mono
from gmchain.bench.report import SPLIT_PARTS, analyze, latency_split

OFF = 1_765_000_000.0  # wall clock - monotonic clock in these synthetic runs
T0 = 1000.0
BLOCK_S = 0.020  # a block every 20 ms


def _stamp_ms(h: int) -> int:
    """Block h's timestamp: the proposer's wall clock, in whole ms."""
    return round((T0 + h * BLOCK_S + OFF) * 1000)


def _run(n: int = 400, rate: float = 100.0) -> LoadResult:
    """Transaction i is due at T0 + i / rate, acknowledged 3 ms later, lands in the first block
    stamped at least 5 ms after its acknowledgement, and is seen committed 4 ms after block
    h + 2's timestamp."""
    due = [T0 + i / rate for i in range(n)]
    acked = [d + 0.003 for d in due]
    heights = [math.ceil((a + 0.005 - T0) / BLOCK_S - 1e-9) for a in acked]
    last = max(heights) + 2
    stamps = {h: _stamp_ms(h) for h in range(1, last + 1)}
    committed = [stamps[h + 2] / 1000 - OFF + 0.004 for h in heights]
    return LoadResult(
        t0=T0,
        due=due,
        sent=list(due),
        acked=acked,
        committed=committed,
        errors=Counter(),
        heads=[(h, stamps[h] / 1000 - OFF, 1, stamps[h]) for h in stamps],
        receipts_checked=n,
        receipts_ok=n,
        heights=heights,
        stamps=stamps,
        wall_minus_mono=OFF,
    )


def test_each_part_is_where_the_run_put_it() -> None:
    res = _run()
    s = latency_split(res, T0, T0 + 10)
    assert s["count"] == 400
    assert s["admission"]["p50"] == pytest.approx(3, abs=0.01)
    assert s["admission"]["p99"] == pytest.approx(3, abs=0.01)
    assert s["two_blocks"]["mean"] == pytest.approx(40, abs=0.01)
    assert s["announce"]["p90"] == pytest.approx(4, abs=0.01)
    # To its block: 5 ms at least (the rule above), under 5 + 20 ms (a block every 20 ms).
    assert s["to_proposal"]["p50"] >= 5 - 0.01 and s["to_proposal"]["p99"] < 25 + 0.01
    lat = [(c - d) * 1000 for c, d in zip(res.committed, res.due, strict=True)]
    assert s["total"]["mean"] == pytest.approx(sum(lat) / len(lat), abs=0.01)


def test_the_parts_means_add_up_to_the_total_mean() -> None:
    s = latency_split(_run(n=777, rate=130.0), T0, T0 + 10)
    parts = sum(s[k]["mean"] for k in SPLIT_PARTS if k != "total")
    assert parts == pytest.approx(s["total"]["mean"], abs=0.05)


def test_one_validator_cuts_at_the_block_that_certifies_it() -> None:
    """On one validator its own vote certifies h + 1 as it is proposed, so h commits then; on
    an idle chain h + 2 comes much later (when new transactions arrive). Cut at h + 2, announce
    went negative (sessions 14-15); `commit_block` = 1 cuts at h + 1."""
    res = _run(n=1)
    h = res.heights[0]
    res.stamps[h + 2] += 500  # the idle chain proposes h + 2 half a second later
    res.committed[0] = res.stamps[h + 1] / 1000 - OFF + 0.004  # committed 4 ms after h + 1
    old = latency_split(res, T0, T0 + 10)
    assert old["announce"]["p50"] < 0 and old["commit_block"] == 2  # the defect, for the record
    s = latency_split(res, T0, T0 + 10, commit_block=1)
    assert s["commit_block"] == 1
    assert s["two_blocks"]["p50"] == pytest.approx(20, abs=0.01)  # h to h + 1
    assert s["announce"]["p50"] == pytest.approx(4, abs=0.01)
    parts = sum(s[k]["mean"] for k in SPLIT_PARTS if k != "total")
    assert parts == pytest.approx(s["total"]["mean"], abs=0.01)
    one = analyze(res, rate=100.0, warmup_s=0.0, duration_s=10.0, commit_block=1)
    assert one["latency_split_ms"] == s


def test_percentiles_are_nearest_rank() -> None:
    res = _run(n=4)
    # Admission of 1, 2, 3 and 10 ms: p50 is the 2nd value, p90 and p99 the 4th.
    for i, ms in enumerate((10, 1, 3, 2)):
        res.acked[i] = res.due[i] + ms / 1000
    s = latency_split(res, T0, T0 + 10)
    assert (s["admission"]["p50"], s["admission"]["p90"], s["admission"]["p99"]) == (2, 10, 10)
    assert s["admission"]["mean"] == 4


def test_only_whole_transactions_in_the_window_count() -> None:
    res = _run()
    res.acked[100] = math.nan  # refused, or its reply lost
    res.committed[111] = math.nan  # never seen committed
    gone = res.heights[60] + 2
    del res.stamps[gone]  # never seen: no split for its own transactions nor for those of h - 2
    s = latency_split(res, T0 + 0.5, T0 + 3.0)  # due times T0 + i / 100
    missing = {100, 111} | {i for i in range(400) if gone in (res.heights[i], res.heights[i] + 2)}
    assert len(missing) > 4
    expected = sum(1 for i in range(50, 301) if i not in missing)
    assert s["count"] == expected
    for k in SPLIT_PARTS:
        assert s[k] is not None


def test_a_block_stamped_before_the_acknowledgement_gives_a_negative_part() -> None:
    """The leader may hold and propose a transaction before its client hears the ack."""
    res = _run(n=1)
    res.acked[0] = res.stamps[res.heights[0]] / 1000 - OFF + 0.002
    s = latency_split(res, T0, T0 + 10)
    assert s["to_proposal"]["p50"] == pytest.approx(-2, abs=0.01)


def test_a_run_without_heights_has_no_split_and_analyze_carries_it() -> None:
    res = _run()
    assert analyze(res, rate=100.0, warmup_s=0.5, duration_s=3.0)["latency_split_ms"] == (
        latency_split(res, T0 + 0.5, T0 + 3.0)
    )
    res.heights = []  # a LoadResult from before rule 7
    s = latency_split(res, T0, T0 + 10)
    assert s == {"count": 0, "commit_block": 2} | {k: None for k in SPLIT_PARTS}


def test_wall_minus_mono_places_the_wall_clock_on_the_monotonic_axis() -> None:
    import time

    off = _wall_minus_mono()
    assert abs(time.time() - (time.monotonic() + off)) < 0.05  # (a loaded machine may preempt)


async def test_the_watcher_keeps_heights_and_stamps_of_announced_and_gap_filled_blocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """bench/loadgen.py rule 7 on the generator's side: a height announced on newHeads and one
    only fetched to fill a gap both give their transactions a height and a timestamp."""
    import asyncio

    from gmchain.bench import loadgen

    ids = [bytes([i]) * 32 for i in range(3)]
    blocks = {  # height -> (timestamp ms, tx ids)
        5: (1_000_005, [ids[0]]),
        6: (1_000_011, [ids[1], ids[2]]),
    }

    async def fake_rpc(_conn: object, method: str, params: list[object]) -> object:
        assert method == "gm_getBlockByNumber"
        ts, txs = blocks[int(params[0])]  # type: ignore[call-overload]
        return {
            "number": params[0],
            "timestampMs": ts,
            "transactions": ["0x" + t.hex() for t in txs],
        }

    monkeypatch.setattr(loadgen, "rpc_call", fake_rpc)
    plan = loadgen.LoadPlan(ports=[1], watch_ports=[1], raws=[b""] * 3, ids=ids, rate=10.0)
    nan = math.nan
    res = LoadResult(
        t0=0.0,
        due=[0.0] * 3,
        sent=[nan] * 3,
        acked=[nan] * 3,
        committed=[nan] * 3,
        heights=[-1] * 3,
    )
    w = loadgen._Watcher(plan, res)
    w.last_height = 4
    w._on_head({"number": 6, "txCount": 2, "timestampMs": 1_000_011}, 1)  # 5 is a gap
    fetcher = asyncio.create_task(w._fetch())
    for _ in range(100):
        if w.committed == 3:
            break
        await asyncio.sleep(0.01)
    fetcher.cancel()
    assert res.heights == [5, 6, 6]
    assert res.stamps == {5: 1_000_005, 6: 1_000_011}
    assert all(c == c for c in res.committed)

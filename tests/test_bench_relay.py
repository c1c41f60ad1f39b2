"""The platform profile's relay latency (bench/relay.py, bench/relaystats.py): the arithmetic on
fixed numbers, and on a tiny real platform run the profile's numbers against latencies computed
by another path (each chain's own receipts and blocks, not the regulator's stored copy)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from gmchain.bench.relay import FIRM, Platform, _free_base, latency_phase, rpc_batch
from gmchain.bench.relaystats import cycle_durations, latencies_ms, percentiles


def _f(m: dict[str, Any], snake: str, camel: str) -> Any:
    return m[snake] if snake in m else m[camel]


def test_percentiles_nearest_rank() -> None:
    s = percentiles([5, 1, 4, 2, 3, 10, 9, 8, 7, 6])
    assert (s["count"], s["p50"], s["p90"], s["p99"], s["max"]) == (10, 5, 9, 10, 10)
    assert percentiles([])["p50"] is None


def test_latency_is_regulator_block_minus_business_block() -> None:
    copies = {
        1: {"height": 7, "arrived_height": 3, "header": {"timestamp_ms": 1_000}},
        2: {"height": 8, "arrivedHeight": 4, "header": {"timestampMs": 1_500}},
        3: None,
    }
    lat, missing, st = latencies_ms(copies, {3: 1_800, 4: 3_000}, [1, 2, 3])
    assert lat == [800, 1_500]
    assert missing == [3]
    assert st["reg_h"] == [3, 4]


def test_cycle_lines_parsed() -> None:
    log = "x relay cycle firm-a in 0.25 s: missing 3\nrelay cycle firm-a in 12.00 s: sent 64\n"
    assert cycle_durations(log) == [0.25, 12.0]


@pytest.mark.slow
def test_tiny_platform_run_latencies_match_the_chains() -> None:
    d = Path(tempfile.mkdtemp(prefix="gm-relaybench-test-"))
    p = Platform(d / "platform", _free_base(), keys=5)
    try:
        p.up()
        out = latency_phase(p, rate=1.0, seconds=5.0, label="test")
        lo, hi = out["seqs"]
        n = hi - lo + 1
        assert n == 5 and out["undelivered"] == 0
        # Another path: each record's transaction on firm-a (its outbox row -> receipt -> block),
        # and the regulator's receiving transaction (recv_tx_id -> receipt -> block).
        rows = rpc_batch(p.firm_url, [("gm_getOutbox", [lo, n])])[0]["packets"]
        biz = rpc_batch(
            p.firm_url, [("gm_getTransactionReceipt", [_f(r, "tx_id", "txId")]) for r in rows]
        )
        biz_ts = [
            b["timestampMs"]
            for b in rpc_batch(
                p.firm_url, [("gm_getBlockByNumber", [r["blockNumber"]]) for r in biz]
            )
        ]
        copies = rpc_batch(
            p.reg_url, [("gm_getRelayedRecord", [FIRM, s]) for s in range(lo, hi + 1)]
        )
        assert [_f(c, "tx_id", "txId") for c in copies] == [_f(r, "tx_id", "txId") for r in rows]
        recv = rpc_batch(
            p.reg_url,
            [("gm_getTransactionReceipt", [_f(c, "recv_tx_id", "recvTxId")]) for c in copies],
        )
        reg_ts = [
            b["timestampMs"]
            for b in rpc_batch(
                p.reg_url, [("gm_getBlockByNumber", [r["blockNumber"]]) for r in recv]
            )
        ]
        expected = percentiles([r - b for r, b in zip(reg_ts, biz_ts, strict=True)])
        assert out["latency_ms"] == expected
        assert expected["p50"] > 0
    finally:
        p.down()
        shutil.rmtree(d, ignore_errors=True)

"""The relayer's scheduling, pure (crosschain/relay_plan.py rules 1-4) plus the in-flight bound of
crosschain/relay_rpc.py rule 3 over a fake node (the only fake: the logic under test is pure
bookkeeping of submissions and receipts).

The backlog test is the scenario of XC.md: 10,000 records queued while the regulator was away,
new records keep coming; every new record must be delivered in the cycle after it was queued,
while the sweep drains the backlog oldest-first.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import pytest

from gmchain.crosschain.relay_plan import (
    MAX_BATCH,
    MAX_BATCH_BYTES,
    MISSING_SCAN,
    Arrivals,
    batches,
    compute_target_epoch,
    contiguous_runs,
    select_seqs,
)
from gmchain.crosschain.relay_rpc import ChainView, TxSender, record
from gmchain.crosschain.relayer import _still_missing, reason_label
from gmchain.crypto_sm import PrivateKey


def _arrivals(arrived: set[int], limit: int) -> Arrivals:
    """What the destination's `arrivals(source, limit)` answers for the set `arrived`."""
    contiguous = 0
    while contiguous + 1 in arrived:
        contiguous += 1
    top = max(arrived, default=0)
    missing = [s for s in range(contiguous + 1, top) if s not in arrived][:limit]
    return Arrivals(contiguous=contiguous, max_seq=top, count=len(arrived), missing=tuple(missing))


def test_a_10000_backlog_never_stalls_fresh_records() -> None:
    arrived: set[int] = set()
    queued = 10_000
    fresh, sweep, per_cycle = 64, 192, 20
    cycles = 0
    while len(arrived) < queued or cycles < 3:
        new = list(range(queued + 1, queued + per_cycle + 1))
        queued += per_cycle
        chosen = select_seqs(_arrivals(arrived, 1000), queued, fresh=fresh, sweep=sweep)
        assert len(chosen) == len(set(chosen)) <= fresh + sweep
        assert not set(chosen) & arrived, "only missing seqs are taken"
        assert set(new) <= set(chosen), f"cycle {cycles}: fresh records stalled"
        arrived.update(chosen)
        cycles += 1
        assert cycles < 100
    # The backlog drained at the sweep's pace (plus what the fresh window took beyond new ones).
    assert cycles <= 10_000 // sweep + 2
    assert arrived == set(range(1, queued + 1))


def test_fresh_first_then_oldest_first_and_the_lowest_missing_is_always_taken() -> None:
    arr = Arrivals(contiguous=10, max_seq=50, count=30, missing=(11, 12, 20))
    chosen = select_seqs(arr, 60, fresh=5, sweep=4)
    assert chosen[:5] == [60, 59, 58, 57, 56]  # newest first
    assert chosen[5:] == [11, 12, 20, 51]  # then oldest first
    assert select_seqs(arr, 60, fresh=2, sweep=1) == [60, 59, 11]
    # Nothing missing: nothing chosen.
    done = Arrivals(contiguous=60, max_seq=60, count=60)
    assert select_seqs(done, 60, fresh=64, sweep=192) == []


def test_seqs_beyond_a_truncated_missing_list_wait() -> None:
    # limit 2: the missing list says 11, 12; 13..49 are unknown (some arrived, some not).
    arr = Arrivals(contiguous=10, max_seq=50, count=30, missing=(11, 12))
    chosen = select_seqs(arr, 50, fresh=1, sweep=100)
    assert chosen == [12, 11]  # 12 as the newest known missing, then the sweep's 11
    assert not [s for s in chosen if 12 < s <= 50]
    assert _still_missing(arr, 30, limit=2)  # unknown: the destination decides
    assert not _still_missing(arr, 30, limit=1000)  # a complete list: 30 arrived
    assert not _still_missing(arr, 10, limit=2) and _still_missing(arr, 51, limit=2)
    # The destination scans at most MISSING_SCAN seqs above contiguous: past that, unknown.
    far = Arrivals(contiguous=0, max_seq=MISSING_SCAN + 50, count=10, missing=(1, 2))
    assert _still_missing(far, MISSING_SCAN + 20, limit=1000)


def test_batches_keep_both_bounds_and_the_order() -> None:
    rng = random.Random(13)
    items = [bytes(rng.randrange(300, 3000)) for _ in range(500)] + [bytes(MAX_BATCH_BYTES + 1)]
    groups, oversize = batches(items, len)
    assert oversize == [items[-1]]
    assert [x for g in groups for x in g] == items[:-1]
    assert all(1 <= len(g) <= MAX_BATCH for g in groups)
    assert all(sum(map(len, g)) <= MAX_BATCH_BYTES for g in groups)
    small = [b"x"] * 130
    g2, _ = batches(small, len)
    assert [len(g) for g in g2] == [64, 64, 2]


def test_the_client_epoch_never_passes_the_lowest_missing_record() -> None:
    assert compute_target_epoch(1, 1, 3) == 1  # a missing record of epoch 1: stay
    assert compute_target_epoch(1, 2, 3) == 2
    assert compute_target_epoch(1, None, 3) == 3  # nothing missing: follow the source
    assert compute_target_epoch(2, 1, 3) == 2  # never back


def test_runs_and_records() -> None:
    assert contiguous_runs([5, 3, 4, 9, 10, 20], 2) == [(3, 2), (5, 1), (9, 2), (20, 1)]
    assert record([["maxSeq", 3], ["count", 2]]) == {"max_seq": 3, "count": 2}
    assert record({"latestHeight": 9}) == {"latest_height": 9}
    assert record(None) is None
    with pytest.raises(ValueError):
        record(7)
    assert reason_label("header at height 12 is not verified") == "header at height"
    assert reason_label("not from evidence.submit: x") == "not from evidence.submit"


class _FakeNode:
    """Answers the calls a TxSender makes; receipts come after a delay. Counts how many
    transactions were submitted and not yet answered at once."""

    def __init__(self) -> None:
        self.pending = 0
        self.peak = 0
        self.sent = 0

    async def call(self, method: str, params: list[Any]) -> Any:
        if method == "gm_nodeInfo":
            return {"chainId": "fake", "replayWindow": 40}
        if method == "gm_blockNumber":
            return 5
        if method == "gm_sendRawTransaction":
            self.sent += 1
            self.pending += 1
            self.peak = max(self.peak, self.pending)
            return None
        if method == "gm_waitForReceipt":
            await asyncio.sleep(0.01)
            self.pending -= 1
            return {"status": 0, "pending": False, "events": []}
        raise AssertionError(method)


async def test_never_more_than_max_inflight_transactions() -> None:
    node = _FakeNode()
    key = PrivateKey.generate()

    class _Signer:
        public_key = key.public_key.to_bytes()

        def sign(self, tx_id: bytes) -> bytes:
            return key.sign(tx_id)

    sender = TxSender(ChainView(node, "fake"), _Signer(), max_inflight=3)
    outcomes = await asyncio.gather(
        *(sender.send("xclient", "recv_ack", [b"x"]) for _ in range(20))
    )
    assert all(o.ok for o in outcomes)
    assert node.sent == 20
    assert node.peak == 3 == sender.peak_inflight  # the bound is reached and never passed


class _ClientNode:
    """Answers the destination's `xclient.client` query with `client` (None: not registered)."""

    def __init__(self, client: dict[str, Any] | None) -> None:
        self.client = client

    async def call(self, method: str, params: list[Any]) -> Any:
        if method == "gm_nodeInfo":
            return {"chainId": "src", "replayWindow": 40}
        if method == "gm_call" and params[:2] == ["xclient", "client"]:
            return self.client
        raise AssertionError(method)


async def test_usable_client_reports_a_missing_or_frozen_client() -> None:
    """relay_client.py rules 1 and 4: both relay directions stop their cycle on a missing or
    frozen client, with the direction's reason in the report."""
    from gmchain.crosschain.relay_client import ClientFeeder
    from gmchain.node.cli_relay import KeySigner

    async def usable(client: dict[str, Any] | None) -> tuple[Any, list[str]]:
        node = _ClientNode(client)
        feeder = ClientFeeder(
            source=ChainView(node, "src"),
            dest=ChainView(node, "dst"),
            sender=TxSender(ChainView(node, "dst"), KeySigner(PrivateKey.generate())),
            log=logging.getLogger("test"),
        )
        errors: list[str] = []
        got = await feeder.usable_client(errors, direction="acks", unregistered="no client")
        return got, errors

    assert await usable(None) == (None, ["acks: no client"])
    frozen = {"epoch": 1, "latestHeight": 9, "status": "frozen", "frozenReason": "two at 9"}
    assert await usable(frozen) == (None, ["acks: client frozen (two at 9)"])
    active, errors = await usable({**frozen, "status": "active", "frozenReason": None})
    assert errors == [] and active is not None and active.latest_height == 9

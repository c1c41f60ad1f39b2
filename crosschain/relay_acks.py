"""The relayer's backward direction: acknowledgements from the regulator to the business chain.

The regulator's `xclient.recv_packets` receipt, with its `PacketReceived` events, is the proof
that records arrived. The business chain's `xclient.recv_ack(Ack)` checks that receipt against a
header of the regulator it has verified and records `a/<seq>` for each accepted packet of its own
(XC.md, "The xclient contract", method 4).

Rules this module keeps:
1. Which seqs need an ack is read from the chains: arrived on the regulator (its
   `arrivals(business)`), not acknowledged on the business chain (its `acks(start, limit)`).
   A cycle looks at most _ACK_PAGE * _ACK_PAGES seqs from `acked_below` on.
   The only thing kept between cycles is `acked_below`: every seq below it is acknowledged on
   the business chain, a fact that can never become false (acks are never removed); a fresh
   relayer starts it at 1.
2. The regulator's stored copy of a packet (`packet(business, seq)`) names the transaction that
   received it; one ack proves that whole transaction, so the seqs its receipt accepted are not
   looked up again in the same cycle. At most `max_txs` acks and `MAX_LOOKUPS` packet reads per
   cycle.
3. The newest unacknowledged seqs go first (FRESH of them), then the oldest: as forward.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from gmchain.contracts.xc_layout import XCLIENT
from gmchain.crosschain.relay_client import ClientFeeder
from gmchain.crosschain.relay_plan import Arrivals, compute_target_epoch
from gmchain.crosschain.relay_proofs import ProvenTx, RelayProofError
from gmchain.crosschain.relay_rpc import ChainView, RelayRpcError, TxSender, record
from gmchain.ledger.jsonvalues import parse_hex

__all__ = ["AckRelay", "recv_tx_of"]

FRESH = 8
MAX_LOOKUPS = 256
_ACK_PAGE = 1000
_ACK_PAGES = 4
# The stored copy's member naming the regulator's recv_packets transaction (XC.md: the last of
# `p/<chain>/<seq>`, `ctx.tx_id`).
_RECV_TX_NAMES = ("recv_tx_id", "recv_tx", "regulator_tx_id", "arrived_tx_id", "received_tx_id")


class _Report(Protocol):
    acks: int
    updates: int
    errors: list[str]


def recv_tx_of(rec: Mapping[str, Any]) -> bytes | None:
    """Rule 2: the regulator tx id a stored packet copy names, if any."""
    for name in _RECV_TX_NAMES:
        if rec.get(name):
            return parse_hex(rec[name], 32, name=name)
    return None


def _seq_of(item: Any) -> int | None:
    if isinstance(item, int):
        return item
    if isinstance(item, Mapping) or (isinstance(item, list) and item and isinstance(item[0], list)):
        rec = record(item) or {}
        seq = rec.get("seq")
        return int(seq) if isinstance(seq, int) else None
    if isinstance(item, list) and item and isinstance(item[0], int):
        return item[0]
    return None


class AckRelay:
    """Rules 1-3, one cycle at a time."""

    def __init__(
        self,
        *,
        business: ChainView,
        regulator: ChainView,
        feeder: ClientFeeder,
        sender: TxSender,
        prove: Callable[[ChainView, bytes], Awaitable[ProvenTx]],
        arrivals: Callable[[], Awaitable[Arrivals]],
        log: logging.Logger,
        max_txs: int,
        on_acks: Callable[[int], None],
    ) -> None:
        self.business = business
        self.regulator = regulator
        self.feeder = feeder
        self.sender = sender
        self.prove = prove
        self.arrivals = arrivals
        self.log = log
        self.max_txs = max_txs
        self.on_acks = on_acks
        self.acked_below = 1  # rule 1

    async def acked(self, upto: int) -> set[int]:
        """Rule 1: acknowledged seqs in [acked_below, upto], read in windows of _ACK_PAGE seqs
        (`acks(start, limit)` answers the acks that exist among start .. start + limit - 1)."""
        found: set[int] = set()
        start = self.acked_below
        for _ in range(_ACK_PAGES):
            if start > upto:
                break
            page = await self.business.query(XCLIENT, "acks", [start, _ACK_PAGE])
            found.update(s for s in (_seq_of(x) for x in page or ()) if s is not None)
            start += _ACK_PAGE
        while self.acked_below in found:
            found.discard(self.acked_below)
            self.acked_below += 1
        return found

    async def cycle(self, report: _Report) -> None:
        client = await self.feeder.usable_client(
            report.errors,
            direction="acks",
            unregistered="the business chain has no client of the regulator",
        )
        if client is None:
            return
        arrivals = await self.arrivals()
        acked = await self.acked(arrivals.max_seq)
        scanned = min(arrivals.max_seq, self.acked_below + _ACK_PAGE * _ACK_PAGES - 1)
        arrived = [
            s
            for s in range(self.acked_below, scanned + 1)
            if s not in acked and _arrived(arrivals, s)
        ]
        order = arrived[::-1][:FRESH] + arrived
        chosen = await self._recv_txs(order, report)
        if not chosen:
            return
        target = compute_target_epoch(
            client.epoch, min(p.epoch for p in chosen), await self.regulator.epoch()
        )
        feed = await self.feeder.ensure(chosen, client, target)
        report.updates += feed.updates_sent
        ready = [p for p in chosen if p.height in feed.verified]
        bus_id = await self.business.chain_id()
        outcomes = await asyncio.gather(
            *(self.sender.send(XCLIENT, "recv_ack", [p.ack(bus_id).encode()]) for p in ready)
        )
        for p, outcome in zip(ready, outcomes, strict=True):
            if not outcome.ok:
                why = outcome.error or (outcome.receipt or {}).get("error")
                report.errors.append(f"recv_ack of regulator tx {p.tx_id.hex()[:16]}: {why}")
                continue
            events = (outcome.receipt or {}).get("events") or ()
            new = sum(1 for e in events if e.get("name") == "AckRecorded")
            report.acks += new
            self.on_acks(new)

    async def _recv_txs(self, order: list[int], report: _Report) -> list[ProvenTx]:
        """Rule 2: the regulator's recv_packets txs covering `order`, at most max_txs."""
        bus_id = await self.business.chain_id()
        covered: set[int] = set()
        seen: set[bytes] = set()
        chosen: list[ProvenTx] = []
        lookups = 0
        for seq in order:
            if len(chosen) >= self.max_txs or lookups >= MAX_LOOKUPS:
                break
            if seq in covered:
                continue
            lookups += 1
            rec = record(await self.regulator.query(XCLIENT, "packet", [bus_id, seq]))
            tx_id = None if rec is None else recv_tx_of(rec)
            if tx_id is None or tx_id in seen:
                continue
            seen.add(tx_id)
            try:
                p = await self.prove(self.regulator, tx_id)
            except (RelayRpcError, RelayProofError) as exc:
                report.errors.append(f"acks: regulator tx {tx_id.hex()[:16]}: {exc}")
                continue
            covered.update(_accepted(p, bus_id))
            chosen.append(p)
        return chosen


def _arrived(arrivals: Arrivals, seq: int) -> bool:
    if seq <= arrivals.contiguous:
        return True
    return seq <= arrivals.max_seq and seq not in arrivals.missing


def _accepted(p: ProvenTx, business_id: str) -> set[int]:
    """The seqs of `business_id` this recv_packets receipt accepted."""
    out = set()
    for event in p.receipt.events:
        fields = dict(event.fields)
        seq = fields.get("seq")
        if (
            event.name == "PacketReceived"
            and fields.get("chain") == business_id
            and fields.get("status") == "accepted"
            and isinstance(seq, int)
        ):
            out.add(seq)
    return out

"""The relayer of one (business, regulator) pair, both directions (issue 13; XC.md "The relayer").

Untrusted and stateless: it holds no key of either chain's validators, signs its transactions
with an ordinary account, and remembers no progress: every cycle reads, from the destination,
what has arrived. A relayer killed at any point loses nothing; two relayers at once waste
transactions but never deliver twice (the destination answers `duplicate`).

A cycle:
- forward (business -> regulator): the regulator's `xclient.arrivals(business)` and the
  business's `evidence.outbox_count()` give the missing seqs; crosschain/relay_plan.py picks
  fresh ones first, then the oldest (rule 1 there); the business's `evidence.outbox` names each
  seq's transaction; `gm_getTransactionProof` + `gm_getTransactionByHash` make each a `Packet`
  (crosschain/relay_proofs.py); crosschain/relay_client.py verifies the headers they need on the
  regulator; then `xclient.recv_packets` in batches (<= 64 packets, <= 48 KiB);
- backward (regulator -> business): crosschain/relay_acks.py proves the regulator's
  `recv_packets` transactions whose acks the business lacks and sends `xclient.recv_ack`;
- a scheduled client refresh in both directions (every `refresh_s`, and when the source's epoch
  moved on), so the light clients never fall behind an epoch change.

Rules this module keeps:
1. Re-read before writing: the arrivals are read again right before `recv_packets`, and a seq
   that arrived meanwhile (another relayer) is not sent.
2. Bounded everywhere: at most `fresh + sweep` packets proven per cycle, at most `proof_jobs`
   proof requests at once per chain, at most `max_inflight` transactions in flight per chain
   (relay_rpc.py rule 3).
3. A failure of one packet, one update or one chain's RPC never stops the other direction or the
   next cycle: it is counted (`RelayStats`), logged, and retried from fresh progress next cycle.
   A frozen client stops the direction it serves until governance unfreezes it.
4. Each cycle ends with one log line (`relay cycle ...`, event `relay_cycle`) that says what was
   missing, sent, delivered, refused and acked: the drills read progress from it.
5. Metrics (`RelayStats`, exposed by node/cli_relay.py with prometheus_client), labelled with the
   business chain's id: lag_blocks (the business head minus the block of the oldest record not yet
   on the regulator, 0 when none), lag_seconds (the age of that block by its header's timestamp),
   packets delivered (accepted), refused (by reason), missing (queued on the business and not on
   the regulator), acks delivered (new acks recorded on the business).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gmchain.contracts.xc_layout import XCLIENT
from gmchain.crosschain.relay_acks import AckRelay
from gmchain.crosschain.relay_client import ClientFeeder, ClientFrozenError
from gmchain.crosschain.relay_plan import (
    MISSING_SCAN,
    Arrivals,
    batches,
    compute_target_epoch,
    contiguous_runs,
    select_seqs,
)
from gmchain.crosschain.relay_proofs import (
    ProvenTx,
    RelayProofError,
    packet_seqs,
    proven_tx_from_bundle,
)
from gmchain.crosschain.relay_rpc import (
    ChainRpc,
    ChainView,
    RelayRpcError,
    RelayUnreachable,
    Signer,
    TxOutcome,
    TxSender,
    record,
)
from gmchain.ledger.jsonvalues import parse_hex

__all__ = ["CycleReport", "RelayConfig", "RelayStats", "Relayer", "reason_label"]

EVIDENCE = "evidence"
_OUTBOX_PAGE = 1000  # evidence.outbox's limit bound (XC.md)


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayConfig:
    fresh: int = 64  # newest missing seqs per cycle (relay_plan.py rule 1)
    sweep: int = 192  # oldest missing seqs per cycle
    missing_limit: int = 1000  # arrivals' missing list length asked for
    max_inflight: int = 4  # transactions in flight per chain (backpressure)
    proof_jobs: int = 4  # proof requests at once per chain
    ack_txs: int = 8  # regulator recv txs acknowledged per cycle
    refresh_s: float = 300.0  # scheduled client refresh
    tx_timeout_s: float = 60.0

    def validate(self) -> None:
        if min(self.fresh, self.sweep, self.max_inflight, self.proof_jobs, self.ack_txs) < 1:
            raise ValueError("fresh, sweep, max_inflight, proof_jobs and ack_txs must be >= 1")
        if not 1 <= self.missing_limit <= 1000:
            raise ValueError("missing_limit must be in 1..1000")
        if self.refresh_s <= 0 or self.tx_timeout_s <= 0:
            raise ValueError("refresh_s and tx_timeout_s must be > 0")


@dataclass(slots=True)
class RelayStats:
    """Rule 5: what the metrics expose (counters only grow)."""

    chain: str = ""
    lag_blocks: int = 0
    lag_seconds: float = 0.0
    missing: int = 0
    delivered: int = 0
    duplicates: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    acks_delivered: int = 0
    cycles: int = 0
    errors: int = 0


@dataclass(slots=True, kw_only=True)
class CycleReport:
    """Rule 4."""

    queued: int = 0
    missing: int = 0
    selected: int = 0
    sent: int = 0
    delivered: int = 0
    duplicates: int = 0
    refused: int = 0
    updates: int = 0
    acks: int = 0
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        text = (
            f"queued={self.queued} missing={self.missing} selected={self.selected} "
            f"sent={self.sent} delivered={self.delivered} duplicate={self.duplicates} "
            f"refused={self.refused} updates={self.updates} acks={self.acks}"
        )
        return text + (f" errors={'; '.join(self.errors)}" if self.errors else "")

    def fields(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__ if k != "errors"} | {
            "errors": len(self.errors)
        }


def reason_label(reason: str) -> str:
    """A bounded metric label for a refusal reason: its text before the first ':' or digit."""
    head = reason.split(":", 1)[0]
    cut = next((i for i, ch in enumerate(head) if ch.isdigit()), len(head))
    return (head[:cut].strip() or "unknown")[:48]


class Relayer:
    """One (business, regulator) pair, both directions (module docstring)."""

    def __init__(
        self,
        business: ChainRpc,
        regulator: ChainRpc,
        signer: Signer,
        *,
        config: RelayConfig | None = None,
        log: logging.Logger | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or RelayConfig()
        self.config.validate()
        self.log = log or logging.getLogger("gmchain.relay")
        self.clock = clock
        self.business = ChainView(business, "business")
        self.regulator = ChainView(regulator, "regulator")
        cfg = self.config
        self.to_regulator = TxSender(
            self.regulator, signer, max_inflight=cfg.max_inflight, timeout_s=cfg.tx_timeout_s
        )
        self.to_business = TxSender(
            self.business, signer, max_inflight=cfg.max_inflight, timeout_s=cfg.tx_timeout_s
        )
        self.forward_client = ClientFeeder(
            source=self.business, dest=self.regulator, sender=self.to_regulator, log=self.log
        )
        self.backward_client = ClientFeeder(
            source=self.regulator, dest=self.business, sender=self.to_business, log=self.log
        )
        self.acks = AckRelay(
            business=self.business,
            regulator=self.regulator,
            feeder=self.backward_client,
            sender=self.to_business,
            prove=self.prove,
            arrivals=self.arrivals,
            log=self.log,
            max_txs=cfg.ack_txs,
            on_acks=self._count_acks,
        )
        self.stats = RelayStats()
        self._proof_slots = {
            "business": asyncio.Semaphore(cfg.proof_jobs),
            "regulator": asyncio.Semaphore(cfg.proof_jobs),
        }
        self._last_refresh: dict[str, float] = {}

    def _count_acks(self, n: int) -> None:
        self.stats.acks_delivered += n

    # --- the loop -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, interval_s: float = 2.0, once: bool = False) -> None:
        """Cycles until `stop` is set (or one cycle with `once`)."""
        while not stop.is_set():
            await self.cycle()
            if once:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

    async def cycle(self) -> CycleReport:
        """One cycle, both directions; never raises for a chain's failure (rule 3)."""
        report = CycleReport()
        started = self.clock()
        try:
            self.stats.chain = await self.business.chain_id()
            await self.regulator.chain_id()
        except (RelayRpcError, RelayUnreachable, KeyError, TypeError, ValueError) as exc:
            report.errors.append(f"chain ids: {exc}")
        else:
            await self._guarded(report, "forward", self.forward(report))
            await self._guarded(report, "acks", self.acks.cycle(report))
            await self._guarded(report, "refresh", self.refresh(report))
        self.stats.cycles += 1
        self.stats.errors += len(report.errors)
        self.log.info(
            "relay cycle %s in %.2f s: %s",
            self.stats.chain,
            self.clock() - started,
            report.line(),
            extra={"event": "relay_cycle", "fields": report.fields()},
        )
        return report

    async def _guarded(self, report: CycleReport, what: str, work: Any) -> None:
        try:
            await work
        except ClientFrozenError as exc:
            report.errors.append(f"{what}: {exc}")
            self.log.error("%s: %s", what, exc)
        except (RelayRpcError, RelayUnreachable, RelayProofError) as exc:
            report.errors.append(f"{what}: {exc}")
        except (KeyError, TypeError, ValueError) as exc:  # a reply of an unexpected shape
            report.errors.append(f"{what}: unexpected reply: {type(exc).__name__}: {exc}")
        except Exception as exc:  # our bug: logged with its traceback, the loop goes on
            report.errors.append(f"{what}: internal error: {type(exc).__name__}: {exc}")
            self.log.exception("%s: internal error", what)

    # --- proofs ---------------------------------------------------------------------------------

    async def prove(self, chain: ChainView, tx_id: bytes) -> ProvenTx:
        """One committed tx of `chain` with its proof (rule 2 bounds concurrency)."""
        async with self._proof_slots[chain.name]:
            bundle = await chain.tx_proof(tx_id)
            raw = await chain.tx_raw(tx_id)
        return proven_tx_from_bundle(bundle, raw)

    # --- forward --------------------------------------------------------------------------------

    async def arrivals(self) -> Arrivals:
        bus_id = await self.business.chain_id()
        rec = record(
            await self.regulator.query(XCLIENT, "arrivals", [bus_id, self.config.missing_limit])
        )
        if rec is None:
            return Arrivals()
        return Arrivals(
            contiguous=int(rec.get("contiguous", 0)),
            max_seq=int(rec.get("max_seq", 0)),
            count=int(rec.get("count", 0)),
            missing=tuple(int(s) for s in rec.get("missing") or ()),
        )

    async def outbox_count(self) -> int:
        return int(await self.business.query(EVIDENCE, "outbox_count", []) or 0)

    async def outbox(self, seqs: Sequence[int]) -> dict[int, bytes]:
        """seq -> tx id of the business's outbox rows for `seqs`."""
        wanted = set(seqs)
        out: dict[int, bytes] = {}
        for start, length in contiguous_runs(seqs, _OUTBOX_PAGE):
            rows = await self.business.query(EVIDENCE, "outbox", [start, length])
            for row in rows or ():
                seq, tx_id = _outbox_row(row)
                if seq in wanted:
                    out[seq] = tx_id
        return out

    async def forward(self, report: CycleReport) -> None:
        client = await self.forward_client.usable_client(
            report.errors,
            direction="forward",
            unregistered="the regulator has no client of this business chain",
        )
        if client is None:
            return
        queued = await self.outbox_count()
        arrivals = await self.arrivals()
        report.queued = queued
        report.missing = arrivals.missing_total(queued)
        self.stats.missing = report.missing
        seqs = select_seqs(arrivals, queued, fresh=self.config.fresh, sweep=self.config.sweep)
        report.selected = len(seqs)
        if not seqs:
            self.stats.lag_blocks, self.stats.lag_seconds = 0, 0.0
            return
        proven = await self._prove_seqs(seqs, report)
        lowest = proven.get(arrivals.contiguous + 1)
        await self._lag(lowest)
        source_epoch = await self.business.epoch()
        if lowest is None and arrivals.contiguous < queued:
            target = client.epoch  # the oldest missing record's epoch is unknown: do not move
        else:
            target = compute_target_epoch(
                client.epoch, None if lowest is None else lowest.epoch, source_epoch
            )
        feed = await self.forward_client.ensure(list(proven.values()), client, target)
        report.updates += feed.updates_sent
        for height, why in feed.failed.items():
            self.log.warning("forward: height %d of the business chain: %s", height, why)
        # Rule 1: re-read what arrived meanwhile.
        again = await self.arrivals()
        sendable = [
            (seq, proven[seq])
            for seq in seqs
            if seq in proven
            and proven[seq].height in feed.verified
            and _still_missing(again, seq, self.config.missing_limit)
        ]
        await self._send_packets(sendable, report)

    async def _prove_seqs(self, seqs: Sequence[int], report: CycleReport) -> dict[int, ProvenTx]:
        tx_ids = await self.outbox(seqs)
        reg_id = await self.regulator.chain_id()

        async def one(seq: int) -> tuple[int, ProvenTx | None]:
            tx_id = tx_ids.get(seq)
            if tx_id is None:
                report.errors.append(f"seq {seq}: not in the business outbox")
                return seq, None
            try:
                p = await self.prove(self.business, tx_id)
            except (RelayRpcError, RelayProofError) as exc:
                report.errors.append(f"seq {seq}: {exc}")
                return seq, None
            if seq not in packet_seqs(p.receipt, reg_id):
                report.errors.append(f"seq {seq}: its tx did not queue it for {reg_id}")
                return seq, None
            return seq, p

        results = await asyncio.gather(*(one(s) for s in seqs))
        return {seq: p for seq, p in results if p is not None}

    async def _lag(self, lowest: ProvenTx | None) -> None:
        if lowest is None:
            return
        head = await self.business.head()
        self.stats.lag_blocks = max(0, head - lowest.height)
        self.stats.lag_seconds = max(0.0, self.clock() - lowest.header.timestamp_ms / 1000)

    async def _send_packets(
        self, sendable: Sequence[tuple[int, ProvenTx]], report: CycleReport
    ) -> None:
        reg_id = await self.regulator.chain_id()
        encoded = [p.packet(reg_id, seq).encode() for seq, p in sendable]
        groups, oversize = batches(encoded, len)
        for _ in oversize:
            report.refused += 1
            self.stats.refused["packet too large"] += 1
        outcomes = await asyncio.gather(
            *(self.to_regulator.send(XCLIENT, "recv_packets", [[[p] for p in g]]) for g in groups)
        )
        for group, outcome in zip(groups, outcomes, strict=True):
            report.sent += len(group)
            self._count_receipt(outcome, report)

    def _count_receipt(self, outcome: TxOutcome, report: CycleReport) -> None:
        if outcome.receipt is None:
            report.errors.append(f"recv_packets {outcome.tx_id.hex()[:16]}: {outcome.error}")
            return
        for event in outcome.receipt.get("events") or ():
            fields = dict(_pairs(event.get("fields")))
            if event.get("name") == "PacketReceived":
                if fields.get("status") == "accepted":
                    report.delivered += 1
                    self.stats.delivered += 1
                else:
                    report.duplicates += 1
                    self.stats.duplicates += 1
            elif event.get("name") == "PacketRefused":
                report.refused += 1
                self.stats.refused[reason_label(str(fields.get("reason", "")))] += 1
        if outcome.receipt.get("status") != 0 and not outcome.receipt.get("events"):
            error = str(outcome.receipt.get("error", ""))
            report.errors.append(f"recv_packets failed: {error}")
            self.stats.refused[reason_label(error)] += 1

    # --- refresh --------------------------------------------------------------------------------

    async def refresh(self, report: CycleReport) -> None:
        """Module docstring: both clients, on a schedule and when the source's epoch moved."""
        now = self.clock()
        for name, feeder, missing in (
            ("forward", self.forward_client, report.missing),
            ("backward", self.backward_client, 0),
        ):
            client = await feeder.client()
            if client is None or client.frozen:
                continue
            source_epoch = await feeder.source.epoch()
            due = now - self._last_refresh.get(name, 0.0) >= self.config.refresh_s
            if not due and source_epoch <= client.epoch:
                continue
            if missing and name == "forward":
                continue  # the forward pass moves this client itself (relay_plan.py rule 4)
            if await feeder.refresh(client, source_epoch):
                report.updates += 1
                self._last_refresh[name] = now


def _still_missing(arrivals: Arrivals, seq: int, limit: int) -> bool:
    """Rule 1: False if `seq` is known to have arrived. The missing list is complete up to
    max_seq unless it holds `limit` seqs or max_seq lies beyond the destination's scan
    (MISSING_SCAN seqs above contiguous)."""
    if seq <= arrivals.contiguous:
        return False
    if seq > arrivals.max_seq or seq in arrivals.missing:
        return True
    complete = (
        len(arrivals.missing) < limit and arrivals.max_seq - arrivals.contiguous <= MISSING_SCAN
    )
    return not complete and seq > (arrivals.missing[-1] if arrivals.missing else 0)


def _pairs(value: Any) -> list[tuple[str, Any]]:
    if not isinstance(value, list):
        return []
    return [(p[0], p[1]) for p in value if isinstance(p, list) and len(p) == 2]


def _outbox_row(row: Any) -> tuple[int, bytes]:
    """`[seq, tx_id, record_id, flow_id, org]` (or the same as a record)."""
    if isinstance(row, Mapping):
        rec = record(row) or {}
        return int(rec["seq"]), parse_hex(rec["tx_id"], 32, name="tx_id")
    if isinstance(row, list) and len(row) == 2 and isinstance(row[0], list):
        rec = record(row) or {}
        return int(rec["seq"]), parse_hex(rec["tx_id"], 32, name="tx_id")
    return int(row[0]), parse_hex(row[1], 32, name="tx_id")

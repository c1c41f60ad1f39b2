"""Keeping a destination chain's light client of a source chain fed (issue 13; XC.md).

The destination's `xclient` contract accepts a packet (or an ack) only against a header it has
verified (`h/<chain>/<height>`), and verifies headers only through `update_client` with a
`ClientUpdate`: epoch changes from its trusted epoch, then one certificate checked with the
(new) trusted set. `ClientFeeder` submits the updates the relayer's next packets need.

Rules this module keeps:
1. Progress is read from the destination, never remembered: the client's state
   (`xclient.client`) and, per height, whether its header is verified (`xclient.header`).
2. One certificate per update, covering as many of the packets' heights as it can: the
   certificates of packets of one epoch are joined (the first packet's block, every header up to
   the last packet's block, and that one's certified tip) while the result stays within
   MAX_HEADERS headers, MAX_UPDATE_BYTES, and MAX_GAP heights without packets; a height already
   inside a certificate needs no other. The headers in between come from the source node and
   are checked to link (parent ids, heights, one epoch); the destination checks everything again.
3. The client is moved to `target` (crosschain/relay_plan.py rule 4) before any certificate of
   that epoch: the epoch changes come from the source's `gm_getEpochProof(client, target)` and
   go in order, each update at most MAX_UPDATE_BYTES (split into updates without certificate
   when larger); certificates of the target epoch then go concurrently (the `TxSender` bounds
   how many are in flight). A height of an epoch below the client's is certified on its own: the
   contract checks it with the set it stored for that epoch (`s/<chain>/<epoch>`), and refuses
   it if it has none (the failure is reported; the next cycle tries again from fresh progress).
   An `EpochChange` starts at its ending block E's parent P (crosschain/xclient_update.py rule
   U10): gm_getEpochProof entries start at E, so P's header is fetched (`gm_getBlockByNumber`
   member `raw`), checked to be E's parent, and prepended; an E at height 1 goes as it is.
4. An update that the destination accepts but that froze the client (status OK with a
   `ClientFrozen` event: the source equivocated, XC.md "Misbehaviour on update") stops the
   relayer's work on that client: `ClientFrozenError`. Only governance unfreezes a client.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gmchain.chain.lightclient import Certificate
from gmchain.consensus.messages import CommitProof
from gmchain.contracts.xc_layout import FROZEN, XCLIENT
from gmchain.crosschain.packets import MAX_HEADERS, ClientUpdate, EpochChange
from gmchain.crosschain.relay_proofs import (
    ProvenTx,
    RelayProofError,
    certificate_from_json,
    epoch_changes_from_json,
)
from gmchain.crosschain.relay_rpc import ChainView, RelayRpcError, TxOutcome, TxSender, record
from gmchain.ledger.codec import DecodeError
from gmchain.ledger.jsonvalues import parse_hex
from gmchain.ledger.types import BlockHeader

__all__ = ["MAX_UPDATE_BYTES", "ClientFeeder", "ClientFrozenError", "ClientView", "Feed"]

MAX_UPDATE_BYTES = 48 * 1024
MAX_GAP = 64  # heights without packets a joined certificate may span (rule 2)
_MAX_EPOCHS_PER_PROOF = 32  # gm_getEpochProof's bound (node/rpcgov.py rule 3)


class ClientFrozenError(Exception):
    """Rule 4."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientView:
    """The destination's `client(chain_id)` (the fields the relayer uses)."""

    epoch: int
    latest_height: int
    status: str
    frozen_reason: str | None = None

    @property
    def frozen(self) -> bool:
        return self.status == FROZEN


@dataclass(slots=True)
class Feed:
    """What one `ensure` call achieved."""

    verified: set[int] = field(default_factory=set)  # heights verified on the destination
    failed: dict[int, str] = field(default_factory=dict)  # height -> why it cannot be verified
    deferred: set[int] = field(default_factory=set)  # heights of a later epoch than the target
    updates_sent: int = 0
    updates_failed: int = 0


def _frozen_in(outcome: TxOutcome) -> bool:
    events = (outcome.receipt or {}).get("events") or []
    return any(isinstance(e, Mapping) and e.get("name") == "ClientFrozen" for e in events)


class ClientFeeder:
    """Rules 1-4 for the client of `source` kept on `dest` (`sender` signs on `dest`)."""

    def __init__(
        self,
        *,
        source: ChainView,
        dest: ChainView,
        sender: TxSender,
        log: logging.Logger,
    ) -> None:
        self.source = source
        self.dest = dest
        self.sender = sender
        self.log = log

    async def client(self) -> ClientView | None:
        """Rule 1: the destination's client of the source, or None if not registered."""
        rec = record(await self.dest.query(XCLIENT, "client", [await self.source.chain_id()]))
        if rec is None:
            return None
        return ClientView(
            epoch=int(rec.get("epoch", 0)),
            latest_height=int(rec.get("latest_height", 0)),
            status=str(rec.get("status", "")),
            frozen_reason=rec.get("frozen_reason"),
        )

    async def usable_client(
        self, errors: list[str], *, direction: str, unregistered: str
    ) -> ClientView | None:
        """Rules 1 and 4 at the start of a relay direction's cycle: the client, or None with
        "<direction>: <unregistered>" or "<direction>: client frozen (<why>)" in `errors`."""
        client = await self.client()
        if client is None:
            errors.append(f"{direction}: {unregistered}")
            return None
        if client.frozen:
            errors.append(f"{direction}: client frozen ({client.frozen_reason})")
            return None
        return client

    async def is_verified(self, height: int) -> bool:
        source_id = await self.source.chain_id()
        return await self.dest.query(XCLIENT, "header", [source_id, height]) is not None

    async def ensure(self, proven: Sequence[ProvenTx], client: ClientView, target: int) -> Feed:
        """Make the headers of `proven` verified on the destination where rule 3 allows."""
        feed = Feed()
        by_height: dict[int, ProvenTx] = {}
        for p in sorted(proven, key=lambda p: p.height):
            by_height.setdefault(p.height, p)
        todo: list[ProvenTx] = []
        past: list[ProvenTx] = []
        for height, p in by_height.items():
            if await self.is_verified(height):
                feed.verified.add(height)
            elif p.epoch < client.epoch:
                past.append(p)
            elif p.epoch > target:
                feed.deferred.add(height)
            else:
                todo.append(p)
        # Certificates of the client's own epoch first, then the epoch changes, then the
        # target epoch's (rule 3).
        await self._certify([p for p in todo if p.epoch == client.epoch], feed)
        await self._certify(past, feed)  # the contract checks them with a stored past set
        later = [p for p in todo if p.epoch != client.epoch]
        if later:
            reached = await self._advance(client.epoch, target, feed)
            feed.deferred.update(p.height for p in later if p.epoch != reached)
            await self._certify([p for p in later if p.epoch == reached], feed)
        for p in [*todo, *past]:
            if p.height not in feed.verified and p.height not in feed.deferred:
                feed.failed.setdefault(p.height, "the client update for its header failed")
        return feed

    async def _certify(self, todo: Sequence[ProvenTx], feed: Feed) -> None:
        """Rule 2: as few certificates as cover every height, sent concurrently."""
        certs = await self._combined(sorted(todo, key=lambda p: p.height))
        results = await asyncio.gather(*(self._send(None, c, feed) for c in certs))
        for cert, ok in zip(certs, results, strict=True):
            if ok:
                feed.verified.update(h.height for h in cert.headers)

    async def _combined(self, todo: Sequence[ProvenTx]) -> list[Certificate]:
        """Rule 2: packets' certificates joined into longer ones. Packets at heights a < b of
        one epoch share one certificate: a's headers, the headers between (read from the
        source, `gm_getBlockByNumber` member `raw`), then b's certificate, as long as it stays
        within MAX_HEADERS headers and MAX_UPDATE_BYTES and the gap within MAX_GAP heights."""
        certs: list[Certificate] = []
        headers: list[BlockHeader] = []
        proof: CommitProof | None = None

        def close() -> None:
            if headers and proof is not None:
                certs.append(Certificate(headers=tuple(headers), proof=proof))

        for p in todo:
            if headers and p.height <= headers[-1].height:
                continue  # already covered
            if headers and p.epoch == headers[0].epoch:
                middle = await self._between(headers, p)
                if middle is not None:
                    headers += [*middle, *p.commit.headers]
                    proof = p.commit.proof
                    continue
            close()
            headers, proof = list(p.commit.headers), p.commit.proof
        close()
        return certs

    async def _between(self, headers: list[BlockHeader], p: ProvenTx) -> list[BlockHeader] | None:
        """The headers strictly between `headers[-1]` and `p`'s block if joining is allowed."""
        gap = p.height - headers[-1].height - 1
        size = sum(len(h.encode()) for h in headers) + len(p.commit.proof.encode())
        per = size // len(headers) + 1
        total = len(headers) + gap + len(p.commit.headers)
        if gap > MAX_GAP or total > MAX_HEADERS or size + per * total > MAX_UPDATE_BYTES:
            return None
        middle: list[BlockHeader] = []
        for height in range(headers[-1].height + 1, p.height):
            try:
                block = await self.source.rpc.call("gm_getBlockByNumber", [height])
                middle.append(BlockHeader.decode(parse_hex(block["raw"], name="raw")))
            except (RelayRpcError, DecodeError, ValueError, TypeError, KeyError):
                return None
        chain = [headers[-1], *middle, p.commit.headers[0]]
        linked = all(
            b.parent_id == a.block_id and b.height == a.height + 1 and b.epoch == a.epoch
            for a, b in itertools.pairwise(chain)
        )
        return middle if linked else None

    async def refresh(self, client: ClientView, target: int) -> bool:
        """A scheduled refresh (or the follow-up of an epoch change): move the client to
        `target` and verify a recent header of the source. True if an update was accepted."""
        feed = Feed()
        epoch = client.epoch
        if target > epoch:
            epoch = await self._advance(epoch, target, feed)
        cert = await self._recent_certificate()
        if cert is None or cert.headers[0].epoch != epoch:
            return feed.updates_sent > feed.updates_failed
        if cert.headers[-1].height <= client.latest_height:
            return feed.updates_sent > feed.updates_failed
        return await self._send(None, cert, feed)

    async def _recent_certificate(self) -> Certificate | None:
        head = await self.source.head()
        for height in range(head, max(0, head - 4), -1):
            try:
                doc = await self.source.rpc.call("gm_getCommitProof", [height])
            except RelayRpcError:
                continue
            try:
                return certificate_from_json(doc, f"commit proof {height}")
            except RelayProofError as exc:
                self.log.warning("%s: commit proof %d unusable: %s", self.source.name, height, exc)
                return None
        return None

    async def _advance(self, epoch: int, target: int, feed: Feed) -> int:
        """Rule 3: epoch changes from `epoch` to `target`, in order; the epoch reached."""
        while epoch < target:
            upto = min(target, epoch + _MAX_EPOCHS_PER_PROOF)
            try:
                doc = await self.source.rpc.call("gm_getEpochProof", [epoch, upto])
                changes = [await self._from_parent(c) for c in epoch_changes_from_json(doc)]
            except (RelayRpcError, RelayProofError) as exc:
                self.log.warning(
                    "%s: no epoch proof %d..%d: %s", self.source.name, epoch, upto, exc
                )
                return epoch
            for chunk in _chunks(changes, await self.source.chain_id()):
                if not await self._send(chunk, None, feed):
                    return epoch
                epoch = chunk[-1].epoch + 1
        return epoch

    async def _from_parent(self, change: EpochChange) -> EpochChange:
        """Rule 3: the change's certificate with E's parent P prepended (unless E is block 1)."""
        end = change.certificate.headers[0]
        if end.height <= 1:
            return change
        try:
            block = await self.source.rpc.call("gm_getBlockByNumber", [end.height - 1])
            parent = BlockHeader.decode(parse_hex(block["raw"], name="raw"))
        except (DecodeError, ValueError, TypeError, KeyError) as exc:
            raise RelayProofError(f"block {end.height - 1}: {exc}") from None
        if parent.block_id != end.parent_id:
            raise RelayProofError(
                f"block {end.height - 1} is not the parent of epoch end {end.height}"
            )
        cert = Certificate(
            headers=(parent, *change.certificate.headers), proof=change.certificate.proof
        )
        return EpochChange(
            epoch=change.epoch, certificate=cert, next_validators=change.next_validators
        )

    async def _send(
        self, changes: Sequence[EpochChange] | None, cert: Certificate | None, feed: Feed
    ) -> bool:
        update = ClientUpdate(
            chain_id=await self.source.chain_id(),
            epoch_changes=tuple(changes or ()),
            certificate=cert,
        )
        outcome = await self.sender.send(XCLIENT, "update_client", [update.encode()])
        feed.updates_sent += 1
        if _frozen_in(outcome):
            raise ClientFrozenError(
                f"the {self.dest.name} chain froze its client of {update.chain_id} on update "
                f"tx {outcome.tx_id.hex()} (the source chain signed two blocks at one height)"
            )
        if not outcome.ok:
            feed.updates_failed += 1
            why = outcome.error or _receipt_error(outcome.receipt)
            self.log.warning(
                "%s: client update of %s refused: %s", self.dest.name, update.chain_id, why
            )
            return False
        return True


def _receipt_error(receipt: Mapping[str, Any] | None) -> str:
    if receipt is None:
        return "no receipt"
    return f"{receipt.get('statusName')}: {receipt.get('error')}"


def _chunks(changes: Sequence[EpochChange], chain_id: str) -> list[list[EpochChange]]:
    """Rule 3: consecutive runs of epoch changes whose update stays within MAX_UPDATE_BYTES."""
    out: list[list[EpochChange]] = []
    for change in changes:
        if out:
            trial = ClientUpdate(chain_id=chain_id, epoch_changes=(*out[-1], change))
            if len(trial.encode()) <= MAX_UPDATE_BYTES:
                out[-1].append(change)
                continue
        out.append([change])
    return out

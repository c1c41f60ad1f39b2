"""Detects a peer that signs two conflicting votes or proposals in one round, so it can be banned.

The consensus core already refuses to count a second vote of a voter (it stays safe); this
module only decides *who to disconnect*. Rules:
1. Only messages the peer itself signed count: a vote whose `voter` is the authenticated sender,
   a proposal whose header's `proposer` is the sender. A relayed or forged message can never get
   an honest node banned.
2. Equivocation = two valid signatures by the same key over different block ids for the same
   (kind, epoch, round): rounds restart meaning in every epoch (the epoch is in every vote's
   signing root; a proposal names it in its header), so a vote in round r of epoch e and one in
   round r of epoch e+1 never conflict. Both signatures are checked before anyone is accused
   (the proof is kept in the log line).
3. Memory is bounded: only the last `window` rounds per sender are remembered.
4. No signature is checked until two messages conflict. The detector runs on the event loop for
   every consensus message, and the consensus core checks each signature it uses anyway; an SM2
   check here per vote and proposal took ~17 % of the loop's time at 100 tx/s on four validators
   (docs/benchmarks.md, session 8). So the first message of a (kind, epoch, round) is remembered
   with its signature, unchecked (a proposal as its block id only, never its block); only when a
   second one names another block are both signing roots computed and checked (rule 2). An
   invalid remembered message is replaced by the first valid conflicting one, so a forged or
   garbled first message can never shield a later equivocation.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from gmchain.consensus.types import Verifier
from gmchain.ledger.types import NodeId, Proposal, QuorumCert, Vote

__all__ = ["EquivocationDetector"]


class EquivocationDetector:
    def __init__(self, *, chain_id: str, verifier: Verifier, window: int = 64) -> None:
        self.chain_id = chain_id
        self.verifier = verifier
        self.window = window
        # (sender, kind) -> {(epoch, round): the first signed message}, oldest first; unchecked
        # until a conflict (rule 4).
        self._seen: dict[tuple[bytes, str], OrderedDict[tuple[int, int], _Signed]] = {}

    def check(self, sender: bytes, msg: object) -> str | None:
        """Return why `sender` equivocated with `msg`, or None."""
        match msg:
            case Vote() if msg.voter == sender:
                signed = _Signed(msg.block_id, msg.signature, msg)
                return self._note(sender, "vote", msg.epoch, msg.round, signed)
            case Proposal() if msg.block.header.proposer == sender:
                h = msg.block.header
                signed = _Signed(h.block_id, msg.signature, None)
                return self._note(sender, "proposal", h.epoch, h.round, signed)
            case _:
                return None

    def _note(
        self, sender: bytes, kind: str, epoch: int, round_: int, signed: _Signed
    ) -> str | None:
        seen = self._seen.setdefault((sender, kind), OrderedDict())
        key = (epoch, round_)
        prior = seen.get(key)
        if prior is None:
            seen[key] = signed  # rule 4: unchecked for now
            while len(seen) > self.window:
                seen.popitem(last=False)
            return None
        if prior.block_id == signed.block_id:
            return None  # a resend
        # Rule 2: two different blocks in one round; check both before accusing anyone.
        if not self._valid(sender, signed):
            return None
        if not self._valid(sender, prior):
            seen[key] = signed  # rule 4: the valid one replaces it
            return None
        return (
            f"equivocation: two signed {kind}s in round {round_} of epoch {epoch} "
            f"(blocks {prior.block_id.hex()[:16]} and {signed.block_id.hex()[:16]})"
        )

    def _valid(self, sender: bytes, signed: _Signed) -> bool:
        v = signed.vote
        if v is not None:
            root = QuorumCert.signing_root(self.chain_id, v.epoch, v.block_id, v.round, v.height)
        else:
            root = Proposal.signing_root(self.chain_id, signed.block_id)
        return bool(self.verifier.verify(NodeId(sender), root, signed.signature))


class _Signed(NamedTuple):
    """A remembered message (rule 4): its block and signature, and for a vote the vote itself
    (its signing root needs its epoch, round and height; a proposal's needs only the block id, so
    its block is not kept)."""

    block_id: bytes
    signature: bytes
    vote: Vote | None

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
   with its signing root and signature, unchecked; only when a second one names another block are
   both checked (rule 2). An invalid remembered message is replaced by the first valid
   conflicting one, so a forged or garbled first message can never shield a later equivocation.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from gmchain.consensus.types import Verifier
from gmchain.ledger.types import NodeId, Proposal, QuorumCert, Vote

__all__ = ["EquivocationDetector"]


class EquivocationDetector:
    def __init__(self, *, chain_id: str, verifier: Verifier, window: int = 64) -> None:
        self.chain_id = chain_id
        self.verifier = verifier
        self.window = window
        # (sender, kind) -> {(epoch, round): (block_id, signing root, signature)}, oldest first;
        # unchecked until a conflict (rule 4).
        self._seen: dict[tuple[bytes, str], OrderedDict[tuple[int, int], _Signed]] = {}

    def check(self, sender: bytes, msg: object) -> str | None:
        """Return why `sender` equivocated with `msg`, or None."""
        match msg:
            case Vote() if msg.voter == sender:

                def vote_root(v: Vote = msg) -> bytes:
                    return QuorumCert.signing_root(
                        self.chain_id, v.epoch, v.block_id, v.round, v.height
                    )

                return self._note(
                    sender, "vote", msg.epoch, msg.round, msg.block_id, vote_root, msg.signature
                )
            case Proposal() if msg.block.header.proposer == sender:
                h = msg.block.header

                def proposal_root(bid: bytes = h.block_id) -> bytes:
                    return Proposal.signing_root(self.chain_id, bid)

                return self._note(
                    sender, "proposal", h.epoch, h.round, h.block_id, proposal_root, msg.signature
                )
            case _:
                return None

    def _note(
        self,
        sender: bytes,
        kind: str,
        epoch: int,
        round_: int,
        block_id: bytes,
        root: Callable[[], bytes],
        signature: bytes,
    ) -> str | None:
        seen = self._seen.setdefault((sender, kind), OrderedDict())
        key = (epoch, round_)
        prior = seen.get(key)
        if prior is None:
            seen[key] = _Signed(block_id, root, signature)  # rule 4: unchecked for now
            while len(seen) > self.window:
                seen.popitem(last=False)
            return None
        if prior.block_id == block_id:
            return None  # a resend
        # Rule 2: two different blocks in one round; check both before accusing anyone.
        if not self._valid(sender, root(), signature):
            return None
        if not self._valid(sender, prior.root(), prior.signature):
            seen[key] = _Signed(block_id, root, signature)  # rule 4: the valid one replaces it
            return None
        return (
            f"equivocation: two signed {kind}s in round {round_} of epoch {epoch} "
            f"(blocks {prior.block_id.hex()[:16]} and {block_id.hex()[:16]})"
        )

    def _valid(self, sender: bytes, root: bytes, signature: bytes) -> bool:
        return bool(self.verifier.verify(NodeId(sender), root, signature))


class _Signed(NamedTuple):
    """A remembered message (rule 4): its block, how to make its signing root, its signature."""

    block_id: bytes
    root: Callable[[], bytes]
    signature: bytes

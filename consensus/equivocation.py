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
"""

from __future__ import annotations

from collections import OrderedDict

from gmchain.consensus.types import Verifier
from gmchain.ledger.types import NodeId, Proposal, QuorumCert, Vote

__all__ = ["EquivocationDetector"]


class EquivocationDetector:
    def __init__(self, *, chain_id: str, verifier: Verifier, window: int = 64) -> None:
        self.chain_id = chain_id
        self.verifier = verifier
        self.window = window
        # (sender, kind) -> {(epoch, round): block_id}, oldest first.
        self._seen: dict[tuple[bytes, str], OrderedDict[tuple[int, int], bytes]] = {}

    def check(self, sender: bytes, msg: object) -> str | None:
        """Return why `sender` equivocated with `msg`, or None."""
        match msg:
            case Vote() if msg.voter == sender:
                root = QuorumCert.signing_root(
                    self.chain_id, msg.epoch, msg.block_id, msg.round, msg.height
                )
                if not self.verifier.verify(NodeId(sender), root, msg.signature):
                    return None
                return self._note(sender, "vote", msg.epoch, msg.round, msg.block_id)
            case Proposal() if msg.block.header.proposer == sender:
                h = msg.block.header
                root = Proposal.signing_root(self.chain_id, h.block_id)
                if not self.verifier.verify(NodeId(sender), root, msg.signature):
                    return None
                return self._note(sender, "proposal", h.epoch, h.round, h.block_id)
            case _:
                return None

    def _note(
        self, sender: bytes, kind: str, epoch: int, round_: int, block_id: bytes
    ) -> str | None:
        seen = self._seen.setdefault((sender, kind), OrderedDict())
        prior = seen.get((epoch, round_))
        if prior is not None:
            if prior != block_id:
                return (
                    f"equivocation: two signed {kind}s in round {round_} of epoch {epoch} "
                    f"(blocks {prior.hex()[:16]} and {block_id.hex()[:16]})"
                )
            return None
        seen[(epoch, round_)] = block_id
        while len(seen) > self.window:
            seen.popitem(last=False)
        return None

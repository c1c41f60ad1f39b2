"""The epoch gate: which messages a replica of one epoch looks at (rule E5 of consensus/replica.py).

Rules this module keeps (docs/consensus.md, "Epochs"; DiemBFT v4 / Aptos: every message names its
epoch and an epoch's replica handles its own epoch's messages only):
1. A replica runs exactly one epoch. A proposal (its header's epoch), vote or timeout is let
   through only if it names the replica's epoch; any other is dropped before a signature is
   checked, and counted (`dropped`).
2. A message naming a LATER epoch — a proposal, vote or timeout, or a SyncInfo one of whose
   certificates does — shows that the sender moved past an epoch end we have not committed. It is
   reported (`PeerInLaterEpoch`) when it names a higher epoch than any earlier report for that
   peer, so the replica syncs from it. The claim is unauthenticated (we do not know the later
   epoch's set): a liar costs one report and at most one SyncRequest (one is in flight at a time,
   consensus/retrieval.py), and the remembered peers are bounded (`MAX_PEERS`, then forgotten).
3. A proposal, vote or timeout of an OLDER epoch shows that its sender has not committed the
   block that ended its epoch: the replica answers with its SyncInfo (rule L9's budget, keyed
   (peer, -1 - epoch) so that it never shares a slot with a round). Our high QC is the root
   QC(E) or a QC of our epoch, and our commit QC the one that committed E or a later one: the
   peer commits E with them, or is shown a later epoch and syncs (rule 2).
4. Messages without an epoch of their own — SyncInfo, block and sync requests and responses —
   pass: their certificates are checked against this epoch's set (consensus/certs.py rule 6), so
   those of other epochs simply fail to verify; the epoch root is the one exception.
"""

from __future__ import annotations

from gmchain.consensus.messages import ConsensusMessage, SyncInfo
from gmchain.consensus.types import PeerInLaterEpoch
from gmchain.ledger.types import NodeId, Proposal, TimeoutVote, Vote

__all__ = ["MAX_PEERS", "EpochGate", "get_message_epoch"]

MAX_PEERS = 1024  # rule 2


def get_message_epoch(msg: ConsensusMessage) -> int | None:
    """The epoch a proposal, vote or timeout names (rule 1); None for the others."""
    match msg:
        case Proposal():
            return int(msg.block.header.epoch)
        case Vote() | TimeoutVote():
            return int(msg.epoch)
        case _:
            return None


def _claimed_epoch(msg: ConsensusMessage) -> int | None:
    """The highest epoch a message shows its sender in (rule 2)."""
    if isinstance(msg, SyncInfo):
        eps = [msg.high_qc.epoch]
        if msg.tc is not None:
            eps.append(msg.tc.epoch)
        if msg.commit_qc is not None:
            eps.append(msg.commit_qc.epoch)
        return int(max(eps))
    return get_message_epoch(msg)


class EpochGate:
    """Rules 1-3 for one replica's epoch."""

    def __init__(self, *, epoch: int) -> None:
        self.epoch = epoch
        self.dropped = 0  # rule 1: proposals, votes and timeouts of other epochs
        # Rule 2: the highest later epoch reported per peer (bounded by MAX_PEERS).
        self._reported: dict[NodeId, int] = {}

    def admit(
        self, sender: NodeId, msg: ConsensusMessage
    ) -> tuple[bool, PeerInLaterEpoch | None, int | None]:
        """Whether the replica may handle `msg`; a report if it shows a later epoch (rule 2);
        the help key (rule 3) if its sender is in an older epoch, else None."""
        report = None
        claimed = _claimed_epoch(msg)
        if (
            claimed is not None
            and claimed > self.epoch
            and claimed > self._reported.get(sender, -1)
        ):
            if len(self._reported) >= MAX_PEERS:
                self._reported.clear()
            self._reported[sender] = claimed
            report = PeerInLaterEpoch(peer=sender, epoch=claimed)
        ep = get_message_epoch(msg)
        if ep is not None and ep != self.epoch:
            self.dropped += 1
            return False, report, (-1 - ep if ep < self.epoch else None)
        return True, report, None

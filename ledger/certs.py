"""Consensus votes and certificates: Vote, QuorumCert, TimeoutVote, TimeoutCert.

Rules this module keeps (docs/protocol.md sections 2 and 6; docs/consensus.md):
1. Votes sign `QuorumCert.signing_root(chain_id, epoch, block_id, round, height)`; a QC's
   signatures sign the same root. Timeouts sign
   `TimeoutVote.signing_root(chain_id, epoch, round, high_qc_round)`. Every vote, timeout and
   certificate names its epoch, and is checked only against that epoch's validator set (votes of
   different epochs can never be combined or replayed into one another).
2. A certificate's signer list is strictly ascending by node id (bytewise), no duplicates, and
   holds at most MAX_SIGNERS entries; each struct checks this when built or decoded.
3. Each struct's codec is derived from its fields (ledger.struct_codec), its tag registered in
   ledger.wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from gmchain.ledger.scalars import (
    DIGEST_SIZE,
    NODE_ID_SIZE,
    SIGNATURE_SIZE,
    Digest,
    Height,
    NodeId,
    Round,
    check_bytes,
    check_int,
    check_sig_list,
    need,
)
from gmchain.ledger.struct_codec import Struct, max_items, wire_struct
from gmchain.ledger.wire import Tag, compute_signing_root

__all__ = ["QuorumCert", "TimeoutCert", "TimeoutVote", "Vote"]

MAX_SIGNERS = 1024  # entries of one QC or TC (a genesis admits far fewer validators)


@wire_struct
@dataclass(frozen=True, slots=True, kw_only=True)
class QuorumCert(Struct):
    """Votes of more than 2/3 of the voting power for one block (HotStuff's QC).

    Each signature signs `QuorumCert.signing_root(chain_id, epoch, block_id, round, height)`. The
    genesis QC has no signatures and certifies the genesis block by definition.
    """

    TAG: ClassVar[Tag] = Tag.QUORUM_CERT
    epoch: int = 0
    block_id: Digest
    round: Round
    height: Height
    signatures: tuple[tuple[NodeId, bytes], ...] = field(
        default=(), metadata=max_items(MAX_SIGNERS)
    )

    def __post_init__(self) -> None:
        check_int("epoch", self.epoch)
        check_bytes("block_id", self.block_id, DIGEST_SIZE)
        check_int("round", self.round)
        check_int("height", self.height)
        check_sig_list("signatures", self.signatures, 2, MAX_SIGNERS)
        object.__setattr__(self, "signatures", tuple((NodeId(a), b) for a, b in self.signatures))

    @staticmethod
    def signing_root(
        chain_id: str, epoch: int, block_id: bytes, round_: int, height: int
    ) -> Digest:
        return compute_signing_root("vote", [chain_id, epoch, block_id, round_, height])


@wire_struct
@dataclass(frozen=True, slots=True, kw_only=True)
class Vote(Struct):
    """One replica's vote for a block; sent to the next leader."""

    TAG: ClassVar[Tag] = Tag.VOTE
    epoch: int = 0
    block_id: Digest
    round: Round
    height: Height
    voter: NodeId
    signature: bytes

    def __post_init__(self) -> None:
        check_int("epoch", self.epoch)
        check_bytes("block_id", self.block_id, DIGEST_SIZE)
        check_int("round", self.round)
        check_int("height", self.height)
        check_bytes("voter", self.voter, NODE_ID_SIZE)
        check_bytes("signature", self.signature, SIGNATURE_SIZE)


@wire_struct
@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutVote(Struct):
    """A replica gives up on `round`; carries its highest QC (Jolteon's timeout message).

    The signature signs `TimeoutVote.signing_root(chain_id, epoch, round, high_qc.round)`.
    """

    TAG: ClassVar[Tag] = Tag.TIMEOUT_VOTE
    epoch: int = 0
    round: Round
    high_qc: QuorumCert
    voter: NodeId
    signature: bytes

    def __post_init__(self) -> None:
        check_int("epoch", self.epoch)
        check_int("round", self.round)
        need(isinstance(self.high_qc, QuorumCert), "high_qc: expected a QuorumCert")
        check_bytes("voter", self.voter, NODE_ID_SIZE)
        check_bytes("signature", self.signature, SIGNATURE_SIZE)

    @staticmethod
    def signing_root(chain_id: str, epoch: int, round_: int, high_qc_round: int) -> Digest:
        return compute_signing_root("timeout", [chain_id, epoch, round_, high_qc_round])


@wire_struct
@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutCert(Struct):
    """Timeouts of more than 2/3 of the voting power for `round`.

    Entries are (voter, that voter's high_qc round, signature), ascending by voter; `high_qc` is the
    highest QC among them, so the next leader can extend it.
    """

    TAG: ClassVar[Tag] = Tag.TIMEOUT_CERT
    epoch: int = 0
    round: Round
    high_qc: QuorumCert
    entries: tuple[tuple[NodeId, int, bytes], ...] = field(
        default=(), metadata=max_items(MAX_SIGNERS)
    )

    def __post_init__(self) -> None:
        check_int("epoch", self.epoch)
        check_int("round", self.round)
        need(isinstance(self.high_qc, QuorumCert), "high_qc: expected a QuorumCert")
        check_sig_list("entries", self.entries, 3, MAX_SIGNERS)
        for e in self.entries:
            check_int("entry high_qc round", e[1])
        object.__setattr__(
            self, "entries", tuple((NodeId(a), int(r), s) for a, r, s in self.entries)
        )

"""Consensus wire messages beyond ledger.types: block retrieval, committed sync, commit proofs.

Rules this module keeps (the encoding rules of ledger/struct_codec.py; tags in ledger.wire.Tag):
1. Every struct encodes as `[TAG, field1, ...]`, its codec derived from its fields
   (ledger.struct_codec); decoding rejects any other shape.
2. Every struct checks its own fields in `__post_init__`; counts are bounded so a hostile peer
   cannot make us allocate much more than its message's size.
3. A `CommitProof` is (child header C, QC for C). It proves that C.justify.block_id is committed by
   Jolteon's 2-chain rule (Gelashvili et al., FC 2022, section 3, "Commit rule"): C.round ==
   C.justify.round + 1 and a quorum certified C. `consensus.certs.verify_commit_proof` checks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from gmchain.ledger.codec import encode
from gmchain.ledger.struct_codec import Struct, max_items, wire_struct
from gmchain.ledger.types import (
    DIGEST_SIZE,
    MAX_VALIDATORS,
    NODE_ID_SIZE,
    SIGNATURE_SIZE,
    Block,
    BlockHeader,
    Digest,
    Height,
    NodeId,
    Proposal,
    QuorumCert,
    Round,
    TimeoutCert,
    TimeoutVote,
    Vote,
)
from gmchain.ledger.wire import Tag

__all__ = [
    "MAX_BLOCKS_PER_RESPONSE",
    "MAX_BLOCK_TX_BYTES",
    "MAX_MESSAGE_ARRAY",
    "MAX_MESSAGE_BYTES",
    "BlockRequest",
    "BlockResponse",
    "CommitProof",
    "ConsensusMessage",
    "SyncInfo",
    "SyncRequest",
    "SyncResponse",
]

MAX_BLOCKS_PER_RESPONSE = 128


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def _is_u64(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**64


@wire_struct
@dataclass(frozen=True, slots=True, kw_only=True)
class CommitProof(Struct):
    """Proof that a block is committed: `header` is a child C of it, `qc` certifies C, and
    C.round == C.justify.round + 1 (Jolteon's 2-chain rule); C.justify names the committed block."""

    TAG: ClassVar[Tag] = Tag.COMMIT_PROOF
    header: BlockHeader
    qc: QuorumCert

    def __post_init__(self) -> None:
        _need(isinstance(self.header, BlockHeader), "header: expected a BlockHeader")
        _need(isinstance(self.qc, QuorumCert), "qc: expected a QuorumCert")

    @property
    def committed_id(self) -> Digest:
        return self.header.justify.block_id


@wire_struct
@dataclass(frozen=True, slots=True, kw_only=True)
class BlockRequest(Struct):
    """Ask a peer for block `block_id` and up to `count - 1` of its ancestors."""

    TAG: ClassVar[Tag] = Tag.BLOCK_REQUEST
    block_id: Digest
    count: int

    def __post_init__(self) -> None:
        _need(isinstance(self.block_id, bytes) and len(self.block_id) == 32, "block_id: 32 bytes")
        _need(_is_u64(self.count) and 1 <= self.count <= MAX_BLOCKS_PER_RESPONSE, "count: 1..128")


@wire_struct
@dataclass(frozen=True, slots=True, kw_only=True)
class BlockResponse(Struct):
    """Blocks newest first: blocks[0] has the requested id, blocks[i+1] is blocks[i]'s parent."""

    TAG: ClassVar[Tag] = Tag.BLOCK_RESPONSE
    block_id: Digest
    blocks: tuple[Block, ...] = field(metadata=max_items(MAX_BLOCKS_PER_RESPONSE))

    def __post_init__(self) -> None:
        _need(isinstance(self.block_id, bytes) and len(self.block_id) == 32, "block_id: 32 bytes")
        _need(len(self.blocks) <= MAX_BLOCKS_PER_RESPONSE, "blocks: too many")
        _need(all(isinstance(b, Block) for b in self.blocks), "blocks: expected Block items")
        object.__setattr__(self, "blocks", tuple(self.blocks))


@wire_struct
@dataclass(frozen=True, slots=True, kw_only=True)
class SyncRequest(Struct):
    """Ask for committed blocks from `from_height` on (served by App.get_committed_blocks)."""

    TAG: ClassVar[Tag] = Tag.SYNC_REQUEST
    from_height: Height
    count: int

    def __post_init__(self) -> None:
        _need(_is_u64(self.from_height) and self.from_height >= 1, "from_height: >= 1")
        _need(_is_u64(self.count) and 1 <= self.count <= MAX_BLOCKS_PER_RESPONSE, "count: 1..128")


@wire_struct
@dataclass(frozen=True, slots=True, kw_only=True)
class SyncResponse(Struct):
    """Committed blocks ascending by height, each with the proof of the commit that included it."""

    TAG: ClassVar[Tag] = Tag.SYNC_RESPONSE
    items: tuple[tuple[Block, CommitProof], ...] = field(
        metadata=max_items(MAX_BLOCKS_PER_RESPONSE)
    )

    def __post_init__(self) -> None:
        _need(len(self.items) <= MAX_BLOCKS_PER_RESPONSE, "items: too many")
        for it in self.items:
            _need(
                isinstance(it, tuple)
                and len(it) == 2
                and isinstance(it[0], Block)
                and isinstance(it[1], CommitProof),
                "items: expected (Block, CommitProof) pairs",
            )


@wire_struct
@dataclass(frozen=True, slots=True, kw_only=True)
class SyncInfo(Struct):
    """Our highest certificates, sent to a peer whose timeout shows it is behind or alone:
    `high_qc`, the highest TC, and `commit_qc`, the QC that committed our latest block (the QC of
    a child C whose parent is our committed tip; DiemBFT's `highest_commit_cert`). A peer that
    holds the blocks but missed that QC commits with it; otherwise it fetches them."""

    TAG: ClassVar[Tag] = Tag.SYNC_INFO
    high_qc: QuorumCert
    tc: TimeoutCert | None
    commit_qc: QuorumCert | None = None

    def __post_init__(self) -> None:
        _need(isinstance(self.high_qc, QuorumCert), "high_qc: expected a QuorumCert")
        _need(self.tc is None or isinstance(self.tc, TimeoutCert), "tc: expected a TimeoutCert")
        _need(
            self.commit_qc is None or isinstance(self.commit_qc, QuorumCert),
            "commit_qc: expected a QuorumCert",
        )


ConsensusMessage = (
    Proposal
    | Vote
    | TimeoutVote
    | BlockRequest
    | BlockResponse
    | SyncRequest
    | SyncResponse
    | SyncInfo
)


# --- size: every container of a block fits one message (rule 4) ------------------------------

# The largest payload a peer accepts (the p2p frame: node/network.py configures P2PConfig with it).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# The most items one array of a peer message may hold, so also the most transactions one block
# may hold: node/config.py refuses a `max_block_txs` above it.
MAX_MESSAGE_ARRAY = 20_000


def _largest_block_overhead() -> int:
    """Bytes of the largest message that carries one block, beyond the block's transactions:
    the largest header (longest chain id, u64 fields, a QC of MAX_VALIDATORS signatures) in a
    Proposal with the largest TC, in a BlockResponse, or with the largest CommitProof in a
    SyncResponse; +4 for the widest array header of the transaction list."""
    u64 = 2**64 - 1
    signers = [NodeId(i.to_bytes(NODE_ID_SIZE, "big")) for i in range(1, MAX_VALIDATORS + 1)]
    sig = b"\xff" * SIGNATURE_SIZE
    digest = Digest(b"\xff" * DIGEST_SIZE)
    qc = QuorumCert(
        epoch=u64,
        block_id=digest,
        round=Round(u64),
        height=Height(u64),
        signatures=tuple((n, sig) for n in signers),
    )
    header = BlockHeader(
        chain_id="x" * 64,
        epoch=u64,
        height=Height(u64),
        round=Round(u64),
        parent_id=digest,
        timestamp_ms=u64,
        proposer=signers[0],
        tx_root=digest,
        tx_count=0,
        receipt_root=digest,
        acc_root=digest,
        acc_size=u64,
        state_hash=digest,
        next_validators_hash=digest,
        justify=qc,
    )
    block = Block(header=header, txs=())
    tc = TimeoutCert(
        epoch=u64, round=Round(u64), high_qc=qc, entries=tuple((n, u64, sig) for n in signers)
    )
    proof = CommitProof(header=header, qc=qc)
    carriers = [
        Proposal(block=block, tc=tc, signature=sig),
        BlockResponse(block_id=digest, blocks=(block,)),
        SyncResponse(items=((block, proof),)),
    ]
    tx_count_widening = len(encode(u64)) - len(encode(0))
    return max(len(m.encode()) for m in carriers) + tx_count_widening + 4


# The transaction bytes one block may hold: so a leader never builds a block that its Proposal, a
# BlockResponse or a SyncResponse could not carry to a peer (issue 10, fault 1). Computed from
# the layout above at import, not guessed.
MAX_BLOCK_TX_BYTES = MAX_MESSAGE_BYTES - _largest_block_overhead()

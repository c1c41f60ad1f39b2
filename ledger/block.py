"""Block headers, blocks and proposals (docs/protocol.md sections 2 and 6).

Rules this module keeps:
1. A block's id is the signing root of its header (`compute_signing_root("header", header)`),
   computed from the header's canonical encoding the first time it is asked for and kept, as is
   the encoding: a decoded header keeps the bytes it was decoded from (decoding checked that they
   are exactly its canonical encoding), so serving or hashing it encodes nothing again. The
   header commits to the transactions (tx_root), the receipts (receipt_root), the global
   accumulator (acc_root, acc_size), the state-change chain (state_hash), its epoch, the epoch
   and validator set of the next block (next_validators_hash) and the QC that justifies its
   parent.
2. A block's `tx_count` equals its number of transactions.
3. A proposal's signature signs `Proposal.signing_root(chain_id, block_id)`.
4. Each struct's codec is derived from its fields (ledger.struct_codec), its tag registered in
   ledger.wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from gmchain.ledger.certs import QuorumCert, TimeoutCert
from gmchain.ledger.codec import Limits
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
    check_list,
    check_str,
    need,
)
from gmchain.ledger.struct_codec import Struct, max_items, wire_struct
from gmchain.ledger.tx import SignedTx
from gmchain.ledger.wire import Tag, compute_encoded_root, compute_signing_root

__all__ = ["Block", "BlockHeader", "Proposal"]

MAX_BLOCK_ITEMS = 100_000  # transactions of one block as a struct (the wire allows fewer)


@wire_struct
@dataclass(frozen=True, slots=True, kw_only=True)
class BlockHeader(Struct):
    """A block header. Its signing root under DOMAIN["header"] is the block id."""

    TAG: ClassVar[Tag] = Tag.BLOCK_HEADER
    chain_id: str
    epoch: int  # the epoch whose validator set certifies this block (genesis: 0)
    height: Height
    round: Round
    parent_id: Digest  # for genesis: the genesis config hash
    timestamp_ms: int  # proposer's clock; must exceed the parent's
    proposer: NodeId
    tx_root: Digest  # RFC 6962 root over the tx ids of this block
    tx_count: int
    receipt_root: Digest  # RFC 6962 root over the encoded receipts of this block
    acc_root: Digest  # global accumulator root after this block's txs
    acc_size: int  # number of txs in the accumulator after this block
    state_hash: Digest  # SM3 chain over every block's state writes (see docs/protocol.md)
    # ledger.epoch.next_validators_commitment(epoch, set) of the next block of this branch: this
    # epoch and its set, or the next epoch and its set on an epoch-ending block and its suffix.
    next_validators_hash: Digest
    justify: QuorumCert  # QC for the parent (the genesis QC for height 1)
    # Rule 1: the block id and the canonical encoding, kept once computed (or decoded from);
    # init=False so that dataclasses.replace() computes them again.
    _id: bytes = field(default=b"", init=False, compare=False, repr=False)
    _enc: bytes = field(default=b"", init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_str("chain_id", self.chain_id, 64)
        check_int("epoch", self.epoch)
        check_int("height", self.height)
        check_int("round", self.round)
        check_bytes("parent_id", self.parent_id, DIGEST_SIZE)
        check_int("timestamp_ms", self.timestamp_ms)
        check_bytes("proposer", self.proposer, NODE_ID_SIZE)
        check_bytes("tx_root", self.tx_root, DIGEST_SIZE)
        check_int("tx_count", self.tx_count)
        check_bytes("receipt_root", self.receipt_root, DIGEST_SIZE)
        check_bytes("acc_root", self.acc_root, DIGEST_SIZE)
        check_int("acc_size", self.acc_size)
        check_bytes("state_hash", self.state_hash, DIGEST_SIZE)
        check_bytes("next_validators_hash", self.next_validators_hash, DIGEST_SIZE)
        need(isinstance(self.justify, QuorumCert), "justify: expected a QuorumCert")

    @classmethod
    def decode(cls, data: bytes, limits: Limits | None = None) -> BlockHeader:
        """Struct.decode, keeping `data` as the encoding (rule 1: it is the canonical one)."""
        # (a slotted dataclass is a new class: a bare super() would name the one it replaced)
        header = super(BlockHeader, cls).decode(data, limits)
        object.__setattr__(header, "_enc", bytes(data))
        return header

    def encode(self) -> bytes:
        enc = self._enc
        if not enc:
            enc = Struct.encode(self)
            object.__setattr__(self, "_enc", enc)
        return enc

    @property
    def block_id(self) -> Digest:
        bid = self._id
        if not bid:  # rule 1 (two threads may both compute it: the same bytes)
            bid = compute_encoded_root("header", self.encode())
            object.__setattr__(self, "_id", bid)
        return Digest(bid)


@wire_struct
@dataclass(frozen=True, slots=True, kw_only=True)
class Block(Struct):
    """A header and its transactions (in execution order)."""

    TAG: ClassVar[Tag] = Tag.BLOCK
    header: BlockHeader
    txs: tuple[SignedTx, ...] = field(default=(), metadata=max_items(MAX_BLOCK_ITEMS))

    def __post_init__(self) -> None:
        need(isinstance(self.header, BlockHeader), "header: expected a BlockHeader")
        check_list("txs", self.txs, MAX_BLOCK_ITEMS)
        need(all(isinstance(t, SignedTx) for t in self.txs), "txs: expected SignedTx items")
        object.__setattr__(self, "txs", tuple(self.txs))
        need(len(self.txs) == self.header.tx_count, "tx_count does not match the transactions")

    @property
    def block_id(self) -> Digest:
        return self.header.block_id


@wire_struct
@dataclass(frozen=True, slots=True, kw_only=True)
class Proposal(Struct):
    """A leader's proposal: the block, the TC that let it skip a round (if any), its signature.

    The signature signs `compute_signing_root("proposal", [chain_id, block_id])`.
    """

    TAG: ClassVar[Tag] = Tag.PROPOSAL
    block: Block
    tc: TimeoutCert | None
    signature: bytes

    def __post_init__(self) -> None:
        need(isinstance(self.block, Block), "block: expected a Block")
        need(self.tc is None or isinstance(self.tc, TimeoutCert), "tc: expected a TimeoutCert")
        check_bytes("signature", self.signature, SIGNATURE_SIZE)

    @staticmethod
    def signing_root(chain_id: str, block_id: bytes) -> Digest:
        return compute_signing_root("proposal", [chain_id, block_id])

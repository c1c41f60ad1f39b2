"""Canonical protocol types, one import away: a facade over the modules that define them.

Where each part lives (docs/protocol.md is the byte-exact statement of all of them):
- ledger/scalars.py: named scalar types (Height, Round, Digest, NodeId, Address), sizes, and the
  field checks every struct runs when built.
- ledger/wire.py: the wire registry: every struct's type tag (`Tag`) and every hash domain
  (`DOMAIN`), with `compute_signing_root(domain, value) = SM3(domain || 0x00 || encode(value))`.
- ledger/struct_codec.py: `Struct`, and the codec and nesting depth derived from a struct's fields.
- ledger/tx.py: TxBody, SignedTx, Event, Receipt, ReceiptStatus.
- ledger/certs.py: Vote, QuorumCert, TimeoutVote, TimeoutCert.
- ledger/block.py: BlockHeader, Block, Proposal.
- ledger/genesis.py: GenesisValidator, Genesis.
This module only re-exports; new code may import from either.
"""

from __future__ import annotations

from gmchain.ledger.block import Block, BlockHeader, Proposal
from gmchain.ledger.certs import QuorumCert, TimeoutCert, TimeoutVote, Vote
from gmchain.ledger.genesis import Genesis, GenesisValidator
from gmchain.ledger.scalars import (
    DIGEST_SIZE,
    MAX_TX_BYTES,
    MAX_VALIDATORS,
    MAX_VALUE_DEPTH,
    NODE_ID_SIZE,
    PUBKEY_SIZE,
    SIGNATURE_SIZE,
    ZERO_DIGEST,
    Address,
    Digest,
    Height,
    NodeId,
    Round,
)
from gmchain.ledger.struct_codec import Struct, decode_struct
from gmchain.ledger.tx import Event, Receipt, ReceiptStatus, SignedTx, TxBody
from gmchain.ledger.wire import DOMAIN, Tag, compute_signing_root

__all__ = [
    "DIGEST_SIZE",
    "DOMAIN",
    "MAX_TX_BYTES",
    "MAX_VALIDATORS",
    "MAX_VALUE_DEPTH",
    "NODE_ID_SIZE",
    "PUBKEY_SIZE",
    "SIGNATURE_SIZE",
    "ZERO_DIGEST",
    "Address",
    "Block",
    "BlockHeader",
    "Digest",
    "Event",
    "Genesis",
    "GenesisValidator",
    "Height",
    "NodeId",
    "Proposal",
    "QuorumCert",
    "Receipt",
    "ReceiptStatus",
    "Round",
    "SignedTx",
    "Struct",
    "Tag",
    "TimeoutCert",
    "TimeoutVote",
    "TxBody",
    "Vote",
    "compute_signing_root",
    "decode_struct",
]

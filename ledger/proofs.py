"""Proof objects the node hands out (JSON-RPC) and anyone can check offline.

Rules this module keeps (docs/protocol.md, "Proof formats"):
1. A transaction proof bundle shows that a transaction id is (a) leaf `index_in_block` of its
   block's tx_root, which the encoded header commits to, and (b) leaf `acc_index` of the global
   accumulator of `acc_size` leaves with root `acc_root` (RFC 9162 §2.1.3 proofs, SM3 hashing as in
   `ledger.merkle`). The accumulator leaf of a transaction is `leaf_hash(tx_id)`, its index is
   `header.acc_size - header.tx_count + index_in_block`.
2. `acc_size`/`acc_root` are either the header's own (then they must equal the header's fields) or a
   later header's (then `acc_size` > header.acc_size, and the caller must trust them from that
   later header). `verify_tx_proof` checks everything inside the bundle; *trusting the header* (its
   block id under a QC, or a known chain) is the caller's job and is not done here.
3. A consistency proof shows the accumulator of `old_size` leaves is a prefix of that of
   `new_size` leaves (RFC 9162 §2.1.4).
4. JSON: binary values are `0x`-prefixed lower-case hex (the RPC convention), sizes and indices are
   JSON integers. `from_json` raises `ProofFormatError` on any malformed field; verification
   returns False (never raises) on a well-formed but wrong proof.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gmchain.ledger.codec import DecodeError
from gmchain.ledger.merkle import (
    NodeGetter,
    acc_consistency_proof,
    acc_inclusion_proof,
    acc_root,
    leaf_hash,
    root_and_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)
from gmchain.ledger.types import DIGEST_SIZE, BlockHeader, Digest, Height

__all__ = [
    "ConsistencyProof",
    "ProofFormatError",
    "TxProofBundle",
    "compute_consistency_proof",
    "compute_tx_proof",
    "verify_tx_proof",
]

_MAX_PROOF_LEN = 64  # a tree of at most 2**64 leaves has proofs of at most 64 hashes
_MAX_HEADER_BYTES = 64 * 1024


class ProofFormatError(ValueError):
    """A proof object is malformed (missing field, bad hex, wrong length or type)."""


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def _unhex(obj: Mapping[str, Any], key: str, size: int | None = None) -> bytes:
    v = obj.get(key)
    if not isinstance(v, str) or not v.startswith("0x"):
        raise ProofFormatError(f"{key}: expected a 0x-prefixed hex string")
    try:
        b = bytes.fromhex(v[2:])
    except ValueError as exc:
        raise ProofFormatError(f"{key}: bad hex") from exc
    if v[2:] != b.hex():
        raise ProofFormatError(f"{key}: hex must be lower case without spaces")
    if size is not None and len(b) != size:
        raise ProofFormatError(f"{key}: expected {size} bytes")
    return b


def _int(obj: Mapping[str, Any], key: str) -> int:
    v = obj.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2**64:
        raise ProofFormatError(f"{key}: expected an integer in [0, 2**64)")
    return v


def _path(obj: Mapping[str, Any], key: str) -> tuple[Digest, ...]:
    v = obj.get(key)
    if not isinstance(v, list) or len(v) > _MAX_PROOF_LEN:
        raise ProofFormatError(f"{key}: expected a list of at most {_MAX_PROOF_LEN} hashes")
    return tuple(Digest(_unhex({key: x}, key, DIGEST_SIZE)) for x in v)


def _require_mapping(obj: object) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise ProofFormatError("expected a JSON object")
    return obj


@dataclass(frozen=True, slots=True, kw_only=True)
class TxProofBundle:
    """Proof that `tx_id` is in the block whose encoded header is `header`, and in the accumulator.

    Field invariants are those of the JSON form; consistency between fields is what
    `verify_tx_proof` checks.
    """

    tx_id: Digest
    height: Height
    index_in_block: int
    block_tx_root: Digest
    block_inclusion_proof: tuple[Digest, ...]
    acc_index: int
    acc_size: int
    acc_root: Digest
    acc_inclusion_proof: tuple[Digest, ...]
    header: bytes  # canonical encoding of the BlockHeader

    def to_json(self) -> dict[str, Any]:
        return {
            "tx_id": _hex(self.tx_id),
            "height": self.height,
            "index_in_block": self.index_in_block,
            "block_tx_root": _hex(self.block_tx_root),
            "block_inclusion_proof": [_hex(p) for p in self.block_inclusion_proof],
            "acc_index": self.acc_index,
            "acc_size": self.acc_size,
            "acc_root": _hex(self.acc_root),
            "acc_inclusion_proof": [_hex(p) for p in self.acc_inclusion_proof],
            "header": _hex(self.header),
        }

    @classmethod
    def from_json(cls, obj: object) -> TxProofBundle:
        o = _require_mapping(obj)
        header = _unhex(o, "header")
        if len(header) > _MAX_HEADER_BYTES:
            raise ProofFormatError("header: too long")
        return cls(
            tx_id=Digest(_unhex(o, "tx_id", DIGEST_SIZE)),
            height=Height(_int(o, "height")),
            index_in_block=_int(o, "index_in_block"),
            block_tx_root=Digest(_unhex(o, "block_tx_root", DIGEST_SIZE)),
            block_inclusion_proof=_path(o, "block_inclusion_proof"),
            acc_index=_int(o, "acc_index"),
            acc_size=_int(o, "acc_size"),
            acc_root=Digest(_unhex(o, "acc_root", DIGEST_SIZE)),
            acc_inclusion_proof=_path(o, "acc_inclusion_proof"),
            header=header,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsistencyProof:
    """Proof that the accumulator of `old_size` leaves is a prefix of that of `new_size`."""

    old_size: int
    new_size: int
    old_root: Digest
    new_root: Digest
    proof: tuple[Digest, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "old_size": self.old_size,
            "new_size": self.new_size,
            "old_root": _hex(self.old_root),
            "new_root": _hex(self.new_root),
            "proof": [_hex(p) for p in self.proof],
        }

    @classmethod
    def from_json(cls, obj: object) -> ConsistencyProof:
        o = _require_mapping(obj)
        return cls(
            old_size=_int(o, "old_size"),
            new_size=_int(o, "new_size"),
            old_root=Digest(_unhex(o, "old_root", DIGEST_SIZE)),
            new_root=Digest(_unhex(o, "new_root", DIGEST_SIZE)),
            proof=_path(o, "proof"),
        )

    def verify(self) -> bool:
        """RFC 9162 §2.1.4.2 over the fields; the roots must be trusted by the caller."""
        return verify_consistency(
            self.old_size, self.new_size, self.old_root, self.new_root, self.proof
        )


def verify_tx_proof(bundle: TxProofBundle) -> bool:
    """Check every claim inside the bundle (rule 2 says what is left to the caller)."""
    try:
        header = BlockHeader.decode(bundle.header)
    except DecodeError:
        return False
    if header.height != bundle.height or header.tx_root != bundle.block_tx_root:
        return False
    if not 0 <= bundle.index_in_block < header.tx_count:
        return False
    leaf = leaf_hash(bundle.tx_id)
    if not verify_inclusion(
        leaf, bundle.index_in_block, header.tx_count, bundle.block_inclusion_proof, header.tx_root
    ):
        return False
    if bundle.acc_index != header.acc_size - header.tx_count + bundle.index_in_block:
        return False
    if bundle.acc_size < header.acc_size:
        return False
    if bundle.acc_size == header.acc_size and bundle.acc_root != header.acc_root:
        return False
    return verify_inclusion(
        leaf, bundle.acc_index, bundle.acc_size, bundle.acc_inclusion_proof, bundle.acc_root
    )


def compute_tx_proof(
    header: BlockHeader,
    tx_ids: Sequence[bytes],
    index_in_block: int,
    get_node: NodeGetter,
    acc_size: int | None = None,
) -> TxProofBundle:
    """Build the bundle for `tx_ids[index_in_block]` of the block with `header`.

    `get_node` reads the accumulator's stored perfect-subtree nodes; `acc_size` defaults to the
    header's own (pass a later size to prove against a later header's accumulator root).
    """
    if len(tx_ids) != header.tx_count or not 0 <= index_in_block < len(tx_ids):
        raise ValueError("tx_ids do not match the header's tx_count (or the index is outside)")
    root, path = root_and_inclusion_proof([leaf_hash(t) for t in tx_ids], index_in_block)
    if root != header.tx_root:
        raise ValueError("tx_ids do not match the header's tx_root")
    size = header.acc_size if acc_size is None else acc_size
    if size < header.acc_size:
        raise ValueError("acc_size must not be smaller than the header's")
    acc_index = header.acc_size - header.tx_count + index_in_block
    return TxProofBundle(
        tx_id=Digest(tx_ids[index_in_block]),
        height=header.height,
        index_in_block=index_in_block,
        block_tx_root=header.tx_root,
        block_inclusion_proof=tuple(path),
        acc_index=acc_index,
        acc_size=size,
        acc_root=acc_root(get_node, size),
        acc_inclusion_proof=tuple(acc_inclusion_proof(get_node, acc_index, size)),
        header=header.encode(),
    )


def compute_consistency_proof(
    get_node: NodeGetter, old_size: int, new_size: int
) -> ConsistencyProof:
    """Build a consistency proof between two sizes of the accumulator."""
    return ConsistencyProof(
        old_size=old_size,
        new_size=new_size,
        old_root=acc_root(get_node, old_size),
        new_root=acc_root(get_node, new_size),
        proof=tuple(acc_consistency_proof(get_node, old_size, new_size)),
    )

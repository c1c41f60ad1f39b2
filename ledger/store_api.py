"""The store interface the chain library writes and reads through (`ChainStore`), and the one
write it makes (`BlockWrite`).

Two implementations keep this contract (tests/test_store_contract.py runs both):
`ledger.store.Store` (LevelDB, crash-safe: one synced batch per block) and
`ledger.memstore.MemStore` (a dict; the simulator's disk, which survives a simulated crash).

Rules every implementation keeps:
1. `commit_block` is all or nothing: it checks the whole `BlockWrite` (height is head + 1 — 0 for
   the genesis block —, one receipt and one accumulator leaf per tx id, 32-byte hashes, tx ids and
   the block hash new to the chain, supplied accumulator nodes equal to the ones computed from the
   leaves) and raises `StoreError` with nothing written, or writes all of it.
2. Reads of a height, hash, tx or key never written return None (never raise); `iter_state`
   yields (key, value) of one namespace in bytewise key order.
3. `get_acc_node(level, index)` is the RFC 6962 (SM3) hash of the perfect subtree over leaves
   [index * 2**level, (index + 1) * 2**level); level 0 is the leaf; None while incomplete.
4. `put_meta` is small metadata outside the block; `sync=False` may be lost by a crash until the
   next synced write.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

__all__ = ["BlockWrite", "ChainStore"]

_EMPTY: Mapping[Any, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockWrite:
    """Everything one committed block writes, already encoded by the caller.

    Invariants checked by `commit_block` (rule 1): `block_hash`, each tx id and each accumulator
    leaf are 32 bytes; `receipts` and `acc_leaves` have one entry per tx id, in block order (the
    accumulator holds one leaf per transaction in commit order); tx ids are new to the chain.
    """

    height: int
    block_hash: bytes
    header_bytes: bytes
    block_bytes: bytes
    tx_ids: Sequence[bytes]
    receipts: Sequence[bytes]
    state_writes: Mapping[tuple[str, bytes], bytes | None]
    acc_leaves: Sequence[bytes]
    acc_nodes: Mapping[tuple[int, int], bytes]
    commit_proof: bytes = b""
    index_writes: Mapping[bytes, bytes | None] = field(default_factory=lambda: _EMPTY)


class ChainStore(Protocol):
    """What the chain library (chain/) needs of storage."""

    def commit_block(self, w: BlockWrite) -> None: ...

    def head_height(self) -> int | None: ...

    def get_block_by_height(self, h: int) -> bytes | None: ...

    def get_header_by_height(self, h: int) -> bytes | None: ...

    def get_block_hash(self, h: int) -> bytes | None: ...

    def get_commit_proof(self, h: int) -> bytes | None: ...

    def get_tx_location(self, tx_id: bytes) -> tuple[int, int] | None: ...

    def get_receipt(self, tx_id: bytes) -> bytes | None: ...

    def get_state(self, namespace: str, key: bytes) -> bytes | None: ...

    def iter_state(self, namespace: str, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]: ...

    def get_acc_node(self, level: int, index: int) -> bytes | None: ...

    def get_meta(self, key: str) -> bytes | None: ...

    def put_meta(self, key: str, value: bytes, *, sync: bool = True) -> None: ...

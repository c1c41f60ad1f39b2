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
5. Epoch records (issue 12): the block that ends epoch n - 1 carries the record of epoch n
   (`BlockWrite.epoch_record`, opaque bytes, chain/epochs.py) and it is written with the block,
   all or nothing. Records are numbered 1, 2, ... without a gap (`last_epoch() + 1`, else
   `StoreError`); `get_epoch_record(n)` is None for a record never written, `last_epoch()` is 0
   while there is none (epoch 0 comes from the genesis document).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from gmchain.ledger.store_acc import NodeGetter, check_supplied_nodes, compute_new_nodes
from gmchain.ledger.store_errors import StoreError
from gmchain.ledger.store_keys import HASH_SIZE, k_state_prefix

__all__ = ["BlockWrite", "ChainStore", "check_block_write", "require_bytes"]

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
    # Rule 5: (n, record of epoch n) when this block ends epoch n - 1, else None.
    epoch_record: tuple[int, bytes] | None = None


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

    def get_epoch_record(self, epoch: int) -> bytes | None: ...

    def last_epoch(self) -> int: ...

    def put_meta(self, key: str, value: bytes, *, sync: bool = True) -> None: ...


def require_bytes(value: object, what: str, size: int | None = None) -> bytes:
    if not isinstance(value, bytes):
        raise StoreError(f"{what} must be bytes, got {type(value).__name__}")
    if size is not None and len(value) != size:
        raise StoreError(f"{what} must be {size} bytes, got {len(value)}")
    return value


def _all_bytes(items: Sequence[object], size: int | None = None) -> bool:
    if size is None:
        return all(type(x) is bytes for x in items)
    return all(type(x) is bytes and len(x) == size for x in items)


def check_block_write(
    w: BlockWrite,
    *,
    next_height: int,
    acc_size: int,
    last_epoch: int,
    is_stored_hash: Callable[[bytes], bool],
    is_stored_tx: Callable[[bytes], bool],
    get_node: NodeGetter,
) -> dict[tuple[int, int], bytes]:
    """Rule 1, shared by every implementation: check `w` against a store whose next height is
    `next_height`, whose accumulator holds `acc_size` leaves and whose latest epoch record is
    `last_epoch` (rule 5); return the accumulator nodes
    (level >= 1) the block completes. Raises StoreError; reads only."""
    if not isinstance(w, BlockWrite):
        raise StoreError(f"commit_block takes a BlockWrite, got {type(w).__name__}")
    if type(w.height) is not int or w.height != next_height:
        raise StoreError(f"block height {w.height!r} refused: the next height is {next_height}")
    require_bytes(w.block_hash, "block_hash", HASH_SIZE)
    require_bytes(w.header_bytes, "header_bytes")
    require_bytes(w.block_bytes, "block_bytes")
    require_bytes(w.commit_proof, "commit_proof")
    if is_stored_hash(w.block_hash):
        raise StoreError(f"block hash {w.block_hash.hex()} is already stored")
    n = len(w.tx_ids)
    if len(w.receipts) != n or len(w.acc_leaves) != n:
        raise StoreError(
            f"block {w.height}: {n} tx ids, {len(w.receipts)} receipts, "
            f"{len(w.acc_leaves)} accumulator leaves (need one each per tx)"
        )
    if not (_all_bytes(w.tx_ids, HASH_SIZE) and _all_bytes(w.acc_leaves, HASH_SIZE)):
        for i in range(n):  # slow path, for the message
            require_bytes(w.tx_ids[i], f"tx_ids[{i}]", HASH_SIZE)
            require_bytes(w.acc_leaves[i], f"acc_leaves[{i}]", HASH_SIZE)
    if not _all_bytes(w.receipts):
        for i in range(n):
            require_bytes(w.receipts[i], f"receipts[{i}]")
    if len(set(w.tx_ids)) != n:
        raise StoreError(f"block {w.height} repeats a tx id")
    for tx_id in w.tx_ids:
        if is_stored_tx(tx_id):
            raise StoreError(f"tx {tx_id.hex()} is already stored")
    for sk, sv in w.state_writes.items():
        if not (
            type(sk) is tuple
            and len(sk) == 2
            and type(sk[0]) is str
            and type(sk[1]) is bytes
            and (sv is None or type(sv) is bytes)
        ):
            raise StoreError(
                f"state write {sk!r} -> {type(sv).__name__} must be "
                "(namespace: str, key: bytes) -> bytes | None"
            )
        try:
            k_state_prefix(sk[0])  # cached: one real check per namespace
        except ValueError as e:
            raise StoreError(str(e)) from e
    for ik, iv in w.index_writes.items():
        if type(ik) is not bytes or not ik or not (iv is None or type(iv) is bytes):
            raise StoreError(
                f"index write {ik!r} -> {type(iv).__name__} must be non-empty bytes -> bytes | None"
            )
    if w.epoch_record is not None:
        rec = w.epoch_record
        if not (type(rec) is tuple and len(rec) == 2 and type(rec[0]) is int):
            raise StoreError("epoch_record must be (epoch: int, record: bytes)")
        require_bytes(rec[1], "epoch record")
        if rec[0] != last_epoch + 1:
            raise StoreError(
                f"block {w.height}: epoch record {rec[0]} refused: the next epoch is "
                f"{last_epoch + 1}"
            )
    new_nodes = compute_new_nodes(acc_size, w.acc_leaves, get_node)
    why = check_supplied_nodes(w.acc_nodes, new_nodes, acc_size, w.acc_leaves)
    if why is not None:
        raise StoreError(f"block {w.height}: {why}")
    return new_nodes

"""Consistency checks of the gmchain ledger store: what `Store.open` and `check_consistency` verify.

Rules this module keeps:
- Every block is written by one LevelDB `WriteBatch` (atomic, synced), so a store is either
  consistent or damaged — never "half a block". Any finding raises `StoreCorrupt` with the height
  and record concerned, plus the operator's recovery hint; nothing is repaired silently.
- The shallow check (run on every open; O(tx count of the head block + log n) reads) covers the
  restart failure other chains shipped (REFERENCES.md: store and state heights disagreeing after a
  kill): the metadata head equals the highest block key; every per-block record of the head block
  is present (block, header, hash, hash index, summary, tx id list, tx locations, receipts,
  accumulator leaves); the accumulator size equals the summaries' running tx count; no record of a
  height above the head exists; the accumulator's perfect-subtree nodes for the head size exist;
  and, for the last `RECENT_WINDOW` blocks, block, header, hash and summary are present and the
  summaries chain — the blocks a damaged LevelDB log could have lost without LevelDB noticing
  (only if opened without `paranoid_checks`).
- The deep check does the same for every block and additionally recomputes each block's content
  digest (SM3 over header, block and receipts), checks that the summaries chain
  (`acc_start(h) == acc_start(h-1) + tx_count(h-1)`), counts every record family against the
  summaries, and recomputes every accumulator node as `SM3(0x01 || left || right)` (RFC 6962 §2.1).
  It first reads every record of the database once (so, with checksum verification on, every
  LevelDB data block's CRC is checked, whatever family its keys belong to), runs even on an empty
  chain, and checks every sealed metadata record's checksum (`check_sealed_meta`: consensus safety
  data and its previous copy).
- Reads only, through the small `KVReader` protocol (a snapshot in practice).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from gmchain.ledger import store_keys as k
from gmchain.ledger.store_acc import NodeGetter, compute_root, hash_children
from gmchain.ledger.store_errors import RECOVERY_HINT, StoreCorrupt

__all__ = [
    "RECENT_WINDOW",
    "KVReader",
    "check_sealed_meta",
    "check_store",
    "check_store_deep",
    "corrupt",
]

RECENT_WINDOW = 256


class KVReader(Protocol):
    """Read access to the raw key space (errors already translated to StoreError)."""

    def get(self, key: bytes) -> bytes | None: ...

    def last_key(self, prefix: bytes) -> bytes | None: ...

    def first_key(self, prefix: bytes) -> bytes | None: ...

    def iter_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...


def corrupt(what: str) -> StoreCorrupt:
    """A StoreCorrupt carrying the operator's recovery hint."""
    return StoreCorrupt(f"ledger store is inconsistent: {what}: {RECOVERY_HINT}")


def _get_required(kv: KVReader, key: bytes, what: str) -> bytes:
    v = kv.get(key)
    if v is None:
        raise corrupt(f"{what} is missing")
    return v


def _check_block(kv: KVReader, h: int, *, deep: bool) -> k.BlockSummary:
    """Check every per-block record of height h; return its summary."""
    block = _get_required(kv, k.k_block(h), f"block {h}")
    header = _get_required(kv, k.k_header(h), f"header of block {h}")
    bh = _get_required(kv, k.k_block_hash(h), f"hash of block {h}")
    if len(bh) != k.HASH_SIZE:
        raise corrupt(f"hash of block {h} has {len(bh)} bytes")
    by_hash = kv.get(k.k_hash_index(bh))
    if by_hash is None or by_hash != k.encode_height(h):
        raise corrupt(f"hash index of block {h} is missing or points elsewhere")
    try:
        summary = k.BlockSummary.decode(_get_required(kv, k.k_summary(h), f"summary of block {h}"))
    except ValueError as e:
        raise corrupt(f"summary of block {h}: {e}") from e
    ids = _get_required(kv, k.k_tx_ids(h), f"tx id list of block {h}")
    if len(ids) != k.HASH_SIZE * summary.tx_count:
        raise corrupt(f"tx id list of block {h} does not hold {summary.tx_count} ids")
    receipts: list[bytes] = []
    for i in range(summary.tx_count):
        tx_id = ids[i * k.HASH_SIZE : (i + 1) * k.HASH_SIZE]
        loc = kv.get(k.k_tx(tx_id))
        if loc is None or loc != k.encode_tx_location(h, i):
            raise corrupt(f"location of tx {tx_id.hex()} (block {h}, index {i}) is wrong")
        receipts.append(_get_required(kv, k.k_receipt(tx_id), f"receipt of tx {tx_id.hex()}"))
        if not deep:  # the deep check streams all leaves in `_check_acc_deep` instead
            leaf = kv.get(k.k_acc_leaf(summary.acc_start + i))
            if leaf is None or len(leaf) != k.HASH_SIZE:
                raise corrupt(f"accumulator leaf {summary.acc_start + i} (block {h}) is missing")
    if deep and k.compute_content_digest(header, block, receipts) != summary.content_digest:
        raise corrupt(f"block {h}: header/block/receipt bytes differ from those committed")
    return summary


def _node_getter(kv: KVReader) -> NodeGetter:
    def get_node(level: int, index: int) -> bytes:
        key = k.k_acc_leaf(index) if level == 0 else k.k_acc_node(level, index)
        v = kv.get(key)
        if v is None:
            raise corrupt(f"accumulator node ({level}, {index}) is missing")
        return v

    return get_node


def _check_empty(kv: KVReader) -> None:
    for prefix, name in _PER_BLOCK_FAMILIES + _PER_TX_FAMILIES:
        if kv.first_key(prefix) is not None:
            raise corrupt(f"no head recorded but {name} records exist")
    acc = kv.get(k.META_ACC_SIZE)
    if acc is not None and k.decode_height(acc) != 0:
        raise corrupt("no head recorded but the accumulator is not empty")


_PER_BLOCK_FAMILIES = (
    (k.P_BLOCK, "block"),
    (k.P_HEADER, "header"),
    (k.P_BLOCK_HASH, "block hash"),
    (k.P_SUMMARY, "block summary"),
    (k.P_TX_IDS, "tx id list"),
)
_PER_TX_FAMILIES = (
    (k.P_HASH_INDEX, "hash index"),
    (k.P_TX, "tx location"),
    (k.P_RECEIPT, "receipt"),
    (k.P_ACC_LEAF, "accumulator leaf"),
    (k.P_ACC_NODE, "accumulator node"),
)


def check_store(kv: KVReader) -> tuple[int, bytes, int] | None:
    """Shallow check; return (head height, head hash, accumulator size), or None if empty."""
    raw_head = kv.get(k.META_HEAD)
    if raw_head is None:
        _check_empty(kv)
        return None
    try:
        head, head_hash = k.decode_head(raw_head)
        raw_acc = _get_required(kv, k.META_ACC_SIZE, "accumulator size record")
        acc_size = k.decode_height(raw_acc)
    except ValueError as e:
        raise corrupt(f"head metadata: {e}") from e
    for prefix, name in _PER_BLOCK_FAMILIES:
        last = kv.last_key(prefix)
        if last is None or k.decode_height(last[1:]) != head:
            raise corrupt(f"metadata head is {head} but the highest {name} record disagrees")
    if kv.get(k.k_block_hash(head)) != head_hash:
        raise corrupt(f"metadata head hash differs from the hash of block {head}")
    summary = _check_block(kv, head, deep=False)
    if summary.acc_start + summary.tx_count != acc_size:
        raise corrupt(
            f"accumulator size {acc_size} != {summary.acc_start} + {summary.tx_count} "
            f"recorded for block {head}"
        )
    last_leaf = kv.last_key(k.P_ACC_LEAF)
    if (last_leaf is None and acc_size) or (
        last_leaf is not None and k.decode_height(last_leaf[1:]) != acc_size - 1
    ):
        raise corrupt(f"accumulator leaves do not end at index {acc_size - 1}")
    compute_root(acc_size, _node_getter(kv))
    _check_recent(kv, head, summary)
    return head, head_hash, acc_size


def _check_recent(kv: KVReader, head: int, head_summary: k.BlockSummary) -> None:
    """Blocks head-RECENT_WINDOW+1 .. head-1 exist and their summaries chain into the head's."""
    next_start = head_summary.acc_start
    for h in range(head - 1, max(-1, head - RECENT_WINDOW), -1):
        for key, name in (
            (k.k_block(h), "block"),
            (k.k_header(h), "header"),
            (k.k_block_hash(h), "hash"),
        ):
            if kv.get(key) is None:
                raise corrupt(f"{name} of block {h} is missing (below head {head})")
        try:
            s = k.BlockSummary.decode(_get_required(kv, k.k_summary(h), f"summary of block {h}"))
        except ValueError as e:
            raise corrupt(f"summary of block {h}: {e}") from e
        if s.acc_start + s.tx_count != next_start:
            raise corrupt(f"accumulator ranges of blocks {h} and {h + 1} do not chain")
        next_start = s.acc_start
    if head < RECENT_WINDOW and next_start != 0:
        raise corrupt(f"block 0 starts the accumulator at {next_start}, not 0")


def _iter_level(kv: KVReader, level: int) -> Iterator[tuple[int, bytes]]:
    prefix = k.P_ACC_LEAF if level == 0 else k.P_ACC_NODE + bytes((level,))
    cut = len(prefix)
    for key, value in kv.iter_prefix(prefix):
        yield k.decode_height(key[cut:]), value


def _check_acc_deep(kv: KVReader, acc_size: int) -> None:
    """Level by level, in key order: indexes 0..(size >> level) - 1, each node hashing its children.

    Sequential scans, two at a time (a level and its children), so memory stays O(1).
    """
    top = max(acc_size.bit_length() - 1, 0)
    for level in range(top + 1):
        want = acc_size >> level
        children = _iter_level(kv, level - 1) if level else None
        count = 0
        for index, value in _iter_level(kv, level):
            if index != count or len(value) != k.HASH_SIZE:
                raise corrupt(f"accumulator level {level}: record {index} unexpected at {count}")
            if children is not None:
                (li, left), (ri, right) = next(children), next(children)
                if (li, ri) != (2 * index, 2 * index + 1) or value != hash_children(left, right):
                    raise corrupt(f"accumulator node ({level}, {index}) does not hash its children")
            count += 1
        if count != want:
            raise corrupt(f"accumulator level {level} has {count} records, expected {want}")
    nodes = sum(1 for _ in kv.iter_prefix(k.P_ACC_NODE))
    want_nodes = sum(acc_size >> level for level in range(1, top + 1))
    if nodes != want_nodes:
        raise corrupt(f"{nodes} accumulator nodes stored, expected {want_nodes}")


def check_store_deep(kv: KVReader) -> tuple[int, bytes, int] | None:
    """Everything `check_store` does, for every block, plus digests, counts and node hashes."""
    for _ in kv.iter_prefix(b""):  # every record once: LevelDB checks each block's CRC on the way
        pass
    check_sealed_meta(kv)
    found = check_store(kv)
    if found is None:
        return None
    head, _, acc_size = found
    expected_start = 0
    for h in range(head + 1):
        s = _check_block(kv, h, deep=True)
        if s.acc_start != expected_start:
            raise corrupt(
                f"block {h} starts the accumulator at {s.acc_start}, not {expected_start}"
            )
        expected_start += s.tx_count
    counts = {
        k.P_BLOCK: head + 1,
        k.P_HEADER: head + 1,
        k.P_BLOCK_HASH: head + 1,
        k.P_SUMMARY: head + 1,
        k.P_TX_IDS: head + 1,
        k.P_HASH_INDEX: head + 1,
        k.P_TX: acc_size,
        k.P_RECEIPT: acc_size,
    }
    for prefix, want in counts.items():
        got = sum(1 for _ in kv.iter_prefix(prefix))
        if got != want:
            raise corrupt(f"{got} records of kind {prefix!r}, expected {want}")
    _check_acc_deep(kv, acc_size)
    last_proof = kv.last_key(k.P_PROOF)
    if last_proof is not None and k.decode_height(last_proof[1:]) > head:
        raise corrupt("a commit proof exists for a height above the head")
    epochs = [k.decode_height(key[1:]) for key, _ in kv.iter_prefix(k.P_EPOCH)]
    if epochs != list(range(1, len(epochs) + 1)):  # store_api rule 5
        raise corrupt(f"epoch records {epochs[:8]} are not numbered 1, 2, ... without a gap")
    return found


def check_sealed_meta(kv: KVReader) -> None:
    """Every sealed metadata record (e.g. consensus safety data and its previous copy) still
    matches its checksum."""
    for key, raw in kv.iter_prefix(k.P_SEALED_META):
        name = key[len(k.P_SEALED_META) :].decode("utf-8", "replace")
        try:
            k.unseal_record(raw)
        except k.SealedRecordDamaged as e:
            raise corrupt(f"sealed metadata record {name!r} is damaged: {e}") from e

"""The crash-safe ledger store: one LevelDB (plyvel) per node, one synced atomic batch per block.

Rules this module keeps:
1. A block and everything derived from it (header, hash index, tx locations, receipts, state writes,
   secondary indexes, accumulator leaves and nodes, commit proof, epoch record, head metadata) are
   written by ONE `write_batch(transaction=True, sync=True)`: LevelDB applies a WriteBatch
   atomically and the sync makes it durable before `commit_block` returns. `transaction=True`
   matters: plyvel's plain `with db.write_batch():` still writes on an exception (REFERENCES.md).
2. Check everything, then change state (STYLE.md 9): `commit_block` validates the whole
   `BlockWrite` (height is head + 1, sizes, duplicate tx ids and block hashes, accumulator nodes)
   before it opens the batch; an error at any point writes nothing and leaves the cached head as is.
3. On open the store checks itself (`ledger.store_check`) and refuses to serve an inconsistent or
   damaged database: LevelDB corruption (plyvel.CorruptionError, e.g. a damaged log record,
   Jepsen on Tendermint) becomes `StoreCorrupt` with a recovery hint, never a bare traceback.
   `paranoid_checks` is ON by default: measured here, without it LevelDB recovers a log with one
   damaged record by silently skipping that record, i.e. a block in the middle of the chain
   vanishes while later blocks stay (the shallow check catches such a hole only within its recent
   window; the deep check anywhere). A torn tail (the normal crash case) still opens cleanly.
   A directory that holds files but no LevelDB `CURRENT` is refused rather than silently
   re-created empty (LevelDB would otherwise start a new database over the old tables).
   Before LevelDB opens them, the log files are checked for a record whose length field was
   damaged (`ledger.store_files.check_log_files`): LevelDB takes one for a torn tail and drops
   every record behind it without a word.
4. A database carries a format version and a chain id; opening it for another chain raises
   `ChainMismatch`.
5. Small metadata (`put_meta`, e.g. consensus safety data) is a single synced put by default, so
   it is on disk before a vote or timeout leaves the node (DESIGN.md, Storage).
6. The store works on bytes only: encoding is the caller's (`ledger.codec`); it never decodes a
   block. Keys are laid out in `ledger.store_keys`; the accumulator (RFC 6962 with SM3) keeps every
   complete perfect subtree, computed here from the leaves (`ledger.store_acc`); a caller's
   `acc_nodes` is verified against them, never trusted blindly.
7. Reads of what identifies a block (block, header, block hash, hash index, tx id list, commit
   proof) always verify LevelDB's block checksums (`verify_checksums=True`; measured here, a
   flipped byte in an .ldb data block was otherwise served as it was, issue 10 fault 11); other
   reads do when the store is opened with `verify_checksums=True`, which the node does. A
   mismatch is `StoreCorrupt`, never data.

Sources: LevelDB docs (WriteBatch atomicity, `sync`, `paranoid_checks`), plyvel API docs,
RFC 6962 §2.1, DESIGN.md "Storage", REFERENCES.md "Bugs other chains shipped".
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import plyvel  # type: ignore[import-not-found, unused-ignore]

from gmchain.ledger import store_keys as k
from gmchain.ledger.store_acc import (
    NodeGetter,
    compute_consistency_proof,
    compute_inclusion_path,
    compute_root,
)
from gmchain.ledger.store_api import BlockWrite, check_block_write, require_bytes
from gmchain.ledger.store_check import check_store, check_store_deep, corrupt
from gmchain.ledger.store_errors import RECOVERY_HINT, ChainMismatch, StoreCorrupt, StoreError
from gmchain.ledger.store_files import check_log_files

__all__ = ["BlockWrite", "ChainMismatch", "StateSnapshot", "Store", "StoreCorrupt", "StoreError"]


class _KV:
    """Raw reads of a plyvel DB or snapshot, with plyvel's errors turned into ours."""

    __slots__ = ("_src", "_verify")

    def __init__(self, src: Any, *, verify: bool) -> None:
        self._src = src
        self._verify = verify

    def get(self, key: bytes, *, verify: bool = False) -> bytes | None:
        """`verify=True` checks LevelDB's block checksums on this read even if the store does
        not on every read (rule 7: blocks, headers and their hashes are always checked)."""
        try:
            v = self._src.get(key, verify_checksums=self._verify or verify)
        except plyvel.CorruptionError as e:
            raise StoreCorrupt(f"LevelDB reports corruption: {e}: {RECOVERY_HINT}") from e
        except RuntimeError as e:  # plyvel: "Database is closed"
            raise StoreError(f"ledger store is closed ({e})") from e
        return v  # type: ignore[no-any-return]

    def _iter(self, **kw: Any) -> Iterator[Any]:
        try:
            it = self._src.iterator(verify_checksums=self._verify, **kw)
            with it:
                yield from it
        except plyvel.CorruptionError as e:
            raise StoreCorrupt(f"LevelDB reports corruption: {e}: {RECOVERY_HINT}") from e
        except RuntimeError as e:
            raise StoreError(f"ledger store is closed ({e})") from e

    def iter_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        yield from self._iter(prefix=prefix)

    def last_key(self, prefix: bytes) -> bytes | None:
        return next(self._iter(prefix=prefix, reverse=True, include_value=False), None)

    def first_key(self, prefix: bytes) -> bytes | None:
        return next(self._iter(prefix=prefix, include_value=False), None)


def _open_leveldb(path: str, *, create: bool, paranoid_checks: bool) -> Any:
    if (
        os.path.isdir(path)
        and os.listdir(path)
        and not os.path.exists(os.path.join(path, "CURRENT"))
    ):
        raise StoreCorrupt(
            f"{path} holds files but no LevelDB CURRENT file; refusing to create a new "
            f"database over it: {RECOVERY_HINT}"
        )
    if not create and not os.path.isdir(path):
        raise StoreError(f"no ledger store at {path} (and create=False)")
    if os.path.isdir(path) and (damaged := check_log_files(path)):
        # LevelDB would take a damaged length field for a torn write and drop, silently, every
        # record from there on: whole committed blocks (ledger.store_files).
        raise StoreCorrupt(f"{path}: LevelDB log damaged: {'; '.join(damaged)}: {RECOVERY_HINT}")
    try:
        return plyvel.DB(
            path,
            create_if_missing=create,
            paranoid_checks=paranoid_checks,
            bloom_filter_bits=10,  # duplicate tx id checks are mostly misses
            write_buffer_size=16 * 1024 * 1024,
        )
    except plyvel.CorruptionError as e:
        raise StoreCorrupt(f"cannot open ledger store {path}: {e}: {RECOVERY_HINT}") from e
    except plyvel.IOError as e:
        raise StoreError(
            f"cannot open ledger store {path}: {e} (is another gmchain process using it?)"
        ) from e
    except plyvel.Error as e:
        raise StoreError(f"cannot open ledger store {path}: {e}") from e


def _get_state(kv: _KV, namespace: str, key: bytes) -> bytes | None:
    try:
        return kv.get(k.k_state(namespace, key))
    except ValueError as e:
        raise StoreError(str(e)) from e


def _iter_state(kv: _KV, namespace: str, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
    try:
        full = k.k_state_prefix(namespace)
    except ValueError as e:
        raise StoreError(str(e)) from e
    cut = len(full)
    for key, value in kv.iter_prefix(full + prefix):
        yield key[cut:], value


class StateSnapshot:
    """Committed state and the committed tx index as of one moment (a LevelDB snapshot): every
    read through it sees the same set of committed batches, so a reader of several keys never
    sees half of a commit made meanwhile by another thread. Close it (or use `with`)."""

    __slots__ = ("_kv", "_snap")

    def __init__(self, snap: Any, *, verify: bool) -> None:
        self._snap = snap
        self._kv = _KV(snap, verify=verify)

    def __enter__(self) -> StateSnapshot:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._snap.close()

    def get_state(self, namespace: str, key: bytes) -> bytes | None:
        return _get_state(self._kv, namespace, key)

    def iter_state(self, namespace: str, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of one namespace whose key starts with `prefix`, in bytewise key order."""
        return _iter_state(self._kv, namespace, prefix)

    def get_tx_location(self, tx_id: bytes) -> tuple[int, int] | None:
        v = self._kv.get(k.k_tx(tx_id))
        return None if v is None else k.decode_tx_location(v)

    def iter_records(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Every record (whose key starts with `prefix`) as of this view, in key order."""
        return self._kv.iter_prefix(prefix)


class Store:
    """A node's ledger: blocks, txs, receipts, state, indexes, accumulator, metadata.

    Reads may come from any thread; writes are serialized by a lock. Invariant: `_head`,
    `_acc_size`, `_last_epoch` equal what is on disk (changed only after a batch write returned).
    """

    __slots__ = ("_acc_size", "_db", "_head", "_kv", "_last_epoch", "_lock", "_path", "_verify")

    def __init__(self, *, db: Any, path: str, verify: bool) -> None:
        """Private: use `Store.open`."""
        self._db = db
        self._path = path
        self._verify = verify
        self._kv = _KV(db, verify=verify)
        self._lock = threading.Lock()
        self._head: tuple[int, bytes] | None = None  # (height, hash) of the last committed block
        self._acc_size = 0  # accumulator leaves committed
        self._last_epoch = 0  # the highest epoch record's number (issue 15: was a seek per proof)

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        chain_id: bytes | str | None = None,
        paranoid_checks: bool = True,
        verify_checksums: bool = False,
        deep_check: bool = False,
    ) -> Store:
        """Open (or create) the store at `path`, check it, and return it.

        Raises StoreCorrupt (damaged or inconsistent; with a recovery hint), ChainMismatch (the
        database belongs to another chain) or StoreError (locked, missing, unsupported version).
        `paranoid_checks` (default on) makes LevelDB fail on any damage it finds instead of
        skipping it; `verify_checksums` checks block CRCs on every read (costs CPU); `deep_check`
        runs `check_consistency(deep=True)` before returning.
        """
        spath = os.fspath(path)
        cid = chain_id.encode("utf-8") if isinstance(chain_id, str) else chain_id
        db = _open_leveldb(spath, create=create, paranoid_checks=paranoid_checks)
        store = cls(db=db, path=spath, verify=verify_checksums)
        try:
            store._init_or_check_identity(cid)
            store.check_consistency(deep=deep_check)
        except plyvel.Error as e:
            db.close()
            raise StoreError(f"cannot initialise ledger store {spath}: {e}") from e
        except BaseException:
            db.close()
            raise
        return store

    def _init_or_check_identity(self, chain_id: bytes | None) -> None:
        raw_version = self._kv.get(k.META_VERSION)
        if raw_version is None:
            if self._kv.first_key(b"") is not None:
                raise corrupt(f"{self._path} is a LevelDB without a gmchain format version")
            with self._db.write_batch(transaction=True, sync=True) as b:
                b.put(k.META_VERSION, k.encode_height(k.FORMAT_VERSION))
                b.put(k.META_CHAIN_ID, chain_id or b"")
            return
        try:
            version = k.decode_height(raw_version)
        except ValueError as e:
            raise corrupt(f"format version record: {e}") from e
        if version not in k.READABLE_FORMATS:
            raise StoreError(
                f"{self._path} has store format {version}; this build reads "
                f"{' and '.join(map(str, k.READABLE_FORMATS))}"
            )
        stored = self._kv.get(k.META_CHAIN_ID)
        if stored is None:
            raise corrupt("chain id record is missing")
        if chain_id is None or stored == chain_id:
            return
        if stored == b"" and self._kv.get(k.META_HEAD) is None:
            self._db.put(k.META_CHAIN_ID, chain_id, sync=True)  # adopt: no block written yet
            return
        raise ChainMismatch(
            f"{self._path} belongs to chain {stored!r}, not {chain_id!r}; refusing to open it"
        )

    def close(self) -> None:
        """Close the database; later calls raise StoreError. Idempotent."""
        with self._lock:
            if not self._db.closed:
                self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def snapshot(self) -> StateSnapshot:
        """A consistent read view of committed state as of now (see StateSnapshot)."""
        try:
            return StateSnapshot(self._db.snapshot(), verify=self._verify)
        except RuntimeError as e:  # plyvel: "Database is closed"
            raise StoreError(f"ledger store is closed ({e})") from e

    @property
    def path(self) -> str:
        return self._path

    @property
    def chain_id(self) -> bytes:
        """The chain id recorded at creation (b"" if none was given yet)."""
        return self._kv.get(k.META_CHAIN_ID) or b""

    def check_consistency(self, *, deep: bool = False) -> None:
        """Check the store on a snapshot; raise StoreCorrupt on any finding.

        Also refreshes the cached head from disk. `deep=True` re-checks every block (O(chain)).
        """
        with self._lock:
            if self._db.closed:
                raise StoreError("ledger store is closed")
            snap = self._db.snapshot()
            try:
                kv = _KV(snap, verify=self._verify or deep)
                found = check_store_deep(kv) if deep else check_store(kv)
                last = kv.last_key(k.P_EPOCH)
                self._last_epoch = 0 if last is None else k.decode_height(last[1:])
            finally:
                snap.close()
            if found is None:
                self._head, self._acc_size = None, 0
            else:
                self._head, self._acc_size = (found[0], found[1]), found[2]

    # ---------------------------------------------------------------- the write path

    def commit_block(self, w: BlockWrite, *, sync: bool = True) -> None:
        """Write block `w` and everything derived from it in ONE synced transactional batch.

        `w.height` must be head + 1 (0 for genesis). Raises StoreError and writes nothing if any
        check fails or the batch cannot be written. `sync=False` only for a scratch store that
        is synced once before it is used (a restore: node/snapshot_ops.py rule 2).
        """
        with self._lock:
            if self._db.closed:
                raise StoreError("ledger store is closed")
            new_nodes = self._validate(w)
            try:
                with self._db.write_batch(transaction=True, sync=sync) as b:
                    self._put_block(b, w, new_nodes)
            except plyvel.Error as e:
                raise StoreError(f"writing block {w.height} failed, nothing written: {e}") from e
            if w.epoch_record is not None:  # before the head: who sees a head sees its records
                self._last_epoch = w.epoch_record[0]
            self._head = (w.height, w.block_hash)
            self._acc_size += len(w.tx_ids)

    def _validate(self, w: BlockWrite) -> dict[tuple[int, int], bytes]:
        """Check every field of `w` against the store; return the accumulator nodes to add."""
        get = self._kv.get
        return check_block_write(
            w,
            next_height=0 if self._head is None else self._head[0] + 1,
            acc_size=self._acc_size,
            last_epoch=self.last_epoch(),
            is_stored_hash=lambda h: get(k.k_hash_index(h)) is not None,
            is_stored_tx=lambda t: get(k.P_TX + t) is not None,
            get_node=self._node_getter(),
        )

    def _put_block(self, b: Any, w: BlockWrite, new_nodes: dict[tuple[int, int], bytes]) -> None:
        h = w.height
        acc_start = self._acc_size
        digest = k.compute_content_digest(w.header_bytes, w.block_bytes, w.receipts)
        summary = k.BlockSummary(tx_count=len(w.tx_ids), acc_start=acc_start, content_digest=digest)
        put = b.put
        put(k.k_block(h), w.block_bytes)
        put(k.k_header(h), w.header_bytes)
        put(k.k_block_hash(h), w.block_hash)
        put(k.k_hash_index(w.block_hash), k.encode_height(h))
        put(k.k_summary(h), summary.encode())
        put(k.k_tx_ids(h), b"".join(w.tx_ids))
        for i, (tx_id, receipt, leaf) in enumerate(
            zip(w.tx_ids, w.receipts, w.acc_leaves, strict=True)
        ):
            put(k.k_tx(tx_id), k.encode_tx_location(h, i))
            put(k.k_receipt(tx_id), receipt)
            put(k.k_acc_leaf(acc_start + i), leaf)
        for (level, index), node in new_nodes.items():
            put(k.k_acc_node(level, index), node)
        for (ns, key), value in w.state_writes.items():
            if value is None:
                b.delete(k.k_state_prefix(ns) + key)
            else:
                put(k.k_state_prefix(ns) + key, value)
        for ik, iv in w.index_writes.items():
            if iv is None:
                b.delete(k.k_index(ik))
            else:
                put(k.k_index(ik), iv)
        if w.commit_proof:
            put(k.k_proof(h), w.commit_proof)
        if w.epoch_record is not None:  # store_api rule 5: in the block's own batch
            put(k.k_epoch(w.epoch_record[0]), w.epoch_record[1])
        put(k.k_writes(h), k.encode_write_set(w.state_writes))  # format 3 (store_keys)
        put(k.META_HEAD, k.encode_head(h, w.block_hash))
        put(k.META_ACC_SIZE, k.encode_height(acc_start + len(w.tx_ids)))
        put(k.META_VERSION, k.encode_height(k.FORMAT_VERSION))

    def set_commit_proof(self, h: int, proof: bytes) -> None:
        """Record (or replace) the commit proof of committed block h; synced."""
        require_bytes(proof, "proof")
        with self._lock:
            if self._head is None or not 0 <= h <= self._head[0]:
                raise StoreError(f"no committed block {h} to attach a commit proof to")
            self._put_synced(k.k_proof(h), proof)

    def put_meta(self, key: str, value: bytes, *, sync: bool = True) -> None:
        """Store small caller metadata (e.g. consensus safety data); synced unless sync=False."""
        if not isinstance(key, str) or not key:
            raise StoreError("metadata key must be a non-empty str")
        require_bytes(value, f"metadata value of {key!r}")
        with self._lock:
            self._put_synced(k.k_user_meta(key), value, sync=sync)

    def put_sealed_meta(self, key: str, value: bytes) -> None:
        """Store `value` sealed (`store_keys.seal_record`: its own SM3 checksum) under `key`, and
        keep the sealed copy it replaces under `key + ".previous"` (unless that copy is damaged:
        then the older previous copy stays) — one synced batch, which also
        deletes an unsealed `put_meta` record of the same name (the format-1 layout it upgrades)
        and marks the store format 2 (rule 5: on disk before the caller goes on)."""
        if not isinstance(key, str) or not key:
            raise StoreError("metadata key must be a non-empty str")
        require_bytes(value, f"metadata value of {key!r}")
        with self._lock:
            if self._db.closed:
                raise StoreError("ledger store is closed")
            old = self._kv.get(k.k_sealed_meta(key))
            try:
                with self._db.write_batch(transaction=True, sync=True) as b:
                    if old is not None and k.is_sealed_intact(old):
                        b.put(k.k_sealed_meta(key + ".previous"), old)
                    b.put(k.k_sealed_meta(key), k.seal_record(value))
                    b.delete(k.k_user_meta(key))
                    b.put(k.META_VERSION, k.encode_height(k.FORMAT_VERSION))
            except plyvel.Error as e:
                raise StoreError(f"write failed: {e}") from e

    def get_sealed_meta(self, key: str) -> bytes | None:
        """The value `put_sealed_meta` stored under `key`, checked; None if there is none.

        Raises StoreCorrupt naming the record if its bytes changed since they were written."""
        raw = self._kv.get(k.k_sealed_meta(key))
        if raw is None:
            return None
        try:
            return k.unseal_record(raw)
        except k.SealedRecordDamaged as e:
            raise StoreCorrupt(f"sealed metadata record {key!r} is damaged: {e}") from e

    def _put_synced(self, key: bytes, value: bytes, *, sync: bool = True) -> None:
        if self._db.closed:
            raise StoreError("ledger store is closed")
        try:
            self._db.put(key, value, sync=sync)
        except plyvel.Error as e:
            raise StoreError(f"write failed: {e}") from e

    # ---------------------------------------------------------------- reads

    def head_height(self) -> int | None:
        return None if self._head is None else self._head[0]

    def head_hash(self) -> bytes | None:
        return None if self._head is None else self._head[1]

    def _by_height(self, key_of: Any, h: int, *, verify: bool = False) -> bytes | None:
        if type(h) is not int or not 0 <= h <= k.MAX_U64:
            return None
        return self._kv.get(key_of(h), verify=verify)

    def get_block_by_height(self, h: int) -> bytes | None:
        return self._by_height(k.k_block, h, verify=True)

    def get_header_by_height(self, h: int) -> bytes | None:
        return self._by_height(k.k_header, h, verify=True)

    def get_block_hash(self, h: int) -> bytes | None:
        return self._by_height(k.k_block_hash, h, verify=True)

    def get_commit_proof(self, h: int) -> bytes | None:
        return self._by_height(k.k_proof, h, verify=True)

    def get_height_by_hash(self, block_hash: bytes) -> int | None:
        v = self._kv.get(k.k_hash_index(block_hash), verify=True)
        return None if v is None else k.decode_height(v)

    def get_block_by_hash(self, block_hash: bytes) -> bytes | None:
        h = self.get_height_by_hash(block_hash)
        return None if h is None else self.get_block_by_height(h)

    def get_tx_ids(self, h: int) -> list[bytes] | None:
        """The tx ids of block h in block order (None if no such block)."""
        v = self._by_height(k.k_tx_ids, h, verify=True)
        if v is None:
            return None
        return [v[i : i + k.HASH_SIZE] for i in range(0, len(v), k.HASH_SIZE)]

    def get_acc_size_at(self, h: int) -> int | None:
        """The accumulator size right after block h was committed (None if no such block)."""
        v = self._by_height(k.k_summary, h)
        if v is None:
            return None
        s = k.BlockSummary.decode(v)
        return s.acc_start + s.tx_count

    def get_tx_location(self, tx_id: bytes) -> tuple[int, int] | None:
        v = self._kv.get(k.k_tx(tx_id))
        return None if v is None else k.decode_tx_location(v)

    def get_receipt(self, tx_id: bytes) -> bytes | None:
        return self._kv.get(k.k_receipt(tx_id))

    def get_state(self, namespace: str, key: bytes) -> bytes | None:
        return _get_state(self._kv, namespace, key)

    def iter_state(self, namespace: str, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of one namespace whose key starts with `prefix`, in bytewise key order."""
        return _iter_state(self._kv, namespace, prefix)

    def get_index(self, key: bytes) -> bytes | None:
        return self._kv.get(k.k_index(key))

    def iter_index(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of the secondary indexes whose key starts with `prefix`, in key order."""
        for key, value in self._kv.iter_prefix(k.P_INDEX + prefix):
            yield key[1:], value

    def get_meta(self, key: str) -> bytes | None:
        return self._kv.get(k.k_user_meta(key))

    def get_write_set(self, h: int) -> bytes | None:
        """Block h's encoded state writes (`store_keys.encode_write_set`); None before format 3."""
        return self._by_height(k.k_writes, h, verify=True)

    def get_epoch_record(self, epoch: int) -> bytes | None:
        return self._by_height(k.k_epoch, epoch, verify=True)

    def last_epoch(self) -> int:
        return self._last_epoch  # 0 while there is none (store_api rule 5)

    # ---------------------------------------------------------------- accumulator

    def acc_size(self) -> int:
        return self._acc_size

    def get_acc_leaf(self, index: int) -> bytes | None:
        return self._by_height(k.k_acc_leaf, index)

    def get_acc_node(self, level: int, index: int) -> bytes | None:
        """Hash of the perfect subtree over leaves [index * 2**level, (index+1) * 2**level).

        Level 0 is the leaf itself; None if that subtree is not complete (or out of range).
        """
        if level == 0:
            return self.get_acc_leaf(index)
        if not 0 < level < 64 or not 0 <= index <= k.MAX_U64:
            return None
        return self._kv.get(k.k_acc_node(level, index))

    def _node_getter(self) -> NodeGetter:
        def get_node(level: int, index: int) -> bytes:
            v = self.get_acc_node(level, index)
            if v is None:
                raise corrupt(f"accumulator node ({level}, {index}) is missing")
            return v

        return get_node

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self._acc_size:
            raise StoreError(f"accumulator size {size} out of range 0..{self._acc_size}")

    def get_acc_root(self, size: int | None = None) -> bytes:
        """RFC 6962 root (SM3) of the first `size` leaves (default: all); O(log n) reads."""
        size = self._acc_size if size is None else size
        self._check_size(size)
        return compute_root(size, self._node_getter())

    def get_acc_inclusion_path(self, index: int, size: int) -> list[bytes]:
        """RFC 6962 §2.1.1 audit path of leaf `index` in the tree of the first `size` leaves."""
        self._check_size(size)
        try:
            return compute_inclusion_path(index, size, self._node_getter())
        except ValueError as e:
            raise StoreError(str(e)) from e

    def get_acc_consistency_proof(self, old_size: int, size: int) -> list[bytes]:
        """RFC 6962 §2.1.2 consistency proof between the trees of `old_size` and `size` leaves."""
        self._check_size(size)
        try:
            return compute_consistency_proof(old_size, size, self._node_getter())
        except ValueError as e:
            raise StoreError(str(e)) from e

"""Snapshot files of a ledger store: one consistent view of a node's records, checked on read.

What `gmchain db snapshot` writes and `gmchain db restore` reads (docs/ops.md, "Backup, restore
and fast join"). A snapshot detects damage by itself; it proves nothing about the chain: a node
that joins from one checks its content against the chain's certificates (chain/fastjoin.py).

Rules this module keeps:
1. One view: a snapshot is written from ONE LevelDB snapshot (`Store.snapshot`), so every record
   in it belongs to the same set of committed batches, and its manifest's head, chain id and
   genesis hash are read from that view, never from the live store. Taking it does not stop the
   node: LevelDB snapshots do not block writers.
2. Left out: caller metadata, unsealed and sealed (b"u", b"v": consensus safety data, uncommitted
   blocks): they describe what one node process did and must never be handed to another one (or
   to an older copy of the same one: its last votes would be older than those it signed since).
   The transaction pool's WAL is a file of its own and not in the store.
3. File layout (version 1), all integers unsigned big-endian:
       MAGIC (b"GMCHAIN-SNAPSHOT\\n")
       records: (u32 len(key) || key || u32 len(value) || value)*, in the store's key order
       manifest: canonical JSON (sorted keys, UTF-8)
       u32 len(manifest) || TRAILER (b"\\nGMSNAP-END")
   The manifest names: format "gmchain-snapshot", version, storeFormat, chainId, genesisHash
   (the genesis document hash block 0 names as its parent), height, headHash, entries (records),
   contentBytes, contentSm3 and createdMs. contentSm3 chains SM3 over the records:
   d_0 = SM3(HASH_PREFIXES["snapshot-content"]), d_i = SM3(d_{i-1} || record i as framed above).
4. A reader checks the whole file before it calls anything good: magic, trailer, manifest fields,
   that the records fill exactly contentBytes, their count, key order and the SM3 chain. Anything
   else is `SnapshotError` naming what is wrong. `stage_snapshot` writes the records into a
   scratch LevelDB only, which the caller removes; the target data directory is never touched.

Sources: LevelDB docs (snapshots: a consistent read view that does not block writes); GB/T 32905
(SM3); Tendermint/CometBFT state sync and FISCO BCOS #3671 for why a node should not replay from
genesis to join.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import plyvel  # type: ignore[import-not-found, unused-ignore]

from gmchain.crypto_sm import sm3_hash
from gmchain.ledger import store_keys as k
from gmchain.ledger.store import Store
from gmchain.ledger.store_errors import StoreError
from gmchain.ledger.wire import HASH_PREFIXES

__all__ = [
    "MAGIC",
    "SNAPSHOT_VERSION",
    "Manifest",
    "SnapshotError",
    "SnapshotReader",
    "read_manifest",
    "stage_snapshot",
    "write_snapshot",
]

MAGIC = b"GMCHAIN-SNAPSHOT\n"
TRAILER = b"\nGMSNAP-END"
SNAPSHOT_VERSION = 1
FORMAT_NAME = "gmchain-snapshot"
EXCLUDED_PREFIXES = (k.P_USER_META, k.P_SEALED_META)  # rule 2
_U32 = struct.Struct(">I")
_MAX_MANIFEST = 1 << 16
_CHUNK = 1 << 20


class SnapshotError(StoreError):
    """The snapshot file is damaged, truncated, not a snapshot, or of an unknown version."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """Rule 3: what a snapshot says about itself (checked against its records when read)."""

    version: int
    store_format: int
    chain_id: str
    genesis_hash: str  # hex
    height: int
    head_hash: str  # hex
    entries: int
    content_bytes: int
    content_sm3: str  # hex
    created_ms: int

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        camel = {
            "store_format": "storeFormat",
            "chain_id": "chainId",
            "genesis_hash": "genesisHash",
            "head_hash": "headHash",
            "content_bytes": "contentBytes",
            "content_sm3": "contentSm3",
            "created_ms": "createdMs",
        }
        out: dict[str, Any] = {"format": FORMAT_NAME}
        out.update({camel.get(name, name): v for name, v in d.items()})
        return out

    @classmethod
    def from_json(cls, d: Any) -> Manifest:
        if not isinstance(d, dict) or d.get("format") != FORMAT_NAME:
            raise SnapshotError("not a gmchain snapshot manifest")
        if d.get("version") != SNAPSHOT_VERSION:
            raise SnapshotError(
                f"snapshot version {d.get('version')!r}; this build reads {SNAPSHOT_VERSION}"
            )
        try:
            m = cls(
                version=d["version"],
                store_format=d["storeFormat"],
                chain_id=d["chainId"],
                genesis_hash=d["genesisHash"],
                height=d["height"],
                head_hash=d["headHash"],
                entries=d["entries"],
                content_bytes=d["contentBytes"],
                content_sm3=d["contentSm3"],
                created_ms=d["createdMs"],
            )
        except KeyError as e:
            raise SnapshotError(f"snapshot manifest lacks {e}") from None
        ints = (m.store_format, m.height, m.entries, m.content_bytes, m.created_ms)
        strs = (m.chain_id, m.genesis_hash, m.head_hash, m.content_sm3)
        if not all(type(x) is int and x >= 0 for x in ints) or not all(
            isinstance(x, str) for x in strs
        ):
            raise SnapshotError("snapshot manifest has a field of the wrong type")
        return m


def _frame(key: bytes, value: bytes) -> bytes:
    return _U32.pack(len(key)) + key + _U32.pack(len(value)) + value


def write_snapshot(store: Store, out: str | os.PathLike[str], *, created_ms: int) -> Manifest:
    """Rules 1-3: write a snapshot of `store` to `out` (a file path, or an existing directory:
    then `snapshot-<chain>-<height>.gmsnap` in it); return its manifest. Written to a temporary
    name, synced, then renamed, so a crash leaves no half file under the final name."""
    target = Path(out)
    tmp = (target if target.is_dir() else target.parent) / f".snapshot-{os.getpid()}.tmp"
    digest = sm3_hash(HASH_PREFIXES["snapshot-content"])
    entries = size = 0
    seen: dict[bytes, bytes] = {}
    wanted = (k.META_HEAD, k.META_CHAIN_ID, k.META_VERSION, k.k_header(0))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # every org's data
        with store.snapshot() as view, os.fdopen(fd, "wb") as f:
            f.write(MAGIC)
            for key, value in view.iter_records():
                if key[:1] in EXCLUDED_PREFIXES:
                    continue
                rec = _frame(key, value)
                digest = sm3_hash(digest + rec)
                f.write(rec)
                entries += 1
                size += len(rec)
                if key in wanted:
                    seen[key] = value
            if k.META_HEAD not in seen or k.k_header(0) not in seen:
                raise StoreError("the store holds no block yet: nothing to snapshot")
            height, head_hash = k.decode_head(seen[k.META_HEAD])
            manifest = Manifest(
                version=SNAPSHOT_VERSION,
                store_format=k.decode_height(seen[k.META_VERSION]),
                chain_id=seen.get(k.META_CHAIN_ID, b"").decode("utf-8"),
                genesis_hash=_genesis_hash(seen[k.k_header(0)]).hex(),
                height=height,
                head_hash=head_hash.hex(),
                entries=entries,
                content_bytes=size,
                content_sm3=digest.hex(),
                created_ms=created_ms,
            )
            blob = json.dumps(manifest.to_json(), sort_keys=True).encode("utf-8")
            f.write(blob + _U32.pack(len(blob)) + TRAILER)
            f.flush()
            os.fsync(f.fileno())
        if target.is_dir():
            target = target / f"snapshot-{manifest.chain_id}-{height}.gmsnap"
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return manifest


def _genesis_hash(header0: bytes) -> bytes:
    from gmchain.ledger.types import BlockHeader  # (the store itself never decodes a block)

    return bytes(BlockHeader.decode(header0).parent_id)


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """The manifest of the snapshot at `path`, with the file's frame checked (magic, trailer,
    sizes); the records are checked by `stage_snapshot`. Raises SnapshotError."""
    try:
        with open(path, "rb") as f:
            return _read_manifest(f)
    except OSError as e:
        raise SnapshotError(f"cannot read snapshot {path}: {e}") from e


def _read_manifest(f: BinaryIO) -> Manifest:
    total = f.seek(0, os.SEEK_END)
    tail = len(TRAILER) + _U32.size
    f.seek(0)
    if total < len(MAGIC) + tail or f.read(len(MAGIC)) != MAGIC:
        raise SnapshotError("not a gmchain snapshot (no snapshot header)")
    f.seek(total - tail)
    n_raw, trailer = f.read(_U32.size), f.read(len(TRAILER))
    n = _U32.unpack(n_raw)[0]
    if trailer != TRAILER or n > _MAX_MANIFEST or len(MAGIC) + n + tail > total:
        raise SnapshotError("snapshot file is truncated or damaged (no intact trailer)")
    f.seek(total - tail - n)
    try:
        doc = json.loads(f.read(n).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise SnapshotError(f"snapshot manifest is damaged: {e}") from e
    m = Manifest.from_json(doc)
    if len(MAGIC) + m.content_bytes + n + tail != total:
        raise SnapshotError(
            f"snapshot file has {total} bytes, its manifest describes "
            f"{len(MAGIC) + m.content_bytes + n + tail}: truncated or damaged"
        )
    return m


def _iter_records(f: BinaryIO, size: int) -> Iterator[tuple[bytes, bytes]]:
    f.seek(len(MAGIC))
    left = size
    while left > 0:
        parts = []
        for _ in range(2):
            raw = f.read(_U32.size)
            if len(raw) != _U32.size:
                raise SnapshotError("snapshot records are truncated")
            n = _U32.unpack(raw)[0]
            if n > left:
                raise SnapshotError("a snapshot record is longer than the content")
            data = f.read(n)
            if len(data) != n:
                raise SnapshotError("snapshot records are truncated")
            parts.append(data)
            left -= _U32.size + n
        if left < 0:
            raise SnapshotError("snapshot records overrun the content")
        yield parts[0], parts[1]


def stage_snapshot(path: str | os.PathLike[str], scratch: str | os.PathLike[str]) -> Manifest:
    """Rule 4: check the snapshot at `path` whole and copy its records into a new LevelDB at
    `scratch` (which must not exist); return the manifest. On any error `scratch` is removed."""
    scratch = Path(scratch)
    if scratch.exists():
        raise StoreError(f"scratch directory {scratch} already exists")
    db = None
    try:
        with open(path, "rb") as f:
            m = _read_manifest(f)
            db = plyvel.DB(str(scratch), create_if_missing=True, error_if_exists=True)
            digest = sm3_hash(HASH_PREFIXES["snapshot-content"])
            count = 0
            last = b""
            batch = db.write_batch()
            for key, value in _iter_records(f, m.content_bytes):
                digest = sm3_hash(digest + _frame(key, value))
                if count and key <= last:
                    raise SnapshotError("snapshot records are not in strictly ascending key order")
                if key[:1] in EXCLUDED_PREFIXES:
                    raise SnapshotError(f"snapshot holds a record of kind {key[:1]!r} (rule 2)")
                last = key
                count += 1
                batch.put(key, value)
                if count % 10_000 == 0:
                    batch.write()
                    batch = db.write_batch()
            batch.write()
            if count != m.entries:
                raise SnapshotError(
                    f"snapshot holds {count} records, its manifest says {m.entries}"
                )
            if digest.hex() != m.content_sm3:
                raise SnapshotError("snapshot content SM3 differs from its manifest: damaged file")
        return m
    except OSError as e:
        _remove(db, scratch)
        raise SnapshotError(f"cannot read snapshot {path}: {e}") from e
    except BaseException:
        _remove(db, scratch)
        raise
    finally:
        if db is not None and not db.closed:
            db.close()


def _remove(db: Any, scratch: Path) -> None:
    if db is not None and not db.closed:
        db.close()
    shutil.rmtree(scratch, ignore_errors=True)


class SnapshotReader:
    """Typed reads of a staged snapshot (`stage_snapshot`), for chain/fastjoin.py. Every value
    is as the snapshot's maker wrote it: untrusted until the joiner checked it."""

    __slots__ = ("_db",)

    def __init__(self, scratch: str | os.PathLike[str]) -> None:
        self._db = plyvel.DB(str(scratch), create_if_missing=False)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SnapshotReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def get(self, key: bytes) -> bytes | None:
        v: bytes | None = self._db.get(key)
        return v

    def block(self, h: int) -> bytes | None:
        return self.get(k.k_block(h))

    def commit_proof(self, h: int) -> bytes | None:
        return self.get(k.k_proof(h))

    def write_set(self, h: int) -> bytes | None:
        return self.get(k.k_writes(h))

    def receipt(self, tx_id: bytes) -> bytes | None:
        return self.get(k.k_receipt(tx_id))

    def epoch_record(self, epoch: int) -> bytes | None:
        return self.get(k.k_epoch(epoch))

    def head(self) -> tuple[int, bytes] | None:
        raw = self.get(k.META_HEAD)
        return None if raw is None else k.decode_head(raw)

    def iter_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        with self._db.iterator(prefix=prefix) as it:
            yield from it

"""File-level check of a stopped node's LevelDB directory: what `gmchain db check` adds to LevelDB.

Rules this module keeps (issue 10, fault 11: `db check` caught 3 of 5 single flipped bytes):
- LevelDB verifies most of its bytes itself when asked — data and index blocks by their CRC
  (`verify_checksums` on a read of every key, which `db check` does), log and MANIFEST records by
  theirs (`paranoid_checks` on open). It does not verify, and silently ignores damage in: a
  table's filter block and metaindex block (dropped without an error: the table then reads without
  its Bloom filter), the zero padding of a table footer, and the zero padding at the end of a
  32 KiB log block. This module checks exactly those, plus what makes the others reachable: the
  footer's magic and block handles, each structural block's CRC, that filter, metaindex, index
  and footer sit back to back at the end of the table, and that `CURRENT` names an existing
  MANIFEST. Formats: leveldb/doc/table_format.md and log_format.md.
- A record cut short at the very end of a log (a torn write: what a crash leaves) is not damage:
  LevelDB drops it on open, as after a crash. But LevelDB also drops, silently, every record
  from one whose length field was damaged to look longer than the rest of the file (measured:
  a flip in the first record's length lost all of them); such a record is told from a torn write
  by its checksum, which matches a shorter payload that is all there (a torn payload never is).
- Reads only; each finding is one line naming the file and what is wrong.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "check_files",
    "check_log_files",
    "crc32c",
    "describe_log",
    "describe_table",
    "masked_crc32c",
]

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_TRAILER = 5  # block type (1) + masked CRC32C (4)
_LOG_BLOCK = 32768
_LOG_HEADER = 7
_MAX_LOG_TYPE = 4  # FULL, FIRST, MIDDLE, LAST
_U32 = struct.Struct("<I")


def _make_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _make_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as LevelDB computes it (util/crc32c.cc)."""
    c = 0xFFFFFFFF
    t = _CRC_TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """LevelDB stores CRCs masked (util/crc32c.h `Mask`)."""
    c = crc32c(data)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


class _Damaged(Exception):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Damaged("bad varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _snappy_decompress(src: bytes) -> bytes:
    """Snappy's raw format (format_description.txt): a varint length, then literals and copies."""
    n, pos = _varint(src, 0)
    out = bytearray()
    while pos < len(src):
        tag = src[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:
            size = tag >> 2
            if size >= 60:
                extra = size - 59
                size = int.from_bytes(src[pos : pos + extra], "little")
                pos += extra
            size += 1
            out += src[pos : pos + size]
            pos += size
            continue
        if kind == 1:
            length, offset = ((tag >> 2) & 7) + 4, ((tag >> 5) << 8) | src[pos]
            pos += 1
        else:
            width = 2 if kind == 2 else 4
            length, offset = (tag >> 2) + 1, int.from_bytes(src[pos : pos + width], "little")
            pos += width
        if not 0 < offset <= len(out):
            raise _Damaged("bad snappy copy offset")
        for _ in range(length):
            out.append(out[-offset])
    if len(out) != n:
        raise _Damaged("snappy length mismatch")
    return bytes(out)


def _read_block(data: bytes, offset: int, size: int, what: str) -> bytes:
    """The contents of the block at (offset, size), its CRC checked and decompressed."""
    end = offset + size + _TRAILER
    if end > len(data):
        raise _Damaged(f"{what} block handle points past the end of the file")
    contents, kind = data[offset : offset + size], data[offset + size]
    (stored,) = _U32.unpack_from(data, offset + size + 1)
    if masked_crc32c(contents + bytes((kind,))) != stored:
        raise _Damaged(f"{what} block checksum mismatch")
    if kind == 0:
        return contents
    if kind == 1:
        return _snappy_decompress(contents)
    raise _Damaged(f"{what} block has unknown compression type {kind}")


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """Key/value entries of a table block (prefix-compressed keys, restart array at the end)."""
    if len(block) < 4:
        raise _Damaged("block too short")
    (restarts,) = _U32.unpack_from(block, len(block) - 4)
    limit = len(block) - 4 - 4 * restarts
    if limit < 0:
        raise _Damaged("bad restart count")
    entries: list[tuple[bytes, bytes]] = []
    key = b""
    pos = 0
    while pos < limit:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        vlen, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + vlen > limit:
            raise _Damaged("bad block entry")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + vlen]))
        pos += vlen
    return entries


def _check_table(data: bytes) -> None:
    if len(data) < _FOOTER_SIZE:
        raise _Damaged("shorter than a table footer")
    footer_at = len(data) - _FOOTER_SIZE
    footer = data[footer_at:]
    lo, hi = struct.unpack_from("<II", footer, 40)
    if (hi << 32) | lo != _TABLE_MAGIC:
        raise _Damaged("bad table magic number")
    meta_off, pos = _varint(footer, 0)
    meta_size, pos = _varint(footer, pos)
    index_off, pos = _varint(footer, pos)
    index_size, pos = _varint(footer, pos)
    if any(footer[pos:40]):
        raise _Damaged("footer padding is not zero")
    if index_off + index_size + _TRAILER != footer_at:
        raise _Damaged("index block does not end where the footer starts")
    if meta_off + meta_size + _TRAILER != index_off:
        raise _Damaged("metaindex block does not end where the index block starts")
    _read_block(data, index_off, index_size, "index")
    meta = _block_entries(_read_block(data, meta_off, meta_size, "metaindex"))
    for name, handle in meta:
        if not name.startswith(b"filter."):
            raise _Damaged(f"unknown metaindex entry {name!r}")
        f_off, p = _varint(handle, 0)
        f_size, _ = _varint(handle, p)
        if f_off + f_size + _TRAILER != meta_off:
            raise _Damaged("filter block does not end where the metaindex block starts")
        _read_block(data, f_off, f_size, "filter")


def _is_complete_record(data: bytes, pos: int, end: int) -> bool:
    """Whether a prefix of data[pos + 7 : end] is the whole payload of the record at `pos`, i.e.
    its stored checksum matches a shorter length than its length field says. A torn write never
    has that (its payload is incomplete); a record whose length field was damaged does."""
    (stored,) = _U32.unpack_from(data, pos)
    t = _CRC_TABLE
    c = t[(0xFFFFFFFF ^ data[pos + 6]) & 0xFF] ^ (0xFFFFFFFF >> 8)
    for i in range(pos + _LOG_HEADER, end + 1):
        v = c ^ 0xFFFFFFFF
        if ((((v >> 15) | (v << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF == stored:
            return True
        if i < end:
            c = t[(c ^ data[i]) & 0xFF] ^ (c >> 8)
    return False


def _check_log(data: bytes) -> None:
    pos = 0
    while pos < len(data):
        left_in_block = _LOG_BLOCK - pos % _LOG_BLOCK
        if left_in_block < _LOG_HEADER:  # the writer pads a block's tail with zeros
            if any(data[pos : pos + left_in_block]):
                raise _Damaged(f"non-zero padding at offset {pos}")
            pos += left_in_block
            continue
        if pos + _LOG_HEADER > len(data):
            return  # a torn header at the very end
        length = data[pos + 4] | (data[pos + 5] << 8)
        kind = data[pos + 6]
        if pos + _LOG_HEADER + length > len(data) and len(data) - pos < left_in_block:
            # Cut short by the end of the file: a torn write (module rules) — unless the record
            # is in fact whole and only its length field was damaged.
            if _is_complete_record(data, pos, len(data)):
                raise _Damaged(f"record at offset {pos} has a damaged length field")
            return
        if _LOG_HEADER + length > left_in_block:
            raise _Damaged(f"record at offset {pos} crosses its 32 KiB block")
        if not 1 <= kind <= _MAX_LOG_TYPE:
            raise _Damaged(f"record at offset {pos} has type {kind}")
        pos += _LOG_HEADER + length


def _handle(raw: bytes) -> tuple[int, int]:
    offset, pos = _varint(raw, 0)
    size, _ = _varint(raw, pos)
    return offset, size


def describe_table(data: bytes) -> list[tuple[str, int, int]]:
    """The blocks of a sound table file, in file order: (kind, offset, size without trailer);
    kind is "data", "filter", "metaindex", "index" or "footer". For tools and damage drills."""
    footer_at = len(data) - _FOOTER_SIZE
    footer = data[footer_at:]
    meta_off, pos = _varint(footer, 0)
    meta_size, pos = _varint(footer, pos)
    index_off, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    out = [
        ("data", *_handle(h))
        for _, h in _block_entries(_read_block(data, index_off, index_size, "index"))
    ]
    for _, h in _block_entries(_read_block(data, meta_off, meta_size, "metaindex")):
        out.append(("filter", *_handle(h)))
    out += [("metaindex", meta_off, meta_size), ("index", index_off, index_size)]
    out.append(("footer", footer_at, _FOOTER_SIZE))
    return out


def describe_log(data: bytes) -> list[tuple[int, int]]:
    """The records of a sound log-format file (a .log or MANIFEST): (offset, payload length)."""
    out = []
    pos = 0
    while pos + _LOG_HEADER <= len(data):
        left_in_block = _LOG_BLOCK - pos % _LOG_BLOCK
        if left_in_block < _LOG_HEADER:
            pos += left_in_block
            continue
        length = data[pos + 4] | (data[pos + 5] << 8)
        out.append((pos, length))
        pos += _LOG_HEADER + length
    return out


_TABLE_FILE = re.compile(r"^\d+\.(ldb|sst)$")
_LOG_FILE = re.compile(r"^(\d+\.log|MANIFEST-\d+)$")


def check_log_files(path: str | os.PathLike[str]) -> list[str]:
    """Findings in the log-format files only (.log and MANIFEST): cheap enough for every open —
    one pass over headers, a checksum only over a torn-looking last record (<= 32 KiB) — and what
    keeps LevelDB from silently dropping records behind a damaged length field on open."""
    found: list[str] = []
    for f in sorted(Path(path).iterdir()):
        if _LOG_FILE.match(f.name):
            found += _finding(f, _check_log)
    return found


def _finding(f: Path, check: Callable[[bytes], None]) -> list[str]:
    """`check`'s finding on the bytes of file `f` as one line, or none."""
    try:
        check(f.read_bytes())
    except _Damaged as e:
        return [f"{f.name}: {e}"]
    except OSError as e:
        return [f"{f.name}: cannot be read ({e.strerror})"]
    return []


def check_files(path: str | os.PathLike[str]) -> list[str]:
    """Findings (one line each) in the LevelDB directory `path`; [] when every file is sound."""
    root = Path(path)
    found: list[str] = []
    try:
        current = (root / "CURRENT").read_bytes()
    except OSError as e:
        return [f"CURRENT: cannot be read ({e.strerror})"]
    name = current[:-1].decode("ascii", "replace")
    if not current.endswith(b"\n") or not re.fullmatch(r"MANIFEST-\d+", name):
        found.append("CURRENT: does not name a MANIFEST file")
    elif not (root / name).is_file():
        found.append(f"CURRENT: names {name}, which does not exist")
    for f in sorted(root.iterdir()):
        check = (
            _check_table
            if _TABLE_FILE.match(f.name)
            else _check_log
            if _LOG_FILE.match(f.name)
            else None
        )
        if check is not None:
            found += _finding(f, check)
    return found

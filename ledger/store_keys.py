"""Key layout and small record encodings of the gmchain LevelDB store (`ledger.store`).

Rules this module keeps:
- Every key starts with a one-byte prefix naming its record kind; integers in keys are unsigned
  big-endian of fixed width, so LevelDB's bytewise order is numeric order (heights 8 bytes,
  accumulator indexes 8 bytes, accumulator levels 1 byte).
- Namespaced state keys carry the namespace length-prefixed (`len(ns) || ns || key`), so no
  namespace is a byte-prefix of another's key space ("ab"+"c" never aliases "a"+"bc").
- Record values that hold several fields have one fixed layout and a leading record version byte;
  decoding rejects anything of the wrong length or version (the store treats that as corruption).
- Pure functions only; no IO. The store (`ledger.store`) is the only writer.

Key space (prefix, key, value):

    b"m" + name               internal metadata: format version, chain id, head, acc size
    b"u" + utf8(name)         caller metadata (`put_meta`), unchecked (format 1 safety data)
    b"v" + utf8(name)         sealed caller metadata (`put_sealed_meta`): `seal_record(value)`;
                              the copy it replaced is kept under name + ".previous" (format 2)
    b"B" + height             full encoded block
    b"H" + height             encoded header
    b"h" + height             32-byte block hash
    b"N" + block hash         height (8 bytes)
    b"Y" + height             per-block summary record (see `BlockSummary`)
    b"I" + height             the block's tx ids, concatenated (32 bytes each, in block order)
    b"T" + tx id              height (8) || index in block (4)
    b"R" + tx id              encoded receipt
    b"S" + len(ns) + ns + key contract-namespaced state value
    b"L" + index              accumulator leaf hash (32)
    b"A" + level(1) + index   accumulator perfect-subtree node hash, level >= 1 (32)
    b"P" + height             commit proof (opaque)
    b"X" + key                opaque secondary index value
    b"E" + epoch              epoch record (opaque; chain/epochs.py), written with the block that
                              ended the epoch before it (epoch >= 1)
    b"W" + height             the block's state writes (`encode_write_set`), written with the
                              block (format 3): what its header's state_hash chains, so a node
                              joining from a snapshot re-derives state_hash and the state from
                              them without executing (chain/fastjoin.py)

Sources: LevelDB's documentation (bytewise comparator, `WriteBatch` atomicity); RFC 6962 §2.1 for
what the accumulator nodes are (see `ledger.store_acc`).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from gmchain.crypto_sm import sm3_hash
from gmchain.ledger.wire import HASH_PREFIXES

__all__ = [
    "FORMAT_VERSION",
    "HASH_SIZE",
    "MAX_U64",
    "META_ACC_SIZE",
    "META_CHAIN_ID",
    "META_HEAD",
    "META_VERSION",
    "P_ACC_LEAF",
    "P_ACC_NODE",
    "P_BLOCK",
    "P_BLOCK_HASH",
    "P_EPOCH",
    "P_HASH_INDEX",
    "P_HEADER",
    "P_INDEX",
    "P_META",
    "P_PROOF",
    "P_RECEIPT",
    "P_SEALED_META",
    "P_STATE",
    "P_SUMMARY",
    "P_TX",
    "P_TX_IDS",
    "P_USER_META",
    "P_WRITES",
    "READABLE_FORMATS",
    "BlockSummary",
    "SealedRecordDamaged",
    "compute_content_digest",
    "decode_head",
    "decode_height",
    "decode_tx_location",
    "decode_write_set",
    "encode_head",
    "encode_height",
    "encode_tx_location",
    "encode_write_set",
    "is_sealed_intact",
    "k_acc_leaf",
    "k_acc_node",
    "k_block",
    "k_block_hash",
    "k_epoch",
    "k_hash_index",
    "k_header",
    "k_index",
    "k_proof",
    "k_receipt",
    "k_sealed_meta",
    "k_state",
    "k_state_prefix",
    "k_summary",
    "k_tx",
    "k_tx_ids",
    "k_user_meta",
    "k_writes",
    "prefix_end",
    "seal_record",
    "unseal_record",
]

# 2 added sealed metadata (b"v"); a format-1 store is read as it is and becomes format 2 with its
# first sealed write, after which a build that reads only format 1 refuses it (it would not see the
# sealed consensus safety data and could sign again in a round it already signed in).
# 3 added each block's write set (b"W"); an older store is read as it is and becomes format 3
# with its next block, so a build that does not write write sets can no longer open it (it would
# leave blocks without one, and a snapshot of the store could not be fast-joined).
FORMAT_VERSION: Final = 3
READABLE_FORMATS: Final = (1, 2, 3)
HASH_SIZE: Final = 32
MAX_U64: Final = 2**64 - 1

P_META: Final = b"m"
P_USER_META: Final = b"u"
P_SEALED_META: Final = b"v"
P_BLOCK: Final = b"B"
P_HEADER: Final = b"H"
P_BLOCK_HASH: Final = b"h"
P_HASH_INDEX: Final = b"N"
P_SUMMARY: Final = b"Y"
P_TX_IDS: Final = b"I"
P_TX: Final = b"T"
P_RECEIPT: Final = b"R"
P_STATE: Final = b"S"
P_ACC_LEAF: Final = b"L"
P_ACC_NODE: Final = b"A"
P_PROOF: Final = b"P"
P_INDEX: Final = b"X"
P_EPOCH: Final = b"E"
P_WRITES: Final = b"W"

META_VERSION: Final = P_META + b"format_version"
META_CHAIN_ID: Final = P_META + b"chain_id"
META_HEAD: Final = P_META + b"head"
META_ACC_SIZE: Final = P_META + b"acc_size"

_U64 = struct.Struct(">Q")
_TXLOC = struct.Struct(">QI")
_HEAD = struct.Struct(">Q32s")


def encode_height(h: int) -> bytes:
    """8-byte big-endian encoding of a height or index (0 <= h < 2**64)."""
    return _U64.pack(h)


def decode_height(b: bytes) -> int:
    """Inverse of `encode_height`; raises ValueError on a wrong length."""
    if len(b) != _U64.size:
        raise ValueError(f"height record has {len(b)} bytes, expected {_U64.size}")
    return int(_U64.unpack(b)[0])


def encode_tx_location(height: int, index: int) -> bytes:
    return _TXLOC.pack(height, index)


def decode_tx_location(b: bytes) -> tuple[int, int]:
    if len(b) != _TXLOC.size:
        raise ValueError(f"tx location record has {len(b)} bytes, expected {_TXLOC.size}")
    h, i = _TXLOC.unpack(b)
    return int(h), int(i)


def encode_head(height: int, block_hash: bytes) -> bytes:
    return _HEAD.pack(height, block_hash)


def decode_head(b: bytes) -> tuple[int, bytes]:
    if len(b) != _HEAD.size:
        raise ValueError(f"head record has {len(b)} bytes, expected {_HEAD.size}")
    h, bh = _HEAD.unpack(b)
    return int(h), bytes(bh)


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockSummary:
    """What the store recorded about one committed block, for its own consistency checks.

    Invariants: `acc_start` is the accumulator size before the block, and the block appended exactly
    `tx_count` leaves (one per transaction, in block order); `content_digest` is
    `compute_content_digest` of the header, block and receipts as written.
    """

    tx_count: int
    acc_start: int
    content_digest: bytes

    _LAYOUT = struct.Struct(">BIQ32s")
    _RECORD_VERSION = 1

    def encode(self) -> bytes:
        return self._LAYOUT.pack(
            self._RECORD_VERSION, self.tx_count, self.acc_start, self.content_digest
        )

    @classmethod
    def decode(cls, b: bytes) -> BlockSummary:
        if len(b) != cls._LAYOUT.size:
            raise ValueError(f"summary record has {len(b)} bytes, expected {cls._LAYOUT.size}")
        ver, n, start, digest = cls._LAYOUT.unpack(b)
        if ver != cls._RECORD_VERSION:
            raise ValueError(f"summary record version {ver}, expected {cls._RECORD_VERSION}")
        return cls(tx_count=int(n), acc_start=int(start), content_digest=bytes(digest))


def k_block(h: int) -> bytes:
    return P_BLOCK + _U64.pack(h)


def k_header(h: int) -> bytes:
    return P_HEADER + _U64.pack(h)


def k_block_hash(h: int) -> bytes:
    return P_BLOCK_HASH + _U64.pack(h)


def k_hash_index(block_hash: bytes) -> bytes:
    return P_HASH_INDEX + block_hash


def k_summary(h: int) -> bytes:
    return P_SUMMARY + _U64.pack(h)


def k_tx_ids(h: int) -> bytes:
    return P_TX_IDS + _U64.pack(h)


def k_tx(tx_id: bytes) -> bytes:
    return P_TX + tx_id


def k_receipt(tx_id: bytes) -> bytes:
    return P_RECEIPT + tx_id


@functools.lru_cache(maxsize=1024)
def k_state_prefix(namespace: str) -> bytes:
    """The key prefix of one contract namespace; raises ValueError if the name is unusable."""
    return P_STATE + _ns_field(namespace)


def k_state(namespace: str, key: bytes) -> bytes:
    return k_state_prefix(namespace) + key


def k_acc_leaf(index: int) -> bytes:
    return P_ACC_LEAF + _U64.pack(index)


def k_acc_node(level: int, index: int) -> bytes:
    return P_ACC_NODE + bytes((level,)) + _U64.pack(index)


def k_proof(h: int) -> bytes:
    return P_PROOF + _U64.pack(h)


def k_epoch(epoch: int) -> bytes:
    return P_EPOCH + _U64.pack(epoch)


def k_writes(h: int) -> bytes:
    return P_WRITES + _U64.pack(h)


def k_index(key: bytes) -> bytes:
    return P_INDEX + key


def k_user_meta(name: str) -> bytes:
    return P_USER_META + name.encode("utf-8")


def k_sealed_meta(name: str) -> bytes:
    return P_SEALED_META + name.encode("utf-8")


class SealedRecordDamaged(ValueError):
    """A sealed record's bytes differ from those sealed (or it is not a sealed record at all)."""


_SEAL_MAGIC = b"\x00gmseal"
_SEAL_VERSION = 1
_SEAL_DOMAIN = HASH_PREFIXES["sealed-record"]  # registered in ledger.wire


def seal_record(payload: bytes) -> bytes:
    """`magic || version (1) || SM3(domain || payload) || payload`: a record that carries its own
    checksum, so one flipped bit anywhere in it is found on read (GB/T 32905 SM3; LevelDB's CRCs
    cover its blocks only when a read asks for it, and never what was written wrongly)."""
    digest = sm3_hash(_SEAL_DOMAIN + payload)
    return _SEAL_MAGIC + bytes((_SEAL_VERSION,)) + digest + payload


def is_sealed_intact(raw: bytes) -> bool:
    """Whether `raw` is a sealed record whose bytes are as they were sealed."""
    try:
        unseal_record(raw)
    except SealedRecordDamaged:
        return False
    return True


def unseal_record(raw: bytes) -> bytes:
    """The payload of a sealed record; raises SealedRecordDamaged if any byte of it changed."""
    head = len(_SEAL_MAGIC) + 1
    if len(raw) < head + HASH_SIZE or not raw.startswith(_SEAL_MAGIC):
        raise SealedRecordDamaged("not a sealed record (its header is damaged or missing)")
    if raw[head - 1] != _SEAL_VERSION:
        raise SealedRecordDamaged(f"sealed record version {raw[head - 1]} is not {_SEAL_VERSION}")
    digest, payload = raw[head : head + HASH_SIZE], raw[head + HASH_SIZE :]
    if sm3_hash(_SEAL_DOMAIN + payload) != digest:
        raise SealedRecordDamaged("checksum mismatch: the record changed after it was written")
    return payload


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with `prefix` (None: no bound)."""
    b = bytearray(prefix)
    while b:
        if b[-1] != 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return None


def compute_content_digest(
    header_bytes: bytes, block_bytes: bytes, receipts: Sequence[bytes]
) -> bytes:
    """SM3 over the length-prefixed header, block and receipts, in that order (GB/T 32905).

    Recorded in each block's summary so `check_consistency(deep=True)` can detect records that
    were altered or swapped after the commit (LevelDB's own CRCs cover only its blocks/log).
    """
    parts = [len(header_bytes).to_bytes(4, "big"), header_bytes]
    parts += [len(block_bytes).to_bytes(4, "big"), block_bytes]
    parts.append(len(receipts).to_bytes(4, "big"))
    for r in receipts:
        parts += [len(r).to_bytes(4, "big"), r]
    return sm3_hash(b"".join(parts))


_WS_VERSION = 1
_U32 = struct.Struct(">I")


def encode_write_set(writes: Mapping[tuple[str, bytes], bytes | None]) -> bytes:
    """One block's state writes: `version (1) || count (u32)` then per write, ascending by
    (UTF-8 namespace, key): `len(ns) (u8) || ns || len(key) (u32) || key || flag (u8)` and, when
    flag is 1 (a value; 0 is a delete), `len(value) (u32) || value`. One encoding per set.

    The writes are sorted by their (str, bytes) keys as they are: UTF-8 keeps the order of code
    points, so a str namespace sorts where its UTF-8 bytes do (a namespace that is not valid
    UTF-8 cannot be encoded and raises); each namespace is encoded once (`_ns_field`)."""
    out = [bytes((_WS_VERSION,)), _U32.pack(len(writes))]
    add = out.append
    pack = _U32.pack
    for sk in sorted(writes):
        ns, key = sk
        value = writes[sk]
        add(_ns_field(ns))
        add(pack(len(key)))
        add(key)
        if value is None:
            add(b"\x00")
        else:
            add(b"\x01")
            add(pack(len(value)))
            add(value)
    return b"".join(out)


@functools.lru_cache(maxsize=1024)
def _ns_field(namespace: str) -> bytes:
    """`len(ns) (u8) || ns`: a namespace in a state key and in a write set; ValueError if it is
    unusable."""
    ns = namespace.encode("utf-8")
    if not 0 < len(ns) <= 255:
        raise ValueError(f"state namespace must be 1..255 UTF-8 bytes, got {len(ns)}")
    return bytes((len(ns),)) + ns


def decode_write_set(b: bytes) -> dict[tuple[str, bytes], bytes | None]:
    """Inverse of `encode_write_set`; raises ValueError on anything else (wrong version, order,
    a duplicate, a short or long record, a namespace that is not UTF-8)."""
    mv = memoryview(b)

    def take(n: int, pos: int) -> tuple[bytes, int]:
        if n < 0 or pos + n > len(mv):
            raise ValueError("write set record is truncated")
        return bytes(mv[pos : pos + n]), pos + n

    head, pos = take(5, 0)
    if head[0] != _WS_VERSION:
        raise ValueError(f"write set record version {head[0]}, expected {_WS_VERSION}")
    out: dict[tuple[str, bytes], bytes | None] = {}
    last: tuple[bytes, bytes] | None = None
    for _ in range(_U32.unpack(head[1:])[0]):
        n, pos = take(1, pos)
        ns, pos = take(n[0], pos)
        n, pos = take(4, pos)
        key, pos = take(_U32.unpack(n)[0], pos)
        flag, pos = take(1, pos)
        value: bytes | None = None
        if flag == b"\x01":
            n, pos = take(4, pos)
            value, pos = take(_U32.unpack(n)[0], pos)
        elif flag != b"\x00":
            raise ValueError(f"write set flag {flag!r} is neither 0 nor 1")
        if not ns or (last is not None and (ns, key) <= last):
            raise ValueError("write set entries are not in strictly ascending order")
        last = (ns, key)
        out[(ns.decode("utf-8"), key)] = value  # UnicodeDecodeError is a ValueError
    if pos != len(mv):
        raise ValueError(f"write set record has {len(mv) - pos} trailing bytes")
    return out

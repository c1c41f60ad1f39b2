"""Which state keys the store may hold: a filter that lets a read of an absent key skip LevelDB.

Rules this module keeps:
1. No false negatives: every key `add`ed answers True from `may_contain` from the moment `add`
   returns, forever (keys are never removed; a deleted key only costs a store read). A key the
   filter says is absent is absent from the store (ledger/store.py rule 10 keeps the filter a
   superset of the stored state keys). False positives (about 1 %) only cost a store read.
2. One writer (the store's write lock), any number of readers: `add` sets bits and appends
   filters; a reader that sees part of an `add` may answer False for that key, which is right,
   because the store adds a batch's keys before it writes the batch.
3. It grows as a scalable Bloom filter (Almeida et al., "Scalable Bloom Filters", 2007): when
   the newest filter holds its capacity, a filter twice as large is appended; `may_contain`
   asks each. Memory: about 10 bits per key.
4. In-memory only and per process: built from a scan of the store's state keys when the store
   opens (`Store.open`), so positions may use any hash; blake2b keeps them uniform.

Why: a LevelDB read releases the GIL, and a thread that gave the GIL up may have to wait for
it; block execution reads mostly keys that do not exist yet (a new record, a new flow). A filter
lookup is pure Python and keeps the GIL. Measured (docs/benchmarks.md, session 6): a replica's
LevelDB reads per executed block fall from two per evidence submission to none; on an
overloaded machine the consensus thread's wait was for a CPU, not the GIL, and no wall-time
gain showed there — the quiet-machine pairs decide whether this stays.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from hashlib import blake2b

__all__ = ["KeyFilter"]

_BITS_PER_KEY = 10
_PROBES = 4  # with 10 bits per key: about 1.2 % false positives


class _Bloom:
    __slots__ = ("_bits", "_m", "capacity", "count")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.count = 0
        self._m = capacity * _BITS_PER_KEY
        self._bits = bytearray((self._m + 7) // 8)

    def add(self, d: tuple[int, ...]) -> None:
        bits, m = self._bits, self._m
        for h in d:
            p = h % m
            bits[p >> 3] |= 1 << (p & 7)
        self.count += 1

    def may_contain(self, d: tuple[int, ...]) -> bool:
        bits, m = self._bits, self._m
        for h in d:
            p = h % m
            if not bits[p >> 3] & (1 << (p & 7)):
                return False
        return True


_UNPACK = struct.Struct(f"<{_PROBES}I").unpack


def _digest(key: bytes) -> tuple[int, ...]:
    return _UNPACK(blake2b(key, digest_size=4 * _PROBES).digest())


class KeyFilter:
    """A superset of a set of byte keys; see the module rules."""

    def __init__(self, keys: Iterable[bytes] = (), *, initial_capacity: int = 1 << 16) -> None:
        self._filters: list[_Bloom] = [_Bloom(max(1024, initial_capacity))]
        for key in keys:
            self.add(key)

    def add(self, key: bytes) -> None:
        last = self._filters[-1]
        if last.count >= last.capacity:  # rule 3
            last = _Bloom(last.capacity * 2)
            self._filters.append(last)
        last.add(_digest(key))

    def may_contain(self, key: bytes) -> bool:
        d = _digest(key)
        return any(f.may_contain(d) for f in self._filters)

    def __len__(self) -> int:
        """Keys added (with repeats)."""
        return sum(f.count for f in self._filters)

    @property
    def size_bytes(self) -> int:
        return sum(len(f._bits) for f in self._filters)

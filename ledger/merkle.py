"""Merkle trees with SM3: per-block roots, the global accumulator, inclusion and consistency proofs.

Rules this module keeps (docs/protocol.md, "Merkle trees" and "Accumulator"):
1. Tree hashing is RFC 6962 §2.1 / RFC 9162 §2.1.1 with SM3 (GB/T 32905) as HASH:
   MTH({}) = SM3(b""), a leaf is SM3(0x00 || entry), an interior node is SM3(0x01 || left || right),
   and a list of n > 1 leaves splits at k, the largest power of two smaller than n.
2. A block's tx_root is MTH over its transaction ids (each id is one 32-byte entry); its
   receipt_root is MTH over its encoded receipts. The global accumulator is MTH over the leaf
   hashes `leaf_hash(tx_id)` of every transaction in commit order.
3. Proofs are RFC 9162 §2.1.3 (inclusion) and §2.1.4 (consistency), generated and verified by the
   RFC's algorithms. A consistency proof from size 0 is empty and valid against any new root; one
   between equal sizes is empty and valid iff the roots are equal.
4. The accumulator is never held in memory as a leaf list. A `Frontier` keeps the roots of the
   perfect subtrees ("peaks", RFC 9162 §2.1.2's compact range of [0, size)); a store keeps every
   perfect subtree node `(level, index)` = MTH of leaves [index * 2**level, (index + 1) * 2**level)
   (level 0 = the leaf hash). Proofs for a prefix of any size are computed from those nodes; a
   right-edge partial subtree is hashed from the perfect ones it decomposes into.
5. Verification never raises on hostile input (wrong lengths, sizes, indices): it returns False.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gmchain.crypto_sm import sm3_hash
from gmchain.ledger.codec import DecodeError, decode, encode
from gmchain.ledger.types import DIGEST_SIZE, Digest

__all__ = [
    "EMPTY_ROOT",
    "Frontier",
    "NodeGetter",
    "acc_consistency_proof",
    "acc_inclusion_proof",
    "acc_root",
    "compute_root",
    "compute_root_from_leaf_hashes",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_and_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]

#: get_node(level, index) -> the perfect-subtree hash, or None if the store does not hold it.
NodeGetter = Callable[[int, int], bytes | None]

EMPTY_ROOT = Digest(sm3_hash(b""))

# RangeHash(start, end) -> MTH(D[start:end]) for a range that occurs in the RFC 6962 recursion.
_RangeHash = Callable[[int, int], bytes]


def leaf_hash(entry: bytes) -> Digest:
    """RFC 6962 §2.1 leaf hash: SM3(0x00 || entry)."""
    return Digest(sm3_hash(b"\x00" + entry))


def node_hash(left: bytes, right: bytes) -> Digest:
    """RFC 6962 §2.1 interior node hash: SM3(0x01 || left || right)."""
    return Digest(sm3_hash(b"\x01" + left + right))


def _split(n: int) -> int:
    """k of RFC 6962 §2.1: the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(
    leaf_hashes: Sequence[bytes],
    start: int,
    end: int,
    memo: dict[tuple[int, int], bytes] | None = None,
) -> bytes:
    """MTH(D[start:end]); with `memo`, each interior node is hashed once across calls."""
    n = end - start
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[start]
    if memo is not None and (got := memo.get((start, end))) is not None:
        return got
    k = _split(n)
    h = node_hash(
        _mth(leaf_hashes, start, start + k, memo), _mth(leaf_hashes, start + k, end, memo)
    )
    if memo is not None:
        memo[(start, end)] = h
    return h


def compute_root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> Digest:
    """MTH over leaves whose hashes are given (RFC 6962 §2.1)."""
    return Digest(_mth(leaf_hashes, 0, len(leaf_hashes)))


def compute_root(entries: Sequence[bytes]) -> Digest:
    """MTH over entries: tx_root (entries = tx ids), receipt_root (entries = encoded receipts)."""
    return compute_root_from_leaf_hashes([leaf_hash(e) for e in entries])


# --- proof generation, over any source of range hashes ----------------------------------------


def _path(m: int, start: int, end: int, mth: _RangeHash) -> list[Digest]:
    """RFC 9162 §2.1.3.1 PATH(m, D[start:end]), m relative to start."""
    out: list[Digest] = []
    # Iterative form of the recursion; the proof lists siblings bottom-up, so collect top-down
    # and reverse at the end.
    while end - start > 1:
        k = _split(end - start)
        if m < k:
            out.append(Digest(mth(start + k, end)))
            end = start + k
        else:
            out.append(Digest(mth(start, start + k)))
            start, m = start + k, m - k
    out.reverse()
    return out


def _subproof(m: int, start: int, end: int, whole: bool, mth: _RangeHash) -> list[Digest]:
    """RFC 9162 §2.1.4.1 SUBPROOF(m, D[start:end], b), m relative to start."""
    out: list[Digest] = []
    while True:
        n = end - start
        if m == n:
            if not whole:
                out.append(Digest(mth(start, end)))
            break
        k = _split(n)
        if m <= k:
            out.append(Digest(mth(start + k, end)))
            end = start + k
        else:
            out.append(Digest(mth(start, start + k)))
            start, m, whole = start + k, m - k, False
    out.reverse()
    return out


def _check_index(index: int, size: int) -> None:
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} out of range for a tree of {size} leaves")


def _check_sizes(old_size: int, new_size: int) -> None:
    if not 0 <= old_size <= new_size:
        raise ValueError(f"need 0 <= old_size <= new_size, got {old_size}, {new_size}")


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[Digest]:
    """RFC 9162 §2.1.3.1 inclusion proof of leaf `index` in the tree over `leaf_hashes`."""
    _check_index(index, len(leaf_hashes))
    return _path(index, 0, len(leaf_hashes), lambda a, b: _mth(leaf_hashes, a, b))


def root_and_inclusion_proof(
    leaf_hashes: Sequence[bytes], index: int
) -> tuple[Digest, list[Digest]]:
    """(MTH, inclusion proof of leaf `index`) in one pass: every interior node is hashed once
    (the root's recursion memoised; the path's siblings are subtrees of it), where computing
    them separately hashes the tree about twice."""
    _check_index(index, len(leaf_hashes))
    memo: dict[tuple[int, int], bytes] = {}
    root = Digest(_mth(leaf_hashes, 0, len(leaf_hashes), memo))
    return root, _path(index, 0, len(leaf_hashes), lambda a, b: _mth(leaf_hashes, a, b, memo))


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[Digest]:
    """RFC 9162 §2.1.4.1 consistency proof from the first `old_size` leaves to all of them."""
    n = len(leaf_hashes)
    _check_sizes(old_size, n)
    if old_size in (0, n):
        return []
    return _subproof(old_size, 0, n, True, lambda a, b: _mth(leaf_hashes, a, b))


# --- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) ------------------------------------------


def _is_digest(x: object) -> bool:
    return isinstance(x, bytes) and len(x) == DIGEST_SIZE


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does `proof` show leaf `index` of a `size`-leaf tree under `root`?"""
    if not (_is_digest(leaf_hash) and _is_digest(root) and all(_is_digest(p) for p in proof)):
        return False
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: is the `old_size`-leaf tree under `old_root` a prefix of the other?"""
    if not (_is_digest(old_root) and _is_digest(new_root) and all(_is_digest(p) for p in proof)):
        return False
    if not 0 <= old_size <= new_size:
        return False
    if old_size == 0:
        # Every tree extends the empty one; its root is fixed by rule 1.
        return old_root == EMPTY_ROOT and not proof
    if old_size == new_size:
        return old_root == new_root and not proof
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # an exact power of two: the old root is a node
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0


# --- the global accumulator -------------------------------------------------------------------


def _peak_levels(size: int) -> list[int]:
    """Levels of the perfect subtrees that make up [0, size), largest first."""
    return [lvl for lvl in range(size.bit_length() - 1, -1, -1) if size >> lvl & 1]


@dataclass(frozen=True, slots=True, kw_only=True)
class Frontier:
    """The compact range [0, size) of the accumulator: one perfect-subtree root per set bit.

    `peaks[i]` is the root of the i-th perfect subtree from the left (largest first); its level is
    the i-th set bit of `size` from the top. Encoded as the canonical msgpack array
    `[size, [peak, ...]]` (a storage value, not a signed message, so it carries no type tag).
    """

    size: int
    peaks: tuple[Digest, ...]

    def __post_init__(self) -> None:
        if not (isinstance(self.size, int) and not isinstance(self.size, bool)):
            raise ValueError("size: expected an integer")
        if not 0 <= self.size < 2**64:
            raise ValueError("size: out of range")
        if not isinstance(self.peaks, tuple) or len(self.peaks) != self.size.bit_count():
            raise ValueError("peaks: need one per set bit of size")
        if not all(_is_digest(p) for p in self.peaks):
            raise ValueError("peaks: expected 32-byte digests")

    @classmethod
    def empty(cls) -> Frontier:
        return cls(size=0, peaks=())

    def root(self) -> Digest:
        """MTH over [0, size): the peaks folded right to left (RFC 6962's split is the peaks)."""
        if not self.peaks:
            return EMPTY_ROOT
        r = self.peaks[-1]
        for p in reversed(self.peaks[:-1]):
            r = node_hash(p, r)
        return Digest(r)

    def append(
        self, leaf_hashes: Sequence[bytes]
    ) -> tuple[Frontier, dict[tuple[int, int], Digest]]:
        """Append leaves; return the new frontier and every newly completed perfect-subtree node.

        The map includes the new leaves themselves at level 0.
        """
        stack: list[tuple[int, Digest]] = list(
            zip(_peak_levels(self.size), self.peaks, strict=True)
        )
        new: dict[tuple[int, int], Digest] = {}
        size = self.size
        for h in leaf_hashes:
            if not _is_digest(h):
                raise ValueError("leaf hashes must be 32 bytes")
            new[(0, size)] = Digest(h)
            level, node = 0, Digest(h)
            size += 1
            # Binary-counter carry: merge equal-level peaks; the merged node ends at `size`.
            while stack and stack[-1][0] == level:
                _, left = stack.pop()
                level += 1
                node = node_hash(left, node)
                new[(level, (size >> level) - 1)] = node
            stack.append((level, node))
        return Frontier(size=size, peaks=tuple(p for _, p in stack)), new

    def encode(self) -> bytes:
        return encode([self.size, list(self.peaks)])

    @classmethod
    def decode(cls, data: bytes) -> Frontier:
        value = decode(data)
        if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], list)):
            raise DecodeError("Frontier: expected [size, [peak, ...]]")
        try:
            return cls(size=value[0], peaks=tuple(Digest(p) for p in value[1]))
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"Frontier: {exc}") from exc


def _node_range_hash(get_node: NodeGetter) -> _RangeHash:
    """MTH(D[start:end]) from stored perfect nodes, for ranges of the RFC 6962 recursion."""

    def node(level: int, index: int) -> bytes:
        h = get_node(level, index)
        if h is None:
            raise KeyError(f"accumulator node ({level}, {index}) is not stored")
        return h

    def mth(start: int, end: int) -> bytes:
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        # In the recursion every range starts at a multiple of the largest power of two not
        # above its size, so it is a run of perfect subtrees of decreasing size: fold them.
        pieces: list[bytes] = []
        pos = start
        for level in _peak_levels(n):
            assert pos % (1 << level) == 0, "range not aligned; not from the RFC recursion"
            pieces.append(node(level, pos >> level))
            pos += 1 << level
        r = pieces[-1]
        for p in reversed(pieces[:-1]):
            r = node_hash(p, r)
        return r

    return mth


def acc_root(get_node: NodeGetter, size: int) -> Digest:
    """Accumulator root over the first `size` leaves, from stored perfect nodes."""
    if size < 0:
        raise ValueError("size must be >= 0")
    return Digest(_node_range_hash(get_node)(0, size))


def acc_inclusion_proof(get_node: NodeGetter, index: int, size: int) -> list[Digest]:
    """RFC 9162 inclusion proof of leaf `index` in the first `size` leaves of the accumulator."""
    _check_index(index, size)
    return _path(index, 0, size, _node_range_hash(get_node))


def acc_consistency_proof(get_node: NodeGetter, old_size: int, new_size: int) -> list[Digest]:
    """RFC 9162 consistency proof between two sizes of the accumulator."""
    _check_sizes(old_size, new_size)
    if old_size in (0, new_size):
        return []
    return _subproof(old_size, 0, new_size, True, _node_range_hash(get_node))

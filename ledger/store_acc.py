"""The global transaction accumulator as the store keeps it: leaves plus perfect-subtree nodes.

Rules this module keeps:
- Tree hashing is RFC 6962 §2.1 / RFC 9162 §2.1.1 with SM3 (GB/T 32905): a leaf hash is given by
  the caller (already `SM3(0x00 || data)`); an interior node is `SM3(0x01 || left || right)`; the
  root of the empty tree is `SM3(b"")`.
- Level `l`, index `i` names the perfect subtree over leaves `[i * 2**l, (i + 1) * 2**l)`. Level 0
  is the leaf itself. The store keeps every *complete* perfect subtree (level >= 1) as soon as its
  last leaf is committed, so the root of any prefix, an inclusion path and a consistency proof each
  need O(log n) node reads (O(log^2 n) at worst for ranges that are not perfect) and a handful of
  hashes for the right spine — never a pass over the leaves.
- The store computes the new nodes itself when a block appends leaves (`compute_new_nodes`);
  a caller-supplied `acc_nodes` map is only checked against them (a disagreement is a bug in one
  of the two Merkle implementations, and must not reach the disk).
- Pure functions over a `get_node(level, index)` callback; no IO of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from gmchain.crypto_sm import sm3_hash

__all__ = [
    "EMPTY_ROOT",
    "NodeGetter",
    "check_supplied_nodes",
    "compute_consistency_proof",
    "compute_inclusion_path",
    "compute_new_nodes",
    "compute_range_hash",
    "compute_root",
    "hash_children",
]

#: get_node(level, index) -> 32-byte hash; must raise KeyError if the node is absent.
NodeGetter = Callable[[int, int], bytes]

EMPTY_ROOT = sm3_hash(b"")


def hash_children(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash with SM3."""
    return sm3_hash(b"\x01" + left + right)


def compute_new_nodes(
    n0: int, new_leaves: Sequence[bytes], get_node: NodeGetter
) -> dict[tuple[int, int], bytes]:
    """Nodes (level >= 1) that become complete when `new_leaves` are appended to `n0` leaves.

    Existing nodes needed as left siblings are read through `get_node`; at most one per level.
    """
    n1 = n0 + len(new_leaves)
    out: dict[tuple[int, int], bytes] = {}

    def node(level: int, index: int) -> bytes:
        if level == 0 and index >= n0:
            return new_leaves[index - n0]
        got = out.get((level, index))
        return got if got is not None else get_node(level, index)

    level = 1
    while True:
        lo, hi = n0 >> level, n1 >> level
        if lo == hi:
            # No subtree of this size completes, so none of any larger size does either.
            return out
        for i in range(lo, hi):
            out[(level, i)] = hash_children(node(level - 1, 2 * i), node(level - 1, 2 * i + 1))
        level += 1


def _largest_pow2_below(n: int) -> int:
    """The k of RFC 6962 §2.1: the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def compute_range_hash(start: int, end: int, get_node: NodeGetter) -> bytes:
    """MTH(D[start:end]) for a range that occurs in the RFC 6962 recursion (start aligned)."""
    n = end - start
    if n <= 0:
        raise ValueError(f"empty or negative range [{start}, {end})")
    if n & (n - 1) == 0 and start % n == 0:
        return get_node(n.bit_length() - 1, start // n)
    k = _largest_pow2_below(n)
    return hash_children(
        compute_range_hash(start, start + k, get_node),
        compute_range_hash(start + k, end, get_node),
    )


def compute_root(size: int, get_node: NodeGetter) -> bytes:
    """Root of the accumulator over its first `size` leaves (RFC 6962 MTH)."""
    if size == 0:
        return EMPTY_ROOT
    return compute_range_hash(0, size, get_node)


def compute_inclusion_path(index: int, size: int, get_node: NodeGetter) -> list[bytes]:
    """RFC 6962 §2.1.1 audit path PATH(index, D[0:size]), ordered from the leaf upward."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} not in a tree of size {size}")
    path: list[bytes] = []
    start, end, m = 0, size, index
    while end - start > 1:
        k = _largest_pow2_below(end - start)
        if m < k:
            path.append(compute_range_hash(start + k, end, get_node))
            end = start + k
        else:
            path.append(compute_range_hash(start, start + k, get_node))
            start, m = start + k, m - k
    path.reverse()
    return path


def compute_consistency_proof(old_size: int, size: int, get_node: NodeGetter) -> list[bytes]:
    """RFC 6962 §2.1.2 consistency proof PROOF(old_size, D[0:size])."""
    if not 0 <= old_size <= size:
        raise ValueError(f"no consistency proof from size {old_size} to {size}")
    if old_size in (0, size):
        return []
    proof: list[bytes] = []
    start, end, m, whole = 0, size, old_size, True
    while m != end - start:
        k = _largest_pow2_below(end - start)
        if m <= k:
            proof.append(compute_range_hash(start + k, end, get_node))
            end = start + k
        else:
            proof.append(compute_range_hash(start, start + k, get_node))
            start, m, whole = start + k, m - k, False
    if not whole:
        proof.append(compute_range_hash(start, end, get_node))
    proof.reverse()
    return proof


def check_supplied_nodes(
    supplied: Mapping[tuple[int, int], bytes],
    computed: Mapping[tuple[int, int], bytes],
    n0: int,
    new_leaves: Sequence[bytes],
) -> str | None:
    """Why a caller's `acc_nodes` disagrees with ours, or None if every supplied node matches.

    Level-0 entries are accepted when they repeat this block's own leaves (`new_leaves`, which
    start at index `n0`).
    """
    for (level, index), value in supplied.items():
        if level == 0 and n0 <= index < n0 + len(new_leaves):
            mine: bytes | None = new_leaves[index - n0]
        else:
            mine = computed.get((level, index))
        if mine is None:
            return f"acc node ({level}, {index}) is not completed by this block"
        if value != mine:
            return f"acc node ({level}, {index}) differs from SM3(0x01||left||right)"
    return None

"""Tests of ledger.merkle against a brute-force RFC 6962 tree and the RFC's reference shapes.

The brute-force tree below is a direct transcription of RFC 6962 §2.1 / RFC 9162 §2.1.3.1 and
§2.1.4.1 (recursive MTH, PATH, SUBPROOF over the leaf list); it shares no code with the module.
The RFC 6962 reference vectors (certificate-transparency's merkle_tree_test / transparency-dev's
reference_test, SHA-256) check the algorithms themselves by swapping the hash for SHA-256; the
same shapes are then checked with SM3.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gmchain.crypto_sm import sm3_hash
from gmchain.ledger import merkle as merkle_mod
from gmchain.ledger.codec import DecodeError
from gmchain.ledger.merkle import (
    EMPTY_ROOT,
    Frontier,
    acc_consistency_proof,
    acc_inclusion_proof,
    acc_root,
    compute_root,
    compute_root_from_leaf_hashes,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_and_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

# --- brute force, straight from the RFC ------------------------------------------------------

Hash = Callable[[bytes], bytes]


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def bf_mth(h: Hash, leaves: list[bytes]) -> bytes:
    """MTH over leaf hashes."""
    if not leaves:
        return h(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = _k(len(leaves))
    return h(b"\x01" + bf_mth(h, leaves[:k]) + bf_mth(h, leaves[k:]))


def bf_path(h: Hash, m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*bf_path(h, m, leaves[:k]), bf_mth(h, leaves[k:])]
    return [*bf_path(h, m - k, leaves[k:]), bf_mth(h, leaves[:k])]


def bf_subproof(h: Hash, m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [bf_mth(h, leaves)]
    k = _k(n)
    if m <= k:
        return [*bf_subproof(h, m, leaves[:k], b), bf_mth(h, leaves[k:])]
    return [*bf_subproof(h, m - k, leaves[k:], False), bf_mth(h, leaves[:k])]


def bf_perfect_nodes(h: Hash, leaves: list[bytes]) -> dict[tuple[int, int], bytes]:
    """Every perfect subtree (level, index) of [0, len(leaves))."""
    out: dict[tuple[int, int], bytes] = {}
    level = 0
    while (1 << level) <= len(leaves):
        w = 1 << level
        for i in range(len(leaves) // w):
            out[(level, i)] = bf_mth(h, leaves[i * w : (i + 1) * w])
        level += 1
    return out


def _leaves(n: int, seed: int = 0) -> list[bytes]:
    return [leaf_hash(b"entry-%d-%d" % (seed, i)) for i in range(n)]


def _flip(b: bytes, i: int = 0) -> bytes:
    return b[:i] + bytes([b[i] ^ 1]) + b[i + 1 :]


# --- hashing ----------------------------------------------------------------------------------


def test_hash_prefixes() -> None:
    assert leaf_hash(b"abc") == sm3_hash(b"\x00abc")
    assert node_hash(b"l" * 32, b"r" * 32) == sm3_hash(b"\x01" + b"l" * 32 + b"r" * 32)
    assert sm3_hash(b"") == EMPTY_ROOT
    assert compute_root([]) == EMPTY_ROOT
    assert compute_root([b"x"]) == leaf_hash(b"x")


@pytest.mark.parametrize("n", range(0, 71))
def test_root_matches_brute_force(n: int) -> None:
    entries = [b"e%d" % i for i in range(n)]
    hashes = [leaf_hash(e) for e in entries]
    assert compute_root(entries) == bf_mth(sm3_hash, hashes)
    assert compute_root_from_leaf_hashes(hashes) == bf_mth(sm3_hash, hashes)


# --- RFC 6962 reference vectors (SHA-256) -----------------------------------------------------

RFC_ENTRIES = [
    bytes.fromhex(x)
    for x in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
RFC_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (1-based leaf, tree size, proof) and (old size, new size, proof), as in the RFC 6962 tests.
RFC_INCLUSION = [
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        2,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
RFC_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def test_rfc6962_vectors_with_sha256(monkeypatch: pytest.MonkeyPatch) -> None:
    """The algorithms are hash-agnostic: with SHA-256 they must reproduce the RFC's numbers."""
    monkeypatch.setattr(merkle_mod, "sm3_hash", _sha256)
    monkeypatch.setattr(merkle_mod, "EMPTY_ROOT", _sha256(b""))
    leaves = [merkle_mod.leaf_hash(e) for e in RFC_ENTRIES]
    for n in range(9):
        assert merkle_mod.compute_root(RFC_ENTRIES[:n]).hex() == RFC_ROOTS[n]
        f, _ = Frontier.empty().append(leaves[:n])
        assert f.root().hex() == RFC_ROOTS[n]
    for leaf, size, want in RFC_INCLUSION:
        proof = merkle_mod.inclusion_proof(leaves[:size], leaf - 1)
        assert [p.hex() for p in proof] == want
        root = bytes.fromhex(RFC_ROOTS[size])
        assert merkle_mod.verify_inclusion(leaves[leaf - 1], leaf - 1, size, proof, root)
    for old, new, want in RFC_CONSISTENCY:
        proof = merkle_mod.consistency_proof(leaves[:new], old)
        assert [p.hex() for p in proof] == want
        old_root, new_root = bytes.fromhex(RFC_ROOTS[old]), bytes.fromhex(RFC_ROOTS[new])
        assert merkle_mod.verify_consistency(old, new, old_root, new_root, proof)


def test_rfc6962_shapes_with_sm3() -> None:
    """Same entries, indices and sizes with SM3: proof lengths and pass/fail as in the RFC tests."""
    leaves = [leaf_hash(e) for e in RFC_ENTRIES]
    roots = [compute_root_from_leaf_hashes(leaves[:n]) for n in range(9)]
    for leaf, size, want in RFC_INCLUSION:
        proof = inclusion_proof(leaves[:size], leaf - 1)
        assert len(proof) == len(want)
        assert verify_inclusion(leaves[leaf - 1], leaf - 1, size, proof, roots[size])
        assert not verify_inclusion(leaves[leaf - 1], leaf - 1, size, proof, roots[0])
        assert not verify_inclusion(leaves[leaf - 1], leaf % size, size, proof, roots[size])
    # The RFC tests' "tree size 0" probe: nothing is included in an empty tree.
    assert not verify_inclusion(leaves[0], 0, 0, [], EMPTY_ROOT)
    for old, new, want in RFC_CONSISTENCY:
        proof = consistency_proof(leaves[:new], old)
        assert len(proof) == len(want)
        assert verify_consistency(old, new, roots[old], roots[new], proof)
        if proof:
            assert not verify_consistency(old, new, roots[old], roots[new], proof[:-1])
            assert not verify_consistency(old, new, _flip(roots[old]), roots[new], proof)


# --- proofs against brute force -----------------------------------------------------------------


@pytest.mark.parametrize("n", range(1, 71))
def test_inclusion_all_indices(n: int) -> None:
    leaves = _leaves(n, n)
    root = bf_mth(sm3_hash, leaves)
    for i in range(n):
        proof = inclusion_proof(leaves, i)
        assert proof == bf_path(sm3_hash, i, leaves)
        assert verify_inclusion(leaves[i], i, n, proof, root)
        assert root_and_inclusion_proof(leaves, i) == (root, proof)  # the one-pass form
    # Negative probes on a few indices: wrong leaf, index, size, root; a bit flipped in the proof.
    for i in {0, n // 2, n - 1}:
        proof = inclusion_proof(leaves, i)
        assert not verify_inclusion(_flip(leaves[i]), i, n, proof, root)
        assert not verify_inclusion(leaves[i], i, n, proof, _flip(root))
        assert not verify_inclusion(leaves[i], n, n, proof, root)
        assert not verify_inclusion(leaves[i], -1, n, proof, root)
        if n > 1:
            assert not verify_inclusion(leaves[i], (i + 1) % n, n, proof, root)
        for j in range(len(proof)):
            bad = [*proof[:j], _flip(proof[j], 31), *proof[j + 1 :]]
            assert not verify_inclusion(leaves[i], i, n, bad, root)
        assert not verify_inclusion(leaves[i], i, n, [*proof, leaves[0]], root)
        if proof:
            assert not verify_inclusion(leaves[i], i, n, proof[:-1], root)


@pytest.mark.parametrize("n", range(1, 41))
def test_consistency_all_pairs(n: int) -> None:
    leaves = _leaves(n, 1000 + n)
    roots = [bf_mth(sm3_hash, leaves[:m]) for m in range(n + 1)]
    for m in range(0, n + 1):
        proof = consistency_proof(leaves, m)
        want = [] if m in (0, n) else bf_subproof(sm3_hash, m, leaves, True)
        assert proof == want
        assert verify_consistency(m, n, roots[m], roots[n], proof)
        # From size 0 every new root is consistent (the empty tree is a prefix of every tree).
        assert verify_consistency(m, n, roots[m], _flip(roots[n]), proof) == (m == 0)
        if 0 < m < n:
            assert not verify_consistency(m, n, _flip(roots[m]), roots[n], proof)
            for j in range(len(proof)):
                bad = [*proof[:j], _flip(proof[j], 7), *proof[j + 1 :]]
                assert not verify_consistency(m, n, roots[m], roots[n], bad)
            assert not verify_consistency(m, n, roots[m], roots[n], proof[:-1])
            assert not verify_consistency(m, n, roots[m], roots[n], [*proof, roots[0]])


def test_size_is_not_bound_by_an_inclusion_proof() -> None:
    """RFC 9162 §2.1.3.2 binds leaf, index and root, not the size: the size must come from the
    same trusted place as the root (for us: one header's acc_size and acc_root)."""
    leaves = _leaves(6)
    root5 = compute_root_from_leaf_hashes(leaves[:5])
    proof = inclusion_proof(leaves[:5], 0)
    assert verify_inclusion(leaves[0], 0, 6, proof, root5)


def test_verify_rejects_garbage_without_raising() -> None:
    leaves = _leaves(5)
    root = compute_root_from_leaf_hashes(leaves)
    proof = inclusion_proof(leaves, 2)
    assert not verify_inclusion(leaves[2][:31], 2, 5, proof, root)
    assert not verify_inclusion(leaves[2], 2, 5, [*proof[:-1], b"short"], root)
    assert not verify_inclusion(leaves[2], 2, 5, proof, root + b"\x00")
    assert not verify_consistency(3, 2, root, root, [])
    assert not verify_consistency(-1, 2, root, root, [])
    assert not verify_consistency(0, 5, root, root, [])  # old root of size 0 must be EMPTY_ROOT
    assert verify_consistency(0, 5, EMPTY_ROOT, root, [])
    assert not verify_consistency(0, 5, EMPTY_ROOT, root, [root])
    assert not verify_consistency(5, 5, root, root, [root])
    assert not verify_consistency(2, 5, root, root, [])
    with pytest.raises(ValueError):
        inclusion_proof(leaves, 5)
    with pytest.raises(ValueError):
        consistency_proof(leaves, 6)


# --- the accumulator ----------------------------------------------------------------------------


def _getter(nodes: dict[tuple[int, int], bytes]) -> Callable[[int, int], bytes | None]:
    return lambda level, index: nodes.get((level, index))


def _grow(chunks: list[int], seed: int) -> tuple[list[bytes], dict[tuple[int, int], bytes]]:
    """Append chunks through Frontier, checking each step; return all leaves and all nodes."""
    leaves: list[bytes] = []
    nodes: dict[tuple[int, int], bytes] = {}
    f = Frontier.empty()
    for c in chunks:
        new_leaves = _leaves(c, seed + len(leaves))
        f2, new = f.append(new_leaves)
        leaves += new_leaves
        assert not set(new) & set(nodes), "a node was reported as new twice"
        nodes.update(new)
        assert f2.size == len(leaves)
        assert f2.root() == bf_mth(sm3_hash, leaves)
        assert Frontier.decode(f2.encode()) == f2
        f = f2
    assert nodes == bf_perfect_nodes(sm3_hash, leaves)
    return leaves, nodes


@pytest.mark.parametrize("n", range(0, 71))
def test_accumulator_small_sizes(n: int) -> None:
    rng = random.Random(n)
    chunks: list[int] = []
    while sum(chunks) < n:
        chunks.append(min(rng.randint(0, 9), n - sum(chunks)))
    leaves, nodes = _grow(chunks, n)
    assert acc_root(_getter(nodes), n) == compute_root_from_leaf_hashes(leaves)
    for size in range(0, n + 1):
        prefix = leaves[:size]
        assert acc_root(_getter(nodes), size) == compute_root_from_leaf_hashes(prefix)
        for i in range(size):
            assert acc_inclusion_proof(_getter(nodes), i, size) == inclusion_proof(prefix, i)
        if size not in (n, n // 2, n - 1):
            continue
        for old in range(0, size + 1):
            assert acc_consistency_proof(_getter(nodes), old, size) == consistency_proof(
                prefix, old
            )


@settings(max_examples=25, deadline=None)
@given(
    chunks=st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=8),
    data=st.data(),
)
def test_accumulator_random_larger(chunks: list[int], data: st.DataObject) -> None:
    leaves, nodes = _grow(chunks, 7)
    n = len(leaves)
    size = data.draw(st.integers(min_value=0, max_value=n))
    prefix = leaves[:size]
    root = compute_root_from_leaf_hashes(prefix)
    assert acc_root(_getter(nodes), size) == root
    if size:
        i = data.draw(st.integers(min_value=0, max_value=size - 1))
        proof = acc_inclusion_proof(_getter(nodes), i, size)
        assert proof == inclusion_proof(prefix, i)
        assert verify_inclusion(leaves[i], i, size, proof, root)
    old = data.draw(st.integers(min_value=0, max_value=size))
    proof = acc_consistency_proof(_getter(nodes), old, size)
    assert proof == consistency_proof(prefix, old)
    assert verify_consistency(old, size, compute_root_from_leaf_hashes(leaves[:old]), root, proof)


def test_accumulator_missing_node_is_an_error() -> None:
    _, nodes = _grow([5], 3)
    del nodes[(2, 0)]
    with pytest.raises(KeyError):
        acc_root(_getter(nodes), 5)


def test_frontier_validation_and_decoding() -> None:
    f, _ = Frontier.empty().append(_leaves(6))
    assert len(f.peaks) == 2
    with pytest.raises(ValueError):
        Frontier(size=6, peaks=f.peaks[:1])
    with pytest.raises(ValueError):
        Frontier(size=6, peaks=(f.peaks[0], b"x"))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        f.append([b"short"])
    with pytest.raises(DecodeError):
        Frontier.decode(f.encode() + b"\x00")
    with pytest.raises(DecodeError):
        Frontier.decode(Frontier(size=7, peaks=(*f.peaks, f.peaks[0])).encode()[:-1])
    from gmchain.ledger.codec import encode

    with pytest.raises(DecodeError):
        Frontier.decode(encode([4, list(f.peaks)]))
    with pytest.raises(DecodeError):
        Frontier.decode(encode([True, []]))
    with pytest.raises(DecodeError):
        Frontier.decode(encode([6]))

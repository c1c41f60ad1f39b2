"""ledger/store_filter.py and ledger/store.py rule 8: a state read the key filter rules out skips
LevelDB, and the answer is still exactly what the store holds.

Over real LevelDB: random blocks (writes, overwrites, deletions, several namespaces), a reopen
(the filter is rebuilt from the stored keys), a batch that fails half-way, a filter past its
first capacity; every state read is compared with a plain dict model and with a LevelDB
snapshot's own read (which does not use the filter).
"""

from __future__ import annotations

import os
import random
from dataclasses import replace
from pathlib import Path

import pytest

from gmchain.ledger.store import Store
from gmchain.ledger.store_filter import KeyFilter
from tests.crash_child import NAMESPACES, make_block
from tests.test_store import _ExplodesOnSecondPass


def test_key_filter_has_no_false_negatives_and_few_false_positives() -> None:
    rng = random.Random(7)
    keys = [rng.randbytes(rng.randrange(1, 60)) for _ in range(5000)]
    f = KeyFilter(keys[:100], initial_capacity=1024)  # it must grow past its first capacity
    for key in keys[100:]:
        f.add(key)
    assert len(f._filters) > 1 and len(f) == len(keys)
    assert all(f.may_contain(key) for key in keys)
    others = [b"other" + rng.randbytes(20) for _ in range(5000)]
    false_positives = sum(f.may_contain(key) for key in others)
    assert false_positives < 0.05 * len(others)  # ~1.2 % per filter, a few filters


def _check_reads(s: Store, model: dict[tuple[str, bytes], bytes | None]) -> int:
    """Every model key and as many never-written keys read the same from the store, from a
    snapshot (no filter) and from the model; returns how many absent keys the filter skipped."""
    skipped = 0
    with s.snapshot() as snap:
        probes = list(model) + [(ns, b"never%03d" % i) for ns in NAMESPACES for i in range(40)]
        for ns, key in probes:
            want = model.get((ns, key))
            assert s.get_state(ns, key) == want == snap.get_state(ns, key), (ns, key)
            if want is None and not s._state_keys.may_contain(_full(ns, key)):
                skipped += 1
    return skipped


def _full(ns: str, key: bytes) -> bytes:
    from gmchain.ledger.store_keys import k_state

    return k_state(ns, key)


def test_state_reads_equal_the_store_through_writes_deletes_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "db"
    model: dict[tuple[str, bytes], bytes | None] = {}
    with Store.open(path) as s:
        for h in range(25):
            w = make_block(3, h)
            s.commit_block(w)
            model.update(w.state_writes)
            if h % 6 == 0:
                assert _check_reads(s, model) > 0  # absent keys really were answered from memory
        assert any(v is None for v in model.values())  # deletions were exercised
        _check_reads(s, model)
    with Store.open(path) as s:  # the filter is rebuilt from the stored state keys
        stored = {key: v for key, v in model.items() if v is not None}
        assert stored and all(s._state_keys.may_contain(_full(ns, key)) for ns, key in stored)
        _check_reads(s, model)
        w = make_block(3, 25)
        s.commit_block(w)
        model.update(w.state_writes)
        _check_reads(s, model)


def test_a_batch_that_fails_while_built_leaves_reads_exact(tmp_path: Path) -> None:
    """The filter took the batch's first key before the batch failed: a false positive, so the
    read goes to LevelDB, which holds nothing."""
    with Store.open(tmp_path / "db") as s:
        s.commit_block(make_block(5, 0))
        model = dict(make_block(5, 0).state_writes)
        bomb = _ExplodesOnSecondPass()
        w = replace(make_block(5, 1), state_writes=bomb)
        with pytest.raises(RuntimeError, match="boom"):
            s.commit_block(w)
        assert s._state_keys.may_contain(_full("evidence", b"a"))
        assert s.get_state("evidence", b"a") is None
        _check_reads(s, model)


def test_an_absent_key_costs_no_leveldb_read(tmp_path: Path) -> None:
    """The point of rule 8: count LevelDB reads through the store's reader."""
    with Store.open(tmp_path / "db") as s:
        s.commit_block(make_block(9, 0))
        kv = s._kv

        class Counting:
            def __init__(self) -> None:
                self.n = 0

            def get(self, key: bytes, verify_checksums: bool = False) -> bytes | None:
                self.n += 1
                return kv._src.get(key, verify_checksums=verify_checksums)  # type: ignore[no-any-return]

        counting = Counting()
        kv._src = counting
        try:
            absent = [os.urandom(16) for _ in range(200)]
            assert all(s.get_state("evidence", key) is None for key in absent)
            assert counting.n < 20  # false positives only
        finally:
            kv._src = s._db

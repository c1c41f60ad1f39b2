"""A damaged or inconsistent ledger store is refused with `StoreCorrupt` and a clear message.

Rules under test (REFERENCES.md: Jepsen on Tendermint panicked on a truncated LevelDB log; other
chains restarted with store and state heights disagreeing): open never crashes with a bare plyvel
traceback, never serves a store with a hole or a half-written block, and a torn log tail (the
ordinary crash case) still opens with every surviving block intact.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import plyvel
import pytest

from gmchain.ledger import store_keys as k
from gmchain.ledger.store import Store, StoreCorrupt
from gmchain.ledger.store_check import RECENT_WINDOW
from tests.crash_child import CHAIN_ID, make_block

SEED = 9
N_BLOCKS = 40


def _make_db(path: Path, n: int = N_BLOCKS, *, compact: bool = False) -> None:
    with Store.open(path, chain_id=CHAIN_ID) as s:
        for h in range(n):
            s.commit_block(make_block(SEED, h))
    if compact:
        db = plyvel.DB(str(path))
        db.compact_range()
        db.close()


def _only(path: Path, suffix: str) -> Path:
    files = sorted(p for p in path.iterdir() if p.name.endswith(suffix) and p.stat().st_size)
    assert files, f"no non-empty {suffix} file in {os.listdir(path)}"
    return files[-1]


def _flip(p: Path, at: int) -> None:
    with p.open("r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0xFF]))


def _open_and_deep_check(path: Path, **kw: bool) -> Store:
    s = Store.open(path, chain_id=CHAIN_ID, **kw)
    try:
        s.check_consistency(deep=True)
    except BaseException:
        s.close()
        raise
    return s


def _assert_refused(path: Path, **kw: bool) -> str:
    with pytest.raises(StoreCorrupt) as info:
        _open_and_deep_check(path, **kw).close()
    msg = str(info.value)
    assert "gmchain db check" in msg and "restore from backup" in msg
    return msg


def test_garbage_current_file(tmp_path: Path) -> None:
    _make_db(tmp_path)
    (tmp_path / "CURRENT").write_bytes(b"\x00garbage")
    with pytest.raises(StoreCorrupt, match="gmchain db check"):
        Store.open(tmp_path, chain_id=CHAIN_ID)


def test_truncated_manifest(tmp_path: Path) -> None:
    _make_db(tmp_path, compact=True)
    manifest = next(p for p in tmp_path.iterdir() if p.name.startswith("MANIFEST-"))
    os.truncate(manifest, manifest.stat().st_size // 2)
    _assert_refused(tmp_path)


def test_missing_current_is_not_silently_recreated(tmp_path: Path) -> None:
    _make_db(tmp_path)
    (tmp_path / "CURRENT").unlink()
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(StoreCorrupt, match="no LevelDB CURRENT"):
        Store.open(tmp_path, chain_id=CHAIN_ID)
    assert sorted(os.listdir(tmp_path)) == before


def test_foreign_leveldb_is_refused(tmp_path: Path) -> None:
    db = plyvel.DB(str(tmp_path), create_if_missing=True)
    db.put(b"some", b"other app")
    db.close()
    with pytest.raises(StoreCorrupt, match="without a gmchain format version"):
        Store.open(tmp_path)


@pytest.mark.parametrize("paranoid", [True, False])
@pytest.mark.parametrize("where", [0.3, 0.6])
def test_damaged_log_record_is_refused(tmp_path: Path, paranoid: bool, where: float) -> None:
    # Without paranoid_checks LevelDB skips the damaged record: the hole it leaves mid-chain must
    # still be refused (by the store's recent-window check), never served.
    _make_db(tmp_path)
    log = _only(tmp_path, ".log")
    _flip(log, int(log.stat().st_size * where))
    with pytest.raises(StoreCorrupt, match="gmchain db check"):
        Store.open(tmp_path, chain_id=CHAIN_ID, paranoid_checks=paranoid)


@pytest.mark.parametrize("paranoid", [True, False])
@pytest.mark.parametrize("keep", [0.0, 0.05, 0.5, 0.97])
def test_torn_log_tail_opens_clean(tmp_path: Path, paranoid: bool, keep: float) -> None:
    _make_db(tmp_path)
    log = _only(tmp_path, ".log")
    os.truncate(log, int(log.stat().st_size * keep))
    with _open_and_deep_check(tmp_path, paranoid_checks=paranoid) as s:
        head = s.head_height()
        top = -1 if head is None else head
        assert top < N_BLOCKS - 1
        for h in range(top + 1):
            assert s.get_block_by_height(h) == make_block(SEED, h).block_bytes
        assert s.get_block_by_height(top + 1) is None


def test_damaged_table_file_is_refused(tmp_path: Path) -> None:
    _make_db(tmp_path, compact=True)
    table = _only(tmp_path, ".ldb")
    size = table.stat().st_size
    for at in range(size // 10, size // 2, max(1, size // 50)):
        _flip(table, at)
    _assert_refused(tmp_path)


def _tamper(path: Path, change: Callable[[plyvel.DB], None]) -> None:
    db = plyvel.DB(str(path))
    change(db)
    db.close()


def _head_tx(db: plyvel.DB) -> bytes:
    ids: bytes = db.get(k.k_tx_ids(N_BLOCKS - 1))
    return ids[:32]


TAMPERINGS: dict[str, Callable[[plyvel.DB], None]] = {
    "head receipt deleted": lambda db: db.delete(k.k_receipt(_head_tx(db))),
    "head tx location deleted": lambda db: db.delete(k.k_tx(_head_tx(db))),
    "head block deleted": lambda db: db.delete(k.k_block(N_BLOCKS - 1)),
    "hash index deleted": lambda db: db.delete(
        k.k_hash_index(make_block(SEED, N_BLOCKS - 1).block_hash)
    ),
    "block above head": lambda db: db.put(k.k_block(N_BLOCKS), b"stray"),
    "head meta behind": lambda db: db.put(
        k.META_HEAD, k.encode_head(N_BLOCKS - 2, make_block(SEED, N_BLOCKS - 2).block_hash)
    ),
    "acc size off": lambda db: db.put(k.META_ACC_SIZE, k.encode_height(3)),
    "recent block deleted": lambda db: db.delete(k.k_block(N_BLOCKS - 5)),
    "head leaf deleted": lambda db: db.delete(
        next(db.iterator(prefix=k.P_ACC_LEAF, reverse=True, include_value=False))
    ),
    "summary garbled": lambda db: db.put(k.k_summary(N_BLOCKS - 1), b"\x01\x02"),
    "format version unknown": lambda db: db.put(k.META_VERSION, b"\x01"),
}


@pytest.mark.parametrize("name", sorted(TAMPERINGS))
def test_inconsistent_records_refused_on_open(tmp_path: Path, name: str) -> None:
    _make_db(tmp_path)
    _tamper(tmp_path, TAMPERINGS[name])
    with pytest.raises(StoreCorrupt, match="gmchain db check"):
        Store.open(tmp_path, chain_id=CHAIN_ID)


DEEP_ONLY: dict[str, Callable[[plyvel.DB], None]] = {
    "old block bytes altered": lambda db: db.put(k.k_block(3), b"forged"),
    "old receipt altered": lambda db: db.put(k.k_receipt(db.get(k.k_tx_ids(5))[:32]), b"forged"),
    "old block deleted": lambda db: db.delete(k.k_block(1)),
    "old acc node altered": lambda db: db.put(k.k_acc_node(1, 0), b"\x00" * 32),
    "old acc leaf altered": lambda db: db.put(k.k_acc_leaf(1), b"\x01" * 32),
    "old acc node deleted": lambda db: db.delete(k.k_acc_node(2, 1)),
    "old receipt deleted": lambda db: db.delete(k.k_receipt(db.get(k.k_tx_ids(5))[:32])),
    "stray tx record": lambda db: db.put(k.k_tx(b"\x07" * 32), k.encode_tx_location(0, 0)),
}


@pytest.fixture(scope="module")
def long_chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A chain long enough to put old damage below the shallow check's window (built once)."""
    path = tmp_path_factory.mktemp("long_chain")
    _make_db(path, n=RECENT_WINDOW + 60)
    return path


@pytest.mark.parametrize("name", sorted(DEEP_ONLY))
def test_old_damage_found_by_deep_check(tmp_path: Path, long_chain: Path, name: str) -> None:
    assert make_block(SEED, 5).tx_ids  # the receipt cases need a tx in block 5
    tmp_path = tmp_path / "db"
    shutil.copytree(long_chain, tmp_path)
    (tmp_path / "LOCK").unlink(missing_ok=True)
    _tamper(tmp_path, DEEP_ONLY[name])
    Store.open(tmp_path, chain_id=CHAIN_ID).close()  # shallow check: O(head block) only
    msg = _assert_refused(tmp_path)
    assert "inconsistent" in msg


def test_db_check_tool_reports_sound_and_damaged(tmp_path: Path) -> None:
    from gmchain.ledger.store_tool import check_db, main

    _make_db(tmp_path)
    good = check_db(str(tmp_path), chain_id=CHAIN_ID)
    assert good.ok and good.head_height == N_BLOCKS - 1
    assert good.acc_size == sum(len(make_block(SEED, h).tx_ids) for h in range(N_BLOCKS))
    _tamper(tmp_path, DEEP_ONLY["old block bytes altered"])
    bad = check_db(str(tmp_path))
    assert not bad.ok and "block 3" in bad.problem
    assert main(["check", str(tmp_path)]) == 1
    assert main(["check", str(tmp_path / "absent")]) == 2

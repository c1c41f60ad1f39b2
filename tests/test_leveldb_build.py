"""ledger/leveldb_build.py: which LevelDB and snappy a process loaded (docs/ops.md, "The LevelDB
build"), read from a /proc/<pid>/maps file."""

from __future__ import annotations

from pathlib import Path

import plyvel
import pytest

from gmchain.ledger.leveldb_build import leveldb_build, main

_WHEEL = "/v/lib/python3.11/site-packages/plyvel.libs"
_SYS = "/usr/lib/x86_64-linux-gnu"


def _maps(tmp_path: Path, *paths: str) -> Path:
    lines = ["7f0000000000-7f0000001000 rw-p 00000000 00:00 0 "]  # anonymous: no path
    for i, p in enumerate(paths):
        lines.append(f"7f00000{i:05x}000-7f00000{i:05x}fff r-xp 00000000 fd:01 {1000 + i}    {p}")
    f = tmp_path / "maps"
    f.write_text("\n".join(lines) + "\n")
    return f


def test_the_wheels_copies_are_reported_as_bundled(tmp_path: Path) -> None:
    b = leveldb_build(
        _maps(
            tmp_path,
            "/v/lib/python3.11/site-packages/plyvel/_plyvel.cpython-311-x86_64-linux-gnu.so",
            f"{_WHEEL}/libleveldb-e43d8649.so.1.22.0",
            f"{_WHEEL}/libsnappy-2c75d721.so.1.1.9",
        )
    )
    assert b.bundled is True
    assert b.leveldb == f"{_WHEEL}/libleveldb-e43d8649.so.1.22.0"
    assert b.snappy == f"{_WHEEL}/libsnappy-2c75d721.so.1.1.9"
    assert b.leveldb_version == plyvel.__leveldb_version__
    assert "bundled" in b.describe() and "unoptimised" in b.describe()


def test_system_libraries_are_not_bundled(tmp_path: Path) -> None:
    b = leveldb_build(_maps(tmp_path, f"{_SYS}/libleveldb.so.1.23.0", f"{_SYS}/libsnappy.so.1.1.9"))
    assert (b.bundled, b.leveldb, b.snappy) == (
        False,
        f"{_SYS}/libleveldb.so.1.23.0",
        f"{_SYS}/libsnappy.so.1.1.9",
    )
    assert "system libraries" in b.describe()
    # a system LevelDB with the wheel's snappy is still the unoptimised copy in part
    mixed = leveldb_build(
        _maps(tmp_path, f"{_SYS}/libleveldb.so.1.23.0", f"{_WHEEL}/libsnappy-2c75d721.so.1.1.9")
    )
    assert mixed.bundled is True


def test_a_path_with_spaces(tmp_path: Path) -> None:
    wheel = "/home/u/my venv/lib/python3.11/site-packages/plyvel.libs"
    b = leveldb_build(
        _maps(
            tmp_path,
            f"{wheel}/libleveldb-e43d8649.so.1.22.0",
            f"{wheel}/libsnappy-2c75d721.so.1.1.9 (deleted)",
        )
    )
    assert b.leveldb == f"{wheel}/libleveldb-e43d8649.so.1.22.0"
    assert b.snappy.startswith(f"{wheel}/libsnappy-2c75d721.so.1.1.9")
    assert b.bundled is True


def test_a_static_plyvel_and_a_missing_maps_file(tmp_path: Path) -> None:
    # LevelDB linked into plyvel's extension: nothing says how it was built
    so = "/opt/x/plyvel/_plyvel.cpython-311-aarch64-linux-gnu.so"
    b = leveldb_build(_maps(tmp_path, so))
    assert (b.leveldb, b.snappy, b.bundled) == (so, "unknown", None)
    assert "build unknown" in b.describe()
    gone = leveldb_build(tmp_path / "no-such-maps")
    assert (gone.leveldb, gone.snappy, gone.bundled) == ("unknown", "unknown", None)
    assert "build unknown" in gone.describe()


def test_this_process() -> None:
    # the real /proc/self/maps of the test process, which has imported plyvel; the wheel's
    # copies, when loaded, sit in the `plyvel.libs` folder beside the installed package
    b = leveldb_build()
    if not Path("/proc/self/maps").exists():
        assert b.bundled is None
        return
    assert b.leveldb != "unknown"
    assert Path(b.leveldb.removesuffix(" (deleted)")).exists()
    wheel_libs = str(Path(plyvel.__file__).resolve().parent.parent / "plyvel.libs")
    in_wheel = b.leveldb.startswith(wheel_libs) or b.snappy.startswith(wheel_libs)
    assert b.bundled is in_wheel or (b.bundled is None and "_plyvel" in b.leveldb)


def test_require_system_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    b = leveldb_build()
    rc = main(["--require-system"])
    assert rc == (0 if b.bundled is False else 1)
    assert main([]) == 0
    assert b.describe() in capsys.readouterr().out

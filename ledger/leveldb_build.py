"""Which LevelDB and snappy this process's plyvel runs on (docs/ops.md, "The LevelDB build").

    python -m gmchain.ledger.leveldb_build [--require-system]   prints it (exit 1 with the
                                                                option unless it is the system's)

Rules this module keeps:
1. The answer is read from the libraries the process has loaded (/proc/self/maps after plyvel
   is imported), never from what the installer was asked for: a plyvel compiled against the
   system's LevelDB maps e.g. /usr/lib/x86_64-linux-gnu/libleveldb.so.1d; plyvel's manylinux
   wheel maps its own copies from `plyvel.libs/`.
2. `bundled` is True when either library is the wheel's copy. Those copies are built without
   optimisation: measured on the reference machine (docs/benchmarks.md, session 9), their snappy
   compresses ~10x slower than Debian's (165 against 1,600 MB/s on block data) and writing plus
   compacting a node's store costs ~2.3x the CPU. Nothing else differs: same LevelDB file format,
   same plyvel version, the same data read back.
3. Where /proc/self/maps does not exist (not Linux), or LevelDB is linked into plyvel's own
   extension (no libleveldb mapped: how it was built cannot be read), `bundled` is None and the
   build is reported as unknown.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import plyvel

__all__ = ["LevelDbBuild", "leveldb_build"]

_MAPS = Path("/proc/self/maps")


@dataclass(frozen=True, slots=True)
class LevelDbBuild:
    leveldb: str  # the shared library's path, or "unknown"
    snappy: str  # "none" when LevelDB was built without snappy
    leveldb_version: str  # the version plyvel was compiled against
    bundled: bool | None  # rule 2

    def describe(self) -> str:
        """One line for a log or a benchmark manifest."""
        if self.bundled is None:
            kind = "build unknown"
        elif self.bundled:
            kind = "the copies bundled in plyvel's wheel (unoptimised: docs/ops.md)"
        else:
            kind = "system libraries"
        return f"LevelDB {self.leveldb_version}: {kind}; {self.leveldb}; snappy {self.snappy}"


def leveldb_build(maps: Path = _MAPS) -> LevelDbBuild:
    """Rule 1: what the loaded plyvel links (`maps`: a /proc/<pid>/maps file, for tests)."""
    version = str(plyvel.__leveldb_version__)
    try:
        text = maps.read_text()
    except OSError:
        return LevelDbBuild("unknown", "unknown", version, None)
    # a line: address perms offset dev inode [path]; the path may hold spaces
    paths = {
        parts[5].strip()
        for parts in (ln.split(None, 5) for ln in text.splitlines())
        if len(parts) == 6
    }
    leveldb = sorted(p for p in paths if Path(p).name.startswith("libleveldb"))
    snappy = sorted(p for p in paths if Path(p).name.startswith("libsnappy"))
    if not leveldb:  # LevelDB linked into plyvel's extension (or not loaded): how, unknown
        plyvel_so = sorted(p for p in paths if "/plyvel/_plyvel" in p)
        return LevelDbBuild(plyvel_so[0] if plyvel_so else "unknown", "unknown", version, None)
    bundled = any("plyvel.libs" in p for p in leveldb + snappy)
    return LevelDbBuild(leveldb[0], snappy[0] if snappy else "none", version, bundled)


def main(argv: list[str] | None = None) -> int:
    """Print the build; with `--require-system`, exit 1 unless it is the system's libraries
    (`make system-leveldb` checks its own result so)."""
    args = sys.argv[1:] if argv is None else argv
    build = leveldb_build()
    print(build.describe())
    if "--require-system" in args and build.bundled is not False:
        print(
            'not the system\'s LevelDB and snappy (docs/ops.md, "The LevelDB build")',
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

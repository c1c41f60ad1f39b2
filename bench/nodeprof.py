"""`python -m gmchain.bench.nodeprof <gmchain arguments>`: the `gmchain` command with cProfile
switched by signals, for bench/querycost.py.

Rules this module keeps:
1. SIGUSR1 starts a cProfile of the thread that receives signals (the main thread: the node's
   event loop, where HTTP parsing, dispatch, limits, store reads and JSON encoding run); SIGUSR2
   stops it and writes $GMCHAIN_NODEPROF_DIR/last.pstats (written under a temporary name, then
   renamed, so a reader never sees half a file).
2. Otherwise the node runs exactly as `gmchain` runs it (node/cli.py `main`).
"""

from __future__ import annotations

import cProfile
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from gmchain.node.cli import main as gmchain_main

__all__ = ["main"]

_state: dict[str, cProfile.Profile] = {}


def _start(_sig: int, _frame: FrameType | None) -> None:
    prof = cProfile.Profile()
    _state["prof"] = prof
    prof.enable()


def _stop(_sig: int, _frame: FrameType | None) -> None:
    prof = _state.pop("prof", None)
    if prof is None:
        return
    prof.disable()
    out = Path(os.environ.get("GMCHAIN_NODEPROF_DIR", "."))
    tmp = out / "last.pstats.tmp"
    prof.dump_stats(str(tmp))
    tmp.rename(out / "last.pstats")


def main() -> int:
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
    return gmchain_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())

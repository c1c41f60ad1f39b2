"""`consensus` is sans-IO: importing it (and all submodules) pulls in no asyncio, aiohttp, plyvel,
and adds no `time` or `random` import of its own (STYLE.md habit 1).

`time` is imported by CPython's own start-up and `random` by crypto_sm (through `secrets`), so for
those two the check is twofold: consensus adds nothing to sys.modules beyond what its dependencies
already load, and no consensus module imports them (except `from random import Random`, a seeded
instance, in the simulator; the CLI reads the wall clock inside main() only).
"""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

_PROBE = """
import json, pkgutil, importlib, sys
import gmchain.ledger.types, gmchain.ledger.codec, gmchain.crypto_sm
base = set(sys.modules)
from gmchain import consensus
for m in pkgutil.walk_packages(consensus.__path__, "gmchain.consensus."):
    if not m.name.endswith("__main__"):
        importlib.import_module(m.name)
import gmchain.consensus.sim.__main__  # importing the CLI module must not read the clock either
print(json.dumps({"base": sorted(base), "after": sorted(sys.modules)}))
"""


def test_import_pulls_in_no_io_modules() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, check=True
    )
    mods = json.loads(out.stdout.strip().splitlines()[-1])
    after, base = set(mods["after"]), set(mods["base"])
    for bad in ("asyncio", "aiohttp", "plyvel", "uvloop", "socket", "threading"):
        assert not any(m == bad or m.startswith(bad + ".") for m in after - base), bad
    for bad in ("asyncio", "aiohttp", "plyvel"):
        assert bad not in after
    assert not {"time", "random"} & (after - base)


def test_no_consensus_module_imports_time_or_global_random() -> None:
    for path in (ROOT / "consensus").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = {a.name.split(".")[0] for a in node.names}
                if path.name == "__main__.py" and names == {"time"}:
                    continue  # the CLI's wall clock, imported inside main()
                assert not names & {"time", "random", "asyncio", "aiohttp", "plyvel"}, path
            if isinstance(node, ast.ImportFrom) and node.module in {"time", "random"}:
                assert node.module == "random" and [a.name for a in node.names] == ["Random"], path

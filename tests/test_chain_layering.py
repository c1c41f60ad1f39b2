"""The chain library (chain/) sits below the node and reads no clock (issue 11, items 1-2):
no module in chain/ imports gmchain.node, time or datetime — time comes in as `now_ms` from the
consensus event being stepped."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _imports(path: pathlib.Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_chain_never_imports_node_or_a_clock() -> None:
    files = sorted((ROOT / "chain").rglob("*.py"))
    assert len(files) > 5
    for path in files:
        for mod in _imports(path):
            assert not mod.startswith("gmchain.node"), (path, mod)
            assert mod.split(".")[0] not in {"time", "datetime"}, (path, mod)

"""Contract execution must be deterministic: scan the source of contracts/ (rule 1 of framework).

Rejected in every module that contract execution uses (all of contracts/*.py except
evidence_data.py, the SDK-side sealing helper; crosschain/xclient*.py, the xclient system
contract, and crosschain/packets.py, the formats it decodes): imports of clocks, randomness,
IO, threads and async; float literals; calls of float(); true division `/` (and `/=`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CONTRACTS = Path(__file__).resolve().parent.parent / "contracts"
CROSSCHAIN = CONTRACTS.parent / "crosschain"
EXCLUDED = {"evidence_data.py"}
FORBIDDEN_MODULES = {
    "time",
    "datetime",
    "random",
    "secrets",
    "os",
    "socket",
    "threading",
    "asyncio",
    "io",
    "pathlib",
    "uuid",
}


def violations(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"line {node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            if node.module and node.module.split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"line {node.lineno}: from {node.module} import")
        elif isinstance(node, ast.Constant) and isinstance(node.value, float | complex):
            found.append(f"line {node.lineno}: float literal {node.value!r}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "float":
                found.append(f"line {node.lineno}: float() call")
        elif isinstance(node, ast.BinOp | ast.AugAssign) and isinstance(node.op, ast.Div):
            found.append(f"line {node.lineno}: true division")
    return found


def execution_modules() -> list[Path]:
    xc = [*CROSSCHAIN.glob("xclient*.py"), CROSSCHAIN / "packets.py"]
    return sorted(p for p in [*CONTRACTS.glob("*.py"), *xc] if p.name not in EXCLUDED)


def test_the_scan_covers_the_contracts() -> None:
    names = {p.name for p in execution_modules()}
    assert {"framework.py", "evidence.py", "membership.py", "keys.py"} <= names
    assert {"xclient.py", "xclient_update.py", "xclient_packets.py", "packets.py"} <= names


@pytest.mark.parametrize("path", execution_modules(), ids=lambda p: p.name)
def test_contract_module_is_deterministic(path: Path) -> None:
    assert violations(path.read_text()) == []


@pytest.mark.parametrize(
    "snippet",
    [
        "import time",
        "import os.path",
        "from datetime import datetime",
        "from random import choice",
        "import secrets as s",
        "x = 1.5",
        "x = float(3)",
        "x = 3 / 2",
        "x = 3\nx /= 2",
        "import asyncio",
    ],
)
def test_the_scan_catches_each_forbidden_thing(snippet: str) -> None:
    assert violations(snippet)


def test_the_scan_allows_integer_arithmetic() -> None:
    assert violations("x = 7 // 2 + 3 % 2\nfrom ledger.codec import encode") == []

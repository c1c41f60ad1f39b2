"""The architecture's rules, read from the source (docs/architecture.md, "Packages and layers").

1. Layers run one way: every `import gmchain.<pkg>` (at module level or inside a function) goes
   to a package the importer's layer may see (`ALLOWED`).
2. One import name: no module imports a package folder by its bare name (`import ledger`), which
   would load a second copy of it beside `gmchain.ledger`.
3. Modules stay under ~600 lines; the few over it say why in `LONG_MODULES`, and an entry that is
   no longer needed fails too, so the list cannot go stale.
4. No mixins: a class named `*Mixin` would re-declare its host's attributes (STYLE.md habit 16).
5. The chain library reads no clock: time comes in as `now_ms` from the consensus event being
   stepped (issue 11 item 1), so the simulator's virtual time is the only time it sees.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = (
    "crypto_sm",
    "p2p",
    "ledger",
    "contracts",
    "consensus",
    "chain",
    "crosschain",
    "node",
    "bench",
)

# Who may import whom. crypto_sm ← ledger ← {contracts, consensus} ← chain ← node ← bench;
# p2p sees only crypto_sm. `consensus.sim` is the harness that composes the sans-IO core with the
# real chain library, so it alone may also see `chain` and `contracts`.
_BELOW_CHAIN = {"crypto_sm", "ledger", "contracts", "consensus"}
ALLOWED: dict[str, set[str]] = {
    "crypto_sm": set(),
    "p2p": {"crypto_sm"},
    "ledger": {"crypto_sm"},
    "contracts": {"crypto_sm", "ledger"},
    "consensus": {"crypto_sm", "ledger"},
    "consensus.sim": {"crypto_sm", "ledger", "contracts", "chain"},
    "chain": _BELOW_CHAIN,
    "crosschain": _BELOW_CHAIN | {"chain"},
    "node": _BELOW_CHAIN | {"chain", "p2p", "crosschain"},
    "bench": set(PACKAGES) - {"bench"},
}

# Modules over the size rule, each with the reason it is still one module.
LONG_MODULES: dict[str, str] = {}

MAX_LINES = 600


def _modules() -> list[tuple[str, pathlib.Path]]:
    out = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            out.append((".".join(rel.parts), path))
    return out


def _layer(module: str) -> str:
    return "consensus.sim" if module.startswith("consensus.sim") else module.split(".")[0]


def _imports(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in the file, wherever it is."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "gmchain":
                found += [(node.lineno, f"gmchain.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def test_layers_run_one_way() -> None:
    wrong = []
    for module, path in _modules():
        layer = _layer(module)
        for line, target in _imports(path):
            parts = target.split(".")
            if parts[0] != "gmchain" or len(parts) < 2 or parts[1] not in PACKAGES:
                continue
            if parts[1] != layer.split(".")[0] and parts[1] not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({layer}) imports {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_bare_package_imports() -> None:
    files = [p for _, p in _modules()] + sorted((ROOT / "tests").glob("*.py"))
    files += sorted((ROOT / "scripts").glob("*.py"))
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for path in files
        for line, target in _imports(path)
        if target.split(".")[0] in PACKAGES
    ]
    assert not wrong, "import through gmchain.<pkg>:\n" + "\n".join(wrong)


def test_the_chain_library_reads_no_clock() -> None:
    clocks = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for module, path in _modules()
        if module.startswith("chain.")
        for line, target in _imports(path)
        if target.split(".")[0] in {"time", "datetime"}
    ]
    assert not clocks, clocks


def test_modules_stay_small() -> None:
    sizes = {m: len(p.read_text().splitlines()) for m, p in _modules()}
    too_long = sorted(
        f"{m} ({n} lines)" for m, n in sizes.items() if n > MAX_LINES and m not in LONG_MODULES
    )
    assert not too_long, f"modules over {MAX_LINES} lines without a reason: {too_long}"
    stale = sorted(m for m in LONG_MODULES if sizes.get(m, 0) <= MAX_LINES)
    assert not stale, f"LONG_MODULES entries no longer needed: {stale}"


def test_no_mixins() -> None:
    mixins = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"
        for _, path in _modules()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef) and node.name.endswith("Mixin")
    ]
    assert not mixins, mixins


def test_the_rules_see_real_imports(tmp_path: pathlib.Path) -> None:
    """The reader finds module-level, function-level and `from gmchain import x` imports."""
    src = tmp_path / "probe.py"
    src.write_text(
        "from gmchain import ledger\nimport gmchain.node.cli\n"
        "def f():\n    from gmchain.chain.core import Chain\n"
    )
    got = {t for _, t in _imports(src)}
    assert got == {"gmchain.ledger", "gmchain.node.cli", "gmchain.chain.core"}

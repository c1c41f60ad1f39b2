"""The installable namespace and the SDK-only install (issue 11, build item 7).

What these tests hold, each by building and installing the real wheel, offline:
1. The wheel adds exactly one top-level name, `gmchain` (plus its dist-info); every `.py` of the
   source folders that gmchain/ links to is in it under `gmchain/<folder>/` (nothing lost or
   stale through the symbolic links), and so is the package data (node/openrpc.json).
2. Importing the SDK imports none of the node's server dependencies (LevelDB, uvloop,
   prometheus-client, aiohttp's server), checked on `sys.modules` in a fresh process.
3. docs/sdk.md's complete example, extracted verbatim, runs against a real dev node in a virtual
   environment that holds the wheel (installed with `--no-deps --no-index`) and, through a .pth
   file, only the distributions the wheel's base requirements resolve to in the dev venv — so it
   fails if the SDK imports anything the `[node]` extra provides.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

from tests.node_helpers import ROOT, RpcSession, running_dev_node

SERVER_MODULES = ("plyvel", "uvloop", "prometheus_client", "aiohttp.web")
NODE_EXTRA = {"plyvel", "uvloop", "prometheus-client"}


def _server_modules_loaded_snippet(import_line: str) -> str:
    """Python source that runs `import_line` and prints the server modules then loaded."""
    return (
        f"import sys\n{import_line}\n"
        f"bad = sorted(m for m in sys.modules if m.startswith({SERVER_MODULES!r}))\n"
        "print(repr(bad))\n"
    )


# --- the wheel -----------------------------------------------------------------------------------


def _linked_folders() -> dict[str, Path]:
    """gmchain/<name> -> the source folder it links to."""
    out = {}
    for entry in sorted((ROOT / "gmchain").iterdir()):
        if entry.is_symlink():
            out[entry.name] = entry.resolve()
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built offline from a clean copy of the sources (a `build/` left in the
    checkout could carry files deleted since; the copy has none)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "gmchain", src / "gmchain", symlinks=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name, folder in _linked_folders().items():
        shutil.copytree(folder, src / folder.name, ignore=ignore)
        assert (src / "gmchain" / name).resolve() == (src / folder.name), name
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", str(out), str(src)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    (built,) = out.glob("gmchain-*.whl")
    return built


def test_the_wheel_holds_one_top_level_name_and_every_module(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    dist_info = [t for t in tops if t.endswith(".dist-info")]
    assert len(dist_info) == 1 and dist_info[0].startswith("gmchain-"), tops
    assert tops - set(dist_info) == {"gmchain"}, tops
    want = {"gmchain/__init__.py"}
    for name, folder in _linked_folders().items():
        for path in folder.rglob("*.py"):
            if "__pycache__" not in path.parts:
                want.add(f"gmchain/{name}/{path.relative_to(folder).as_posix()}")
    have = {n for n in names if n.endswith(".py")}
    assert want - have == set(), f"lost through the links: {sorted(want - have)}"
    assert have - want == set(), f"in the wheel but not in the sources: {sorted(have - want)}"
    assert "gmchain/node/openrpc.json" in names
    packaged = json.loads(zipfile.ZipFile(wheel).read("gmchain/node/openrpc.json"))
    assert packaged == json.loads((ROOT / "node" / "openrpc.json").read_text())


def test_the_wheel_requires_only_the_sdk_dependencies(wheel: Path) -> None:
    base = {r.name for r in _base_requirements(wheel)}
    assert base == {"msgpack", "cryptography", "aiohttp"}, base
    assert not base & NODE_EXTRA


# --- importing the SDK ---------------------------------------------------------------------------


def test_importing_the_sdk_loads_no_server_module() -> None:
    """In the dev venv, where every server dependency is installed and importable."""
    for line in (
        "import gmchain.node.sdk",
        "from gmchain.node.sdk import Client, SyncClient, verify_proof_bundle",
        "import gmchain.node.cli",
        "import gmchain.chain.lightclient",
    ):
        out = subprocess.run(
            [sys.executable, "-c", _server_modules_loaded_snippet(line)],
            capture_output=True, text=True, timeout=120, cwd=ROOT, check=True,
        )  # fmt: skip
        assert out.stdout.strip() == "[]", (line, out.stdout, out.stderr)
    # the check can fail: the node's daemon does load them
    out = subprocess.run(
        [sys.executable, "-c", _server_modules_loaded_snippet("import gmchain.node.daemon")],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=True,
    )  # fmt: skip
    assert "plyvel" in out.stdout, out.stdout


# --- an SDK-only virtual environment -------------------------------------------------------------


def _base_requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as z:
        (meta,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        text = z.read(meta).decode()
    reqs = [Requirement(line.split(":", 1)[1].strip()) for line in text.splitlines()
            if line.startswith("Requires-Dist:")]  # fmt: skip
    env = {**default_environment(), "extra": ""}
    return [r for r in reqs if r.marker is None or r.marker.evaluate(env)]


def _closure(reqs: list[Requirement]) -> set[str]:
    """The distributions (normalised names) `reqs` resolve to in this (the dev) environment."""
    env = {**default_environment(), "extra": ""}
    seen: set[str] = set()
    todo = list(reqs)
    while todo:
        req = todo.pop()
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.distribution(req.name).requires or []:
            sub = Requirement(line)
            if sub.marker is None or sub.marker.evaluate(env):
                todo.append(sub)
    return seen


def _link_distributions(names: set[str], into: Path) -> None:
    """Symlink each distribution's top-level files and folders (and its dist-info) into `into`."""
    into.mkdir()
    for name in sorted(names):
        dist = metadata.distribution(name)
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in sorted(tops - {"__pycache__"}):
            target = Path(str(dist.locate_file(top)))
            if target.exists() and not (into / top).exists():
                (into / top).symlink_to(target)


@pytest.fixture(scope="module")
def sdk_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the wheel and only the SDK's dependencies; returns its bin/ directory."""
    root = tmp_path_factory.mktemp("sdk-venv")
    venv.EnvBuilder(with_pip=False, symlinks=True).create(root / "venv")
    python = root / "venv" / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "-q", str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    deps = _closure(_base_requirements(wheel))
    assert not deps & NODE_EXTRA, deps
    _link_distributions(deps, root / "deps")
    (site,) = (root / "venv" / "lib").glob("python3*/site-packages")
    (site / "sdk-deps.pth").write_text(f"{root / 'deps'}\n")
    return python.parent


def _sdk_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return {**env, **extra}


def _run(bin_dir: Path, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / args[0]), *args[1:]],
        capture_output=True, text=True, timeout=300, cwd=cwd, env=_sdk_env(**env),
    )  # fmt: skip


def test_the_sdk_venv_has_no_server_dependency(sdk_venv: Path, tmp_path: Path) -> None:
    where = _run(sdk_venv, "python", "-c", "import gmchain; print(gmchain.__file__)", cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(sdk_venv.parent), where.stdout  # the wheel
    for module in ("plyvel", "uvloop", "prometheus_client"):
        out = _run(sdk_venv, "python", "-c", f"import {module}", cwd=tmp_path)
        assert out.returncode != 0 and "ModuleNotFoundError" in out.stderr, module
    out = _run(sdk_venv, "python", "-c", _server_modules_loaded_snippet("import gmchain.node.sdk"),
               cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip() == "[]", out
    version = _run(sdk_venv, "gmchain", "--version", cwd=tmp_path)
    # the build lines need no [node] extra either (node/buildinfo.py rule 1)
    assert version.returncode == 0 and version.stdout.startswith("gmchain 0.1.0\n"), version
    assert "\nsm2 backend: " in version.stdout, version
    dev = _run(sdk_venv, "gmchain", "dev", "--data-dir", str(tmp_path / "d"), cwd=tmp_path)
    assert dev.returncode == 1, dev
    assert "pip install 'gmchain[node]'" in dev.stderr and "Traceback" not in dev.stderr, dev


def _doc_example() -> str:
    text = (ROOT / "docs" / "sdk.md").read_text()
    blocks = re.findall(r"^```python sdk-example\n(.*?)^```$", text, flags=re.M | re.S)
    assert len(blocks) == 1, "docs/sdk.md must hold exactly one ```python sdk-example block"
    return str(blocks[0])


@pytest.fixture
def dev_node(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A real `gmchain dev` (from the dev venv); yields (GMCHAIN_HOME, RPC port)."""
    with running_dev_node(tmp_path) as node:
        assert node.data_dir == tmp_path / "dev"
        yield tmp_path, node.port


def test_the_doc_example_runs_with_only_the_sdk_installed(
    sdk_venv: Path, dev_node: tuple[Path, int], tmp_path_factory: pytest.TempPathFactory
) -> None:
    home, port = dev_node
    work = tmp_path_factory.mktemp("example")
    (work / "example.py").write_text(_doc_example())
    url = f"http://127.0.0.1:{port}"
    out = _run(sdk_venv, "python", "example.py", cwd=work, GMCHAIN_HOME=str(home), GMCHAIN_RPC=url)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("connected to chain 'gmchain-dev' at height "), lines
    tx_id = re.fullmatch(r"transaction (0x[0-9a-f]{64})", lines[1])
    assert tx_id is not None, lines
    height = re.fullmatch(r"committed in block (\d+)", lines[2])
    assert height is not None, lines
    record = re.fullmatch(r"record (invoice-[0-9a-f]{8}) holds digest (0x[0-9a-f]{64})", lines[3])
    assert record is not None, lines
    assert lines[4].startswith(f"VALID: tx {tx_id[1]} in block {height[1]}, receipt status OK")
    assert re.fullmatch(r"refused: .* \(code -31005\)", lines[5]), lines  # EXPIRED
    # the node, asked directly, holds what the example says it wrote
    rpc = RpcSession(port)
    try:
        receipt = rpc.call("gm_getTransactionReceipt", tx_id[1])
        assert receipt["status"] == 0 and receipt["blockNumber"] == int(height[1]), receipt
        assert rpc.call("gm_call", "evidence", "get", [record[1]]) is not None
    finally:
        rpc.close()
    # and the CLI of the SDK-only install verifies a bundle offline
    bundle = work / "proof.json"
    got = _run(sdk_venv, "gmchain", "proof", "get", tx_id[1], "--rpc", url, "--out", str(bundle),
               cwd=work)  # fmt: skip
    assert got.returncode == 0, got
    checked = _run(sdk_venv, "gmchain", "proof", "verify", str(bundle), "--genesis",
                   str(home / "dev" / "genesis.json"), cwd=work)  # fmt: skip
    assert checked.returncode == 0 and checked.stdout.startswith("VALID"), checked

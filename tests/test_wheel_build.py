"""`make wheel` (issue 14 item 5): the wheel a site installs knows the commit it was built from.

1. `make wheel`, run in a git checkout (a copy of this one's sources, committed), writes
   dist/gmchain-<version>-py3-none-any.whl holding gmchain/COMMIT = that checkout's HEAD, and
   leaves no COMMIT file or build/ folder behind in the sources.
2. The installed wheel, imported outside any git work tree, reports that commit in
   `gmchain --version` (node/buildinfo.py rule 2) with no GMCHAIN_COMMIT set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import gmchain

ROOT = Path(__file__).resolve().parent.parent
GIT = shutil.which("git")
MAKE = shutil.which("make")


def _copy_sources(dest: Path) -> None:
    for name in ("pyproject.toml", "README.md", "Makefile"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "gmchain", dest / "gmchain", symlinks=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "COMMIT")
    for entry in sorted((ROOT / "gmchain").iterdir()):
        if entry.is_symlink():
            shutil.copytree(entry.resolve(), dest / entry.resolve().name, ignore=ignore)
    (dest / "gmchain" / "COMMIT").unlink(missing_ok=True)


@pytest.mark.skipif(GIT is None or MAKE is None, reason="git and make are needed")
def test_make_wheel_bakes_the_commit_into_the_wheel(tmp_path: Path) -> None:
    assert GIT is not None and MAKE is not None
    src = tmp_path / "src"
    src.mkdir()
    _copy_sources(src)
    git = [GIT, "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True, timeout=60)
    subprocess.run([*git, "add", "-A"], check=True, timeout=60)
    subprocess.run([*git, "commit", "-q", "-m", "copy"], check=True, timeout=60)
    head = subprocess.run(
        [*git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    # STAMP=pyproject.toml: this checkout's venv is already installed; BIN: its interpreter
    bindir = Path(sys.executable).parent
    out = subprocess.run(
        [MAKE, "-C", str(src), "wheel", f"BIN={bindir}", "STAMP=pyproject.toml"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    (wheel,) = (src / "dist").glob("gmchain-*.whl")
    assert wheel.name == f"gmchain-{gmchain.__version__}-py3-none-any.whl"
    assert not (src / "gmchain" / "COMMIT").exists() and not (src / "build").exists()
    with zipfile.ZipFile(wheel) as z:
        assert z.read("gmchain/COMMIT").decode().strip() == head

    # the wheel's own code, outside any git work tree, with this venv's dependencies
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    env = {k: v for k, v in os.environ.items() if k != "GMCHAIN_COMMIT"}
    env["PYTHONPATH"] = str(site)
    env["GIT_CEILING_DIRECTORIES"] = str(tmp_path.parent)
    shutil.rmtree(src / ".git")  # no repository the git fallback could read
    run = subprocess.run(
        [sys.executable, "-c", "import gmchain, sys; from gmchain.node.cli import main;"
         "print(gmchain.__file__); sys.exit(main(['--version']))"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env, check=True,
    )  # fmt: skip
    where, *lines = run.stdout.splitlines()
    assert Path(where).resolve().is_relative_to(site.resolve()), where
    assert f"commit: {head}" in lines, lines

"""The README's platform tour, run verbatim (issue 13 acceptance: "the platform tour runs verbatim
from a fresh clone").

Only the environment differs from a user's: GMCHAIN_HOME points at a temporary folder (the
platform lives in $GMCHAIN_HOME/platform) and GMCHAIN_PLATFORM_BASE_PORT at a block of free ports,
so the test cannot touch a real ~/.gmchain or collide with anything on 8600.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gmchain.node.platform import platform_down
from tests.cluster_helpers import free_port_block
from tests.platform_rig import PORTS

ROOT = Path(__file__).resolve().parent.parent


def _tour_script() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"```bash platform-tour\n(.*?)```", text, re.S)
    assert m, "README.md has no ```bash platform-tour block"
    return m.group(1)


def test_platform_tour_comes_after_the_setup_lines() -> None:
    text = (ROOT / "README.md").read_text()
    assert text.index("make test") < text.index("```bash platform-tour")
    script = _tour_script()
    lines = [ln.strip() for ln in script.splitlines() if ln.strip()]
    assert lines[1] == "gmchain platform up" and lines[-1] == "gmchain platform down"


@pytest.mark.slow
def test_platform_tour_runs_verbatim(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.pop("GMCHAIN_PASSPHRASE", None)
    env["GMCHAIN_HOME"] = str(tmp_path / "home")
    env["GMCHAIN_PLATFORM_BASE_PORT"] = str(free_port_block(PORTS))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    work = tmp_path / "work"
    work.mkdir()
    script = _tour_script().replace(". .venv/bin/activate", f". {ROOT}/.venv/bin/activate")
    try:
        done = subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=420,
        )
    finally:
        d = tmp_path / "home" / "platform"
        if (d / "platform.json").exists():
            platform_down(d)  # whatever happened, leave nothing running
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert out.count("committed in block") == 2, out
    assert "registered firm-a by governance vote" in out, out
    assert "relay rule set by governance vote" in out, out
    assert out.count("VALID: tx") == 2, out
    assert "acct-001-risk" in out, out
    assert "stopped the relayer of firm-a" in out and "stopped regulator" in out, out
    assert (work / "recv.json").exists() and (work / "ack.json").exists()

"""The README's five-minute tour, run verbatim against a real `gmchain dev` process.

Only the environment differs from a user's: GMCHAIN_HOME points at a temporary folder and
GMCHAIN_RPC at the port this test picked, so the test cannot touch a real ~/.gmchain or collide
with a node already on 8545.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.node_helpers import START_DEADLINE_S

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tour_script() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"```bash tour\n(.*?)```", text, re.S)
    assert m, "README.md has no ```bash tour block"
    return m.group(1)


def _wait_rpc(port: int, proc: subprocess.Popen[bytes], deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        assert proc.poll() is None, "gmchain dev exited early"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"gmchain dev did not open its RPC port within {deadline_s} s")


def test_readme_starts_with_the_two_setup_commands() -> None:
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert first_block is not None
    commands = [ln.split("#")[0].strip() for ln in first_block.group(1).splitlines()]
    assert [c for c in commands if c] == ["make run", "make test"]


@pytest.mark.slow
def test_readme_tour_runs_verbatim(tmp_path: Path) -> None:
    port = _free_port()
    env = dict(os.environ)
    env["GMCHAIN_HOME"] = str(tmp_path / "home")
    env["GMCHAIN_RPC"] = f"http://127.0.0.1:{port}"
    gmchain = [sys.executable, "-m", "gmchain.node.cli"]
    node = subprocess.Popen(
        [*gmchain, "dev", "--rpc-port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_rpc(port, node, START_DEADLINE_S)
        bin_dir = Path(sys.executable).parent
        env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
        work = tmp_path / "work"
        work.mkdir()
        script = _tour_script().replace(". .venv/bin/activate", f". {ROOT}/.venv/bin/activate")
        done = subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        out = done.stdout + done.stderr
        assert done.returncode == 0, out
        assert out.count("committed in block") == 3, out
        assert "hash chain intact (3 records)" in out, out
        assert "VALID: tx" in out and "committed under a quorum certificate" in out, out
        assert (work / "proof.json").exists()
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(15)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()

"""Issue 10, fault 13: `gmchain cluster kill/down` must never signal a process it does not own.

A stale `node.pid` (left by `cluster down`, or surviving a reboot) can name a pid that the system
has since given to an unrelated process. Before the fix `_pid()` checked only `kill(pid, 0)`, so
`cluster kill` SIGKILLed whatever now held that pid. Now the pid counts as the node only if that
process's command line is this node's `node start --config <dir>/<name>/config.toml`; otherwise
the command says so, signals nothing, and removes the stale pid file.

The unrelated process here is a real `sleep` this test starts and always reaps.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gmchain.node.cluster import init_cluster
from tests.cluster_helpers import free_port_block
from tests.node_helpers import run_gmchain


def _gmchain(*args: str) -> subprocess.CompletedProcess[str]:
    return run_gmchain(*args, timeout_s=120)


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "300"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _cluster_with_stale_pid(tmp_path: Path, pid: int) -> Path:
    d = tmp_path / "cl"
    base = free_port_block(4)
    init_cluster(d, validators=2, base_rpc=base, base_p2p=base + 2)
    (d / "node0" / "node.pid").write_text(str(pid))
    return d


def test_kill_refuses_a_pid_that_is_not_the_node(
    tmp_path: Path, bystander: subprocess.Popen[bytes]
) -> None:
    d = _cluster_with_stale_pid(tmp_path, bystander.pid)
    r = _gmchain("cluster", "kill", "--dir", str(d), "node0")
    assert r.returncode == 1, r
    assert bystander.poll() is None, "cluster kill signalled a process it does not own"
    assert str(bystander.pid) in r.stderr and "not" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not (d / "node0" / "node.pid").exists(), "the stale pid file is left behind"


def test_down_and_status_leave_an_unrelated_process_alone(
    tmp_path: Path, bystander: subprocess.Popen[bytes]
) -> None:
    d = _cluster_with_stale_pid(tmp_path, bystander.pid)
    st = _gmchain("cluster", "status", "--dir", str(d), "--json")
    assert st.returncode == 0, st
    assert '"pid": null' in st.stdout  # not reported as the running node0
    (d / "node0" / "node.pid").write_text(str(bystander.pid))
    r = _gmchain("cluster", "down", "--dir", str(d))
    assert r.returncode == 0, r
    assert bystander.poll() is None, "cluster down signalled a process it does not own"
    assert str(bystander.pid) in r.stderr, r.stderr
    assert "nothing" in r.stdout

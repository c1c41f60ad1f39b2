"""Issue 10, fault 14: every `gmchain cluster` failure prints one line saying what failed and
what to do.

Before the fix `cluster status --dir missing` printed nothing and exited 1 (the SystemExit
message was swallowed by the CLI), and `cluster up` with a busy port printed nothing and left
the other nodes running. Now `cluster up` checks every port first and starts nothing if one is
busy; if a node still fails to start, it names the node and its log and stops the nodes it
started itself (docs/ops.md, "gmchain cluster failures").
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from gmchain.node.cluster import init_cluster, stop_nodes
from tests.cluster_helpers import free_port_block
from tests.node_helpers import run_gmchain


def _gmchain(*args: str) -> subprocess.CompletedProcess[str]:
    return run_gmchain(*args, timeout_s=300)


def _one_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got {lines!r}"
    return lines[0]


def _running(d: Path, name: str) -> bool:
    try:
        pid = int((d / name / "node.pid").read_text())
    except (FileNotFoundError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_status_of_a_missing_dir_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    for cmd in ("status", "up", "down"):
        r = _gmchain("cluster", cmd, "--dir", str(missing))
        assert r.returncode == 1, r
        line = _one_line(r.stderr)
        assert "no cluster" in line and "cluster init" in line, line
    r = _gmchain("cluster", "kill", "--dir", str(missing), "node0")
    assert r.returncode == 1 and "no cluster" in _one_line(r.stderr)
    r = _gmchain("cluster", "up")  # a usage error: one line too, exit 2
    assert r.returncode == 2 and "--dir" in _one_line(r.stderr)


def test_up_with_a_busy_port_names_it_and_starts_nothing(tmp_path: Path) -> None:
    d = tmp_path / "cl"
    base = free_port_block(6)
    init_cluster(d, validators=3, base_rpc=base, base_p2p=base + 3)
    busy = base + 1  # node1's RPC port
    with socket.socket() as s:
        s.bind(("127.0.0.1", busy))
        s.listen()
        try:
            r = _gmchain("cluster", "up", "--dir", str(d), "--wait", "120")
            assert r.returncode == 1, r
            line = _one_line(r.stderr)
            assert "node1" in line and str(busy) in line and "in use" in line, line
            assert "--base-rpc" in line or "free" in line, line  # what to do
            assert not any(_running(d, n) for n in ("node0", "node1", "node2"))
        finally:
            stop_nodes(d)


def test_up_stops_what_it_started_when_a_node_fails(tmp_path: Path) -> None:
    d = tmp_path / "cl"
    base = free_port_block(4)
    init_cluster(d, validators=2, base_rpc=base, base_p2p=base + 2)
    (d / "node1" / "node.key").write_bytes(b"not a key file")  # node1 exits at start
    try:
        r = _gmchain("cluster", "up", "--dir", str(d), "--wait", "120")
        assert r.returncode == 1, r
        line = _one_line(r.stderr)
        assert "node1" in line and "node.log" in line, line
        assert "node0" in line  # says which started nodes it stopped
        assert not _running(d, "node0"), "node0 was left running after node1 failed"
    finally:
        stop_nodes(d)

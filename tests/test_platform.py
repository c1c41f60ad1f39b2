"""`gmchain platform up|down|status` (node/platform.py rules 1-5), with real processes.

The relay itself is exercised by tests/test_platform_tour.py and tests/test_drill_relay.py; this
module checks the command's own promises: a busy port is named and nothing is created; `up` is
idempotent and restarts only what is not running; `status` reads; `down` stops relayers first and
says what it stopped; a stale pid file is never signalled.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster_helpers import free_port_block
from tests.platform_rig import PORTS


def _gmchain(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gmchain.node.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def test_a_busy_port_is_named_and_nothing_is_created(tmp_path: Path) -> None:
    base = free_port_block(PORTS)
    d = tmp_path / "p"
    with socket.socket() as s:
        s.bind(("127.0.0.1", base + 21))  # firm-a node0's rpc port would be base + 20
        s.listen()
        with socket.socket() as t:
            t.bind(("127.0.0.1", base + 20))
            t.listen()
            done = _gmchain("platform", "up", "--dir", str(d), "--base-port", str(base))
    assert done.returncode == 1, done
    assert f"port {base + 20} (firm-a node0 rpc)" in done.stderr, done.stderr
    assert "nothing was created" in done.stderr
    assert not d.exists()


def test_status_and_down_of_a_missing_platform_say_so(tmp_path: Path) -> None:
    for cmd in ("status", "down"):
        done = _gmchain("platform", cmd, "--dir", str(tmp_path / "none"))
        assert done.returncode == 1 and "no platform in" in done.stderr, done


@pytest.mark.slow
def test_up_is_idempotent_restarts_what_died_and_down_stops_relayers_first(tmp_path: Path) -> None:
    d = tmp_path / "p"
    base = str(free_port_block(PORTS))
    try:
        up = _gmchain("platform", "up", "--dir", str(d), "--base-port", base)
        assert up.returncode == 0, up.stderr
        assert up.stdout.count("by governance vote") == 6, up.stdout  # 2 + 2 x (1 + rule)
        assert "started the relayer of firm-b" in up.stdout

        again = _gmchain("platform", "up", "--dir", str(d))
        assert again.returncode == 0 and "is already up" in again.stdout, again

        other = _gmchain("platform", "up", "--dir", str(d), "--validators", "4")
        assert other.returncode == 1 and "holds a platform of 1 validator" in other.stderr

        st = json.loads(_gmchain("platform", "status", "--dir", str(d), "--json").stdout)
        assert [c["running"] for c in st["chains"]] == [1, 1, 1], st
        assert all(c["height"] for c in st["chains"]), st
        for r in st["relayers"]:
            assert r["pid"] and r["missing"] == 0 and r["client_status"] == "active", r

        for firm in ("firm-a", "firm-b"):
            os.kill(int((d / "relayers" / f"{firm}.pid").read_text()), signal.SIGKILL)
        # A stale pid file naming another process (this test): never signalled, removed.
        (d / "relayers" / "firm-b.pid").write_text(str(os.getpid()))
        status = _gmchain("platform", "status", "--dir", str(d), "--json")
        assert "which is not firm-b's relayer" in status.stderr, status.stderr
        st = json.loads(status.stdout)
        assert [r["pid"] for r in st["relayers"]] == [None, None], st
        restarted = _gmchain("platform", "up", "--dir", str(d))
        assert restarted.returncode == 0, restarted.stderr
        assert "started the relayer of firm-a" in restarted.stdout
        assert "started the relayer of firm-b" in restarted.stdout
        assert "started regulator" not in restarted.stdout  # the chains kept running

        down = _gmchain("platform", "down", "--dir", str(d))
        assert down.returncode == 0, down.stderr
        lines = down.stdout.splitlines()
        assert lines[0].startswith("stopped the relayer of firm-a"), lines
        assert lines[1].startswith("stopped the relayer of firm-b"), lines
        assert lines[2:] == [
            "stopped firm-a: node0",
            "stopped firm-b: node0",
            "stopped regulator: node0",
        ], lines
        assert not list(d.glob("relayers/*.pid")) and not list(d.glob("*/node*/node.pid"))
    finally:
        if (d / "platform.json").exists():
            _gmchain("platform", "down", "--dir", str(d))

"""The processes of `gmchain platform` besides the nodes: one `gmchain relay` per business chain
(node/platform.py rule 3; docs/crosschain.md, "The platform").

Rules this module keeps:
1. A relayer is started as `python -m gmchain.node.cli relay --business URL --regulator URL --key
   <D>/relayers/<firm>.key --metrics-port P`, in its own session, its output appended to
   `<D>/relayers/<firm>.log`, its pid in `<D>/relayers/<firm>.pid`; its key's passphrase (the dev
   passphrase) reaches it through the environment, never argv.
2. A signal goes only to a process whose command line is that: `gmchain.node.cli relay ... --key
   <its key>`; a pid file naming anything else is stale: removed and reported, never signalled.
3. Started means: it serves its metrics port within the wait, or at least has not exited; an exit
   at start is a PlatformError with the last line of its log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gmchain.node.cluster import _gone, _last_line, _port_in_use, _settled_cmdline
from gmchain.node.daemon import DEV_PASSPHRASE

__all__ = [
    "BUSINESS",
    "CHAINS",
    "REGULATOR",
    "PlatformError",
    "chain_url",
    "relayer_key",
    "relayer_pid",
    "start_relayer",
    "stop_pid",
    "stop_relayers",
]

REGULATOR = "regulator"
BUSINESS = ("firm-a", "firm-b")
CHAINS = (REGULATOR, *BUSINESS)
RELAYER_STOP_S = 10.0


class PlatformError(Exception):
    """A `gmchain platform` failure, reported as one line that says what to do."""


RELAY_INTERVAL_S = 0.25  # the platform's relayers' poll interval


def chain_url(doc: dict[str, Any], chain: str) -> str:
    return f"http://127.0.0.1:{doc['chains'][chain]['rpc_port']}"


def relayer_key(d: Path, doc: dict[str, Any], firm: str) -> Path:
    return (d / str(doc["relayers"][firm]["key"])).resolve()


def _relayer_command(d: Path, doc: dict[str, Any], firm: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gmchain.node.cli",
        "relay",
        "--business",
        chain_url(doc, firm),
        "--regulator",
        chain_url(doc, REGULATOR),
        "--key",
        str(relayer_key(d, doc, firm)),
        "--metrics-port",
        str(doc["relayers"][firm]["metrics_port"]),
        # docs/benchmarks.md, session 6: the 2 s default poll was three quarters of a light-load
        # record's relay latency (p50 1.83 s); at 0.25 s, p50 0.52 s (target <= 1 s).
        "--interval",
        str(RELAY_INTERVAL_S),
    ]


def _is_our_relayer(pid: int, key: Path) -> bool:
    argv = _settled_cmdline(pid) or []
    if "gmchain.node.cli" not in argv or "relay" not in argv or "--key" not in argv:
        return False
    i = argv.index("--key")
    return i + 1 < len(argv) and Path(argv[i + 1]) == key


def relayer_pid(
    d: Path, doc: dict[str, Any], firm: str, notes: list[str] | None = None
) -> int | None:
    """The pid of `firm`'s relayer if it runs, else None (rule 3: a stale pid file is removed)."""
    pid_file = d / "relayers" / f"{firm}.pid"
    try:
        pid = int(pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    if _gone(pid):
        return None
    if not _is_our_relayer(pid, relayer_key(d, doc, firm)):
        if _gone(pid):
            return None
        if notes is not None:
            notes.append(
                f"relayers/{firm}.pid names pid {pid}, which is not {firm}'s relayer; "
                "not signalling it, removed the stale pid file"
            )
        pid_file.unlink(missing_ok=True)
        return None
    return pid


def start_relayer(
    d: Path, doc: dict[str, Any], firm: str, wait_s: float
) -> subprocess.Popen[bytes]:
    port = doc["relayers"][firm]["metrics_port"]
    if _port_in_use(port):
        raise PlatformError(
            f"port {port} (relayer of {firm} metrics) on 127.0.0.1 is in use by another program; "
            "free it and run `gmchain platform up` again"
        )
    env = dict(os.environ)
    env["GMCHAIN_PASSPHRASE"] = DEV_PASSPHRASE  # rule 6: the relayer key's passphrase
    log_path = d / "relayers" / f"{firm}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            _relayer_command(d, doc, firm),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=str(d.resolve()),
            env=env,
        )
    (d / "relayers" / f"{firm}.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + wait_s
    while not _port_in_use(port):  # it serves its metrics once it runs
        code = proc.poll()
        if code is not None:
            (d / "relayers" / f"{firm}.pid").unlink(missing_ok=True)
            raise PlatformError(
                f"the relayer of {firm} exited at start with code {code} "
                f"({_last_line(log_path, 200)}); see {log_path}"
            )
        if time.monotonic() > deadline:
            break  # running but slow: `status` shows it; the chains do not depend on it
        time.sleep(0.1)
    return proc


def stop_pid(pid: int, grace_s: float, alive: Any) -> None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive():
        os.kill(pid, signal.SIGKILL)


def stop_relayers(d: Path, doc: dict[str, Any], notes: list[str] | None = None) -> list[str]:
    """Rule 4's first step: SIGTERM each running relayer, SIGKILL after a grace period."""
    lines = []
    for firm in BUSINESS:
        pid = relayer_pid(d, doc, firm, notes)
        if pid is not None:
            stop_pid(pid, RELAYER_STOP_S, lambda p=pid, f=firm: relayer_pid(d, doc, f) == p)
            lines.append(f"stopped the relayer of {firm} (pid {pid})")
        (d / "relayers" / f"{firm}.pid").unlink(missing_ok=True)
    return lines

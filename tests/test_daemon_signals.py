"""The node's run loop gives back the signal handlers it installed (node/daemon.py `_serve`).

A process that runs a node in-process (an embedding, a test harness) gets its SIGINT, SIGTERM
and SIGHUP handlers back when the node stops: with uvloop a closed loop otherwise keeps its own
handler installed and swallows every later Ctrl-C. Run in a child process of its own: the
handlers are process-wide.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.ports import free_port_block

_CHILD = textwrap.dedent(
    """
    import functools, os, signal, sys, threading, time
    from pathlib import Path
    from gmchain.node.config import load_config
    from gmchain.node.daemon import _run, init_dev

    def mine(signum, frame):  # an embedder's own handlers
        print("embedder-handler", signum, flush=True)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, mine)
    signal.signal(signal.SIGHUP, mine)
    data = Path(sys.argv[1])
    init_dev(data, rpc_port=int(sys.argv[2]), p2p_port=int(sys.argv[2]) + 1)
    cfg = load_config(data / "config.toml")

    def stop_when_serving():
        # asyncio.run's own SIGINT handler is a functools.partial; the node's loop replaces it
        # once the node serves
        deadline = time.monotonic() + 120
        while True:
            handler = signal.getsignal(signal.SIGINT)
            if handler is not signal.default_int_handler and not isinstance(
                handler, functools.partial
            ):
                break
            if time.monotonic() > deadline:
                os._exit(3)
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=stop_when_serving, daemon=True).start()
    print("rc", _run(cfg), flush=True)
    print("sigint-default", signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    print("sigterm-mine", signal.getsignal(signal.SIGTERM) is mine)
    print("sighup-mine", signal.getsignal(signal.SIGHUP) is mine)
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(2)
        print("ctrl-c-swallowed")
    except KeyboardInterrupt:
        print("ctrl-c-raised")
    """
)


def test_a_stopped_node_gives_the_signal_handlers_back(tmp_path: Path) -> None:
    port = free_port_block(2)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path / "node"), str(port)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=Path(__file__).resolve().parent.parent,
    )
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "rc 0" in lines, proc.stdout
    assert "sigint-default True" in lines, proc.stdout
    assert "sigterm-mine True" in lines, proc.stdout
    assert "sighup-mine True" in lines, proc.stdout
    assert "ctrl-c-raised" in lines, proc.stdout

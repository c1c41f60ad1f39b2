"""Issue 10, fault 3(b): a node whose storage fails stops; it never lives on as a zombie.

On 0921e03 a LevelDB write error inside the consensus step was logged ("consensus step failed"),
the tick task died, and the process went on acknowledging transactions and answering `/health`
"ok" with a frozen height. The rule now (docs/ops.md, "Limits and failure behaviour"): any
storage or consensus exception the node cannot handle ends the process with one CRITICAL log line
and exit status 70, so a supervisor restarts it.

The test runs a real `gmchain dev` process whose LevelDB directory is a small tmpfs (we are root in
CI; where mounting is not permitted the test is skipped with the reason). After start the tmpfs is
filled to the last byte, a transaction is submitted (the pool log lives beside the store, outside
the tmpfs, so it is acknowledged), and writing its block fails. The process must exit non-zero
within a generous bound, with the log line, and `/health` must never say "ok" at a height that no
longer moves while it is alive.
"""

from __future__ import annotations

import contextlib
import http.client
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from gmchain.node.config import load_config, write_config
from gmchain.node.daemon import init_dev
from tests.node_helpers import NodeProcess, RpcFailure, RpcSession, get_health, sign_tx

EXIT_DEADLINE_S = 60.0  # a failure bound only; the node exits within a step of the failed write


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[None]:
    path.mkdir(parents=True)
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or res.returncode})")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def fill(directory: Path) -> None:
    """Write a file into `directory` until its filesystem has no byte left."""
    with open(directory / "filler", "wb", buffering=0) as f:
        chunk = b"\0" * 65536
        with contextlib.suppress(OSError):
            while True:
                f.write(chunk)
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0")


def test_a_node_whose_store_cannot_write_exits_non_zero(tmp_path: Path) -> None:
    data_dir = tmp_path / "dev"
    node = NodeProcess(data_dir=data_dir, home=tmp_path / "home")
    with small_tmpfs(data_dir / "db", "8m"):
        # The free-space guard (fault 4) would refuse the submission on the full tmpfs before any
        # block is written; turned off, the transaction is admitted and writing its block fails,
        # as it does when the disk fills between admission and commit.
        cfg_path = init_dev(data_dir, rpc_port=node.port)
        write_config(cfg_path, replace(load_config(cfg_path), min_free_disk_mb=0))
        try:
            node.start()
            status = node.wait_ready(60.0)
            rpc = RpcSession(node.port, timeout_s=10)
            key = node.client_key()
            fill(data_dir / "db")
            tx = sign_tx(key, expiry=status["height"] + 50, chain_id=status["chainId"])
            with contextlib.suppress(RpcFailure, OSError, http.client.HTTPException):
                rpc.call("gm_sendRawTransaction", "0x" + tx.encode().hex())
            rpc.close()

            # While the process lives, /health must not say "ok" with a height stuck below the
            # submitted transaction's block for long: the node either commits it (it cannot:
            # the store is full) or stops.
            deadline = time.monotonic() + EXIT_DEADLINE_S
            ok_since: float | None = None
            assert node.proc is not None
            while node.proc.poll() is None and time.monotonic() < deadline:
                got = get_health(node.port)
                if got is not None and got[0] == 200 and got[1].get("status") == "ok":
                    ok_since = ok_since or time.monotonic()
                    assert time.monotonic() - ok_since < 20.0, (
                        f"/health said ok for 20 s after the store filled: {got[1]}"
                    )
                time.sleep(0.1)
            rc = node.proc.poll()
            assert rc is not None, (
                f"the node still runs {EXIT_DEADLINE_S} s after its store filled:\n{node.log()}"
            )
            assert rc == 70, f"exit status {rc}, expected 70:\n{node.log()}"
            log = node.log()
            assert "CRITICAL" in log and "stopping the node" in log, log
        finally:
            node.stop()

"""Session-wide: every JSON-RPC answer the suite produces is checked against docs/openrpc.json.

The controlling pytest process names a fresh file in GMCHAIN_VALIDATE_RPC before any worker or
node starts; every RpcServer of the session (in-process, in an xdist worker, in a node
subprocess: they all inherit the environment) appends each violation to it (node/rpcvalidate.py).
At the end the controlling process reads it and fails the run if it holds anything.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from pathlib import Path

import pytest

from gmchain.node.rpcvalidate import ENV_VAR

_OWNED: list[Path] = []  # the file this process created (only the controlling process)


def pytest_configure(config: pytest.Config) -> None:
    if importlib.util.find_spec("jsonschema") is None:
        raise pytest.UsageError(
            "the tests validate every RPC answer with jsonschema: install the dev extra "
            "(pip install -e '.[dev]')"
        )
    if hasattr(config, "workerinput") or os.environ.get(ENV_VAR):
        return  # an xdist worker (inherits the controller's file), or the caller chose a file
    fd, name = tempfile.mkstemp(prefix="gmchain-rpc-violations-", suffix=".jsonl")
    os.close(fd)
    os.environ[ENV_VAR] = name
    _OWNED.append(Path(name))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput"):
        return
    path = Path(os.environ.get(ENV_VAR, ""))
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    if path in _OWNED:
        path.unlink()
    if not lines:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    shown = [json.loads(line) for line in lines[:20]]
    text = "\n".join(
        f"  {v['method']} [{v['check']}] {v['message']}\n    {v['instance'][:300]}" for v in shown
    )
    msg = (
        f"{len(lines)} RPC answer(s) do not validate against docs/openrpc.json "
        f"({ENV_VAR}; first {len(shown)}):\n{text}"
    )
    if reporter is not None:
        reporter.write_line(msg, red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED

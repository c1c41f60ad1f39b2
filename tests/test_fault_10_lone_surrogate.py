"""Issue 10, fault 10: a lone surrogate in a string argument is the caller's error, everywhere.

JSON allows `"\\ud800"` (an escape of half a UTF-16 pair); Python decodes it to a `str` that has
no UTF-8 form. Before the fix `gm_call evidence get ["\\ud800"]` reached the contract's schema
check, whose `str.encode()` raised: -32603 "internal error" and a full traceback in the log for
every request (about 18 log bytes per request byte, a disk-fill path), and the CLI sent a
non-UTF-8 `--flow` on to the node and reported that -32603.

Now: the RPC layer refuses such a string with -32602 naming the argument (the contract's schema
check refuses it with BAD_ARGUMENTS as a second line of defence), nothing is logged for it, and
the tracebacks of real internal errors are rate-limited (node/ratelog.py). The CLI refuses a
non-UTF-8 argument with one line before it connects anywhere.
"""

from __future__ import annotations

import http.client
import io
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gmchain.contracts.framework import BadArguments, default_registry
from tests.node_helpers import ROOT, NodeProcess, free_port


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    proc = NodeProcess(data_dir=tmp_path / "dev", home=tmp_path / "home")
    proc.start()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def _post_raw(port: int, body: bytes) -> dict[str, object]:
    import json

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/", body, {"Content-Type": "application/json"})
        reply: dict[str, object] = json.loads(conn.getresponse().read())
        return reply
    finally:
        conn.close()


# Raw JSON text, so the test is about the bytes on the wire: the \ud800 escapes as a client sends.
CALLS = [
    rb'{"jsonrpc":"2.0","id":1,"method":"gm_call","params":["evidence","get",["\ud800"]]}',
    rb'{"jsonrpc":"2.0","id":2,"method":"gm_call","params":["evidence","get",["ok\udfffok"]]}',
    rb'{"jsonrpc":"2.0","id":3,"method":"gm_call","params":["membership","list",["\ud800"]]}',
    rb'{"jsonrpc":"2.0","id":4,"method":"gm_call","params":["evidence","flow",["\udc80",10]]}',
]


def test_rpc_refuses_a_lone_surrogate_as_invalid_params(node: NodeProcess) -> None:
    for body in CALLS:
        reply = _post_raw(node.port, body)
        err = reply.get("error")
        assert isinstance(err, dict), reply
        assert err["code"] == -32602, reply
        assert "UTF-8" in str(err["message"]) and "args[0]" in str(err["message"]), reply
    assert "Traceback" not in node.log()


def test_many_bad_strings_produce_bounded_log_bytes(node: NodeProcess) -> None:
    assert node.log_path is not None
    before = node.log_path.stat().st_size
    sent = 0
    for _ in range(100):
        for body in CALLS:
            sent += len(body)
            reply = _post_raw(node.port, body)
            assert isinstance(reply.get("error"), dict)
    grown = node.log_path.stat().st_size - before
    assert grown < 2000, f"{grown} log bytes for {sent} request bytes:\n{node.log()}"


def test_contract_schema_check_refuses_a_lone_surrogate() -> None:
    spec = default_registry().spec("evidence", "get")
    with pytest.raises(BadArguments, match="UTF-8"):
        spec.check_args(["\ud800"])


def test_internal_error_tracebacks_are_rate_limited() -> None:
    from gmchain.node.ratelog import LogLimiter

    out = io.StringIO()
    logger = logging.getLogger("test.fault10.ratelog")
    logger.propagate = False
    handler = logging.StreamHandler(out)
    logger.addHandler(handler)
    now = [0.0]
    limiter = LogLimiter(per_minute=5, clock=lambda: now[0])
    try:
        for _ in range(1000):
            try:
                raise RuntimeError("boom")
            except RuntimeError:
                limiter.exception(logger, "internal error in %s", "gm_call")
        assert out.getvalue().count("Traceback") == 5
        now[0] += 61.0  # a minute later: one line says how many were left out, then logs again
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            limiter.exception(logger, "internal error in %s", "gm_call")
        assert "995 similar" in out.getvalue()
        assert out.getvalue().count("Traceback") == 6
    finally:
        logger.removeHandler(handler)


def test_cli_refuses_a_non_utf8_argument_in_one_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens: the CLI must refuse before connecting
    argv = [
        str(ROOT / ".venv" / "bin" / "gmchain").encode(),
        b"evidence",
        b"flow",
        b"--rpc",
        f"http://127.0.0.1:{port}".encode(),
        b"fl\xffow",
    ]
    r = subprocess.run(argv, capture_output=True, cwd=ROOT, env={**os.environ}, timeout=120)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.decode(errors="replace").splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert "UTF-8" in lines[0] and "Traceback" not in lines[0], lines
    assert "connect" not in lines[0], lines  # refused locally, not by the network
    r = subprocess.run(
        [*argv[:2], b"submit", b"--id", b"r1", b"--flow", b"\xfe", b"--step", b"s", b"--data=x"],
        capture_output=True,
        cwd=ROOT,
        timeout=120,
    )
    lines = [ln for ln in r.stderr.decode(errors="replace").splitlines() if ln.strip()]
    assert r.returncode != 0 and len(lines) == 1 and "--flow" in lines[0], lines

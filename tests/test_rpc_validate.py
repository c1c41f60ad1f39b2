"""node/rpcvalidate.py: the harness that checks every RPC answer against docs/openrpc.json.

Each check is shown to fail on a reply that breaks it (and to pass on the real shape), the server
is shown to report what its API answers wrongly, the session hook of tests/conftest.py is shown to
fail a run, and a production import never loads `jsonschema`. Plus: docs/openrpc.json's per-query
schemas (`x-results`) are exactly what the contracts' declared result shapes give.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gmchain.crosschain import node_registry
from gmchain.ledger.jsonfmt import shape_json_schema
from gmchain.node.api import NodeStatus
from gmchain.node.rpc import RpcServer
from gmchain.node.rpcspec import load_openrpc
from gmchain.node.rpcvalidate import ENV_VAR, ReplyValidator
from tests.test_rpc_fake import FakeNode

pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[1]
H = "0x" + "ab" * 32
PENDING = {"txId": H, "pending": True}


def _violations(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _ok(result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "result": result}


@pytest.fixture
def checker(tmp_path: Path) -> tuple[ReplyValidator, Path]:
    path = tmp_path / "v.jsonl"
    return ReplyValidator(str(path)), path


def test_valid_replies_leave_no_trace(checker: tuple[ReplyValidator, Path]) -> None:
    v, path = checker
    v.check_reply("gm_blockNumber", _ok(7))
    v.check_reply("gm_getTransactionReceipt", _ok(PENDING))
    v.check_reply("gm_getTransactionReceipt", _ok(None))
    v.check_reply("gm_getTotalTransactionCount", _ok({"transactionCount": 1, "blockNumber": 2}))
    error = {"code": -31101, "message": "not found"}
    v.check_reply("gm_getTransactionProof", {"jsonrpc": "2.0", "id": 1, "error": error})
    v.check_reply(None, {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "x"}})
    assert _violations(path) == []


@pytest.mark.parametrize(
    ("method", "reply", "check"),
    [
        ("gm_blockNumber", _ok(-1), "result:gm_blockNumber"),  # minimum 0
        ("gm_blockNumber", _ok(1.5), "result:gm_blockNumber"),  # never a float
        ("gm_getTransactionReceipt", _ok({"txId": H}), "result:gm_getTransactionReceipt"),
        (
            "gm_getTransactionReceipt",
            _ok({**PENDING, "extra": 1}),  # additionalProperties: false
            "result:gm_getTransactionReceipt",
        ),
        (
            "gm_getTransactionReceipt",
            _ok({"txId": H.upper().replace("0X", "0x"), "pending": True}),  # lowercase hex only
            "result:gm_getTransactionReceipt",
        ),
        ("gm_blockNumber", {"jsonrpc": "2.0", "id": 1}, "envelope"),
        ("gm_blockNumber", {"jsonrpc": "2.0", "id": 1, "result": 1, "error": {}}, "envelope"),
        (
            "gm_blockNumber",
            {"jsonrpc": "2.0", "id": 1, "error": {"code": -31101, "message": "x"}},
            "error",  # gm_blockNumber does not declare NotFound
        ),
        (
            "gm_blockNumber",
            {"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "x", "why": 1}},
            "error-object",
        ),
        (None, {"jsonrpc": "2.0", "id": 1, "error": {"code": -1, "message": "x"}}, "error"),
    ],
)
def test_each_check_fails_on_a_reply_that_breaks_it(
    checker: tuple[ReplyValidator, Path], method: str | None, reply: dict[str, Any], check: str
) -> None:
    v, path = checker
    v.check_reply(method, reply)
    found = _violations(path)
    assert [x["check"] for x in found] == [check], found
    assert found[0]["method"] == method and found[0]["pid"] == os.getpid()


def test_gm_call_results_are_checked_against_the_query_schema(
    checker: tuple[ReplyValidator, Path],
) -> None:
    v, path = checker
    account = {"address": "0x" + "11" * 20, "pubkey": "0x04" + "22" * 64, "org": "o", "role": "r"}
    params = {"contract": "membership", "method": "get", "args": [], "withHeight": False}
    v.check_reply("gm_call", _ok(account), params)
    v.check_reply("gm_call", _ok(None), params)
    v.check_reply(
        "gm_call", _ok({"value": account, "answeredAt": 3}), {**params, "withHeight": True}
    )
    assert _violations(path) == []
    pairs = [["address", account["address"]], ["pubkey", account["pubkey"]]]
    v.check_reply("gm_call", _ok(pairs), params)  # the old [name, value] pairs
    v.check_reply("gm_call", _ok({**account, "org_name": "o"}), params)  # a snake_case member
    assert [x["check"] for x in _violations(path)] == ["x-results:membership.get"] * 2


def test_notifications_are_checked_by_kind(checker: tuple[ReplyValidator, Path]) -> None:
    v, path = checker
    dropped = {"txId": H, "pending": False, "dropped": True, "code": -31010, "message": "revoked"}
    v.check_notification("txCommit", dropped)
    assert _violations(path) == []
    v.check_notification("txCommit", {**dropped, "dropped": False})
    v.check_notification("newHeads", {"hash": H})
    v.check_notification("nope", {})
    checks = [x["check"] for x in _violations(path)]
    assert checks == ["notification:txCommit", "notification:newHeads", "notification"]


class _WrongNode(FakeNode):
    """Answers gm_status with a role the document does not allow."""

    def status(self) -> NodeStatus:
        st = super().status()
        return NodeStatus(
            **{**{f: getattr(st, f) for f in st.__dataclass_fields__}, "role": "boss"}
        )


async def test_the_server_reports_what_its_api_answers_wrongly(tmp_path: Path) -> None:
    path = tmp_path / "v.jsonl"
    server = RpcServer(
        _WrongNode(), host="127.0.0.1", port=0, reply_validator=ReplyValidator(str(path))
    )
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{server.port}/"
            for method in ("gm_status", "gm_nodeInfo"):
                req = {"jsonrpc": "2.0", "id": 1, "method": method}
                async with http.post(url, json=req) as resp:
                    assert "result" in await resp.json()  # the harness never changes a reply
    finally:
        await server.stop()
    found = _violations(path)
    assert [(x["method"], x["check"]) for x in found] == [
        ("gm_status", "result:gm_status"),
        ("gm_nodeInfo", "result:gm_nodeInfo"),
    ]
    assert all("'boss' is not one of" in x["message"] for x in found)


def test_the_session_fails_on_a_violation(tmp_path: Path) -> None:
    """tests/conftest.py fails a pytest run whose servers answered something the document does
    not allow, though every test passed."""
    test = tmp_path / "test_planted.py"
    test.write_text(
        textwrap.dedent(
            """
            import os
            from gmchain.node.rpcvalidate import ENV_VAR, ReplyValidator

            def test_passes():
                ReplyValidator(os.environ[ENV_VAR]).check_reply(
                    "gm_blockNumber", {"jsonrpc": "2.0", "id": 1, "result": "seven"}
                )
            """
        )
    )
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 passed" in run.stdout
    assert "do not validate against docs/openrpc.json" in run.stdout
    assert "gm_blockNumber [result:gm_blockNumber]" in run.stdout


def test_production_never_loads_jsonschema() -> None:
    code = (
        "import sys\n"
        "from gmchain.node.rpc import RpcServer\n"
        "from tests.test_rpc_fake import FakeNode\n"
        "RpcServer(FakeNode())\n"
        "assert 'jsonschema' not in sys.modules, 'jsonschema loaded'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr


def test_openrpc_query_schemas_are_the_declared_shapes() -> None:
    """gm_call's `x-results` states, for each query of the system contracts, the schema of what
    the JSON layer renders from its declared shape: nothing missing, nothing stale."""
    (call,) = (m for m in load_openrpc()["methods"] if m["name"] == "gm_call")
    expected = {
        f"{c['name']}.{m['name']}": shape_json_schema(m["returns"])
        for c in node_registry().describe()["contracts"]
        for m in c["methods"]
        if m["kind"] == "query"
    }
    assert call["x-results"] == expected, "stale: run python scripts/gen_openrpc_results.py"


def test_openrpc_schemas_are_valid_json_schema() -> None:
    import jsonschema

    doc = load_openrpc()
    cls = jsonschema.Draft202012Validator
    for name, schema in doc["components"]["schemas"].items():
        cls.check_schema({**schema, "components": doc["components"]}), name
    for m in doc["methods"]:
        cls.check_schema(m["result"]["schema"])
        for kind, schema in m.get("x-notifications", {}).items():
            cls.check_schema(schema), kind

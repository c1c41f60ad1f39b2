"""Every method of docs/openrpc.json, called on a real dev node, answers what the document says.

A real `gmchain dev` child process (real LevelDB, sockets, SM2 signatures). Each reply (results,
`null` answers, error objects, subscription notifications) is checked by a `ReplyValidator` of
this test's own (strict JSON Schema 2020-12 validation of the method's result schema, the error
object and its declared code), independent of the session-wide harness in tests/conftest.py.
The test also fails if some method of the document was not called: coverage of the document does
not depend on other tests.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gmchain.contracts.governance import propose_args, vote_args
from gmchain.crypto_sm import sm3_hash
from gmchain.ledger.types import SignedTx
from gmchain.node.rpcsession import compute_login_root
from gmchain.node.rpcspec import load_openrpc
from gmchain.node.rpcvalidate import ReplyValidator
from tests.node_helpers import evidence_args, running_dev_node, sign_tx

pytest.importorskip("jsonschema")


class _Checked:
    """A JSON-RPC client over one aiohttp session that validates every reply it receives."""

    def __init__(self, url: str, http: aiohttp.ClientSession, validator: ReplyValidator) -> None:
        self.url = url
        self.http = http
        self.validator = validator
        self.called: set[str] = set()
        self._ids = 0

    async def reply(self, method: str, params: Any = None) -> dict[str, Any]:
        self._ids += 1
        req: dict[str, Any] = {"jsonrpc": "2.0", "id": self._ids, "method": method}
        if params is not None:
            req["params"] = params
        async with self.http.post(self.url, json=req) as resp:
            reply: dict[str, Any] = await resp.json()
        self.validator.check_reply(method, reply, _named(method, params))
        self.called.add(method)
        return reply

    async def call(self, method: str, params: Any = None) -> Any:
        reply = await self.reply(method, params)
        assert "result" in reply, reply
        return reply["result"]

    async def error(self, method: str, params: Any = None) -> dict[str, Any]:
        reply = await self.reply(method, params)
        assert "error" in reply, reply
        error: dict[str, Any] = reply["error"]
        return error


class _Ws:
    """A WebSocket with the same checks; notifications are collected by subscription id."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, rpc: _Checked) -> None:
        self.ws = ws
        self.rpc = rpc
        self.kinds: dict[str, str] = {}
        self.notes: dict[str, list[Any]] = {}
        self._ids = 1000

    async def call(self, method: str, params: Any) -> Any:
        self._ids += 1
        await self.ws.send_json(
            {"jsonrpc": "2.0", "id": self._ids, "method": method, "params": params}
        )
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.receive_str(), 30))
            if msg.get("id") == self._ids:
                self.rpc.validator.check_reply(method, msg)
                self.rpc.called.add(method)
                assert "result" in msg, msg
                return msg["result"]
            self._note(msg)

    def _note(self, msg: dict[str, Any]) -> None:
        assert msg.get("method") == "gm_subscription", msg
        sub = msg["params"]["subscription"]
        self.rpc.validator.check_notification(self.kinds[sub], msg["params"]["result"])
        self.notes.setdefault(sub, []).append(msg["params"]["result"])

    async def subscribe(self, kind: str, flt: Any = None) -> str:
        params: list[Any] = [kind] if flt is None else [kind, flt]
        sub: str = await self.call("gm_subscribe", params)
        self.kinds[sub] = kind
        return sub

    async def wait_notes(self, sub: str, n: int) -> list[Any]:
        while len(self.notes.get(sub, [])) < n:
            self._note(json.loads(await asyncio.wait_for(self.ws.receive_str(), 60)))
        return self.notes[sub]


def _named(method: str, params: Any) -> dict[str, Any] | None:
    """gm_call's positional params by name (the validator picks the query's exact schema)."""
    if method != "gm_call" or not isinstance(params, list):
        return None
    names = ("contract", "method", "args", "withHeight")
    return dict(zip(names, params, strict=False))


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


async def test_every_method_answers_what_openrpc_says(tmp_path: Path) -> None:
    violations = tmp_path / "violations.jsonl"
    validator = ReplyValidator(str(violations))
    with running_dev_node(tmp_path) as node:
        key = node.client_key()
        async with aiohttp.ClientSession() as http:
            rpc = _Checked(f"http://127.0.0.1:{node.port}/", http, validator)
            await _exercise(rpc, http, node.port, key)
    documented = {m["name"] for m in load_openrpc()["methods"]}
    assert documented - rpc.called == set(), "methods of docs/openrpc.json not exercised"
    found = violations.read_text().splitlines() if violations.exists() else []
    assert found == [], "\n".join(found)


async def _exercise(rpc: _Checked, http: aiohttp.ClientSession, port: int, key: Any) -> None:
    doc = await rpc.call("rpc.discover")
    assert doc == load_openrpc()
    info = await rpc.call("gm_nodeInfo")
    status = await rpc.call("gm_status")
    assert (await rpc.call("gm_blockNumber")) >= 0
    await rpc.call("gm_getTotalTransactionCount")
    contracts = await rpc.call("gm_contracts")
    names = {c["name"] for c in contracts["contracts"]}
    assert names == {"membership", "evidence", "governance", "xclient"}

    chain_id, window = info["chainId"], info["replayWindow"]
    digest = sm3_hash(b"conformance")
    first = sign_tx(
        key,
        chain_id=chain_id,
        expiry=status["height"] + window,
        args=evidence_args("oc-1", "oc-flow", data=b"conformance"),
    )
    second = sign_tx(
        key,
        chain_id=chain_id,
        expiry=status["height"] + window,
        args=evidence_args("oc-2", "oc-flow", data=b"second", prev="oc-1"),
    )
    refused = sign_tx(key, chain_id="another-chain", expiry=status["height"] + window)

    async with http.ws_connect(f"http://127.0.0.1:{port}/ws") as raw_ws:
        ws = _Ws(raw_ws, rpc)
        heads = await ws.subscribe("newHeads")
        events = await ws.subscribe("events", {"contract": "evidence"})
        commit = await ws.subscribe("txCommit", _hex(first.tx_id))
        assert await rpc.call("gm_sendRawTransaction", [_hex(first.encode())]) == _hex(first.tx_id)
        (receipt,) = await ws.wait_notes(commit, 1)
        assert receipt["status"] == 0, receipt
        await ws.wait_notes(heads, 1)
        await ws.wait_notes(events, 1)
        assert await ws.call("gm_unsubscribe", [heads]) is True
        assert await ws.call("gm_unsubscribe", [heads]) is False

    await _exercise_reads(rpc, first, second, refused, digest)
    await _exercise_governance(rpc, key, chain_id)
    await _exercise_crosschain(rpc)
    await _exercise_login(rpc, key, chain_id, bytes.fromhex(info["nodeId"][2:]))


async def _exercise_login(rpc: _Checked, key: Any, chain_id: str, node_id: bytes) -> None:
    """The login methods answer with rpc_auth = "off" too (node/rpcauth.py rule 1)."""
    ch = await rpc.call("gm_authChallenge")
    sig = key.sign(compute_login_root(chain_id, node_id, bytes.fromhex(ch["challenge"][2:])))
    params = [_hex(key.public_key.to_bytes()), ch["challenge"], _hex(sig)]
    session = await rpc.call("gm_authLogin", params)
    assert session["readAll"] is False and session["expiresMs"] > ch["expiresMs"] - 60_000
    replay = await rpc.error("gm_authLogin", params)
    assert replay["code"] == -32010


async def _exercise_reads(
    rpc: _Checked, first: SignedTx, second: SignedTx, refused: SignedTx, digest: bytes
) -> None:
    tx_id = _hex(first.tx_id)
    receipt = await rpc.call("gm_waitForReceipt", [tx_id, 10_000])
    assert receipt["pending"] is False and receipt["statusName"] == "OK"
    await rpc.call("gm_sendRawTransaction", [_hex(second.encode())])
    second_receipt = await rpc.call("gm_waitForReceipt", [_hex(second.tx_id), 10_000])
    assert second_receipt["statusName"] == "OK", second_receipt
    assert (await rpc.call("gm_getTransactionReceipt", [tx_id]))["txId"] == tx_id
    assert (await rpc.call("gm_getTransactionByHash", [tx_id]))["txId"] == tx_id
    unknown = _hex(sm3_hash(b"no such transaction"))
    assert await rpc.call("gm_getTransactionReceipt", [unknown]) is None
    assert await rpc.call("gm_getTransactionByHash", [unknown]) is None
    assert await rpc.call("gm_waitForReceipt", [unknown, 0]) is None
    height = receipt["blockNumber"]
    full = await rpc.call("gm_getBlockByNumber", [height, True])
    assert full["transactions"][receipt["transactionIndex"]]["pending"] is False
    ids = await rpc.call("gm_getBlockByNumber", [height])
    assert await rpc.call("gm_getBlockByHash", [ids["hash"], True]) == full
    await rpc.call("gm_getBlockByHash", [ids["hash"]])
    assert await rpc.call("gm_getBlockByNumber", [10**9]) is None
    assert await rpc.call("gm_getBlockByHash", [unknown]) is None

    # Every query of the system contracts, each rendered by its declared shape.
    record = await rpc.call("gm_call", ["evidence", "get", ["oc-1"]])
    assert record["recordId"] == "oc-1" and record["dataDigest"] == _hex(digest)
    assert record["metadata"] == {"investor": "alice"}
    assert await rpc.call("gm_call", ["evidence", "get", ["nope"]]) is None
    flow = await rpc.call("gm_call", ["evidence", "flow", ["oc-flow"]])
    assert [r["recordId"] for r in flow["records"]] == ["oc-1", "oc-2"]
    assert await rpc.call("gm_call", ["evidence", "by_digest", [_hex(digest)]]) == ["oc-1"]
    verified = await rpc.call("gm_call", ["evidence", "verify_flow", ["oc-flow"], True])
    assert verified["value"]["intact"] is True and verified["answeredAt"] >= height
    account = await rpc.call("gm_call", ["membership", "get", [record["submitter"]]])
    assert account["address"] == record["submitter"]
    listed = await rpc.call("gm_call", ["membership", "list", [account["org"]]])
    assert account in listed

    head = await rpc.call("gm_blockNumber")
    bundle = await rpc.call("gm_getTransactionProof", [tx_id])
    assert bundle["tx_id"] == tx_id
    await rpc.call("gm_getTransactionProof", [tx_id, head])
    await rpc.call("gm_getConsistencyProof", [1, head])
    await rpc.call("gm_getCommitProof", [height])

    # Error objects have the documented members and a code the method declares.
    assert (await rpc.error("gm_sendRawTransaction", [_hex(refused.encode())]))["code"] == -31003
    assert (await rpc.error("gm_getTransactionProof", [unknown]))["code"] == -31101
    assert (await rpc.error("gm_getConsistencyProof", [head, 1]))["code"] == -31103
    assert (await rpc.error("gm_call", ["nope", "get", []]))["code"] == -31102
    assert (await rpc.error("gm_blockNumber", ["extra"]))["code"] == -32602
    assert (await rpc.error("gm_subscribe", ["newHeads"]))["code"] == -32601  # over HTTP
    assert (await rpc.error("no_such_method"))["code"] == -32601


async def _exercise_crosschain(rpc: _Checked) -> None:
    """The cross-chain reads (node/rpcxc.py) on a chain with no foreign chain registered and no
    relay rule: nothing is there; bad params are refused before any query runs."""
    for method, params in (
        ("gm_getCrossChainClient", ["no-such-chain"]),
        ("gm_getRelayedRecord", ["no-such-chain", 1]),
        ("gm_getRelayedRecord", {"chainId": "no-such-chain", "key": "oc-1"}),
        ("gm_getAck", ["oc-1"]),
    ):
        assert await rpc.call(method, params) is None, method
    arrivals = await rpc.call("gm_getArrivals", ["no-such-chain", 5])
    assert (arrivals["contiguous"], arrivals["count"], arrivals["missing"]) == (0, 0, [])
    assert await rpc.call("gm_getOutbox", [1, 10]) == {"count": 0, "packets": []}
    for method, params in (
        ("gm_getArrivals", ["x", 0]),
        ("gm_getArrivals", ["x", 1001]),
        ("gm_getRelayedRecord", ["x", 0]),
        ("gm_getRelayedRecord", ["x", True]),
        ("gm_getOutbox", [0]),
    ):
        assert (await rpc.error(method, params))["code"] == -32602, (method, params)


async def _exercise_governance(rpc: _Checked, key: Any, chain_id: str) -> None:
    """The governance and epoch methods, after a real proposal changed the epoch."""
    committee = await rpc.call("gm_getCommittee")
    assert committee["thresholds"] == [2, 3, 2, 3]
    before = await rpc.call("gm_getEpoch")
    assert await rpc.call("gm_getProposal", [1]) is None
    status = await rpc.call("gm_status")
    for method, args in (
        ("propose", propose_args("set_param", ["block_max_txs", 4000], status["height"] + 100)),
        ("vote", vote_args(1, True)),
    ):
        tx = sign_tx(
            key,
            chain_id=chain_id,
            expiry=status["height"] + 50,
            contract="governance",
            method=method,
            args=args,
        )
        await rpc.call("gm_sendRawTransaction", [_hex(tx.encode())])
        receipt = await rpc.call("gm_waitForReceipt", [_hex(tx.tx_id), 10_000])
        assert receipt["statusName"] == "OK", receipt
    proposal = await rpc.call("gm_getProposal", [1])
    assert proposal["status"] == "executed"
    assert await rpc.call("gm_getProposals", ["executed", 10]) == [proposal]
    assert await rpc.call("gm_getProposals") == [proposal]
    epoch = await rpc.call("gm_getEpoch")
    assert epoch["epoch"] == before["epoch"] + 1 and epoch["params"]["block_max_txs"] == 4000
    await rpc.call("gm_getValidators")
    await rpc.call("gm_getValidators", [0])
    assert await rpc.call("gm_getEpochProof", [epoch["epoch"]]) == {
        "from_epoch": epoch["epoch"],
        "to_epoch": epoch["epoch"],
        "entries": [],
    }
    # A proof from genesis: an answer once the node stores epoch-ending certificates (the chain
    # library's epoch records), -31101 on a node that does not hold them; either one validated.
    proof = await rpc.reply("gm_getEpochProof", [0])
    assert "result" in proof or proof["error"]["code"] == -31101, proof
    assert (await rpc.error("gm_getEpochProof", [0, 99]))["code"] == -31103
    assert (await rpc.error("gm_getValidators", [10**9]))["code"] == -31103
    assert (await rpc.error("gm_getProposals", ["nope"]))["code"] == -32602
    for query, args in (("proposal", [1]), ("committee", []), ("current_epoch", [])):
        await rpc.call("gm_call", ["governance", query, args])
    await rpc.call("gm_call", ["governance", "proposals", [None, 5]])
    config = await rpc.call("gm_call", ["governance", "epoch_config", [epoch["epoch"]]])
    assert config["params"]["block_max_txs"] == 4000

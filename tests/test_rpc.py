"""Every JSON-RPC method of node/rpc.py through a real socket, against the fake node.

Covers: each method's result shape and values (computed from the fake's real ledger objects, never
hard-coded), positional and named params, proofs verified with ledger.merkle, gm_call's
schema-driven bytes conversion, /metrics, /health, rpc.discover and the OpenRPC document.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.jsonfmt import contracts_to_json, hex0x, parse_hex
from gmchain.ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from gmchain.ledger.types import BlockHeader, compute_signing_root
from gmchain.node.api import ErrorCode
from gmchain.node.rpc import METHODS, RpcConfig, RpcServer, load_openrpc
from tests.test_rpc_fake import FakeNode, make_tx

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return PrivateKey.generate()


class Rpc:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        self.next_id = 0

    async def raw(self, body: Any, path: str = "/") -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}  # what the server requires (fault 15)
        async with self.session.post(self.base + path, data=data, headers=headers) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text else None)

    async def reply(self, method: str, params: Any = None) -> dict[str, Any]:
        self.next_id += 1
        req_id = self.next_id
        req: dict[str, Any] = {"jsonrpc": "2.0", "id": req_id, "method": method}
        if params is not None:
            req["params"] = params
        status, reply = await self.raw(req)
        assert status == 200
        assert reply["id"] == req_id and reply["jsonrpc"] == "2.0"
        return reply

    async def call(self, method: str, params: Any = None) -> Any:
        reply = await self.reply(method, params)
        assert "error" not in reply, reply
        return reply["result"]

    async def error(self, method: str, params: Any = None) -> dict[str, Any]:
        reply = await self.reply(method, params)
        assert "result" not in reply, reply
        assert isinstance(reply["error"]["code"], int)
        return reply["error"]


@pytest.fixture
async def env() -> AsyncIterator[tuple[FakeNode, RpcServer, Rpc]]:
    node = FakeNode()
    server = RpcServer(node, host="127.0.0.1", port=0, config=RpcConfig.minimal())
    await server.start()
    async with aiohttp.ClientSession() as session:
        yield node, server, Rpc(session, f"http://127.0.0.1:{server.port}")
    await server.stop()


async def _commit_one(node: FakeNode, rpc: Rpc, key: PrivateKey, nonce: int, rid: str) -> bytes:
    tx = make_tx(key, nonce=nonce, expiry=node.height() + 5, record_id=rid)
    tx_id = await rpc.call("gm_sendRawTransaction", [hex0x(tx.encode())])
    node.commit()
    return parse_hex(tx_id, 32)


async def test_node_info_status_height(env: Any) -> None:
    node, _server, rpc = env
    info = await rpc.call("gm_nodeInfo")
    st = node.status()
    assert info["chainId"] == st.chain_id and info["genesisHash"] == hex0x(st.genesis)
    assert info["limits"]["maxBatch"] == RpcConfig.minimal().max_batch
    status = await rpc.call("gm_status", [])
    assert status["height"] == node.height() and status["head"] == hex0x(st.head)
    node.commit()
    assert await rpc.call("gm_blockNumber") == node.height() == 1
    count = await rpc.call("gm_getTotalTransactionCount", {})
    assert count == {"transactionCount": len(node.acc), "blockNumber": node.height()}


async def test_send_get_tx_and_receipt(env: Any, key: PrivateKey) -> None:
    node, _, rpc = env
    tx = make_tx(key, nonce=7, expiry=5, record_id="rec-7")
    tx_id = await rpc.call("gm_sendRawTransaction", [hex0x(tx.encode())])
    assert tx_id == hex0x(tx.tx_id)
    pending = {"txId": tx_id, "pending": True}
    assert await rpc.call("gm_getTransactionReceipt", [tx_id]) == pending
    assert await rpc.call("gm_getTransactionByHash", {"txId": tx_id}) == pending
    block = node.commit()
    got = await rpc.call("gm_getTransactionByHash", [tx_id])
    assert got["pending"] is False and got["blockHash"] == hex0x(block.block_id)
    assert parse_hex(got["raw"]) == tx.encode() and got["args"] == ["rec-7", hex0x(b"\x11" * 32)]
    assert got["blockNumber"] == block.header.height and got["transactionIndex"] == 0
    rec = await rpc.call("gm_getTransactionReceipt", [tx_id])
    look = node.get_tx(tx.tx_id)
    assert look is not None
    assert rec["status"] == int(look.receipt.status) and rec["statusName"] == "OK"
    assert rec["result"] == ["rec-7", hex0x(b"\x11" * 32)]
    assert rec["events"][0]["name"] == "EvidenceSubmitted"
    assert parse_hex(rec["raw"]) == look.receipt.encode()
    unknown = hex0x(bytes(32))
    assert await rpc.call("gm_getTransactionReceipt", [unknown]) is None
    assert await rpc.call("gm_getTransactionByHash", [unknown]) is None


async def test_blocks_by_number_and_hash(env: Any, key: PrivateKey) -> None:
    node, _, rpc = env
    await _commit_one(node, rpc, key, 1, "a")
    block = node.blocks[1]
    by_num = await rpc.call("gm_getBlockByNumber", [1])
    assert by_num["hash"] == hex0x(block.block_id)
    assert by_num["transactions"] == [hex0x(block.txs[0].tx_id)]
    # the header's raw bytes reproduce the block id (a client need not trust "hash")
    header = BlockHeader.decode(parse_hex(by_num["raw"]))
    assert hex0x(compute_signing_root("header", header.to_fields())) == by_num["hash"]
    full = await rpc.call("gm_getBlockByHash", {"hash": by_num["hash"], "fullTxs": True})
    assert full["transactions"][0]["txId"] == hex0x(block.txs[0].tx_id)
    assert full["accSize"] == block.header.acc_size and full["justify"]["height"] == 0
    assert await rpc.call("gm_getBlockByNumber", [99]) is None
    assert await rpc.call("gm_getBlockByHash", [hex0x(b"\x05" * 32)]) is None


async def test_wait_for_receipt(env: Any, key: PrivateKey) -> None:
    node, _, rpc = env
    tx = make_tx(key, nonce=3, expiry=5)
    await rpc.call("gm_sendRawTransaction", [hex0x(tx.encode())])
    assert await rpc.call("gm_waitForReceipt", [hex0x(tx.tx_id), 0]) is None
    node.commit()
    rec = await rpc.call("gm_waitForReceipt", {"txId": hex0x(tx.tx_id), "timeoutMs": 1000})
    assert rec["txId"] == hex0x(tx.tx_id) and rec["blockNumber"] == 1
    err = await rpc.error("gm_waitForReceipt", [hex0x(tx.tx_id), 10**6])
    assert err["code"] == ErrorCode.INVALID_PARAMS and "timeoutMs" in err["message"]


async def test_call_converts_bytes_by_schema(env: Any, key: PrivateKey) -> None:
    node, _, rpc = env
    await _commit_one(node, rpc, key, 1, "rec-a")
    digest = hex0x(b"\x11" * 32)
    # "rec-a" is a str arg; digest is a bytes32 arg and arrives as bytes (the fake checks types)
    record = await rpc.call("gm_call", ["evidence", "get", ["rec-a"]])
    assert record["recordId"] == "rec-a" and record["dataDigest"] == digest  # shaped: an object
    assert await rpc.call("gm_call", ["evidence", "by_digest", [digest]]) == ["rec-a"]
    items = [["0x01"], ["0xff"]]  # a list of 1-tuples of bytes (contracts.framework.Arg lists)
    assert await rpc.call("gm_call", ["evidence", "echo", [items]]) == [items]
    err = await rpc.error("gm_call", ["evidence", "by_digest", ["0x1234"]])
    assert err["code"] == ErrorCode.INVALID_PARAMS and "data_digest" in err["message"]
    err = await rpc.error("gm_call", ["evidence", "by_digest", [1.5]])
    assert err["code"] == ErrorCode.INVALID_PARAMS
    err = await rpc.error("gm_call", ["evidence", "get", [{"a": 1}]])
    assert err["code"] == ErrorCode.INVALID_PARAMS
    err = await rpc.error("gm_call", ["nope", "get", []])
    assert err["code"] == ErrorCode.UNKNOWN_CONTRACT
    err = await rpc.error("gm_call", ["evidence", "get", [1]])
    assert err["code"] == ErrorCode.QUERY_FAILED
    assert "internal" in (await rpc.error("gm_call", ["evidence", "boom"]))["message"]
    assert await rpc.call("gm_blockNumber") == node.height()  # still running after the bug


async def test_tx_proof_verifies(env: Any, key: PrivateKey) -> None:
    node, _, rpc = env
    ids = [await _commit_one(node, rpc, key, n, f"r{n}") for n in range(1, 5)]
    for at in (None, 4):
        params: list[Any] = [hex0x(ids[1])] + ([] if at is None else [at])
        proof = await rpc.call("gm_getTransactionProof", params)
        header = BlockHeader.decode(parse_hex(proof["header"]))
        assert parse_hex(proof["acc_root"]) == header.acc_root
        assert verify_inclusion(
            leaf_hash(ids[1]),
            proof["acc_index"],
            proof["acc_size"],
            [parse_hex(p) for p in proof["acc_inclusion_proof"]],
            header.acc_root,
        )
        block = await rpc.call("gm_getBlockByNumber", [proof["height"]])
        assert verify_inclusion(
            leaf_hash(ids[1]),
            proof["index_in_block"],
            block["txCount"],
            [parse_hex(p) for p in proof["block_inclusion_proof"]],
            parse_hex(block["txRoot"]),
        )
    err = await rpc.error("gm_getTransactionProof", [hex0x(bytes(32))])
    assert err["code"] == ErrorCode.NOT_FOUND
    # The proof methods learn the caller's address (their per-client share keys on it).
    assert node.proof_clients and set(node.proof_clients) == {"127.0.0.1"}


async def test_consistency_and_commit_proof(env: Any, key: PrivateKey) -> None:
    node, _, rpc = env
    for n in range(1, 4):
        await _commit_one(node, rpc, key, n, f"c{n}")
    proof = await rpc.call("gm_getConsistencyProof", [1, 3])
    assert verify_consistency(
        proof["old_size"],
        proof["new_size"],
        parse_hex(proof["old_root"]),
        parse_hex(proof["new_root"]),
        [parse_hex(p) for p in proof["proof"]],
    )
    err = await rpc.error("gm_getConsistencyProof", [3, 1])
    assert err["code"] == ErrorCode.BAD_RANGE
    err = await rpc.error("gm_getConsistencyProof", [1, 50])
    assert err["code"] == ErrorCode.BAD_RANGE
    cert = await rpc.call("gm_getCommitProof", [1])
    assert cert["headers"] == [hex0x(node.blocks[1].header.encode())]
    assert (await rpc.error("gm_getCommitProof", [3]))["code"] == ErrorCode.NOT_FOUND


async def test_contracts_and_discover(env: Any) -> None:
    node, _, rpc = env
    assert await rpc.call("gm_contracts") == contracts_to_json(node.describe_contracts())
    doc = await rpc.call("rpc.discover")
    assert doc == load_openrpc() and doc["openrpc"].startswith("1.")


async def test_metrics_and_health(env: Any, key: PrivateKey) -> None:
    node, _server, rpc = env
    await _commit_one(node, rpc, key, 1, "m1")
    await rpc.error("gm_nope")
    async with rpc.session.get(rpc.base + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await resp.text()
    assert f"gmchain_height {node.height()}" in text
    assert 'gmchain_rpc_requests_total{method="gm_sendRawTransaction"} 1' in text
    assert f'gmchain_rpc_errors_total{{code="{int(ErrorCode.METHOD_NOT_FOUND)}"}} 1' in text
    async with rpc.session.get(rpc.base + "/health") as resp:
        assert resp.status == 200
        health = await resp.json()
    assert health["status"] == "ok" and health["height"] == node.height()


async def test_rpc_path_alias(env: Any) -> None:
    node, _, rpc = env
    status, reply = await rpc.raw({"jsonrpc": "2.0", "id": 1, "method": "gm_blockNumber"}, "/rpc")
    assert status == 200 and reply["result"] == node.height()


# --- the OpenRPC document ------------------------------------------------------------------


def test_openrpc_copies_identical() -> None:
    assert (ROOT / "docs" / "openrpc.json").read_bytes() == (
        ROOT / "node" / "openrpc.json"
    ).read_bytes()


def test_openrpc_matches_method_table() -> None:
    doc = load_openrpc()
    documented = {m["name"]: m for m in doc["methods"]}
    assert set(documented) == set(METHODS)
    for name, spec in METHODS.items():
        params = documented[name]["params"]
        assert [p["name"] for p in params] == [p.name for p in spec.params], name
        assert [p["required"] for p in params] == [p.required for p in spec.params], name
        assert documented[name]["errors"], name


def test_openrpc_error_codes_match() -> None:
    errors = load_openrpc()["components"]["errors"]
    codes = {e["code"] for e in errors.values()}
    assert codes == {int(c) for c in ErrorCode}
    refs = {r["$ref"].rsplit("/", 1)[1] for m in load_openrpc()["methods"] for r in m["errors"]}
    assert refs <= set(errors)

"""Read authentication (node/rpcauth.py, node/rpcsession.py; docs/rpc.md "Read authentication")
on a real node: an in-process NodeService (real LevelDB, real SM2 signatures, real consensus on
one validator) behind a real RpcServer socket with rpc_auth = "reads", and evidence of two orgs.

Covers: login (a good one; a bad signature, a replayed challenge, an expired challenge, an
expired token, an unknown account, a login signed for another chain id); every policy class
(public without a login, any account, org-scoped, readAll); an org user refused the other org's
record, flow, transaction, receipt, wait, proof, full block, ack and subscription events, and the
regulator reading all; refusals counted; nothing about the data in a refusal's message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.types import Genesis, GenesisValidator
from gmchain.node.api import ErrorCode
from gmchain.node.rpc import RpcConfig, RpcServer
from gmchain.node.rpcauth import CALL_POLICY, POLICY
from gmchain.node.rpcsession import CHALLENGE_TTL_MS, compute_login_root
from gmchain.node.rpcspec import load_openrpc
from tests.node_helpers import CHAIN_ID, TestNet, evidence_args, running_service, sign_tx

_FORBIDDEN = "forbidden: this data belongs to another org"


class Clock:
    """The RPC server's wall clock, moved by the test (sessions and challenges expire on it)."""

    def __init__(self) -> None:
        self.ms = 1_800_000_000_000

    def __call__(self) -> int:
        return self.ms


@dataclass
class Env:
    server: RpcServer
    service: Any
    clock: Clock
    url: str
    http: aiohttp.ClientSession
    keys: dict[str, PrivateKey]
    txs: dict[str, bytes]  # "org1" / "org2" -> the tx id of that org's evidence record
    heights: dict[str, int]

    async def reply(self, method: str, params: Any = None, token: str | None = None) -> Any:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        req = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
        async with self.http.post(self.url, json=req, headers=headers) as resp:
            return await resp.json()

    async def ok(self, method: str, params: Any = None, token: str | None = None) -> Any:
        reply = await self.reply(method, params, token)
        assert "result" in reply, reply
        return reply["result"]

    async def err(self, method: str, params: Any = None, token: str | None = None) -> int:
        reply = await self.reply(method, params, token)
        assert "error" in reply, reply
        code: int = reply["error"]["code"]
        if code == ErrorCode.FORBIDDEN:
            assert reply["error"]["message"] == _FORBIDDEN  # rule 3: nothing about the data
            assert "data" not in reply["error"]
        return code

    async def login(self, who: str, *, chain_id: str = CHAIN_ID) -> dict[str, Any]:
        key = self.keys[who]
        ch = await self.ok("gm_authChallenge")
        challenge = bytes.fromhex(ch["challenge"][2:])
        root = compute_login_root(chain_id, self.service.node_id, challenge)
        sig = key.sign(root)
        params = ["0x" + key.public_key.to_bytes().hex(), ch["challenge"], "0x" + sig.hex()]
        result: dict[str, Any] = await self.ok("gm_authLogin", params)
        return result


def _genesis(node: PrivateKey, keys: dict[str, PrivateKey]) -> Genesis:
    roles = {
        "admin1": ("org1", "admin"),
        "user1": ("org1", "member"),
        "admin2": ("org2", "admin"),
        "user2": ("org2", "member"),
        "reg": ("csrc", "regulator"),
    }
    return Genesis(
        chain_id=CHAIN_ID,
        timestamp_ms=1_700_000_000_000,
        validators=(GenesisValidator(pubkey=node.public_key.to_bytes(), power=1, org="org1"),),
        replay_window=50,
        accounts=tuple((keys[n].public_key.to_bytes(), o, r) for n, (o, r) in roles.items()),
    )


@pytest.fixture(scope="module")
def module_keys() -> dict[str, PrivateKey]:
    return {n: PrivateKey.generate() for n in ("admin1", "user1", "admin2", "user2", "reg", "x")}


@pytest.fixture
async def env(tmp_path: Path, module_keys: dict[str, PrivateKey]) -> AsyncIterator[Env]:
    node = PrivateKey.generate()
    net = TestNet(_genesis(node, module_keys), node, [], module_keys["x"])
    clock = Clock()
    async with running_service(tmp_path, net) as service:
        cfg = RpcConfig(auth="reads", session_ttl_s=900)
        server = RpcServer(service, host="127.0.0.1", port=0, config=cfg, clock_ms=clock)
        await server.start()
        try:
            txs, heights = {}, {}
            for org, who in (("org1", "user1"), ("org2", "user2")):
                tx = sign_tx(
                    module_keys[who],
                    expiry=service.height() + 20,
                    args=evidence_args(f"rec-{org}", f"flow-{org}", data=b"same data"),
                )
                tx_id = await service.submit_raw_tx(tx.encode())
                got = await service.wait_tx(tx_id, 20)
                assert got is not None and got[0].status == 0, got
                txs[org], heights[org] = tx_id, got[1]
            async with aiohttp.ClientSession() as http:
                url = f"http://127.0.0.1:{server.port}/"
                yield Env(server, service, clock, url, http, module_keys, txs, heights)
        finally:
            await server.stop()


def test_every_documented_method_is_classified() -> None:
    documented = {m["name"] for m in load_openrpc()["methods"]}
    assert set(POLICY) == documented
    views = set(load_openrpc_views())
    assert set(CALL_POLICY) <= views  # (views not listed are readAll)


def load_openrpc_views() -> list[str]:
    call = next(m for m in load_openrpc()["methods"] if m["name"] == "gm_call")
    return list(call["x-results"])


# --- login ---------------------------------------------------------------------------------


async def test_login_answers_org_role_and_read_all(env: Env) -> None:
    user = await env.login("user1")
    assert (user["org"], user["role"], user["readAll"]) == ("org1", "member", False)
    assert user["expiresMs"] == env.clock.ms + 900_000
    reg = await env.login("reg")
    assert (reg["org"], reg["role"], reg["readAll"]) == ("csrc", "regulator", True)


async def test_login_refusals(env: Env) -> None:
    key = env.keys["user1"]
    pub = "0x" + key.public_key.to_bytes().hex()

    async def attempt(sign_with: PrivateKey, chain_id: str = CHAIN_ID, ch: Any = None) -> Any:
        ch = ch or await env.ok("gm_authChallenge")
        challenge = bytes.fromhex(ch["challenge"][2:])
        sig = sign_with.sign(compute_login_root(chain_id, env.service.node_id, challenge))
        who = "0x" + sign_with.public_key.to_bytes().hex()
        return await env.reply("gm_authLogin", [who, ch["challenge"], "0x" + sig.hex()]), ch

    # a signature by another key over the right root, presented with user1's public key
    ch = await env.ok("gm_authChallenge")
    challenge = bytes.fromhex(ch["challenge"][2:])
    other = env.keys["user2"].sign(compute_login_root(CHAIN_ID, env.service.node_id, challenge))
    bad = await env.reply("gm_authLogin", [pub, ch["challenge"], "0x" + other.hex()])
    assert bad["error"]["code"] == ErrorCode.LOGIN_REQUIRED
    assert "signature" in bad["error"]["message"]
    # signed for another chain id: the same refusal
    reply, _ = await attempt(key, chain_id="another-chain")
    assert "signature" in reply["error"]["message"]
    # an unknown account
    reply, _ = await attempt(env.keys["x"])
    assert reply["error"]["code"] == ErrorCode.LOGIN_REQUIRED
    assert "account" in reply["error"]["message"]
    # a replayed challenge: the first use succeeds, the second finds nothing
    reply, ch = await attempt(key)
    assert "result" in reply
    again, _ = await attempt(key, ch=ch)
    assert again["error"]["code"] == ErrorCode.LOGIN_REQUIRED
    assert "challenge" in again["error"]["message"]
    # an expired challenge
    ch = await env.ok("gm_authChallenge")
    env.clock.ms += CHALLENGE_TTL_MS
    late, _ = await attempt(key, ch=ch)
    assert "challenge" in late["error"]["message"]
    assert env.server.metrics.errors[ErrorCode.LOGIN_REQUIRED] == 5


async def test_expired_or_unknown_token(env: Env) -> None:
    token = (await env.login("user1"))["token"]
    rec = ["evidence", "get", ["rec-org1"]]
    assert (await env.ok("gm_call", rec, token))["org"] == "org1"
    assert await env.err("gm_call", rec, "0x" + "00" * 32) == ErrorCode.TOKEN_INVALID
    assert await env.err("gm_call", rec, "0xnothex") == ErrorCode.TOKEN_INVALID
    env.clock.ms += 900_000
    assert await env.err("gm_call", rec, token) == ErrorCode.TOKEN_INVALID
    assert await env.err("gm_call", rec) == ErrorCode.LOGIN_REQUIRED


# --- the policy classes --------------------------------------------------------------------


async def test_public_methods_need_no_login(env: Env) -> None:
    h = env.heights["org2"]
    assert (await env.ok("gm_getBlockByNumber", [h]))["number"] == h
    for method in ("gm_status", "gm_blockNumber", "gm_nodeInfo", "gm_getCommittee", "gm_getEpoch"):
        await env.ok(method)
    await env.ok("gm_getCommitProof", [h])
    assert await env.err("gm_getBlockByNumber", [h, True]) == ErrorCode.LOGIN_REQUIRED
    assert await env.err("gm_getProposals") == ErrorCode.LOGIN_REQUIRED


async def test_any_account_reads_membership_and_governance(env: Env) -> None:
    token = (await env.login("user1"))["token"]
    await env.ok("gm_getProposals", [], token)
    address = "0x" + env.keys["user2"].public_key.address.hex()
    got = await env.ok("gm_call", ["membership", "get", [address]], token)
    assert got["org"] == "org2"
    assert await env.ok("gm_call", ["governance", "current_epoch", []], token) == 0


async def test_org_user_reads_own_org_and_is_refused_the_other(env: Env) -> None:
    token = (await env.login("user1"))["token"]
    mine, theirs = "0x" + env.txs["org1"].hex(), "0x" + env.txs["org2"].hex()
    before = env.server.metrics.errors[ErrorCode.FORBIDDEN]
    reads: list[tuple[str, Any, Any]] = [
        ("gm_getTransactionByHash", [mine], [theirs]),
        ("gm_getTransactionReceipt", [mine], [theirs]),
        ("gm_waitForReceipt", [mine, 0], [theirs, 0]),
        ("gm_getTransactionProof", [mine], [theirs]),
        ("gm_call", ["evidence", "get", ["rec-org1"]], ["evidence", "get", ["rec-org2"]]),
        ("gm_call", ["evidence", "flow", ["flow-org1"]], ["evidence", "flow", ["flow-org2"]]),
        (
            "gm_call",
            ["evidence", "verify_flow", ["flow-org1"]],
            ["evidence", "verify_flow", ["flow-org2"]],
        ),
        (
            "gm_call",
            ["evidence", "get", ["rec-org1"], True],
            ["evidence", "get", ["rec-org2"], True],
        ),
        ("gm_getAck", ["rec-org1"], ["rec-org2"]),
    ]
    for method, own, other in reads:
        await env.ok(method, own, token)
        assert await env.err(method, other, token) == ErrorCode.FORBIDDEN, (method, other)
    assert env.server.metrics.errors[ErrorCode.FORBIDDEN] == before + len(reads)
    # full blocks are the regulator's; headers are public
    assert await env.err("gm_getBlockByNumber", [1, True], token) == ErrorCode.FORBIDDEN
    # a digest shared by both orgs' records: only the caller's org's ids
    digest = (
        "0x" + (await env.ok("gm_call", ["evidence", "get", ["rec-org1"]], token))["dataDigest"][2:]
    )
    assert await env.ok("gm_call", ["evidence", "by_digest", [digest]], token) == ["rec-org1"]
    assert await env.err("gm_getArrivals", ["other-chain"], token) == ErrorCode.FORBIDDEN
    assert await env.err("gm_call", ["evidence", "outbox", []], token) == ErrorCode.FORBIDDEN


async def test_regulator_reads_every_org(env: Env) -> None:
    token = (await env.login("reg"))["token"]
    for org in ("org1", "org2"):
        tx = "0x" + env.txs[org].hex()
        got = await env.ok("gm_getTransactionByHash", [tx], token)
        assert got["txId"] == tx
        await env.ok("gm_getTransactionProof", [tx], token)
        assert (await env.ok("gm_call", ["evidence", "get", [f"rec-{org}"]], token))["org"] == org
        full = await env.ok("gm_getBlockByNumber", [env.heights[org], True], token)
        assert tx in [t["txId"] for t in full["transactions"]]
    digest_of = await env.ok("gm_call", ["evidence", "get", ["rec-org1"]], token)
    ids = await env.ok("gm_call", ["evidence", "by_digest", [digest_of["dataDigest"]]], token)
    assert sorted(ids) == ["rec-org1", "rec-org2"]


async def test_subscription_events_only_of_the_callers_org(env: Env) -> None:
    token = (await env.login("user1"))["token"]
    ws_url = env.url.replace("http://", "ws://") + "ws"
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        env.http.ws_connect(ws_url, headers=headers) as ws,
        env.http.ws_connect(ws_url) as anon,
    ):
        await ws.send_json(
            {"jsonrpc": "2.0", "id": 1, "method": "gm_subscribe", "params": ["events"]}
        )
        assert "result" in json.loads((await ws.receive()).data)
        await anon.send_json(
            {"jsonrpc": "2.0", "id": 1, "method": "gm_subscribe", "params": ["events"]}
        )
        refused = json.loads((await anon.receive()).data)
        assert refused["error"]["code"] == ErrorCode.LOGIN_REQUIRED
        await anon.send_json(
            {"jsonrpc": "2.0", "id": 2, "method": "gm_subscribe", "params": ["newHeads"]}
        )
        assert "result" in json.loads((await anon.receive()).data)
        committed = {}
        for org, who in (("org2", "user2"), ("org1", "user1")):  # the other org's first
            tx = sign_tx(
                env.keys[who],
                expiry=env.service.height() + 20,
                args=evidence_args(f"rec-{org}-b", f"flow-{org}-b"),
            )
            committed[org] = await env.service.submit_raw_tx(tx.encode())
            assert await env.service.wait_tx(committed[org], 20) is not None
        note = json.loads((await asyncio.wait_for(ws.receive(), 20)).data)
        assert note["params"]["result"]["txId"] == "0x" + committed["org1"].hex()
        head = json.loads((await asyncio.wait_for(anon.receive(), 20)).data)
        assert head["method"] == "gm_subscription"


async def test_subscription_ends_when_its_login_expires(env: Env) -> None:
    token = (await env.login("user1"))["token"]
    ws_url = env.url.replace("http://", "ws://") + "ws"
    headers = {"Authorization": f"Bearer {token}"}
    async with env.http.ws_connect(ws_url, headers=headers) as ws:
        req = {"jsonrpc": "2.0", "id": 1, "method": "gm_subscribe", "params": ["events"]}
        await ws.send_json(req)
        assert "result" in json.loads((await ws.receive()).data)
        assert env.server.metrics.subscriptions == 1
        env.clock.ms += 900_000  # the token expires
        tx = sign_tx(
            env.keys["user1"],
            expiry=env.service.height() + 20,
            args=evidence_args("rec-org1-late", "flow-org1-late"),
        )
        tx_id = await env.service.submit_raw_tx(tx.encode())
        assert await env.service.wait_tx(tx_id, 20) is not None
        for _ in range(200):
            if env.server.metrics.subscriptions == 0:
                break
            await asyncio.sleep(0.05)
        assert env.server.metrics.subscriptions == 0  # ended without a notification
        await ws.send_json({**req, "id": 2})
        again = json.loads((await ws.receive()).data)
        assert again["error"]["code"] == ErrorCode.TOKEN_INVALID

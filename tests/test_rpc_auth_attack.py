"""Attacks on the read authentication as a firm's user (org1) after org2's data, on the real
in-process node of tests/test_rpc_auth.py (real LevelDB, SM2, consensus, sockets).

Each test is one finding of the attack pass (issue 14 item 2), failing before its fix:
- a revoked account's token, or the token of an account whose org governance removed, kept
  reading until it expired; and such an account could log in again while its org was removed;
- login challenges were bounded per raw client address, so one IPv6 host (its /64) could hold
  every challenge slot of the node;
- two Authorization headers: the first was used (a proxy that checks the last one disagrees);
- a login with a key that is no account cost an SM2 verification on the workers admission
  shares, and its refusal told which keys are accounts;
- a revoked account's events subscription, and a regulator's after its login expired, went on;
- and a scan of every view and method aimed at org2's ids (it found nothing: a regression test).
Two findings are not fixed, as strict xfails: the receipts of one's own failed transactions
name other orgs' flows and records (the messages are part of the committed receipt: a contract
change, not an RPC one), and -32012 versus null tells whether another org's record id exists.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import msgpack
import pytest

from gmchain.node.api import ErrorCode
from gmchain.node.rpcauth import AuthMethods
from gmchain.node.rpcmethods import CLIENT_ADDRESS
from gmchain.node.rpcsession import CHALLENGES_PER_CLIENT, Sessions, compute_login_root
from gmchain.node.rpcspec import RpcError
from tests import test_rpc_auth as _base
from tests.node_helpers import evidence_args, sign_tx
from tests.test_rpc_auth import Env

env = _base.env  # the fixtures of tests/test_rpc_auth.py: a real node, org1 and org2 records
module_keys = _base.module_keys

_REC1 = ["evidence", "get", ["rec-org1"]]


async def _commit(env: Env, who: str, contract: str, method: str, args: list[Any]) -> Any:
    tx = sign_tx(
        env.keys[who],
        expiry=env.service.height() + 20,
        contract=contract,
        method=method,
        args=args,
    )
    tx_id = await env.service.submit_raw_tx(tx.encode())
    got = await env.service.wait_tx(tx_id, 20)
    assert got is not None
    return got[0]


async def test_a_revoked_accounts_token_stops_reading(env: Env) -> None:
    token = (await env.login("user1"))["token"]
    assert (await env.ok("gm_call", _REC1, token))["org"] == "org1"
    address = env.keys["user1"].public_key.address
    receipt = await _commit(env, "admin1", "membership", "revoke", [address])
    assert receipt.status == 0, receipt
    assert await env.err("gm_call", _REC1, token) == ErrorCode.TOKEN_INVALID
    assert await env.err("gm_getProposals", [], token) == ErrorCode.TOKEN_INVALID


async def test_an_account_of_a_removed_org_cannot_read(env: Env) -> None:
    token = (await env.login("user2"))["token"]
    rec2 = ["evidence", "get", ["rec-org2"]]
    assert (await env.ok("gm_call", rec2, token))["org"] == "org2"
    args = msgpack.packb(["org2"], use_bin_type=True)
    expiry = env.service.height() + 30
    r = await _commit(env, "admin1", "governance", "propose", ["remove_org", args, expiry])
    assert r.status == 0, r
    pid = r.result
    if (await env.ok("gm_getProposal", [pid], (await env.login("reg"))["token"]))[
        "status"
    ] == "open":
        r = await _commit(env, "admin1", "governance", "vote", [pid, True])
        assert r.status == 0, r
    assert await env.err("gm_call", rec2, token) == ErrorCode.TOKEN_INVALID
    refused = await _login_reply(env, "user2")
    assert refused["error"]["code"] == ErrorCode.LOGIN_REQUIRED, refused


async def _login_reply(env: Env, who: str) -> Any:
    key = env.keys[who]
    ch = await env.ok("gm_authChallenge")
    root = compute_login_root(
        env.service.status().chain_id, env.service.node_id, bytes.fromhex(ch["challenge"][2:])
    )
    params = ["0x" + key.public_key.to_bytes().hex(), ch["challenge"], "0x" + key.sign(root).hex()]
    return await env.reply("gm_authLogin", params)


async def test_challenges_are_bounded_per_ipv6_64(env: Env) -> None:
    methods = AuthMethods(env.service, Sessions(ttl_ms=900_000), lambda: env.clock.ms)
    handler = methods.handlers()["gm_authChallenge"]
    for i in range(CHALLENGES_PER_CLIENT):
        CLIENT_ADDRESS.set(f"2001:db8:1:2::{i + 1:x}")
        await handler({}, None)
    CLIENT_ADDRESS.set("2001:db8:1:2::ffff")  # the same /64
    with pytest.raises(RpcError) as busy:
        await handler({}, None)
    assert busy.value.code == ErrorCode.RATE_LIMITED
    CLIENT_ADDRESS.set("2001:db8:1:3::1")  # another /64 still gets one
    assert (await handler({}, None))["challenge"].startswith("0x")


async def test_header_tricks(env: Env) -> None:
    token = (await env.login("user1"))["token"]
    req = {"jsonrpc": "2.0", "id": 1, "method": "gm_call", "params": _REC1}

    async def post(headers: Any, url: str = env.url) -> Any:
        async with env.http.post(url, json=req, headers=headers) as resp:
            return json.loads(await resp.text())

    assert "result" in await post({"Authorization": f"bearer {token}"})  # RFC 7235: any case
    no_0x = await post({"Authorization": f"Bearer {token[2:]}"})
    assert no_0x["error"]["code"] == ErrorCode.TOKEN_INVALID
    in_query = await post({}, url=f"{env.url}?token={token}&access_token={token}")
    assert in_query["error"]["code"] == ErrorCode.LOGIN_REQUIRED
    # two Authorization headers, either order: refused as malformed, never "the first wins"
    for pair in ((token, "0x" + "00" * 32), ("0x" + "00" * 32, token)):
        two = await post(
            [("Authorization", f"Bearer {pair[0]}"), ("Authorization", f"Bearer {pair[1]}")]
        )
        assert two["error"]["code"] == ErrorCode.TOKEN_INVALID, two


@pytest.mark.xfail(
    strict=True, reason="finding: contract errors in one's own receipts name other orgs' data"
)
async def test_own_receipts_do_not_name_other_orgs_data(env: Env) -> None:
    # org1's user extends its own flow naming org2's record as prev: the refusal names org2's flow
    ok = await _commit(
        env,
        "user1",
        "evidence",
        "submit",
        evidence_args("rec-org1-2", "flow-org1", prev="rec-org1"),
    )
    assert ok.status == 0, ok
    probe = await _commit(
        env,
        "user1",
        "evidence",
        "submit",
        evidence_args("rec-org1-3", "flow-org1", prev="rec-org2"),
    )
    onto = await _commit(
        env, "user1", "evidence", "submit", evidence_args("rec-org1-4", "flow-org2")
    )
    assert "flow-org2" not in probe.error, probe.error
    assert "org2" not in onto.error, onto.error


async def test_a_login_of_no_account_costs_no_signature_check(env: Env) -> None:
    """As admission (R8 before R9): an unknown key is refused before the SM2 verification, so an
    anonymous client cannot keep the verify workers that admission shares busy; and the refusal
    is the same as a bad signature's, so it does not tell which keys are accounts."""
    real = env.service.verify_signature
    calls: list[bytes] = []

    async def counting(pubkey: bytes, root: bytes, signature: bytes) -> bool:
        calls.append(pubkey)
        return bool(await real(pubkey, root, signature))

    env.service.verify_signature = counting
    try:
        unknown = await _login_reply(env, "x")
        assert calls == []
        # user1's key with x's signature: a bad signature of an account
        ch = await env.ok("gm_authChallenge")
        root = compute_login_root(
            env.service.status().chain_id, env.service.node_id, bytes.fromhex(ch["challenge"][2:])
        )
        pub = "0x" + env.keys["user1"].public_key.to_bytes().hex()
        sig = "0x" + env.keys["x"].sign(root).hex()
        bad = await env.reply("gm_authLogin", [pub, ch["challenge"], sig])
        assert len(calls) == 1
    finally:
        del env.service.verify_signature
    assert unknown["error"] == bad["error"], (unknown, bad)
    assert bad["error"]["code"] == ErrorCode.LOGIN_REQUIRED


async def test_a_revoked_accounts_subscription_ends(env: Env) -> None:
    token = (await env.login("user1"))["token"]
    ws_url = env.url.replace("http://", "ws://") + "ws"
    async with env.http.ws_connect(ws_url, headers={"Authorization": f"Bearer {token}"}) as ws:
        req = {"jsonrpc": "2.0", "id": 1, "method": "gm_subscribe", "params": ["events"]}
        await ws.send_json(req)
        assert "result" in json.loads((await ws.receive()).data)
        address = env.keys["user1"].public_key.address
        assert (await _commit(env, "admin1", "membership", "revoke", [address])).status == 0
        late = await _commit(
            env, "admin1", "evidence", "submit", evidence_args("rec-org1-late", "flow-org1-late")
        )
        assert late.status == 0, late
        for _ in range(200):
            if env.server.metrics.subscriptions == 0:
                break
            await asyncio.sleep(0.05)
        assert env.server.metrics.subscriptions == 0
        # nothing of org1 after the revoking block reached the revoked account
        while True:
            try:
                msg = await asyncio.wait_for(ws.receive(), 0.5)
            except TimeoutError:
                break
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            note = json.loads(msg.data)["params"]["result"]
            assert note["name"] != "EvidenceSubmitted", note


_OPEN_TO_ACCOUNTS = ("membership.", "governance.")  # docs/rpc.md: any logged-in account


def _crafted(arg: dict[str, Any], org2: dict[str, str]) -> list[Any]:
    """Values aimed at org2's data for one argument of gm_contracts' schema."""
    kind = arg["type"]
    if kind == "str":
        if "choices" in arg:
            return list(arg["choices"])[:2]
        return [org2["record"], org2["flow"], "org2", org2["chain"]]
    if kind == "bytes":
        return {32: [org2["tx"], org2["digest"]], 20: [org2["address"]]}.get(arg.get("size"), [])
    if kind == "int":
        return [max(arg["min"], 0), max(arg["min"], 1)]
    if kind == "bool":
        return [True]
    return []


async def test_no_view_or_method_answers_org2_data_to_org1(env: Env) -> None:
    """Every gm_call view with args aimed at org2's record, flow, tx, digest and address, and
    every other method with org2's ids, in JSON-RPC batches that mix them with a login and
    public methods: no answer or error (message or data) to org1's user carries org2's ids,
    except the membership and governance views docs/rpc.md opens to every account."""
    reg = (await env.login("reg"))["token"]
    rec2 = await env.ok("gm_call", ["evidence", "get", ["rec-org2"]], reg)
    tx2 = "0x" + env.txs["org2"].hex()
    org2 = {
        "record": "rec-org2",
        "flow": "flow-org2",
        "chain": env.service.status().chain_id,
        "tx": tx2,
        "digest": rec2["dataDigest"],
        "address": "0x" + env.keys["user2"].public_key.address.hex(),
    }
    secrets = ["rec-org2", "flow-org2", tx2[2:], rec2["recordHash"][2:]]
    token = (await env.login("user1"))["token"]
    contracts = (await env.ok("gm_contracts"))["contracts"]
    requests: list[tuple[str, Any]] = []
    for contract in contracts:
        for m in contract["methods"]:
            view = f"{contract['name']}.{m['name']}"
            if m["kind"] != "query" or view.startswith(_OPEN_TO_ACCOUNTS):
                continue
            required = [a for a in m["args"] if not a.get("optional")]
            choices = [_crafted(a, org2) for a in required]
            if any(not c for c in choices):
                continue
            for i in range(max((len(c) for c in choices), default=1)):
                args = [c[i % len(c)] for c in choices]
                for with_height in (False, True):
                    requests.append(("gm_call", [contract["name"], m["name"], args, with_height]))
    h2 = env.heights["org2"]
    block = await env.ok("gm_getBlockByNumber", [h2])
    requests += [
        ("gm_getTransactionByHash", [tx2]),
        ("gm_getTransactionReceipt", [tx2]),
        ("gm_waitForReceipt", {"txId": tx2, "timeoutMs": 0}),
        ("gm_getTransactionProof", [tx2]),
        ("gm_getTransactionProof", [tx2, h2]),
        ("gm_getBlockByNumber", [h2, True]),
        ("gm_getBlockByHash", [block["hash"], True]),
        ("gm_getRelayedRecord", [org2["chain"], "rec-org2"]),
        ("gm_getRelayedRecord", [org2["chain"], 1]),
        ("gm_getOutbox", []),
        ("gm_getAck", ["rec-org2"]),
        ("gm_getArrivals", [org2["chain"]]),
        ("gm_getCrossChainClient", [org2["chain"]]),
    ]
    assert len(requests) > 40
    seen: list[Any] = []
    for start in range(0, len(requests), 90):
        batch: list[dict[str, Any]] = [
            {"jsonrpc": "2.0", "id": "challenge", "method": "gm_authChallenge", "params": []},
            {"jsonrpc": "2.0", "id": "status", "method": "gm_status", "params": []},
        ]
        for i, (method, params) in enumerate(requests[start : start + 90]):
            batch.append({"jsonrpc": "2.0", "id": start + i, "method": method, "params": params})
        headers = {"Authorization": f"Bearer {token}"}
        async with env.http.post(env.url, json=batch, headers=headers) as resp:
            text = await resp.text()
        replies = json.loads(text)
        assert len(replies) == len(batch)
        for leaked in secrets:
            assert leaked not in text, [r for r in replies if leaked in json.dumps(r)][:3]
        seen += replies
    codes = {r["error"]["code"] for r in seen if "error" in r}
    assert ErrorCode.FORBIDDEN in codes  # not vacuous: the aimed reads were refused


async def test_a_regulators_subscription_ends_when_its_login_expires(env: Env) -> None:
    """docs/rpc.md: a WebSocket's subscriptions end when its token expires — for the regulator
    (readAll) too, whose events subscription used no per-event check at all."""
    token = (await env.login("reg"))["token"]
    ws_url = env.url.replace("http://", "ws://") + "ws"
    async with env.http.ws_connect(ws_url, headers={"Authorization": f"Bearer {token}"}) as ws:
        req = {"jsonrpc": "2.0", "id": 1, "method": "gm_subscribe", "params": ["events"]}
        await ws.send_json(req)
        assert "result" in json.loads((await ws.receive()).data)
        env.clock.ms += 900_000  # the token expires
        late = await _commit(
            env, "user2", "evidence", "submit", evidence_args("rec-org2-late", "flow-org2-late")
        )
        assert late.status == 0, late
        for _ in range(200):
            if env.server.metrics.subscriptions == 0:
                break
            await asyncio.sleep(0.05)
        assert env.server.metrics.subscriptions == 0


@pytest.mark.xfail(strict=True, reason="finding (low, not fixed): -32012 vs null tells existence")
async def test_another_orgs_record_id_is_not_told_apart_from_a_missing_one(env: Env) -> None:
    """An org user learns whether another org's record id exists: -32012 for it, null for an
    id nobody used (evidence.submit's "exists already" receipts tell the same through writes)."""
    token = (await env.login("user1"))["token"]
    theirs = await env.reply("gm_call", ["evidence", "get", ["rec-org2"]], token)
    nobodys = await env.reply("gm_call", ["evidence", "get", ["rec-nobody"]], token)
    assert theirs.get("result", "x") == nobodys.get("result", "y")

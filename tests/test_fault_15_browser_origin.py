"""Issue 10, fault 15: a web page must not be able to drive or read a node on localhost.

A browser sends a cross-origin POST with `Content-Type: text/plain` without a CORS preflight, and
after a DNS rebinding it sends the attacker's own name as `Host` and can read the replies. The
server refuses (as geth's `--http.vhosts`/`--http.corsdomain` and CometBFT's CORS settings do):
a `Host` that is a name not in `allowed_hosts` (IP literals are always allowed: a rebinding attack
always comes with a name), an `Origin` not in `allowed_origins` (no `Origin`: not a browser), and a
POST whose `Content-Type` is not `application/json`. The WebSocket upgrade checks `Host` and
`Origin` too. Real sockets against an in-process server on the fake node.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.jsonfmt import hex0x
from gmchain.node.api import ErrorCode
from gmchain.node.rpc import RpcConfig, RpcServer
from tests.test_rpc_fake import FakeNode, make_tx

BLOCK_NUMBER = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "gm_blockNumber"}).encode()


class Raw:
    """POSTs with exactly the headers a test names (aiohttp adds Host unless given one)."""

    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self.session = session
        self.port = port
        self.base = f"http://127.0.0.1:{port}"

    async def post(
        self, headers: dict[str, str], body: bytes = BLOCK_NUMBER, path: str = "/"
    ) -> tuple[int, Any]:
        async with self.session.post(self.base + path, data=body, headers=headers) as resp:
            text = await resp.text()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text

    async def ws_status(self, headers: dict[str, str]) -> int:
        """101 if the upgrade is accepted, else the HTTP status of the refusal."""
        try:
            async with self.session.ws_connect(self.base + "/ws", headers=headers) as ws:
                await ws.send_str(BLOCK_NUMBER.decode())
                reply = json.loads(await ws.receive_str(timeout=10))
                assert reply["result"] == 0
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


async def _serve(config: RpcConfig | None) -> AsyncIterator[tuple[FakeNode, Raw]]:
    node = FakeNode()
    server = RpcServer(node, host="127.0.0.1", port=0, config=config)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield node, Raw(session, server.port)
    finally:
        await server.stop()


@pytest.fixture
async def default_env() -> AsyncIterator[tuple[FakeNode, Raw]]:
    async for env in _serve(None):
        yield env


def _refused(status: int, reply: Any, http_status: int) -> None:
    assert status == http_status, (status, reply)
    assert isinstance(reply, dict) and "result" not in reply, reply
    assert reply["error"]["code"] == ErrorCode.INVALID_REQUEST, reply


JSON = {"Content-Type": "application/json"}


async def test_cross_origin_text_plain_post_changes_nothing(default_env: Any) -> None:
    """The page's `fetch(url, {method: "POST", body})`: text/plain, an Origin, no preflight."""
    node, raw = default_env
    tx = make_tx(PrivateKey.generate(), nonce=1, expiry=5, record_id="from-a-web-page")
    send = {"jsonrpc": "2.0", "id": 1, "method": "gm_sendRawTransaction"}
    body = json.dumps({**send, "params": [hex0x(tx.encode())]}).encode()
    page = {"Content-Type": "text/plain;charset=UTF-8", "Origin": "http://evil.example"}
    status, reply = await raw.post(page, body)
    assert not node.is_pending(tx.tx_id), "a web page put a transaction into the pool"
    assert status in (403, 415), (status, reply)
    assert "result" not in reply and reply["error"]["code"] == ErrorCode.INVALID_REQUEST
    # Each check on its own: the form encodings a page may also send, and no Origin at all.
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        _refused(*await raw.post({"Content-Type": ctype}, body), 415)
    _refused(*await raw.post({"Origin": "http://evil.example", **JSON}, body), 403)
    _refused(*await raw.post({"Origin": "null", **JSON}, body), 403)
    assert not node.is_pending(tx.tx_id)


async def test_rebound_host_is_refused(default_env: Any) -> None:
    """After a DNS rebinding the browser sends the attacker's name as Host (and no Origin on a
    same-origin GET): every endpoint refuses it, the metrics and the health page included."""
    _node, raw = default_env
    for host in ("evil.example", "evil.example:8545", "localhost.evil.example"):
        _refused(*await raw.post({"Host": host, **JSON}), 403)
        async with raw.session.get(raw.base + "/health", headers={"Host": host}) as resp:
            assert resp.status == 403
        async with raw.session.get(raw.base + "/metrics", headers={"Host": host}) as resp:
            assert resp.status == 403
            assert "gmchain_rpc_requests_total" not in await resp.text()
        assert await raw.ws_status({"Host": host}) == 403


async def test_cross_origin_websocket_is_refused(default_env: Any) -> None:
    _node, raw = default_env
    assert await raw.ws_status({"Origin": "http://evil.example"}) == 403
    assert await raw.ws_status({}) == 101  # a non-browser client sends no Origin


async def test_local_clients_still_pass(default_env: Any) -> None:
    """What the SDK, the CLI, curl with -H and the bench send; IP literals are always allowed."""
    _node, raw = default_env
    port = raw.port
    for host in (
        f"127.0.0.1:{port}",
        f"localhost:{port}",
        "LOCALHOST",
        f"[::1]:{port}",
        f"10.1.2.3:{port}",
        "[fe80::1]",
    ):
        status, reply = await raw.post({"Host": host, **JSON})
        assert status == 200 and reply["result"] == 0, (host, status, reply)
    for ctype in ("application/json", "application/json; charset=utf-8", "Application/JSON"):
        status, reply = await raw.post({"Content-Type": ctype})
        assert status == 200 and reply["result"] == 0, (ctype, status, reply)


async def test_configured_hosts_and_origins() -> None:
    config = RpcConfig(allowed_hosts=("node1.example",), allowed_origins=("https://app.example",))
    async for _node, raw in _serve(config):
        status, reply = await raw.post({"Host": "node1.example:8545", **JSON})
        assert status == 200 and reply["result"] == 0
        status, reply = await raw.post({"Origin": "https://app.example", **JSON})
        assert status == 200 and reply["result"] == 0
        assert await raw.ws_status({"Origin": "https://app.example"}) == 101
        _refused(*await raw.post({"Host": "node2.example", **JSON}), 403)
        _refused(*await raw.post({"Origin": "https://app.example.evil", **JSON}), 403)
        _refused(*await raw.post({"Origin": "http://app.example", **JSON}), 403)
        # A page of an allowed origin still cannot use the form encodings.
        _refused(
            *await raw.post({"Origin": "https://app.example", "Content-Type": "text/plain"}), 415
        )
    async for _node, raw in _serve(RpcConfig(allowed_hosts=("*",), allowed_origins=("*",))):
        status, reply = await raw.post(
            {"Host": "any.example", "Origin": "http://x.example", **JSON}
        )
        assert status == 200 and reply["result"] == 0


def test_allowed_lists_are_validated() -> None:
    with pytest.raises(ValueError, match="allowed_origins"):
        RpcConfig(allowed_origins=("app.example",)).validate()  # an origin has a scheme
    with pytest.raises(ValueError, match="allowed_hosts"):
        RpcConfig(allowed_hosts=("bad host",)).validate()

"""TLS on the JSON-RPC listener (node/rpctls.py; docs/rpc.md "TLS"), through real sockets.

Covers rules 1-3 of node/rpctls.py: a real TLS handshake with a client that trusts the server's
certificate; a client trusting another CA is refused; plain HTTP to the TLS port fails and runs
nothing; TLS 1.2 is the minimum; reload() serves a new pair to new connections and keeps
the old pair when the files are unusable; an unusable pair at start is a startup error.
"""

from __future__ import annotations

import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gmchain.node.rpc import RpcConfig, RpcServer
from gmchain.node.rpctls import TlsError
from tests.test_rpc_fake import FakeNode
from tests.tls_certs import make_tls_pair

_REQ = {"jsonrpc": "2.0", "id": 1, "method": "gm_blockNumber"}


def _client_ctx(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


async def _call(url: str, ctx: ssl.SSLContext | bool) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, json=_REQ, ssl=ctx, timeout=aiohttp.ClientTimeout(total=10)) as resp,
    ):
        return await resp.json()


@pytest.fixture
async def tls_env(tmp_path: Path) -> AsyncIterator[tuple[FakeNode, RpcServer, Path, Path]]:
    cert, key = make_tls_pair(tmp_path / "a", "rpc")
    cfg = RpcConfig(tls_cert=str(cert), tls_key=str(key))
    node = FakeNode()
    server = RpcServer(node, host="127.0.0.1", port=0, config=cfg)
    await server.start()
    yield node, server, cert, key
    await server.stop()


async def test_tls_handshake_and_answer(tls_env: Any) -> None:
    node, server, cert, _ = tls_env
    node.commit()
    reply = await _call(f"https://127.0.0.1:{server.port}/", _client_ctx(cert))
    assert reply["result"] == node.height() == 1


async def test_client_trusting_another_ca_is_refused(tls_env: Any, tmp_path: Path) -> None:
    _, server, _, _ = tls_env
    other, _ = make_tls_pair(tmp_path / "other", "rpc")
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await _call(f"https://127.0.0.1:{server.port}/", _client_ctx(other))
    assert server.metrics.requests.get("gm_blockNumber", 0) == 0


async def test_plain_http_to_tls_port_fails_and_runs_nothing(tls_env: Any) -> None:
    _, server, _, _ = tls_env
    with pytest.raises(aiohttp.ClientError):
        await _call(f"http://127.0.0.1:{server.port}/", False)
    assert server.metrics.requests.get("gm_blockNumber", 0) == 0
    assert sum(server.metrics.errors.values()) == 0


async def test_tls_1_2_is_the_minimum(tls_env: Any) -> None:
    _, server, cert, _ = tls_env
    assert server.tls.listener_context.minimum_version == ssl.TLSVersion.TLSv1_2
    ctx = _client_ctx(cert)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # a TLS 1.2-only client is served
    assert "result" in await _call(f"https://127.0.0.1:{server.port}/", ctx)


async def test_reload_serves_new_pair_and_keeps_old_on_bad_files(
    tls_env: Any, tmp_path: Path
) -> None:
    _, server, cert, key = tls_env
    url = f"https://127.0.0.1:{server.port}/"
    new_cert, new_key = make_tls_pair(tmp_path / "b", "rpc")
    first = tmp_path / "first.crt"
    shutil.copy(cert, first)
    shutil.copy(new_cert, cert)
    shutil.copy(new_key, key)
    assert server.tls is not None and server.tls.reload()
    assert "result" in await _call(url, _client_ctx(new_cert))
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await _call(url, _client_ctx(first))
    # An unusable pair (a key that does not match; then a missing key): the served pair stays.
    _, other_key = make_tls_pair(tmp_path / "c", "rpc")
    shutil.copy(other_key, key)
    assert not server.tls.reload()
    key.unlink()
    assert not server.tls.reload()
    assert "result" in await _call(url, _client_ctx(new_cert))
    assert server.tls.reloads == 1


def test_unusable_pair_at_start_is_an_error(tmp_path: Path) -> None:
    cert, _ = make_tls_pair(tmp_path / "a", "rpc")
    _, other_key = make_tls_pair(tmp_path / "b", "rpc")
    with pytest.raises(TlsError):
        RpcServer(FakeNode(), config=RpcConfig(tls_cert=str(cert), tls_key=str(other_key)))
    with pytest.raises(ValueError, match="both"):
        RpcConfig(tls_cert=str(cert)).validate()

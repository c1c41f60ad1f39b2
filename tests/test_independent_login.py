"""The docs-only login client (tests/independent_login.py) against real nodes founded by the
ceremony of docs/sites.md: two sites (org1's validator, org2's observer), TLS RPC,
rpc_auth = "reads", a user account of org1 and of org2 and a regulator account, every key made
in its own folder by `gmchain site init` / `gmchain account init`.

Covers: the worked example of docs/rpc.md recomputed from the documented bytes alone; a login
and reads over TLS pinned to the peers.json certificate and fingerprint (a tampered fingerprint
or an announced fingerprint that differs is refused before anything is sent); the org rule (a
firm's user reads its org's record, is refused the other's; the regulator reads both); and the
cross-node cases of the attack list: a token of node A at node B, a challenge of node A used at
node B, a login signed for node A sent to node B.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gmchain.crypto_sm import PrivateKey, load_private_key, sm3_hash
from gmchain.node.sdk import SyncClient
from tests.independent_login import (
    LoginError,
    PinnedSite,
    RpcRefused,
    call,
    compute_login_root,
    load_pinned_site,
    login,
)
from tests.node_helpers import ROOT, START_DEADLINE_S, free_port

CHAIN = "indep-login-chain"
_PASS = {"GMCHAIN_NODE_PASSPHRASE": "node-secret-7", "GMCHAIN_PASSPHRASE": "admin-secret-7"}
_FORBIDDEN = -32012


def _gm(*argv: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **_PASS}
    out = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "gmchain"), *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, (argv, out.stdout, out.stderr)
    return out.stdout


@dataclass
class Network:
    work: Path
    peers: Path
    keys: dict[str, PrivateKey]  # user1, user2, reg, admin1, admin2
    procs: list[subprocess.Popen[bytes]]

    def site(self, name: str) -> PinnedSite:
        return load_pinned_site(self.peers, name)


def _found(work: Path) -> tuple[Path, dict[str, PrivateKey]]:
    """docs/sites.md steps 1-7 for two sites and three accounts."""
    sites = {"site-a": ("org1", []), "site-b": ("org2", ["--no-validator"])}
    for name, (org, extra) in sites.items():
        _gm(
            "site", "init", "--dir", str(work / name), "--name", name, "--org", org,
            "--chain-id", CHAIN, "--p2p", f"127.0.0.1:{free_port()}",
            "--rpc", f"127.0.0.1:{free_port()}", "--tls", *extra,
        )  # fmt: skip
    accounts = {"user1": ("org1", "member"), "user2": ("org2", "member")}
    accounts["reg"] = ("csrc", "regulator")
    for name, (org, role) in accounts.items():
        _gm(
            "account", "init", "--dir", str(work / name), "--org", org, "--role", role,
            "--chain-id", CHAIN,
        )  # fmt: skip
    coord = work / "coordinator"
    argv = ["genesis", "assemble", "--chain-id", CHAIN, "--out", str(coord)]
    for name in sites:
        argv += ["--site", str(work / name / "site.json")]
    for name in accounts:
        argv += ["--account", str(work / name / "account.json")]
    _gm(*argv)
    digest = _gm("genesis", "hash", str(coord / "genesis.json")).strip().split()[-1]
    for name in sites:
        _gm(
            "site", "install", "--dir", str(work / name), "--genesis", str(coord / "genesis.json"),
            "--peers", str(coord / "peers.json"), "--expect-hash", digest,
        )  # fmt: skip
    pw = _PASS["GMCHAIN_PASSPHRASE"].encode()
    keys = {n: load_private_key(work / n / "account.key", pw) for n in accounts}
    keys["admin1"] = load_private_key(work / "site-a" / "admin.key", pw)
    keys["admin2"] = load_private_key(work / "site-b" / "admin.key", pw)
    return coord / "peers.json", keys


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    work = tmp_path_factory.mktemp("indep-login")
    peers, keys = _found(work)
    env = {**os.environ, "PYTHONPATH": str(ROOT), **_PASS}
    procs = []
    for name in ("site-a", "site-b"):
        with open(work / f"{name}.log", "wb") as log:
            argv = [str(ROOT / ".venv" / "bin" / "gmchain"), "node", "start", "--config"]
            argv.append(str(work / name / "config.toml"))
            procs.append(
                subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            )
    net = Network(work=work, peers=peers, keys=keys, procs=procs)
    try:
        for name in ("site-a", "site-b"):
            site = net.site(name)
            end = time.monotonic() + START_DEADLINE_S
            while True:
                for p, n in zip(procs, ("site-a", "site-b"), strict=True):
                    assert p.poll() is None, (work / f"{n}.log").read_text()
                try:
                    call(site, "gm_status")
                    break
                except OSError:
                    assert time.monotonic() < end, (work / f"{name}.log").read_text()
                    time.sleep(0.2)
        _submit(net)
        yield net
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(30)


def _submit(net: Network) -> None:
    """org1's and org2's admins each commit one record (writes: the SDK, signed transactions)."""
    site = net.site("site-a")
    ca = net.work / "ca-a.pem"
    ca.write_text(site.cert_pem)
    for org, who in (("org1", "admin1"), ("org2", "admin2")):
        client = SyncClient(site.url, ca_file=str(ca), auth_key=net.keys[who])
        receipt = client.submit_evidence(
            net.keys[who],
            record_id=f"rec-{org}",
            flow_id=f"flow-{org}",
            scenario="private-fund-sale",
            step="risk-disclosure",
            data=org.encode(),
            timeout_s=60,
        )
        assert receipt["status"] == 0, receipt
    # site-b (the observer) has both records before the tests read it
    b = net.site("site-b")
    end = time.monotonic() + 60
    while call(b, "gm_blockNumber") < call(site, "gm_blockNumber"):
        assert time.monotonic() < end
        time.sleep(0.2)


def test_worked_example_from_the_docs() -> None:
    """docs/rpc.md's worked example, from its stated inputs, with the documented bytes only."""
    account = PrivateKey.from_bytes(b"\x01" * 32)
    node = PrivateKey.from_bytes(b"\x02" * 32)
    node_id = sm3_hash(node.public_key.to_bytes())[:20]  # protocol.md section 4
    assert node_id.hex() == "c40cba3db922edf027c375f7fe51b421a016a7f9"
    root = compute_login_root("example-chain", node_id, bytes(range(32)))
    assert root.hex() == "2f78ec84290d00545c51dd7f943339b8c421423078d3d7acf5a05279b4029fdb"
    sig = bytes.fromhex(
        "ebe880773da8b5af74f90cc7a4a2b5b0135e91a00f1a7edd0ab8e53bcc5c95aa"
        "0841c59cd9addac71f0636ea3bc45fa3c71d619c04c9ca74afc485db9ab9b4dd"
    )
    assert account.public_key.verify(root, sig)


def test_login_and_reads_pinned_to_the_site_certificate(network: Network) -> None:
    site = network.site("site-a")
    user1 = login(site, network.keys["user1"])
    assert (user1.org, user1.role, user1.read_all) == ("org1", "member", False)
    assert user1.expires_ms > time.time() * 1000
    rec = call(site, "gm_call", ["evidence", "get", ["rec-org1"]], token=user1.token)
    assert rec["org"] == "org1"
    with pytest.raises(RpcRefused) as refused:
        call(site, "gm_call", ["evidence", "get", ["rec-org2"]], token=user1.token)
    assert refused.value.code == _FORBIDDEN
    with pytest.raises(RpcRefused) as anonymous:
        call(site, "gm_call", ["evidence", "get", ["rec-org1"]])
    assert anonymous.value.code == -32010
    reg = login(site, network.keys["reg"])
    assert reg.read_all
    for org in ("org1", "org2"):
        got = call(site, "gm_call", ["evidence", "get", [f"rec-{org}"]], token=reg.token)
        assert got["org"] == org


def test_pinning_refuses_another_fingerprint(network: Network, tmp_path: Path) -> None:
    peers = json.loads(network.peers.read_text())
    for entry in peers["sites"]:
        entry["rpc_tls_sm3"] = "0x" + "00" * 32
    bad = tmp_path / "peers.json"
    bad.write_text(json.dumps(peers))
    with pytest.raises(LoginError):
        load_pinned_site(bad, "site-a")
    with pytest.raises(LoginError):
        load_pinned_site(network.peers, "site-a", announced_sm3="0x" + "11" * 32)
    # site-b's certificate does not authenticate site-a's endpoint
    a, b = network.site("site-a"), network.site("site-b")
    swapped = PinnedSite(
        name=a.name, org=a.org, url=a.url, node_id=a.node_id, cert_pem=b.cert_pem,
        context=b.context,
    )  # fmt: skip
    with pytest.raises(OSError):
        call(swapped, "gm_status")


def test_token_and_challenge_do_not_cross_nodes(network: Network) -> None:
    a, b = network.site("site-a"), network.site("site-b")
    key = network.keys["user1"]
    token_a = login(a, key).token
    with pytest.raises(RpcRefused) as other_node:
        call(b, "gm_call", ["evidence", "get", ["rec-org1"]], token=token_a)
    assert other_node.value.code == -32011
    # a challenge of A, signed for A, presented at B: unknown at B
    info_a = call(a, "gm_nodeInfo")
    ch = call(a, "gm_authChallenge")["challenge"]
    root = compute_login_root(info_a["chainId"], a.node_id, bytes.fromhex(ch[2:]))
    params = ["0x" + key.public_key.to_bytes().hex(), ch, "0x" + key.sign(root).hex()]
    with pytest.raises(RpcRefused) as at_b:
        call(b, "gm_authLogin", params)
    assert at_b.value.code == -32010
    # B's own challenge signed over A's node id: the signature does not verify at B
    ch_b = call(b, "gm_authChallenge")["challenge"]
    root = compute_login_root(info_a["chainId"], a.node_id, bytes.fromhex(ch_b[2:]))
    params = ["0x" + key.public_key.to_bytes().hex(), ch_b, "0x" + key.sign(root).hex()]
    with pytest.raises(RpcRefused) as signed_for_a:
        call(b, "gm_authLogin", params)
    assert signed_for_a.value.code == -32010
    assert "signature" in signed_for_a.value.message
    # and B answers its own logins (the observer is a site like any other)
    assert login(b, key).org == "org1"


def test_plain_http_to_the_tls_port_gets_no_answer(network: Network) -> None:
    site = network.site("site-a")
    host, port = site.url.removeprefix("https://").rsplit(":", 1)
    body = b'{"jsonrpc":"2.0","id":1,"method":"gm_blockNumber"}'
    request = (
        b"POST / HTTP/1.1\r\nHost: " + host.encode() + b"\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(request)
        got = b""
        try:
            while chunk := sock.recv(4096):
                got += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    assert b"HTTP/" not in got and b"jsonrpc" not in got, got
    assert isinstance(call(site, "gm_blockNumber"), int)  # and the node serves TLS as before

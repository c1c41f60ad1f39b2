"""The site's join tools (issue 12, docs/joining.md): `gmchain keygen --node`, `gmchain node
join-request`, `gmchain cluster add-node`, and a joining node's connections refused and counted
by real node processes until an epoch admits it.

Real key files, real SM2 signatures checked against the governance contract's signing root, real
node processes on 127.0.0.1 (tests/cluster_helpers.py).
"""

from __future__ import annotations

import json
import os
import re
import stat
import urllib.request
from pathlib import Path

import pytest

from gmchain.contracts.gov_kinds import join_request_root
from gmchain.crypto_sm import PrivateKey, PublicKey, load_private_key, save_private_key
from gmchain.crypto_sm.keyfile import MIN_ITERATIONS
from gmchain.node import cli, cluster
from gmchain.node.cluster_join import add_node
from gmchain.node.config import load_config
from gmchain.node.daemon import DEV_PASSPHRASE
from gmchain.node.keys_cli import read_join_request
from tests.cluster_helpers import Cluster, free_port_block, wait_until

CHAIN = "gmchain-join-test"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err: str) -> None:
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_help_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for path in (["keygen"], ["node", "join-request"]):
        code, out, err = run([*path, "--help"], capsys)
        assert code == 0 and out.startswith("usage: gmchain") and err == ""
    assert "--node" in run(["keygen", "--help"], capsys)[1]
    with pytest.raises(SystemExit) as exc:
        cluster.main(["add-node", "--help"])
    assert exc.value.code == 0 and "--org" in capsys.readouterr().out
    code, out, err = run(["node", "join-request", "--key", "k", "--org", "o"], capsys)
    assert code == 2 and out == "" and "--chain-id" in err
    _one_line(err)


# --- keygen --node --------------------------------------------------------------------------------


def test_keygen_node_prints_the_node_id_and_the_key_stays_in_its_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GMCHAIN_NODE_PASSPHRASE", "site secret")
    code, out, err = run(["keygen", "--node", "--json"], capsys)
    assert code == 0, err
    assert err == ""  # a real passphrase: no dev-passphrase warning
    info = json.loads(out)
    path = tmp_path / "node.key"  # the default --out of a node key
    assert info["path"] == "node.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    key = load_private_key(path, b"site secret")  # under the variable a node reads
    assert info["public_key"] == "0x" + key.public_key.to_bytes().hex()
    assert info["node_id"] == info["address"] == "0x" + key.public_key.address.hex()
    assert key.to_bytes().hex() not in out
    # Never overwritten; the human form names the node id.
    code, _, err = run(["keygen", "--node"], capsys)
    assert code == 1 and "already exists" in err
    _one_line(err)
    code, out, _ = run(["keygen", "--node", "--out", str(tmp_path / "b.key")], capsys)
    assert code == 0 and re.search(r"^node id +0x[0-9a-f]{40}$", out, re.M), out


def test_keygen_node_without_a_passphrase_warns_of_the_dev_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GMCHAIN_NODE_PASSPHRASE", raising=False)
    code, _, err = run(["keygen", "--node", "--out", str(tmp_path / "n.key")], capsys)
    assert code == 0 and "dev passphrase" in err
    load_private_key(tmp_path / "n.key", DEV_PASSPHRASE.encode())


# --- node join-request ----------------------------------------------------------------------------


def _node_key(tmp_path: Path, passphrase: bytes = DEV_PASSPHRASE.encode()) -> PrivateKey:
    key = PrivateKey.generate()
    save_private_key(tmp_path / "node.key", key, passphrase, iterations=MIN_ITERATIONS)
    return key


def test_join_request_verifies_against_the_contracts_signing_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SITE_PASS", "p4ss")
    key = _node_key(tmp_path, b"p4ss")
    out_file = tmp_path / "join-request.json"
    argv = ["node", "join-request", "--key", str(tmp_path / "node.key"), "--org", "fund-co"]
    argv += ["--chain-id", CHAIN, "--out", str(out_file), "--passphrase-env", "SITE_PASS"]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert key.public_key.address.hex() in out
    doc = json.loads(out_file.read_text())
    assert sorted(doc) == ["chain_id", "node_pubkey", "org", "pop_signature"]
    req = read_join_request(doc, chain_id=CHAIN)
    assert req.node_pubkey == key.public_key.to_bytes() and req.org == "fund-co"
    assert req.node_id == key.public_key.address
    # The proof is what the governance contract checks (gov_kinds G-K4), for this chain and org.
    root = join_request_root(CHAIN, req.node_pubkey, "fund-co")
    assert PublicKey.from_bytes(req.node_pubkey).verify(root, req.pop_signature)
    assert not key.public_key.verify(
        join_request_root("other", req.node_pubkey, "fund-co"), req.pop_signature
    )
    # Not overwritten without --force; stdout without --out.
    code, _, err = run(argv, capsys)
    assert code == 1 and "--force" in err
    _one_line(err)
    code, out, _ = run([*argv[:-4], "--passphrase-env", "SITE_PASS"], capsys)
    assert code == 0 and read_join_request(json.loads(out)).node_pubkey == req.node_pubkey


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("org", "other-org", "pop_signature"),  # the proof binds the org
        ("chain_id", "another-chain", "not 'gmchain-join-test'"),
        ("pop_signature", "0x" + "00" * 64, "pop_signature"),
        ("node_pubkey", "0x04" + "11" * 64, "node_pubkey"),
        ("pop_signature", "0x1234", "64 bytes"),
        ("node_pubkey", "04" * 65, "0x-prefixed"),
    ],
)
def test_an_edited_join_request_is_refused(
    tmp_path: Path, field: str, value: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _node_key(tmp_path)
    argv = ["node", "join-request", "--key", str(tmp_path / "node.key"), "--org", "fund-co"]
    code, out, _ = run([*argv, "--chain-id", CHAIN], capsys)
    assert code == 0
    doc = json.loads(out)
    read_join_request(doc, chain_id=CHAIN)  # as written, it verifies
    with pytest.raises(ValueError, match=re.escape(why)):
        read_join_request({**doc, field: value}, chain_id=CHAIN)
    with pytest.raises(ValueError, match="exactly"):
        read_join_request({**doc, "extra": 1})


def test_join_request_for_an_org_the_contract_would_refuse_is_refused_here(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _node_key(tmp_path)
    argv = ["node", "join-request", "--key", str(tmp_path / "node.key"), "--chain-id", CHAIN]
    code, out, err = run([*argv, "--org", "fund co"], capsys)
    assert code == 1 and out == "" and "'org' contains ' '" in err
    _one_line(err)


def test_join_request_with_a_wrong_passphrase_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _node_key(tmp_path, b"right")
    monkeypatch.setenv("GMCHAIN_NODE_PASSPHRASE", "wrong")
    argv = ["node", "join-request", "--key", str(tmp_path / "node.key"), "--org", "o"]
    code, out, err = run([*argv, "--chain-id", CHAIN], capsys)
    assert code == 1 and out == ""
    _one_line(err)


# --- cluster add-node -----------------------------------------------------------------------------


def test_add_node_makes_a_joining_node_every_other_node_knows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "c"
    base = free_port_block(8)
    cluster.init_cluster(d, validators=2, base_rpc=base, base_p2p=base + 4)
    code = cluster.main(["add-node", "--dir", str(d)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "node2" in out and "join-request.json" in out
    doc = json.loads((d / "cluster.json").read_text())
    entry = doc["nodes"][-1]
    assert (entry["name"], entry["role"], entry["org"]) == ("node2", "joining", "org1")
    assert (entry["rpc_port"], entry["p2p_port"]) == (base + 2, base + 6)
    key = load_private_key(d / "node2" / "node.key", DEV_PASSPHRASE.encode())
    assert key.public_key.to_bytes().hex() == entry["pubkey"]
    cfg = load_config(d / "node2" / "config.toml")
    assert (cfg.rpc_port, cfg.p2p_port, cfg.name) == (base + 2, base + 6, "node2")
    assert sorted(p.name for p in cfg.peers) == ["node0", "node1"]
    assert cfg.round_timeout_ms == load_config(d / "node0" / "config.toml").round_timeout_ms
    for other in ("node0", "node1"):  # the others list it, and their configs still load
        peers = {p.name: p for p in load_config(d / other / "config.toml").peers}
        assert peers["node2"].pubkey == entry["pubkey"] and peers["node2"].port == base + 6
    req = read_join_request(json.loads((d / "node2" / "join-request.json").read_text()))
    assert req.chain_id == doc["chain_id"] and req.node_pubkey.hex() == entry["pubkey"]
    assert str(cluster.cluster_status(d)["nodes"][-1]["role"]) == "joining"
    # A second one takes the next name and ports; a name in use or a bad one is refused.
    assert add_node(d, org="org2")["name"] == "node3"
    for argv, why in (
        (["--name", "node0"], "already exists"),
        (["--name", "../x"], "letters, digits"),
        (["--rpc-port", str(base)], "taken"),
    ):
        code = cluster.main(["add-node", "--dir", str(d), *argv])
        _, err = capsys.readouterr()
        assert code == 1 and why in err, err
        _one_line(err)
    assert len(json.loads((d / "cluster.json").read_text())["nodes"]) == 4


def test_init_gives_every_validator_org_an_admin_key(tmp_path: Path) -> None:
    """The default committee is every validator org (docs/governance.md): a dev cluster holds
    one admin key per seat, so its committee can reach any threshold."""
    from gmchain.node.config import load_genesis

    d = tmp_path / "c"
    base = free_port_block(8)
    cluster.init_cluster(d, validators=3, observers=1, base_rpc=base, base_p2p=base + 4)
    genesis = load_genesis(d / "genesis.json")
    admins = {k: org for k, org, role in genesis.accounts if role == "admin"}
    keys = {"org1": d / "client.key", "org2": d / "admins/org2.key", "org3": d / "admins/org3.key"}
    assert sorted(admins.values()) == sorted(keys) == sorted({v.org for v in genesis.validators})
    for org, path in keys.items():
        key = load_private_key(path, DEV_PASSPHRASE.encode())
        assert admins[key.public_key.to_bytes()] == org
    assert sorted(p.name for p in (d / "admins").iterdir()) == ["org2.key", "org3.key"]


def _metric(port: int, name: str, reason: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    m = re.search(rf'^{name}{{reason="{reason}"}} ([0-9.e+]+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def test_a_joining_node_runs_and_is_refused_and_counted_by_the_validators(
    tmp_path: Path,
) -> None:
    c = Cluster.create(tmp_path / "c", validators=2)
    # The joiner's key sorts first, so it dials both validators (the smaller node id dials).
    first = min(c.node_id(n) for n in c.validators)
    key = next(k for k in iter(PrivateKey.generate, None) if k.public_key.address < first)
    ports = free_port_block(2)
    add_node(c.d, key=key, rpc_port=ports, p2p_port=ports + 1)
    c.doc = json.loads((c.d / "cluster.json").read_text())
    try:
        c.start()
        for v in c.validators:  # the validators connect to each other (and only that)
            wait_until(lambda v=v: (c.status(v) or {}).get("peers") == 1, 60, f"{v} connected")
        for v in c.validators:
            wait_until(
                lambda v=v: (
                    _metric(c.rpc_port(v), "gmchain_p2p_handshake_refusals_total", "unknown_node")
                    >= 2
                ),
                60,
                f"{v} to refuse the joining node twice",
            )
            assert _metric(c.rpc_port(v), "gmchain_p2p_rejects_total", "unknown_node") >= 2
        st = c.status("node2")
        assert st is not None and st["peers"] == 0  # it runs (RPC), but nobody talks to it
        assert all((c.status(v) or {}).get("peers") == 1 for v in c.validators)
    finally:
        c.stop()

"""The genesis ceremony's checks (node/ceremony.py, node/ceremony_genesis.py, node/cli_site.py).

One test per refusal of issue 14 item 1: each bad input is refused with one line and writes
nothing. Descriptors are made and signed with real SM2 keys; the CLI tests run `gmchain` in this
process (cli.main) against real folders. The full drill with running nodes is
tests/test_site_ceremony.py.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import ssl
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from gmchain.crypto_sm import PrivateKey, load_private_key
from gmchain.node import cli
from gmchain.node.ceremony import (
    CeremonyError,
    make_account_descriptor,
    make_site_descriptor,
    parse_hostport,
    read_account_descriptor,
    read_site_descriptor,
)
from gmchain.node.ceremony_genesis import (
    assemble_genesis,
    genesis_hash_of,
    install_site,
    write_assembly,
)
from gmchain.node.config import load_config, load_genesis
from gmchain.node.tlscert import cert_fingerprint, make_self_signed

CHAIN = "ceremony-test"


def site_doc(
    i: int,
    *,
    chain_id: str = CHAIN,
    name: str | None = None,
    p2p: tuple[str, int] | None = None,
    rpc: tuple[str, int] | None = None,
    node_key: PrivateKey | None = None,
    cert: str = "",
) -> dict[str, Any]:
    return make_site_descriptor(
        chain_id=chain_id,
        name=name or f"site{i}",
        org=f"org{i}",
        role="validator",
        power=1,
        node_key=node_key or PrivateKey.generate(),
        admin_key=PrivateKey.generate(),
        p2p=p2p or (f"127.0.0.{i + 1}", 30300),
        rpc=rpc or (f"127.0.0.{i + 1}", 8545),
        rpc_tls_cert=cert,
    )


def read_all(docs: list[dict[str, Any]]) -> list[Any]:
    return [read_site_descriptor(d, chain_id=CHAIN) for d in docs]


def assemble(docs: list[dict[str, Any]], accounts: list[dict[str, Any]] | None = None) -> Any:
    accts = [read_account_descriptor(a, chain_id=CHAIN) for a in accounts or []]
    return assemble_genesis(CHAIN, read_all(docs), accts, timestamp_ms=1_700_000_000_000)


# --- descriptors ---------------------------------------------------------------------------------


def test_a_descriptor_reads_back_and_holds_no_secret() -> None:
    node, admin = PrivateKey.generate(), PrivateKey.generate()
    doc = make_site_descriptor(
        chain_id=CHAIN,
        name="site1",
        org="org1",
        role="validator",
        power=3,
        node_key=node,
        admin_key=admin,
        p2p=("127.0.0.2", 30300),
        rpc=("127.0.0.2", 8545),
    )
    site = read_site_descriptor(json.loads(json.dumps(doc)), chain_id=CHAIN)
    assert site.node_pubkey == node.public_key.to_bytes() and site.power == 3
    text = json.dumps(doc)
    for key in (node, admin):
        assert key.to_bytes().hex() not in text


def test_a_descriptor_of_another_chain_is_refused() -> None:
    doc = site_doc(1, chain_id="another-chain")
    with pytest.raises(CeremonyError, match="made for chain 'another-chain'"):
        read_site_descriptor(doc, chain_id=CHAIN)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("p2p_port", 30399),  # an address changed on the way to the coordinator
        ("rpc_host", "10.0.0.9"),
        ("org", "org9"),
        ("power", 50),
        ("name", "other"),
    ],
)
def test_an_edited_descriptor_fails_its_signatures(field: str, value: object) -> None:
    doc = site_doc(1)
    doc[field] = value
    with pytest.raises(CeremonyError, match="node_signature is not the node key's signature"):
        read_site_descriptor(doc, chain_id=CHAIN)


def test_a_swapped_admin_key_fails_the_signatures() -> None:
    doc = site_doc(1)
    doc["admin_pubkey"] = "0x" + PrivateKey.generate().public_key.to_bytes().hex()
    with pytest.raises(CeremonyError, match="signature"):
        read_site_descriptor(doc, chain_id=CHAIN)


def test_a_signature_by_the_node_key_alone_is_refused() -> None:
    """The admin key must prove possession too: a node key cannot vouch for an admin key."""
    doc, other = site_doc(1), site_doc(1)
    doc["admin_signature"] = other["admin_signature"]
    with pytest.raises(CeremonyError, match="admin_signature is not the admin key's signature"):
        read_site_descriptor(doc, chain_id=CHAIN)


@pytest.mark.parametrize("field", ["node_signature", "admin_signature"])
def test_a_missing_signature_is_refused(field: str) -> None:
    doc = site_doc(1)
    del doc[field]
    with pytest.raises(CeremonyError, match=f"missing fields \\['{field}'\\]"):
        read_site_descriptor(doc, chain_id=CHAIN)


def test_an_unknown_field_is_refused() -> None:
    doc = site_doc(1)
    doc["private_key"] = "0x00"
    with pytest.raises(CeremonyError, match="unknown fields \\['private_key'\\]"):
        read_site_descriptor(doc, chain_id=CHAIN)


def test_a_certificate_that_is_not_the_fingerprinted_one_is_refused(tmp_path: Path) -> None:
    make_self_signed(tmp_path / "a.crt", tmp_path / "a.key", ["127.0.0.2"])
    make_self_signed(tmp_path / "b.crt", tmp_path / "b.key", ["127.0.0.2"])
    doc = site_doc(1, cert=(tmp_path / "a.crt").read_text())
    read_site_descriptor(doc, chain_id=CHAIN)  # as made: fine
    doc["rpc_tls_cert"] = (tmp_path / "b.crt").read_text()
    with pytest.raises(CeremonyError, match="rpc_tls_sm3 is not the SM3 of rpc_tls_cert"):
        read_site_descriptor(doc, chain_id=CHAIN)


def test_an_account_descriptor_checks_chain_role_and_signature() -> None:
    key = PrivateKey.generate()
    doc = make_account_descriptor(chain_id=CHAIN, name="reg", org="csrc", role="regulator", key=key)
    assert read_account_descriptor(doc, chain_id=CHAIN).role == "regulator"
    with pytest.raises(CeremonyError, match="made for chain"):
        read_account_descriptor(doc, chain_id="other")
    edited = dict(doc, role="admin")
    with pytest.raises(CeremonyError, match="signature is not the account key's"):
        read_account_descriptor(edited, chain_id=CHAIN)
    with pytest.raises(CeremonyError, match="role must be one of"):
        make_account_descriptor(chain_id=CHAIN, name="u", org="org1", role="user", key=key)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.0.0.0:30300", "wildcard"),
        ("[::]:30300", "wildcard"),
        ("127.0.0.2", "expected HOST:PORT"),
        ("127.0.0.2:0", "port 1..65535"),
        ("127.0.0.2:70000", "port 1..65535"),
        ("bad host:1", "not a host name"),
    ],
)
def test_bad_addresses_are_refused(text: str, message: str) -> None:
    with pytest.raises(CeremonyError, match=message):
        parse_hostport("--p2p", text)


def test_ipv6_in_brackets_parses() -> None:
    assert parse_hostport("--rpc", "[::1]:8545") == ("::1", 8545)


# --- assembling ----------------------------------------------------------------------------------


def test_duplicate_node_key_is_refused() -> None:
    key = PrivateKey.generate()
    docs = [site_doc(1, node_key=key), site_doc(2, node_key=key)]
    with pytest.raises(CeremonyError, match="appears twice: as site site1's node key"):
        assemble(docs)


def test_the_same_descriptor_twice_is_refused() -> None:
    doc = site_doc(1)
    with pytest.raises(CeremonyError, match="appears twice"):
        assemble([doc, copy.deepcopy(doc)])


def test_an_account_reusing_a_site_key_is_refused() -> None:
    key = PrivateKey.generate()
    site = site_doc(1, node_key=key)
    acct = make_account_descriptor(chain_id=CHAIN, name="u", org="org1", role="member", key=key)
    with pytest.raises(CeremonyError, match="appears twice"):
        assemble([site], [acct])


def test_duplicate_name_is_refused() -> None:
    with pytest.raises(CeremonyError, match="site name 'same' is used by two sites"):
        assemble([site_doc(1, name="same"), site_doc(2, name="same")])


def test_a_p2p_address_equal_to_another_sites_is_refused() -> None:
    docs = [site_doc(1), site_doc(2, p2p=("127.0.0.2", 30300))]
    with pytest.raises(CeremonyError, match=r"p2p address 127\.0\.0\.2:30300 is also site site1's"):
        assemble(docs)


def test_a_p2p_address_equal_to_another_sites_rpc_is_refused() -> None:
    docs = [site_doc(1), site_doc(2, p2p=("127.0.0.2", 8545))]
    with pytest.raises(CeremonyError, match="is also site site1's rpc address"):
        assemble(docs)


def test_one_sites_p2p_and_rpc_on_one_address_is_refused() -> None:
    with pytest.raises(CeremonyError, match="give each its own port"):
        site_doc(1, p2p=("127.0.0.2", 9000), rpc=("127.0.0.2", 9000))


def test_the_genesis_does_not_depend_on_the_order_of_the_descriptors() -> None:
    docs = [site_doc(i) for i in (1, 2, 3)]
    acct = make_account_descriptor(
        chain_id=CHAIN, name="reg", org="csrc", role="regulator", key=PrivateKey.generate()
    )
    a = assemble(docs, [acct])
    b = assemble(list(reversed(docs)), [acct])
    assert genesis_hash_of(a) == genesis_hash_of(b)
    assert [v.org for v in a.validators] == ["org1", "org2", "org3"]
    assert [(o, r) for _, o, r in a.accounts] == [
        ("org1", "admin"),
        ("org2", "admin"),
        ("org3", "admin"),
        ("csrc", "regulator"),
    ]


def test_no_validator_is_refused() -> None:
    doc = make_site_descriptor(
        chain_id=CHAIN,
        name="obs",
        org="org1",
        role="observer",
        power=1,
        node_key=PrivateKey.generate(),
        admin_key=PrivateKey.generate(),
        p2p=("127.0.0.2", 1),
        rpc=("127.0.0.2", 2),
    )
    with pytest.raises(CeremonyError, match="no validator"):
        assemble([doc])


# --- installing ----------------------------------------------------------------------------------


def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GMCHAIN_NODE_PASSPHRASE", "node-secret-for-tests")
    monkeypatch.setenv("GMCHAIN_PASSPHRASE", "admin-secret-for-tests")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    if code != 0:
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return code, out, err


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture
def two_sites(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[Path, str]:
    """Two sites made with the CLI, assembled into tmp_path/coord; returns (tmp_path, hash)."""
    _env(monkeypatch)
    for i in (1, 2):
        code, _, err = run(
            [
                "site",
                "init",
                "--dir",
                str(tmp_path / f"s{i}"),
                "--name",
                f"site{i}",
                "--org",
                f"org{i}",
                "--chain-id",
                CHAIN,
                "--p2p",
                f"127.0.0.{i + 1}:30300",
                "--rpc",
                f"127.0.0.{i + 1}:8545",
            ],
            capsys,
        )
        assert code == 0, err
    code, out, err = run(
        [
            "genesis",
            "assemble",
            "--chain-id",
            CHAIN,
            "--site",
            str(tmp_path / "s1" / "site.json"),
            "--site",
            str(tmp_path / "s2" / "site.json"),
            "--out",
            str(tmp_path / "coord"),
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    return tmp_path, json.loads(out)["genesis_hash"]


def install_argv(t: Path, site: str, ghash: str, genesis: Path | None = None) -> list[str]:
    return [
        "site",
        "install",
        "--dir",
        str(t / site),
        "--genesis",
        str(genesis or t / "coord" / "genesis.json"),
        "--peers",
        str(t / "coord" / "peers.json"),
        "--expect-hash",
        ghash,
    ]


def test_site_init_writes_keys_descriptor_and_config(
    two_sites: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    t, _ = two_sites
    d = t / "s1"
    for name in ("node.key", "admin.key", "config.toml"):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600, name
    node = load_private_key(d / "node.key", b"node-secret-for-tests")
    admin = load_private_key(d / "admin.key", b"admin-secret-for-tests")
    site = read_site_descriptor(json.loads((d / "site.json").read_text()), chain_id=CHAIN)
    assert site.node_pubkey == node.public_key.to_bytes()
    assert site.admin_pubkey == admin.public_key.to_bytes()
    text = (d / "config.toml").read_text()
    assert 'p2p_host = "127.0.0.2"' in text and 'rpc_host = "127.0.0.2"' in text
    assert "node-secret-for-tests" not in text  # the passphrase stays in the environment


def test_install_checks_the_hash_then_writes_genesis_and_peers(
    two_sites: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    t, ghash = two_sites
    code, _, err = run(install_argv(t, "s1", "0x" + ghash.upper()), capsys)
    assert code == 0, err
    cfg = load_config(t / "s1" / "config.toml")
    assert [(p.name, p.host, p.port) for p in cfg.peers] == [("site2", "127.0.0.3", 30300)]
    assert cfg.data_dir == str((t / "s1" / "db").resolve())  # relative paths kept
    assert genesis_hash_of(load_genesis(t / "s1" / "genesis.json")) == ghash
    # installing the same files again is harmless
    assert run(install_argv(t, "s1", ghash), capsys)[0] == 0


def test_install_refuses_a_hash_mismatch_and_writes_nothing(
    two_sites: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    t, ghash = two_sites
    before = snapshot(t / "s1")
    wrong = ("0" if ghash[0] != "0" else "1") + ghash[1:]
    code, _, err = run(install_argv(t, "s1", wrong), capsys)
    assert code == 1 and "genesis hash mismatch" in err
    assert snapshot(t / "s1") == before


def test_install_refuses_an_edited_genesis(
    two_sites: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """An attacker who edits genesis.json and its genesis_hash field still fails --expect-hash."""
    t, ghash = two_sites
    doc = json.loads((t / "coord" / "genesis.json").read_text())
    doc["validators"][0]["power"] = 100
    forged = load_genesis_doc(t / "forged.json", doc)
    before = snapshot(t / "s1")
    code, _, err = run(install_argv(t, "s1", ghash, genesis=forged), capsys)
    assert code == 1 and "genesis hash mismatch" in err
    assert snapshot(t / "s1") == before


def load_genesis_doc(path: Path, doc: dict[str, Any]) -> Path:
    """Write `doc` with its genesis_hash field recomputed (a consistent but different genesis)."""
    doc.pop("genesis_hash")
    path.write_text(json.dumps(doc))
    doc["genesis_hash"] = load_genesis(path).compute_hash().hex()
    path.write_text(json.dumps(doc))
    return path


def test_install_refuses_a_genesis_without_this_site(
    two_sites: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t, _ = two_sites
    other = assemble([site_doc(3), site_doc(4)])
    write_assembly(t / "other", other, read_all([]), force=False)
    code, _, err = run(
        install_argv(t, "s1", genesis_hash_of(other), genesis=t / "other" / "genesis.json"),
        capsys,
    )
    assert code == 1 and "does not hold this site's node key" in err


def test_install_refuses_peers_of_another_genesis(
    two_sites: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    t, ghash = two_sites
    peers = json.loads((t / "coord" / "peers.json").read_text())
    peers["genesis_hash"] = "00" * 32
    (t / "coord" / "peers.json").write_text(json.dumps(peers))
    before = snapshot(t / "s1")
    code, _, err = run(install_argv(t, "s1", ghash), capsys)
    assert code == 1 and "made for another genesis" in err
    assert snapshot(t / "s1") == before


def test_install_refuses_to_replace_another_genesis_without_force(
    two_sites: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    t, ghash = two_sites
    (t / "s1" / "genesis.json").write_text("{}\n")
    code, _, err = run(install_argv(t, "s1", ghash), capsys)
    assert code == 1 and "already exists (use --force" in err
    assert (t / "s1" / "genesis.json").read_text() == "{}\n"
    assert run([*install_argv(t, "s1", ghash), "--force"], capsys)[0] == 0


def test_assemble_refuses_existing_outputs_and_another_chain(
    two_sites: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    t, _ = two_sites
    argv = ["genesis", "assemble", "--site", str(t / "s1" / "site.json"), "--out"]
    before = snapshot(t / "coord")
    code, _, err = run([*argv, str(t / "coord"), "--chain-id", CHAIN], capsys)
    assert code == 1 and "already exists (use --force" in err
    assert snapshot(t / "coord") == before
    code, _, err = run([*argv, str(t / "new"), "--chain-id", "other-chain"], capsys)
    assert code == 1 and "made for chain 'ceremony-test', not 'other-chain'" in err
    assert not (t / "new").exists()


def test_site_init_refuses_a_folder_that_holds_a_site(
    two_sites: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    t, _ = two_sites
    before = snapshot(t / "s1")
    code, _, err = run(
        [
            "site",
            "init",
            "--dir",
            str(t / "s1"),
            "--name",
            "x",
            "--org",
            "org1",
            "--chain-id",
            CHAIN,
            "--p2p",
            "127.0.0.9:1",
            "--rpc",
            "127.0.0.9:2",
        ],
        capsys,
    )
    assert code == 1 and "already holds a site" in err
    assert snapshot(t / "s1") == before


@pytest.mark.parametrize("value", ["", "gmchain-dev"])
def test_site_init_refuses_an_empty_or_public_passphrase(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _env(monkeypatch)
    monkeypatch.setenv("GMCHAIN_NODE_PASSPHRASE", value)
    argv = ["site", "init", "--dir", str(tmp_path / "s"), "--name", "a", "--org", "org1"]
    argv += ["--chain-id", CHAIN, "--p2p", "127.0.0.2:1", "--rpc", "127.0.0.2:2"]
    code, _, err = run(argv, capsys)
    assert code == 1 and "passphrase" in err
    assert not (tmp_path / "s").exists()


def test_account_init_and_genesis_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _env(monkeypatch)
    d = tmp_path / "regulator"
    argv = ["account", "init", "--dir", str(d), "--org", "csrc", "--role", "regulator"]
    code, _, err = run([*argv, "--chain-id", CHAIN], capsys)
    assert code == 0, err
    acct = read_account_descriptor(json.loads((d / "account.json").read_text()), chain_id=CHAIN)
    key = load_private_key(d / "account.key", b"admin-secret-for-tests")
    assert acct.pubkey == key.public_key.to_bytes() and acct.name == "regulator"
    assert run([*argv, "--chain-id", CHAIN], capsys)[0] == 1  # never replaced
    g = assemble([site_doc(1)], [json.loads((d / "account.json").read_text())])
    write_assembly(tmp_path / "c", g, read_all([]), force=False)
    code, out, _ = run(["genesis", "hash", str(tmp_path / "c" / "genesis.json")], capsys)
    assert code == 0 and out.strip() == genesis_hash_of(g)


def test_install_site_is_usable_as_a_function(two_sites: tuple[Path, str]) -> None:
    t, ghash = two_sites
    info = install_site(
        t / "s2",
        genesis_file=t / "coord" / "genesis.json",
        peers_file=t / "coord" / "peers.json",
        expect_hash=ghash,
        chain_id=CHAIN,
    )
    assert info["peers"] == ["site1"]
    with pytest.raises(CeremonyError, match="not 'another'"):
        install_site(
            t / "s2",
            genesis_file=t / "coord" / "genesis.json",
            peers_file=t / "coord" / "peers.json",
            expect_hash=ghash,
            chain_id="another",
        )


# --- the RPC certificate --------------------------------------------------------------------------


def test_the_self_signed_certificate_verifies_for_its_ip_and_only_with_it(tmp_path: Path) -> None:
    fp = make_self_signed(tmp_path / "rpc.crt", tmp_path / "rpc.key", ["127.0.0.1"])
    assert fp == cert_fingerprint((tmp_path / "rpc.crt").read_text())
    assert stat.S_IMODE(os.stat(tmp_path / "rpc.key").st_mode) == 0o600
    with pytest.raises(FileExistsError):
        make_self_signed(tmp_path / "rpc.crt", tmp_path / "other.key", ["127.0.0.1"])
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "rpc.crt", tmp_path / "rpc.key")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(3):
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    pinned = ssl.create_default_context(cafile=str(tmp_path / "rpc.crt"))
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        pinned.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.recv(2) == b"ok"
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):  # no CA file: refused
        ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"),
    ):  # another address: refused
        pinned.wrap_socket(raw, server_hostname="127.0.0.2")
    listener.close()


def test_install_refuses_peers_whose_entry_for_this_site_was_edited(
    two_sites: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    t, ghash = two_sites
    peers = json.loads((t / "coord" / "peers.json").read_text())
    mine = next(s for s in peers["sites"] if s["name"] == "site1")
    mine["rpc_port"] = 9999  # peers.json is not signed as a whole: each entry must match
    (t / "coord" / "peers.json").write_text(json.dumps(peers))
    before = snapshot(t / "s1")
    code, _, err = run(install_argv(t, "s1", ghash), capsys)
    assert code == 1 and "this site's entry differs from its site.json" in err
    assert snapshot(t / "s1") == before

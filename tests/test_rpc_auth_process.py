"""TLS and read authentication end to end: a real `gmchain node start` process (TLS RPC,
rpc_auth = "reads", a genesis with two firms and a regulator), the SDK and the CLI with
`--ca-file` / `--auth-key`, and SIGHUP re-reading the TLS pair.

Covers: the SDK logs in lazily and submits and waits over TLS (HTTP and WebSocket); the CLI's
read commands with --ca-file and --auth-key: a firm's user reads its own record and is refused
the other firm's, the regulator reads both, no login is refused, a client without the CA fails
the handshake; SIGHUP serves a new pair to new connections and keeps it when the files are
replaced by an unusable pair (the error is logged).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gmchain.crypto_sm import PrivateKey
from gmchain.crypto_sm.keyfile import save_private_key
from gmchain.ledger.types import Genesis, GenesisValidator
from gmchain.node.config import NodeConfig, save_genesis, write_config
from gmchain.node.keys_cli import DEV_PASSPHRASE
from gmchain.node.sdk import NodeUnreachable, RpcError, SyncClient
from tests.node_helpers import ROOT, START_DEADLINE_S, free_port, run_gmchain
from tests.tls_certs import make_tls_pair

_ROLES = {
    "user1": ("org1", "member"),
    "user2": ("org2", "member"),
    "reg": ("csrc", "regulator"),
}


def _site(folder: Path) -> tuple[Path, dict[str, PrivateKey]]:
    """Keys, genesis, TLS pair and config of a one-validator chain with rpc_auth = reads."""
    folder.mkdir(parents=True)
    node = PrivateKey.generate()
    keys = {name: PrivateKey.generate() for name in _ROLES}
    save_private_key(folder / "node.key", node, DEV_PASSPHRASE)
    for name, key in keys.items():
        save_private_key(folder / f"{name}.key", key, DEV_PASSPHRASE)
    genesis = Genesis(
        chain_id="auth-chain",
        timestamp_ms=int(time.time() * 1000),
        validators=(GenesisValidator(pubkey=node.public_key.to_bytes(), power=1, org="org1"),),
        accounts=tuple((keys[n].public_key.to_bytes(), o, r) for n, (o, r) in _ROLES.items()),
    )
    save_genesis(folder / "genesis.json", genesis)
    make_tls_pair(folder / "tls", "rpc")
    cfg = NodeConfig(
        name="auth",
        data_dir="db",
        genesis_file="genesis.json",
        key_file="node.key",
        key_passphrase=DEV_PASSPHRASE.decode(),
        rpc_port=free_port(),
        p2p_port=free_port(),
        rpc_tls_cert="tls/rpc.crt",
        rpc_tls_key="tls/rpc.key",
        rpc_auth="reads",
    )
    write_config(folder / "config.toml", cfg)
    return folder / "config.toml", keys


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, str, dict[str, PrivateKey], Path, Any]]:
    config, keys = _site(tmp_path / "site")
    port = next(
        int(line.split("=")[1])
        for line in config.read_text().splitlines()
        if line.startswith("rpc_port")
    )
    log_path = tmp_path / "node.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("GMCHAIN_NODE_PASSPHRASE", None)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "gmchain"), "node", "start", "--config", str(config)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"https://127.0.0.1:{port}"
    ca = config.parent / "tls" / "rpc.crt"
    try:
        end = time.monotonic() + START_DEADLINE_S
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                SyncClient(url, ca_file=str(ca), timeout_s=2).status()
                break
            except NodeUnreachable:
                assert time.monotonic() < end, log_path.read_text()
                time.sleep(0.1)
        yield config, url, keys, log_path, proc
        assert proc.poll() is None, log_path.read_text()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_gmchain(*args, timeout_s=120)


def test_sdk_and_cli_with_tls_and_login(site: Any) -> None:
    config, url, keys, _, _ = site
    folder = config.parent
    ca = str(folder / "tls" / "rpc.crt")
    for org, who in (("org1", "user1"), ("org2", "user2")):
        client = SyncClient(url, ca_file=ca, auth_key=keys[who])
        receipt = client.submit_evidence(
            keys[who],
            record_id=f"rec-{org}",
            flow_id=f"flow-{org}",
            scenario="private-fund-sale",
            step="risk-disclosure",
            data=org.encode(),
            timeout_s=60,
        )
        assert receipt["status"] == 0, receipt
        assert client.get_evidence(f"rec-{org}")["org"] == org
    # a firm's user reads its own record and is refused the other's; SDK without a login too
    user1 = SyncClient(url, ca_file=ca, auth_key=keys["user1"])
    with pytest.raises(RpcError) as refused:
        user1.get_evidence("rec-org2")
    assert refused.value.code == -32012
    with pytest.raises(RpcError) as anonymous:
        SyncClient(url, ca_file=ca).get_evidence("rec-org1")
    assert anonymous.value.code == -32010

    def get(record: str, who: str | None, *extra: str) -> subprocess.CompletedProcess[str]:
        login = [] if who is None else ["--auth-key", str(folder / f"{who}.key")]
        return _cli("evidence", "get", record, "--json", "--rpc", url, *login, *extra)

    own = get("rec-org1", "user1", "--ca-file", ca)
    assert own.returncode == 0, own.stderr
    assert json.loads(own.stdout)["org"] == "org1"
    other = get("rec-org2", "user1", "--ca-file", ca)
    assert other.returncode != 0 and "another org" in other.stderr, other.stderr
    for record in ("rec-org1", "rec-org2"):
        reg = get(record, "reg", "--ca-file", ca)
        assert reg.returncode == 0, reg.stderr
    assert "login required" in get("rec-org1", None, "--ca-file", ca).stderr
    untrusted = get("rec-org1", "reg")  # no --ca-file: the self-signed certificate is refused
    assert untrusted.returncode != 0 and "--ca-file" in untrusted.stderr, untrusted.stderr


def test_sighup_reloads_the_tls_pair(site: Any, tmp_path: Path) -> None:
    config, url, _, log_path, proc = site
    tls = config.parent / "tls"
    old_ca = tmp_path / "old.crt"
    shutil.copy(tls / "rpc.crt", old_ca)
    new_cert, new_key = make_tls_pair(tmp_path / "new", "rpc")
    shutil.copy(new_cert, tls / "rpc.crt")
    shutil.copy(new_key, tls / "rpc.key")
    pid = proc.pid
    os.kill(pid, signal.SIGHUP)
    _wait_for(log_path, "TLS certificate")
    assert SyncClient(url, ca_file=str(new_cert)).height() >= 0
    with pytest.raises(NodeUnreachable):
        SyncClient(url, ca_file=str(old_ca)).height()
    (tls / "rpc.key").write_text("not a key\n")
    os.kill(pid, signal.SIGHUP)
    _wait_for(log_path, "TLS pair not reloaded")
    assert SyncClient(url, ca_file=str(new_cert)).height() >= 0


def _wait_for(log_path: Path, text: str, deadline_s: float = 30) -> None:
    end = time.monotonic() + deadline_s
    while text not in log_path.read_text():
        assert time.monotonic() < end, log_path.read_text()
        time.sleep(0.1)

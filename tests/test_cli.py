"""The `gmchain` CLI: help on every command, usage errors, errors in words, keygen, offline proofs.

No node runs here: client commands are pointed at a closed port, and `proof verify` gets real
bundles assembled by node/proofserve.py from a short certified chain (tests/proof_chain.py).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from gmchain.crypto_sm import PrivateKey, load_private_key, save_private_key
from gmchain.crypto_sm.keyfile import MIN_ITERATIONS
from gmchain.node import cli
from gmchain.node.keys_cli import (
    DEV_PASSPHRASE,
    default_key_path,
    ensure_dev_key,
    resolve_passphrase,
)

HELP_PATHS = [
    [],
    ["keygen"],
    ["dev"],
    ["node"],
    ["node", "start"],
    ["crypto-bench"],
    ["status"],
    ["tx"],
    ["tx", "get"],
    ["evidence"],
    ["evidence", "submit"],
    ["evidence", "get"],
    ["evidence", "flow"],
    ["evidence", "attest"],
    ["proof"],
    ["proof", "get"],
    ["proof", "verify"],
    ["site"],
    ["site", "init"],
    ["site", "install"],
    ["account", "init"],
    ["genesis", "assemble"],
    ["genesis", "hash"],
]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str) -> None:
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("GMCHAIN_HOME", str(home))
    monkeypatch.delenv("GMCHAIN_PASSPHRASE", raising=False)
    monkeypatch.delenv("GMCHAIN_DEBUG", raising=False)
    return home


@pytest.fixture
def dead_url() -> str:
    """A URL where nothing listens (a port just released by the OS)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- help and usage ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", HELP_PATHS, ids=lambda p: " ".join(p) or "gmchain")
def test_help_on_every_command(path: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([*path, "--help"], capsys)
    assert code == 0
    assert out.startswith("usage: gmchain")
    assert err == ""


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import gmchain

    code, out, err = run(["--version"], capsys)
    # the first line; the commit and SM2 backend lines: tests/test_cli_help.py
    assert (code, out.splitlines()[0], err) == (0, f"gmchain {gmchain.__version__}", "")


def test_a_node_command_without_the_node_extra_says_what_to_install(tmp_path: Path) -> None:
    # A fresh process in which `import plyvel` fails as if the [node] extra were not installed.
    script = (
        "import sys\n"
        "sys.modules['plyvel'] = None\n"
        "from gmchain.node.cli import main\n"
        f"sys.exit(main(['dev', '--data-dir', {str(tmp_path / 'd')!r}]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 1, out
    assert_one_line_error(out.stderr)
    assert "`gmchain dev` needs the node's dependencies (plyvel is missing)" in out.stderr
    assert "pip install 'gmchain[node]'" in out.stderr
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["no-such-command"],
        ["evidence"],
        ["evidence", "submit", "--id", "r1"],
        ["evidence", "submit", "--id", "r1", "--flow", "f", "--step", "s"],  # no --data/--file
        [
            "evidence",
            "submit",
            "--id",
            "r",
            "--flow",
            "f",
            "--step",
            "s",
            "--data",
            "x",
            "--file",
            "y",
        ],
        [
            "evidence",
            "submit",
            "--id",
            "r",
            "--flow",
            "f",
            "--step",
            "s",
            "--data",
            "x",
            "--level",
            "9",
        ],
        [
            "evidence",
            "submit",
            "--id",
            "r",
            "--flow",
            "f",
            "--step",
            "s",
            "--data",
            "x",
            "--level",
            "x",
        ],
        ["keygen"],
        ["keygen", "--out", "k", "--no-passphrase", "--passphrase-env", "X"],
        ["dev", "--rpc-port", "eighty"],
        ["node", "start"],
        ["proof", "verify"],
        ["status", "--timeout", "soon"],
    ],
)
def test_usage_errors_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(argv, capsys)
    assert code == 2
    assert out == ""
    assert_one_line_error(err)
    assert "error:" in err


# --- no node running -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["status"],
        ["tx", "get", "0x" + "11" * 32],
        ["evidence", "get", "rec-1"],
        ["evidence", "flow", "flow-1", "--verify"],
        ["proof", "get", "0x" + "22" * 32],
    ],
)
def test_no_node_is_a_clean_message(
    argv: list[str], dead_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run([*argv, "--rpc", dead_url, "--timeout", "2"], capsys)
    assert code == 1
    assert out == ""
    assert_one_line_error(err)
    assert f"cannot reach the node at {dead_url}: is it running? (gmchain dev)" in err


def test_submit_without_a_node_after_loading_the_default_key(
    dead_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ensure_dev_key()
    argv = ["evidence", "submit", "--id", "r1", "--flow", "f1", "--step", "kyc", "--data", "x"]
    code, _, err = run([*argv, "--rpc", dead_url], capsys)
    assert code == 1
    assert_one_line_error(err)
    assert "cannot reach the node" in err


def test_submit_with_a_missing_key_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["evidence", "submit", "--id", "r1", "--flow", "f1", "--step", "kyc", "--data", "x"]
    code, _, err = run(argv, capsys)
    assert code == 1
    assert_one_line_error(err)
    assert "no key file at" in err and str(default_key_path()) in err


def test_submit_with_a_wrong_passphrase_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "k.key"
    save_private_key(key_file, PrivateKey.generate(), b"right", iterations=MIN_ITERATIONS)
    monkeypatch.setenv("GMCHAIN_PASSPHRASE", "wrong")
    argv = ["evidence", "submit", "--id", "r", "--flow", "f", "--step", "s", "--data", "x"]
    code, _, err = run([*argv, "--key", str(key_file)], capsys)
    assert code == 1
    assert_one_line_error(err)
    assert "wrong passphrase" in err


def test_bad_meta_and_bad_tx_id_are_clean_errors(
    dead_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ensure_dev_key()
    argv = ["evidence", "submit", "--id", "r", "--flow", "f", "--step", "s", "--data", "x"]
    code, _, err = run([*argv, "--meta", "novalue", "--rpc", dead_url], capsys)
    assert code == 1 and "--meta expects KEY=VALUE" in err
    assert_one_line_error(err)
    code, _, err = run(["tx", "get", "0xzz", "--rpc", dead_url], capsys)
    assert code == 1 and "transaction id" in err
    assert_one_line_error(err)
    code, _, err = run(["tx", "get", "0x1234", "--rpc", dead_url], capsys)
    assert code == 1 and "expected 32 bytes" in err


def test_missing_data_file_is_a_clean_error(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["evidence", "submit", "--id", "r", "--flow", "f", "--step", "s", "--file", "/no/such"]
    code, _, err = run(argv, capsys)
    assert code == 1
    assert_one_line_error(err)
    assert "no such file: /no/such" in err


def test_unexpected_exception_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(args: Any) -> int:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(cli, "cmd_status", boom)  # node/cli_client.py, as cli names it
    code, _, err = run(["status"], capsys)
    assert code == 1
    assert_one_line_error(err)
    assert "internal error (RuntimeError: kaboom)" in err
    monkeypatch.setenv("GMCHAIN_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli.main(["status"])


# --- keygen and key helpers ----------------------------------------------------------------------


def test_keygen_writes_a_0600_file_and_refuses_to_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MY_PASS", "correct horse")
    out_file = tmp_path / "a.key"
    code, out, err = run(["keygen", "--out", str(out_file), "--passphrase-env", "MY_PASS"], capsys)
    assert code == 0, err
    assert stat.S_IMODE(os.stat(out_file).st_mode) == 0o600
    key = load_private_key(out_file, b"correct horse")
    assert f"0x{key.public_key.address.hex()}" in out
    assert f"0x{key.public_key.to_bytes().hex()}" in out
    before = out_file.read_bytes()
    code, _, err = run(["keygen", "--out", str(out_file), "--passphrase-env", "MY_PASS"], capsys)
    assert code == 1
    assert_one_line_error(err)
    assert "refusing to overwrite" in err
    assert out_file.read_bytes() == before


def test_keygen_json_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "b.key"
    code, out, _ = run(["keygen", "--out", str(out_file), "--no-passphrase", "--json"], capsys)
    assert code == 0
    info = json.loads(out)
    key = load_private_key(out_file, DEV_PASSPHRASE)
    assert info["address"] == "0x" + key.public_key.address.hex()
    code, _, err = run(
        ["keygen", "--out", str(tmp_path / "c.key"), "--passphrase-env", "UNSET_"], capsys
    )
    assert code == 1 and "UNSET_" in err
    assert_one_line_error(err)
    code, _, err = run(
        ["keygen", "--out", str(tmp_path / "no" / "dir.key"), "--no-passphrase"], capsys
    )
    assert code == 1 and "does not exist" in err


def test_dev_key_is_created_once_with_mode_0600(_home: Path) -> None:
    key = ensure_dev_key()
    path = default_key_path()
    assert path == _home / "dev" / "client.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert ensure_dev_key() == key
    assert load_private_key(path, resolve_passphrase()) == key


def test_resolve_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_passphrase() == DEV_PASSPHRASE
    monkeypatch.setenv("GMCHAIN_PASSPHRASE", "p1")
    assert resolve_passphrase() == b"p1"
    monkeypatch.setenv("OTHER", "p2")
    assert resolve_passphrase("OTHER") == b"p2"
    with pytest.raises(ValueError, match="NOPE"):
        resolve_passphrase("NOPE")


# --- delegated commands --------------------------------------------------------------------------


def test_dev_and_node_start_delegate_to_the_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[Any] = []
    fake = types.ModuleType("gmchain.node.daemon")
    fake.run_dev = lambda args: seen.append(("dev", args.data_dir, args.rpc_port, args.reset))  # type: ignore[attr-defined]
    fake.run_node = lambda args: seen.append(("node", args.config)) or 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gmchain.node.daemon", fake)
    assert cli.main(["dev", "--data-dir", "D", "--rpc-port", "9999", "--reset"]) == 0
    config = tmp_path / "node.toml"
    config.write_text("")
    assert cli.main(["node", "start", "--config", str(config)]) == 3
    assert seen == [("dev", "D", 9999, True), ("node", str(config))]
    code, _, err = run(["node", "start", "--config", str(tmp_path / "missing.toml")], capsys)
    assert code == 1 and "no config file" in err


def test_crypto_bench_cluster_bench_delegate(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[Any] = []
    for name in ("gmchain.crypto_sm.bench", "gmchain.node.cluster", "gmchain.bench.cli"):
        fake = types.ModuleType(name)
        fake.main = lambda argv, name=name: seen.append((name, list(argv))) or 0  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, name, fake)
    assert cli.main(["crypto-bench", "--json", "--seconds", "0.5"]) == 0
    assert cli.main(["cluster", "up", "--nodes", "4"]) == 0
    assert cli.main(["bench", "run", "--tps", "100"]) == 0
    assert seen == [
        ("gmchain.crypto_sm.bench", ["--json", "--seconds", "0.5"]),
        ("gmchain.node.cluster", ["up", "--nodes", "4"]),
        ("gmchain.bench.cli", ["run", "--tps", "100"]),
    ]


def test_missing_delegate_is_a_clean_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "gmchain.node.cluster", None)
    code, _, err = run(["cluster", "up"], capsys)
    assert code == 1
    assert_one_line_error(err)
    assert "`gmchain cluster` is not available" in err


# --- proof verify (offline) ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Real version-2 bundles from a short certified chain (tests/proof_chain.py), the genesis
    file that anchors them, and a stranger's validator set."""
    from gmchain.chain.lightclient import compute_validator_set_fingerprint
    from gmchain.ledger.store import Store
    from gmchain.ledger.types import Genesis, GenesisValidator
    from gmchain.node.config import save_genesis
    from gmchain.node.proofserve import ProofLimits, ProofService
    from tests.proof_chain import build_certified_chain

    tmp = tmp_path_factory.mktemp("cli-proofs")
    validator, sender = PrivateKey.generate(), PrivateKey.generate()
    genesis = Genesis(
        chain_id="cli-test",
        timestamp_ms=1_700_000_000_000,
        validators=(
            GenesisValidator(pubkey=validator.public_key.to_bytes(), power=1, org="org-a"),
        ),
        accounts=((sender.public_key.to_bytes(), "org-a", "admin"),),
    )
    built = build_certified_chain(tmp / "db", genesis, validator, sender, blocks=6, tx_every=1)
    store = Store.open(tmp / "db", chain_id=genesis.chain_id)
    limits = ProofLimits(max_span=8, threads=1, jobs_per_client=1, queue_per_client=1)
    proofs = ProofService(
        store=store, validators=genesis.validators, head_height=lambda: built.head, limits=limits
    )
    try:
        height, tx_id = built.tx_ids[1]
        own = proofs.build_tx_proof(tx_id, None, built.head)
        later = proofs.build_tx_proof(tx_id, built.head, built.head)
    finally:
        proofs.close()
        store.close()
    assert own["anchor_commit"] is None and later["anchor_commit"] is not None
    save_genesis(tmp / "genesis.json", genesis)
    stranger = PrivateKey.generate().public_key.to_bytes().hex()
    (tmp / "stranger.json").write_text(
        json.dumps(
            {
                "chain_id": genesis.chain_id,
                "validators": [{"pubkey": stranger, "power": 1, "org": "x"}],
            }
        )
    )
    (tmp / "trusted.json").write_text(
        json.dumps(
            {
                "chain_id": genesis.chain_id,
                "validators": [
                    {"pubkey": v.pubkey.hex(), "power": v.power, "org": v.org}
                    for v in genesis.validators
                ],
            }
        )
    )
    paths = {}
    for name, bundle in (("own", own), ("later", later)):
        paths[name] = tmp / f"{name}.json"
        paths[name].write_text(json.dumps(bundle))
    return {
        "height": height,
        "head": built.head,
        "own": own,
        "later": later,
        "paths": paths,
        "genesis": str(tmp / "genesis.json"),
        "trusted": str(tmp / "trusted.json"),
        "stranger": str(tmp / "stranger.json"),
        "chain_id": genesis.chain_id,
        "validator_set": "0x" + compute_validator_set_fingerprint(genesis.validators).hex(),
    }


def test_proof_verify_valid(bundles: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    anchor = ["--genesis", bundles["genesis"]]
    code, out, _ = run(["proof", "verify", str(bundles["paths"]["own"]), *anchor], capsys)
    assert code == 0
    tx_id, height = bundles["own"]["tx_id"], bundles["height"]
    assert out.startswith(f"VALID: tx {tx_id} in block {height}, receipt status OK;")
    later = str(bundles["paths"]["later"])
    code, out, _ = run(["proof", "verify", later, "--json", *anchor], capsys)
    assert code == 0
    assert json.loads(out) == {
        "valid": True,
        "tx_id": tx_id,
        "height": height,
        "acc_size": bundles["later"]["acc_size"],
        "anchor_height": bundles["head"],
        "chain_id": bundles["chain_id"],
        "validator_set": bundles["validator_set"],
        "genesis_hash": None,  # the later bundle's headers start above height 1
    }


def test_proof_verify_needs_a_trust_anchor(
    bundles: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("own", "later"):
        code, out, err = run(["proof", "verify", str(bundles["paths"][name])], capsys)
        assert code == 1 and not out
        assert_one_line_error(err)
        assert "no trust anchor" in err and "--genesis" in err


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("tx_id", "0x" + "00" * 32, "Merkle proofs do not lead"),
        ("acc_index", 3, "Merkle proofs do not lead"),
        ("index_in_block", 1, "Merkle proofs do not lead"),
        ("acc_root", "0x" + "ab" * 32, "Merkle proofs do not lead"),
        ("tx_id", "0x12", "malformed proof: tx_id"),
        ("header", "0x0102", "malformed proof"),
        ("acc_inclusion_proof", "nope", "malformed proof"),
        ("version", 1, "unsupported bundle version 1"),
        ("anchor_commit", {"headers": [], "proof": "0x00"}, "anchor_commit"),
    ],
)
def test_proof_verify_invalid(
    bundles: dict[str, Any],
    tmp_path: Path,
    field: str,
    value: Any,
    reason: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = dict(bundles["own"], **{field: value})
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    code, out, _ = run(["proof", "verify", str(path), "--genesis", bundles["genesis"]], capsys)
    assert code == 1
    assert out.startswith("INVALID: ")
    assert reason in out


def test_proof_verify_against_a_validator_set(
    bundles: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("own", "later"):
        path = str(bundles["paths"][name])
        code, out, err = run(["proof", "verify", path, "--validators", bundles["trusted"]], capsys)
        assert code == 0, out + err
        code, out, _ = run(["proof", "verify", path, "--validators", bundles["stranger"]], capsys)
        assert code == 1
        assert "does not verify against the trusted validator set" in out
    code, _, err = run(
        ["proof", "verify", path, "--validators", bundles["trusted"], "--genesis", "g"], capsys
    )
    assert code == 1 and "not both" in err


def test_proof_verify_file_errors(
    bundles: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    anchor = ["--genesis", bundles["genesis"]]
    code, _, err = run(["proof", "verify", str(tmp_path / "none.json"), *anchor], capsys)
    assert code == 1 and "no such file" in err
    assert_one_line_error(err)
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    code, _, err = run(["proof", "verify", str(junk), *anchor], capsys)
    assert code == 1 and "not valid JSON" in err
    assert_one_line_error(err)
    junk.write_text("[1, 2]")
    code, out, _ = run(["proof", "verify", str(junk), *anchor], capsys)
    assert code == 1 and out.startswith("INVALID: malformed")

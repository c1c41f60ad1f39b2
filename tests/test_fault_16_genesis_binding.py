"""Fault 16 (issue 10), review round: which chain does a verified bundle prove?

A vote's signing root names the chain id but not the genesis, and the verifier checked
certificates with no genesis in mind, so a bundle from ANOTHER genesis with the same chain id and
validator keys verified against ours; with `--validators` and no chain id any chain id passed,
and the VALID line did not say which chain or validator set it had proven. Also, deeply nested
JSON made `gmchain proof verify` crash ("internal error (RecursionError ...)") instead of saying
INVALID. Now:

1. Anchored by a genesis, every header of the bundle at height 1 must have the genesis block
   (derived from that genesis) as its parent and justify; a bundle that reaches height 1 is
   thereby bound to the genesis, and the result says whether it was.
2. The result and the VALID line name the chain id and the validator set's fingerprint.
3. A validators-only anchor needs a chain id (`chain_id=`, `--chain-id`, or the file's).
4. Unparseable or absurdly nested JSON is INVALID, exit 1.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.store import Store
from gmchain.ledger.types import Genesis, GenesisValidator
from gmchain.node import sdk
from gmchain.node.proofserve import ProofLimits, ProofService
from tests.node_helpers import ROOT
from tests.proof_chain import build_certified_chain

GMCHAIN = str(ROOT / ".venv" / "bin" / "gmchain")
CHAIN = "binding-test"
T0 = 1_700_000_000_000


@dataclass
class _Chain:
    genesis: Genesis
    first: dict[str, Any]  # the bundle of a transaction at height 1
    later: dict[str, Any]  # one at height >= 3 (no header of it reaches height 1)


def _genesis(validator: PrivateKey, sender: PrivateKey, ts: int) -> Genesis:
    return Genesis(
        chain_id=CHAIN,
        timestamp_ms=ts,
        validators=(GenesisValidator(pubkey=validator.public_key.to_bytes(), power=1, org="o"),),
        accounts=((sender.public_key.to_bytes(), "o", "admin"),),
    )


def _build(dir: Path, genesis: Genesis, validator: PrivateKey, sender: PrivateKey) -> _Chain:
    built = build_certified_chain(dir, genesis, validator, sender, blocks=4, tx_every=2)
    store = Store.open(dir, chain_id=genesis.chain_id)
    service = ProofService(
        store=store,
        validators=genesis.validators,
        head_height=lambda: built.head,
        limits=ProofLimits(max_span=64, threads=1, jobs_per_client=1, queue_per_client=4),
    )
    try:
        by_height = dict(built.tx_ids)
        first = service.build_tx_proof(by_height[1], None, built.head)
        later = service.build_tx_proof(by_height[3], None, built.head)
    finally:
        service.close()
        store.close()
    return _Chain(genesis=genesis, first=first, later=later)


@pytest.fixture(scope="module")
def chains(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[_Chain, _Chain]]:
    """Ours, and another genesis with the same chain id and validator key (one ms later)."""
    d = tmp_path_factory.mktemp("binding")
    validator, sender = PrivateKey.generate(), PrivateKey.generate()
    ours = _build(d / "ours", _genesis(validator, sender, T0), validator, sender)
    other = _build(d / "other", _genesis(validator, sender, T0 + 1), validator, sender)
    yield ours, other


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GMCHAIN, "proof", "verify", *args], capture_output=True, text=True, timeout=60
    )


def _genesis_file(tmp_path: Path, genesis: Genesis) -> str:
    from gmchain.node.config import save_genesis

    path = tmp_path / "genesis.json"
    save_genesis(path, genesis)
    return str(path)


def test_a_bundle_of_another_genesis_is_refused(
    chains: tuple[_Chain, _Chain], tmp_path: Path
) -> None:
    ours, other = chains
    assert ours.genesis.compute_hash() != other.genesis.compute_hash()
    assert sdk.verify_proof_bundle(ours.first, genesis=ours.genesis).genesis_hash == (
        ours.genesis.compute_hash()
    )
    with pytest.raises(sdk.SdkError, match="genesis"):
        sdk.verify_proof_bundle(other.first, genesis=ours.genesis)
    bundle = tmp_path / "other.json"
    bundle.write_text(json.dumps(other.first))
    out = _cli(str(bundle), "--genesis", _genesis_file(tmp_path, ours.genesis))
    assert out.returncode == 1 and out.stdout.startswith("INVALID"), out


def test_the_result_names_the_chain_the_validator_set_and_the_binding(
    chains: tuple[_Chain, _Chain], tmp_path: Path
) -> None:
    ours, _ = chains
    fingerprint = sdk.compute_validator_set_fingerprint(ours.genesis.validators)
    first = sdk.verify_proof_bundle(ours.first, genesis=ours.genesis)
    later = sdk.verify_proof_bundle(ours.later, genesis=ours.genesis)
    for v in (first, later):
        assert v.chain_id == CHAIN and v.validator_set == fingerprint
    assert later.genesis_hash is None  # its headers start at height 3: nothing to bind with
    bundle = tmp_path / "b.json"
    bundle.write_text(json.dumps(ours.later))
    out = _cli(str(bundle), "--genesis", _genesis_file(tmp_path, ours.genesis))
    assert out.returncode == 0, out
    assert f"chain {CHAIN!r}" in out.stdout and fingerprint.hex()[:16] in out.stdout, out.stdout
    out = _cli(str(bundle), "--genesis", _genesis_file(tmp_path, ours.genesis), "--json")
    doc = json.loads(out.stdout)
    assert doc["chain_id"] == CHAIN and doc["validator_set"] == "0x" + fingerprint.hex()
    assert doc["genesis_hash"] is None


def test_a_validator_set_alone_needs_a_chain_id(
    chains: tuple[_Chain, _Chain], tmp_path: Path
) -> None:
    ours, _ = chains
    vals = [
        {"pubkey": "0x" + v.pubkey.hex(), "power": v.power, "org": v.org}
        for v in ours.genesis.validators
    ]
    with pytest.raises(sdk.SdkError, match="chain_id"):
        sdk.verify_proof_bundle(ours.later, validators=vals)
    with pytest.raises(sdk.SdkError, match="not 'elsewhere'"):
        sdk.verify_proof_bundle(ours.later, validators=vals, chain_id="elsewhere")
    assert sdk.verify_proof_bundle(ours.later, validators=vals, chain_id=CHAIN).chain_id == CHAIN
    bundle, listed = tmp_path / "b.json", tmp_path / "vals.json"
    bundle.write_text(json.dumps(ours.later))
    listed.write_text(json.dumps({"validators": vals}))
    out = _cli(str(bundle), "--validators", str(listed))
    assert out.returncode != 0 and "chain" in (out.stdout + out.stderr), out
    out = _cli(str(bundle), "--validators", str(listed), "--chain-id", "elsewhere")
    assert out.returncode == 1 and out.stdout.startswith("INVALID"), out
    out = _cli(str(bundle), "--validators", str(listed), "--chain-id", CHAIN)
    assert out.returncode == 0 and out.stdout.startswith("VALID"), out
    listed.write_text(json.dumps({"chain_id": CHAIN, "validators": vals}))
    assert _cli(str(bundle), "--validators", str(listed)).returncode == 0


def test_deeply_nested_json_is_invalid_not_a_crash(
    chains: tuple[_Chain, _Chain], tmp_path: Path
) -> None:
    ours, _ = chains
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    out = _cli(str(deep), "--genesis", _genesis_file(tmp_path, ours.genesis))
    assert out.returncode == 1 and out.stdout.startswith("INVALID"), out
    assert "internal error" not in out.stdout + out.stderr

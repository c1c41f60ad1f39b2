"""Fault 16 (issue 10): the SDK's proof check ignored the commit certificate.

`node.sdk.verify_proof` returned True for a bundle whose QC was garbage; the genesis-pinned check
existed only as an undocumented internal function; `gmchain proof verify` without `--genesis`
exited 0 on a bundle certified by a validator set it carried itself. Required (docs/rpc.md
"Verifying a proof"):
1. The SDK has one documented entry point, `verify_proof_bundle`, that needs a trust anchor (the
   genesis, or a validator set) and checks everything: Merkle paths, receipt, links, and the QC
   signatures and quorum against the trusted set. No SDK function accepts a garbage QC.
2. `gmchain proof verify FILE` exits non-zero with a one-line message unless the bundle verified
   against `--genesis` or `--validators`; a self-certified bundle is refused.
3. A good bundle from a real node verifies against the chain's genesis (SDK and CLI).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gmchain.consensus.messages import CommitProof
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.types import Genesis, NodeId, QuorumCert
from gmchain.node import sdk
from gmchain.node.config import load_genesis
from gmchain.node.daemon import DEV_PASSPHRASE
from gmchain.node.keys_cli import load_key
from tests.node_helpers import ROOT, NodeProcess, RpcSession
from tests.proof_chain import _tx

GMCHAIN = str(ROOT / ".venv" / "bin" / "gmchain")


@dataclass
class _Proofs:
    genesis: Genesis
    genesis_file: Path
    own: dict[str, Any]  # anchored at the tx's own certified block
    later: dict[str, Any]  # anchored at a later head
    dir: Path
    validator_key: PrivateKey  # the dev chain's one validator (to forge what only it could sign)


def _commit(rpc: RpcSession, genesis: Genesis, key: PrivateKey) -> str:
    head = rpc.call("gm_status")["height"]
    tx_id: str = rpc.call(
        "gm_sendRawTransaction", "0x" + _tx(genesis, key, expiry=head + 50).encode().hex()
    )
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if rpc.call("gm_waitForReceipt", tx_id, 5000) is not None:
            return tx_id
    raise AssertionError("the transaction did not commit within 60 s")


@pytest.fixture(scope="module")
def proofs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Proofs]:
    home = tmp_path_factory.mktemp("fault16")
    node = NodeProcess(data_dir=home / "dev", home=home)
    node.start()
    rpc = RpcSession(node.port, timeout_s=60)
    try:
        node.wait_ready(120)
        genesis = load_genesis(home / "dev" / "genesis.json")
        key = load_key(home / "dev" / "client.key", DEV_PASSPHRASE.encode())
        first = _commit(rpc, genesis, key)
        for _ in range(3):
            _commit(rpc, genesis, key)
        head = rpc.call("gm_status")["height"]
        own = rpc.call("gm_getTransactionProof", first)
        later = rpc.call("gm_getTransactionProof", first, head)
        assert later["acc_size"] > own["acc_size"]
        node_key = load_key(home / "dev" / "node.key", DEV_PASSPHRASE.encode())
        yield _Proofs(genesis, home / "dev" / "genesis.json", own, later, home, node_key)
    finally:
        rpc.close()
        node.stop()


def _certificates(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in (bundle.get("commit"), bundle.get("anchor_commit")) if c]


def _recertify(bundle: dict[str, Any], sign: Callable[[QuorumCert], QuorumCert]) -> dict[str, Any]:
    """A copy whose every commit certificate has its QCs rebuilt by `sign`."""
    out = copy.deepcopy(bundle)
    for cert in _certificates(out):
        proof = CommitProof.decode(bytes.fromhex(cert["proof"][2:]))
        child = dataclasses.replace(proof.header, justify=sign(proof.header.justify))
        qc = sign(dataclasses.replace(proof.qc, block_id=child.block_id))
        cert["proof"] = "0x" + CommitProof(header=child, qc=qc).encode().hex()
    return out


def _garbage(qc: QuorumCert) -> QuorumCert:
    return dataclasses.replace(qc, signatures=tuple((n, os.urandom(64)) for n, _ in qc.signatures))


def _signed_by(key: PrivateKey, chain_id: str) -> Callable[[QuorumCert], QuorumCert]:
    def sign(qc: QuorumCert) -> QuorumCert:
        root = QuorumCert.signing_root(chain_id, qc.epoch, qc.block_id, qc.round, qc.height)
        return dataclasses.replace(
            qc, signatures=((NodeId(key.public_key.address), key.sign(root)),)
        )

    return sign


def _garbage_qc_bundle(p: _Proofs) -> dict[str, Any]:
    bad = _recertify(p.own, lambda qc: qc)
    for cert in _certificates(bad):  # keep the child intact: only the QC's signatures change
        proof = CommitProof.decode(bytes.fromhex(cert["proof"][2:]))
        cert["proof"] = (
            "0x" + CommitProof(header=proof.header, qc=_garbage(proof.qc)).encode().hex()
        )
    return bad


def _self_certified(p: _Proofs) -> dict[str, Any]:
    """Certificates re-signed by a stranger, who also names itself as the validator set."""
    stranger = PrivateKey.generate()
    forged = _recertify(p.later, _signed_by(stranger, p.genesis.chain_id))
    me = {"pubkey": "0x" + stranger.public_key.to_bytes().hex(), "power": 1, "org": "x"}
    for cert in _certificates(forged):
        cert["validators"] = [me]
    forged["validators"] = [me]
    return forged


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [GMCHAIN, "proof", "verify", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )


def _write(p: _Proofs, name: str, bundle: dict[str, Any]) -> str:
    path = p.dir / f"{name}.json"
    path.write_text(json.dumps(bundle))
    return str(path)


def test_no_sdk_function_accepts_a_garbage_qc(proofs: _Proofs) -> None:
    bad = _garbage_qc_bundle(proofs)
    old = getattr(sdk, "verify_proof", None)
    if old is not None:  # the base SDK's check: it must not call this bundle good
        try:
            accepted = old(bad)
        except (TypeError, sdk.SdkError):
            accepted = False
        assert not accepted, "verify_proof accepted a bundle whose QC is garbage"
    with pytest.raises(sdk.SdkError, match="does not verify against the trusted validator set"):
        sdk.verify_proof_bundle(bad, genesis=proofs.genesis)
    # Only the tip's own QC (inside the certificate's child header) is garbage; the outer QC is
    # validly signed by the real validator over that child. The 2-chain's first link must hold.
    real = _signed_by(proofs.validator_key, proofs.genesis.chain_id)
    inner = _recertify(proofs.later, lambda qc: _garbage(qc) if qc.signatures else qc)
    for cert in _certificates(inner):
        proof = CommitProof.decode(bytes.fromhex(cert["proof"][2:]))
        cert["proof"] = "0x" + CommitProof(header=proof.header, qc=real(proof.qc)).encode().hex()
    with pytest.raises(sdk.SdkError, match="the tip's own QC does not verify"):
        sdk.verify_proof_bundle(inner, genesis=proofs.genesis)


def test_sdk_entry_point_requires_a_trust_anchor(proofs: _Proofs) -> None:
    with pytest.raises(sdk.SdkError, match="trust anchor"):
        sdk.verify_proof_bundle(proofs.own)


def test_self_certified_bundle_is_refused(proofs: _Proofs) -> None:
    forged = _self_certified(proofs)
    path = _write(proofs, "forged", forged)
    bare = _cli(path)  # the base code checked it against the set inside the bundle: exit 0
    assert bare.returncode != 0, bare.stdout
    pinned = _cli(path, "--genesis", str(proofs.genesis_file))
    assert pinned.returncode != 0, pinned.stdout
    assert "INVALID" in pinned.stdout + pinned.stderr
    with pytest.raises(sdk.SdkError, match=r"not a validator|does not verify"):
        sdk.verify_proof_bundle(forged, genesis=proofs.genesis)


def test_cli_without_anchor_exits_nonzero_with_one_line(proofs: _Proofs) -> None:
    path = _write(proofs, "good", proofs.own)
    res = _cli(path)
    assert res.returncode != 0, res.stdout
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1 and "--genesis" in lines[0], lines


def test_good_bundles_verify_against_the_genesis(proofs: _Proofs) -> None:
    for bundle in (proofs.own, proofs.later):
        verified = sdk.verify_proof_bundle(bundle, genesis=proofs.genesis)
        assert "0x" + verified.tx_id.hex() == bundle["tx_id"]
        assert verified.acc_size == bundle["acc_size"]
        # The genesis file's path works too, and so does its validator set with its chain id
        # (required since the review round: tests/test_fault_16_genesis_binding.py).
        sdk.verify_proof_bundle(bundle, genesis=proofs.genesis_file)
        sdk.verify_proof_bundle(
            bundle, validators=proofs.genesis.validators, chain_id=proofs.genesis.chain_id
        )
    # The bundle is what docs/openrpc.json says it is (TxProof, version 2).
    from gmchain.node.rpc import load_openrpc

    schema = load_openrpc()["components"]["schemas"]["TxProof"]
    for bundle in (proofs.own, proofs.later):
        assert bundle["version"] == 2
        assert set(schema["required"]) <= set(bundle) <= set(schema["properties"])
    res = _cli(_write(proofs, "later", proofs.later), "--genesis", str(proofs.genesis_file))
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("VALID")
    vals = proofs.dir / "validators.json"
    vals.write_text(
        json.dumps(
            {
                "chain_id": proofs.genesis.chain_id,
                "validators": [
                    {"pubkey": v.pubkey.hex(), "power": v.power, "org": v.org}
                    for v in proofs.genesis.validators
                ],
            }
        )
    )
    res = _cli(_write(proofs, "own", proofs.own), "--validators", str(vals))
    assert res.returncode == 0, res.stdout + res.stderr

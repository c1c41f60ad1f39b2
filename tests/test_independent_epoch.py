"""Epoch-change proofs and bundles across epochs, checked by tests/independent_epoch.py (written
from docs/protocol.md alone): the worked examples verify, and each tampering is refused."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests import independent_epoch_chain as ec
from tests.independent_client import ProofError, decode, decode_header, encode
from tests.independent_epoch import (
    fingerprint,
    load_genesis,
    next_validators_commitment,
    verify_bundle,
    verify_epoch_proof,
)

PROTOCOL_MD = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def example(name: str) -> str:
    m = re.search(
        rf"<!-- example: {re.escape(name)} -->\n```\w+\n(.*?)\n```", PROTOCOL_MD.read_text(), re.S
    )
    assert m is not None, f"protocol.md has no example {name!r}"
    return m.group(1)


def example_lines(name: str) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in example(name).splitlines() if " = " in line)


@pytest.fixture(scope="module")
def doc_genesis() -> Any:
    return load_genesis(json.loads(example("genesis_json")))


@pytest.fixture(scope="module")
def doc_proof() -> dict[str, Any]:
    return dict(json.loads(example("epoch_proof")))


# ---------------------------------------------------------------- the docs' worked examples


def test_genesis_block_id_computed_from_the_genesis_document(doc_genesis: Any) -> None:
    """§6: the height-0 header (state hash of the genesis writes included) from genesis.json."""
    block0 = example_lines("block0")
    assert doc_genesis.state_hash.hex() == block0["state_hash"]
    assert doc_genesis.block_id.hex() == block0["block_id"]
    assert (
        doc_genesis.validators.fingerprint.hex() == example_lines("validator_set")["validator_set"]
    )


def test_worked_epoch_proof_reaches_epoch_1(doc_genesis: Any, doc_proof: dict[str, Any]) -> None:
    result = verify_epoch_proof(doc_proof, doc_genesis.chain_id, doc_genesis.validators)
    assert sorted(result.sets) == [0, 1]
    one = result.sets[1]
    # "the genesis set without its last validator (by node id)"
    genesis_ids = sorted(doc_genesis.validators.members)
    assert sorted(one.members) == genesis_ids[:-1]
    assert (one.total, one.quorum) == (3, 3)
    assert [h.height for h in result.checked_headers] == [5]
    assert result.checked_headers[0].next_validators_hash == next_validators_commitment(
        1, one.fingerprint
    )


def test_worked_tx_proof_verifies_with_the_epoch_aware_verifier(doc_genesis: Any) -> None:
    certified = verify_bundle(json.loads(example("tx_proof")), doc_genesis)
    assert (certified.header.height, certified.anchor.height) == (1, 2)
    assert certified.epochs is None


def _resign(proof_hex: str, mutate: Any) -> str:
    proof = decode(bytes.fromhex(proof_hex[2:]), 5)
    mutate(proof)
    return "0x" + encode(proof).hex()


def _flip_qc_signature(p: dict[str, Any]) -> None:
    def flip(proof: list[Any]) -> None:
        sig = bytearray(proof[2][5][0][1])
        sig[10] ^= 1
        proof[2][5][0][1] = bytes(sig)

    p["entries"][0]["proof"] = _resign(p["entries"][0]["proof"], flip)


def _flip_justify_signature(p: dict[str, Any]) -> None:
    def flip(proof: list[Any]) -> None:
        sig = bytearray(proof[1][15][5][1][1])
        sig[0] ^= 0x80
        proof[1][15][5][1][1] = bytes(sig)

    p["entries"][0]["proof"] = _resign(p["entries"][0]["proof"], flip)


def _next_set_keeps_removed(p: dict[str, Any]) -> None:
    genesis = json.loads(example("genesis_json"))
    p["entries"][0]["next_validators"] = [
        {**v, "pubkey": "0x" + v["pubkey"]} for v in genesis["validators"]
    ]


def _next_set_other_power(p: dict[str, Any]) -> None:
    p["entries"][0]["next_validators"][0]["power"] = 2


def _entry_epoch_1(p: dict[str, Any]) -> None:
    p["entries"][0]["epoch"] = 1


def _drop_entry(p: dict[str, Any]) -> None:
    p["entries"] = []


def _to_epoch_2(p: dict[str, Any]) -> None:
    p["to_epoch"] = 2


def _from_epoch_1(p: dict[str, Any]) -> None:
    p["from_epoch"], p["to_epoch"] = 1, 2


def _old_cert_for_epoch_1(p: dict[str, Any]) -> None:
    """The epoch-0 certificate presented again as epoch 1's (its headers name epoch 0)."""
    p["to_epoch"] = 2
    p["entries"].append({**copy.deepcopy(p["entries"][0]), "epoch": 1})


def _drop_a_header(p: dict[str, Any]) -> None:
    p["entries"][0]["headers"] = []


def _other_header_as_e(p: dict[str, Any]) -> None:
    """E replaced by block 2 (a certified epoch-0 header of the example chain)."""
    p["entries"][0]["headers"] = ["0x" + example_lines("block2")["block"][8:]]


@pytest.mark.parametrize(
    "tamper",
    [
        _flip_qc_signature,
        _flip_justify_signature,
        _next_set_keeps_removed,
        _next_set_other_power,
        _entry_epoch_1,
        _drop_entry,
        _to_epoch_2,
        _from_epoch_1,
        _old_cert_for_epoch_1,
        _drop_a_header,
        _other_header_as_e,
    ],
)
def test_worked_epoch_proof_tampered_is_refused(
    doc_genesis: Any, doc_proof: dict[str, Any], tamper: Any
) -> None:
    p = copy.deepcopy(doc_proof)
    tamper(p)
    with pytest.raises(ProofError):
        verify_epoch_proof(p, doc_genesis.chain_id, doc_genesis.validators)


def test_worked_epoch_proof_refused_for_another_chain_id(
    doc_genesis: Any, doc_proof: dict[str, Any]
) -> None:
    with pytest.raises(ProofError, match="chain id"):
        verify_epoch_proof(doc_proof, "gmchain-other", doc_genesis.validators)


def test_trusting_epoch_1_skips_the_entry_below_it(
    doc_genesis: Any, doc_proof: dict[str, Any]
) -> None:
    """A verifier that trusts epoch 1's set skips entry 0 (step 2), even a broken one."""
    one = verify_epoch_proof(doc_proof, doc_genesis.chain_id, doc_genesis.validators).sets[1]
    p = copy.deepcopy(doc_proof)
    _flip_qc_signature(p)
    assert verify_epoch_proof(p, doc_genesis.chain_id, one).last is one
    p["to_epoch"], p["entries"] = 0, []
    with pytest.raises(ProofError, match="below the trusted"):
        verify_epoch_proof(p, doc_genesis.chain_id, one)


# ---------------------------------------------------------------- a chain of two epoch changes


@pytest.fixture(scope="module")
def chain() -> ec.Chain:
    return ec.build()


def test_two_changes_reach_epoch_2(chain: ec.Chain) -> None:
    r = verify_epoch_proof(ec.epoch_proof(chain), ec.CHAIN_ID, chain.genesis.validators)
    assert sorted(r.sets) == [0, 1, 2]
    assert r.sets[2].fingerprint == fingerprint([(k.public, 1) for k in chain.sets[2]])


def test_reordered_entries_are_refused(chain: ec.Chain) -> None:
    p = ec.epoch_proof(chain)
    p["entries"].reverse()
    with pytest.raises(ProofError, match="epoch is not 0"):
        verify_epoch_proof(p, ec.CHAIN_ID, chain.genesis.validators)
    p["entries"][0]["epoch"], p["entries"][1]["epoch"] = 0, 1  # renumbered too
    with pytest.raises(ProofError):
        verify_epoch_proof(p, ec.CHAIN_ID, chain.genesis.validators)


def test_a_dropped_middle_entry_is_refused(chain: ec.Chain) -> None:
    p = ec.epoch_proof(chain)
    del p["entries"][0]
    with pytest.raises(ProofError, match=r"1 entries for epochs 0\.\.2"):
        verify_epoch_proof(p, ec.CHAIN_ID, chain.genesis.validators)
    p["from_epoch"] = 1  # now it starts above the trusted epoch 0
    with pytest.raises(ProofError, match="above the trusted"):
        verify_epoch_proof(p, ec.CHAIN_ID, chain.genesis.validators)


def _resign_cert(
    chain: ec.Chain, cert: dict[str, Any], signers: list[Any], epoch: int
) -> dict[str, Any]:
    """The certificate's headers with epoch `epoch`, the QCs re-signed by `signers`."""
    raw = [decode(bytes.fromhex(h[2:]), 4) for h in cert["headers"]]
    proof = decode(bytes.fromhex(cert["proof"][2:]), 5)
    child = proof[1]
    child[15] = chain.qc(raw[-1], signers, epoch)
    return {
        "headers": cert["headers"],
        "proof": ec.hx(encode([24, child, chain.qc(child, signers, epoch)])),
    }


def test_old_set_signing_for_the_new_epoch_is_refused(chain: ec.Chain) -> None:
    """Entry 1 (epoch 1's ending certificate) signed by epoch 0's set, v3 (removed) among them."""
    p = ec.epoch_proof(chain)
    old = [chain.keys[1], chain.keys[2], chain.keys[3]]
    p["entries"][1].update(_resign_cert(chain, chain.epoch_certs[1], old, 1))
    with pytest.raises(ProofError, match="not in epoch 1"):
        verify_epoch_proof(p, ec.CHAIN_ID, chain.genesis.validators)
    # The same signers with the epoch number 0 are refused too (the QC names another epoch).
    p["entries"][1].update(_resign_cert(chain, chain.epoch_certs[1], old, 0))
    with pytest.raises(ProofError, match="epoch 0, not the set's 1"):
        verify_epoch_proof(p, ec.CHAIN_ID, chain.genesis.validators)


def test_swapped_next_set_in_the_first_entry_is_refused(chain: ec.Chain) -> None:
    p = ec.epoch_proof(chain)
    p["entries"][0]["next_validators"] = chain.set_json(0)  # keep v3: not what E names
    with pytest.raises(ProofError, match="commitment"):
        verify_epoch_proof(p, ec.CHAIN_ID, chain.genesis.validators)


def test_bundle_of_a_later_epoch_verifies_from_genesis(chain: ec.Chain) -> None:
    certified = verify_bundle(ec.bundle(chain), chain.genesis)
    assert (certified.header.epoch, certified.anchor.epoch) == (1, 1)
    assert certified.receipt[2] == 0


def test_bundle_with_the_anchor_in_the_next_epoch_uses_the_intermediate_set(
    chain: ec.Chain,
) -> None:
    """tx in epoch 1, anchor in epoch 2: `commit` is checked against epoch 1's set, which the
    epoch proof (to epoch 2) passes through."""
    certified = verify_bundle(ec.bundle(chain, anchor_height=10), chain.genesis)
    assert (certified.header.epoch, certified.anchor.epoch) == (1, 2)
    assert certified.epochs is not None and sorted(certified.epochs.sets) == [0, 1, 2]


def test_bundle_tamperings_are_refused(chain: ec.Chain) -> None:
    good = ec.bundle(chain, anchor_height=10)
    cases: list[tuple[str, Any]] = []
    b = copy.deepcopy(good)
    del b["epoch_proof"]
    cases.append(("no epoch proof", b))
    b = copy.deepcopy(good)
    b["epoch_proof"] = ec.epoch_proof(chain, 1)
    cases.append(("epoch proof short of the anchor's epoch", b))
    b = copy.deepcopy(good)
    b["commit"] = _resign_cert(chain, good["commit"], chain.sets[0][1:], 1)
    cases.append(("commit signed by the old set under epoch 1", b))
    b = copy.deepcopy(good)
    b["anchor_commit"] = _resign_cert(chain, good["anchor_commit"], chain.sets[0][1:], 2)
    cases.append(("anchor_commit signed by epoch 0's v1..v3 (v3 removed) under epoch 2", b))
    b = copy.deepcopy(good)
    b["epoch_proof"]["entries"][1]["next_validators"] = chain.set_json(1)
    cases.append(("next set of epoch 2 swapped", b))
    for what, bad in cases:
        with pytest.raises(ProofError):
            verify_bundle(bad, chain.genesis)
            pytest.fail(what)


def test_bundle_trusting_a_later_epoch_refuses_a_tx_below_it(chain: ec.Chain) -> None:
    two = verify_epoch_proof(ec.epoch_proof(chain), ec.CHAIN_ID, chain.genesis.validators).sets[2]
    with pytest.raises(ProofError, match="below the trusted"):
        verify_bundle(ec.bundle(chain, anchor_height=10), chain.genesis, trusted=two)


def _forged_entry_from_block_1() -> dict[str, Any]:
    """Report finding F4's attack: a certified epoch-0 header that did NOT end the epoch (block 1
    with its certificate, from the tx_proof example) presented as "the end of epoch 0", with
    `next_validators` = epoch 0's own (unchanged) set."""
    commit = json.loads(example("tx_proof"))["commit"]
    genesis_validators = json.loads(example("genesis_json"))["validators"]
    return {
        "from_epoch": 0,
        "to_epoch": 1,
        "entries": [
            {
                "epoch": 0,
                **commit,
                "next_validators": [
                    {**v, "pubkey": "0x" + v["pubkey"]} for v in genesis_validators
                ],
            }
        ],
    }


def test_a_non_ending_header_with_an_unchanged_set_is_refused(doc_genesis: Any) -> None:
    """Regression for F4: `next_validators_hash` commits to the next block's epoch as well as its
    set (protocol.md §6, "Epoch-change proofs" step 2), so a header inside epoch 0 commits to
    (0, set_0) and cannot pass as the end of epoch 0, which must commit to (1, set_1). Before
    the fix this entry passed and the verifier held the genesis set (4 validators) for epoch 1,
    whose real set (the epoch_proof example) has three."""
    forged = _forged_entry_from_block_1()
    block1 = decode_header(bytes.fromhex(forged["entries"][0]["headers"][0][2:]))
    assert (block1.epoch, block1.height) == (0, 1)  # certified, inside epoch 0: not its end
    with pytest.raises(ProofError, match="next_validators_hash"):
        verify_epoch_proof(forged, doc_genesis.chain_id, doc_genesis.validators)
    real = verify_epoch_proof(
        json.loads(example("epoch_proof")), doc_genesis.chain_id, doc_genesis.validators
    ).sets[1]
    assert len(real.members) == 3

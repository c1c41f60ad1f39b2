"""crosschain/relay_proofs.py on REAL proofs: a `gmchain dev` chain (real LevelDB, sockets, SM2),
evidence records submitted, `gm_getTransactionProof` + the raw tx turned into `Packet`s and
`Ack`s whose inclusion paths are checked here with ledger.merkle against the header, and whose
certificate verifies with the light client from the chain's genesis. Tampered answers (another
tx's raw bytes, a changed receipt, a broken path, another block's certificate) are refused with
a reason (relay_proofs.py rule 1).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from gmchain.chain.lightclient import TrustAnchor, verify_header_chain
from gmchain.crosschain.packets import Ack, Packet
from gmchain.crosschain.relay_proofs import (
    RelayProofError,
    certificate_from_json,
    epoch_changes_from_json,
    packet_seqs,
    proven_tx_from_bundle,
)
from gmchain.ledger.genesis import Genesis
from gmchain.ledger.merkle import leaf_hash, verify_inclusion
from gmchain.ledger.types import BlockHeader, Receipt, SignedTx
from gmchain.node.config import load_genesis
from tests.node_helpers import NodeProcess, RpcSession, evidence_args, sign_tx


@dataclass
class _Chain:
    genesis: Genesis
    rpc: RpcSession
    tx_ids: list[str]


def _commit(rpc: RpcSession, tx: SignedTx) -> str:
    tx_id: str = rpc.call("gm_sendRawTransaction", "0x" + tx.encode().hex())
    end = time.monotonic() + 60
    while time.monotonic() < end:
        receipt = rpc.call("gm_waitForReceipt", tx_id, 5000)
        if receipt is not None:
            assert receipt["status"] == 0, receipt
            return tx_id
    raise AssertionError("the transaction did not commit within 60 s")


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Chain]:
    home = tmp_path_factory.mktemp("relayproofs")
    node = NodeProcess(data_dir=home / "dev", home=home)
    node.start()
    rpc = RpcSession(node.port, timeout_s=60)
    try:
        node.wait_ready(120)
        genesis = load_genesis(home / "dev" / "genesis.json")
        key = node.client_key()
        ids = []
        for i in range(4):
            head = rpc.call("gm_status")["height"]
            tx = sign_tx(
                key,
                chain_id=genesis.chain_id,
                expiry=head + 10,
                args=evidence_args(f"rp-{i}", data=f"record {i}".encode()),
            )
            ids.append(_commit(rpc, tx))
        yield _Chain(genesis, rpc, ids)
    finally:
        rpc.close()
        node.stop()


def _fetch(chain: _Chain, tx_id: str) -> tuple[dict[str, Any], str]:
    bundle = chain.rpc.call("gm_getTransactionProof", tx_id)
    raw = chain.rpc.call("gm_getTransactionByHash", tx_id)["raw"]
    return bundle, raw


def test_a_real_bundle_becomes_a_packet_whose_paths_lead_to_the_header(chain: _Chain) -> None:
    for tx_id in chain.tx_ids:
        bundle, raw = _fetch(chain, tx_id)
        proven = proven_tx_from_bundle(bundle, raw)
        packet = Packet.decode(proven.packet("regulator-x", 7).encode())
        assert (packet.source_chain_id, packet.dest_chain_id, packet.seq) == (
            chain.genesis.chain_id,
            "regulator-x",
            7,
        )
        proof = packet.proof
        header = BlockHeader.decode(bytes.fromhex(bundle["header"][2:]))
        assert proof.height == header.height == bundle["height"]
        tx = SignedTx.decode_tx(proof.tx)
        assert "0x" + tx.tx_id.hex() == tx_id
        # The two inclusion paths, checked here with ledger.merkle against the header's roots.
        assert verify_inclusion(
            leaf_hash(tx.tx_id), proof.index, header.tx_count, proof.tx_path, header.tx_root
        )
        assert verify_inclusion(
            leaf_hash(proof.receipt),
            proof.index,
            header.tx_count,
            proof.receipt_path,
            header.receipt_root,
        )
        receipt = Receipt.decode(proof.receipt)
        assert receipt.tx_id == tx.tx_id and receipt.status == 0
        # A path checked against another index fails: the check above can fail.
        if header.tx_count == 1:
            assert not verify_inclusion(leaf_hash(tx.tx_id), 0, 2, proof.tx_path, header.tx_root)
        # The certificate the relayer will submit verifies with the genesis' validators.
        cert = proven.commit
        assert cert.headers[0].block_id == header.block_id
        verified = verify_header_chain(
            cert.to_json(), TrustAnchor.from_genesis(chain.genesis), first=header
        )
        assert [h.height for h in verified] == [h.height for h in cert.headers]
        # Ack: the same proof, another envelope.
        ack = Ack.decode(proven.ack("biz").encode())
        assert ack.proof == proof and ack.source_chain_id == chain.genesis.chain_id


def test_no_packet_queued_event_without_a_relay_rule(chain: _Chain) -> None:
    bundle, raw = _fetch(chain, chain.tx_ids[0])
    proven = proven_tx_from_bundle(bundle, raw)
    assert packet_seqs(proven.receipt, "regulator-x") == []


def test_tampered_answers_are_refused_with_a_reason(chain: _Chain) -> None:
    bundle, raw = _fetch(chain, chain.tx_ids[0])
    other_bundle, other_raw = _fetch(chain, chain.tx_ids[-1])

    with pytest.raises(RelayProofError, match="tx ids differ"):
        proven_tx_from_bundle(bundle, other_raw)

    receipt = Receipt.decode(bytes.fromhex(bundle["receipt"][2:]))
    forged = Receipt(tx_id=receipt.tx_id, status=1, error="forged")
    bad = copy.deepcopy(bundle)
    bad["receipt"] = "0x" + forged.encode().hex()
    with pytest.raises(RelayProofError, match="receipt_root"):
        proven_tx_from_bundle(bad, raw)

    bad = copy.deepcopy(bundle)
    bad["index_in_block"] = bundle["index_in_block"] + 1
    with pytest.raises(RelayProofError, match="tx_root"):
        proven_tx_from_bundle(bad, raw)

    bad = copy.deepcopy(bundle)
    bad["commit"] = other_bundle["commit"]
    if other_bundle["height"] != bundle["height"]:
        with pytest.raises(RelayProofError, match="does not start at the tx block"):
            proven_tx_from_bundle(bad, raw)

    bad = copy.deepcopy(bundle)
    bad["version"] = 1
    with pytest.raises(RelayProofError, match="version"):
        proven_tx_from_bundle(bad, raw)


def test_commit_and_epoch_proofs_convert(chain: _Chain) -> None:
    head = chain.rpc.call("gm_status")["height"]
    bundle, _ = _fetch(chain, chain.tx_ids[0])
    doc = chain.rpc.call("gm_getCommitProof", bundle["height"])
    cert = certificate_from_json(doc)
    assert cert.headers[0].height == bundle["height"] <= head
    verify_header_chain(cert.to_json(), TrustAnchor.from_genesis(chain.genesis))
    broken = dict(doc, headers=list(reversed(doc["headers"])))
    if len(doc["headers"]) > 1:
        with pytest.raises(RelayProofError, match="break"):
            certificate_from_json(broken)
    assert epoch_changes_from_json(chain.rpc.call("gm_getEpochProof", 0)) == []

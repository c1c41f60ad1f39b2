"""docs/protocol.md's worked examples are valid by the doc's own rules, checked by the real code.

Everything is read back from the markdown (not from the generator's objects) and handed to the
validators a node runs: `chain.core.Chain.validate_block` over a real LevelDB store (header
commitments recomputed by the real executor and contracts, increasing timestamps, parent links,
transaction signatures), `consensus.certs.CertChecker` (QC and TC signatures and quorum, the
proposal's signature and leader, the 2-chain commit proof), the replica's proposal well-formedness
rules (docs/consensus.md L2), and `chain.lightclient.verify_full_proof` for the bundle of §9.
Each check is shown to bite: the same call on a planted defect (an unsigned QC, a timestamp equal
to the parent's, a wrong link) fails.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from gmchain.chain.core import Chain
from gmchain.chain.lightclient import (
    ProofCheckError,
    TrustAnchor,
    verify_epoch_proof,
    verify_full_proof,
)
from gmchain.chain.txrules import TxRules
from gmchain.consensus import Validator, ValidatorSet
from gmchain.consensus.certs import CertChecker
from gmchain.consensus.messages import CommitProof
from gmchain.consensus.packing import PackingConfig, PackingPolicy
from gmchain.contracts import default_registry
from gmchain.crypto_sm import PublicKey
from gmchain.ledger.codec import decode
from gmchain.ledger.store import Store
from gmchain.ledger.types import (
    Block,
    Genesis,
    NodeId,
    Proposal,
    QuorumCert,
    Receipt,
    ReceiptStatus,
    TimeoutCert,
    TimeoutVote,
    Vote,
    compute_signing_root,
)
from gmchain.node.chainpool import MempoolPool
from gmchain.node.config import load_genesis
from gmchain.node.mempool import Mempool, MempoolConfig
from gmchain.node.proofserve import ProofLimits, ProofService

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
EXAMPLES = dict(re.findall(r"<!-- example: (\w+) -->\n```\w+\n(.*?)\n```", DOC.read_text(), re.S))


def kv(name: str) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in EXAMPLES[name].splitlines())


def raw(name: str, key: str) -> bytes:
    return bytes.fromhex(kv(name)[key])


GENESIS = Genesis.decode(raw("genesis", "genesis"))
BLOCKS = [Block.decode(raw(f"block{i}", "block")) for i in range(4)]
PROPOSAL = Proposal.decode(raw("struct_Proposal", "encoding"))


class _Keys:
    """The genesis validators' keys: the only trust anchor (never a key carried in a message)."""

    def __init__(self, genesis: Genesis) -> None:
        self.keys = {NodeId(v.node_id): PublicKey.from_bytes(v.pubkey) for v in genesis.validators}

    def verify(self, node_id: NodeId, msg: bytes, sig: bytes) -> bool:
        key = self.keys.get(node_id)
        return key is not None and key.verify(msg, sig)


def checker() -> CertChecker:
    vset = ValidatorSet(Validator(node_id=v.node_id, power=v.power) for v in GENESIS.validators)
    return CertChecker(
        chain_id=GENESIS.chain_id,
        validators=vset,
        verifier=_Keys(GENESIS),
        genesis_id=BLOCKS[0].block_id,
    )


# The validator's now for every example block (the examples' blocks are 1 s apart).
NOW_MS = GENESIS.timestamp_ms + 10_000


@pytest.fixture
def chain(tmp_path: Path) -> Any:
    store = Store.open(tmp_path / "db", chain_id=GENESIS.chain_id)
    rules = TxRules.with_new_caches(
        chain_id=GENESIS.chain_id, replay_window=GENESIS.replay_window, registry=default_registry()
    )
    mempool = Mempool(config=MempoolConfig(), rules=rules)
    c = Chain(
        genesis=GENESIS,
        store=store,
        rules=rules,
        pool=MempoolPool(mempool),
        packing=PackingPolicy(PackingConfig()),
    )
    try:
        yield c
    finally:
        store.close()


def test_genesis_json_is_the_genesis_struct(tmp_path: Path) -> None:
    doc = json.loads(EXAMPLES["genesis_json"])
    path = tmp_path / "genesis.json"
    path.write_text(EXAMPLES["genesis_json"])
    assert load_genesis(path) == GENESIS
    assert doc["genesis_hash"] == kv("genesis")["genesis_hash"] == GENESIS.compute_hash().hex()
    # The field-by-field mapping the doc states: JSON objects become struct arrays.
    assert [[bytes.fromhex(a["pubkey"]), a["org"], a["role"]] for a in doc["accounts"]] == [
        list(a) for a in GENESIS.accounts
    ]
    assert [bytes.fromhex(o) for o in doc["observers"]] == list(GENESIS.observers)
    doc["replay_window"] += 1  # a genesis.json whose hash does not match is refused
    path.write_text(json.dumps(doc))
    with pytest.raises(Exception, match="genesis_hash does not match"):
        load_genesis(path)


def test_every_example_transaction_calls_a_real_method() -> None:
    rules = TxRules.with_new_caches(
        chain_id=GENESIS.chain_id, replay_window=GENESIS.replay_window, registry=default_registry()
    )
    txs = [t for b in BLOCKS for t in b.txs]
    assert len(txs) == 5
    for t in txs:
        rules.check_call(t)  # a real method (not a query) whose arguments fit its schema
        # The tx id is the body's signing root, not a hash of the SignedTx bytes (§5).
        assert t.tx_id == compute_signing_root("tx", t.body.to_fields())
        assert PublicKey.from_bytes(t.body.sender).verify(t.tx_id, t.signature)


def _commit_proof(i: int) -> CommitProof:
    """The certificate of block i (1 or 2) in the doc: its child and the child's QC (the QC is in
    the grandchild's justify; block 4, in the proposal, carries block 3's)."""
    later = [b.header for b in BLOCKS] + [PROPOSAL.block.header]
    return CommitProof(header=later[i + 1], qc=later[i + 2].justify)


def follow(chain: Chain) -> None:
    """Validate blocks 1-3 as a replica does, committing 1 and 2 with their certificates."""
    certs = checker()
    assert chain.head.block_id == BLOCKS[0].block_id  # the node derives the same block 0
    assert chain.head.state_hash == raw("block0", "state_hash")
    parent = chain.head
    for i, block in enumerate(BLOCKS[1:], start=1):
        h = block.header
        assert certs.verify_qc(h.justify), f"block{i}'s justify QC"
        assert h.justify.block_id == h.parent_id and h.justify.height == h.height - 1
        assert chain.validate_block(block, parent, now_ms=NOW_MS), f"block{i}"
        parent = h
        if i < 3:
            assert certs.verify_commit_proof(_commit_proof(i))
            chain.commit([block], _commit_proof(i))
            stored = [chain.store.get_receipt(t.tx_id) for t in block.txs]
            documented = [raw(f"block{i}", f"receipt{j}") for j in range(len(block.txs))]
            assert stored == documented, f"block{i} receipts"


def test_blocks_pass_the_real_block_validation(chain: Chain) -> None:
    follow(chain)
    assert chain.head.block_id == BLOCKS[2].block_id
    statuses = [Receipt.decode(raw("block2", f"receipt{j}")).status for j in range(2)]
    assert statuses == [ReceiptStatus.OK, ReceiptStatus.FAILED]  # a failure still commits


def test_validation_bites_on_planted_defects(chain: Chain) -> None:
    """The two defects the doc's examples once had are refused by the same validators."""
    certs = checker()
    b1, b2 = BLOCKS[1], BLOCKS[2]
    unsigned = dataclasses.replace(b2.header.justify, signatures=())
    assert not certs.verify_qc(unsigned)
    two = dataclasses.replace(
        b2.header.justify, signatures=b2.header.justify.signatures[:2]
    )  # 2 of 4 votes of power 1: not more than 2/3
    assert not certs.verify_qc(two)
    same_time = dataclasses.replace(b1.header, timestamp_ms=BLOCKS[0].header.timestamp_ms)
    assert not chain.validate_block(
        dataclasses.replace(b1, header=same_time), chain.head, now_ms=NOW_MS
    )
    assert chain.validate_block(b1, chain.head, now_ms=NOW_MS)


def test_proposal_timeout_and_vote_examples(chain: Chain) -> None:
    certs = checker()
    h = PROPOSAL.block.header
    tc = PROPOSAL.tc
    assert tc is not None
    assert TimeoutCert.decode(raw("struct_TimeoutCert", "encoding")) == tc
    # docs/consensus.md L2, as consensus/replica.py checks a proposal before anything else.
    assert h.justify.block_id == h.parent_id and h.round > h.justify.round
    assert h.height == h.justify.height + 1
    assert h.round != h.justify.round + 1 and tc.round + 1 == h.round  # a skip needs the TC
    assert certs.verify_proposal_sig(PROPOSAL) and certs.verify_qc(h.justify)
    assert certs.verify_tc(tc)
    forged = dataclasses.replace(PROPOSAL, signature=bytes(64))
    assert not certs.verify_proposal_sig(forged)
    assert not certs.verify_tc(dataclasses.replace(tc, entries=tc.entries[:2]))
    timeout = TimeoutVote.decode(raw("struct_TimeoutVote", "encoding"))
    assert certs.verify_timeout_sig(timeout) and certs.verify_qc(timeout.high_qc)
    vote = Vote.decode(raw("vote", "vote"))
    assert certs.verify_vote(vote)
    assert (vote.voter, vote.signature) in BLOCKS[3].header.justify.signatures
    # block 4 (in the proposal) is valid on block 3 by the node's block rules
    follow(chain)
    assert chain.validate_block(PROPOSAL.block, BLOCKS[3].header, now_ms=NOW_MS)
    assert h.timestamp_ms > BLOCKS[3].header.timestamp_ms


def test_commit_proofs_and_bundle_verify_against_the_genesis() -> None:
    certs = checker()
    proof = CommitProof.decode(raw("struct_CommitProof", "encoding"))
    assert certs.verify_commit_proof(proof)
    assert proof.committed_id == BLOCKS[1].block_id
    bundle = json.loads(EXAMPLES["tx_proof"])
    verified = verify_full_proof(
        bundle,
        TrustAnchor(
            chain_id=GENESIS.chain_id,
            validators=GENESIS.validators,
            genesis=(GENESIS.compute_hash(), BLOCKS[0].block_id),
        ),
    )
    assert (verified.height, verified.anchor_height) == (1, 2)
    assert verified.genesis_hash == GENESIS.compute_hash()
    assert decode(bytes.fromhex(bundle["commit"]["proof"][2:])) == proof.to_fields()
    broken = json.loads(EXAMPLES["tx_proof"])
    qc = broken["commit"]["proof"]
    broken["commit"]["proof"] = qc[:-3] + ("0" if qc[-3] != "0" else "1") + qc[-2:]
    with pytest.raises(ProofCheckError):
        verify_full_proof(broken, TrustAnchor.from_validators(GENESIS.validators, GENESIS.chain_id))


def test_the_epoch_proof_example_verifies_from_the_genesis() -> None:
    """docs/protocol.md "Epoch-change proofs": the example reaches epoch 1, whose set is the
    genesis set without its last validator by node id; a changed next set is refused."""
    doc = json.loads(EXAMPLES["epoch_proof"])
    reached = verify_epoch_proof(doc, TrustAnchor.from_genesis(GENESIS))
    by_id = sorted(GENESIS.validators, key=lambda v: v.node_id)
    assert reached.epoch == 1 and set(reached.validators) == set(by_id[:3])
    doc["entries"][0]["next_validators"] = doc["entries"][0]["next_validators"][:2]
    with pytest.raises(ProofCheckError, match="next_validators_hash"):
        verify_epoch_proof(doc, TrustAnchor.from_genesis(GENESIS))


def test_a_non_ending_header_cannot_pass_as_an_epoch_end() -> None:
    """Regression for F4 (docs/protocol.md "Epoch-change proofs"): the certified block 1 of the
    tx_proof example, inside epoch 0, presented as the end of epoch 0 with the unchanged genesis
    set as `next_validators`, is refused: its `next_validators_hash` commits to (epoch 0, set 0),
    an end of epoch 0 must commit to (epoch 1, next set)."""
    commit = json.loads(EXAMPLES["tx_proof"])["commit"]
    assert decode(bytes.fromhex(commit["headers"][0][2:]))[2:4] == [0, 1]  # epoch 0, height 1
    by_id = sorted(GENESIS.validators, key=lambda v: v.node_id)
    forged = {
        "from_epoch": 0,
        "to_epoch": 1,
        "entries": [
            {
                "epoch": 0,
                **commit,
                "next_validators": [
                    {"pubkey": "0x" + v.pubkey.hex(), "power": v.power, "org": v.org} for v in by_id
                ],
            }
        ],
    }
    with pytest.raises(ProofCheckError, match="next_validators_hash"):
        verify_epoch_proof(forged, TrustAnchor.from_genesis(GENESIS))


def test_quorum_arithmetic_of_the_examples() -> None:
    """4 validators of power 1: a QC needs power >= floor(2 * 4 / 3) + 1 = 3."""
    assert len(GENESIS.validators) == 4 and {v.power for v in GENESIS.validators} == {1}
    for b in BLOCKS[2:]:
        sigs = b.header.justify.signatures
        assert len(sigs) == 3
        assert [n for n, _ in sigs] == sorted(n for n, _ in sigs)
    assert QuorumCert.decode(raw("struct_QuorumCert", "encoding")) == BLOCKS[2].header.justify


def test_the_node_serves_exactly_the_documented_proofs(chain: Chain) -> None:
    """§9's examples are what the node's proof builders return for the example chain."""
    follow(chain)  # blocks 1 and 2 committed, each with its certificate
    service = ProofService(
        store=chain.store,
        validators=GENESIS.validators,
        head_height=lambda: chain.head.height,
        limits=ProofLimits(max_span=16, threads=1, jobs_per_client=1, queue_per_client=1),
    )
    try:
        head = chain.head.height
        tx_id = BLOCKS[1].txs[1].tx_id
        assert service.build_tx_proof(tx_id, 2, head) == json.loads(EXAMPLES["tx_proof"])
        default = service.build_tx_proof(tx_id, None, head)  # anchor: the tip of `commit`
        assert default["anchor_commit"] is None and default["anchor_header"] == default["header"]
        served = service.build_consistency_proof(1, 2, head)
        assert served == json.loads(EXAMPLES["consistency_proof"])
        cert = service.build_commit_proof(1, head)
        assert cert["headers"] == ["0x" + BLOCKS[1].header.encode().hex()]  # starts at h itself
        assert cert["proof"] == "0x" + raw("struct_CommitProof", "encoding").hex()
    finally:
        service.close()

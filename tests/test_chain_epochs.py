"""Epochs in the chain library (issue 12; EPOCHS.md E3, E4, E6, E7, E8; chain/core.py rules 5-7,
chain/epochs.py, chain/validators.py rule 4, chain/proofs.py rules 5-6, chain/lightclient.py
rule 6), over MemStore and LevelDB, with real SM2 certificates (tests/epoch_chain.py)."""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gmchain.chain.epochs import EpochRecord, compute_epoch_change, epoch_config_key
from gmchain.chain.lightclient import (
    ProofCheckError,
    TrustAnchor,
    compute_validator_set_fingerprint,
    verify_epoch_proof,
    verify_full_proof,
)
from gmchain.chain.proofs import ProofAssembler, ProofOutOfRange
from gmchain.chain.readcheck import check_served_header
from gmchain.consensus.messages import CommitProof
from gmchain.ledger.codec import encode
from gmchain.ledger.epoch import next_validators_commitment
from gmchain.ledger.jsonfmt import hex0x, parse_hex
from gmchain.ledger.memstore import MemStore
from gmchain.ledger.store import Store
from gmchain.ledger.store_api import ChainStore
from gmchain.ledger.types import Block, BlockHeader
from tests.epoch_chain import Rig, make_rig, validator_of

Opener = Callable[[], ChainStore]


@pytest.fixture(params=["memory", "leveldb"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the test's store (the same data on every call: a reopen is a restart)."""
    if request.param == "memory":
        mem = MemStore()
        yield lambda: mem
        return
    opened: list[Store] = []

    def open_disk() -> ChainStore:
        for s in opened:
            s.close()
        opened.append(Store.open(tmp_path / "db", chain_id="node-test-chain"))
        return opened[-1]

    yield open_disk
    for s in opened:
        s.close()


def _fp(rig: Rig, epoch: int, keys: list[Any]) -> bytes:
    """What a header whose next block is of `epoch`, certified by `keys`, carries."""
    return next_validators_commitment(epoch, [validator_of(k) for k in keys])


def _end_epoch_directly(rig: Rig) -> tuple[Block, Block]:
    """E (carrying the governance tx that adds keys[1]) committed by its suffix child S1."""
    for tx in rig.add_validator_txs(rig.keys[1]):
        rig.submit(tx)
    end = rig.build()
    rig.extend(end)
    rig.submit(rig.evidence_tx())  # waits in the pool: the suffix takes no transaction
    suffix = rig.build()
    rig.commit([end], suffix)
    return end, suffix


# --- E3: the epoch-ending block and its suffix -----------------------------------------------


def test_a_governance_change_ends_the_epoch_and_its_suffix_is_empty(opener: Opener) -> None:
    rig = make_rig(opener())
    genesis_fp = rig.chain.validators.config(0).next_validators_commitment
    assert rig.chain.head.next_validators_hash == genesis_fp == _fp(rig, 0, rig.keys[:1])
    end, suffix = _end_epoch_directly(rig)
    assert [t.body.method for t in end.txs] == ["propose", "vote"]
    assert end.header.epoch == 0 and suffix.header.epoch == 0
    # E and its suffix commit to epoch 1 and its set (ledger/epoch.py rule 3).
    assert end.header.next_validators_hash == _fp(rig, 1, rig.keys[:2]) != genesis_fp
    assert suffix.txs == () and suffix.header.next_validators_hash == _fp(rig, 1, rig.keys[:2])
    # E4: the commit stopped at E and handed over the switch, once.
    assert rig.chain.head == end.header and rig.store.head_height() == end.header.height
    (switch,) = rig.switches
    assert switch.config.epoch == 1 and switch.ending == end.header
    assert switch.root_qc == suffix.header.justify and switch.root_qc.epoch == 0
    assert rig.chain.take_epoch_switch() is None
    # E7: the provider answers from the record.
    v = rig.chain.validators
    h = end.header.height
    assert (v.current_epoch(), v.epoch_at(h), v.epoch_at(h + 1), v.epoch_at(h + 100)) == (
        1,
        0,
        1,
        1,
    )
    assert v.validators_at(h) == v.config(0).validators
    assert {x.pubkey for x in v.validators_at(h + 1)} == {
        k.public_key.to_bytes() for k in rig.keys[:2]
    }
    assert len(v.voting_set_at(h + 1)) == 2
    # The new epoch's first block: on E, justified by QC(E), epoch 1, the waiting tx included.
    first = rig.build()
    assert first.header.epoch == 1 and first.header.justify == switch.root_qc
    assert [t.body.contract for t in first.txs] == ["evidence"]
    assert first.header.next_validators_hash == _fp(rig, 1, rig.keys[:2])


def test_a_block_without_a_governance_change_ends_nothing() -> None:
    writes = {("governance", b"ep"): encode([1, 7])}
    assert compute_epoch_change(writes, 8) is None  # written at another height: not this block's
    assert compute_epoch_change({("evidence", b"ep"): b"x"}, 7) is None


def test_a_suffix_block_with_transactions_is_refused(
    opener: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    rig = make_rig(opener())
    for tx in rig.add_validator_txs(rig.keys[1]):
        rig.submit(tx)
    end = rig.build()
    rig.extend(end)
    suffix = rig.build()
    tx = rig.evidence_tx()
    stuffed = Block(header=dataclasses.replace(suffix.header, tx_count=1), txs=(tx,))
    caplog.set_level(logging.WARNING, logger="gmchain.chain")
    assert not rig.chain.validate_block(stuffed, end.header, now_ms=rig.now)
    assert "carries no transactions" in caplog.text


def test_wrong_epoch_fields_are_refused(opener: Opener, caplog: pytest.LogCaptureFixture) -> None:
    rig = make_rig(opener())
    caplog.set_level(logging.WARNING, logger="gmchain.chain")
    # next_validators_hash of E must commit to the next epoch and set: not the current set, nor
    # the next set under the current epoch, nor the bare fingerprint of the next set.
    for tx in rig.add_validator_txs(rig.keys[1]):
        rig.submit(tx)
    end = rig.build()
    nxt = [validator_of(k) for k in rig.keys[:2]]
    for wrong in (
        rig.chain.validators.config(0).next_validators_commitment,
        next_validators_commitment(0, nxt),
        compute_validator_set_fingerprint(nxt),
    ):
        caplog.clear()
        forged = Block(
            header=dataclasses.replace(end.header, next_validators_hash=wrong), txs=end.txs
        )
        assert not rig.chain.validate_block(forged, rig.chain.head, now_ms=rig.now)
        assert "next_validators_hash is not the commitment" in caplog.text
    assert rig.chain.validate_block(end, rig.chain.head, now_ms=rig.now)
    # A block of epoch 0 on the committed epoch-ending block is refused: it must be epoch 1.
    rig.extend(end)
    rig.commit([end], rig.build())
    first = rig.build()
    old_epoch = Block(header=dataclasses.replace(first.header, epoch=0), txs=first.txs)
    assert not rig.chain.validate_block(old_epoch, end.header, now_ms=rig.now)
    assert "epoch 0 where this chain is in epoch 1" in caplog.text


def test_a_follower_validates_the_same_epoch_end(opener: Opener) -> None:
    """Another node's chain library computes the same epoch, next_validators_hash and suffix."""
    rig = make_rig(opener())
    other = make_rig(MemStore(), net=rig.net)
    for tx in rig.add_validator_txs(rig.keys[1]):
        rig.submit(tx)
    end = rig.build()
    rig.extend(end)
    suffix = rig.build()
    assert other.chain.validate_block(end, other.chain.head, now_ms=rig.now)
    assert other.chain.validate_block(suffix, end.header, now_ms=rig.now)


# --- E4: commit truncation, the record, a restart -----------------------------------------


def test_commit_through_the_suffix_truncates_at_the_epoch_end(opener: Opener) -> None:
    rig = make_rig(opener())
    rig.run(3)
    for tx in rig.add_validator_txs(rig.keys[1]):
        rig.submit(tx)
    before = rig.chain.head
    end = rig.build()
    assert rig.pending is not None
    rig.commit([rig.pending], end)  # the block before E
    rig.extend(end)
    s1 = rig.build(round_=end.header.round + 2)  # a round skipped: E's 2-chain is broken
    rig.extend(s1)
    s2 = rig.build()
    done = rig.commit([end, s1], s2)  # S2 certifies S1 directly, E through it
    assert [c.block.block_id for c in done] == [end.block_id]
    assert rig.chain.head == end.header and rig.store.head_height() == end.header.height
    assert before.height + 2 == end.header.height
    raw = rig.store.get_epoch_record(1)
    assert raw is not None and rig.store.last_epoch() == 1
    record = EpochRecord.decode(raw)
    assert (
        record.headers == (end.header, s1.header) and record.start_height == end.header.height + 1
    )
    assert record.proof.header == s2.header and record.root_qc == s1.header.justify
    assert rig.store.get_commit_proof(end.header.height) in (None, b"")  # E's proof is the record
    assert rig.chain.find_commit_proof(end.header.height) == record.proof
    # The old replica commits the suffix again: nothing happens.
    assert rig.chain.commit([s1], CommitProof(header=s2.header, qc=rig.qc(s2.header))) == []
    assert rig.chain.head == end.header


def test_a_restart_continues_in_the_new_epoch(opener: Opener) -> None:
    rig = make_rig(opener())
    ev = rig.evidence_tx()
    rig.run(6, txs={1: [ev], 2: rig.add_validator_txs(rig.keys[1])})
    assert len(rig.switches) == 1 and rig.chain.validators.current_epoch() == 1
    head = rig.chain.head
    assert head.epoch == 1
    switch = rig.switches[0]
    rig.reopen(opener())  # a new Chain over the same data: a restart
    if isinstance(rig.store, Store):
        rig.store.check_consistency(deep=True)
    chain = rig.chain
    assert chain.head == head and chain.validators.current_epoch() == 1
    assert chain.current_epoch_switch() == switch
    assert chain.validators.epoch_at(switch.ending.height) == 0
    assert chain.validators.epoch_at(switch.ending.height + 1) == 1
    assert rig.store.get_tx_location(ev.tx_id) is not None
    ep = rig.store.get_state("governance", b"ep")
    assert ep == encode([1, switch.ending.height])
    assert rig.store.get_state("governance", epoch_config_key(1)) == switch.config.encode()
    rig.run(3, txs={0: [rig.evidence_tx()]})
    assert rig.chain.head.height == head.height + 2 and rig.chain.head.epoch == 1


def test_a_restart_right_after_the_epoch_end_builds_epoch_one(opener: Opener) -> None:
    rig = make_rig(opener())
    end, _ = _end_epoch_directly(rig)
    rig.reopen(opener())
    assert rig.chain.head == end.header
    switch = rig.chain.current_epoch_switch()
    assert switch is not None and switch.ending == end.header
    first = rig.build()
    assert first.header.epoch == 1 and first.header.justify == switch.root_qc


# --- E6: sync stops at the epoch end --------------------------------------------------------


def _sync(src: Rig, dst: Rig, max_count: int = 50) -> list[int]:
    """Pull committed blocks from `src` into `dst` as the replica does (validate each, commit
    each run at its proven tip); return the answer sizes."""
    sizes = []
    while dst.chain.head.height < src.chain.head.height:
        items = src.chain.get_committed_blocks(dst.chain.head.height + 1, max_count)
        assert items, "no progress"
        sizes.append(len(items))
        run: list[Block] = []
        parent = dst.chain.head
        for block, proof in items:
            assert dst.chain.validate_block(block, parent, now_ms=src.now)
            run.append(block)
            parent = block.header
            if proof.committed_id == block.block_id:
                dst.chain.commit(run, proof)
                dst.chain.take_epoch_switch()
                run = []
        assert not run
    return sizes


def test_sync_stops_at_the_epoch_end_and_serves_the_suffix(opener: Opener) -> None:
    rig = make_rig(opener())
    rig.run(2)
    for tx in rig.add_validator_txs(rig.keys[1]):
        rig.submit(tx)
    end = rig.build()
    assert rig.pending is not None
    rig.commit([rig.pending], end)
    rig.extend(end)
    s1 = rig.build(round_=end.header.round + 2)
    rig.extend(s1)
    rig.commit([end, s1], rig.build())
    rig.run(4, txs={0: [rig.evidence_tx()]})
    h_end = end.header.height
    items = rig.chain.get_committed_blocks(1, 50)
    assert [b.header.height for b, _ in items] == [*range(1, h_end + 1), h_end + 1]
    assert items[-1][0].header == s1.header and items[-1][0].txs == ()
    assert items[-2][1] == items[-1][1] and items[-1][1].committed_id == s1.block_id
    # A request that cannot hold E's run and its suffix stops before the run.
    assert len(rig.chain.get_committed_blocks(h_end - 1, 2)) == 1
    follower = make_rig(MemStore(), net=rig.net, n_keys=1)
    follower.keys = rig.keys
    sizes = _sync(rig, follower)
    assert sizes[0] == h_end + 1  # the first answer stopped at E (with its suffix)
    assert follower.chain.head == rig.chain.head
    assert follower.store.get_epoch_record(1) == rig.store.get_epoch_record(1)
    assert follower.chain.validators.current_epoch() == 1


# --- E8: epoch-change proofs and bundles across epochs --------------------------------------


def _two_epoch_changes(path: Path) -> tuple[Rig, dict[str, Any]]:
    """Epoch 0 {k0}; epoch 1 {k0, k1} (E committed through its suffix); epoch 2 {k1}.
    Returns the rig (LevelDB) and tx ids by epoch."""
    rig = make_rig(Store.open(path, chain_id="node-test-chain"))
    early = rig.evidence_tx()
    rig.run(3, txs={0: [early]})
    before = _assembler(rig).tx_proof(early.tx_id, None, rig.chain.head.height)
    for tx in rig.add_validator_txs(rig.keys[1]):
        rig.submit(tx)
    end = rig.build()
    assert rig.pending is not None
    rig.commit([rig.pending], end)
    rig.extend(end)
    s1 = rig.build(round_=end.header.round + 2)
    rig.extend(s1)
    rig.commit([end, s1], rig.build())
    middle = rig.evidence_tx()
    rig.run(4, txs={0: [middle], 2: rig.remove_validator_txs(rig.keys[0])})
    late = rig.evidence_tx()
    rig.run(4, txs={0: [late]})
    assert rig.chain.validators.current_epoch() == 2
    ids = {"early": early.tx_id, "middle": middle.tx_id, "late": late.tx_id}
    return rig, {**ids, "exported_before": before}


def _assembler(rig: Rig) -> ProofAssembler:
    assert isinstance(rig.store, Store)
    return ProofAssembler(
        store=rig.store,
        validators=rig.chain.validators.config(0).validators,
        max_span=64,
        check_header=check_served_header,
    )


@pytest.fixture(scope="module")
def two_changes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Rig, dict[str, Any]]]:
    rig, ids = _two_epoch_changes(tmp_path_factory.mktemp("epochs") / "db")
    yield rig, ids
    assert isinstance(rig.store, Store)
    rig.store.close()


def test_an_epoch_proof_verifies_from_genesis(two_changes: tuple[Rig, dict[str, Any]]) -> None:
    rig, _ = two_changes
    doc = _assembler(rig).epoch_proof(0, 2)
    assert [e["epoch"] for e in doc["entries"]] == [0, 1]
    assert len(doc["entries"][0]["headers"]) == 2  # epoch 0 ended through its suffix
    reached = verify_epoch_proof(doc, TrustAnchor.from_genesis(rig.genesis))
    assert reached.epoch == 2
    assert {v.pubkey for v in reached.validators} == {rig.keys[1].public_key.to_bytes()}
    # From a later trusted set, the entries before it are skipped.
    one = TrustAnchor(
        chain_id=rig.genesis.chain_id,
        validators=rig.chain.validators.config(1).validators,
        epoch=1,
    )
    assert verify_epoch_proof(doc, one).epoch == 2
    assert verify_epoch_proof(_assembler(rig).epoch_proof(1, 2), one).epoch == 2
    with pytest.raises(ProofOutOfRange):
        _assembler(rig).epoch_proof(1, 3)


def _tamper(doc: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    change(out)
    return out


def _forge_entry_qc(rig: Rig, entry: dict[str, Any], keys: list[Any], epoch: int) -> None:
    """Re-sign the entry's commit certificate QC with `keys`, naming `epoch`."""
    proof = CommitProof.decode(parse_hex(entry["proof"], name="proof"))
    header = dataclasses.replace(proof.header, epoch=epoch) if epoch != proof.header.epoch else None
    child = header or proof.header
    forged = CommitProof(header=child, qc=rig.qc(child, keys))
    entry["proof"] = hex0x(forged.encode())


def test_tampered_epoch_proofs_are_refused(two_changes: tuple[Rig, dict[str, Any]]) -> None:
    rig, _ = two_changes
    trust = TrustAnchor.from_genesis(rig.genesis)
    doc = _assembler(rig).epoch_proof(0, 2)
    k0, k1 = rig.keys[0], rig.keys[1]

    def wrong_set(d: dict[str, Any]) -> None:
        d["entries"][0]["next_validators"] = d["entries"][1]["next_validators"]

    def wrong_epoch(d: dict[str, Any]) -> None:
        d["entries"][1]["epoch"] = 2

    def broken_link(d: dict[str, Any]) -> None:
        d["entries"][0]["headers"] = d["entries"][0]["headers"][::-1]

    def old_set_signs_new_epoch(d: dict[str, Any]) -> None:
        _forge_entry_qc(rig, d["entries"][1], [k0], 1)  # epoch 1 needs k0 and k1

    def old_epoch_number(d: dict[str, Any]) -> None:
        _forge_entry_qc(rig, d["entries"][1], [k0, k1], 0)  # signed as epoch 0

    def dropped_entry(d: dict[str, Any]) -> None:
        d["entries"] = d["entries"][1:]

    def missing_from(d: dict[str, Any]) -> None:
        d["from_epoch"], d["entries"] = 1, d["entries"][1:]

    cases = {
        wrong_set: "next_validators_hash is not the commitment to epoch 1",
        wrong_epoch: "expected an object with epoch 1",
        broken_link: "the headers break",
        old_set_signs_new_epoch: "does not verify against the trusted validator set",
        old_epoch_number: "of another epoch",
        dropped_entry: "1 entries for epochs 0..2",
        missing_from: "starts at epoch 1, after the trusted epoch 0",
    }
    for change, message in cases.items():
        with pytest.raises(ProofCheckError, match=message):
            verify_epoch_proof(_tamper(doc, change), trust)
    assert verify_epoch_proof(doc, trust).epoch == 2  # the untampered proof still verifies


def test_bundles_verify_from_genesis_across_epoch_changes(
    two_changes: tuple[Rig, dict[str, Any]],
) -> None:
    rig, ids = two_changes
    trust = TrustAnchor.from_genesis(rig.genesis)
    head = rig.chain.head.height
    asm = _assembler(rig)
    # Exported before the change (a v2 bundle in epoch 0, no epoch proof): still verifies, and
    # so does the same transaction's bundle exported after it.
    assert "epoch_proof" not in ids["exported_before"]
    assert verify_full_proof(ids["exported_before"], trust).epoch == 0
    early = asm.tx_proof(ids["early"], None, head)
    assert "epoch_proof" not in early
    assert verify_full_proof(early, trust).epoch == 0
    # Its anchor never passes epoch 0's end (the suffix header is certified, not committed).
    end0 = rig.chain.validators.record(1)
    assert end0 is not None
    anchor = BlockHeader.decode(parse_hex(early["anchor_header"], name="anchor"))
    assert anchor.height <= end0.ending.height
    # Exported after: epochs 1 and 2 verify from genesis through the bundle's epoch proof.
    for name, epoch in (("middle", 1), ("late", 2)):
        bundle = asm.tx_proof(ids[name], None, head)
        assert bundle["version"] == 2 and bundle["epoch_proof"]["to_epoch"] >= epoch
        assert verify_full_proof(bundle, trust).epoch == epoch
        bare = {k: v for k, v in bundle.items() if k != "epoch_proof"}
        with pytest.raises(ProofCheckError, match=f"is in epoch {epoch}; the trusted set"):
            verify_full_proof(bare, trust)
    # An epoch-0 transaction anchored in epoch 2: the anchor's certificate by epoch 2's set.
    late_anchor = asm.tx_proof(ids["early"], head, head)
    assert late_anchor["epoch_proof"]["to_epoch"] == 2
    assert verify_full_proof(late_anchor, trust).anchor_height == head


def test_a_bundle_certified_by_the_old_set_in_a_new_epoch_is_refused(
    two_changes: tuple[Rig, dict[str, Any]],
) -> None:
    """The tx of epoch 2 (set {k1}) with its certificate's QC re-signed by k0 (epoch 0's set,
    no longer a validator) under epoch 2's number: refused, even with the genuine epoch proof."""
    rig, ids = two_changes
    bundle = _assembler(rig).tx_proof(ids["late"], None, rig.chain.head.height)
    _forge_entry_qc(rig, bundle["commit"], [rig.keys[0]], 2)
    with pytest.raises(ProofCheckError, match="does not verify against the trusted validator set"):
        verify_full_proof(bundle, TrustAnchor.from_genesis(rig.genesis))

"""A malicious relayer against the xclient contract (crosschain/xclient.py; docs/crosschain.md,
"Trust argument"): every test here is an input any admitted account can submit, built from the
two real chains of tests/xc_rig.py (real blocks, real SM2 QCs, real governance epoch changes).

A passing test: the contract refuses (or the attack changes nothing). An `xfail(strict=True)`
test asserts the SAFE behaviour the contract does not have yet; its reason names the hole.
Where a test signs with the foreign validators' keys (the rig holds them), the docstring says
which honest protocol run produces the same signatures."""

from __future__ import annotations

import dataclasses

import pytest

from gmchain.chain.epochs import EpochRecord
from gmchain.chain.lightclient import Certificate
from gmchain.consensus.messages import CommitProof
from gmchain.contracts.xc_layout import ACTIVE, FROZEN
from gmchain.crosschain.packets import (
    MAX_EPOCH_CHANGES,
    MAX_HEADERS,
    ClientUpdate,
    EpochChange,
    Misbehaviour,
    Packet,
    PacketFormatError,
)
from gmchain.crosschain.xclient_update import UNVERIFIED_ORG
from gmchain.ledger.epoch import next_validators_commitment
from gmchain.ledger.scalars import MAX_TX_BYTES, Digest, Height, Round
from gmchain.ledger.types import Receipt, ReceiptStatus, SignedTx
from tests.node_helpers import evidence_args, sign_tx
from tests.xc_rig import REGULATOR, Side, events, make_pair, packets_arg, query

OK = ReceiptStatus.OK
FAILED = ReceiptStatus.FAILED


def _height(side: Side, tx: SignedTx | Receipt) -> int:
    loc = side.store.get_tx_location(tx.tx_id)
    assert loc is not None
    return loc[0]


def _recv(reg: Side, packets: list[Packet]) -> Receipt:
    return reg.call("xclient", "recv_packets", [packets_arg(packets)])


def _update(reg: Side, update: bytes | ClientUpdate) -> Receipt:
    raw = update.encode() if isinstance(update, ClientUpdate) else update
    return reg.call("xclient", "update_client", [raw])


def _statuses(r: Receipt) -> list[tuple[int, str]]:
    return [(e["seq"], e["status"]) for e in events(r, "PacketReceived")]


def _delivered(n: int = 2) -> tuple[Side, Side, list[SignedTx]]:
    biz, reg = make_pair()
    txs = biz.evidence_txs(n)
    assert all(r.status == OK for r in biz.run_txs(txs))
    assert _update(reg, biz.update(_height(biz, txs[0]))).status == OK
    return biz, reg, txs


def _fork(side: Side, cert: Certificate) -> Certificate:
    """Another block at the height of `cert`'s first header, certified by its epoch's set (the
    rig holds the key: a Byzantine quorum)."""
    real = cert.headers[0]
    fake = dataclasses.replace(real, timestamp_ms=real.timestamp_ms + 1)
    child = dataclasses.replace(
        cert.proof.header if len(cert.headers) == 1 else cert.headers[1],
        parent_id=fake.block_id,
        justify=side.rig.qc(fake),
    )
    return Certificate(headers=(fake,), proof=CommitProof(header=child, qc=side.rig.qc(child)))


def _resigned(side: Side, cert: Certificate) -> Certificate:
    """The same headers and child, both QCs signed afresh (SM2 signatures are randomised, so
    the bytes differ): what two honest nodes' stores may each hold for one block."""
    child = dataclasses.replace(cert.proof.header, justify=side.rig.qc(cert.headers[-1]))
    return Certificate(headers=cert.headers, proof=CommitProof(header=child, qc=side.rig.qc(child)))


def _epoch_one() -> tuple[Side, Side, list[SignedTx], EpochRecord]:
    """Epoch 0 -> 1 on the business chain (a second validator joins), then a record in epoch 1's
    first block. Returns the epoch record of epoch 1 (E = its first header)."""
    biz, reg = make_pair()
    assert all(r.status == OK for r in biz.run_txs(biz.rig.add_validator_txs(biz.rig.keys[1])))
    late = biz.evidence_txs(1, tag="late")
    assert all(r.status == OK for r in biz.run_txs(late))
    rec = EpochRecord.decode(biz.store.get_epoch_record(1) or b"")
    return biz, reg, late, rec


def _suffix_certificate(biz: Side, rec: EpochRecord) -> Certificate:
    """A certificate of epoch 0 whose only header is S1, the block after the epoch-ending block E
    (the epoch record's CommitProof child: epoch 0, empty, parent E, carrying the commitment to
    epoch 1 like E, ledger/epoch.py rule 3), with S1's real QC as its tip QC and a child S2 of
    S1 certified by epoch 0's set. An honest run where E is committed indirectly (EPOCHS.md E4:
    the epoch record is then [E, S1, ..., B] + CommitProof(B), all signed by epoch 0) hands the
    relayer this certificate without any signing: it drops E from the record's headers. The rig
    commits E directly, so the test signs S2's QC with epoch 0's key."""
    s1 = rec.proof.header
    s2 = dataclasses.replace(
        s1,
        height=Height(s1.height + 1),
        round=Round(s1.round + 1),
        parent_id=s1.block_id,
        justify=rec.proof.qc,
    )
    return Certificate(headers=(s1,), proof=CommitProof(header=s2, qc=biz.rig.qc(s2)))


# --- epoch changes --------------------------------------------------------------------------------


def test_an_epoch_change_ending_at_a_suffix_block_cannot_hide_the_next_epochs_first_block() -> None:
    biz, reg, late, rec = _epoch_one()
    end = rec.headers[0]
    h = _height(biz, late[0])
    assert h == end.height + 1 and biz.header(h).epoch == 1
    suffix = _suffix_certificate(biz, rec)
    assert suffix.headers[0].next_validators_hash == end.next_validators_hash
    attack = EpochChange(epoch=0, certificate=suffix, next_validators=rec.config.validators)
    r = _update(reg, ClientUpdate(chain_id=biz.chain_id, epoch_changes=(attack,)))
    assert r.status == FAILED and "rule U10" in r.error, r.error
    # the same suffix behind E (E posing as the parent) is refused too
    behind = Certificate(headers=(end, *suffix.headers), proof=suffix.proof)
    r = _update(
        reg,
        ClientUpdate(
            chain_id=biz.chain_id, epoch_changes=(dataclasses.replace(attack, certificate=behind),)
        ),
    )
    assert r.status == FAILED and "rule U10" in r.error, r.error
    # and the honest relayer can still deliver
    honest = _update(reg, biz.update(h, changes=biz.epoch_changes(0, 1)))
    assert honest.status == OK, honest.error
    stored = query(reg, "header", [biz.chain_id, h])
    assert stored is not None and stored["block_id"] == biz.header(h).block_id
    assert _statuses(_recv(reg, [biz.packet(late[0].tx_id, REGULATOR)])) == [(1, "accepted")]


def test_a_suffix_certificate_before_the_epoch_change_stores_only_an_empty_header() -> None:
    """The same suffix certificate sent as a plain certificate while the client still trusts
    epoch 0 (the end of epoch 0 is not yet known): it verifies, but what it stores has no
    transaction, and the real epoch change plus epoch 1's certificate replace it (a higher epoch
    at the same height), so the record in E+1 is delivered."""
    biz, reg, late, rec = _epoch_one()
    h = _height(biz, late[0])
    r = _update(reg, ClientUpdate(chain_id=biz.chain_id, certificate=_suffix_certificate(biz, rec)))
    assert r.status == OK, r.error
    assert query(reg, "header", [biz.chain_id, h])["tx_count"] == 0
    assert _recv(reg, [biz.packet(late[0].tx_id, REGULATOR)]).status == FAILED
    r = _update(reg, biz.update(h, changes=biz.epoch_changes(0, 1)))
    assert r.status == OK, r.error
    assert query(reg, "header", [biz.chain_id, h])["block_id"] == biz.header(h).block_id
    assert _statuses(_recv(reg, [biz.packet(late[0].tx_id, REGULATOR)])) == [(1, "accepted")]


def test_a_relayer_cannot_relabel_the_orgs_of_the_next_validator_set() -> None:
    """Orgs are not certified, so the contract never stores the relayer's (xclient_update.py
    rule U11): a key of the set being left keeps its governance label, a new key is stored as
    UNVERIFIED_ORG; the forged and the honest change leave the same set."""
    biz, reg, _late, rec = _epoch_one()
    (real,) = biz.epoch_changes(0, 1)
    relabelled = tuple(dataclasses.replace(v, org="org-forged") for v in real.next_validators)
    forged = dataclasses.replace(real, next_validators=relabelled)
    r = _update(reg, ClientUpdate(chain_id=biz.chain_id, epoch_changes=(forged,)))
    assert r.status == OK, r.error
    governance = {v.pubkey: v.org for v in biz.rig.genesis.validators}
    expected = sorted(governance.get(v.pubkey, UNVERIFIED_ORG) for v in rec.config.validators)
    client = query(reg, "client", [biz.chain_id])
    assert sorted(v["org"] for v in client["validators"]) == expected
    assert "org-forged" not in expected and UNVERIFIED_ORG in expected
    biz2, reg2, _late2, _rec2 = _epoch_one()  # the honest change stores the same labels
    assert _update(reg2, biz2.update(None, changes=biz2.epoch_changes(0, 1))).status == OK
    honest = sorted(v["org"] for v in query(reg2, "client", [biz2.chain_id])["validators"])
    assert honest == expected


def test_a_reordered_copy_of_a_followed_epoch_change_does_not_freeze() -> None:
    """Misbehaviour from one honest epoch change plus a re-encoded copy (same set, another
    order, the QCs signed afresh): same fingerprint, so a no-op, never a freeze."""
    biz, reg, _late, _rec = _epoch_one()
    (real,) = biz.epoch_changes(0, 1)
    assert _update(reg, biz.update(None, changes=(real,))).status == OK
    copy = EpochChange(
        epoch=0,
        certificate=_resigned(biz, real.certificate),
        next_validators=tuple(reversed(real.next_validators)),
    )
    assert copy.certificate.proof.encode() != real.certificate.proof.encode()
    r = _update(reg, ClientUpdate(chain_id=biz.chain_id, epoch_changes=(copy,)))
    assert r.status == OK and r.events == ()
    assert query(reg, "client", [biz.chain_id])["status"] == ACTIVE


def test_an_epoch_change_for_epoch_one_signed_by_the_next_set_is_refused() -> None:
    """Certificate mixing across epochs: epoch 1's first block (signed by epoch 1's set) offered
    as the end of epoch 0, and a certificate mixing epoch 0 and 1 headers."""
    biz, reg, late, rec = _epoch_one()
    h = _height(biz, late[0])
    cert1 = biz.certificate(h)
    bad = EpochChange(epoch=0, certificate=cert1, next_validators=rec.config.validators)
    r = _update(reg, ClientUpdate(chain_id=biz.chain_id, epoch_changes=(bad,)))
    assert r.status == FAILED and "epoch" in r.error
    mixed = Certificate(headers=(rec.headers[0], *cert1.headers), proof=cert1.proof)
    r = _update(reg, ClientUpdate(chain_id=biz.chain_id, certificate=mixed))
    assert r.status == FAILED
    assert query(reg, "client", [biz.chain_id])["epoch"] == 0
    assert query(reg, "header", [biz.chain_id, h]) is None


# --- misbehaviour ---------------------------------------------------------------------------------


def test_misbehaviour_from_one_certificate_and_a_resigned_copy_is_refused() -> None:
    biz, reg, txs = _delivered()
    real = biz.certificate(_height(biz, txs[0]))
    copy = _resigned(biz, real)
    assert copy.proof.encode() != real.proof.encode()
    for a, b in ((real, copy), (real, real)):
        m = Misbehaviour(chain_id=biz.chain_id, first=a, second=b)
        r = reg.call("xclient", "submit_misbehaviour", [m.encode()])
        assert r.status == FAILED and "no different blocks" in r.error
    # and as an update: a repeat, not a conflict
    r = _update(reg, ClientUpdate(chain_id=biz.chain_id, certificate=copy))
    assert r.status == OK and r.events == ()
    assert query(reg, "client", [biz.chain_id])["status"] == ACTIVE


def test_misbehaviour_across_an_epoch_boundary_is_refused() -> None:
    """The suffix of epoch 0 at E+1 and epoch 1's real first block at E+1: two certified blocks
    at one height, but of two epochs — not a fork."""
    biz, reg, late, rec = _epoch_one()
    h = _height(biz, late[0])
    r = _update(reg, biz.update(h, changes=biz.epoch_changes(0, 1)))
    assert r.status == OK, r.error
    m = Misbehaviour(
        chain_id=biz.chain_id, first=_suffix_certificate(biz, rec), second=biz.certificate(h)
    )
    r = reg.call("xclient", "submit_misbehaviour", [m.encode()])
    assert r.status == FAILED and "epochs 0 and 1" in r.error
    # the suffix as a plain update after the change: above epoch 0's end, stores nothing
    r = _update(reg, ClientUpdate(chain_id=biz.chain_id, certificate=_suffix_certificate(biz, rec)))
    assert r.status == OK and r.events == ()
    assert query(reg, "client", [biz.chain_id])["status"] == ACTIVE
    assert query(reg, "header", [biz.chain_id, h])["epoch"] == 1


def test_misbehaviour_of_another_chain_id_is_refused() -> None:
    biz, reg, txs = _delivered()
    real = biz.certificate(_height(biz, txs[0]))
    m = Misbehaviour(chain_id=REGULATOR, first=real, second=_fork(biz, real))
    r = reg.call("xclient", "submit_misbehaviour", [m.encode()])
    assert r.status == FAILED and "not registered" in r.error
    assert query(reg, "client", [biz.chain_id])["status"] == ACTIVE


def test_replayed_evidence_cannot_refreeze_a_client_governance_reopened() -> None:
    biz, reg, txs = _delivered()
    real = biz.certificate(_height(biz, txs[0]))
    evidence = Misbehaviour(chain_id=biz.chain_id, first=real, second=_fork(biz, real)).encode()
    r = reg.call("xclient", "submit_misbehaviour", [evidence])
    assert r.status == OK and query(reg, "client", [biz.chain_id])["status"] == FROZEN
    reg.unfreeze(biz.chain_id, 0, biz.rig.genesis.validators)
    assert query(reg, "client", [biz.chain_id])["status"] == ACTIVE
    r = reg.call("xclient", "submit_misbehaviour", [evidence])
    assert r.status == FAILED and "already judged" in r.error
    # the same fork as a conflicting update: not stored, no freeze
    r = _update(reg, ClientUpdate(chain_id=biz.chain_id, certificate=_fork(biz, real)))
    assert r.status == OK and r.events == ()
    assert query(reg, "client", [biz.chain_id])["status"] == ACTIVE
    assert len(query(reg, "misbehaviour", [biz.chain_id])) == 1
    assert query(reg, "header", [biz.chain_id, real.headers[0].height])["block_id"] == (
        real.headers[0].block_id
    )


# --- packets --------------------------------------------------------------------------------------


def test_a_packet_of_a_failed_evidence_submit_is_refused() -> None:
    """A FAILED receipt (the record id again) proven in a verified block."""
    biz, reg = make_pair()
    first = biz.evidence_txs(1, tag="dup")
    assert biz.run_txs(first)[0].status == OK
    again = sign_tx(
        biz.admin,
        chain_id=biz.chain_id,
        expiry=biz.rig.chain.head.height + 50,
        args=evidence_args("dup-0", None, data=b"other"),
    )
    bad = biz.run_txs([again])[0]
    assert bad.status == FAILED
    assert _update(reg, biz.update(_height(biz, again))).status == OK
    good = biz.packet(first[0].tx_id, REGULATOR)
    proof = biz.tx_proof(again.tx_id)
    forged = dataclasses.replace(good, proof=proof)
    r = _recv(reg, [forged])
    assert r.status == FAILED and "did not succeed" in r.error


def test_a_leaf_index_beyond_tx_count_or_a_padded_path_is_refused() -> None:
    biz, reg, txs = _delivered(2)
    good = biz.packet(txs[1].tx_id, REGULATOR)
    p = good.proof
    cases = [
        dataclasses.replace(p, index=p.index + 2),  # tx_count 2: leaf 3 does not exist
        dataclasses.replace(p, tx_path=(*p.tx_path, p.tx_path[0])),
        dataclasses.replace(p, receipt_path=(*p.receipt_path, bytes(32))),
        dataclasses.replace(p, tx_path=p.tx_path[:-1]),
    ]
    for proof in cases:
        r = _recv(reg, [dataclasses.replace(good, proof=proof)])
        assert r.status == FAILED and "is not leaf" in r.error, r.error
    assert query(reg, "arrivals", [biz.chain_id, 10])["count"] == 0


def test_one_transaction_under_two_seqs_or_two_dests_is_refused() -> None:
    biz, reg, txs = _delivered(2)
    p1, p2 = (biz.packet(t.tx_id, REGULATOR) for t in txs)
    assert _statuses(_recv(reg, [p1])) == [(1, "accepted")]
    # seq 2 claimed for tx 1 (its PacketQueued says 1), tx 2's seq claimed with tx 1's proof
    for forged in (dataclasses.replace(p1, seq=2), dataclasses.replace(p2, proof=p1.proof)):
        r = _recv(reg, [forged])
        assert r.status == FAILED
    assert query(reg, "packet", [biz.chain_id, 2]) is None
    assert _statuses(_recv(reg, [p2])) == [(2, "accepted")]


@pytest.mark.parametrize(
    "src,dest",
    [
        ("business-chain\x00", REGULATOR),
        ("business-chain/x", REGULATOR),
        ("", REGULATOR),
        (None, REGULATOR + "\x00"),
        (None, REGULATOR + "/"),
    ],
)
def test_chain_ids_with_special_bytes_are_refused(src: str | None, dest: str) -> None:
    biz, reg, txs = _delivered(1)
    good = biz.packet(txs[0].tx_id, REGULATOR)
    forged = dataclasses.replace(
        good, source_chain_id=biz.chain_id if src is None else src, dest_chain_id=dest
    )
    r = _recv(reg, [forged])
    assert r.status == FAILED
    assert query(reg, "arrivals", [biz.chain_id, 10])["count"] == 0
    assert _statuses(_recv(reg, [good])) == [(1, "accepted")]


# --- bounds ---------------------------------------------------------------------------------------


def test_oversized_lists_are_refused_before_any_signature_work() -> None:
    biz, reg, txs = _delivered(1)
    good = biz.packet(txs[0].tx_id, REGULATOR)
    r = _recv(reg, [good] * 65)
    assert r.status == ReceiptStatus.BAD_ARGUMENTS and "1 to 64 items" in r.error
    cert = biz.certificate(_height(biz, txs[0]))
    many = (EpochChange(epoch=0, certificate=cert, next_validators=biz.rig.genesis.validators),)
    r = _update(
        reg, ClientUpdate(chain_id=biz.chain_id, epoch_changes=many * (MAX_EPOCH_CHANGES + 1))
    )
    assert r.status == FAILED and "malformed client update" in r.error
    # 257 headers do not fit a transaction (MAX_TX_BYTES binds first); the decoder refuses too
    long = ClientUpdate(
        chain_id=biz.chain_id,
        certificate=Certificate(headers=cert.headers * (MAX_HEADERS + 1), proof=cert.proof),
    ).encode()
    assert len(long) > MAX_TX_BYTES
    with pytest.raises(PacketFormatError, match=r"1\.\.256 headers"):
        ClientUpdate.decode(long)
    assert query(reg, "client", [biz.chain_id])["certificates"] == 1


# --- acks -----------------------------------------------------------------------------------------


def test_an_ack_of_a_refused_or_duplicate_delivery_records_nothing() -> None:
    """A successful recv_packets on the regulator that accepted nothing of ours (a duplicate
    and a refused packet) acks nothing; the real acceptance is recorded once."""
    biz, reg, txs = _delivered(2)
    p1, p2 = (biz.packet(t.tx_id, REGULATOR) for t in txs)
    first = _recv(reg, [p1])
    dup = _recv(reg, [p1, dataclasses.replace(p2, seq=5)])  # a duplicate and a refused one
    assert dup.status == OK and _statuses(dup) == [(1, "duplicate")]
    h = _height(reg, dup)
    assert biz.call("xclient", "update_client", [reg.update(h)]).status == OK
    r = biz.call("xclient", "recv_ack", [reg.ack(dup.tx_id, biz.chain_id).encode()])
    assert r.status == OK and dict(r.result)["new"] == 0
    assert query(biz, "ack", [1]) is None and query(biz, "ack", [5]) is None
    # the real acceptance is recorded once
    assert biz.call("xclient", "update_client", [reg.update(_height(reg, first))]).status == OK
    r = biz.call("xclient", "recv_ack", [reg.ack(first.tx_id, biz.chain_id).encode()])
    assert r.status == OK and dict(r.result)["new"] == 1


def test_an_ack_proving_an_evidence_tx_or_another_dest_is_refused() -> None:
    biz, reg, txs = _delivered(1)
    first = _recv(reg, [biz.packet(txs[0].tx_id, REGULATOR)])
    assert biz.call("xclient", "update_client", [reg.update(_height(reg, first))]).status == OK
    ack = reg.ack(first.tx_id, biz.chain_id)
    r = biz.call("xclient", "recv_ack", [dataclasses.replace(ack, dest_chain_id="x").encode()])
    assert r.status == FAILED and "the ack is for chain 'x'" in r.error
    r = biz.call(
        "xclient", "recv_ack", [dataclasses.replace(ack, source_chain_id=biz.chain_id).encode()]
    )
    assert r.status == FAILED
    assert query(biz, "ack", [1]) is None


def test_genesis_binding_holds_for_a_header_at_height_one() -> None:
    """A height-1 header whose parent is not the registered genesis block, certified by the
    registered set (the same chain id and validators under another genesis)."""
    biz, reg = make_pair()
    h1 = biz.header(1)
    fake = dataclasses.replace(h1, parent_id=Digest(bytes(32)))
    child = dataclasses.replace(biz.header(2), parent_id=fake.block_id, justify=biz.rig.qc(fake))
    cert = Certificate(headers=(fake,), proof=CommitProof(header=child, qc=biz.rig.qc(child)))
    r = _update(reg, ClientUpdate(chain_id=biz.chain_id, certificate=cert))
    assert r.status == FAILED and "genesis" in r.error
    assert query(reg, "header", [biz.chain_id, 1]) is None


def test_no_next_validators_commitment_mismatch_goes_unnoticed() -> None:
    """An epoch change naming another next set than E commits to is refused (sanity for the
    suffix attack above: only the commitment binds, the ending block's position does not)."""
    biz, reg, _late, rec = _epoch_one()
    (real,) = biz.epoch_changes(0, 1)
    other = rec.config.validators[:1]
    assert real.certificate.headers[1].next_validators_hash != next_validators_commitment(1, other)
    r = _update(
        reg,
        ClientUpdate(
            chain_id=biz.chain_id, epoch_changes=(dataclasses.replace(real, next_validators=other),)
        ),
    )
    assert r.status == FAILED and "next_validators_hash" in r.error


# --- receipts the chain cannot read back ----------------------------------------------------------


def _poisoned(biz: Side, tx: SignedTx) -> Packet:
    """A packet whose source chain id is 20,000 NUL characters: each is 1 byte in the
    transaction but 4 in the refusal reason (`{chain!r}` writes it as \\x00)."""
    return dataclasses.replace(biz.packet(tx.tx_id, REGULATOR), source_chain_id="\x00" * 20_000)


def _run_raw(side: Side, method: str, args: list[object]) -> tuple[SignedTx, bytes]:
    """A committed call and its stored receipt bytes, without decoding them."""
    tx = sign_tx(
        side.admin,
        chain_id=side.chain_id,
        expiry=side.rig.chain.head.height + 50,
        contract="xclient",
        method=method,
        args=args,
    )
    side.rig.run(2, txs={0: [tx]})
    raw = side.store.get_receipt(tx.tx_id)
    assert raw is not None, "not committed"
    return tx, raw


def test_a_refusal_reason_cannot_make_the_receipt_undecodable() -> None:
    biz, reg, txs = _delivered(2)
    good = biz.packet(txs[0].tx_id, REGULATOR)
    arg = packets_arg([good, _poisoned(biz, txs[1])])
    assert sum(len(p[0]) for p in arg) < 22_000
    tx, raw = _run_raw(reg, "recv_packets", [arg])
    assert query(reg, "packet", [biz.chain_id, 1]) is not None  # the good packet was accepted
    receipt = Receipt.decode(raw)  # DecodeError: the string exceeds max_str
    assert receipt.status == OK
    assert biz.call("xclient", "update_client", [reg.update(_height(reg, tx))]).status == OK
    r = biz.call("xclient", "recv_ack", [reg.ack(tx.tx_id, biz.chain_id).encode()])
    assert r.status == OK and dict(r.result)["new"] == 1


def test_an_all_refused_call_has_a_decodable_receipt() -> None:
    """The FAILED path holds: a FAILED receipt keeps no events and its error is bounded."""
    biz, reg, txs = _delivered(1)
    _, raw = _run_raw(reg, "recv_packets", [packets_arg([_poisoned(biz, txs[0])])])
    assert Receipt.decode(raw).status == FAILED


def test_a_left_set_cannot_freeze_the_client_with_blocks_above_its_epochs_end() -> None:
    biz, reg, late, _rec = _epoch_one()
    h = _height(biz, late[0])
    r = _update(reg, biz.update(h, changes=biz.epoch_changes(0, 1)))
    assert r.status == OK, r.error
    real = biz.certificate(h)
    old_set = biz.rig.keys_of(0)

    def above_end(ts: int) -> Certificate:
        tip = dataclasses.replace(real.headers[0], epoch=0, height=Height(h + 5), timestamp_ms=ts)
        child = dataclasses.replace(
            real.proof.header,
            epoch=0,
            height=Height(h + 6),
            parent_id=tip.block_id,
            justify=biz.rig.qc(tip, old_set),
        )
        return Certificate(
            headers=(tip,), proof=CommitProof(header=child, qc=biz.rig.qc(child, old_set))
        )

    ts = real.headers[0].timestamp_ms
    m = Misbehaviour(chain_id=biz.chain_id, first=above_end(ts + 1), second=above_end(ts + 2))
    r = reg.call("xclient", "submit_misbehaviour", [m.encode()])
    assert r.status == FAILED and "outside epoch 0's known heights" in r.error
    assert query(reg, "client", [biz.chain_id])["status"] == ACTIVE


@pytest.mark.parametrize("chain", ["a" * 65, "é", "a/b", "a\x00", ""])
def test_every_object_refuses_a_bad_chain_id_at_decode_without_echoing_it(chain: str) -> None:
    biz, _reg, txs = _delivered(1)
    good = biz.packet(txs[0].tx_id, REGULATOR)
    cert = biz.certificate(_height(biz, txs[0]))
    bad = [
        (Packet, dataclasses.replace(good, source_chain_id=chain).encode()),
        (Packet, dataclasses.replace(good, dest_chain_id=chain).encode()),
        (ClientUpdate, ClientUpdate(chain_id=chain, certificate=cert).encode()),
        (Misbehaviour, Misbehaviour(chain_id=chain, first=cert, second=cert).encode()),
    ]
    for cls, raw in bad:
        with pytest.raises(PacketFormatError, match=r"a chain id is 1\.\.64") as info:
            cls.decode(raw)
        assert chain == "" or chain not in str(info.value)
    assert Packet.decode(dataclasses.replace(good, source_chain_id="a" * 64).encode())

"""The xclient system contract (crosschain/xclient.py X1-X4; docs/crosschain.md) between two real
chains in memory (tests/xc_rig.py): real blocks, real SM2 quorum certificates, real governance
epoch changes; every packet, ack and certificate is built from the chains' stores as a relayer
builds them. Covers issue 13 item 7's forgeries, each refused with its reason."""

from __future__ import annotations

import dataclasses

import pytest

from gmchain.chain.lightclient import Certificate
from gmchain.consensus.messages import CommitProof
from gmchain.contracts.xc_layout import ACTIVE, FROZEN, ClientState, client_key
from gmchain.crosschain import node_registry
from gmchain.crosschain.packets import ClientUpdate, EpochChange, Misbehaviour, Packet
from gmchain.crosschain.xclient_packets import Proven, Refused, _packet_values
from gmchain.crosschain.xclient_state import Keys, StoredHeader
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.epoch import next_validators_commitment
from gmchain.ledger.types import Event, Receipt, ReceiptStatus, SignedTx
from tests.epoch_chain import validator_of
from tests.xc_rig import REGULATOR, Side, events, make_pair, packets_arg, query

OK = ReceiptStatus.OK
FAILED = ReceiptStatus.FAILED


def _height(side: Side, tx: SignedTx | Receipt) -> int:
    loc = side.store.get_tx_location(tx.tx_id)
    assert loc is not None
    return loc[0]


def _recv(reg: Side, packets: list[Packet]) -> Receipt:
    return reg.call("xclient", "recv_packets", [packets_arg(packets)])


def _statuses(r: Receipt) -> list[tuple[int, str]]:
    return [(e["seq"], e["status"]) for e in events(r, "PacketReceived")]


def _delivered(n: int = 3) -> tuple[Side, Side, list[SignedTx]]:
    """A pair where `n` records were submitted (one block) and their header is verified."""
    biz, reg = make_pair()
    txs = biz.evidence_txs(n)
    assert all(r.status == OK for r in biz.run_txs(txs))
    r = reg.call("xclient", "update_client", [biz.update(_height(biz, txs[0]))])
    assert r.status == OK, r.error
    return biz, reg, txs


def _client(side: Side, chain: str) -> ClientState:
    raw = side.store.get_state("xclient", client_key(chain))
    assert raw is not None
    return ClientState.decode(raw)


def _fork(side: Side, cert: Certificate, keys: list[PrivateKey] | None = None) -> Certificate:
    """A certificate of another block at the height of `cert`'s first header, signed by the same
    epoch's validators (or `keys`): what a quorum that equivocates can produce."""
    real = cert.headers[0]
    fake = dataclasses.replace(real, timestamp_ms=real.timestamp_ms + 1)
    child = dataclasses.replace(
        cert.proof.header if len(cert.headers) == 1 else cert.headers[1],
        parent_id=fake.block_id,
        justify=side.rig.qc(fake, keys),
    )
    return Certificate(
        headers=(fake,), proof=CommitProof(header=child, qc=side.rig.qc(child, keys))
    )


# --- X1: update_client --------------------------------------------------------------------------


def test_the_node_registry_runs_xclient() -> None:
    assert "xclient" in node_registry().names
    assert node_registry().names[:3] == ["membership", "evidence", "governance"]


def test_update_client_stores_the_certified_headers_and_repeats_are_no_ops() -> None:
    biz, reg = make_pair()
    txs = biz.evidence_txs(2)
    biz.run_txs(txs)
    h = _height(biz, txs[0])
    update = biz.update(h)
    r = reg.call("xclient", "update_client", [update])
    assert r.status == OK, r.error
    assert events(r, "ClientUpdated") == [
        {"chain": biz.chain_id, "epoch": 0, "latest_height": h, "new_headers": 1, "update_nos": [1]}
    ]
    assert query(reg, "update_tx", [biz.chain_id, 1]) == r.tx_id
    header = query(reg, "header", [biz.chain_id, h])
    assert header["block_id"] == biz.header(h).block_id
    assert header["tx_root"] == biz.header(h).tx_root and header["tx_count"] == 2
    client = query(reg, "client", [biz.chain_id])
    assert client["latest_height"] == h and client["status"] == ACTIVE
    assert client["certificates"] == 1
    proof = query(reg, "update_proof", [biz.chain_id, header["update_no"]])
    assert proof == biz.certificate(h).proof.encode()
    again = reg.call("xclient", "update_client", [update])
    assert again.status == OK and again.events == ()
    assert query(reg, "client", [biz.chain_id])["certificates"] == 1
    assert query(reg, "clients", [])[0]["chain_id"] == biz.chain_id


def test_update_client_refuses_a_quorum_of_non_validators() -> None:
    biz, reg = make_pair()
    txs = biz.evidence_txs(1)
    biz.run_txs(txs)
    cert = biz.certificate(_height(biz, txs[0]))
    outsiders = [PrivateKey.generate()]
    forged = Certificate(
        headers=cert.headers,
        proof=CommitProof(header=cert.proof.header, qc=biz.rig.qc(cert.proof.header, outsiders)),
    )
    update = ClientUpdate(chain_id=biz.chain_id, certificate=forged).encode()
    r = reg.call("xclient", "update_client", [update])
    assert r.status == FAILED
    assert "does not verify against the trusted validator set" in r.error
    assert query(reg, "header", [biz.chain_id, cert.headers[0].height]) is None


def test_update_client_refuses_an_unregistered_chain() -> None:
    biz, reg = make_pair()
    txs = biz.evidence_txs(1)
    biz.run_txs(txs)
    cert = biz.certificate(_height(biz, txs[0]))
    r = reg.call(
        "xclient",
        "update_client",
        [ClientUpdate(chain_id="ghost-chain", certificate=cert).encode()],
    )
    assert r.status == FAILED and "'ghost-chain' is not registered" in r.error


def test_epoch_changes_are_followed_and_a_stale_sets_quorum_is_refused() -> None:
    biz, reg = make_pair()
    early = biz.evidence_txs(1, tag="early")
    biz.run_txs(early)
    assert all(r.status == OK for r in biz.run_txs(biz.rig.add_validator_txs(biz.rig.keys[1])))
    late = biz.evidence_txs(1, tag="late")
    biz.run_txs(late)
    assert biz.rig.chain.validators.current_epoch() == 1
    h_late = _height(biz, late[0])
    changes = biz.epoch_changes(0, 1)
    # The certificate of epoch 1 alone: the client trusts epoch 0.
    r = reg.call("xclient", "update_client", [biz.update(h_late)])
    assert r.status == FAILED and "send the epoch changes first" in r.error
    # Epoch 1's certificate signed by the stale set (epoch 0's one validator) is refused.
    cert = biz.certificate(h_late)
    stale = Certificate(
        headers=cert.headers,
        proof=CommitProof(
            header=cert.proof.header, qc=biz.rig.qc(cert.proof.header, biz.rig.keys_of(0))
        ),
    )
    update = ClientUpdate(chain_id=biz.chain_id, epoch_changes=changes, certificate=stale)
    r = reg.call("xclient", "update_client", [update.encode()])
    assert r.status == FAILED and "does not verify against the trusted validator set" in r.error
    assert query(reg, "client", [biz.chain_id])["epoch"] == 0  # nothing of it applied
    # With the epoch change: the client follows it.
    r = reg.call("xclient", "update_client", [biz.update(h_late, changes=changes)])
    assert r.status == OK, r.error
    client = query(reg, "client", [biz.chain_id])
    assert client["epoch"] == 1 and len(client["validators"]) == 2
    ending = changes[0].certificate.headers[1]  # [P, E, ...] (xclient_update.py rule U10)
    stored = query(reg, "header", [biz.chain_id, ending.height])
    assert stored["block_id"] == ending.block_id and stored["epoch"] == 0
    proof = query(reg, "update_proof", [biz.chain_id, stored["update_no"]])
    assert proof == changes[0].certificate.proof.encode()
    assert _recv(reg, [biz.packet(late[0].tx_id, REGULATOR)]).status == OK
    # A backlog of epoch 0 stays provable: its certificate is checked with epoch 0's stored set.
    assert query(reg, "header", [biz.chain_id, _height(biz, early[0])]) is None
    r = reg.call("xclient", "update_client", [biz.update(_height(biz, early[0]))])
    assert r.status == OK, r.error
    assert _statuses(_recv(reg, [biz.packet(early[0].tx_id, REGULATOR)])) == [(1, "accepted")]
    # The known epoch change again, alone: a no-op.
    r = reg.call("xclient", "update_client", [biz.update(None, changes=changes)])
    assert r.status == OK and r.events == ()


# --- X3: recv_packets -----------------------------------------------------------------------------


def test_packets_are_stored_as_verified_copies_and_indexed() -> None:
    biz, reg, txs = _delivered(3)
    r = _recv(reg, [biz.packet(t.tx_id, REGULATOR) for t in txs])
    assert r.status == OK, r.error
    assert _statuses(r) == [(1, "accepted"), (2, "accepted"), (3, "accepted")]
    p = query(reg, "packet", [biz.chain_id, 2])
    assert p["record_id"] == "r-1" and p["org"] == "org-a" and p["tx_id"] == txs[1].tx_id
    assert p["scenario"] == "private-fund-sale" and p["recv_tx_id"] == r.tx_id
    submitted = events(
        Receipt.decode(biz.store.get_receipt(txs[1].tx_id) or b""), "EvidenceSubmitted"
    )
    assert p["record_hash"] == submitted[0]["record_hash"]
    assert query(reg, "record", [biz.chain_id, "r-2"])["seq"] == 3
    assert [x["seq"] for x in query(reg, "by_org", [biz.chain_id, "org-a", 1, 5])] == [2, 3]
    assert [x["seq"] for x in query(reg, "by_flow", [biz.chain_id, "flow-r-0"])] == [1]


def _forgeries(biz: Side, txs: list[SignedTx]) -> dict[str, tuple[Packet, str]]:
    """Issue 13 item 7: each forged packet and the reason it must be refused with."""
    good = biz.packet(txs[0].tx_id, REGULATOR)
    other = biz.packet(txs[1].tx_id, REGULATOR)
    receipt = Receipt.decode(good.proof.receipt)
    altered = Receipt(
        tx_id=receipt.tx_id,
        status=receipt.status,
        result=receipt.result,
        events=(*receipt.events, Event(contract="evidence", name="Extra")),
        error=receipt.error,
    )
    proof = good.proof
    return {
        "altered tx": (
            dataclasses.replace(good, proof=dataclasses.replace(proof, tx=other.proof.tx)),
            "the transaction is not leaf 0",
        ),
        "altered receipt": (
            dataclasses.replace(good, proof=dataclasses.replace(proof, receipt=altered.encode())),
            "the receipt is not leaf 0",
        ),
        "uncertified header": (
            dataclasses.replace(good, proof=dataclasses.replace(proof, height=proof.height + 1)),
            "is not verified",
        ),
        "unregistered chain": (
            dataclasses.replace(good, source_chain_id="ghost-chain"),
            "'ghost-chain' is not registered",
        ),
        "wrong dest": (
            dataclasses.replace(good, dest_chain_id="another-regulator"),
            "the packet is for chain 'another-regulator'",
        ),
        "wrong seq": (dataclasses.replace(good, seq=99), "no PacketQueued event with seq 99"),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "altered tx",
        "altered receipt",
        "uncertified header",
        "unregistered chain",
        "wrong dest",
        "wrong seq",
    ],
)
def test_a_forged_packet_is_refused_with_its_reason(kind: str) -> None:
    biz, reg, txs = _delivered(2)
    forged, reason = _forgeries(biz, txs)[kind]
    r = _recv(reg, [forged])
    assert r.status == FAILED
    assert reason in r.error and r.error.startswith("all 1 packets refused")
    assert query(reg, "arrivals", [biz.chain_id, 10])["count"] == 0


def test_one_forged_packet_never_blocks_the_good_ones() -> None:
    biz, reg, txs = _delivered(3)
    forged, reason = _forgeries(biz, txs)["altered receipt"]
    good = [biz.packet(t.tx_id, REGULATOR) for t in txs]
    r = _recv(reg, [good[0], forged, good[1], good[2]])
    assert r.status == OK
    assert _statuses(r) == [(1, "accepted"), (2, "accepted"), (3, "accepted")]
    refused = events(r, "PacketRefused")
    assert len(refused) == 1 and reason in refused[0]["reason"]
    assert [x[1][1] for x in r.result] == ["accepted", "refused", "accepted", "accepted"]  # type: ignore[index, union-attr]


def test_a_replayed_packet_is_a_duplicate_not_an_error() -> None:
    biz, reg, txs = _delivered(1)
    packet = biz.packet(txs[0].tx_id, REGULATOR)
    assert _statuses(_recv(reg, [packet])) == [(1, "accepted")]
    again = _recv(reg, [packet, packet])
    assert again.status == OK
    assert _statuses(again) == [(1, "duplicate"), (1, "duplicate")]
    assert query(reg, "arrivals", [biz.chain_id])["count"] == 1
    assert query(reg, "packet", [biz.chain_id, 1])["recv_tx_id"] != again.tx_id


def test_arrivals_and_missing_after_out_of_order_delivery() -> None:
    biz, reg, txs = _delivered(5)
    packets = [biz.packet(t.tx_id, REGULATOR) for t in txs]
    assert _recv(reg, [packets[0], packets[2], packets[4]]).status == OK
    arr = query(reg, "arrivals", [biz.chain_id, 10])
    assert (arr["contiguous"], arr["max_seq"], arr["count"], arr["missing"]) == (1, 5, 3, [2, 4])
    assert query(reg, "arrivals", [biz.chain_id, 1])["missing"] == [2]
    assert _recv(reg, [packets[3], packets[1]]).status == OK
    arr = query(reg, "arrivals", [biz.chain_id])
    assert (arr["contiguous"], arr["max_seq"], arr["count"], arr["missing"]) == (5, 5, 5, [])


# --- misbehaviour ---------------------------------------------------------------------------------


def test_a_conflicting_update_freezes_and_names_the_signers_of_both() -> None:
    biz, reg, txs = _delivered(2)
    h = _height(biz, txs[0])
    fork = _fork(biz, biz.certificate(h))
    r = reg.call(
        "xclient", "update_client", [ClientUpdate(chain_id=biz.chain_id, certificate=fork).encode()]
    )
    assert r.status == OK, r.error  # the call succeeds: its effect is the freeze
    frozen = events(r, "ClientFrozen")
    validator = biz.rig.keys[0].public_key.address
    assert len(frozen) == 1 and frozen[0]["signers"] == [validator]
    client = query(reg, "client", [biz.chain_id])
    assert client["status"] == FROZEN and f"two certified blocks at height {h}" in (
        client["frozen_reason"] or ""
    )
    [ev] = query(reg, "misbehaviour", [biz.chain_id])
    assert ev["height"] == h and ev["block_ids"] == [
        biz.header(h).block_id,
        fork.headers[0].block_id,
    ]
    assert ev["signers"] == [validator] and ev["proofs"][1] == fork.proof.encode()
    assert query(reg, "header", [biz.chain_id, h])["block_id"] == biz.header(h).block_id
    # Frozen: packets and updates are refused until governance unfreezes.
    r = _recv(reg, [biz.packet(txs[0].tx_id, REGULATOR)])
    assert r.status == FAILED and "is frozen" in r.error
    r = reg.call("xclient", "update_client", [biz.update(h)])
    assert r.status == FAILED and "is frozen" in r.error
    # The governance decision unfreeze_chain: status active, the set it names.
    cs = _client(reg, biz.chain_id)
    reg.unfreeze(biz.chain_id, cs.epoch, cs.validators)
    assert query(reg, "client", [biz.chain_id])["status"] == ACTIVE
    assert _statuses(_recv(reg, [biz.packet(txs[0].tx_id, REGULATOR)])) == [(1, "accepted")]
    assert len(query(reg, "misbehaviour", [biz.chain_id])) == 1  # the evidence stays


def test_submit_misbehaviour_freezes_and_refuses_what_is_not_a_fork() -> None:
    biz, reg, txs = _delivered(1)
    h = _height(biz, txs[0])
    real = biz.certificate(h)
    same = Misbehaviour(chain_id=biz.chain_id, first=real, second=real).encode()
    r = reg.call("xclient", "submit_misbehaviour", [same])
    assert r.status == FAILED and "name no different blocks" in r.error
    outsiders = Misbehaviour(
        chain_id=biz.chain_id, first=real, second=_fork(biz, real, [PrivateKey.generate()])
    ).encode()
    r = reg.call("xclient", "submit_misbehaviour", [outsiders])
    assert r.status == FAILED and "does not verify" in r.error
    assert query(reg, "client", [biz.chain_id])["status"] == ACTIVE
    evidence = Misbehaviour(chain_id=biz.chain_id, first=real, second=_fork(biz, real)).encode()
    r = reg.call("xclient", "submit_misbehaviour", [evidence])
    assert r.status == OK, r.error
    assert events(r, "ClientFrozen")[0]["signers"] == [biz.rig.keys[0].public_key.address]
    assert query(reg, "client", [biz.chain_id])["status"] == FROZEN
    assert query(reg, "misbehaviour", [biz.chain_id])[0]["height"] == h


# --- X4: recv_ack ---------------------------------------------------------------------------------


def _acked_pair() -> tuple[Side, Side, list[SignedTx], Receipt]:
    biz, reg, txs = _delivered(3)
    recv = _recv(reg, [biz.packet(t.tx_id, REGULATOR) for t in txs[:2]])
    assert recv.status == OK
    h = _height(reg, recv)
    r = biz.call("xclient", "update_client", [reg.update(h)])
    assert r.status == OK, r.error
    return biz, reg, txs, recv


def test_acks_are_recorded_once_and_found_by_record() -> None:
    biz, reg, _, recv = _acked_pair()
    ack = reg.ack(recv.tx_id, biz.chain_id).encode()
    r = biz.call("xclient", "recv_ack", [ack])
    assert r.status == OK, r.error
    assert [(e["seq"], e["record_id"]) for e in events(r, "AckRecorded")] == [
        (1, "r-0"),
        (2, "r-1"),
    ]
    a = query(biz, "ack_of_record", ["r-1"])
    assert (a["seq"], a["regulator"], a["status"], a["regulator_tx_id"]) == (
        2, REGULATOR, "accepted", recv.tx_id,
    )  # fmt: skip
    assert query(biz, "ack_of_record", ["r-2"]) is None  # not relayed yet
    assert [x["seq"] for x in query(biz, "acks", [1, 10])] == [1, 2]
    again = biz.call("xclient", "recv_ack", [ack])
    assert again.status == OK and events(again, "AckRecorded") == []
    assert dict(again.result) == {"new": 0, "known": 2, "unmatched": 0}  # type: ignore[arg-type]


def test_an_ack_must_prove_a_recv_packets_call_on_a_verified_header() -> None:
    biz, reg, _, recv = _acked_pair()
    # The regulator's update_client transaction is not a recv_packets call.
    upd = reg.call("xclient", "update_client", [biz.update(1)])
    h = _height(reg, upd)
    assert biz.call("xclient", "update_client", [reg.update(h)]).status == OK
    r = biz.call("xclient", "recv_ack", [reg.ack(upd.tx_id, biz.chain_id).encode()])
    assert r.status == FAILED and "not xclient.recv_packets" in r.error
    # An ack for another chain.
    r = biz.call("xclient", "recv_ack", [reg.ack(recv.tx_id, "someone-else").encode()])
    assert r.status == FAILED and "the ack is for chain 'someone-else'" in r.error
    # A recv_packets call in a block the business chain has not verified.
    biz_txs = biz.evidence_txs(1, tag="later")
    biz.run_txs(biz_txs)
    assert reg.call("xclient", "update_client", [biz.update(_height(biz, biz_txs[0]))]).status == OK
    later = _recv(reg, [biz.packet(biz_txs[0].tx_id, REGULATOR)])
    assert later.status == OK
    r = biz.call("xclient", "recv_ack", [reg.ack(later.tx_id, biz.chain_id).encode()])
    assert r.status == FAILED and "is not verified" in r.error
    assert query(biz, "ack_of_record", ["later-0"]) is None


def test_a_second_epoch_change_of_one_epoch_freezes() -> None:
    """Epoch 0's set (one validator, whose key the test holds: a Byzantine quorum) also certifies
    another end of epoch 0 naming another next set; once the real change is followed, the
    other one is misbehaviour."""
    biz, reg = make_pair()
    assert all(r.status == OK for r in biz.run_txs(biz.rig.add_validator_txs(biz.rig.keys[1])))
    biz.run_txs(biz.evidence_txs(1))
    (real,) = biz.epoch_changes(0, 1)
    r = reg.call("xclient", "update_client", [biz.update(None, changes=(real,))])
    assert r.status == OK, r.error
    other_set = (validator_of(biz.rig.keys[2]),)
    parent, end = real.certificate.headers[:2]
    fake_end = dataclasses.replace(
        end, next_validators_hash=next_validators_commitment(1, other_set)
    )
    child = dataclasses.replace(
        real.certificate.proof.header, parent_id=fake_end.block_id, justify=biz.rig.qc(fake_end)
    )
    fake = EpochChange(
        epoch=0,
        certificate=Certificate(
            headers=(parent, fake_end), proof=CommitProof(header=child, qc=biz.rig.qc(child))
        ),
        next_validators=other_set,
    )
    r = reg.call("xclient", "update_client", [biz.update(None, changes=(fake,))])
    assert r.status == OK, r.error
    assert events(r, "ClientFrozen")[0]["signers"] == [biz.rig.keys[0].public_key.address]
    client = query(reg, "client", [biz.chain_id])
    assert client["status"] == FROZEN and "ended twice" in client["frozen_reason"]
    assert client["epoch"] == 1 and len(client["validators"]) == 2  # nothing else applied


def test_accountability_names_exactly_the_validators_that_signed_both_sides() -> None:
    """Four validators (quorum 3): one fork signed by v0, v1, v2, another by v1, v2, v3; the
    evidence names v1 and v2, and the client followed three real epoch changes first."""
    biz, reg = make_pair(n_keys=4)
    for key in biz.rig.keys[1:]:
        assert all(r.status == OK for r in biz.run_txs(biz.rig.add_validator_txs(key)))
    txs = biz.evidence_txs(1)
    biz.run_txs(txs)
    h = _height(biz, txs[0])
    r = reg.call("xclient", "update_client", [biz.update(h, changes=biz.epoch_changes(0, 3))])
    assert r.status == OK, r.error
    assert query(reg, "client", [biz.chain_id])["epoch"] == 3
    keys = biz.rig.keys
    real = biz.certificate(h)
    a = _fork(biz, real, keys[:3])
    evidence = Misbehaviour(chain_id=biz.chain_id, first=a, second=_refork(biz, real, keys[1:]))
    r = reg.call("xclient", "submit_misbehaviour", [evidence.encode()])
    assert r.status == OK, r.error
    both = sorted(k.public_key.address for k in keys[1:3])
    assert events(r, "ClientFrozen")[0]["signers"] == both
    assert query(reg, "misbehaviour", [biz.chain_id])[0]["signers"] == both


def _refork(side: Side, cert: Certificate, keys: list[PrivateKey]) -> Certificate:
    """Another fork than `_fork`'s at the same height (a second timestamp), signed by `keys`."""
    real = cert.headers[0]
    shifted = dataclasses.replace(
        cert, headers=(dataclasses.replace(real, timestamp_ms=real.timestamp_ms + 1),)
    )
    return _fork(side, shifted, keys)


def test_one_update_follows_two_changes_and_proves_a_block_of_the_middle_epoch() -> None:
    biz, reg = make_pair()
    assert all(r.status == OK for r in biz.run_txs(biz.rig.add_validator_txs(biz.rig.keys[1])))
    middle = biz.evidence_txs(1, tag="mid")
    biz.run_txs(middle)
    assert all(r.status == OK for r in biz.run_txs(biz.rig.add_validator_txs(biz.rig.keys[2])))
    assert biz.rig.chain.validators.current_epoch() == 2
    h = _height(biz, middle[0])
    assert biz.header(h).epoch == 1
    r = reg.call("xclient", "update_client", [biz.update(h, changes=biz.epoch_changes(0, 2))])
    assert r.status == OK, r.error
    assert query(reg, "client", [biz.chain_id])["epoch"] == 2
    assert query(reg, "header", [biz.chain_id, h])["epoch"] == 1
    assert _statuses(_recv(reg, [biz.packet(middle[0].tx_id, REGULATOR)])) == [(1, "accepted")]


def test_a_left_epochs_set_cannot_add_blocks_above_its_epochs_end() -> None:
    """After the client followed epoch 0 -> 1, epoch 0's set (the test holds its key) certifies
    a block of epoch 0 above epoch 0's end: it verifies with the stored set of epoch 0, but no
    block of epoch 0 lies there, so it is not stored and nothing can be proven against it."""
    biz, reg = make_pair()
    assert all(r.status == OK for r in biz.run_txs(biz.rig.add_validator_txs(biz.rig.keys[1])))
    late = biz.evidence_txs(1, tag="late")
    biz.run_txs(late)
    h = _height(biz, late[0])
    r = reg.call("xclient", "update_client", [biz.update(h, changes=biz.epoch_changes(0, 1))])
    assert r.status == OK, r.error
    real = biz.certificate(h)
    old_set = biz.rig.keys_of(0)
    tip = dataclasses.replace(real.headers[0], epoch=0, height=h + 5)
    child = dataclasses.replace(
        real.proof.header,
        epoch=0,
        height=h + 6,
        parent_id=tip.block_id,
        justify=biz.rig.qc(tip, old_set),
    )
    forged = Certificate(
        headers=(tip,), proof=CommitProof(header=child, qc=biz.rig.qc(child, old_set))
    )
    r = reg.call(
        "xclient",
        "update_client",
        [ClientUpdate(chain_id=biz.chain_id, certificate=forged).encode()],
    )
    assert r.status == OK, r.error
    assert dict(r.result)["new_headers"] == 0  # type: ignore[arg-type]
    assert query(reg, "header", [biz.chain_id, h + 5]) is None


def test_a_record_queued_for_another_regulator_is_refused() -> None:
    biz, reg = make_pair()
    biz.relay_to("another-regulator")
    txs = biz.evidence_txs(1)
    biz.run_txs(txs)
    assert reg.call("xclient", "update_client", [biz.update(_height(biz, txs[0]))]).status == OK
    r = _recv(reg, [biz.packet(txs[0].tx_id, REGULATOR)])
    assert r.status == FAILED
    assert "packet 1 was queued for 'another-regulator', not this chain" in r.error


def test_a_suffix_header_verified_before_its_epochs_end_proves_no_packet() -> None:
    """F6: a certified epoch-0 header above epoch 0's end, verified while the end was unknown
    (the client still trusted epoch 0), stays stored; once the epoch change names the end, a
    packet proven against that header is refused (it is the ended epoch's uncommitted suffix),
    while the same transaction proven against its real block is accepted."""
    biz, reg = make_pair()
    assert all(r.status == OK for r in biz.run_txs(biz.rig.add_validator_txs(biz.rig.keys[1])))
    late = biz.evidence_txs(1, tag="late")
    biz.run_txs(late)
    h = _height(biz, late[0])
    real = biz.certificate(h)
    old_set = biz.rig.keys_of(0)
    tip = dataclasses.replace(real.headers[0], epoch=0, height=h + 5)
    child = dataclasses.replace(
        real.proof.header, epoch=0, height=h + 6, parent_id=tip.block_id,
        justify=biz.rig.qc(tip, old_set),
    )  # fmt: skip
    suffix = Certificate(
        headers=(tip,), proof=CommitProof(header=child, qc=biz.rig.qc(child, old_set))
    )
    r = reg.call(
        "xclient",
        "update_client",
        [ClientUpdate(chain_id=biz.chain_id, certificate=suffix).encode()],
    )
    assert r.status == OK and dict(r.result)["new_headers"] == 1, r.error  # type: ignore[arg-type]
    assert query(reg, "header", [biz.chain_id, h + 5])["epoch"] == 0
    r = reg.call("xclient", "update_client", [biz.update(h, changes=biz.epoch_changes(0, 1))])
    assert r.status == OK, r.error
    end = query(reg, "epoch_end", [biz.chain_id, 0])
    assert end is not None and end["height"] < h
    good = biz.packet(late[0].tx_id, REGULATOR)
    forged = dataclasses.replace(good, proof=dataclasses.replace(good.proof, height=h + 5))
    r = _recv(reg, [forged])
    assert r.status == ReceiptStatus.FAILED and "uncommitted suffix" in (r.error or ""), r.error
    assert query(reg, "packet", [biz.chain_id, 1]) is None
    assert _statuses(_recv(reg, [good])) == [(1, "accepted")]


def test_the_evidence_events_are_the_first_matching_ones_with_exact_fields() -> None:
    """F7 (crosschain.md "Packets" 7, 8): the first `PacketQueued` whose first field is the seq
    and the first `EvidenceSubmitted` whose first field is the record id are checked, each with
    exactly the evidence contract's fields in order; EvidenceSubmitted repeats the tx's flow
    and step. (The receipts are edited after the fact: the checks are judged directly.)"""
    biz, reg, txs = _delivered(1)
    good = biz.packet(txs[0].tx_id, REGULATOR)
    receipt = Receipt.decode(good.proof.receipt)
    tx = SignedTx.decode(good.proof.tx)
    h = query(reg, "header", [biz.chain_id, good.proof.height])
    header = StoredHeader(**{k: v for k, v in h.items()})

    def judge(*events: Event) -> str:
        r = dataclasses.replace(receipt, events=events)
        try:
            _packet_values(good, Proven(tx, tx.tx_id, r, header), REGULATOR)
        except Refused as exc:
            return str(exc)
        return "accepted"

    queued = next(e for e in receipt.events if e.name == "PacketQueued")
    sub = next(e for e in receipt.events if e.name == "EvidenceSubmitted")
    assert judge(*receipt.events) == "accepted"
    decoy = dataclasses.replace(queued, fields=(queued.fields[0], ("dest", "elsewhere"),
                                                queued.fields[2]))  # fmt: skip
    assert "queued for 'elsewhere'" in judge(sub, decoy, queued)
    swapped = dataclasses.replace(sub, fields=(sub.fields[0], sub.fields[2], sub.fields[1],
                                               *sub.fields[3:]))  # fmt: skip
    assert "fields are not record_id, flow_id, org, step, record_hash" in judge(swapped, queued)
    other_step = dataclasses.replace(
        sub, fields=tuple(("step", "other") if n == "step" else (n, v) for n, v in sub.fields)
    )
    assert "another flow or step" in judge(other_step, queued)
    assert "no EvidenceSubmitted" in judge(queued)


def test_state_keys_are_the_rule_s1_layout() -> None:
    """crosschain/xclient_state.py rule S1, byte for byte: the prefix, the chain id and its NUL,
    then the key's own parts (text in UTF-8, integers u64 big-endian, NUL between text and i)."""
    n = (7).to_bytes(8, "big")
    assert Keys.meta("c1") == b"m/c1\x00"
    assert Keys.arrivals("c1") == b"n/c1\x00"
    for key, prefix in [
        (Keys.header, b"h/"),
        (Keys.update, b"u/"),
        (Keys.epoch_end, b"e/"),
        (Keys.epoch_set, b"s/"),
        (Keys.evidence, b"x/"),
        (Keys.packet, b"p/"),
    ]:
        assert key("c1", 7) == prefix + b"c1\x00" + n
    assert Keys.record("c1", "r-1") == b"r/c1\x00r-1"
    assert Keys.tx("c1", b"\x01\x02") == b"t/c1\x00\x01\x02"
    assert Keys.org_count("c1", "OrgA") == b"O/c1\x00OrgA"
    assert Keys.org_item("c1", "OrgA", 7) == b"o/c1\x00OrgA\x00" + n
    assert Keys.flow_count("c1", "fl") == b"F/c1\x00fl"
    assert Keys.flow_item("c1", "fl", 7) == b"f/c1\x00fl\x00" + n
    assert Keys.ack(7) == b"a/" + n
    assert Keys.ack_record("r-2") == b"b/r-2"

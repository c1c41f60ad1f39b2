"""A record relayed to the regulator chain, checked by tests/independent_xc.py (written from the
documents alone) back to the business chain's genesis; each tampering is refused.

The data is real: tests/xc_rig.py runs both chains with the node's contracts and real SM2 keys;
the regulator's answers are rendered as the RPC renders them (gm_getRelayedRecord,
gm_getTransactionByHash `raw`, gm_getTransactionProof from the node's ProofAssembler).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from gmchain.chain.genesis import make_genesis_block
from gmchain.chain.proofs import ProofAssembler
from gmchain.chain.readcheck import check_served_header
from gmchain.consensus.messages import CommitProof
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.types import Block
from gmchain.node.config import save_genesis
from tests.independent_client import decode, encode
from tests.independent_epoch import load_genesis
from tests.independent_xc import Invalid, LightClient, check_packet, verify_relayed_record
from tests.xc_rig import REGULATOR, Side, make_pair, packets_arg, query

OK = 0


class _Served:
    """The regulator's store as the RPC serves it (the bundle builder needs tx ids by height)."""

    def __init__(self, side: Side) -> None:
        self._s = side.store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s, name)

    def get_tx_ids(self, h: int) -> list[bytes] | None:
        raw = self._s.get_block_by_height(h)
        return None if raw is None else [t.tx_id for t in Block.decode(raw).txs]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.capitalize() for w in rest)


def _render(value: Any) -> Any:
    """A gm_call record as rpc.md renders it: camelCase members, bytes as 0x hex."""
    if isinstance(value, dict):
        return {_camel(k): _render(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v) for v in value]
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


def _tx_item(reg: Side, tx_id: bytes) -> dict[str, Any]:
    h, i = reg.store.get_tx_location(tx_id) or (0, 0)
    tx = Block.decode(reg.store.get_block_by_height(h) or b"").txs[i]
    assembler = ProofAssembler(
        store=_Served(reg),  # type: ignore[arg-type]
        validators=reg.rig.genesis.validators,
        max_span=256,
        check_header=check_served_header,
    )
    head = reg.store.head_height() or 0
    return {
        "tx": {"txId": "0x" + tx_id.hex(), "raw": "0x" + tx.encode().hex()},
        "proof": assembler.tx_proof(tx_id, None, head),
    }


def _height(side: Side, tx_id: bytes) -> int:
    loc = side.store.get_tx_location(tx_id)
    assert loc is not None
    return loc[0]


def _genesis_doc(side: Side, tmp: Path, name: str) -> dict[str, Any]:
    save_genesis(tmp / name, side.rig.genesis)
    return dict(json.loads((tmp / name).read_text()))


def _record(biz: Side, reg: Side, record_id: str) -> dict[str, Any]:
    """gm_getRelayedRecord as rpc.md describes it (node/rpcxc.py builds it the same way)."""
    rec = query(reg, "record", [biz.chain_id, record_id])
    header = query(reg, "header", [biz.chain_id, rec["height"]])
    rec["header"] = header
    rec["update_tx_id"] = query(reg, "update_tx", [biz.chain_id, header["update_no"]])
    epoch_txs: list[bytes] = []
    for e in range(header["epoch"]):
        end = query(reg, "epoch_end", [biz.chain_id, e])
        tx = None if end is None else query(reg, "update_tx", [biz.chain_id, end["update_no"]])
        if tx is not None and tx != rec["update_tx_id"] and tx not in epoch_txs:
            epoch_txs.append(tx)
    rec["epoch_update_tx_ids"] = epoch_txs
    rec["header_bytes"] = biz.header(rec["height"]).encode()
    return _render(rec)


class World:
    def __init__(self, tmp: Path) -> None:
        biz, reg = make_pair()
        self.biz, self.reg = biz, reg
        early = biz.evidence_txs(1, tag="early")
        assert biz.run_txs(early)[0].status == OK
        for k in (1, 2):  # two epoch changes of the business chain
            rs = biz.run_txs(biz.rig.add_validator_txs(biz.rig.keys[k]))
            assert all(x.status == OK for x in rs)
        late = biz.evidence_txs(1, tag="late")
        assert biz.run_txs(late)[0].status == OK
        assert biz.rig.chain.validators.current_epoch() == 2
        self.h_late = _height(biz, late[0].tx_id)
        assert biz.header(self.h_late).epoch == 2
        self.updates: list[bytes] = []
        for update in (
            biz.update(_height(biz, early[0].tx_id)),
            biz.update(None, changes=biz.epoch_changes(0, 1)),
            biz.update(self.h_late, changes=biz.epoch_changes(1, 2)),
        ):
            r = reg.call("xclient", "update_client", [update])
            assert r.status == OK, r.error
            self.updates.append(r.tx_id)
        packets = [biz.packet(t.tx_id, REGULATOR) for t in (early[0], late[0])]
        r = reg.call("xclient", "recv_packets", [packets_arg(packets)])
        assert r.status == OK, r.error
        self.recv = r.tx_id
        self.biz_genesis = _genesis_doc(biz, tmp, "business.json")
        self.reg_genesis = _genesis_doc(reg, tmp, "regulator.json")

    def served(self, record_id: str) -> dict[str, Any]:
        client = query(self.reg, "client", [self.biz.chain_id])
        return {
            "record": _record(self.biz, self.reg, record_id),
            "client": _render(client),
            "recv": _tx_item(self.reg, self.recv),
            "updates": [_tx_item(self.reg, t) for t in self.updates],
        }

    def verify(self, served: dict[str, Any], biz_genesis: Any = None) -> Any:
        return verify_relayed_record(biz_genesis or self.biz_genesis, self.reg_genesis, served)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("xc"))


def _assert_refused(verdict: Any, *needles: str) -> None:
    assert not verdict.valid
    text = str(verdict)
    assert text.startswith("INVALID")
    for needle in needles:
        assert needle in text, text


# ---------------------------------------------------------------- good records


@pytest.mark.parametrize(("record_id", "epoch"), [("early-0", 0), ("late-0", 2)])
def test_a_relayed_record_verifies_back_to_the_business_genesis(
    world: World, record_id: str, epoch: int
) -> None:
    verdict = world.verify(world.served(record_id))
    assert verdict.valid, str(verdict)
    assert str(verdict) == "VALID" and verdict.header is not None
    assert verdict.header.epoch == epoch
    assert verdict.epoch_sets == [0, 1, 2]  # followed from the genesis set through two changes


# ---------------------------------------------------------------- tamperings


def _raw(item: dict[str, Any]) -> list[Any]:
    return list(decode(bytes.fromhex(item["tx"]["raw"][2:]), 16))


def _set_raw(item: dict[str, Any], signed: list[Any]) -> None:
    item["tx"]["raw"] = "0x" + encode(signed).hex()


def _edit_packet(served: dict[str, Any], edit: Any) -> None:
    """Re-encode the recv_packets tx with `edit` applied to the late record's TxProof."""
    signed = _raw(served["recv"])
    items = signed[1][7][0]
    for it in items:
        p = decode(it[0], 16)
        if p[3] == served["record"]["seq"]:
            edit(p[4])
            it[0] = encode(p)
    _set_raw(served["recv"], signed)


def _edit_update(served: dict[str, Any], n: int, edit: Any) -> None:
    signed = _raw(served["updates"][n])
    u = decode(signed[1][7][0], 16)
    edit(u)
    signed[1][7][0] = encode(u)
    _set_raw(served["updates"][n], signed)


def test_a_tx_byte_is_refused(world: World) -> None:
    served = world.served("late-0")

    def flip(proof: list[Any]) -> None:
        tx = bytearray(proof[2])
        i = tx.index(b"late-0") + 2  # a byte of the record id inside the signed body
        tx[i] ^= 0x01
        proof[2] = bytes(tx)

    _edit_packet(served, flip)
    _assert_refused(world.verify(served), "the transaction is not leaf",
                    "served transaction is not the proven one")  # fmt: skip


def test_a_receipt_byte_is_refused(world: World) -> None:
    served = world.served("late-0")

    def flip(proof: list[Any]) -> None:
        r = bytearray(proof[4])
        r[-5] ^= 0x01  # inside the last event's bytes (the PacketQueued record id)
        proof[4] = bytes(r)

    _edit_packet(served, flip)
    _assert_refused(world.verify(served), "the receipt is not leaf")


def test_a_header_byte_is_refused(world: World) -> None:
    served = world.served("late-0")

    def edit(u: list[Any]) -> None:
        header = decode(u[3][0][0], 4)
        header[6] += 1  # timestamp_ms: another block id
        u[3][0][0] = encode(header)

    _edit_update(served, 2, edit)
    _assert_refused(world.verify(served), "update 2 certificate",
                    "header", "was not verified")  # fmt: skip


def test_a_qc_signature_byte_is_refused(world: World) -> None:
    served = world.served("late-0")

    def edit(u: list[Any]) -> None:
        proof = decode(u[3][1], 5)
        sig = bytearray(proof[2][5][0][1])
        sig[10] ^= 0x01
        proof[2][5][0][1] = bytes(sig)
        u[3][1] = encode(proof)

    _edit_update(served, 2, edit)
    _assert_refused(world.verify(served), "does not verify", "was not verified")


def test_a_certificate_of_a_non_validator_set_is_refused(world: World) -> None:
    """The late header's certificate re-signed (both QCs' worth of power) by keys that are no
    validators of epoch 2: a relayer's forgery, even if a regulator had committed it."""
    served = world.served("late-0")
    biz = world.biz
    cert = biz.certificate(world.h_late)
    strangers = [PrivateKey.generate() for _ in range(3)]
    proof = CommitProof(header=cert.proof.header, qc=biz.rig.qc(cert.proof.header, strangers))

    def edit(u: list[Any]) -> None:
        u[3] = [[h.encode() for h in cert.headers], proof.encode()]

    _edit_update(served, 2, edit)
    _assert_refused(world.verify(served), "not in epoch 2", "was not verified")


def test_a_skipped_epoch_change_is_refused(world: World) -> None:
    """The regulator serves the updates without the one that carried 0 -> 1."""
    served = world.served("late-0")
    del served["updates"][1]
    _assert_refused(world.verify(served), "changes must follow each other", "was not verified")


def test_a_forged_next_set_is_refused(world: World) -> None:
    served = world.served("late-0")

    def edit(u: list[Any]) -> None:
        u[2][0][2] = [[PrivateKey.generate().public_key.to_bytes(), 1, "org-a"]]

    _edit_update(served, 1, edit)
    _assert_refused(world.verify(served), "is not the commitment to e + 1, next_validators")


def test_a_wrong_business_genesis_is_refused(world: World) -> None:
    served = world.served("early-0")
    other = copy.deepcopy(world.biz_genesis)
    other["timestamp_ms"] += 1
    del other["genesis_hash"]
    _assert_refused(world.verify(served, other), "genesisHash is not the business genesis")
    stranger = copy.deepcopy(world.biz_genesis)
    stranger["validators"][0]["pubkey"] = PrivateKey.generate().public_key.to_bytes().hex()
    del stranger["genesis_hash"]
    _assert_refused(world.verify(served, stranger), "not in epoch 0", "was not verified")


def test_the_regulator_genesis_anchors_the_regulator_side(world: World) -> None:
    served = world.served("late-0")
    other = copy.deepcopy(world.reg_genesis)
    other["validators"][0]["pubkey"] = PrivateKey.generate().public_key.to_bytes().hex()
    del other["genesis_hash"]
    verdict = verify_relayed_record(world.biz_genesis, other, served)
    _assert_refused(verdict, "the regulator's proof bundle")


def test_a_stored_copy_that_differs_from_the_proofs_is_refused(world: World) -> None:
    served = world.served("late-0")
    served["record"]["recordHash"] = "0x" + "00" * 32
    served["record"]["header"]["epoch"] = 1
    _assert_refused(world.verify(served), "stored copy: recordHash", "stored copy: header.epoch")


def test_a_record_not_accepted_by_that_transaction_is_refused(world: World) -> None:
    """The record's recvTxId is another regulator transaction (an update): refused."""
    served = world.served("late-0")
    served["recv"] = served["updates"][0]
    _assert_refused(world.verify(served), "not xclient.recv_packets")


def test_the_served_update_tx_and_header_bytes_are_checked(world: World) -> None:
    """F2, F8: updateTxId must be the update whose ClientUpdated event gave header.updateNo;
    headerBytes must be the header (its block id)."""
    served = world.served("late-0")
    assert served["record"]["epochUpdateTxIds"] == [
        "0x" + world.updates[1].hex()
    ]  # epoch 0's change; epoch 1's rides in updateTxId's update
    assert served["record"]["updateTxId"] == "0x" + world.updates[2].hex()
    wrong = copy.deepcopy(served)
    wrong["record"]["updateTxId"] = "0x" + world.updates[0].hex()
    _assert_refused(world.verify(wrong), "updateTxId: not update")
    wrong = copy.deepcopy(served)
    wrong["record"]["headerBytes"] = "0x" + world.biz.header(world.h_late - 1).encode().hex()
    _assert_refused(world.verify(wrong), "headerBytes: not the header")


def test_an_update_committed_after_the_packet_is_not_used(world: World) -> None:
    served = world.served("late-0")
    served["updates"].append(served["recv"])
    _assert_refused(world.verify(served), "not xclient.update_client")


# ---------------------------------------------------------------- the documents' worked examples


def _xc_examples() -> dict[str, dict[str, str]]:
    text = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
    out = {}
    for name, body in re.findall(r"<!-- example: (xc_\w+) -->\n```\w+\n(.*?)\n```", text, re.S):
        out[name] = dict(line.split(" = ", 1) for line in body.splitlines() if " = " in line)
    return out


def _genesis_json(struct_hex: str) -> dict[str, Any]:
    """A Genesis struct (protocol.md §2, tag 13) as the genesis document of §6."""
    _, chain_id, ts, vals, observers, window, accounts, committee, thresholds = decode(
        bytes.fromhex(struct_hex), 3
    )
    return {
        "chain_id": chain_id,
        "timestamp_ms": ts,
        "replay_window": window,
        "validators": [{"pubkey": v[1].hex(), "power": v[2], "org": v[3]} for v in vals],
        "observers": [o.hex() for o in observers],
        "accounts": [{"pubkey": a[0].hex(), "org": a[1], "role": a[2]} for a in accounts],
        "committee": [{"org": c[0], "weight": c[1]} for c in committee],
        "gov_thresholds": thresholds,
    }


def test_the_documents_worked_examples_verify() -> None:
    """protocol.md section 10: the example ClientUpdate, Packet and EpochChange, replayed from
    the example business genesis, give the documented stored copy and update numbers."""
    ex = _xc_examples()
    if "xc_setup" not in ex:
        pytest.skip("docs/protocol.md has no section 10 examples yet")
    setup = ex["xc_setup"]
    biz = load_genesis(_genesis_json(setup["business_genesis"]))
    assert biz.genesis_hash.hex() == setup["business_genesis_hash"]
    assert biz.block_id.hex() == setup["business_block0_id"]
    client = LightClient(biz)
    client.apply(bytes.fromhex(ex["xc_client_update"]["client_update"]), "example update")
    assert {h: n for h, (_, n) in client.headers.items()} == {1: 1}
    packet = ex["xc_packet"]
    derived, header = check_packet(bytes.fromhex(packet["packet"]), 2, client, "example-regulator")
    stored = decode(bytes.fromhex(packet["p_value"]), 16)
    keys = ["height", "index", "txId", "org", "flowId", "recordId", "scenario", "step",
            "dataDigest", "recordHash"]  # fmt: skip
    assert [derived[k] for k in keys] == stored[:10]
    assert header.block_id.hex() == ex["xc_certificate"]["header0_block_id"]
    client.apply(bytes.fromhex(ex["xc_epoch_change"]["client_update"]), "example change")
    assert client.epoch == 1 and client.ends[0][0] == 4
    assert client.ends[0][1].hex() == ex["xc_epoch_change"]["next_fingerprint"]
    assert client.headers[4][1] == 2  # e/ of epoch 0 names update 2
    with pytest.raises(Invalid, match="changes must follow each other"):
        LightClient(biz).apply(bytes.fromhex(_skip_to_epoch_1(ex)), "skipping")


def _skip_to_epoch_1(ex: dict[str, dict[str, str]]) -> str:
    """The example epoch change relabelled as epoch 1's (a change that skips epoch 0's)."""
    update = decode(bytes.fromhex(ex["xc_epoch_change"]["client_update"]), 16)
    update[2][0][0] = 1
    return encode(update).hex()


def test_a_client_registered_at_a_later_epoch_needs_the_business_epoch_proof(
    tmp_path: Path,
) -> None:
    """Registered at epoch 1 (governance's register_chain with a later epoch): the regulator
    holds no change 0 -> 1, so the set follows from the genesis only through the business
    chain's own epoch proof (gm_getEpochProof 0..1)."""
    biz, reg = make_pair(register_business=False)
    assert all(x.status == OK for x in biz.run_txs(biz.rig.add_validator_txs(biz.rig.keys[1])))
    late = biz.evidence_txs(1, tag="later")
    biz.run_txs(late)
    g = biz.rig.genesis
    one: list[Any] = [
        [v.pubkey, v.power, v.org] for v in biz.rig.chain.validators.config(1).validators
    ]
    block0 = make_genesis_block(g)[0].header.block_id
    reg.govern("register_chain", [biz.chain_id, g.compute_hash(), block0, 1, one])
    assert query(reg, "client", [biz.chain_id])["epoch"] == 1
    update = reg.call("xclient", "update_client", [biz.update(_height(biz, late[0].tx_id))])
    assert update.status == OK, update.error
    packet = biz.packet(late[0].tx_id, REGULATOR)
    recv = reg.call("xclient", "recv_packets", [packets_arg([packet])])
    assert recv.status == OK, recv.error
    served = {
        "record": _record(biz, reg, "later-0"),
        "recv": _tx_item(reg, recv.tx_id),
        "updates": [_tx_item(reg, update.tx_id)],
    }
    genesis = (_genesis_doc(biz, tmp_path, "b.json"), _genesis_doc(reg, tmp_path, "r.json"))
    _assert_refused(verify_relayed_record(*genesis, served), "epoch 1 not reached")
    assembler = ProofAssembler(
        store=_Served(biz),  # type: ignore[arg-type]
        validators=g.validators,
        max_span=256,
        check_header=check_served_header,
    )
    served["business_epoch_proof"] = assembler.epoch_proof(0, 1)
    verdict = verify_relayed_record(*genesis, served)
    assert verdict.valid, str(verdict)
    assert verdict.header is not None and verdict.header.epoch == 1
    forged = copy.deepcopy(served)
    forged["business_epoch_proof"]["entries"][0]["next_validators"][0]["power"] += 1
    _assert_refused(verify_relayed_record(*genesis, forged), "business epoch proof")

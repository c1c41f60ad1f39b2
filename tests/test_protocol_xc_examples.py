"""docs/protocol.md section 10's cross-chain examples verify with the real xclient contract, and
tampering one byte fails (except the bytes the doc says are not covered).

Everything is read back from the markdown: the two example chains' genesis documents and
governance writes (`xc_setup`), their blocks, and the objects. The blocks are re-executed by the
node's executor and contracts (`crosschain.node_registry`) over a fresh state and must give the
receipts the doc shows (so each object was accepted as the doc says); then each object is
re-submitted, one byte flipped, on the state just before its real submission: every flip is
refused, except the flips the doc names as uncovered (the proven transaction's signature, a
validator's org in an epoch change's next set).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gmchain.chain.core import make_genesis_block
from gmchain.chain.executor import BlockContext, Executor
from gmchain.chain.txrules import TxRules
from gmchain.crosschain import node_registry
from gmchain.crosschain.packets import Ack, ClientUpdate, EpochChange, Misbehaviour, Packet
from gmchain.crypto_sm import PrivateKey, PublicKey, sm3_hash
from gmchain.ledger.merkle import Frontier, compute_root
from gmchain.ledger.types import (
    Block,
    Genesis,
    Height,
    Receipt,
    ReceiptStatus,
    SignedTx,
    TxBody,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
EXAMPLES = dict(re.findall(r"<!-- example: (\w+) -->\n```\w+\n(.*?)\n```", DOC.read_text(), re.S))
SENDER = PrivateKey.from_bytes(sm3_hash(b"gmchain protocol.md example key: sender"))
OK, FAILED = ReceiptStatus.OK, ReceiptStatus.FAILED


def kv(name: str) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in EXAMPLES[name].splitlines())


def raw(name: str, key: str) -> bytes:
    return bytes.fromhex(kv(name)[key])


class _State:
    """Committed state in memory, as the executor reads it (chain.executor.CommittedState)."""

    def __init__(self) -> None:
        self.state: dict[tuple[str, bytes], bytes] = {}
        self.locations: dict[bytes, tuple[int, int]] = {}

    def get_state(self, namespace: str, key: bytes) -> bytes | None:
        return self.state.get((namespace, key))

    def iter_state(self, namespace: str, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        for (ns, key), value in sorted(self.state.items()):
            if ns == namespace and key.startswith(prefix):
                yield key, value

    def get_tx_location(self, tx_id: bytes) -> tuple[int, int] | None:
        return self.locations.get(tx_id)


class _Chain:
    """One example chain rebuilt from the doc: genesis writes, governance seeds, then blocks."""

    def __init__(self, name: str) -> None:
        setup = kv("xc_setup")
        self.genesis = Genesis.decode(bytes.fromhex(setup[f"{name}_genesis"]))
        block0, writes = make_genesis_block(self.genesis)
        assert block0.block_id.hex() == setup[f"{name}_block0_id"]
        self.state = _State()
        self.state.state.update({k: v for k, v in writes.items() if v is not None})
        i = 0
        while f"{name}_seed{i}_key" in setup:
            ns = setup[f"{name}_seed{i}_namespace"]
            key, value = (bytes.fromhex(setup[f"{name}_seed{i}_{x}"]) for x in ("key", "value"))
            self.state.state[(ns, key)] = value
            i += 1
        rules = TxRules.with_new_caches(
            chain_id=self.genesis.chain_id,
            replay_window=self.genesis.replay_window,
            registry=node_registry(),
        )
        self.executor = Executor(rules=rules, committed=self.state)
        self.height = 0

    def execute(self, height: int, txs: list[SignedTx], apply: bool) -> Any:
        ctx = BlockContext(
            chain_id=self.genesis.chain_id,
            height=height,
            timestamp_ms=self.genesis.timestamp_ms + 1000 * height,
            parent_state_hash=b"\x00" * 32,
            parent_frontier=Frontier.empty(),
        )
        result, _ = self.executor.execute(ctx, txs, None, strict=True)
        if apply:
            for k, v in result.writes.items():
                if v is None:
                    self.state.state.pop(k, None)
                else:
                    self.state.state[k] = v
            self.executor.read_cache.on_committed_writes(result.writes)  # as Chain.commit does
            for i, t in enumerate(result.tx_ids):
                self.state.locations[t] = (height, i)
            self.height = height
        return result

    def run_doc_block(self, example: str, prefix: str) -> list[Receipt]:
        """The doc's block `prefix`_block, re-executed: its receipts must be the doc's."""
        block = Block.decode(raw(example, f"{prefix}_block"))
        result = self.execute(block.header.height, list(block.txs), apply=True)
        doc = kv(example)
        for i, r in enumerate(result.receipts):
            assert r.encode().hex() == doc[f"{prefix}_receipt{i}"], f"{prefix} receipt {i}"
        assert compute_root([r.encode() for r in result.receipts]) == block.header.receipt_root
        return list(result.receipts)

    def attempt(self, method: str, arg: Any) -> Receipt:
        """xclient.`method`(arg) in a fresh transaction on the current state (not applied)."""
        height = self.height + 1
        body = TxBody(
            chain_id=self.genesis.chain_id,
            sender=SENDER.public_key.to_bytes(),
            nonce=int.from_bytes(sm3_hash(repr(arg).encode())[:8], "big"),
            expiry=Height(height + 10),
            contract="xclient",
            method=method,
            args=(arg,),
        )
        tx = SignedTx(body=body, signature=SENDER.sign(body.compute_id()))
        return self.execute(height, [tx], apply=False).receipts[0]


def _events(r: Receipt, name: str) -> list[dict[str, Any]]:
    return [dict(e.fields) for e in r.events if e.name == name]


def _flip(data: bytes, i: int) -> bytes:
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


def _sample(n: int, count: int = 60) -> list[int]:
    """Every byte of the first 40 (version strings, chain ids, headers of the value) and an
    even spread over the rest."""
    step = max(1, (n - 40) // count)
    return sorted(set(range(min(40, n))) | set(range(40, n, step)) | {n - 1})


@pytest.fixture(scope="module")
def story() -> dict[str, Any]:
    """Both chains driven through the doc's blocks, keeping the state before each object."""
    biz, reg = _Chain("business"), _Chain("regulator")
    out: dict[str, Any] = {"biz": biz, "reg": reg}
    rs = biz.run_doc_block("xc_tx_proof", "business1")
    assert [e["seq"] for r in rs for e in _events(r, "PacketQueued")] == [1, 2, 3]
    rs = reg.run_doc_block("xc_client_update", "regulator1")
    out["reg1"] = rs
    rs = biz.run_doc_block("xc_ack", "business3")
    out["biz3"] = rs
    rs = reg.run_doc_block("xc_epoch_change", "regulator3")
    out["reg3"] = rs
    rs = reg.run_doc_block("xc_misbehaviour", "regulator4")
    out["reg4"] = rs
    return out


def test_each_example_object_is_in_its_block_and_accepted(story: dict[str, Any]) -> None:
    reg1, biz3, reg3, reg4 = story["reg1"], story["biz3"], story["reg3"], story["reg4"]
    block = Block.decode(raw("xc_client_update", "regulator1_block"))
    assert block.txs[0].body.args == (raw("xc_client_update", "client_update"),)
    assert block.txs[1].body.args == ([[raw("xc_packet", "packet")]],)
    assert _events(reg1[0], "ClientUpdated")[0]["new_headers"] == 1
    assert _events(reg1[1], "PacketReceived") == [
        {"chain": "example-business", "seq": 2, "status": "accepted", "record_id": "rec-001"}
    ]
    block = Block.decode(raw("xc_ack", "business3_block"))
    assert block.txs[1].body.args == (raw("xc_ack", "ack"),)
    assert _events(biz3[1], "AckRecorded")[0]["seq"] == 2
    block = Block.decode(raw("xc_epoch_change", "regulator3_block"))
    assert block.txs[0].body.args == (raw("xc_epoch_change", "client_update"),)
    assert _events(reg3[0], "ClientUpdated")[0]["epoch"] == 1
    block = Block.decode(raw("xc_misbehaviour", "regulator4_block"))
    assert block.txs[0].body.args == (raw("xc_misbehaviour", "misbehaviour"),)
    frozen = _events(reg4[0], "ClientFrozen")[0]
    assert (
        "[" + ", ".join(s.hex() for s in frozen["signers"]) + "]"
        == kv("xc_misbehaviour")["signers_in_both"]
    )
    # The decoded lines are the objects' own values (what a reader compares against).
    p = Packet.decode(raw("xc_packet", "packet"))
    assert (p.source_chain_id, p.dest_chain_id, p.seq) == (
        "example-business",
        "example-regulator",
        2,
    )
    assert p.proof.tx == raw("xc_tx_proof", "tx") and p.proof.receipt == raw(
        "xc_tx_proof", "receipt"
    )
    assert kv("xc_tx_proof")["tx_step1"] == kv("xc_tx_proof")["tx_root"]
    assert ClientUpdate.decode(raw("xc_client_update", "client_update")).epoch_changes == ()
    assert Ack.decode(raw("xc_ack", "ack")).proof.height == int(kv("xc_ack")["height"])
    m = Misbehaviour.decode(raw("xc_misbehaviour", "misbehaviour"))
    assert m.second.headers[0].block_id.hex() == kv("xc_misbehaviour")["second_block_id"]


def test_the_certificate_lines_are_what_the_qcs_sign() -> None:
    from gmchain.crosschain.packets import certificate_from_value
    from gmchain.ledger.codec import decode

    doc = kv("xc_certificate")
    cert = certificate_from_value(decode(raw("xc_certificate", "certificate")))
    genesis = Genesis.decode(raw("xc_setup", "business_genesis"))
    keys = {v.node_id: PublicKey.from_bytes(v.pubkey) for v in genesis.validators}
    for qc, root in (
        (cert.proof.header.justify, doc["child_justify_signing_root"]),
        (cert.proof.qc, doc["qc_signing_root"]),
    ):
        assert len(qc.signatures) == 3
        assert all(keys[n].verify(bytes.fromhex(root), sig) for n, sig in qc.signatures)
    assert cert.headers[0].encode() == raw("xc_certificate", "header0")


def _sig_range(data: bytes, tx: bytes) -> set[int]:
    sig = SignedTx.decode_tx(tx).signature
    at = data.find(sig)
    assert at > 0 and data.find(sig, at + 1) == -1
    return set(range(at, at + len(sig)))


def test_tampering_a_packet_fails_except_the_signature_bytes() -> None:
    """Every byte of the packet flipped, each judged alone by recv_packets (32 per call)."""
    reg = _Chain("regulator")
    block = Block.decode(raw("xc_client_update", "regulator1_block"))
    reg.execute(1, [block.txs[0]], apply=True)  # the update: header 1 verified
    packet = raw("xc_packet", "packet")
    accepted: set[int] = set()
    positions = list(range(len(packet)))
    for start in range(0, len(positions), 32):
        batch = positions[start : start + 32]
        r = reg.attempt("recv_packets", [[_flip(packet, i)] for i in batch])
        if r.status == FAILED:  # every packet of the batch refused (no events: nothing written)
            assert r.error.startswith(f"all {len(batch)} packets refused"), r.error
            continue
        names = [e.name for e in r.events]  # one per packet: accepted, or a duplicate of one
        assert len(names) == len(batch)
        accepted |= {i for i, n in zip(batch, names, strict=True) if n == "PacketReceived"}
    assert reg.attempt("recv_packets", [[packet]]).status == OK  # the untampered one
    assert accepted == _sig_range(packet, Packet.decode(packet).proof.tx)


def test_tampering_an_ack_fails_except_the_signature_bytes() -> None:
    biz = _Chain("business")
    biz.run_doc_block("xc_tx_proof", "business1")
    block = Block.decode(raw("xc_ack", "business3_block"))
    biz.execute(3, [block.txs[0]], apply=True)  # the update of the regulator's client
    ack = raw("xc_ack", "ack")
    assert biz.attempt("recv_ack", ack).status == OK
    uncovered = _sig_range(ack, Ack.decode(ack).proof.tx)
    for i in _sample(len(ack)) + sorted(uncovered)[:2]:
        r = biz.attempt("recv_ack", _flip(ack, i))
        if i in uncovered:
            assert r.status == OK and _events(r, "AckRecorded"), i
        else:
            assert r.status == FAILED, (i, r.error)


@pytest.mark.parametrize("name", ["xc_client_update", "xc_epoch_change"])
def test_tampering_a_client_update_fails(name: str) -> None:
    reg = _Chain("regulator")
    if name == "xc_epoch_change":
        reg.run_doc_block("xc_client_update", "regulator1")
    update = raw(name, "client_update")
    assert reg.attempt("update_client", update).status == OK
    # An epoch change's next set: the fingerprint covers keys and powers, not the orgs.
    orgs: set[int] = set()
    for u in ClientUpdate.decode(update).epoch_changes:
        for v in u.next_validators:
            at = update.find(v.pubkey)
            assert at > 0 and update.find(v.pubkey, at + 1) == -1
            text = at + 65 + 1 + 1  # after the key, the power (a fixint) and the str header
            orgs |= set(range(text, text + len(v.org.encode())))
    org_ok = 0
    for i in _sample(len(update)) + sorted(orgs):
        r = reg.attempt("update_client", _flip(update, i))
        if i in orgs:
            org_ok += r.status == OK
        else:
            assert r.status == FAILED, (i, r.error)
    assert org_ok > 0 if orgs else org_ok == 0


def test_tampering_a_misbehaviour_fails() -> None:
    reg = _Chain("regulator")
    reg.run_doc_block("xc_client_update", "regulator1")
    reg.run_doc_block("xc_epoch_change", "regulator3")
    misb = raw("xc_misbehaviour", "misbehaviour")
    assert reg.attempt("submit_misbehaviour", misb).status == OK
    for i in _sample(len(misb)):
        r = reg.attempt("submit_misbehaviour", _flip(misb, i))
        assert r.status == FAILED, (i, r.error)


def test_an_epoch_change_in_another_order_is_the_same_change() -> None:
    """The doc: next_validators' order is not checked (the fingerprint sorts by key); a key
    named twice is refused."""
    reg = _Chain("regulator")
    reg.run_doc_block("xc_client_update", "regulator1")
    u = ClientUpdate.decode(raw("xc_epoch_change", "client_update"))
    ch = u.epoch_changes[0]

    def with_next(vals: tuple[Any, ...]) -> bytes:
        change = EpochChange(epoch=ch.epoch, certificate=ch.certificate, next_validators=vals)
        return ClientUpdate(chain_id=u.chain_id, epoch_changes=(change,)).encode()

    assert reg.attempt("update_client", with_next(ch.next_validators[::-1])).status == OK
    twice = reg.attempt("update_client", with_next((*ch.next_validators, ch.next_validators[0])))
    assert twice.status == FAILED and "twice" in twice.error

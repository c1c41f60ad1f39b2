"""The cross-chain worked examples of docs/protocol.md ("Cross-chain objects"), from real chains.

Rules this script keeps (scripts/gen_protocol_doc.py imports it; its rules 1-3 hold here too):
1. Two tiny chains run by the real executor and the node's contracts (`crosschain.node_registry`,
   xclient included): a business chain `example-business` (the example chain's four validator
   keys and orgs, its sender key as the firm-a admin and relayer) and a regulator chain
   `example-regulator` (one validator: the example's validator key 0). Every certificate is
   signed with those keys (signatures stored in tests/vectors/protocol_examples.json, names
   starting `xc_`).
2. The governance writes (each chain registers the other; the business chain's relay rule) are
   put into the committed state before block 1, exactly as the executed proposals of
   docs/governance.md write them; the examples list them, key and value.
3. Every object the examples show is verified by the real contract on chain (the receipts are in
   the examples): update_client, recv_packets, recv_ack, the epoch change and the misbehaviour.
   Nothing here decides an outcome.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from gmchain.chain.core import compute_block_header, make_genesis_block
from gmchain.chain.executor import BlockContext, Executor
from gmchain.chain.lightclient import Certificate, compute_validator_set_fingerprint
from gmchain.chain.txrules import TxRules
from gmchain.consensus import Validator, ValidatorSet
from gmchain.consensus.messages import CommitProof
from gmchain.contracts.xc_layout import (
    RELAY_RULE_KEY,
    ClientState,
    RelayRule,
    client_key,
    outbox_key,
)
from gmchain.crosschain import node_registry
from gmchain.crosschain.packets import (
    Ack,
    ClientUpdate,
    EpochChange,
    Misbehaviour,
    Packet,
    TxProof,
)
from gmchain.crypto_sm import PrivateKey, sm3_hash
from gmchain.ledger import types as lt
from gmchain.ledger.epoch import next_validators_commitment
from gmchain.ledger.merkle import Frontier, leaf_hash, root_and_inclusion_proof

BUSINESS = "example-business"
REGULATOR = "example-regulator"
T0 = 1_767_225_600_000


class XChain:
    """One example chain: genesis, committed state (rule 2), blocks run by the real executor."""

    def __init__(
        self,
        sigs: Any,
        state: Any,
        *,
        chain_id: str,
        vkeys: list[PrivateKey],
        orgs: tuple[str, ...],
        sender: PrivateKey,
        sender_org: str,
    ) -> None:
        self.sigs, self.state, self.sender = sigs, state, sender
        self.chain_id = chain_id
        self.genesis = lt.Genesis(
            chain_id=chain_id,
            timestamp_ms=T0,
            validators=tuple(
                lt.GenesisValidator(pubkey=k.public_key.to_bytes(), power=1, org=o)
                for k, o in zip(vkeys, orgs, strict=True)
            ),
            replay_window=1000,
            accounts=((sender.public_key.to_bytes(), sender_org, "admin"),),
        )
        self.vset = ValidatorSet(
            Validator(node_id=v.node_id, power=v.power) for v in self.genesis.validators
        )
        self.key_of = {lt.NodeId(k.public_key.address): k for k in vkeys}
        block0, writes = make_genesis_block(self.genesis)
        self.state.apply(0, writes, [])
        self.seeds: list[tuple[str, bytes, bytes]] = []
        rules = TxRules.with_new_caches(
            chain_id=chain_id, replay_window=1000, registry=node_registry()
        )
        self.executor = Executor(rules=rules, committed=self.state)
        self.headers: list[lt.BlockHeader] = [block0.header]
        self.blocks: list[lt.Block] = [block0]
        self.receipts: list[list[lt.Receipt]] = [[]]
        self.writes: list[dict[tuple[str, bytes], bytes | None]] = [writes]
        self.frontier = Frontier.empty()
        self.nonce = 0

    @property
    def block0_id(self) -> bytes:
        return self.headers[0].block_id

    def seed(self, namespace: str, key: bytes, value: bytes) -> None:
        """Rule 2: a governance write, committed before block 1."""
        self.state.apply(0, {(namespace, key): value}, [])
        self.executor.read_cache.on_committed_writes({(namespace, key): value})
        self.seeds.append((namespace, key, value))

    def client_state(self) -> ClientState:
        """What register_chain(this chain) writes on the other chain."""
        return ClientState(
            genesis_hash=self.genesis.compute_hash(),
            genesis_block_id=self.block0_id,
            epoch=0,
            validators=self.genesis.validators,
        )

    def qc(self, h: lt.BlockHeader, signers: tuple[int, ...], tag: str = "") -> lt.QuorumCert:
        """A QC of `h` signed by the validators at `signers` (node-id order)."""
        ids = [n for i, n in enumerate(self.vset.node_ids) if i in signers]
        return header_qc(
            h,
            ids,
            lambda n, root: self.sigs.get(
                f"xc_{self.chain_id}_qc{h.height}{tag}_{n.hex()[:8]}", self.key_of[n], root
            ),
        )

    def tx(self, contract: str, method: str, args: tuple[Any, ...]) -> lt.SignedTx:
        body = lt.TxBody(
            chain_id=self.chain_id,
            sender=self.sender.public_key.to_bytes(),
            nonce=2000 + self.nonce,
            expiry=lt.Height(100),
            contract=contract,
            method=method,
            args=args,
        )
        name = f"xc_{self.chain_id}_tx{self.nonce}"
        self.nonce += 1
        return lt.SignedTx(body=body, signature=self.sigs.get(name, self.sender, body.compute_id()))

    def run_block(
        self, txs: list[lt.SignedTx], justify: lt.QuorumCert, *, next_set: Any = None
    ) -> lt.BlockHeader:
        parent = self.headers[-1]
        height = parent.height + 1
        ctx = BlockContext(
            chain_id=self.chain_id,
            height=height,
            timestamp_ms=T0 + 1000 * height,
            parent_state_hash=parent.state_hash,
            parent_frontier=self.frontier,
        )
        result, _ = self.executor.execute(ctx, txs, None, strict=True)
        header = compute_block_header(
            parent,
            result,
            chain_id=self.chain_id,
            epoch=0,
            round=lt.Round(height),
            proposer=self.vset.leader(height),
            timestamp_ms=ctx.timestamp_ms,
            next_validators_hash=(
                next_validators_commitment(0, self.genesis.validators)
                if next_set is None
                else next_validators_commitment(1, next_set)
            ),
            justify=justify,
        )
        self.frontier = result.frontier
        self.state.apply(height, result.writes, result.tx_ids)
        self.executor.read_cache.on_committed_writes(result.writes)  # as Chain.commit does
        self.headers.append(header)
        self.blocks.append(lt.Block(header=header, txs=tuple(txs)))
        self.receipts.append(list(result.receipts))
        self.writes.append(dict(result.writes))
        return header

    def justify(self, signers: tuple[int, ...]) -> lt.QuorumCert:
        return self.qc(self.headers[-1], signers)

    def certificate(self, height: int, signers: tuple[int, ...]) -> Certificate:
        """Block `height` certified by its child (the next block, one round later) and the
        child's QC: Jolteon's 2-chain commit."""
        child = self.headers[height + 1]
        return Certificate(
            headers=(self.headers[height],),
            proof=CommitProof(header=child, qc=self.qc(child, signers)),
        )

    def tx_proof(self, height: int, index: int) -> TxProof:
        block = self.blocks[height]
        ids = [t.tx_id for t in block.txs]
        receipts = [r.encode() for r in self.receipts[height]]
        tx_root, tx_path = root_and_inclusion_proof([leaf_hash(t) for t in ids], index)
        r_root, r_path = root_and_inclusion_proof([leaf_hash(r) for r in receipts], index)
        assert (tx_root, r_root) == (block.header.tx_root, block.header.receipt_root)
        return TxProof(
            height=height,
            index=index,
            tx=block.txs[index].encode(),
            tx_path=tuple(tx_path),
            receipt=receipts[index],
            receipt_path=tuple(r_path),
        )


def _ok(chain: XChain, height: int) -> None:
    bad = [r.error for r in chain.receipts[height] if r.status != lt.ReceiptStatus.OK]
    assert not bad, f"{chain.chain_id} block {height}: {bad}"


def build_xc_examples(
    sigs: Any,
    new_state: Callable[[], Any],
    *,
    sender_key: bytes,
    validator_keys: list[bytes],
    orgs: tuple[str, ...],
    evidence_args: Callable[[int, str | None], tuple[Any, ...]],
) -> dict[str, Any]:
    """The story of the examples (docs/protocol.md.in, "Cross-chain objects"):
    business block 1: three evidence.submit, each queued (seq 1..3) by the relay rule;
    block 2 certifies block 1 (CommitProof: block 2 and its QC, validators 0-2).
    regulator block 1: update_client(certificate of business block 1), recv_packets([seq 2]);
    block 2 certifies it. business block 3: update_client(certificate of regulator block 1),
    recv_ack(ack of the regulator's recv_packets). business block 4 ends epoch 0 (the next set:
    validators 0-2), block 5 certifies it: regulator block 3: update_client([that epoch change,
    its certificate from block 3, the parent of block 4]).
    regulator block 4: submit_misbehaviour(business block 1 and a fork of it, signed by
    validators 1-3): the client freezes; validators 1 and 2 signed both."""
    sender = PrivateKey.from_bytes(sender_key)
    vkeys = [PrivateKey.from_bytes(k) for k in validator_keys]
    biz = XChain(
        sigs,
        new_state(),
        chain_id=BUSINESS,
        vkeys=vkeys,
        orgs=orgs,
        sender=sender,
        sender_org="firm-a",
    )
    reg = XChain(
        sigs,
        new_state(),
        chain_id=REGULATOR,
        vkeys=vkeys[:1],
        orgs=("regulator",),
        sender=sender,
        sender_org="relay-ops",
    )
    q3, solo = (0, 1, 2), (0,)
    biz.seed("xclient", RELAY_RULE_KEY, RelayRule(dest_chain_id=REGULATOR).encode())
    biz.seed("xclient", client_key(REGULATOR), reg.client_state().encode())
    reg.seed("xclient", client_key(BUSINESS), biz.client_state().encode())

    g_qc = lt.QuorumCert(
        block_id=biz.block0_id, round=lt.Round(0), height=lt.Height(0), signatures=()
    )
    prev: str | None = None
    txs = []
    for n in range(3):
        txs.append(biz.tx("evidence", "submit", evidence_args(n, prev)))
        prev = f"rec-{n:03d}"
    biz.run_block(txs, g_qc)
    _ok(biz, 1)
    biz.run_block([], biz.justify(q3))
    cert_b1 = biz.certificate(1, q3)
    update_b = ClientUpdate(chain_id=BUSINESS, certificate=cert_b1)
    proof = biz.tx_proof(1, 1)
    packet = Packet(source_chain_id=BUSINESS, dest_chain_id=REGULATOR, seq=2, proof=proof)

    rg_qc = lt.QuorumCert(
        block_id=reg.block0_id, round=lt.Round(0), height=lt.Height(0), signatures=()
    )
    reg.run_block(
        [
            reg.tx("xclient", "update_client", (update_b.encode(),)),
            reg.tx("xclient", "recv_packets", ([[packet.encode()]],)),
        ],
        rg_qc,
    )
    _ok(reg, 1)
    reg.run_block([], reg.justify(solo))
    cert_r1 = reg.certificate(1, solo)
    update_r = ClientUpdate(chain_id=REGULATOR, certificate=cert_r1)
    ack = Ack(source_chain_id=REGULATOR, dest_chain_id=BUSINESS, proof=reg.tx_proof(1, 1))
    biz.run_block(
        [
            biz.tx("xclient", "update_client", (update_r.encode(),)),
            biz.tx("xclient", "recv_ack", (ack.encode(),)),
        ],
        biz.justify(q3),
    )
    _ok(biz, 3)

    # Epoch 0 ends at business block 4 (its next_validators_hash names validators 0-2); its
    # child, block 5 (a suffix block of epoch 0: it names the same next set), commits it.
    nxt = tuple(v for v in biz.genesis.validators if v.node_id in set(biz.vset.node_ids[:3]))
    biz.run_block([], biz.justify(q3), next_set=nxt)
    biz.run_block([], biz.justify(q3), next_set=nxt)
    end4 = biz.certificate(4, q3)  # xclient_update.py rule U10: from block 4's parent, block 3
    change = EpochChange(
        epoch=0,
        certificate=Certificate(headers=(biz.headers[3], *end4.headers), proof=end4.proof),
        next_validators=nxt,
    )
    update_e = ClientUpdate(chain_id=BUSINESS, epoch_changes=(change,))
    reg.run_block([reg.tx("xclient", "update_client", (update_e.encode(),))], reg.justify(solo))
    _ok(reg, 3)

    # A fork of business block 1 (another timestamp), certified by validators 1-3.
    h1 = biz.headers[1]
    fake = dataclasses.replace(h1, timestamp_ms=h1.timestamp_ms + 1)
    fchild = dataclasses.replace(
        biz.headers[2], parent_id=fake.block_id, justify=biz.qc(fake, (1, 2, 3), "fork")
    )
    fork = Certificate(
        headers=(fake,), proof=CommitProof(header=fchild, qc=biz.qc(fchild, (1, 2, 3), "fork"))
    )
    misb = Misbehaviour(chain_id=BUSINESS, first=cert_b1, second=fork)
    reg.run_block([reg.tx("xclient", "submit_misbehaviour", (misb.encode(),))], reg.justify(solo))
    _ok(reg, 4)
    return {
        "biz": biz,
        "reg": reg,
        "cert_b1": cert_b1,
        "update_b": update_b,
        "packet": packet,
        "proof": proof,
        "update_r": update_r,
        "ack": ack,
        "change": change,
        "update_e": update_e,
        "misbehaviour": misb,
        "next_set": nxt,
    }


# --- rendering ----------------------------------------------------------------------------------


def _hexlist(xs: Any) -> str:
    return "[" + ", ".join(x.hex() if isinstance(x, bytes) else repr(x) for x in xs) + "]"


def _signers(qc: lt.QuorumCert) -> str:
    return _hexlist([n for n, _ in qc.signatures])


def show(v: Any) -> str:
    """A value decoded for reading: bytes in hex, text in double quotes, nil, [a, b, ...]."""
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, str):
        return '"' + v + '"'
    if v is None:
        return "nil"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(show(x) for x in v) + "]"
    return str(v)


def _events(prefix: str, receipt: lt.Receipt) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for i, e in enumerate(receipt.events):
        fields = ", ".join(f"{k}={show(v)}" for k, v in e.fields)
        out.append((f"{prefix}event{i}", f"{e.contract}.{e.name}({fields})"))
    return out


_U64_TAIL = (b"h/", b"u/", b"e/", b"s/", b"x/", b"p/")


def key_text(key: bytes) -> str:
    """An xclient key spelled out (docs/protocol.md section 10's notation)."""
    if key == RELAY_RULE_KEY:
        return '"rule"'
    prefix, rest = key[:2], key[2:]
    head = f'"{prefix.decode()}"'
    if prefix == b"c/" or prefix == b"b/":
        return f'{head} || "{rest.decode()}"'
    if prefix == b"a/":
        return f"{head} || u64be({int.from_bytes(rest, 'big')})"
    chain, _, tail = rest.partition(b"\x00")
    out = f'{head} || "{chain.decode()}" || 00'
    if prefix in _U64_TAIL:
        return out + f" || u64be({int.from_bytes(tail, 'big')})"
    if prefix == b"t/":
        return out + f" || {tail.hex()}"
    if prefix in (b"o/", b"f/"):
        name, _, i = tail.partition(b"\x00")
        return out + f' || "{name.decode()}" || 00 || u64be({int.from_bytes(i, "big")})'
    return out + (f' || "{tail.decode()}"' if tail else "")


def value_text(key: bytes, value: bytes | None) -> str:
    """A stored value decoded: msgpack values, u64be counters, CommitProof bytes."""
    from gmchain.ledger.codec import decode

    if value is None:
        return "nil"
    if key[:2] == b"u/":  # [CommitProof bytes, the update_client tx id]
        proof, tx_id = decode(value)
        committed = CommitProof.decode(proof).committed_id.hex()
        return f"enc([CommitProof of block {committed}, tx id {tx_id.hex()}])"
    if key[:2] in (b"r/", b"t/", b"o/", b"f/", b"O/", b"F/", b"b/") and len(value) == 8:
        return f"u64be({int.from_bytes(value, 'big')})"
    return "enc(" + show(decode(value)) + ")"


def _path_steps(
    prefix: str, leaf: bytes, index: int, size: int, path: tuple[bytes, ...], root: bytes
) -> list[tuple[str, Any]]:
    """RFC 9162 §2.1.3.2 worked through (docs/protocol.md section 7), one line per step."""
    from gmchain.ledger.merkle import node_hash

    out: list[tuple[str, Any]] = [(f"{prefix}_leaf", leaf)]
    fn, sn, r = index, size - 1, leaf
    for i, c in enumerate(path):
        out.append((f"{prefix}_path{i}", c))
        if fn % 2 == 1 or fn == sn:
            r = node_hash(c, r)
            out.append((f"{prefix}_step{i}", r))  # SM3(0x01 || path_i || r)
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, c)
            out.append((f"{prefix}_step{i}", r))  # SM3(0x01 || r || path_i)
        fn, sn = fn >> 1, sn >> 1
    assert sn == 0 and r == root
    return out


def _writes(chain: XChain, height: int, namespace: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    items = sorted((k, v) for (ns, k), v in chain.writes[height].items() if ns == namespace)
    for i, (key, value) in enumerate(items):
        out += [(f"write{i}_key", key), (f"write{i}_key_text", key_text(key))]
        out += [(f"write{i}_value", "nil" if value is None else value)]
        out.append((f"write{i}_value_text", value_text(key, value)))
    return out


def render_xc(
    ex: dict[str, Any], example: Callable[[str, list[tuple[str, Any]]], str]
) -> dict[str, str]:
    """The {{XC_*}} markers of docs/protocol.md.in."""
    from gmchain.crosschain.packets import certificate_to_value
    from gmchain.ledger.codec import encode

    biz, reg = ex["biz"], ex["reg"]
    cert: Certificate = ex["cert_b1"]
    h1, child = cert.headers[0], cert.proof.header
    packet: Packet = ex["packet"]
    proof: TxProof = ex["proof"]
    tx = lt.SignedTx.decode_tx(proof.tx)
    receipt = lt.Receipt.decode(proof.receipt)
    ack: Ack = ex["ack"]
    atx = lt.SignedTx.decode_tx(ack.proof.tx)
    areceipt = lt.Receipt.decode(ack.proof.receipt)
    change: EpochChange = ex["change"]
    ending = change.certificate.headers[1]
    misb: Misbehaviour = ex["misbehaviour"]
    fork = misb.second

    def chain_lines(c: XChain, name: str) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = [
            (f"{name}_genesis", c.genesis.encode()),
            (f"{name}_genesis_hash", c.genesis.compute_hash()),
            (f"{name}_block0_id", c.block0_id),
        ]
        for i, (ns, key, value) in enumerate(c.seeds):
            out += [
                (f"{name}_seed{i}_namespace", ns),
                (f"{name}_seed{i}_key", key),
                (f"{name}_seed{i}_key_text", key_text(key)),
                (f"{name}_seed{i}_value", value),
                (f"{name}_seed{i}_value_text", value_text(key, value)),
            ]
        return out

    def block_lines(c: XChain, height: int, name: str) -> list[tuple[str, Any]]:
        b = c.blocks[height]
        return [
            (f"{name}_block", b.encode()),
            (f"{name}_block_id", b.block_id),
            *((f"{name}_receipt{i}", r.encode()) for i, r in enumerate(c.receipts[height])),
            *(
                line
                for i, r in enumerate(c.receipts[height])
                for line in _events(f"{name}_receipt{i}_", r)
            ),
        ]

    p_key = _k(b"p/", BUSINESS, (2).to_bytes(8, "big"))
    p_value = reg.state.get_state("xclient", p_key)
    h_key = _k(b"h/", BUSINESS, (1).to_bytes(8, "big"))
    return {
        "XC_SETUP": example(
            "xc_setup", chain_lines(biz, "business") + chain_lines(reg, "regulator")
        ),
        "XC_CERTIFICATE": example(
            "xc_certificate",
            [
                ("certificate", encode(certificate_to_value(cert))),
                ("header0", h1.encode()),
                ("header0_block_id", h1.block_id),
                ("header0_chain_id", h1.chain_id),
                ("header0_epoch", h1.epoch),
                ("header0_height", h1.height),
                ("header0_round", h1.round),
                ("header0_tx_count", h1.tx_count),
                ("header0_tx_root", h1.tx_root),
                ("header0_receipt_root", h1.receipt_root),
                ("proof", cert.proof.encode()),
                ("child", child.encode()),
                ("child_block_id", child.block_id),
                ("child_height", child.height),
                ("child_round", child.round),
                ("child_parent_id", child.parent_id),
                ("child_justify_block_id", child.justify.block_id),
                ("child_justify_round", child.justify.round),
                ("child_justify_signers", _signers(child.justify)),
                ("child_justify_signing_root", _root(h1)),
                ("qc_block_id", cert.proof.qc.block_id),
                ("qc_round", cert.proof.qc.round),
                ("qc_signers", _signers(cert.proof.qc)),
                ("qc_signing_root", _root(child)),
                ("quorum", "3 of total power 4 (floor(2 * 4 / 3) + 1)"),
                ("validator_set", compute_validator_set_fingerprint(biz.genesis.validators)),
            ],
        ),
        "XC_CLIENT_UPDATE": example(
            "xc_client_update",
            [
                ("client_update", ex["update_b"].encode()),
                ("version", "gmchain-client-update/1"),
                ("chain_id", BUSINESS),
                ("epoch_changes", "[]"),
                ("certificate", encode(certificate_to_value(cert))),
                *block_lines(reg, 1, "regulator1"),
                *_writes(reg, 1, "xclient"),
                ("h_key", h_key),
                ("h_value", reg.state.get_state("xclient", h_key)),
                ("h_value_text", value_text(h_key, reg.state.get_state("xclient", h_key))),
            ],
        ),
        "XC_TX_PROOF": example(
            "xc_tx_proof",
            [
                *block_lines(biz, 1, "business1"),
                ("tx_proof", encode(proof.to_value())),
                ("height", proof.height),
                ("index", proof.index),
                ("tx", proof.tx),
                ("tx_id", tx.tx_id),
                ("tx_count", h1.tx_count),
                *_path_steps(
                    "tx", leaf_hash(tx.tx_id), proof.index, h1.tx_count, proof.tx_path, h1.tx_root
                ),
                ("tx_root", h1.tx_root),
                ("receipt", proof.receipt),
                *_path_steps(
                    "receipt",
                    leaf_hash(proof.receipt),
                    proof.index,
                    h1.tx_count,
                    proof.receipt_path,
                    h1.receipt_root,
                ),
                ("receipt_root", h1.receipt_root),
                ("receipt_tx_id", receipt.tx_id),
                ("receipt_status", int(receipt.status)),
                ("tx_contract", tx.body.contract),
                ("tx_method", tx.body.method),
                ("tx_chain_id", tx.body.chain_id),
                *_events("receipt_", receipt),
            ],
        ),
        "XC_PACKET": example(
            "xc_packet",
            [
                ("packet", packet.encode()),
                ("version", "gmchain-packet/1"),
                ("source_chain_id", packet.source_chain_id),
                ("dest_chain_id", packet.dest_chain_id),
                ("seq", packet.seq),
                ("tx_proof", encode(proof.to_value())),
                *((f"tx_arg{i}", show(a)) for i, a in enumerate(tx.body.args)),
                ("header_key", h_key),
                *_events("receipt_", receipt),
                ("p_key", p_key),
                ("p_value", p_value),
                ("p_value_text", value_text(p_key, p_value)),
            ],
        ),
        "XC_ACK": example(
            "xc_ack",
            [
                ("ack", ack.encode()),
                ("version", "gmchain-ack/1"),
                ("source_chain_id", ack.source_chain_id),
                ("dest_chain_id", ack.dest_chain_id),
                ("height", ack.proof.height),
                ("index", ack.proof.index),
                ("tx_id", atx.tx_id),
                ("tx_contract", atx.body.contract),
                ("tx_method", atx.body.method),
                ("receipt_status", int(areceipt.status)),
                *_events("receipt_", areceipt),
                ("outbox_key", outbox_key(2)),
                ("outbox_value", biz.state.get_state("evidence", outbox_key(2))),
                (
                    "outbox_value_text",
                    value_text(b"", biz.state.get_state("evidence", outbox_key(2))),
                ),
                ("client_update", ex["update_r"].encode()),
                *block_lines(biz, 3, "business3"),
                *_writes(biz, 3, "xclient"),
            ],
        ),
        "XC_EPOCH_CHANGE": example(
            "xc_epoch_change",
            [
                ("epoch_change", encode(change.to_value())),
                ("epoch", change.epoch),
                ("certificate", encode(certificate_to_value(change.certificate))),
                ("ending_height", ending.height),
                ("ending_block_id", ending.block_id),
                ("ending_next_validators_hash", ending.next_validators_hash),
                *(
                    (f"next{i}", f"pubkey={v.pubkey.hex()} power={v.power} org={v.org}")
                    for i, v in enumerate(change.next_validators)
                ),
                ("next_fingerprint", compute_validator_set_fingerprint(change.next_validators)),
                (
                    "next_commitment_input",
                    _commitment_input(change.epoch + 1, change.next_validators),
                ),
                (
                    "next_commitment",
                    next_validators_commitment(change.epoch + 1, change.next_validators),
                ),
                ("client_update", ex["update_e"].encode()),
                *block_lines(reg, 3, "regulator3"),
                *_writes(reg, 3, "xclient"),
            ],
        ),
        "XC_MISBEHAVIOUR": example(
            "xc_misbehaviour",
            [
                ("misbehaviour", misb.encode()),
                ("version", "gmchain-misbehaviour/1"),
                ("chain_id", misb.chain_id),
                ("first_block_id", misb.first.headers[0].block_id),
                ("second_block_id", fork.headers[0].block_id),
                ("height", fork.headers[0].height),
                ("first_signers", _hexlist(sorted(_both(misb.first)))),
                ("second_signers", _hexlist(sorted(_both(fork)))),
                ("signers_in_both", _hexlist(sorted(_both(misb.first) & _both(fork)))),
                *block_lines(reg, 4, "regulator4"),
                *_writes(reg, 4, "xclient"),
            ],
        ),
    }


def _commitment_input(epoch: int, validators: Any) -> bytes:
    """The SM3 input of next_validators_commitment (section 3)."""
    from gmchain.ledger.wire import HASH_PREFIXES

    data = HASH_PREFIXES["next-validators"] + epoch.to_bytes(8, "big")
    data += compute_validator_set_fingerprint(validators)
    assert sm3_hash(data) == next_validators_commitment(epoch, validators)
    return data


def _root(h: lt.BlockHeader) -> bytes:
    """The vote signing root a QC of `h` signs (section 4)."""
    return lt.QuorumCert.signing_root(h.chain_id, h.epoch, h.block_id, h.round, h.height)


def header_qc(
    h: lt.BlockHeader, signers: Iterable[lt.NodeId], sign: Callable[[lt.NodeId, bytes], bytes]
) -> lt.QuorumCert:
    """A QC of `h` signed by `signers` (node-id order), `sign(node, root)` giving each one's
    signature of the vote root; also gen_protocol_doc.py's."""
    root = _root(h)
    return lt.QuorumCert(
        epoch=h.epoch,
        block_id=h.block_id,
        round=h.round,
        height=h.height,
        signatures=tuple((n, sign(n, root)) for n in signers),
    )


def _k(prefix: bytes, chain: str, rest: bytes) -> bytes:
    return prefix + chain.encode() + b"\x00" + rest


def _both(cert: Certificate) -> set[bytes]:
    """The node ids of both QCs of a certificate's CommitProof (the child's justify, its QC)."""
    p = cert.proof
    return {bytes(n) for n, _ in p.qc.signatures} | {
        bytes(n) for n, _ in p.header.justify.signatures
    }

"""Two real chains in memory for the xclient tests: a business chain and a regulator chain.

Rules this helper keeps:
1. Both chains are `chain.core.Chain` over a MemStore, driven by tests/epoch_chain.py's `Rig`:
   blocks are built, executed and committed by the chain library, every QC is signed with real
   SM2 validator keys, epoch changes come from real governance transactions.
2. Both run the node's contracts (`crosschain.node_registry`: xclient included, and the
   evidence contract's outbox).
3. Registrations, unfreezing and the relay rule are real governance decisions (the genesis
   committee, org-a, whose admin proposes and votes in one block).
4. Certificates, tx proofs, packets and acks are built from the stores exactly as a relayer
   would from the RPC's bundles: nothing here decides a test's outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gmchain.chain.epochs import EpochRecord
from gmchain.chain.genesis import make_genesis_block
from gmchain.chain.lightclient import Certificate
from gmchain.consensus.messages import CommitProof
from gmchain.contracts.governance import propose_args, vote_args
from gmchain.contracts.xc_layout import PACKET_QUEUED
from gmchain.crosschain import node_registry
from gmchain.crosschain.packets import Ack, ClientUpdate, EpochChange, Packet, TxProof
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.codec import Value
from gmchain.ledger.memstore import MemStore
from gmchain.ledger.merkle import leaf_hash, root_and_inclusion_proof
from gmchain.ledger.types import (
    Block,
    BlockHeader,
    Genesis,
    GenesisValidator,
    Receipt,
    ReceiptStatus,
    SignedTx,
)
from tests.epoch_chain import Rig, make_rig
from tests.node_helpers import T0, TestNet, evidence_args, make_net, sign_tx

REGULATOR = "regulator-chain"


@dataclass
class Side:
    """One chain of the pair."""

    rig: Rig
    store: MemStore

    @property
    def chain_id(self) -> str:
        return self.rig.genesis.chain_id

    @property
    def admin(self) -> PrivateKey:
        return self.rig.net.accounts[0]

    def run_txs(self, txs: list[SignedTx]) -> list[Receipt]:
        """The txs in one block, committed (two more blocks: the 2-chain rule)."""
        self.rig.run(2, txs={0: txs})
        out = []
        for tx in txs:
            raw = self.store.get_receipt(tx.tx_id)
            assert raw is not None, "not committed"
            out.append(Receipt.decode(raw))
        return out

    def call(self, contract: str, method: str, args: list[Value]) -> Receipt:
        tx = sign_tx(
            self.admin,
            chain_id=self.chain_id,
            expiry=self.rig.chain.head.height + 50,
            contract=contract,
            method=method,
            args=args,
        )
        return self.run_txs([tx])[0]

    def evidence_txs(self, n: int, *, flow: str | None = None, tag: str = "r") -> list[SignedTx]:
        """`n` evidence.submit txs: records tag-0.. (one flow if `flow`, chained in order)."""
        out, prev = [], None
        head = self.rig.chain.head.height
        for i in range(n):
            rid = f"{tag}-{i}"
            args = evidence_args(rid, flow, data=rid.encode(), prev=prev if flow else None)
            out.append(sign_tx(self.admin, chain_id=self.chain_id, expiry=head + 50, args=args))
            prev = rid
        return out

    def govern(self, kind: str, values: list[Value]) -> None:
        """Rule 3: the committee decides `kind(values)` (proposal and vote in one block)."""
        self.rig.proposals += 1
        expiry = self.rig.chain.head.height + 50
        txs = [
            sign_tx(
                self.admin,
                chain_id=self.chain_id,
                expiry=expiry,
                contract="governance",
                method=m,
                args=args,
            )
            for m, args in (
                ("propose", propose_args(kind, values, expiry)),
                ("vote", vote_args(self.rig.proposals, True)),
            )
        ]
        receipts = self.run_txs(txs)
        assert all(r.status == ReceiptStatus.OK for r in receipts), [r.error for r in receipts]

    def register(self, other: Side) -> None:
        g = other.rig.genesis
        block0 = make_genesis_block(g)[0].header.block_id
        sets: list[Value] = [[v.pubkey, v.power, v.org] for v in g.validators]
        self.govern("register_chain", [other.chain_id, g.compute_hash(), block0, 0, sets])

    def unfreeze(self, chain: str, epoch: int, validators: tuple[GenesisValidator, ...]) -> None:
        sets: list[Value] = [[v.pubkey, v.power, v.org] for v in validators]
        self.govern("unfreeze_chain", [chain, epoch, sets, "investigated"])

    def relay_to(self, dest: str) -> None:
        self.govern("set_relay_rule", [dest, []])

    # -- what a relayer builds -------------------------------------------------------------------

    def header(self, height: int) -> BlockHeader:
        raw = self.store.get_header_by_height(height)
        assert raw is not None
        return BlockHeader.decode(raw)

    def certificate(self, height: int) -> Certificate:
        """The headers from `height` to the tip a stored CommitProof (or epoch record)
        certifies, as chain/proofs.py assembles them."""
        ends = {}
        for n in range(1, self.store.last_epoch() + 1):
            rec = EpochRecord.decode(self.store.get_epoch_record(n) or b"")
            ends[rec.ending.height] = rec
        head = self.store.head_height() or 0
        for h in range(height, head + 1):
            raw = self.store.get_commit_proof(h)
            if raw:
                proof = CommitProof.decode(raw)
                tip = proof.header.height - 1
                if tip >= height:
                    hs = tuple(self.header(x) for x in range(height, tip + 1))
                    return Certificate(headers=hs, proof=proof)
            if h in ends:
                rec = ends[h]
                hs = tuple(self.header(x) for x in range(height, h + 1))
                return Certificate(headers=hs + rec.headers[1:], proof=rec.proof)
        raise AssertionError(f"no certificate covers {height}")

    def epoch_changes(self, first: int, last: int) -> tuple[EpochChange, ...]:
        out = []
        for n in range(first + 1, last + 1):
            rec = EpochRecord.decode(self.store.get_epoch_record(n) or b"")
            out.append(
                EpochChange(  # xclient_update.py rule U10: from E's parent
                    epoch=n - 1,
                    certificate=Certificate(
                        headers=(self.header(rec.headers[0].height - 1), *rec.headers),
                        proof=rec.proof,
                    ),
                    next_validators=rec.config.validators,
                )
            )
        return tuple(out)

    def update(self, height: int | None, *, changes: tuple[EpochChange, ...] = ()) -> bytes:
        cert = None if height is None else self.certificate(height)
        return ClientUpdate(
            chain_id=self.chain_id, epoch_changes=changes, certificate=cert
        ).encode()

    def tx_proof(self, tx_id: bytes) -> TxProof:
        loc = self.store.get_tx_location(tx_id)
        assert loc is not None
        h, i = loc
        block = Block.decode(self.store.get_block_by_height(h) or b"")
        ids = [t.tx_id for t in block.txs]
        receipts = [self.store.get_receipt(t) or b"" for t in ids]
        _, tx_path = root_and_inclusion_proof([leaf_hash(t) for t in ids], i)
        _, r_path = root_and_inclusion_proof([leaf_hash(r) for r in receipts], i)
        return TxProof(
            height=h,
            index=i,
            tx=block.txs[i].encode(),
            tx_path=tuple(tx_path),
            receipt=receipts[i],
            receipt_path=tuple(r_path),
        )

    def packet(self, tx_id: bytes, dest: str) -> Packet:
        proof = self.tx_proof(tx_id)
        receipt = Receipt.decode(proof.receipt)
        seq = next(dict(e.fields)["seq"] for e in receipt.events if e.name == PACKET_QUEUED)
        return Packet(source_chain_id=self.chain_id, dest_chain_id=dest, seq=seq, proof=proof)

    def ack(self, tx_id: bytes, dest: str) -> Ack:
        return Ack(source_chain_id=self.chain_id, dest_chain_id=dest, proof=self.tx_proof(tx_id))


def regulator_net() -> TestNet:
    """Like tests/node_helpers.make_net, with the regulator's own chain id."""
    node_key = PrivateKey.generate()
    accounts = [PrivateKey.generate() for _ in range(2)]
    genesis = Genesis(
        chain_id=REGULATOR,
        timestamp_ms=T0,
        validators=(GenesisValidator(pubkey=node_key.public_key.to_bytes(), power=1, org="org-a"),),
        replay_window=200,
        accounts=tuple((k.public_key.to_bytes(), "org-a", "admin") for k in accounts),
    )
    return TestNet(genesis, node_key, accounts, PrivateKey.generate())


def make_pair(n_keys: int = 3, *, register_business: bool = True) -> tuple[Side, Side]:
    """(business, regulator): each registers the other; the business chain relays to the
    regulator (rules 2, 3). The business chain has `n_keys` validator keys (one in genesis).
    `register_business=False` leaves the business chain unregistered on the regulator (a test
    registers it later, e.g. at a later epoch)."""
    bs, rs = MemStore(), MemStore()
    net = make_net(replay_window=200)
    biz = Side(make_rig(bs, n_keys=n_keys, net=net, registry=node_registry()), bs)
    reg = Side(make_rig(rs, net=regulator_net(), registry=node_registry()), rs)
    if register_business:
        reg.register(biz)
    biz.register(reg)
    biz.relay_to(REGULATOR)
    return biz, reg


def packets_arg(packets: list[Packet]) -> list[Value]:
    return [[p.encode()] for p in packets]


def events(receipt: Receipt, name: str) -> list[dict[str, Value]]:
    return [dict(e.fields) for e in receipt.events if e.name == name]


class _Reader:
    """A contract's committed state, read-only (as gm_call reads it)."""

    def __init__(self, store: MemStore, namespace: str) -> None:
        self.store, self.namespace = store, namespace

    def get(self, key: bytes) -> bytes | None:
        return self.store.get_state(self.namespace, key)

    def scan(self, prefix: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        out = []
        for kv in self.store.iter_state(self.namespace, prefix):
            if len(out) >= limit:
                break
            out.append(kv)
        return out


def query(side: Side, method: str, args: list[Value]) -> Any:
    """xclient.<method>(args) on `side`'s committed state, as a dict for records."""
    value = node_registry().query(lambda ns: _Reader(side.store, ns), "xclient", method, args)
    return as_dicts(value)


def as_dicts(value: Any) -> Any:
    """[[name, value], ...] records -> dicts (recursively), lists of records -> lists of dicts."""
    if (
        isinstance(value, list)
        and value
        and all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in value)
    ):
        return {k: as_dicts(v) for k, v in value}
    if isinstance(value, list):
        return [as_dicts(v) for v in value]
    return value

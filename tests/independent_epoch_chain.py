"""A small signed chain with two epoch changes, built from the documents alone (with keys this
module generates), so tests/test_independent_epoch.py can tamper where the docs' worked example
has no keys: re-sign a certificate with the old set under the new epoch's number, reorder
entries of a two-entry proof, prove a transaction of an intermediate epoch.

Rules (protocol.md §6, §9; docs/governance.md E4):
1. Epoch 0 = v0..v3, epoch 1 = v0..v2 (v3 removed), epoch 2 = v0..v2 + v4 (v4 added).
2. A header's `next_validators_hash` commits to its own epoch and set, an epoch-ending block
   `E` and its child to the next epoch and the next set (§3); `E` is committed
   directly by its child (same epoch, round + 1, justify QC(E)); the next epoch's first block
   has parent `E`, the new epoch and justify QC(E) of the old epoch.
3. One transaction, in epoch 1's block at height 7; the accumulator holds only it (size 1).
4. State hashes are a fixed dummy: no verifier step reads a non-genesis state hash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.independent_client import (
    KeyPair,
    build_tx_body,
    compute_tx_id,
    encode,
    generate_keypair,
    leaf_hash,
    sign,
    sm3,
)
from tests.independent_epoch import (
    Genesis,
    _root,
    fingerprint,
    load_genesis,
    next_validators_commitment,
)

CHAIN_ID = "indep-epochs"
_DUMMY_STATE = sm3(b"dummy state")


def hx(b: bytes) -> str:
    return "0x" + b.hex()


@dataclass
class Chain:
    keys: list[KeyPair]
    genesis_doc: dict[str, Any]
    genesis: Genesis
    sets: dict[int, list[KeyPair]]
    headers: dict[int, list[Any]] = field(default_factory=dict)  # height -> header array
    ids: dict[int, bytes] = field(default_factory=dict)
    epoch_certs: dict[int, dict[str, Any]] = field(default_factory=dict)
    tx: dict[str, Any] = field(default_factory=dict)

    def qc(self, header: list[Any], signers: list[KeyPair], epoch: int | None = None) -> list[Any]:
        """A QC for `header`, signed by `signers` under `epoch` (default: the header's)."""
        e = header[2] if epoch is None else epoch
        bid = _root("header", header)
        root = _root("vote", [CHAIN_ID, e, bid, header[4], header[3]])
        sigs = sorted((k.address, sign(k, root)) for k in signers)
        return [8, e, bid, header[4], header[3], [list(s) for s in sigs]]

    def set_json(self, epoch: int) -> list[dict[str, Any]]:
        return [{"pubkey": hx(k.public), "power": 1, "org": f"org{self.keys.index(k)}"}
                for k in self.sets[epoch]]  # fmt: skip


def _header(parent: list[Any], *, epoch: int, rnd: int, next_epoch: int, next_set: list[KeyPair],
            justify: list[Any],
            tx_root: bytes | None = None, receipt_root: bytes | None = None, tx_count: int = 0,
            acc: tuple[int, bytes] | None = None) -> list[Any]:  # fmt: skip
    empty = sm3(b"")
    acc_size, acc_root = acc if acc else (parent[12], parent[11])
    return [5, CHAIN_ID, epoch, parent[3] + 1, rnd, _root("header", parent), parent[6] + 1000,
            b"\x01" * 20, tx_root or empty, tx_count, receipt_root or empty, acc_root, acc_size,
            _DUMMY_STATE,
            next_validators_commitment(next_epoch, fingerprint([(k.public, 1) for k in next_set])),
            justify]  # fmt: skip


def build() -> Chain:
    keys = [generate_keypair() for _ in range(5)]
    admin = generate_keypair()
    doc = {
        "chain_id": CHAIN_ID,
        "timestamp_ms": 1767225600000,
        "validators": [
            {"pubkey": k.public.hex(), "power": 1, "org": f"org{i}"} for i, k in enumerate(keys[:4])
        ],
        "accounts": [{"pubkey": admin.public.hex(), "org": "org0", "role": "admin"}],
    }
    genesis = load_genesis(doc)
    sets = {0: keys[:4], 1: keys[:3], 2: [*keys[:3], keys[4]]}
    c = Chain(keys=keys, genesis_doc=doc, genesis=genesis, sets=sets)
    # Rebuild the genesis header from the computed id: only its id and height are used below.
    g_header = [5, CHAIN_ID, 0, 0, 0, genesis.genesis_hash, doc["timestamp_ms"], b"", b"", 0, b"",
                sm3(b""), 0, b"", b"", []]  # fmt: skip
    justify = [8, 0, genesis.block_id, 0, 0, []]
    parent, rnd = g_header, 0
    parent_id: bytes = genesis.block_id

    def add(h: list[Any]) -> list[Any]:
        nonlocal parent, parent_id
        c.headers[h[3]] = h
        c.ids[h[3]] = _root("header", h)
        parent, parent_id = h, c.ids[h[3]]
        return h

    def child_of(
        prev: list[Any], epoch: int, next_set: list[KeyPair], j: list[Any], **kw: Any
    ) -> list[Any]:
        nonlocal rnd
        rnd += 1
        next_epoch = epoch if next_set is sets[epoch] else epoch + 1
        h = _header(prev, epoch=epoch, rnd=rnd, next_epoch=next_epoch, next_set=next_set,
                    justify=j, **kw)  # fmt: skip
        if prev is g_header:
            h[5] = parent_id
        return h

    # Epoch 0: heights 1, 2; E0 at 3 (names set 1); its child at 4 commits it (then dropped).
    h = add(child_of(parent, 0, sets[0], justify))
    h = add(child_of(h, 0, sets[0], c.qc(h, sets[0])))
    e0 = add(child_of(h, 0, sets[1], c.qc(h, sets[0])))
    e0_child = child_of(e0, 0, sets[1], c.qc(e0, sets[0]))
    c.epoch_certs[0] = {"headers": [hx(encode(e0))],
                        "proof": hx(encode([24, e0_child, c.qc(e0_child, sets[0])]))}  # fmt: skip
    # Epoch 1: first block at 4 (parent E0, justify QC(E0) of epoch 0), then 5, 6, the tx at 7.
    rnd += 1  # the dropped child's round
    h = add(child_of(e0, 1, sets[1], c.qc(e0, sets[0])))
    h = add(child_of(h, 1, sets[1], c.qc(h, sets[1])))
    h = add(child_of(h, 1, sets[1], c.qc(h, sets[1])))
    body = build_tx_body(chain_id=CHAIN_ID, sender=admin.public, nonce=7, expiry=50,
                         contract="evidence", method="submit", args=["rec"])  # fmt: skip
    tx_id = compute_tx_id(body)
    receipt = encode([4, tx_id, 0, None, [], ""])
    tx_block = add(child_of(h, 1, sets[1], c.qc(h, sets[1]), tx_root=leaf_hash(tx_id),
                            receipt_root=leaf_hash(receipt), tx_count=1,
                            acc=(1, leaf_hash(tx_id))))  # fmt: skip
    # E1 at 8 (names set 2), committed by its child 9.
    h8 = add(child_of(tx_block, 1, sets[2], c.qc(tx_block, sets[1])))
    h9 = child_of(h8, 1, sets[2], c.qc(h8, sets[1]))
    c.epoch_certs[1] = {"headers": [hx(encode(h8))],
                        "proof": hx(encode([24, h9, c.qc(h9, sets[1])]))}  # fmt: skip
    # The tx's own certificate: block 7 with proof [24, block 8, QC(block 8)].
    rnd += 1
    # Epoch 2: first block at 9 (parent E1, justify QC(E1)), 10, and 11 certifying 10.
    h = add(child_of(h8, 2, sets[2], c.qc(h8, sets[1])))
    h10 = add(child_of(h, 2, sets[2], c.qc(h, sets[2])))
    h11 = child_of(h10, 2, sets[2], c.qc(h10, sets[2]))
    c.tx = {
        "tx_id": tx_id,
        "receipt": receipt,
        "commit": {"headers": [hx(encode(tx_block))],
                   "proof": hx(encode([24, h8, c.qc(h8, sets[1])]))},
        "anchor10_commit": {"headers": [hx(encode(h10))],
                            "proof": hx(encode([24, h11, c.qc(h11, sets[2])]))},
    }  # fmt: skip
    return c


def epoch_proof(c: Chain, to_epoch: int = 2) -> dict[str, Any]:
    return {
        "from_epoch": 0,
        "to_epoch": to_epoch,
        "entries": [
            {"epoch": e, **c.epoch_certs[e], "next_validators": c.set_json(e + 1)}
            for e in range(to_epoch)
        ],
    }


def bundle(c: Chain, *, anchor_height: int = 7) -> dict[str, Any]:
    """The tx of block 7 (epoch 1) against the anchor at `anchor_height` (7, or 10 in epoch 2)."""
    tx_block = c.headers[7]
    anchor = c.headers[anchor_height]
    return {
        "version": 2,
        "tx_id": hx(c.tx["tx_id"]),
        "height": 7,
        "index_in_block": 0,
        "block_tx_root": hx(tx_block[8]),
        "block_inclusion_proof": [],
        "acc_index": 0,
        "acc_size": 1,
        "acc_root": hx(tx_block[11]),
        "acc_inclusion_proof": [],
        "header": hx(encode(tx_block)),
        "receipt": hx(c.tx["receipt"]),
        "receipt_inclusion_proof": [],
        "anchor_header": hx(encode(anchor)),
        "commit": c.tx["commit"],
        "anchor_commit": None if anchor_height == 7 else c.tx["anchor10_commit"],
        "epoch_proof": epoch_proof(c, max(tx_block[2], anchor[2])),
    }

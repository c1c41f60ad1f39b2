"""Epoch-change proofs and proof bundles across epochs, verified from the documents alone.

Acceptance check for issue 12: "an implementation written only from docs/protocol.md verifies an
epoch-change proof and a proof bundle that spans an epoch change". Like tests/independent_client.py
(whose codec, SM3, SM2 verification and Merkle primitives it reuses) it imports nothing of
gmchain, so a bug shared with the node can only come from the documents.

Rules it keeps, each with the section it comes from:
1. The validator-set fingerprint (protocol.md §3): SM3("GMCHAIN/VALIDATOR-SET/v1" || pk || u64be(
   power) ...) over the validators ascending by public key, no 0x00 after the prefix. A header's
   `next_validators_hash` is the next-validators commitment (§3): SM3("GMCHAIN/NEXT-VALIDATORS/v1"
   || u64be(epoch of the next block) || fingerprint), no 0x00 after the prefix either.
2. A quorum of a set of total power T is Q = floor(2T / 3) + 1 (§6, §9 "Commit certificates").
3. A certificate (§9 "Commit certificates", steps 1-9) is checked against ONE epoch's set and
   number: every header, the proof's child and both QCs name that epoch.
4. An epoch-change proof (§9 "Epoch-change proofs", steps 1-3) is checked from a trusted
   (chain id, set, epoch); entry e's first header must commit to (e + 1, next_validators); the
   verifier keeps the set of EVERY epoch it reaches (a bundle may need an intermediate one: the
   tx's epoch below the anchor's).
5. A bundle (§9 "The proof bundle (version 2)", steps 1-7) checks each certificate against the set
   of the epoch its first header names; the genesis binding (step 7) also covers the checked
   epoch-proof entries' headers.
6. The genesis block id is computed from the genesis document (§6 "The genesis document",
   "Genesis writes", header fields of the height-0 block), never taken from a node.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.independent_client import DOMAIN as _CLIENT_DOMAIN
from tests.independent_client import (
    Digest,
    EncodingError,
    Header,
    ProofError,
    QuorumCert,
    _header_from_array,
    _hex,
    _int,
    _is_on_curve,
    _need,
    _path,
    _qc_from_array,
    decode,
    decode_header,
    encode,
    leaf_hash,
    sm3,
    verify,
    verify_inclusion,
)

# protocol.md §3: the domains this module adds to the client's ("state" for the genesis writes).
DOMAIN = {**_CLIENT_DOMAIN, "state": b"GMCHAIN/STATE/v1"}
VALIDATOR_SET_PREFIX = b"GMCHAIN/VALIDATOR-SET/v1"  # §3, a hash prefix: no 0x00 after it
NEXT_VALIDATORS_PREFIX = b"GMCHAIN/NEXT-VALIDATORS/v1"  # §3, a hash prefix: no 0x00 after it
EMPTY_ROOT = sm3(b"")  # §7 MTH({})
_TAG_HEADER, _TAG_QC, _TAG_RECEIPT, _TAG_COMMIT_PROOF = 5, 8, 4, 24
_TAG_GENESIS_VALIDATOR, _TAG_EPOCH_CONFIG = 12, 14
_NESTING_COMMIT_PROOF, _NESTING_RECEIPT = 5, 19  # §2 "Nesting depth" table
# docs/governance.md E1: parameters and defaults (replay_window: the genesis one).
_PARAM_DEFAULTS = {
    "block_max_bytes": 8388608,
    "block_max_txs": 5000,
    "round_timeout_ms": 1000,
    "tx_max_bytes": 65536,
}


def _root(kind: str, value: Any) -> Digest:
    return sm3(DOMAIN[kind] + b"\x00" + encode(value))


# ---------------------------------------------------------------- validator sets (§3, §6)


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidatorSet:
    """One epoch's voting set: node id (SM3(pk)[:20]) -> (public key, power)."""

    epoch: int
    members: dict[bytes, tuple[bytes, int]]

    @property
    def total(self) -> int:
        return sum(power for _, power in self.members.values())

    @property
    def quorum(self) -> int:
        return 2 * self.total // 3 + 1

    @property
    def fingerprint(self) -> Digest:
        return fingerprint([(pk, power) for pk, power in self.members.values()])


def fingerprint(validators: Sequence[tuple[bytes, int]]) -> Digest:
    """Rule 1: ascending by public key, each key then its power as u64 big-endian."""
    data = VALIDATOR_SET_PREFIX
    for pk, power in sorted(validators):
        data += pk + power.to_bytes(8, "big")
    return sm3(data)


def next_validators_commitment(epoch: int, validator_set: Digest) -> Digest:
    """Rule 1 (§3 "The next-validators commitment"): `epoch` is the next block's, `validator_set`
    the 32-byte fingerprint of the set that certifies it."""
    _need(len(validator_set) == 32, "a validator-set fingerprint is 32 bytes")
    return sm3(NEXT_VALIDATORS_PREFIX + epoch.to_bytes(8, "big") + validator_set)


def set_from_json(items: Any, epoch: int, what: str) -> ValidatorSet:
    """`[{"pubkey": hex, "power": int, "org": str}, ...]` (the org is for reading only)."""
    _need(isinstance(items, list) and len(items) > 0, f"{what}: not a non-empty list")
    members: dict[bytes, tuple[bytes, int]] = {}
    for item in items:
        _need(isinstance(item, dict), f"{what}: a validator is not an object")
        pk = _hex(item["pubkey"], f"{what} pubkey", 65)
        power = _int(item["power"], f"{what} power")
        _need(_is_on_curve(pk), f"{what}: a key is not an SM2 point")
        _need(1 <= power <= 2**32, f"{what}: power outside [1, 2^32]")
        node_id = sm3(pk)[:20]
        _need(node_id not in members, f"{what}: a key twice")
        members[node_id] = (pk, power)
    return ValidatorSet(epoch=epoch, members=members)


# ---------------------------------------------------------------- genesis (§6)


@dataclass(frozen=True, slots=True, kw_only=True)
class Genesis:
    chain_id: str
    genesis_hash: Digest  # block 0's parent_id
    block_id: Digest  # the genesis block's id, computed (rule 6)
    state_hash: Digest
    validators: ValidatorSet  # epoch 0


def genesis_struct(doc: dict[str, Any]) -> list[Any]:
    """genesis.json -> the Genesis struct (tag 13), with §6's defaults; hex without 0x."""

    def raw(h: str) -> bytes:
        return bytes.fromhex(h.removeprefix("0x"))

    return [
        13,
        doc["chain_id"],
        doc["timestamp_ms"],
        [
            [_TAG_GENESIS_VALIDATOR, raw(v["pubkey"]), v["power"], v["org"]]
            for v in doc["validators"]
        ],
        [raw(o) for o in doc.get("observers", [])],
        doc.get("replay_window", 1000),
        [[raw(a["pubkey"]), a["org"], a["role"]] for a in doc.get("accounts", [])],
        [[c["org"], c["weight"]] for c in doc.get("committee", [])],
        list(doc.get("gov_thresholds", [2, 3, 2, 3])),
    ]


def genesis_writes(g: list[Any]) -> list[list[Any]]:
    """§6 "Genesis writes": membership's account keys and governance's epoch-0 state, sorted by
    namespace then key."""
    _, _, _, validators, observers, window, accounts, committee, thresholds = g
    w: dict[tuple[str, bytes], bytes] = {}
    for pk, org, role in accounts:
        address = sm3(pk)[:20]
        w[("membership", b"a/" + address)] = encode([pk, org, role])
        w[("membership", b"o/" + org.encode() + b"\x00" + address)] = b"\x01"
        if role == "regulator":
            w[("membership", b"g/" + org.encode())] = b"\x01"
    by_node_id = sorted(validators, key=lambda v: sm3(v[1])[:20])
    params = sorted({**_PARAM_DEFAULTS, "replay_window": window}.items())
    config = [_TAG_EPOCH_CONFIG, 0, by_node_id, sorted(observers), [list(p) for p in params]]
    w[("governance", b"ep/" + (0).to_bytes(8, "big"))] = encode(config)
    w[("governance", b"ep")] = encode([0, 0])
    w[("governance", b"t")] = encode(thresholds)
    w[("governance", b"n")] = encode(1)
    seats = committee or [[org, 1] for org in sorted({v[3] for v in validators})]
    for org, weight in seats:
        w[("governance", b"c/" + org.encode())] = encode(weight)
    return [
        [ns, key, value]
        for (ns, key), value in sorted(w.items(), key=lambda kv: (kv[0][0].encode(), kv[0][1]))
    ]


def genesis_header(g: list[Any], genesis_hash: bytes) -> list[Any]:
    """§6: the height-0 header built from the genesis alone."""
    state = _root("state", [b"\x00" * 32, genesis_writes(g)])
    vset = next_validators_commitment(0, fingerprint([(v[1], v[2]) for v in g[3]]))
    justify = [_TAG_QC, 0, b"\x00" * 32, 0, 0, []]
    return [_TAG_HEADER, g[1], 0, 0, 0, genesis_hash, g[2], b"\x00" * 20, EMPTY_ROOT, 0,
            EMPTY_ROOT, EMPTY_ROOT, 0, state, vset, justify]  # fmt: skip


def load_genesis(source: str | Path | dict[str, Any]) -> Genesis:
    doc = source if isinstance(source, dict) else json.loads(Path(source).read_text())
    g = genesis_struct(doc)
    ghash = _root("genesis", g)
    if "genesis_hash" in doc:
        _need(bytes.fromhex(doc["genesis_hash"].removeprefix("0x")) == ghash, "genesis_hash")
    header = genesis_header(g, ghash)
    members: dict[bytes, tuple[bytes, int]] = {}
    for _, pk, power, _org in g[3]:
        _need(_is_on_curve(pk) and 1 <= power <= 2**32, "genesis: bad validator key or power")
        members[sm3(pk)[:20]] = (pk, power)
    return Genesis(
        chain_id=g[1],
        genesis_hash=ghash,
        block_id=_root("header", header),
        state_hash=header[13],
        validators=ValidatorSet(epoch=0, members=members),
    )


# ---------------------------------------------------------------- certificates (§6, §9)


def check_qc(qc: QuorumCert, chain_id: str, vset: ValidatorSet, what: str) -> None:
    """§6: epoch is the set's; signers of the set, ascending (the decoder checked), power >= Q,
    every signature over the vote root."""
    _need(qc.epoch == vset.epoch, f"{what}: epoch {qc.epoch}, not the set's {vset.epoch}")
    root = _root("vote", [chain_id, qc.epoch, qc.block_id, qc.round, qc.height])
    power = 0
    for node_id, sig in qc.signatures:
        _need(node_id in vset.members, f"{what}: signer {node_id.hex()} not in epoch {vset.epoch}")
        pk, weight = vset.members[node_id]
        _need(verify(pk, root, sig), f"{what}: signature of {node_id.hex()} does not verify")
        power += weight
    _need(power >= vset.quorum, f"{what}: power {power} below the quorum {vset.quorum}")


def check_certificate(
    cert: Any, chain_id: str, vset: ValidatorSet, what: str, first: Digest | None = None
) -> list[Header]:
    """§9 "Commit certificates" steps 1-9 against one epoch's set; returns the headers."""
    _need(isinstance(cert, dict), f"{what}: not an object")
    raw = cert["headers"]
    _need(isinstance(raw, list) and len(raw) > 0, f"{what}: no headers")  # step 1
    hs = [decode_header(_hex(h, f"{what} header")) for h in raw]
    _need(first is None or hs[0].block_id == first, f"{what}: first header is not the expected one")
    for parent, child in itertools.pairwise(hs):  # step 2
        _need(child.parent_id == parent.block_id, f"{what}: headers not linked by parent_id")
        _need(child.height == parent.height + 1, f"{what}: heights not consecutive")
    for h in hs:  # step 3
        _need(h.chain_id == chain_id, f"{what}: chain id")
        _need(h.epoch == vset.epoch, f"{what}: a header of epoch {h.epoch}, not {vset.epoch}")
    tip = hs[-1]
    try:  # step 4
        proof = decode(_hex(cert["proof"], f"{what} proof"), _NESTING_COMMIT_PROOF)
    except EncodingError as exc:
        raise ProofError(f"{what} proof: {exc}") from None
    _need(
        isinstance(proof, list) and len(proof) == 3 and proof[0] == _TAG_COMMIT_PROOF,
        f"{what} proof: not [24, child, qc]",
    )
    child = _header_from_array(proof[1])
    qc = _qc_from_array(proof[2])
    _need(child.parent_id == tip.block_id, f"{what} proof: child is not the tip's child")
    _need(child.justify.block_id == tip.block_id, f"{what} proof: child.justify is not the tip")
    _need(  # step 5
        (child.justify.round, child.justify.height) == (tip.round, tip.height),
        f"{what} proof: child.justify round/height differ from the tip's",
    )
    _need(child.chain_id == chain_id, f"{what} proof: child chain id")  # step 6
    _need(child.epoch == vset.epoch, f"{what} proof: child of epoch {child.epoch}")
    _need(qc.block_id == child.block_id, f"{what} proof: qc does not name the child")
    _need((qc.round, qc.height) == (child.round, child.height), f"{what} proof: qc round/height")
    _need(child.round == child.justify.round + 1, f"{what} proof: rounds not consecutive")  # 7
    check_qc(qc, chain_id, vset, f"{what} qc")  # step 8
    check_qc(child.justify, chain_id, vset, f"{what} child.justify")  # step 9
    return hs


# ---------------------------------------------------------------- epoch-change proofs (§9)


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochChain:
    """What a verified epoch-change proof establishes: the set of every epoch from the trusted
    one to `to_epoch`, and the headers of the entries that were checked (for step 7)."""

    sets: dict[int, ValidatorSet]
    checked_headers: list[Header]

    @property
    def last(self) -> ValidatorSet:
        return self.sets[max(self.sets)]


def verify_epoch_proof(proof: Any, chain_id: str, trusted: ValidatorSet) -> EpochChain:
    """§9 "Epoch-change proofs" steps 1-3, from (chain id, set, its epoch T)."""
    _need(isinstance(proof, dict), "epoch proof: not an object")
    try:
        return _verify_epoch_proof(proof, chain_id, trusted)
    except (KeyError, TypeError) as exc:
        raise ProofError(f"epoch proof: missing or malformed member {exc!r}") from None


def _verify_epoch_proof(p: dict[str, Any], chain_id: str, trusted: ValidatorSet) -> EpochChain:
    f = _int(p["from_epoch"], "from_epoch")
    t = _int(p["to_epoch"], "to_epoch")
    entries = p["entries"]
    _need(isinstance(entries, list), "entries: not a list")
    _need(f <= t, "from_epoch above to_epoch")  # step 1
    _need(len(entries) == t - f, f"{len(entries)} entries for epochs {f}..{t}")
    _need(f <= trusted.epoch, f"from_epoch {f} above the trusted epoch {trusted.epoch}")
    _need(t >= trusted.epoch, f"to_epoch {t} below the trusted epoch {trusted.epoch}")  # step 3
    current = trusted
    sets = {trusted.epoch: trusted}
    checked: list[Header] = []
    last_height = -1
    for i, entry in enumerate(entries):  # step 2
        e = f + i
        _need(isinstance(entry, dict), f"entry {i}: not an object")
        _need(_int(entry["epoch"], f"entry {i} epoch") == e, f"entry {i}: epoch is not {e}")
        if e < trusted.epoch:
            continue
        hs = check_certificate(entry, chain_id, current, f"entry {i} (epoch {e})")
        nxt = set_from_json(entry["next_validators"], e + 1, f"entry {i} next_validators")
        _need(
            hs[0].next_validators_hash == next_validators_commitment(e + 1, nxt.fingerprint),
            f"entry {i}: next_validators_hash of E is not the next-validators commitment to "
            f"epoch {e + 1} and next_validators",
        )
        _need(hs[0].height > last_height, f"entry {i}: E not above the previous entry's")
        last_height = hs[0].height
        checked.extend(hs)
        current = nxt
        sets[e + 1] = nxt
    return EpochChain(sets=sets, checked_headers=checked)


# ---------------------------------------------------------------- bundles (§9, version 2)


@dataclass(frozen=True, slots=True, kw_only=True)
class CertifiedTx:
    tx_id: Digest
    header: Header
    anchor: Header
    receipt: list[Any]
    epochs: EpochChain | None


def verify_bundle(
    bundle: Any, genesis: Genesis, *, trusted: ValidatorSet | None = None
) -> CertifiedTx:
    """§9 bundle steps 1-7. Trust: `genesis` (its chain id and block id), and the set `trusted`
    (default: the genesis set, epoch 0)."""
    _need(isinstance(bundle, dict), "bundle: not an object")
    try:
        return _verify_bundle(bundle, genesis, trusted or genesis.validators)
    except (KeyError, TypeError) as exc:
        raise ProofError(f"bundle: missing or malformed member {exc!r}") from None


def _verify_bundle(b: dict[str, Any], genesis: Genesis, trusted: ValidatorSet) -> CertifiedTx:
    c = genesis.chain_id
    _need(b.get("version") == 2, "version: not 2")  # step 1
    tx_id = _hex(b["tx_id"], "tx_id", 32)  # step 2: the ledger part
    header = decode_header(_hex(b["header"], "header"))
    _need(header.chain_id == c, "header: chain id")
    index = _int(b["index_in_block"], "index_in_block")
    _need(_int(b["height"], "height") == header.height, "height differs from the header's")
    _need(_hex(b["block_tx_root"], "block_tx_root", 32) == header.tx_root, "block_tx_root")
    _need(index < header.tx_count, "index_in_block >= tx_count")
    leaf = leaf_hash(tx_id)
    _need(
        verify_inclusion(
            leaf, index, header.tx_count, _path(b["block_inclusion_proof"], "block path"),
            header.tx_root,
        ),
        "block inclusion path does not reach tx_root",
    )  # fmt: skip
    acc_index = _int(b["acc_index"], "acc_index")
    acc_size = _int(b["acc_size"], "acc_size")
    acc_root = _hex(b["acc_root"], "acc_root", 32)
    _need(acc_index == header.acc_size - header.tx_count + index, "acc_index")
    _need(acc_size >= header.acc_size, "acc_size below the header's")
    _need(acc_size != header.acc_size or acc_root == header.acc_root, "acc_root != header's")
    _need(
        verify_inclusion(leaf, acc_index, acc_size, _path(b["acc_inclusion_proof"], "acc path"),
                         acc_root),
        "accumulator inclusion path does not reach acc_root",
    )  # fmt: skip
    receipt_raw = _hex(b["receipt"], "receipt")  # step 3
    try:
        receipt = decode(receipt_raw, _NESTING_RECEIPT)
    except EncodingError as exc:
        raise ProofError(f"receipt: {exc}") from None
    _need(
        isinstance(receipt, list) and len(receipt) == 6 and receipt[0] == _TAG_RECEIPT,
        "receipt: not a Receipt",
    )
    _need(receipt[1] == tx_id, "receipt: names another transaction")
    _need(
        verify_inclusion(
            leaf_hash(receipt_raw), index, header.tx_count,
            _path(b["receipt_inclusion_proof"], "receipt path"), header.receipt_root,
        ),
        "receipt inclusion path does not reach receipt_root",
    )  # fmt: skip
    anchor = decode_header(_hex(b["anchor_header"], "anchor_header"))  # step 4
    _need((anchor.acc_size, anchor.acc_root) == (acc_size, acc_root), "anchor: acc_size/root")
    _need(anchor.chain_id == header.chain_id, "anchor: chain id")
    _need(anchor.height >= header.height, "anchor below the tx's block")
    _need(
        anchor.height != header.height or anchor.block_id == header.block_id,
        "anchor at the tx's height but another block",
    )
    # Steps 5-6: each certificate against the set of its first header's epoch.
    epochs: EpochChain | None = None
    top = max(header.epoch, anchor.epoch)
    if b.get("epoch_proof") is not None:
        epochs = verify_epoch_proof(b["epoch_proof"], c, trusted)
    sets = epochs.sets if epochs else {trusted.epoch: trusted}

    def set_of(h: Header, what: str) -> ValidatorSet:
        _need(h.epoch >= trusted.epoch, f"{what}: epoch {h.epoch} below the trusted one")
        _need(h.epoch in sets, f"{what}: epoch {h.epoch} not reached (epoch proof to {max(sets)})")
        return sets[h.epoch]

    _need(top in sets, f"epoch {top} not reached: no or too short epoch_proof")
    commit = check_certificate(b["commit"], c, set_of(header, "commit"), "commit", header.block_id)
    headers = [header, anchor, *commit]
    if b.get("anchor_commit") is None:
        _need(
            anchor.block_id in [h.block_id for h in commit],
            "anchor_commit null but the anchor is not on commit",
        )
    else:
        headers += check_certificate(
            b["anchor_commit"], c, set_of(anchor, "anchor_commit"), "anchor_commit",
            anchor.block_id,
        )  # fmt: skip
    if epochs is not None:
        headers += epochs.checked_headers
    for h in headers:  # step 7
        if h.height == 0:
            _need(h.block_id == genesis.block_id, "a height-0 header is not the genesis block")
        if h.height == 1:
            _need(
                h.parent_id == genesis.block_id and h.justify.block_id == genesis.block_id,
                "a height-1 header does not descend from the genesis block",
            )
    return CertifiedTx(
        tx_id=Digest(tx_id), header=header, anchor=anchor, receipt=receipt, epochs=epochs
    )

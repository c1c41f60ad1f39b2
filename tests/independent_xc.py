"""A record relayed to a regulator chain, verified back to the business chain's genesis, from the
documents alone (issue 13 acceptance 3).

Written only from docs/crosschain.md, docs/protocol.md (sections 1-10, section 10 "Cross-chain
objects") and docs/rpc.md ("Cross-chain"). Like tests/independent_client.py and
tests/independent_epoch.py (whose codec, SM3, SM2, Merkle, certificate and bundle code it reuses,
itself written from the documents) it imports nothing of gmchain.

What it establishes, given the business chain's genesis document and the regulator chain's:
1. Regulator (protocol.md §9): every regulator transaction used (the `recv_packets` that received
   the record and the `update_client`s that verified its header) is committed on the regulator
   chain: its proof bundle verifies from the REGULATOR's genesis, the served `raw` SignedTx has
   the bundle's tx id (§5: signing root of the body), the receipt is OK (status 0), the
   transaction calls `xclient.<method>` on the regulator chain id. The updates used are
   committed before the `recv_packets` (height, then index in the block).
2. Business light client (crosschain.md "update_client", §10 "ClientUpdate", "EpochChange",
   "Certificate"): replayed from the BUSINESS genesis (epoch 0, the genesis set), the updates in
   regulator order: epoch changes followed from the trusted epoch E (e < E: a repeat with the
   same fingerprint is skipped, another is misbehaviour; e == E: certified by E's set, first
   header X names the fingerprint of next_validators, X above the end of e - 1; e > E: refused);
   the certificate checked with its headers' epoch's set (E, or a past one); headers stored by
   rule 3 (only within its epoch's verified heights). Genesis binding: a header at height 0 is
   the genesis block, one at 1 descends from it. An update receipt with `ClientFrozen` is
   refused. Certificates are numbered as the receipt's `ClientUpdated` `update_nos` say (the
   epoch changes of the trusted epoch in order, then the certificate if it stored a header).
3. Packet (§10 "TxProof", "Packet"): the packet inside the `recv_packets` arguments with the
   record's seq proves, against the header the replay verified at its height, the business
   transaction (tx id leaf in tx_root) and its receipt (receipt bytes leaf in receipt_root), OK,
   the business chain id, `evidence.submit` with typed arguments, the first `PacketQueued` whose
   first field is the seq, exactly (seq, dest, record_id), and the first `EvidenceSubmitted`
   whose first field is the record id, exactly (record_id, flow_id, org, step, record_hash); the
   header is not above its epoch's verified end.
4. The regulator accepted it: its receipt carries `xclient.PacketReceived(chain, seq,
   "accepted", record_id)`.
5. The served stored copy (gm_getRelayedRecord) equals what 1-4 derive, field by field;
   `updateTxId` is the update whose event gave `header.updateNo`; `headerBytes` has its block id.
Every failed check is a reason; the verdict is VALID only with no reason.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from tests.independent_client import (
    EncodingError,
    Header,
    ProofError,
    _header_from_array,
    _is_on_curve,
    _qc_from_array,
    compute_signing_root,
    decode,
    decode_header,
    encode,
    leaf_hash,
    sm3,
    verify_inclusion,
)
from tests.independent_epoch import (
    Genesis,
    ValidatorSet,
    check_qc,
    load_genesis,
    next_validators_commitment,
    verify_bundle,
    verify_epoch_proof,
)

_NESTING = {"SignedTx": 16, "Receipt": 19, "BlockHeader": 4, "CommitProof": 5}
_OUTER_DEPTH = 16  # §10: the outer value of a cross-chain object
OK = 0


class Invalid(ValueError):
    """One failed check (its message is the reason)."""


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise Invalid(what)


def _dec(raw: Any, depth: int, what: str) -> Any:
    _need(isinstance(raw, bytes), f"{what}: not bytes")
    try:
        return decode(raw, depth)
    except EncodingError as exc:
        raise Invalid(f"{what}: {exc}") from None


def _hexb(v: Any, what: str) -> bytes:
    _need(isinstance(v, str) and v.startswith("0x"), f"{what}: not 0x hex")
    try:
        return bytes.fromhex(v[2:])
    except ValueError:
        raise Invalid(f"{what}: bad hex") from None


def _uint(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


# ---------------------------------------------------------------- structs (§2, §5)


@dataclass(frozen=True, slots=True)
class Tx:
    tx_id: bytes
    chain_id: str
    contract: str
    method: str
    args: list[Any]


def decode_tx(raw: bytes, what: str) -> Tx:
    """SignedTx `[2, [1, chain_id, sender, nonce, expiry, contract, method, args], sig]`."""
    v = _dec(raw, _NESTING["SignedTx"], what)
    _need(isinstance(v, list) and len(v) == 3 and v[0] == 2, f"{what}: not a SignedTx")
    body, sig = v[1], v[2]
    _need(isinstance(sig, bytes) and len(sig) == 64, f"{what}: signature not 64 bytes")
    _need(isinstance(body, list) and len(body) == 8 and body[0] == 1, f"{what}: not a TxBody")
    _, chain_id, sender, nonce, expiry, contract, method, args = body
    _need(isinstance(chain_id, str) and isinstance(sender, bytes), f"{what}: body field types")
    _need(isinstance(contract, str) and isinstance(method, str), f"{what}: body field types")
    _need(_uint(nonce) and _uint(expiry) and isinstance(args, list), f"{what}: body field types")
    return Tx(compute_signing_root("tx", body), chain_id, contract, method, args)


@dataclass(frozen=True, slots=True)
class Receipt:
    tx_id: bytes
    status: int
    events: list[tuple[str, str, list[list[Any]]]]  # (contract, name, fields)

    def find(self, contract: str, name: str) -> list[dict[str, Any]]:
        return [dict(map(tuple, f)) for c, n, f in self.events if (c, n) == (contract, name)]

    def find_exact(self, contract: str, name: str) -> list[list[list[Any]]]:
        return [f for c, n, f in self.events if (c, n) == (contract, name)]


def decode_receipt(raw: bytes, what: str) -> Receipt:
    v = _dec(raw, _NESTING["Receipt"], what)
    _need(isinstance(v, list) and len(v) == 6 and v[0] == 4, f"{what}: not a Receipt")
    _need(isinstance(v[1], bytes) and len(v[1]) == 32 and _uint(v[2]), f"{what}: field types")
    _need(isinstance(v[4], list), f"{what}: events not a list")
    events = []
    for e in v[4]:
        _need(isinstance(e, list) and len(e) == 4 and e[0] == 3, f"{what}: an event not [3, ...]")
        _need(isinstance(e[3], list), f"{what}: event fields not a list")
        for pair in e[3]:
            _need(isinstance(pair, list) and len(pair) == 2, f"{what}: an event field not a pair")
        events.append((e[1], e[2], e[3]))
    return Receipt(v[1], v[2], events)


# ---------------------------------------------------------------- certificates (§9, §10)


def check_certificate(
    cert: Any, chain_id: str, sets: dict[int, ValidatorSet], genesis: Genesis, what: str
) -> list[Header]:
    """§10 "Certificate": `[headers, proof]`, §9 steps 1-9 against the set of the headers'
    epoch (from `sets`), plus the genesis binding."""
    _need(isinstance(cert, list) and len(cert) == 2, f"{what}: not [headers, proof]")
    raw_headers, raw_proof = cert
    _need(isinstance(raw_headers, list) and 1 <= len(raw_headers) <= 256, f"{what}: 1..256 headers")
    try:
        hs = [
            _header_from_array(_dec(h, _NESTING["BlockHeader"], f"{what} header"))
            for h in raw_headers
        ]
        proof = _dec(raw_proof, _NESTING["CommitProof"], f"{what} proof")
        _need(isinstance(proof, list) and len(proof) == 3 and proof[0] == 24, f"{what}: proof")
        child, qc = _header_from_array(proof[1]), _qc_from_array(proof[2])
    except ProofError as exc:
        raise Invalid(f"{what}: {exc}") from None
    epoch = hs[0].epoch
    _need(epoch in sets, f"{what}: epoch {epoch} not reached (send the epoch changes first)")
    vset = sets[epoch]
    for parent, nxt in itertools.pairwise(hs):
        _need(nxt.parent_id == parent.block_id, f"{what}: headers not linked by parent_id")
        _need(nxt.height == parent.height + 1, f"{what}: heights not consecutive")
    for h in [*hs, child]:
        _need(h.chain_id == chain_id, f"{what}: a header of chain {h.chain_id!r}")
        _need(h.epoch == epoch, f"{what}: headers of two epochs")
    tip = hs[-1]
    _need(child.parent_id == tip.block_id, f"{what}: the child is not the tip's child")
    _need(
        (child.justify.block_id, child.justify.round, child.justify.height)
        == (tip.block_id, tip.round, tip.height),
        f"{what}: the child's justify does not name the tip",
    )
    _need(child.round == child.justify.round + 1, f"{what}: rounds not consecutive")
    _need(
        (qc.block_id, qc.round, qc.height) == (child.block_id, child.round, child.height),
        f"{what}: the QC does not name the child",
    )
    try:
        check_qc(qc, chain_id, vset, f"{what} qc")
        check_qc(child.justify, chain_id, vset, f"{what} child.justify")
    except ProofError as exc:
        raise Invalid(str(exc)) from None
    for h in hs:
        if h.height == 0:
            _need(h.block_id == genesis.block_id, f"{what}: height 0 is not the genesis block")
        if h.height == 1:
            _need(
                h.parent_id == genesis.block_id and h.justify.block_id == genesis.block_id,
                f"{what}: height 1 does not descend from the genesis block",
            )
    return hs


def next_set(items: Any, epoch: int, what: str) -> ValidatorSet:
    """§10 EpochChange `next_validators`: `[[pubkey(65), power, org], ...]`, no key twice."""
    _need(isinstance(items, list) and len(items) > 0, f"{what}: not a non-empty list")
    members: dict[bytes, tuple[bytes, int]] = {}
    for v in items:
        _need(isinstance(v, list) and len(v) == 3, f"{what}: not [pubkey, power, org]")
        pk, power, org = v
        _need(isinstance(pk, bytes) and _is_on_curve(pk), f"{what}: not an SM2 key")
        _need(_uint(power) and 1 <= power <= 2**32 and isinstance(org, str), f"{what}: power/org")
        _need(sm3(pk)[:20] not in members, f"{what}: a key twice")
        members[sm3(pk)[:20]] = (pk, power)
    return ValidatorSet(epoch=epoch, members=members)


@dataclass
class LightClient:
    """crosschain.md "update_client", replayed from the business genesis."""

    genesis: Genesis
    epoch: int = 0
    sets: dict[int, ValidatorSet] = field(default_factory=dict)
    ends: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # e -> (X.height, fp)
    headers: dict[int, tuple[Header, int]] = field(default_factory=dict)  # height -> (h, no)
    certificates: int = 0

    def __post_init__(self) -> None:
        self.sets[0] = self.genesis.validators

    def seed(self, proof: Any) -> None:
        """A client registered at epoch N > 0 (governance.md `register_chain`): its set follows
        from the genesis through the BUSINESS chain's epoch proof 0..N (gm_getEpochProof,
        protocol.md §9 "Epoch-change proofs"), which the regulator does not keep."""
        c = self.genesis.chain_id
        try:
            _need(isinstance(proof, dict) and proof.get("from_epoch") == 0, "epoch proof: not 0..N")
            chain = verify_epoch_proof(proof, c, self.genesis.validators)
            for entry in proof["entries"]:
                x = decode_header(_hexb(entry["headers"][0], "epoch proof header"))
                nxt = chain.sets[entry["epoch"] + 1]
                self.ends[entry["epoch"]] = (x.height, nxt.fingerprint)
        except ProofError as exc:
            raise Invalid(f"business epoch proof: {exc}") from None
        self.sets.update(chain.sets)
        self.epoch = proof["to_epoch"]

    def apply(self, raw: Any, what: str, numbers: list[int] | None = None) -> None:
        u = _dec(raw, _OUTER_DEPTH, what)
        _need(isinstance(u, list) and len(u) == 4, f"{what}: not a ClientUpdate")
        _need(u[0] == "gmchain-client-update/1", f"{what}: version {u[0]!r}")
        c = self.genesis.chain_id
        _need(u[1] == c, f"{what}: for chain {u[1]!r}, not {c!r}")
        _need(isinstance(u[2], list) and len(u[2]) <= 32, f"{what}: epoch changes")
        epoch, sets, ends = self.epoch, dict(self.sets), dict(self.ends)
        new: list[tuple[list[Header], bool]] = []  # (headers to store, certificate numbered)
        for i, ch in enumerate(u[2]):
            w = f"{what} change {i}"
            _need(isinstance(ch, list) and len(ch) == 3 and _uint(ch[0]), f"{w}: malformed")
            e, cert, nxt_raw = ch
            nxt = next_set(nxt_raw, e + 1, f"{w} next_validators")
            if e < epoch:
                _need(
                    e not in ends or ends[e][1] == nxt.fingerprint,
                    f"{w}: a second change of epoch {e} (misbehaviour)",
                )
                continue
            _need(e == epoch, f"{w}: epoch {e} after {epoch}: changes must follow each other")
            # §10 EpochChange: the certificate starts at X's parent P, which commits to
            # (e, set_e); only an X at height 1 (P = the genesis block) starts at X
            _need(isinstance(cert, list) and len(cert) == 2 and isinstance(cert[0], list), w)
            _need(len(cert[0]) >= 1, f"{w}: no headers")
            first = _header_from_array(_dec(cert[0][0], _NESTING["BlockHeader"], f"{w} header"))
            p_commit = next_validators_commitment(e, sets[e].fingerprint)
            if len(cert[0]) >= 2 and first.next_validators_hash == p_commit:
                hs = check_certificate([cert[0][1:], cert[1]], c, {e: sets[e]}, self.genesis, w)
                _need(hs[0].parent_id == first.block_id, f"{w}: P is not X's parent")
                _need(first.chain_id == c, f"{w}: P of chain {first.chain_id!r}")
            else:
                _need(
                    e == 0 and first.height == 1, f"{w}: the certificate must start at X's parent"
                )
                hs = check_certificate(cert, c, {e: sets[e]}, self.genesis, w)
            x = hs[0]
            _need(
                x.next_validators_hash == next_validators_commitment(e + 1, nxt.fingerprint),
                f"{w}: X.next_validators_hash is not the commitment to e + 1, next_validators",
            )
            _need(e == 0 or x.height > ends[e - 1][0], f"{w}: X not above the end of epoch {e - 1}")
            ends[e] = (x.height, nxt.fingerprint)
            sets[e + 1] = nxt
            epoch = e + 1
            new.append(([x], True))
        if u[3] is not None:
            hs = check_certificate(u[3], c, sets, self.genesis, f"{what} certificate")
            new.append((hs, True))
        for hs, _ in new:  # rule 3, misbehaviour checked before anything is applied
            for h in hs:
                old = self.headers.get(h.height)
                _need(
                    old is None or old[0].block_id == h.block_id or old[0].epoch != h.epoch,
                    f"{what}: another block at height {h.height} of epoch {h.epoch} (misbehaviour)",
                )
        self.epoch, self.sets, self.ends = epoch, sets, ends
        changes = len(new) - (u[3] is not None)
        if numbers is not None:  # the update's ClientUpdated `update_nos` (F3 numbering)
            _need(
                len(numbers) in (changes, changes + (u[3] is not None)),
                f"{what}: ClientUpdated numbers {numbers} for {changes} epoch changes",
            )
            new = new[: len(numbers)]
        for k, (hs, _) in enumerate(new):
            no = self.certificates + 1 if numbers is None else numbers[k]
            stored = k < changes  # an epoch change is numbered even if X is known
            for h in hs:
                old = self.headers.get(h.height)
                lo, hi = ends.get(h.epoch - 1, (-1,))[0], ends.get(h.epoch, (2**64,))[0]
                if not lo < h.height <= hi:
                    continue  # rule 3: outside its epoch's verified heights
                if old is None or old[0].epoch < h.epoch:
                    stored = True
                    self.headers[h.height] = (h, no)
            if stored:
                self.certificates = no if numbers is None else max(self.certificates, no)


# ---------------------------------------------------------------- the regulator side (§9)


@dataclass(frozen=True, slots=True)
class RegTx:
    tx: Tx
    receipt: Receipt
    height: int
    index: int


def check_regulator_tx(
    item: Any, reg: Genesis, method: str, what: str, *, require_ok: bool = True
) -> RegTx:
    """Rule 1: `{"tx": gm_getTransactionByHash, "proof": gm_getTransactionProof}`."""
    _need(isinstance(item, dict) and isinstance(item.get("tx"), dict), f"{what}: no tx")
    try:
        certified = verify_bundle(item.get("proof"), reg)
    except ProofError as exc:
        raise Invalid(f"{what}: the regulator's proof bundle: {exc}") from None
    tx = decode_tx(_hexb(item["tx"].get("raw"), f"{what} raw"), f"{what} tx")
    _need(tx.tx_id == certified.tx_id, f"{what}: the served transaction is not the proven one")
    receipt = decode_receipt(encode(certified.receipt), f"{what} receipt")
    _need(not require_ok or receipt.status == OK, f"{what}: receipt status {receipt.status}")
    _need(tx.chain_id == reg.chain_id, f"{what}: a transaction of chain {tx.chain_id!r}")
    _need((tx.contract, tx.method) == ("xclient", method), f"{what}: not xclient.{method}")
    index = item["proof"]["index_in_block"]
    return RegTx(tx, receipt, certified.header.height, index)


# ---------------------------------------------------------------- the packet (§10)


def first_event(r: Receipt, name: str, first: list[Any], names: tuple[str, ...], no: str) -> Any:
    """crosschain.md "Packets" 7-8: the first `evidence` event `name` whose first field is
    `first`, with exactly the fields `names` in order; Invalid(`no`) if none."""
    for f in r.find_exact("evidence", name):
        if f and f[0] == first:
            _need(tuple(p[0] for p in f) == names, f"business receipt: {name} fields")
            return dict(map(tuple, f))
    raise Invalid(no)


def check_packet(
    raw: bytes, seq: int, client: LightClient, reg_chain: str
) -> tuple[dict[str, Any], Header]:
    """Rule 3; returns the fields a stored copy must hold (those the packet proves)."""
    c = client.genesis.chain_id
    p = _dec(raw, _OUTER_DEPTH, "packet")
    _need(isinstance(p, list) and len(p) == 5 and p[0] == "gmchain-packet/1", "packet: malformed")
    _, src, dest, pseq, proof = p
    _need(src == c, f"packet: from {src!r}, not {c!r}")
    _need(dest == reg_chain, f"packet: for {dest!r}, not the regulator {reg_chain!r}")
    _need(pseq == seq, f"packet: seq {pseq}, not {seq}")
    _need(isinstance(proof, list) and len(proof) == 6, "TxProof: not 6 items")
    height, index, tx_raw, tx_path, receipt_raw, receipt_path = proof
    _need(_uint(height) and _uint(index), "TxProof: height/index")
    for path in (tx_path, receipt_path):
        _need(isinstance(path, list) and len(path) <= 64, "TxProof: a path")
        _need(all(isinstance(x, bytes) and len(x) == 32 for x in path), "TxProof: a path item")
    _need(height in client.headers, f"TxProof: header {height} of {c} was not verified")
    header, update_no = client.headers[height]
    end = client.ends.get(header.epoch)  # protocol.md §9: an ended epoch's suffix never commits
    _need(end is None or height <= end[0], f"TxProof: header {height} is an ended epoch's suffix")
    tx = decode_tx(tx_raw, "business tx")
    receipt = decode_receipt(receipt_raw, "business receipt")
    _need(index < header.tx_count, "TxProof: index >= tx_count")
    _need(
        verify_inclusion(leaf_hash(tx.tx_id), index, header.tx_count, tx_path, header.tx_root),
        f"TxProof: the transaction is not leaf {index} of tx_root",
    )
    _need(
        verify_inclusion(
            leaf_hash(receipt_raw), index, header.tx_count, receipt_path, header.receipt_root
        ),
        f"TxProof: the receipt is not leaf {index} of receipt_root",
    )
    _need(receipt.tx_id == tx.tx_id, "business receipt: names another transaction")
    _need(receipt.status == OK, f"business receipt: status {receipt.status}")
    _need(tx.chain_id == c, f"business tx: of chain {tx.chain_id!r}")
    _need((tx.contract, tx.method) == ("evidence", "submit"), "business tx: not evidence.submit")
    a = tx.args
    _need(
        len(a) >= 5 and all(isinstance(x, str) for x in a[:4]) and isinstance(a[4], bytes),
        "business tx: arguments not record_id, flow_id, scenario, step, data_digest",
    )
    record_id, flow_id, scenario, step, data_digest = a[:5]
    no = f"business receipt: no PacketQueued with seq {seq}"
    queued = first_event(receipt, "PacketQueued", ["seq", seq], ("seq", "dest", "record_id"), no)
    _need(queued["dest"] == reg_chain, "business receipt: PacketQueued dest is not the regulator")
    _need(queued["record_id"] == record_id, "business receipt: PacketQueued names another record")
    names = ("record_id", "flow_id", "org", "step", "record_hash")
    no = "business receipt: no EvidenceSubmitted for the record"
    sub = first_event(receipt, "EvidenceSubmitted", ["record_id", record_id], names, no)
    _need((sub["flow_id"], sub["step"]) == (flow_id, step), "EvidenceSubmitted: flow or step")
    org, record_hash = sub["org"], sub["record_hash"]  # (record_id matched above)
    _need(
        isinstance(org, str) and isinstance(record_hash, bytes) and len(record_hash) == 32,
        "EvidenceSubmitted: org/hash",
    )
    derived = {
        "seq": seq,
        "height": height,
        "index": index,
        "txId": tx.tx_id,
        "org": org,
        "flowId": flow_id,
        "recordId": record_id,
        "scenario": scenario,
        "step": step,
        "dataDigest": data_digest,
        "recordHash": record_hash,
        "header": {
            "height": height,
            "blockId": header.block_id,
            "txRoot": header.tx_root,
            "txCount": header.tx_count,
            "receiptRoot": header.receipt_root,
            "epoch": header.epoch,
            "timestampMs": header.timestamp_ms,
            "updateNo": update_no,
        },
    }
    return derived, header


# ---------------------------------------------------------------- the verdict


@dataclass
class Verdict:
    reasons: list[str]
    header: Header | None = None
    epoch_sets: list[int] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.reasons

    def __str__(self) -> str:
        if self.valid:
            return "VALID"
        return "INVALID\n" + "\n".join(f"- {r}" for r in self.reasons)


def _same(served: Any, derived: Any, path: str, out: list[str]) -> None:
    if isinstance(derived, dict):
        if not isinstance(served, dict):
            out.append(f"stored copy: {path or 'record'} missing")
            return
        for k, v in derived.items():
            _same(served.get(k), v, f"{path}.{k}" if path else k, out)
        return
    want = "0x" + derived.hex() if isinstance(derived, bytes) else derived
    if served != want:
        out.append(f"stored copy: {path} is {served!r}, the proofs say {want!r}")


def verify_relayed_record(
    business_genesis: Any, regulator_genesis: Any, served: dict[str, Any]
) -> Verdict:
    """`served`: {"record": gm_getRelayedRecord, "recv": {"tx", "proof"}, "updates": [{"tx",
    "proof"}, ...] in regulator order, "client"?: gm_getCrossChainClient,
    "business_epoch_proof"?: the business chain's gm_getEpochProof(0, N) when the client was
    registered at epoch N > 0}."""
    reasons: list[str] = []
    try:
        biz, reg = load_genesis(business_genesis), load_genesis(regulator_genesis)
    except (ProofError, KeyError, TypeError, ValueError) as exc:
        return Verdict([f"genesis: {exc}"])
    record = served.get("record")
    if not isinstance(record, dict) or not _uint(record.get("seq")):
        return Verdict(["no relayed record (null or without a seq)"])
    seq = record["seq"]
    recv: RegTx | None = None
    try:  # rule 1, the receiving transaction
        recv = check_regulator_tx(served.get("recv"), reg, "recv_packets", "recv_packets tx")
        _need(
            "0x" + recv.tx.tx_id.hex() == record.get("recvTxId"),
            "recv_packets tx: not the record's recvTxId",
        )
        got = [
            e
            for e in recv.receipt.find_exact("xclient", "PacketReceived")
            if e
            == [
                ["chain", biz.chain_id],
                ["seq", seq],
                ["status", "accepted"],
                ["record_id", record.get("recordId")],
            ]
        ]
        _need(bool(got), f"recv_packets receipt: no PacketReceived(seq {seq}, accepted)")
    except Invalid as exc:
        reasons.append(str(exc))
    client = LightClient(biz)
    by_number: dict[int, str] = {}  # update number -> the regulator tx whose event gave it
    if served.get("business_epoch_proof") is not None:
        try:
            client.seed(served["business_epoch_proof"])
        except Invalid as exc:
            reasons.append(str(exc))
    cs = served.get("client")
    if isinstance(cs, dict):  # the registration names this genesis (crosschain.md)
        if cs.get("genesisHash") != "0x" + biz.genesis_hash.hex():
            reasons.append("client: genesisHash is not the business genesis's")
        if cs.get("genesisBlockId") != "0x" + biz.block_id.hex():
            reasons.append("client: genesisBlockId is not the business genesis block")
    for i, item in enumerate(served.get("updates") or []):  # rules 1-2
        what = f"update {i}"
        numbers: list[int] | None = None
        try:
            u = check_regulator_tx(item, reg, "update_client", what, require_ok=False)
            if u.receipt.status != OK:
                continue  # FAILED on the regulator: nothing of it was applied
            ev = u.receipt.find("xclient", "ClientUpdated")
            numbers = list(ev[0].get("update_nos") or []) if ev else []
            for n in numbers:
                by_number[n] = "0x" + u.tx.tx_id.hex()
            _need(not u.receipt.find("xclient", "ClientFrozen"), f"{what}: froze the client")
            if recv is not None:
                _need(
                    (u.height, u.index) < (recv.height, recv.index),
                    f"{what}: committed after the recv_packets",
                )
        except Invalid as exc:
            reasons.append(str(exc))
        try:  # the business side is checked even if the regulator side failed: every reason
            _need(isinstance(item, dict) and isinstance(item.get("tx"), dict), f"{what}: no tx")
            tx = decode_tx(_hexb(item["tx"].get("raw"), f"{what} raw"), f"{what} tx")
            _need(len(tx.args) == 1, f"{what}: not one argument")
            client.apply(tx.args[0], what, numbers)
        except Invalid as exc:
            reasons.append(str(exc))
    if recv is None:
        try:
            item = served.get("recv") or {}
            recv_tx = decode_tx(_hexb(item["tx"].get("raw"), "recv raw"), "recv tx")
        except (Invalid, KeyError, TypeError, AttributeError) as exc:
            reasons.append(f"recv_packets tx: {exc}")
            return Verdict(reasons)
    else:
        recv_tx = recv.tx
    header = None
    try:  # rule 3
        items = recv_tx.args[0] if len(recv_tx.args) == 1 else None
        _need(isinstance(items, list) and 1 <= len(items) <= 64, "recv_packets: 1..64 packets")
        assert isinstance(items, list)
        mine = []
        for it in items:
            _need(isinstance(it, list) and len(it) == 1, "recv_packets: an item not [packet]")
            pv = _dec(it[0], _OUTER_DEPTH, "packet")
            if isinstance(pv, list) and len(pv) == 5 and pv[1] == biz.chain_id and pv[3] == seq:
                mine.append(it[0])
        _need(bool(mine), f"recv_packets: no packet of {biz.chain_id} with seq {seq}")
        derived, header = check_packet(mine[0], seq, client, reg.chain_id)
        if recv is not None:
            derived["arrivedHeight"] = recv.height
            derived["recvTxId"] = recv.tx.tx_id
        _same(record, derived, "", reasons)  # rule 5
        no = derived["header"]["updateNo"]
        _need(record.get("updateTxId") == by_number.get(no), f"updateTxId: not update {no}'s")
        raw = _hexb(record.get("headerBytes"), "headerBytes")
        try:
            _need(decode_header(raw).block_id == header.block_id, "headerBytes: not the header")
        except ProofError as exc:
            raise Invalid(f"headerBytes: {exc}") from None
    except Invalid as exc:
        reasons.append(str(exc))
    return Verdict(reasons, header, sorted(client.sets))


__all__ = ["Invalid", "LightClient", "Verdict", "verify_relayed_record"]

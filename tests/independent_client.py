"""An independent gmchain client, written only from the published documents.

Acceptance check for issue 3: "a client written only from docs/protocol.md and the OpenRPC
document can sign and submit an evidence transaction, get its receipt, and verify its proof."
This module imports nothing of gmchain (no ledger, node, crypto_sm, contracts, consensus); it uses
the standard library, `msgpack` and the pure-Python `gmssl` (SM2/SM3), so a bug shared by the
node's code and this client can only come from the documents themselves.

Rules it keeps, each with the section it comes from:
- Canonical encoding (protocol.md §1): msgpack, shortest forms, bin for bytes, str for text; a
  decoder rejects floats, maps, ext types, over-deep or oversize input, trailing bytes, and any
  input that does not re-encode to the same bytes.
- Structs (§2): `[tag, field1, ...]`; TxBody tag 1, SignedTx 2, Receipt 4, BlockHeader 5,
  QuorumCert 8; CommitProof `[24, child_header, qc]` (§9; tag 24 is not in §2's table).
- Hashing (§3): `compute_signing_root(kind, v) = SM3(DOMAIN[kind] || 0x00 || enc(v))`.
- SM2 (§4, GB/T 32918.2, GB/T 35276): `e = SM3(Z || M)`,
  `Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA)`, ID `1234567812345678`; signatures
  are 64-byte `r || s`; a fresh nonce k from `secrets` per signature (gmssl takes k from the
  caller); gmssl's verify checks neither r, s ranges nor the curve, so we do.
- Transactions (§5): tx id = `compute_signing_root("tx", body)`; the sender signs the id;
  expiry in `(head, head + W]` (rpc.md "Submitting evidence, step by step").
- Merkle (§7, RFC 9162 §2.1.3.2) inclusion verification with SM3; leaf `0x00||d`, node `0x01||l||r`.
- Accumulator (§8): `acc_index = header.acc_size - header.tx_count + index_in_block`.
- Proof bundle (§9, version 2): header fields, block path, accumulator path, receipt path
  against `receipt_root`, anchor header, and 2-chain commit certificates — `commit` for the tx's
  header and, when the anchor is not on it, `anchor_commit` for the anchor: headers linked by
  `parent_id`, `child.justify` names the tip, `child.round == child.justify.round + 1`, and the
  QC (> 2/3 of the genesis validators' power) signs the vote root
  `compute_signing_root("vote", [chain_id, epoch, block_id, round, height])` (§6); this client
  trusts the genesis validators only, so it accepts certificates of epoch 0 only.
- Trust comes from the genesis file, never from the validator copy inside the bundle.
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NewType

import msgpack
from gmssl import sm2 as gm_sm2
from gmssl import sm3 as gm_sm3

__all__ = [
    "DOMAIN",
    "CertifiedTx",
    "Digest",
    "EncodingError",
    "GenesisInfo",
    "Header",
    "KeyPair",
    "ProofError",
    "QuorumCert",
    "RpcClient",
    "RpcError",
    "build_submit_args",
    "build_tx_body",
    "compute_signing_root",
    "compute_tx_id",
    "decode",
    "decode_header",
    "encode",
    "encode_signed_tx",
    "fetch_link_headers",
    "generate_keypair",
    "leaf_hash",
    "load_genesis",
    "sign",
    "sm3",
    "submit_evidence",
    "verify",
    "verify_inclusion",
    "verify_tx_proof",
]

Digest = NewType("Digest", bytes)
Height = NewType("Height", int)

# protocol.md §3, the domain table (ASCII strings, no NUL).
DOMAIN: dict[str, bytes] = {
    "tx": b"GMCHAIN/TX/v1",
    "header": b"GMCHAIN/HEADER/v1",
    "vote": b"GMCHAIN/VOTE/v1",
    "genesis": b"GMCHAIN/GENESIS/v1",
}

# protocol.md §1 limits.
_MAX_SIZE = 8388608
_MAX_STR = 65536
_MAX_BIN = 4194304
_MAX_ARRAY = 100000
_MAX_DEPTH = 16  # a bare value; a struct decodes with its NESTING (protocol.md §2 "Nesting depth")
MAX_TX_BYTES = 65536
_MAX_VALUE_DEPTH = 14  # free-form values: tx args, receipt result, event field values
_NESTING_HEADER, _NESTING_RECEIPT, _NESTING_COMMIT_PROOF = 4, 19, 5

# protocol.md §2 tags; §9 CommitProof.
_TAG_TXBODY, _TAG_SIGNEDTX, _TAG_RECEIPT, _TAG_HEADER, _TAG_QC = 1, 2, 4, 5, 8
_TAG_COMMIT_PROOF = 24

# GB/T 32918.5 recommended curve (the one gmssl's default table also holds).
_P = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF", 16)
_A = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC", 16)
_B = int("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93", 16)
_N = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)
_GX = int("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7", 16)
_GY = int("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0", 16)
_SM2_ID = b"1234567812345678"  # protocol.md §4, GB/T 35276-2017 default ID


class EncodingError(ValueError):
    """Bytes that are not the one canonical encoding of an allowed value (protocol.md §1)."""


class ProofError(ValueError):
    """A proof bundle that does not verify; the message says which check failed."""


class RpcError(Exception):
    """A JSON-RPC error object returned by the node (rpc.md "Errors")."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# ---------------------------------------------------------------- encoding (protocol.md §1)


def encode(value: Any, max_depth: int = 64) -> bytes:
    """The canonical encoding: msgpack-python's packer with bin for bytes, str for text. (The depth
    of what we build is the struct rule's business; 64 only stops a runaway value.)"""
    _check_value(value, 0, max_depth)
    out: bytes = msgpack.packb(value, use_bin_type=True, strict_types=False)
    return out


def _check_value(value: Any, depth: int, max_depth: int) -> None:
    """`depth` arrays enclose `value`; arrays may nest at most `max_depth` levels (§2: a scalar
    is 0 levels, `[1]` one)."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -(2**63) <= value <= 2**64 - 1:
            raise EncodingError(f"integer out of range: {value}")
        return
    if isinstance(value, bytes):
        if len(value) > _MAX_BIN:
            raise EncodingError("bin longer than max_bin")
        return
    if isinstance(value, str):
        if len(value.encode("utf-8")) > _MAX_STR:
            raise EncodingError("str longer than max_str")
        return
    if isinstance(value, (list, tuple)):
        if depth >= max_depth:
            raise EncodingError("nesting deeper than max_depth")
        if len(value) > _MAX_ARRAY:
            raise EncodingError("array longer than max_array")
        for item in value:
            _check_value(item, depth + 1, max_depth)
        return
    raise EncodingError(f"type not allowed in canonical values: {type(value).__name__}")


def decode(data: bytes, max_depth: int = _MAX_DEPTH) -> Any:
    """Decode canonical bytes; reject anything §1 says a decoder must reject. A struct passes its
    NESTING as `max_depth` (§2 "Nesting depth")."""
    if len(data) > _MAX_SIZE:
        raise EncodingError("input longer than max_size")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=_MAX_STR,
            max_bin_len=_MAX_BIN,
            max_array_len=_MAX_ARRAY,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several unrelated types
        raise EncodingError(f"does not decode: {type(exc).__name__}") from None
    _check_value(value, 0, max_depth)  # floats, maps, ext types, depth
    if encode(value, max_depth) != data:
        raise EncodingError("not the canonical (shortest) encoding")
    return value


# ---------------------------------------------------------------- hashing (protocol.md §3)


def sm3(data: bytes) -> Digest:
    """SM3 (GB/T 32905) through gmssl."""
    return Digest(bytes.fromhex(gm_sm3.sm3_hash(list(data))))


def compute_signing_root(kind: str, value: Any) -> Digest:
    return sm3(DOMAIN[kind] + b"\x00" + encode(value))


# ---------------------------------------------------------------- SM2 (protocol.md §4)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyPair:
    """An SM2 key: `private` is d in [1, n-2]; `public` is `04 || X || Y` (65 bytes)."""

    private: int
    public: bytes

    @property
    def address(self) -> bytes:
        return sm3(self.public)[:20]


def _is_on_curve(public: bytes) -> bool:
    if len(public) != 65 or public[0] != 4:
        return False
    x = int.from_bytes(public[1:33], "big")
    y = int.from_bytes(public[33:], "big")
    if x >= _P or y >= _P:
        return False
    return (y * y - (x * x * x + _A * x + _B)) % _P == 0


def _gmssl(private: int | None, public: bytes) -> Any:
    # gmssl's constructor does `public_key.lstrip("04")`, which eats leading 0/4 hex digits of X;
    # set the bare X || Y hex after construction instead.
    ctx = gm_sm2.CryptSM2(private_key=f"{private:064x}" if private else "", public_key="")
    ctx.public_key = public[1:].hex()
    return ctx


def generate_keypair() -> KeyPair:
    """d uniform in [1, n-2] from `secrets`; public = d*G computed by gmssl."""
    d = secrets.randbelow(_N - 2) + 1
    ctx = _gmssl(d, b"\x04" + b"\x00" * 64)
    point_hex = ctx._kg(d, f"{_GX:064x}{_GY:064x}")
    public = b"\x04" + bytes.fromhex(point_hex)
    if not _is_on_curve(public):
        raise AssertionError("gmssl produced a point off the curve")
    return KeyPair(private=d, public=public)


def _compute_e(public: bytes, message: bytes) -> bytes:
    """`e = SM3(Z || M)`, `Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA)` (§4)."""
    entl = (len(_SM2_ID) * 8).to_bytes(2, "big")
    z = sm3(
        entl
        + _SM2_ID
        + _A.to_bytes(32, "big")
        + _B.to_bytes(32, "big")
        + _GX.to_bytes(32, "big")
        + _GY.to_bytes(32, "big")
        + public[1:]
    )
    return sm3(z + message)


def sign(key: KeyPair, message: bytes) -> bytes:
    """A 64-byte `r || s` SM2 signature of `message`, with a fresh k from `secrets`."""
    e = _compute_e(key.public, message)
    ctx = _gmssl(key.private, key.public)
    while True:
        k = secrets.randbelow(_N - 1) + 1  # never reused: drawn anew for every attempt
        sig_hex = ctx.sign(e, f"{k:064x}")
        if sig_hex is not None:
            return bytes.fromhex(sig_hex)


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """SM2 verification; False for a bad key, bad length, r or s outside [1, n-1], mismatch."""
    if len(signature) != 64 or not _is_on_curve(public):
        return False
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if not (1 <= r < _N and 1 <= s < _N):
        return False
    e = _compute_e(public, message)
    return bool(_gmssl(None, public).verify(signature.hex(), e))


# ---------------------------------------------------------------- transactions (§2, §5)


def build_submit_args(
    *,
    record_id: str,
    flow_id: str,
    scenario: str,
    step: str,
    data_digest: bytes,
    storage_ref: str | None = None,
    metadata: Sequence[tuple[str, str]] = (),
    level: int = 2,
    prev_record_id: str | None = None,
) -> list[Any]:
    """`evidence.submit` arguments in evidence.md's order (the Rules section)."""
    return [
        record_id,
        flow_id,
        scenario,
        step,
        bytes(data_digest),
        storage_ref,
        [[k, v] for k, v in metadata],
        level,
        prev_record_id,
    ]


def build_tx_body(
    *,
    chain_id: str,
    sender: bytes,
    nonce: int,
    expiry: int,
    contract: str,
    method: str,
    args: Sequence[Any],
) -> list[Any]:
    """TxBody (tag 1): `[1, chain_id, sender, nonce, expiry, contract, method, args]`; the args
    list is a free-form value, at most _MAX_VALUE_DEPTH deep (§2 "Nesting depth")."""
    _check_value(list(args), 0, _MAX_VALUE_DEPTH)
    return [_TAG_TXBODY, chain_id, sender, nonce, expiry, contract, method, list(args)]


def compute_tx_id(body: list[Any]) -> Digest:
    return compute_signing_root("tx", body)


def encode_signed_tx(body: list[Any], signature: bytes) -> bytes:
    """SignedTx (tag 2): `[2, body, signature]`, at most MAX_TX_BYTES."""
    raw = encode([_TAG_SIGNEDTX, body, signature])
    if len(raw) > MAX_TX_BYTES:
        raise EncodingError("SignedTx larger than MAX_TX_BYTES")
    return raw


# ---------------------------------------------------------------- structs (§2)


@dataclass(frozen=True, slots=True, kw_only=True)
class QuorumCert:
    epoch: int
    block_id: Digest
    round: int
    height: int
    signatures: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    chain_id: str
    epoch: int
    height: int
    round: int
    parent_id: Digest
    timestamp_ms: int
    proposer: bytes
    tx_root: Digest
    tx_count: int
    receipt_root: Digest
    acc_root: Digest
    acc_size: int
    state_hash: Digest
    next_validators_hash: Digest
    justify: QuorumCert
    block_id: Digest  # computed: compute_signing_root("header", header array)


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise ProofError(what)


def _is_uint(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**64


def _is_bytes(v: Any, n: int) -> bool:
    return isinstance(v, bytes) and len(v) == n


def _qc_from_array(a: Any) -> QuorumCert:
    _need(isinstance(a, list) and len(a) == 6 and a[0] == _TAG_QC, "QC: not [8, ...] of 6")
    _, epoch, block_id, rnd, height, sigs = a
    _need(_is_uint(epoch), "QC: epoch")
    _need(_is_bytes(block_id, 32) and _is_uint(rnd) and _is_uint(height), "QC: field types")
    _need(isinstance(sigs, list), "QC: signatures not a list")
    pairs: list[tuple[bytes, bytes]] = []
    for pair in sigs:
        _need(isinstance(pair, list) and len(pair) == 2, "QC: signature entry not a pair")
        node_id, sig = pair
        _need(_is_bytes(node_id, 20) and _is_bytes(sig, 64), "QC: node id 20 / signature 64")
        pairs.append((node_id, sig))
    ids = [p[0] for p in pairs]
    _need(all(a < b for a, b in itertools.pairwise(ids)), "QC: node ids not strictly ascending")
    return QuorumCert(
        epoch=epoch, block_id=Digest(block_id), round=rnd, height=height, signatures=tuple(pairs)
    )


def _header_from_array(a: Any) -> Header:
    _need(isinstance(a, list) and len(a) == 16 and a[0] == _TAG_HEADER, "header: not [5, ...]")
    (_, chain_id, epoch, height, rnd, parent, ts, proposer, tx_root, tx_count, receipt_root,
     acc_root, acc_size, state_hash, next_vhash, justify) = a  # fmt: skip
    _need(isinstance(chain_id, str), "header: chain_id")
    _need(all(_is_uint(v) for v in (epoch, height, rnd, tx_count, acc_size)), "header: integers")
    _need(isinstance(ts, int) and not isinstance(ts, bool), "header: timestamp_ms")
    _need(_is_bytes(proposer, 20), "header: proposer")
    for d in (parent, tx_root, receipt_root, acc_root, state_hash, next_vhash):
        _need(_is_bytes(d, 32), "header: digest length")
    return Header(
        chain_id=chain_id,
        epoch=epoch,
        height=height,
        round=rnd,
        parent_id=Digest(parent),
        timestamp_ms=ts,
        proposer=proposer,
        tx_root=Digest(tx_root),
        tx_count=tx_count,
        receipt_root=Digest(receipt_root),
        acc_root=Digest(acc_root),
        acc_size=acc_size,
        state_hash=Digest(state_hash),
        next_validators_hash=Digest(next_vhash),
        justify=_qc_from_array(justify),
        block_id=compute_signing_root("header", a),
    )


def decode_header(raw: bytes) -> Header:
    try:
        return _header_from_array(decode(raw, _NESTING_HEADER))
    except EncodingError as exc:
        raise ProofError(f"header: {exc}") from None


# ---------------------------------------------------------------- Merkle (§7)


def leaf_hash(data: bytes) -> Digest:
    return sm3(b"\x00" + data)


def _node_hash(left: bytes, right: bytes) -> Digest:
    return sm3(b"\x01" + left + right)


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2, exactly as protocol.md §7 writes it."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for c in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = _node_hash(c, r)
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = _node_hash(r, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


# ---------------------------------------------------------------- genesis (trust anchor)


@dataclass(frozen=True, slots=True, kw_only=True)
class GenesisInfo:
    """The validator set and chain id, read from the genesis file and hashed per §2/§6."""

    chain_id: str
    replay_window: int
    validators: dict[bytes, tuple[bytes, int]]  # node id -> (public key, power)
    genesis_hash: Digest  # compute_signing_root("genesis", Genesis) = block 0's parent_id


def load_genesis(path: str | Path) -> GenesisInfo:
    """Parse the JSON genesis file and recompute the Genesis struct's hash (tag 13).

    The JSON layout is not in the documents (finding); the field names follow the Genesis struct
    of protocol.md §2, and the recomputed hash must equal the file's own `genesis_hash`.
    """
    doc = json.loads(Path(path).read_text())
    validators = [
        [12, bytes.fromhex(v["pubkey"].removeprefix("0x")), v["power"], v["org"]]
        for v in doc["validators"]
    ]
    genesis = [
        13,
        doc["chain_id"],
        doc["timestamp_ms"],
        validators,
        [bytes.fromhex(o.removeprefix("0x")) for o in doc["observers"]],
        doc["replay_window"],
        [
            [bytes.fromhex(a["pubkey"].removeprefix("0x")), a["org"], a["role"]]
            for a in doc["accounts"]
        ],
        [[c["org"], c["weight"]] for c in doc.get("committee", [])],
        list(doc.get("gov_thresholds", [2, 3, 2, 3])),
    ]
    ghash = compute_signing_root("genesis", genesis)
    if "genesis_hash" in doc and bytes.fromhex(doc["genesis_hash"].removeprefix("0x")) != ghash:
        raise ProofError("genesis file: recomputed genesis hash differs from its genesis_hash")
    table: dict[bytes, tuple[bytes, int]] = {}
    for v in validators:
        pub, power = v[1], v[2]
        if not _is_on_curve(pub) or not _is_uint(power) or power == 0:
            raise ProofError("genesis file: bad validator key or power")
        table[sm3(pub)[:20]] = (pub, power)
    return GenesisInfo(
        chain_id=doc["chain_id"],
        replay_window=doc["replay_window"],
        validators=table,
        genesis_hash=ghash,
    )


# ---------------------------------------------------------------- proof verification (§9)


@dataclass(frozen=True, slots=True, kw_only=True)
class CertifiedTx:
    """What a verified bundle establishes."""

    tx_id: Digest
    height: int
    block_id: Digest
    receipt: list[Any]  # the decoded Receipt array [4, tx_id, status, result, events, error]
    certified_tip: Digest  # block committed by the 2-chain certificate
    acc_size: int
    acc_root: Digest


def _hex(value: Any, what: str, n: int | None = None) -> bytes:
    _need(isinstance(value, str) and value.startswith("0x"), f"{what}: not 0x hex")
    try:
        out = bytes.fromhex(value[2:])
    except ValueError:
        raise ProofError(f"{what}: bad hex") from None
    _need(n is None or len(out) == n, f"{what}: expected {n} bytes")
    return out


def _path(value: Any, what: str) -> list[bytes]:
    _need(isinstance(value, list), f"{what}: not a list")
    return [_hex(v, what, 32) for v in value]


def _int(value: Any, what: str) -> int:
    _need(_is_uint(value), f"{what}: not a non-negative integer")
    return int(value)


def _check_qc(qc: QuorumCert, chain_id: str, genesis: GenesisInfo, what: str) -> None:
    """More than 2/3 of the genesis voting power signed the vote root for this QC (§6)."""
    total = sum(power for _, power in genesis.validators.values())
    _need(qc.epoch == 0, f"{what}: epoch {qc.epoch} is not the genesis set's (0)")
    root = compute_signing_root("vote", [chain_id, qc.epoch, qc.block_id, qc.round, qc.height])
    power = 0
    for node_id, sig in qc.signatures:
        _need(node_id in genesis.validators, f"{what}: signer {node_id.hex()} not a validator")
        pub, weight = genesis.validators[node_id]
        _need(verify(pub, root, sig), f"{what}: signature of {node_id.hex()} does not verify")
        power += weight
    _need(3 * power > 2 * total, f"{what}: {power} of {total} voting power is not > 2/3")


def verify_tx_proof(
    bundle: dict[str, Any],
    *,
    genesis: GenesisInfo,
    expected_tx_id: bytes | None = None,
    link_headers: Sequence[bytes] = (),
) -> CertifiedTx:
    """Check every part of a `gm_getTransactionProof` bundle; raise ProofError on the first flaw.

    The tx's header (which carries `receipt_root`) must be certified too: §9 has `commit` start
    at it; a later anchor has its own certificate (`anchor_commit`). `link_headers` (headers a
    caller fetched itself, strictly between the tx's block and the anchor) are optional; if given
    they must link the tx's header to the anchor by parent ids.
    """
    _need(isinstance(bundle, dict), "bundle: not an object")
    try:
        return _verify_tx_proof(bundle, genesis, expected_tx_id, link_headers)
    except (KeyError, TypeError) as exc:
        raise ProofError(f"bundle: missing or malformed field {exc!r}") from None


def _verify_tx_proof(
    b: dict[str, Any],
    genesis: GenesisInfo,
    expected_tx_id: bytes | None,
    link_headers: Sequence[bytes],
) -> CertifiedTx:
    _need(b.get("version") == 2, "version: this client reads bundle version 2 (§9)")
    tx_id = _hex(b["tx_id"], "tx_id", 32)
    _need(expected_tx_id is None or tx_id == expected_tx_id, "tx_id: not the transaction asked")
    header = decode_header(_hex(b["header"], "header"))
    _need(header.chain_id == genesis.chain_id, "header: chain id differs from the genesis file")
    height = _int(b["height"], "height")
    index = _int(b["index_in_block"], "index_in_block")
    _need(height == header.height, "height differs from the header's")
    _need(_hex(b["block_tx_root"], "block_tx_root", 32) == header.tx_root, "block_tx_root")
    _need(index < header.tx_count, "index_in_block >= tx_count")
    leaf = leaf_hash(tx_id)
    block_path = _path(b["block_inclusion_proof"], "block_inclusion_proof")
    _need(
        verify_inclusion(leaf, index, header.tx_count, block_path, header.tx_root),
        "block inclusion path does not reach tx_root",
    )
    # Accumulator (§8).
    acc_index = _int(b["acc_index"], "acc_index")
    acc_size = _int(b["acc_size"], "acc_size")
    acc_root = _hex(b["acc_root"], "acc_root", 32)
    _need(acc_index == header.acc_size - header.tx_count + index, "acc_index")
    _need(acc_size >= header.acc_size, "acc_size smaller than the header's")
    _need(acc_size != header.acc_size or acc_root == header.acc_root, "acc_root != header's")
    acc_path = _path(b["acc_inclusion_proof"], "acc_inclusion_proof")
    _need(
        verify_inclusion(leaf, acc_index, acc_size, acc_path, acc_root),
        "accumulator inclusion path does not reach acc_root",
    )
    anchor = decode_header(_hex(b["anchor_header"], "anchor_header"))
    _need(anchor.chain_id == genesis.chain_id, "anchor: chain id")
    _need(anchor.height >= header.height, "anchor below the tx's block")
    _need((anchor.acc_size, anchor.acc_root) == (acc_size, acc_root), "anchor: acc_size/root")
    # Receipt (§9 extra fields) against the header's receipt_root.
    receipt_raw = _hex(b["receipt"], "receipt")
    try:
        receipt = decode(receipt_raw, _NESTING_RECEIPT)
    except EncodingError as exc:
        raise ProofError(f"receipt: {exc}") from None
    _need(
        isinstance(receipt, list) and len(receipt) == 6 and receipt[0] == _TAG_RECEIPT,
        "receipt: not [4, tx_id, status, result, events, error]",
    )
    _need(receipt[1] == tx_id, "receipt: names another transaction")
    receipt_path = _path(b["receipt_inclusion_proof"], "receipt_inclusion_proof")
    _need(
        verify_inclusion(
            leaf_hash(receipt_raw), index, header.tx_count, receipt_path, header.receipt_root
        ),
        "receipt inclusion path does not reach receipt_root",
    )
    # §9: `commit` runs from the tx's own header (which proves the receipt) to its certified
    # tip; the anchor is on it, or `anchor_commit` certifies the anchor the same way.
    chain, tip = _verify_commit(b["commit"], header, genesis, "commit")
    if b.get("anchor_commit") is None:
        _need(
            anchor.block_id in [h.block_id for h in chain],
            "commit: the anchor is not on the certified chain",
        )
    else:
        _verify_commit(b["anchor_commit"], anchor, genesis, "anchor_commit")
    if link_headers:
        links = [header, *(decode_header(h) for h in link_headers), anchor]
        for parent, child in itertools.pairwise(links):
            _need(child.parent_id == parent.block_id, "links: headers not linked by parent_id")
            _need(child.height == parent.height + 1, "links: heights not consecutive")
    return CertifiedTx(
        tx_id=Digest(tx_id),
        height=header.height,
        block_id=header.block_id,
        receipt=receipt,
        certified_tip=tip,
        acc_size=acc_size,
        acc_root=Digest(acc_root),
    )


def _verify_commit(
    commit: dict[str, Any], first: Header, genesis: GenesisInfo, what: str
) -> tuple[list[Header], Digest]:
    """Headers first..tip linked by parent_id; CommitProof [24, child, qc]: 2-chain rule."""
    _need(isinstance(commit, dict), f"{what}: not an object")
    raw_headers = commit["headers"]
    _need(isinstance(raw_headers, list) and len(raw_headers) > 0, f"{what}: no headers")
    chain = [decode_header(_hex(h, f"{what} header")) for h in raw_headers]
    _need(chain[0].block_id == first.block_id, f"{what}: first header is not the expected one")
    for parent, child in itertools.pairwise(chain):
        _need(child.parent_id == parent.block_id, f"{what}: headers not linked by parent_id")
        _need(child.height == parent.height + 1, f"{what}: heights not consecutive")
    _need(all(h.chain_id == genesis.chain_id for h in chain), f"{what}: chain id")
    tip = chain[-1]
    try:
        proof = decode(_hex(commit["proof"], f"{what} proof"), _NESTING_COMMIT_PROOF)
    except EncodingError as exc:
        raise ProofError(f"{what} proof: {exc}") from None
    _need(
        isinstance(proof, list) and len(proof) == 3 and proof[0] == _TAG_COMMIT_PROOF,
        f"{what} proof: not [24, child_header, qc]",
    )
    child = _header_from_array(proof[1])
    qc = _qc_from_array(proof[2])
    _need(child.chain_id == genesis.chain_id, f"{what} proof: child chain id")
    _need(child.parent_id == tip.block_id, f"{what} proof: child is not the tip's child")
    _need(child.justify.block_id == tip.block_id, f"{what} proof: child's justify is not the tip")
    _need(
        (child.justify.round, child.justify.height) == (tip.round, tip.height),
        f"{what} proof: child's justify round/height differ from the tip's",
    )
    _need(child.round == child.justify.round + 1, f"{what} proof: rounds not consecutive")
    _need(qc.block_id == child.block_id, f"{what} proof: qc does not name the child")
    _need((qc.round, qc.height) == (child.round, child.height), f"{what} proof: qc round/height")
    _check_qc(qc, genesis.chain_id, genesis, f"{what} qc")
    # The tip's own QC (inside the child): the first link of the 2-chain, checked as strictly.
    if tip.height == 0:
        _need(tip.parent_id == genesis.genesis_hash, "genesis block: parent is not the genesis")
    else:
        _check_qc(child.justify, genesis.chain_id, genesis, f"{what} child.justify")
    return chain, tip.block_id


# ---------------------------------------------------------------- JSON-RPC (rpc.md, OpenRPC)


class RpcClient:
    """JSON-RPC 2.0 over HTTP POST, standard library only."""

    def __init__(self, url: str, *, timeout_s: float = 40) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._next_id = 0

    def call(self, method: str, params: list[Any] | dict[str, Any] | None = None) -> Any:
        self._next_id += 1
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        if params is not None:
            request["params"] = params
        req = urllib.request.Request(
            self.url,
            data=json.dumps(request).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                reply = json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # e.g. 413 still carries a JSON-RPC error
            reply = json.loads(exc.read())
        if "error" in reply:
            err = reply["error"]
            raise RpcError(int(err["code"]), str(err.get("message", "")))
        return reply["result"]


# ---------------------------------------------------------------- the whole journey


def submit_evidence(
    rpc: RpcClient,
    key: KeyPair,
    genesis: GenesisInfo,
    args: list[Any],
    *,
    timeout_s: float = 30,
) -> tuple[Digest, dict[str, Any], CertifiedTx]:
    """Sign, submit, wait for the receipt, fetch and verify the proof.

    Returns (tx id, receipt JSON, verified proof). Raises RpcError, ProofError, TimeoutError.
    """
    info = rpc.call("gm_nodeInfo")
    _need(info["chainId"] == genesis.chain_id, "node serves another chain than the genesis file")
    window = info["replayWindow"]
    window = genesis.replay_window if window is None else int(window)
    head = int(rpc.call("gm_status")["height"])
    body = build_tx_body(
        chain_id=info["chainId"],
        sender=key.public,
        nonce=secrets.randbits(63),
        expiry=head + min(window, 100),  # inside (head, head + W]
        contract="evidence",
        method="submit",
        args=args,
    )
    tx_id = compute_tx_id(body)
    signature = sign(key, tx_id)
    assert verify(key.public, tx_id, signature), "own signature does not verify"
    raw = encode_signed_tx(body, signature)
    returned = _hex(rpc.call("gm_sendRawTransaction", ["0x" + raw.hex()]), "txId", 32)
    _need(returned == tx_id, "node computed another tx id than protocol.md §5")
    receipt = _wait_receipt(rpc, tx_id, timeout_s)
    proof = rpc.call("gm_getTransactionProof", ["0x" + tx_id.hex(), receipt["blockNumber"]])
    certified = verify_tx_proof(proof, genesis=genesis, expected_tx_id=tx_id)
    _need(
        "0x" + encode(certified.receipt).hex() == receipt["raw"],
        "receipt JSON raw differs from the proven receipt",
    )
    return tx_id, receipt, certified


def fetch_link_headers(rpc: RpcClient, bundle: dict[str, Any]) -> list[bytes]:
    """Encoded headers strictly between the bundle's header and its anchor (untrusted source:
    `verify_tx_proof` checks they form a parent chain)."""
    low = decode_header(_hex(bundle["header"], "header")).height
    high = decode_header(_hex(bundle["anchor_header"], "anchor_header")).height
    out = []
    for height in range(low + 1, high):
        block = rpc.call("gm_getBlockByNumber", [height])
        _need(block is not None, f"no block at height {height}")
        out.append(_hex(block["raw"], "raw header"))
    return out


def _wait_receipt(rpc: RpcClient, tx_id: bytes, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        wait_ms = max(1, min(30000, int((deadline - time.monotonic()) * 1000)))
        receipt = rpc.call("gm_waitForReceipt", ["0x" + tx_id.hex(), wait_ms])
        if receipt is not None and not receipt.get("pending", False):
            return dict(receipt)
    raise TimeoutError(f"no receipt for 0x{tx_id.hex()} within {timeout_s} s")

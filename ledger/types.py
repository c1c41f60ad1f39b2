"""Canonical protocol types: transactions, receipts, events, headers, blocks and consensus messages.

Rules this module keeps (docs/protocol.md is the byte-exact statement of them):
1. Every struct encodes as a msgpack array `[TAG, field1, field2, ...]` in declared order
   (`ledger.codec`); nested structs are nested arrays; optional structs are `nil` when absent.
2. Every struct checks its own fields in `__post_init__` (lengths, ranges, sort order), so a value
   that exists is valid in shape; `from_fields` turns any shape error into `DecodeError`.
3. Hashes and signatures are domain-separated: `compute_signing_root(domain, value) =
   SM3(domain || 0x00 || encode(value))`. Domain strings contain no NUL, so the set is prefix-free
   and a signature of one kind can never be replayed as another.
4. A transaction's id is the signing root of its *body*, computed by whoever receives it; it is not
   carried on the wire. The sender signs that id with SM2 (GB/T 32918.2, ID 1234567812345678).
5. A block's id is the signing root of its header; the header commits to the transactions (tx_root),
   the receipts (receipt_root), the global accumulator (acc_root, acc_size), the state-change chain
   (state_hash) and the QC that justifies its parent.
6. Nesting depth (docs/protocol.md, "Nesting depth"): a free-form value (a transaction's `args`
   list, a receipt's `result`, an event field's value) nests at most MAX_VALUE_DEPTH arrays, and
   its struct refuses it otherwise. Every struct declares `NESTING`, the deepest its encoding can
   nest, computed from its layout and its parts' NESTING; `decode` allows exactly that. So a
   container (block, proposal, block or sync response) accepts every transaction that admission
   accepts: no container can reduce what a transaction may hold (issue 10, fault 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum
from functools import cache
from typing import Any, ClassVar, NewType, Self

from gmchain.crypto_sm import sm3_hash
from gmchain.ledger.codec import (
    DEFAULT_LIMITS,
    DecodeError,
    DepthError,
    Limits,
    Value,
    check_value,
    decode,
    encode,
    encode_checked_fields,
)

__all__ = [
    "DIGEST_SIZE",
    "DOMAIN",
    "MAX_TX_BYTES",
    "MAX_VALIDATORS",
    "MAX_VALUE_DEPTH",
    "NODE_ID_SIZE",
    "PUBKEY_SIZE",
    "SIGNATURE_SIZE",
    "ZERO_DIGEST",
    "Address",
    "Block",
    "BlockHeader",
    "Digest",
    "Event",
    "Genesis",
    "GenesisValidator",
    "Height",
    "NodeId",
    "Proposal",
    "QuorumCert",
    "Receipt",
    "ReceiptStatus",
    "Round",
    "SignedTx",
    "TimeoutCert",
    "TimeoutVote",
    "TxBody",
    "Vote",
    "compute_signing_root",
    "decode_struct",
]

Height = NewType("Height", int)
Round = NewType("Round", int)
Digest = NewType("Digest", bytes)  # 32-byte SM3 output
NodeId = NewType("NodeId", bytes)  # 20 bytes: SM3(public key)[:20]
Address = NewType("Address", bytes)  # 20 bytes: SM3(public key)[:20], for transaction senders

DIGEST_SIZE = 32
NODE_ID_SIZE = 20
PUBKEY_SIZE = 65
SIGNATURE_SIZE = 64
ZERO_DIGEST = Digest(bytes(32))
MAX_TX_BYTES = 64 * 1024
MAX_VALIDATORS = 256  # a genesis admits at most this many (so a QC or TC has at most this many)
# Rule 6: how deep a free-form value may nest, counting its own array (`[1]` is 1, `[[1]]` is 2).
# 14 keeps every transaction admitted before the rule admissible: the codec's flat depth of 16
# over a whole SignedTx `[2, [1, ..., args]]` left exactly 14 levels for its args.
MAX_VALUE_DEPTH = 14
_U64 = 2**64 - 1

# One domain string per kind of hashed or signed message. Never reuse one for another kind.
DOMAIN: dict[str, bytes] = {
    "tx": b"GMCHAIN/TX/v1",
    "header": b"GMCHAIN/HEADER/v1",
    "vote": b"GMCHAIN/VOTE/v1",
    "timeout": b"GMCHAIN/TIMEOUT/v1",
    "proposal": b"GMCHAIN/PROPOSAL/v1",
    "genesis": b"GMCHAIN/GENESIS/v1",
    "attest": b"GMCHAIN/EVIDENCE-ATTEST/v1",
    "evidence-record": b"GMCHAIN/EVIDENCE-RECORD/v1",
    "state": b"GMCHAIN/STATE/v1",
}


def compute_signing_root(domain: str, value: Value) -> Digest:
    """SM3(DOMAIN[domain] || 0x00 || canonical bytes of value)."""
    return Digest(sm3_hash(DOMAIN[domain] + b"\x00" + encode(value)))


def _struct_root(domain: str, fields: list[Value]) -> Digest:
    """compute_signing_root for a built struct's fields (already checked; same bytes)."""
    return Digest(sm3_hash(DOMAIN[domain] + b"\x00" + encode_checked_fields(fields)))


class ReceiptStatus(IntEnum):
    """Outcome of one transaction. 0 is success; every other code comes with a readable error."""

    OK = 0
    FAILED = 1  # the contract refused the call (bad argument, rule violated); error says why
    UNKNOWN_CONTRACT = 2
    UNKNOWN_METHOD = 3
    BAD_ARGUMENTS = 4


# --- field checks --------------------------------------------------------------------------------


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def _check_bytes(name: str, value: object, size: int) -> None:
    # (messages are built only on failure: these run for every field of every struct)
    if not (isinstance(value, bytes) and len(value) == size):
        raise ValueError(f"{name}: expected {size} bytes")


def _check_int(name: str, value: object, lo: int = 0, hi: int = _U64) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi):
        raise ValueError(f"{name}: expected an integer in [{lo}, {hi}]")


def _check_str(name: str, value: object, max_len: int, *, allow_empty: bool = False) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string")
    n = len(value) if value.isascii() else len(value.encode())
    if n > max_len:
        raise ValueError(f"{name}: longer than {max_len} bytes")
    if not (allow_empty or n > 0):
        raise ValueError(f"{name}: must not be empty")


def _check_free_value(name: str, value: object) -> None:
    """A free-form value: canonical (ledger.codec rule 1) and at most MAX_VALUE_DEPTH deep."""
    try:
        check_value(value, MAX_VALUE_DEPTH)
    except DepthError as exc:
        raise ValueError(
            f"{name}: {exc} (a value may nest at most {MAX_VALUE_DEPTH} arrays, its own included)"
        ) from None


def _check_list(name: str, value: object, max_len: int) -> None:
    _need(isinstance(value, list | tuple), f"{name}: expected a list")
    assert isinstance(value, list | tuple)
    _need(len(value) <= max_len, f"{name}: more than {max_len} items")


def _unpack(cls_name: str, fields: object, tag: int, count: int) -> list[Any]:
    if not isinstance(fields, list) or len(fields) != count + 1:
        raise DecodeError(f"{cls_name}: expected an array of {count + 1} items")
    if fields[0] != tag or isinstance(fields[0], bool):
        raise DecodeError(f"{cls_name}: wrong type tag {fields[0]!r}, expected {tag}")
    return fields[1:]


@cache
def _limits_with_depth(limits: Limits, depth: int) -> Limits:
    return replace(limits, max_depth=depth)


class _Struct:
    """Mixin: canonical encoding for a frozen dataclass with a TAG.

    NESTING (rule 6) is the deepest its encoding can nest: 1 for its own array, plus the deepest
    field (a nested struct's NESTING, +1 for each list or pair around it, MAX_VALUE_DEPTH for a
    free-form value). Declared next to the layout it follows; tests/test_fault_01_nesting_depth.py
    checks it against the encoding of a deepest instance."""

    TAG: ClassVar[int]
    NESTING: ClassVar[int]
    _LIMITS: ClassVar[Limits]  # DEFAULT_LIMITS with max_depth = NESTING (set per subclass)
    __slots__ = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A struct without its own NESTING would decode under another's depth: refuse at import.
        assert isinstance(cls.__dict__.get("NESTING"), int), f"{cls.__name__}: declare NESTING"
        cls._LIMITS = replace(DEFAULT_LIMITS, max_depth=cls.NESTING)

    def to_fields(self) -> list[Value]:
        raise NotImplementedError

    @classmethod
    def _from(cls, items: list[Any]) -> Self:
        raise NotImplementedError

    @classmethod
    def field_count(cls) -> int:
        raise NotImplementedError

    @classmethod
    def from_fields(cls, fields: object) -> Self:
        items = _unpack(cls.__name__, fields, cls.TAG, cls.field_count())
        try:
            return cls._from(items)
        except (ValueError, TypeError) as exc:
            raise DecodeError(f"{cls.__name__}: {exc}") from exc

    def encode(self) -> bytes:
        # Every struct checks its fields when built (free-form values with check_value), so the
        # canonical-value walk of ledger.codec.encode is not repeated here.
        return encode_checked_fields(self.to_fields())

    @classmethod
    def decode(cls, data: bytes, limits: Limits | None = None) -> Self:
        """Decode `data` as this struct. The depth limit is always the struct's own NESTING
        (rule 6), whatever `limits` says; its size limits apply as given."""
        lim = cls._LIMITS if limits is None else _limits_with_depth(limits, cls.NESTING)
        return cls.from_fields(decode(data, lim))


def decode_struct(cls: type[_Struct], data: bytes) -> Any:
    """Decode bytes as `cls`, raising DecodeError (never anything else) on bad input."""
    return cls.decode(data)


# --- transactions, events, receipts ---------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TxBody(_Struct):
    """What the sender signs. `expiry` bounds replay: valid while head < expiry <= head + W."""

    TAG: ClassVar[int] = 1
    NESTING: ClassVar[int] = 1 + MAX_VALUE_DEPTH  # [1, ..., args]: args is a free-form value
    chain_id: str
    sender: bytes  # 65-byte uncompressed SM2 public key
    nonce: int  # any u64 the sender picks; makes otherwise identical calls distinct
    expiry: Height
    contract: str
    method: str
    args: tuple[Value, ...] = ()

    def __post_init__(self) -> None:
        _check_str("chain_id", self.chain_id, 64)
        _check_bytes("sender", self.sender, PUBKEY_SIZE)
        _check_int("nonce", self.nonce)
        _check_int("expiry", self.expiry, 1)
        _check_str("contract", self.contract, 32)
        _check_str("method", self.method, 32)
        _check_list("args", self.args, 64)
        object.__setattr__(self, "args", tuple(self.args))
        _check_free_value("args", list(self.args))

    def to_fields(self) -> list[Value]:
        return [
            self.TAG,
            self.chain_id,
            self.sender,
            self.nonce,
            self.expiry,
            self.contract,
            self.method,
            list(self.args),
        ]

    @classmethod
    def field_count(cls) -> int:
        return 7

    @classmethod
    def _from(cls, f: list[Any]) -> Self:
        return cls(
            chain_id=f[0],
            sender=f[1],
            nonce=f[2],
            expiry=Height(f[3]),
            contract=f[4],
            method=f[5],
            args=tuple(f[6]) if isinstance(f[6], list) else f[6],
        )

    def compute_id(self) -> Digest:
        return _struct_root("tx", self.to_fields())


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedTx(_Struct):
    """A transaction on the wire: the body and the sender's SM2 signature of the body's id."""

    TAG: ClassVar[int] = 2
    NESTING: ClassVar[int] = 1 + TxBody.NESTING  # [2, body, signature]
    body: TxBody
    signature: bytes
    # Cached id; not part of the encoding or of equality. init=False so that
    # dataclasses.replace() recomputes it instead of copying a stale one.
    _id: bytes = field(default=b"", init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        _need(isinstance(self.body, TxBody), "body: expected a TxBody")
        _check_bytes("signature", self.signature, SIGNATURE_SIZE)
        object.__setattr__(self, "_id", self.body.compute_id())

    @property
    def tx_id(self) -> Digest:
        return Digest(self._id)

    def to_fields(self) -> list[Value]:
        return [self.TAG, self.body.to_fields(), self.signature]

    @classmethod
    def field_count(cls) -> int:
        return 2

    @classmethod
    def _from(cls, f: list[Any]) -> Self:
        return cls(body=TxBody.from_fields(f[0]), signature=f[1])

    @classmethod
    def decode_tx(cls, data: bytes) -> SignedTx:
        """Decode a raw transaction, enforcing MAX_TX_BYTES."""
        if len(data) > MAX_TX_BYTES:
            raise DecodeError(f"transaction of {len(data)} bytes exceeds {MAX_TX_BYTES}")
        try:
            return cls.decode(data)
        except DepthError as exc:
            raise DecodeError(
                f"transaction {exc}: its args may nest at most {MAX_VALUE_DEPTH} arrays, the args"
                " list included (docs/protocol.md, Nesting depth)"
            ) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Event(_Struct):
    """Something a contract announces; `fields` are (name, value) pairs in the order emitted."""

    TAG: ClassVar[int] = 3
    NESTING: ClassVar[int] = 3 + MAX_VALUE_DEPTH  # [3, contract, name, [[name, value], ...]]
    contract: str
    name: str
    fields: tuple[tuple[str, Value], ...] = ()

    def __post_init__(self) -> None:
        _check_str("contract", self.contract, 32)
        _check_str("name", self.name, 64)
        _check_list("fields", self.fields, 32)
        pairs = []
        for pair in self.fields:
            _need(isinstance(pair, list | tuple) and len(pair) == 2, "fields: expected pairs")
            _check_str("field name", pair[0], 64)
            _check_free_value(f"field {pair[0]}", pair[1])
            pairs.append((pair[0], pair[1]))
        object.__setattr__(self, "fields", tuple(pairs))

    def to_fields(self) -> list[Value]:
        return [self.TAG, self.contract, self.name, [[k, v] for k, v in self.fields]]

    @classmethod
    def field_count(cls) -> int:
        return 3

    @classmethod
    def _from(cls, f: list[Any]) -> Self:
        _check_list("fields", f[2], 32)
        return cls(contract=f[0], name=f[1], fields=tuple(tuple(p) for p in f[2]))


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt(_Struct):
    """The result of one transaction: status, return value, events, and a readable error."""

    TAG: ClassVar[int] = 4
    # [4, tx_id, status, result, [event, ...], error]
    NESTING: ClassVar[int] = 1 + max(MAX_VALUE_DEPTH, 1 + Event.NESTING)
    tx_id: Digest
    status: ReceiptStatus
    result: Value = None
    events: tuple[Event, ...] = ()
    error: str = ""

    def __post_init__(self) -> None:
        _check_bytes("tx_id", self.tx_id, DIGEST_SIZE)
        _need(isinstance(self.status, int) and not isinstance(self.status, bool), "status: int")
        object.__setattr__(self, "status", ReceiptStatus(self.status))
        _check_list("events", self.events, 64)
        _need(all(isinstance(e, Event) for e in self.events), "events: expected Event items")
        object.__setattr__(self, "events", tuple(self.events))
        _check_str("error", self.error, 512, allow_empty=True)
        _check_free_value("result", self.result)

    def to_fields(self) -> list[Value]:
        return [
            self.TAG,
            self.tx_id,
            int(self.status),
            self.result,
            [e.to_fields() for e in self.events],
            self.error,
        ]

    @classmethod
    def field_count(cls) -> int:
        return 5

    @classmethod
    def _from(cls, f: list[Any]) -> Self:
        _check_list("events", f[3], 64)
        return cls(
            tx_id=Digest(f[0]),
            status=f[1],
            result=f[2],
            events=tuple(Event.from_fields(e) for e in f[3]),
            error=f[4],
        )


# --- consensus certificates and messages ---------------------------------------------------


def _check_sig_list(name: str, entries: Sequence[Any], width: int) -> None:
    """Entries are arrays whose first item is a NodeId, strictly ascending (no duplicates)."""
    _check_list(name, entries, 1024)
    prev = b""
    for e in entries:
        _need(isinstance(e, list | tuple) and len(e) == width, f"{name}: bad entry shape")
        _check_bytes(f"{name} signer", e[0], NODE_ID_SIZE)
        _need(e[0] > prev, f"{name}: signers must be strictly ascending")
        prev = e[0]
        _check_bytes(f"{name} signature", e[-1], SIGNATURE_SIZE)


@dataclass(frozen=True, slots=True, kw_only=True)
class QuorumCert(_Struct):
    """Votes of more than 2/3 of the voting power for one block (HotStuff's QC).

    Each signature signs `QuorumCert.signing_root(chain_id, block_id, round, height)`. The genesis
    QC has no signatures and certifies the genesis block by definition.
    """

    TAG: ClassVar[int] = 8
    NESTING: ClassVar[int] = 3  # [8, ..., [[signer, signature], ...]]
    block_id: Digest
    round: Round
    height: Height
    signatures: tuple[tuple[NodeId, bytes], ...] = ()

    def __post_init__(self) -> None:
        _check_bytes("block_id", self.block_id, DIGEST_SIZE)
        _check_int("round", self.round)
        _check_int("height", self.height)
        _check_sig_list("signatures", self.signatures, 2)
        object.__setattr__(self, "signatures", tuple((NodeId(a), b) for a, b in self.signatures))

    def to_fields(self) -> list[Value]:
        return [
            self.TAG,
            self.block_id,
            self.round,
            self.height,
            [[n, s] for n, s in self.signatures],
        ]

    @classmethod
    def field_count(cls) -> int:
        return 4

    @classmethod
    def _from(cls, f: list[Any]) -> Self:
        _check_list("signatures", f[3], 1024)
        return cls(
            block_id=Digest(f[0]),
            round=Round(f[1]),
            height=Height(f[2]),
            signatures=tuple(tuple(e) if isinstance(e, list) else e for e in f[3]),
        )

    @staticmethod
    def signing_root(chain_id: str, block_id: bytes, round_: int, height: int) -> Digest:
        return compute_signing_root("vote", [chain_id, block_id, round_, height])


@dataclass(frozen=True, slots=True, kw_only=True)
class Vote(_Struct):
    """One replica's vote for a block; sent to the next leader."""

    TAG: ClassVar[int] = 7
    NESTING: ClassVar[int] = 1  # scalars only
    block_id: Digest
    round: Round
    height: Height
    voter: NodeId
    signature: bytes

    def __post_init__(self) -> None:
        _check_bytes("block_id", self.block_id, DIGEST_SIZE)
        _check_int("round", self.round)
        _check_int("height", self.height)
        _check_bytes("voter", self.voter, NODE_ID_SIZE)
        _check_bytes("signature", self.signature, SIGNATURE_SIZE)

    def to_fields(self) -> list[Value]:
        return [self.TAG, self.block_id, self.round, self.height, self.voter, self.signature]

    @classmethod
    def field_count(cls) -> int:
        return 5

    @classmethod
    def _from(cls, f: list[Any]) -> Self:
        return cls(
            block_id=Digest(f[0]),
            round=Round(f[1]),
            height=Height(f[2]),
            voter=NodeId(f[3]),
            signature=f[4],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutVote(_Struct):
    """A replica gives up on `round`; carries its highest QC (Jolteon's timeout message).

    The signature signs `timeout_signing_root(chain_id, round, high_qc.round)`.
    """

    TAG: ClassVar[int] = 9
    NESTING: ClassVar[int] = 1 + QuorumCert.NESTING  # [9, round, high_qc, voter, signature]
    round: Round
    high_qc: QuorumCert
    voter: NodeId
    signature: bytes

    def __post_init__(self) -> None:
        _check_int("round", self.round)
        _need(isinstance(self.high_qc, QuorumCert), "high_qc: expected a QuorumCert")
        _check_bytes("voter", self.voter, NODE_ID_SIZE)
        _check_bytes("signature", self.signature, SIGNATURE_SIZE)

    def to_fields(self) -> list[Value]:
        return [self.TAG, self.round, self.high_qc.to_fields(), self.voter, self.signature]

    @classmethod
    def field_count(cls) -> int:
        return 4

    @classmethod
    def _from(cls, f: list[Any]) -> Self:
        return cls(
            round=Round(f[0]),
            high_qc=QuorumCert.from_fields(f[1]),
            voter=NodeId(f[2]),
            signature=f[3],
        )

    @staticmethod
    def signing_root(chain_id: str, round_: int, high_qc_round: int) -> Digest:
        return compute_signing_root("timeout", [chain_id, round_, high_qc_round])


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutCert(_Struct):
    """Timeouts of more than 2/3 of the voting power for `round`.

    Entries are (voter, that voter's high_qc round, signature), ascending by voter; `high_qc` is the
    highest QC among them, so the next leader can extend it.
    """

    TAG: ClassVar[int] = 10
    # [10, round, high_qc, [[voter, round, signature], ...]]
    NESTING: ClassVar[int] = 1 + max(QuorumCert.NESTING, 2)
    round: Round
    high_qc: QuorumCert
    entries: tuple[tuple[NodeId, int, bytes], ...] = ()

    def __post_init__(self) -> None:
        _check_int("round", self.round)
        _need(isinstance(self.high_qc, QuorumCert), "high_qc: expected a QuorumCert")
        _check_sig_list("entries", self.entries, 3)
        for e in self.entries:
            _check_int("entry high_qc round", e[1])
        object.__setattr__(
            self, "entries", tuple((NodeId(a), int(r), s) for a, r, s in self.entries)
        )

    def to_fields(self) -> list[Value]:
        return [
            self.TAG,
            self.round,
            self.high_qc.to_fields(),
            [[a, r, s] for a, r, s in self.entries],
        ]

    @classmethod
    def field_count(cls) -> int:
        return 3

    @classmethod
    def _from(cls, f: list[Any]) -> Self:
        _check_list("entries", f[2], 1024)
        return cls(
            round=Round(f[0]),
            high_qc=QuorumCert.from_fields(f[1]),
            entries=tuple(tuple(e) if isinstance(e, list) else e for e in f[2]),
        )


# --- blocks ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockHeader(_Struct):
    """A block header. Its signing root under DOMAIN["header"] is the block id."""

    TAG: ClassVar[int] = 5
    NESTING: ClassVar[int] = 1 + QuorumCert.NESTING  # [5, ..., justify]
    chain_id: str
    height: Height
    round: Round
    parent_id: Digest  # for genesis: the genesis config hash
    timestamp_ms: int  # proposer's clock; must exceed the parent's
    proposer: NodeId
    tx_root: Digest  # RFC 6962 root over the tx ids of this block
    tx_count: int
    receipt_root: Digest  # RFC 6962 root over the encoded receipts of this block
    acc_root: Digest  # global accumulator root after this block's txs
    acc_size: int  # number of txs in the accumulator after this block
    state_hash: Digest  # SM3 chain over every block's state writes (see docs/protocol.md)
    justify: QuorumCert  # QC for the parent (the genesis QC for height 1)
    # Cached block id; init=False so that dataclasses.replace() recomputes it.
    _id: bytes = field(default=b"", init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_str("chain_id", self.chain_id, 64)
        _check_int("height", self.height)
        _check_int("round", self.round)
        _check_bytes("parent_id", self.parent_id, DIGEST_SIZE)
        _check_int("timestamp_ms", self.timestamp_ms)
        _check_bytes("proposer", self.proposer, NODE_ID_SIZE)
        _check_bytes("tx_root", self.tx_root, DIGEST_SIZE)
        _check_int("tx_count", self.tx_count)
        _check_bytes("receipt_root", self.receipt_root, DIGEST_SIZE)
        _check_bytes("acc_root", self.acc_root, DIGEST_SIZE)
        _check_int("acc_size", self.acc_size)
        _check_bytes("state_hash", self.state_hash, DIGEST_SIZE)
        _need(isinstance(self.justify, QuorumCert), "justify: expected a QuorumCert")
        object.__setattr__(self, "_id", _struct_root("header", self.to_fields()))

    @property
    def block_id(self) -> Digest:
        return Digest(self._id)

    def to_fields(self) -> list[Value]:
        return [
            self.TAG,
            self.chain_id,
            self.height,
            self.round,
            self.parent_id,
            self.timestamp_ms,
            self.proposer,
            self.tx_root,
            self.tx_count,
            self.receipt_root,
            self.acc_root,
            self.acc_size,
            self.state_hash,
            self.justify.to_fields(),
        ]

    @classmethod
    def field_count(cls) -> int:
        return 13

    @classmethod
    def _from(cls, f: list[Any]) -> Self:
        return cls(
            chain_id=f[0],
            height=Height(f[1]),
            round=Round(f[2]),
            parent_id=Digest(f[3]),
            timestamp_ms=f[4],
            proposer=NodeId(f[5]),
            tx_root=Digest(f[6]),
            tx_count=f[7],
            receipt_root=Digest(f[8]),
            acc_root=Digest(f[9]),
            acc_size=f[10],
            state_hash=Digest(f[11]),
            justify=QuorumCert.from_fields(f[12]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Block(_Struct):
    """A header and its transactions (in execution order)."""

    TAG: ClassVar[int] = 6
    NESTING: ClassVar[int] = 1 + max(BlockHeader.NESTING, 1 + SignedTx.NESTING)  # [6, h, [tx]]
    header: BlockHeader
    txs: tuple[SignedTx, ...] = ()

    def __post_init__(self) -> None:
        _need(isinstance(self.header, BlockHeader), "header: expected a BlockHeader")
        _check_list("txs", self.txs, 100_000)
        _need(all(isinstance(t, SignedTx) for t in self.txs), "txs: expected SignedTx items")
        object.__setattr__(self, "txs", tuple(self.txs))
        _need(len(self.txs) == self.header.tx_count, "tx_count does not match the transactions")

    @property
    def block_id(self) -> Digest:
        return self.header.block_id

    def to_fields(self) -> list[Value]:
        return [self.TAG, self.header.to_fields(), [t.to_fields() for t in self.txs]]

    @classmethod
    def field_count(cls) -> int:
        return 2

    @classmethod
    def _from(cls, f: list[Any]) -> Self:
        _check_list("txs", f[1], 100_000)
        return cls(
            header=BlockHeader.from_fields(f[0]), txs=tuple(SignedTx.from_fields(t) for t in f[1])
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Proposal(_Struct):
    """A leader's proposal: the block, the TC that let it skip a round (if any), its signature.

    The signature signs `compute_signing_root("proposal", [chain_id, block_id])`.
    """

    TAG: ClassVar[int] = 11
    NESTING: ClassVar[int] = 1 + max(Block.NESTING, TimeoutCert.NESTING)  # [11, block, tc, sig]
    block: Block
    tc: TimeoutCert | None
    signature: bytes

    def __post_init__(self) -> None:
        _need(isinstance(self.block, Block), "block: expected a Block")
        _need(self.tc is None or isinstance(self.tc, TimeoutCert), "tc: expected a TimeoutCert")
        _check_bytes("signature", self.signature, SIGNATURE_SIZE)

    def to_fields(self) -> list[Value]:
        return [
            self.TAG,
            self.block.to_fields(),
            None if self.tc is None else self.tc.to_fields(),
            self.signature,
        ]

    @classmethod
    def field_count(cls) -> int:
        return 3

    @classmethod
    def _from(cls, f: list[Any]) -> Self:
        return cls(
            block=Block.from_fields(f[0]),
            tc=None if f[1] is None else TimeoutCert.from_fields(f[1]),
            signature=f[2],
        )

    @staticmethod
    def signing_root(chain_id: str, block_id: bytes) -> Digest:
        return compute_signing_root("proposal", [chain_id, block_id])


# --- genesis --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class GenesisValidator(_Struct):
    """A validator admitted at genesis: its SM2 public key, voting power and organisation."""

    TAG: ClassVar[int] = 12
    NESTING: ClassVar[int] = 1  # scalars only
    pubkey: bytes
    power: int
    org: str

    def __post_init__(self) -> None:
        _check_bytes("pubkey", self.pubkey, PUBKEY_SIZE)
        _check_int("power", self.power, 1, 2**32)
        _check_str("org", self.org, 64)

    @property
    def node_id(self) -> NodeId:
        return NodeId(sm3_hash(self.pubkey)[:NODE_ID_SIZE])

    def to_fields(self) -> list[Value]:
        return [self.TAG, self.pubkey, self.power, self.org]

    @classmethod
    def field_count(cls) -> int:
        return 3

    @classmethod
    def _from(cls, f: list[Any]) -> Self:
        return cls(pubkey=f[0], power=f[1], org=f[2])


@dataclass(frozen=True, slots=True, kw_only=True)
class Genesis(_Struct):
    """The chain's founding document; its hash is the genesis block's parent_id."""

    TAG: ClassVar[int] = 13
    # [13, ..., [validator, ...], [observer key, ...], W, [[key, org, role], ...]]
    NESTING: ClassVar[int] = 1 + max(1 + GenesisValidator.NESTING, 1, 2)
    chain_id: str
    timestamp_ms: int
    validators: tuple[GenesisValidator, ...]
    observers: tuple[bytes, ...] = ()  # SM2 public keys of admitted non-voting nodes
    replay_window: int = 1000  # W: a tx is valid while head < expiry <= head + W
    # Accounts admitted at genesis: (SM2 public key, org, role). Roles: "admin" may admit accounts.
    accounts: tuple[tuple[bytes, str, str], ...] = ()

    def __post_init__(self) -> None:
        _check_str("chain_id", self.chain_id, 64)
        _check_int("timestamp_ms", self.timestamp_ms)
        _check_list("validators", self.validators, MAX_VALIDATORS)
        _need(len(self.validators) >= 1, "validators: at least one")
        object.__setattr__(self, "validators", tuple(self.validators))
        ids = [v.node_id for v in self.validators]
        _need(len(set(ids)) == len(ids), "validators: duplicate key")
        _check_list("observers", self.observers, 256)
        for o in self.observers:
            _check_bytes("observer", o, PUBKEY_SIZE)
        object.__setattr__(self, "observers", tuple(self.observers))
        _check_int("replay_window", self.replay_window, 1, 1_000_000)
        _check_list("accounts", self.accounts, 4096)
        accounts = []
        for acct in self.accounts:
            _need(isinstance(acct, list | tuple) and len(acct) == 3, "accounts: expected triples")
            _check_bytes("account key", acct[0], PUBKEY_SIZE)
            _check_str("account org", acct[1], 64)
            _check_str("account role", acct[2], 16)
            accounts.append((acct[0], acct[1], acct[2]))
        object.__setattr__(self, "accounts", tuple(accounts))

    def to_fields(self) -> list[Value]:
        return [
            self.TAG,
            self.chain_id,
            self.timestamp_ms,
            [v.to_fields() for v in self.validators],
            list(self.observers),
            self.replay_window,
            [list(a) for a in self.accounts],
        ]

    @classmethod
    def field_count(cls) -> int:
        return 6

    @classmethod
    def _from(cls, f: list[Any]) -> Self:
        _check_list("validators", f[2], MAX_VALIDATORS)
        _check_list("observers", f[3], 256)
        _check_list("accounts", f[5], 4096)
        return cls(
            chain_id=f[0],
            timestamp_ms=f[1],
            validators=tuple(GenesisValidator.from_fields(v) for v in f[2]),
            observers=tuple(f[3]),
            replay_window=f[4],
            accounts=tuple(tuple(a) if isinstance(a, list) else a for a in f[5]),
        )

    def compute_hash(self) -> Digest:
        return compute_signing_root("genesis", self.to_fields())

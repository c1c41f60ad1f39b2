"""Transactions, events and receipts (docs/protocol.md sections 2, 5 and 7).

Rules this module keeps:
1. A transaction's id is the signing root of its *body* (`compute_signing_root("tx", body)`),
   computed by whoever receives it; it is not carried on the wire. The sender signs that id with
   SM2 (GB/T 32918.2, ID 1234567812345678).
2. A transaction's `args`, a receipt's `result` and an event field's value are free-form values:
   canonical, and nesting at most MAX_VALUE_DEPTH arrays (docs/protocol.md, "Nesting depth").
3. Each struct checks its own fields in `__post_init__`; its codec is derived from its fields
   (ledger.struct_codec), its tag registered in ledger.wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar

from gmchain.ledger.codec import INT_MAX, INT_MIN, DecodeError, DepthError, Value
from gmchain.ledger.scalars import (
    DIGEST_SIZE,
    MAX_TX_BYTES,
    MAX_VALUE_DEPTH,
    PUBKEY_SIZE,
    SIGNATURE_SIZE,
    Digest,
    Height,
    check_bytes,
    check_free_value,
    check_int,
    check_list,
    check_str,
    need,
)
from gmchain.ledger.struct_codec import Struct, free_form, max_items, wire_struct
from gmchain.ledger.wire import Tag, compute_encoded_root, compute_struct_root

__all__ = ["Event", "Receipt", "ReceiptStatus", "SignedTx", "TxBody"]

MAX_ARGS = 64
MAX_EVENT_FIELDS = 32
MAX_EVENTS = 64


class ReceiptStatus(IntEnum):
    """Outcome of one transaction. 0 is success; every other code comes with a readable error."""

    OK = 0
    FAILED = 1  # the contract refused the call (bad argument, rule violated); error says why
    UNKNOWN_CONTRACT = 2
    UNKNOWN_METHOD = 3
    BAD_ARGUMENTS = 4


@wire_struct
@dataclass(frozen=True, slots=True, kw_only=True)
class TxBody(Struct):
    """What the sender signs. `expiry` bounds replay: valid while head < expiry <= head + W."""

    TAG: ClassVar[Tag] = Tag.TX_BODY
    chain_id: str
    sender: bytes  # 65-byte uncompressed SM2 public key
    nonce: int  # any u64 the sender picks; makes otherwise identical calls distinct
    expiry: Height
    contract: str
    method: str
    args: tuple[Value, ...] = field(default=(), metadata=free_form(MAX_ARGS))

    def __post_init__(self) -> None:
        check_str("chain_id", self.chain_id, 64)
        check_bytes("sender", self.sender, PUBKEY_SIZE)
        check_int("nonce", self.nonce)
        check_int("expiry", self.expiry, 1)
        check_str("contract", self.contract, 32)
        check_str("method", self.method, 32)
        check_list("args", self.args, MAX_ARGS)
        object.__setattr__(self, "args", tuple(self.args))
        check_free_value("args", self.args)  # (a tuple is walked as the list it encodes)

    def compute_id(self) -> Digest:
        return compute_struct_root("tx", self.to_fields())


@wire_struct
@dataclass(frozen=True, slots=True, kw_only=True)
class SignedTx(Struct):
    """A transaction on the wire: the body and the sender's SM2 signature of the body's id."""

    TAG: ClassVar[Tag] = Tag.SIGNED_TX
    body: TxBody
    signature: bytes
    # The id, computed at the first `tx_id` (b"": not yet); not part of the encoding or of
    # equality. init=False so that dataclasses.replace() recomputes it instead of copying a
    # stale one. (Two threads may both compute it: the same value, written twice.)
    _id: Digest = field(default=Digest(b""), init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        need(isinstance(self.body, TxBody), "body: expected a TxBody")
        check_bytes("signature", self.signature, SIGNATURE_SIZE)

    @property
    def tx_id(self) -> Digest:
        tx_id = self._id
        if not tx_id:
            tx_id = self.body.compute_id()
            object.__setattr__(self, "_id", tx_id)
        return tx_id

    @classmethod
    def decode_tx(cls, data: bytes) -> SignedTx:
        """Decode a raw transaction, enforcing MAX_TX_BYTES.

        Its id is hashed from the body's bytes as they are in `data`, not from a re-encoding:
        decoding accepts only the canonical encoding (ledger.codec rule 3), so `data` is
        `[TAG, body, signature]` = 0x93, the one-byte tag, the body's own canonical bytes, then
        the signature as bin 8 (0xc4 0x40 and 64 bytes): the very bytes `compute_id` encodes."""
        if len(data) > MAX_TX_BYTES:
            raise DecodeError(f"transaction of {len(data)} bytes exceeds {MAX_TX_BYTES}")
        try:
            tx = cls.decode(data)
        except DepthError as exc:
            raise DecodeError(
                f"transaction {exc}: its args may nest at most {MAX_VALUE_DEPTH} arrays, the args"
                " list included (docs/protocol.md, Nesting depth)"
            ) from None
        object.__setattr__(tx, "_id", compute_encoded_root("tx", bytes(data[2:_SIG_TAIL])))
        return tx


# decode_tx's layout: a fixarray of 3, a positive-fixint tag, ..., a 64-byte bin 8 at the end.
assert 0 <= Tag.SIGNED_TX < 0x80 and SIGNATURE_SIZE == 64
_SIG_TAIL = -(2 + SIGNATURE_SIZE)


@wire_struct
@dataclass(frozen=True, slots=True, kw_only=True)
class Event(Struct):
    """Something a contract announces; `fields` are (name, value) pairs in the order emitted."""

    TAG: ClassVar[Tag] = Tag.EVENT
    contract: str
    name: str
    fields: tuple[tuple[str, Value], ...] = field(default=(), metadata=max_items(MAX_EVENT_FIELDS))

    def __post_init__(self) -> None:
        check_str("contract", self.contract, 32)
        check_str("name", self.name, 64)
        check_list("fields", self.fields, MAX_EVENT_FIELDS)
        pairs = []
        for pair in self.fields:
            need(isinstance(pair, list | tuple) and len(pair) == 2, "fields: expected pairs")
            check_str("field name", pair[0], 64)
            value = pair[1]
            t = type(value)
            # (a scalar leaf is checked inline; anything else by the full walk, which names it)
            if not (
                t is str
                or t is bytes
                or value is None
                or (t is int and INT_MIN <= value <= INT_MAX)
            ):
                check_free_value(f"field {pair[0]}", value)
            pairs.append((pair[0], value))
        object.__setattr__(self, "fields", tuple(pairs))


@wire_struct
@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt(Struct):
    """The result of one transaction: status, return value, events, and a readable error."""

    TAG: ClassVar[Tag] = Tag.RECEIPT
    tx_id: Digest
    status: ReceiptStatus
    result: Value = None
    events: tuple[Event, ...] = field(default=(), metadata=max_items(MAX_EVENTS))
    error: str = ""

    def __post_init__(self) -> None:
        check_bytes("tx_id", self.tx_id, DIGEST_SIZE)
        need(isinstance(self.status, int) and not isinstance(self.status, bool), "status: int")
        object.__setattr__(self, "status", ReceiptStatus(self.status))
        check_list("events", self.events, MAX_EVENTS)
        need(all(isinstance(e, Event) for e in self.events), "events: expected Event items")
        object.__setattr__(self, "events", tuple(self.events))
        check_str("error", self.error, 512, allow_empty=True)
        check_free_value("result", self.result)

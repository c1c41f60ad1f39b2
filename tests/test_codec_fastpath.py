"""Structs encode without re-walking their values; that must give the same canonical bytes, and
free-form values must be refused when the struct is built (not only when encoded)."""

from __future__ import annotations

import pytest

from gmchain.ledger.codec import encode
from gmchain.ledger.types import Event, Receipt, ReceiptStatus, SignedTx, TxBody

BODY = dict(
    chain_id="c",
    sender=b"\x04" + bytes(64),
    nonce=7,
    expiry=9,
    contract="evidence",
    method="submit",
)


def test_struct_encode_equals_checked_encode() -> None:
    body = TxBody(**BODY, args=("a", b"b", [1, -2, [True, None]], 2**64 - 1))
    tx = SignedTx(body=body, signature=bytes(64))
    ev = Event(contract="e", name="n", fields=(("k", [b"v", 3]),))
    rc = Receipt(tx_id=bytes(32), status=ReceiptStatus.OK, result=[["x", 1]], events=(ev,))
    for s in (body, tx, ev, rc):
        assert s.encode() == encode(s.to_fields())


@pytest.mark.parametrize("bad", [1.5, {"a": 1}, [[1.0]], 2**64, object()])
def test_free_form_values_are_refused_at_construction(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        TxBody(**BODY, args=(bad,))
    with pytest.raises((TypeError, ValueError)):
        Event(contract="e", name="n", fields=(("k", bad),))
    with pytest.raises((TypeError, ValueError)):
        Receipt(tx_id=bytes(32), status=ReceiptStatus.OK, result=bad)

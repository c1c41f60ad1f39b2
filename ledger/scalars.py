"""Named scalar types, protocol sizes, and the field checks every struct runs on construction.

Rules this module keeps:
1. Domain values have names (`Height`, `Round`, `Digest`, `NodeId`, `Address`), not bare int or
   bytes; they cost nothing at run time (NewType).
2. A check raises ValueError naming the field; a struct's decoder turns that into DecodeError (the
   sender's fault). Messages are built only on failure: these run for every field of every struct.
3. A free-form value (a transaction's args, a receipt's result, an event field's value) is
   canonical (ledger.codec rule 1) and nests at most MAX_VALUE_DEPTH arrays, its own included
   (docs/protocol.md, "Nesting depth").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NewType

from gmchain.ledger.codec import DepthError, check_value

__all__ = [
    "DIGEST_SIZE",
    "MAX_TX_BYTES",
    "MAX_VALIDATORS",
    "MAX_VALUE_DEPTH",
    "NODE_ID_SIZE",
    "PUBKEY_SIZE",
    "SIGNATURE_SIZE",
    "U64_MAX",
    "ZERO_DIGEST",
    "Address",
    "Digest",
    "Height",
    "NodeId",
    "Round",
    "check_bytes",
    "check_free_value",
    "check_int",
    "check_list",
    "check_sig_list",
    "check_str",
    "need",
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
# Rule 3: how deep a free-form value may nest, counting its own array (`[1]` is 1, `[[1]]` is 2).
# 14 keeps every transaction admitted before the rule admissible: the codec's flat depth of 16
# over a whole SignedTx `[2, [1, ..., args]]` left exactly 14 levels for its args.
MAX_VALUE_DEPTH = 14
U64_MAX = 2**64 - 1


def need(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def check_bytes(name: str, value: object, size: int) -> None:
    if not (isinstance(value, bytes) and len(value) == size):
        raise ValueError(f"{name}: expected {size} bytes")


def check_int(name: str, value: object, lo: int = 0, hi: int = U64_MAX) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi):
        raise ValueError(f"{name}: expected an integer in [{lo}, {hi}]")


def check_str(name: str, value: object, max_len: int, *, allow_empty: bool = False) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string")
    n = len(value) if value.isascii() else len(value.encode())
    if n > max_len:
        raise ValueError(f"{name}: longer than {max_len} bytes")
    if not (allow_empty or n > 0):
        raise ValueError(f"{name}: must not be empty")


def check_free_value(name: str, value: object) -> None:
    """Rule 3: canonical and at most MAX_VALUE_DEPTH deep."""
    try:
        check_value(value, MAX_VALUE_DEPTH)
    except DepthError as exc:
        raise ValueError(
            f"{name}: {exc} (a value may nest at most {MAX_VALUE_DEPTH} arrays, its own included)"
        ) from None


def check_list(name: str, value: object, max_len: int) -> None:
    need(isinstance(value, list | tuple), f"{name}: expected a list")
    assert isinstance(value, list | tuple)
    need(len(value) <= max_len, f"{name}: more than {max_len} items")


def check_sig_list(name: str, entries: Sequence[Any], width: int, max_len: int) -> None:
    """Entries are arrays whose first item is a NodeId, strictly ascending (no duplicates), and
    whose last item is a signature."""
    check_list(name, entries, max_len)
    prev = b""
    for e in entries:
        need(isinstance(e, list | tuple) and len(e) == width, f"{name}: bad entry shape")
        check_bytes(f"{name} signer", e[0], NODE_ID_SIZE)
        need(e[0] > prev, f"{name}: signers must be strictly ascending")
        prev = e[0]
        check_bytes(f"{name} signature", e[-1], SIGNATURE_SIZE)

"""SM2 key checks and signature verification for contracts, behind a small injectable interface.

Rules this module keeps:
1. Contracts never implement cryptography; they call `crypto_sm` (OpenSSL) through `Sm2Verifier`.
   SM2 verification and the on-curve check are deterministic functions of their inputs, so they
   are allowed on the execution path (GB/T 32918.2 §7; the default ID of GB/T 35276).
2. The verifier is given to a contract through its constructor (STYLE.md habit 10), so tests can
   cross-check with an independent implementation (the pure-Python `gmssl`).
3. An address is `sm3(pubkey)[:20]` (ledger/types.py, `Address`).
"""

from __future__ import annotations

from typing import Protocol

from gmchain.crypto_sm import sm3_hash

__all__ = ["ADDRESS_SIZE", "CryptoSmVerifier", "Sm2Verifier", "address_of"]

ADDRESS_SIZE = 20


def address_of(pubkey: bytes) -> bytes:
    """The 20-byte account address of a 65-byte SM2 public key."""
    return sm3_hash(pubkey)[:ADDRESS_SIZE]


class Sm2Verifier(Protocol):
    def is_valid_public(self, pubkey: bytes) -> bool:
        """True if `pubkey` is 0x04||X||Y on the SM2 curve."""
        ...

    def verify(self, pubkey: bytes, msg: bytes, sig: bytes) -> bool:
        """True if `sig` (64-byte r||s) is a valid SM2 signature of `msg` by `pubkey`."""
        ...


class CryptoSmVerifier:
    """The production verifier: `crypto_sm.PublicKey` (OpenSSL's C code)."""

    def is_valid_public(self, pubkey: bytes) -> bool:
        from gmchain.crypto_sm import InvalidKey, PublicKey

        try:
            PublicKey.from_bytes(pubkey)
        except (InvalidKey, ValueError):
            return False
        return True

    def verify(self, pubkey: bytes, msg: bytes, sig: bytes) -> bool:
        from gmchain.crypto_sm import InvalidKey, PublicKey

        try:
            key = PublicKey.from_bytes(pubkey)
        except (InvalidKey, ValueError):
            return False
        return bool(key.verify(msg, sig))

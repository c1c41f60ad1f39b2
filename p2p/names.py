"""The p2p transport's own namespace: its frame tags and its hash domains.

Rules this module keeps (docs/architecture.md, "The wire registry"; docs/p2p.md):
1. Every message of the transport is numbered by a `FrameTag`: the handshake messages before a
   session exists, the sealed session frames after. These number the envelope, never what it
   carries: a DATA frame's payload is a struct numbered by ledger.wire.Tag, which the transport
   does not read and ledger never sees framed. So the two are separate namespaces, and p2p, which
   may import only crypto_sm, keeps its own table here.
2. Every `P2PDomain` prefixes an SM3 input that the node key signs (authentication digests), that
   a MAC covers, or that derives keys. `enum.unique` refuses a repeated tag or string at import.
   The same node key signs consensus votes, so tests/test_wire_registry.py checks these strings
   together with ledger.wire's: no repeat, no NUL, none a prefix of another.
"""

from __future__ import annotations

from enum import Enum, IntEnum, unique

__all__ = ["FrameTag", "P2PDomain"]


@unique
class FrameTag(IntEnum):
    """Handshake messages (p2p/handshake.py) and session frames (p2p/session.py)."""

    INITIATOR_HELLO = 1
    RESPONDER_HELLO = 2
    INITIATOR_AUTH = 3
    RESPONDER_AUTH = 4
    DATA = 16
    PING = 17
    CLOSE = 18


@unique
class P2PDomain(bytes, Enum):
    """Hash and key-derivation domains of the handshake (docs/p2p.md, "Handshake")."""

    TRANSCRIPT = b"GMCHAIN/P2P/HANDSHAKE/TRANSCRIPT/v1"
    HELLO = b"GMCHAIN/P2P/HANDSHAKE/HELLO/v1"
    AUTH_I = b"GMCHAIN/P2P/HANDSHAKE/AUTH-I/v1"
    AUTH_R = b"GMCHAIN/P2P/HANDSHAKE/AUTH-R/v1"
    FIN_I = b"GMCHAIN/P2P/HANDSHAKE/FIN-I/v1"
    FIN_R = b"GMCHAIN/P2P/HANDSHAKE/FIN-R/v1"
    KDF = b"GMCHAIN/P2P/KDF/v1/"

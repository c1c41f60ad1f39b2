"""Sealed transport frames after the handshake: SM4-GCM with explicit sequence numbers.

Frame layout (docs/p2p.md §4):
  u32 len || seq (u64 big-endian) || SM4-GCM(key, nonce = iv XOR (0^32 || seq),
                                             plaintext, aad = u32 len || seq) (ciphertext || tag16)
Plaintext is one transport message, a msgpack array:
  [16, payload:bin]  DATA   (opaque application bytes, in order)
  [17]               PING   (keepalive; sent after idle_timeout/3 without traffic)
  [18, reason:str]   CLOSE  (orderly goodbye, e.g. "rekey", "shutdown")

Rules kept here:
- Each direction has its own key and IV (docs/p2p.md §3), so the two directions never share a
  nonce; within a direction seq starts at 0 and increases by one per frame, so a nonce is never
  reused. The sealer refuses to wrap (RFC 8446 §5.3 forbids sequence wrap; we close instead).
- The receiver accepts only seq == expected: seq < expected is a "replay", seq > expected a
  "reorder" (TCP delivers in order, so a gap means frames were dropped or reordered by someone
  in the path). The seq check comes first so the reason is precise, but it is the GCM tag (seq
  is in the nonce and the AAD) that makes the check trustworthy.
- Tag mismatch -> "decrypt". Anything but a well-formed transport message -> "bad_tag" /
  "malformed". All are RemoteProtocolError: the connection is closed and the peer banned.

Sources: NIST SP 800-38D §8.2.1 (deterministic GCM nonces); RFC 8446 §5.3 (per-record nonce =
IV XOR sequence number); RFC 8998 (SM4-GCM in TLS 1.3); GB/T 32907 (SM4).
"""

from __future__ import annotations

from dataclasses import dataclass

from gmchain.crypto_sm import CryptoError, sm4_gcm_decrypt, sm4_gcm_encrypt
from gmchain.p2p.config import RemoteProtocolError
from gmchain.p2p.framing import FRAME_HEADER_SIZE, decode_message, encode_message, peek_tag
from gmchain.p2p.names import FrameTag

__all__ = [
    "FRAME_OVERHEAD",
    "MAX_SEQ",
    "PING_MESSAGE",
    "Close",
    "Data",
    "FrameOpener",
    "FrameSealer",
    "Ping",
    "SessionExhausted",
    "TransportMessage",
    "compute_nonce",
    "decode_transport",
    "encode_close",
    "encode_data",
]

SEQ_SIZE = 8
GCM_TAG_SIZE = 16
MAX_SEQ = (1 << 64) - 1  # the sealer stops before using this value
FRAME_OVERHEAD = SEQ_SIZE + GCM_TAG_SIZE + 16  # seq + tag + msgpack array/bin headers (<= 7)

TAG_DATA = int(FrameTag.DATA)  # tags registered in p2p/names.py
TAG_PING = int(FrameTag.PING)
TAG_CLOSE = int(FrameTag.CLOSE)
MAX_CLOSE_REASON = 64


class SessionExhausted(Exception):
    """The sequence space of this session is used up; the caller must close and re-handshake."""


def compute_nonce(iv: bytes, seq: int) -> bytes:
    """nonce = iv XOR (0^32 || u64(seq)), RFC 8446 §5.3 style, 12 bytes."""
    return (int.from_bytes(iv, "big") ^ seq).to_bytes(12, "big")


class FrameSealer:
    """Seals outbound transport messages into wire frames for one direction."""

    __slots__ = ("_iv", "_key", "bytes_sealed", "next_seq")

    def __init__(self, key: bytes, iv: bytes) -> None:
        self._key = key
        self._iv = iv
        self.next_seq = 0  # invariant: every seq < next_seq has been used exactly once
        self.bytes_sealed = 0

    def seal(self, plaintext: bytes) -> bytes:
        """Return the complete wire frame (length prefix included) carrying `plaintext`."""
        seq = self.next_seq
        if seq >= MAX_SEQ:
            raise SessionExhausted("sequence space exhausted")
        seq_bytes = seq.to_bytes(SEQ_SIZE, "big")
        header = (SEQ_SIZE + len(plaintext) + GCM_TAG_SIZE).to_bytes(FRAME_HEADER_SIZE, "big")
        sealed = sm4_gcm_encrypt(
            self._key, compute_nonce(self._iv, seq), plaintext, aad=header + seq_bytes
        )
        self.next_seq = seq + 1
        self.bytes_sealed += len(plaintext)
        return header + seq_bytes + sealed


class FrameOpener:
    """Opens inbound wire frames for one direction, enforcing the sequence."""

    __slots__ = ("_iv", "_key", "expected_seq")

    def __init__(self, key: bytes, iv: bytes) -> None:
        self._key = key
        self._iv = iv
        self.expected_seq = 0  # invariant: frames 0..expected_seq-1 were accepted, in order

    def open(self, header: bytes, body: bytes) -> bytes:
        """Return the plaintext of a frame whose length prefix was `header`."""
        if len(body) < SEQ_SIZE + GCM_TAG_SIZE:
            raise RemoteProtocolError("malformed", "frame shorter than seq + tag")
        seq = int.from_bytes(body[:SEQ_SIZE], "big")
        if seq < self.expected_seq:
            raise RemoteProtocolError("replay", f"seq {seq} < {self.expected_seq}")
        if seq > self.expected_seq:
            raise RemoteProtocolError("reorder", f"seq {seq} > {self.expected_seq}")
        try:
            plaintext = sm4_gcm_decrypt(
                self._key,
                compute_nonce(self._iv, seq),
                body[SEQ_SIZE:],
                aad=header + body[:SEQ_SIZE],
            )
        except CryptoError:
            raise RemoteProtocolError("decrypt", f"bad tag at seq {seq}") from None
        self.expected_seq = seq + 1
        return plaintext


@dataclass(frozen=True, slots=True, kw_only=True)
class Data:
    payload: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Close:
    reason: str


TransportMessage = Data | Ping | Close

PING_MESSAGE = encode_message([TAG_PING])


def encode_data(payload: bytes) -> bytes:
    return encode_message([TAG_DATA, payload])


def encode_close(reason: str) -> bytes:
    return encode_message([TAG_CLOSE, reason[:MAX_CLOSE_REASON]])


def decode_transport(plaintext: bytes) -> TransportMessage:
    """Decode one transport message strictly (see module docstring for the layouts)."""
    tag = peek_tag(plaintext)
    if tag == TAG_DATA:
        _, payload = decode_message(plaintext, TAG_DATA, 2)
        if type(payload) is not bytes:
            raise RemoteProtocolError("malformed", "DATA payload is not bin")
        return Data(payload=payload)
    if tag == TAG_PING:
        decode_message(plaintext, TAG_PING, 1)
        return Ping()
    if tag == TAG_CLOSE:
        _, reason = decode_message(plaintext, TAG_CLOSE, 2)
        if type(reason) is not str or len(reason) > MAX_CLOSE_REASON:
            raise RemoteProtocolError("malformed", "CLOSE reason")
        return Close(reason=reason)
    raise RemoteProtocolError("bad_tag", f"transport tag {tag!r}")

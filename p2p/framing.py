"""Length-prefixed frames with a hard size cap, and strict msgpack decoding of message arrays.

Rules kept here:
- Wire frame = u32 big-endian body length || body. The cap is checked on the 4-byte prefix,
  before any body byte is buffered, so an oversize announcement costs nothing (DESIGN.md
  "Transport": length-prefixed frames with hard caps). Zero-length bodies are refused.
- The decoder buffers at most one partial frame plus the last chunk read; the caller feeds
  a chunk only after draining complete frames, so memory per connection is bounded by
  `max_body + chunk size`.
- Every message is a msgpack array `[tag, field...]` (DESIGN.md "Encoding"); decoding rejects
  trailing bytes, wrong arity, wrong tag, maps, floats and any non-canonical encoding (the bytes
  must equal the re-encoding of the decoded value).
"""

from __future__ import annotations

from typing import Any

import msgpack

from gmchain.p2p.config import RemoteProtocolError

__all__ = [
    "FRAME_HEADER_SIZE",
    "FrameDecoder",
    "decode_message",
    "encode_frame",
    "encode_message",
    "peek_tag",
]

FRAME_HEADER_SIZE = 4
_MAX_U32 = 0xFFFFFFFF


def encode_frame(body: bytes) -> bytes:
    """Prefix `body` with its u32 big-endian length."""
    if not 0 < len(body) <= _MAX_U32:
        raise ValueError("frame body must be 1..2^32-1 bytes")
    return len(body).to_bytes(FRAME_HEADER_SIZE, "big") + body


class FrameDecoder:
    """Incremental decoder: `feed()` bytes, then pull frames with `next_frame()`."""

    __slots__ = ("_buf", "_pos", "max_body")

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body  # may be raised after the handshake; checked per frame
        self._buf = bytearray()
        self._pos = 0  # invariant: bytes before _pos are consumed

    def feed(self, data: bytes) -> None:
        if self._pos and self._pos * 2 >= len(self._buf):
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._buf) - self._pos

    def next_frame(self) -> tuple[bytes, bytes] | None:
        """Return (header, body) of the next complete frame, or None if more bytes are needed.

        Raises RemoteProtocolError("oversize" | "empty_frame") on a bad length prefix.
        """
        buf, pos = self._buf, self._pos
        if len(buf) - pos < FRAME_HEADER_SIZE:
            return None
        header = bytes(buf[pos : pos + FRAME_HEADER_SIZE])
        n = int.from_bytes(header, "big")
        if n > self.max_body:
            raise RemoteProtocolError("oversize", f"frame of {n} bytes, cap {self.max_body}")
        if n == 0:
            raise RemoteProtocolError("empty_frame")
        end = pos + FRAME_HEADER_SIZE + n
        if len(buf) < end:
            return None
        body = bytes(buf[pos + FRAME_HEADER_SIZE : end])
        self._pos = end
        return header, body


def encode_message(fields: list[Any]) -> bytes:
    """Canonical msgpack encoding of a message array (bytes as bin, str as str)."""
    out: bytes = msgpack.packb(fields, use_bin_type=True)
    return out


def decode_message(data: bytes, tag: int, arity: int) -> list[Any]:
    """Decode a `[tag, field...]` array of exactly `arity` items, strictly.

    Raises RemoteProtocolError("malformed" | "bad_tag" | "non_canonical").
    """
    try:
        obj = msgpack.unpackb(
            data, raw=False, use_list=True, strict_map_key=True, max_map_len=0, max_ext_len=0
        )
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        raise RemoteProtocolError("malformed", type(e).__name__) from None
    if not isinstance(obj, list) or not obj:
        raise RemoteProtocolError("malformed", "not an array")
    if type(obj[0]) is not int or obj[0] != tag:
        raise RemoteProtocolError("bad_tag", repr(obj[0])[:20])
    if len(obj) != arity:
        raise RemoteProtocolError("malformed", f"arity {len(obj)} != {arity}")
    if encode_message(obj) != data:
        raise RemoteProtocolError("non_canonical")
    return obj


def peek_tag(data: bytes) -> int | None:
    """The tag of a message array without full validation (None if it does not look like one)."""
    # fixarray header (0x91..0x9f) then a positive fixint tag
    if len(data) >= 2 and 0x91 <= data[0] <= 0x9F and data[1] < 0x80:
        return data[1]
    return None

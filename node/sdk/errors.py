"""The SDK's exceptions and its hex helpers (rules 4 and 5 of gmchain.node.sdk).

Every failure the SDK reports is an `SdkError`: `NodeUnreachable` (no connection), `RpcError`
(the node answered with a JSON-RPC error: code, message, data), `TxTimeout` (submitted, no receipt
in time) or a plain `SdkError` (a bad reply, a failed transaction, a bad proof). Binary values on
the wire are `0x` lowercase hex (JSON-RPC 2.0 + docs/rpc.md).
"""

from __future__ import annotations

from typing import Any

__all__ = ["NodeUnreachable", "RpcError", "SdkError", "TxTimeout", "from_hex", "to_hex"]


class SdkError(Exception):
    """Something the caller should read: a bad reply, a failed transaction, a bad proof."""


class NodeUnreachable(SdkError):
    """No connection to the node (refused, DNS, timeout)."""

    def __init__(self, url: str, reason: str = "") -> None:
        hint = "is it running? (gmchain dev)"
        if reason.startswith("TLS"):  # reached, but its certificate is not trusted (or no TLS)
            hint = f"{reason} (trust the node's certificate with ca_file / --ca-file)"
        super().__init__(f"cannot reach the node at {url}: {hint}")
        self.url = url
        self.reason = reason


class RpcError(SdkError):
    """The node answered with a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.data = data


class TxTimeout(SdkError):
    """The transaction was submitted but no receipt arrived in time; it may still commit."""

    def __init__(self, tx_id: bytes, timeout_s: float) -> None:
        super().__init__(
            f"transaction {to_hex(tx_id)} submitted but not committed within {timeout_s:g} s "
            "(it may still commit: look it up with `gmchain tx get`)"
        )
        self.tx_id = tx_id


def to_hex(data: bytes) -> str:
    """`0x` + lowercase hex, the RPC's binary format."""
    return "0x" + bytes(data).hex()


def from_hex(text: str, length: int | None = None, *, what: str = "value") -> bytes:
    """Parse `0x` hex (the prefix is optional for user input); raise SdkError naming `what`."""
    if not isinstance(text, str):
        raise SdkError(f"{what}: expected a hex string, got {type(text).__name__}")
    body = text[2:] if text[:2] in ("0x", "0X") else text
    try:
        out = bytes.fromhex(body)
    except ValueError:
        raise SdkError(f"{what}: not valid hex: {text[:80]!r}") from None
    if length is not None and len(out) != length:
        raise SdkError(f"{what}: expected {length} bytes, got {len(out)}")
    return out

"""TLS for the JSON-RPC and WebSocket listener (issue 14 item 2; docs/rpc.md "TLS").

Rules this module keeps:
1. The standard library's `ssl` (OpenSSL), TLS 1.2 or later only: an older protocol version is
   refused in the handshake. A client that speaks plain HTTP to a TLS port fails the handshake;
   nothing it sent reaches the JSON-RPC layer.
2. The certificate chain and its private key are PEM files (`rpc_tls_cert`, `rpc_tls_key`).
   At start an unusable pair is a startup error. `reload()` (SIGHUP) loads both into a NEW
   context and uses it only if the pair loads and matches; otherwise the context in use stays,
   the error is logged, and `reload()` answers False. A half-loaded pair is never served.
3. The listening socket keeps one SSLContext for its life; every handshake is switched to the
   current context in its ClientHello callback (`sni_callback`, which OpenSSL runs for every
   ClientHello, with or without a server name), so a reload applies to new connections and
   established ones keep theirs.

Sources: Python `ssl` documentation (SSLContext.sni_callback: "the callback may set the
SSLSocket.context attribute"); RFC 8446 / RFC 5246 (TLS 1.3 / 1.2); RFC 6066 §3 (SNI).
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

__all__ = ["RpcTls", "TlsError", "compute_server_context"]

log = logging.getLogger("gmchain.rpc")


class TlsError(ValueError):
    """The certificate or key cannot be used (the message names the file and why)."""


def compute_server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context for one certificate/key pair (rules 1 and 2). Raises TlsError."""
    for what, path in (("certificate", cert_file), ("key", key_file)):
        if not Path(path).is_file():
            raise TlsError(f"TLS {what} file {path} not found")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION  # CRIME (RFC 7457 §2.6)
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise TlsError(f"TLS certificate {cert_file} / key {key_file}: {exc}") from None
    return ctx


class RpcTls:
    """The listener's TLS: the context in use and its reload (rules 2, 3)."""

    def __init__(self, cert_file: str, key_file: str) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self._current = compute_server_context(cert_file, key_file)  # the pair served now
        # The listener's own context: the first pair, and the switch to the current one.
        self._listener = compute_server_context(cert_file, key_file)
        self._listener.sni_callback = self._on_client_hello
        self.reloads = 0  # pairs loaded by reload() (for tests and the log)

    @property
    def listener_context(self) -> ssl.SSLContext:
        """The context the listening socket is created with (rule 3)."""
        return self._listener

    def reload(self) -> bool:
        """Rule 2: read the pair again; keep the old one (and log why) if it is unusable."""
        try:
            fresh = compute_server_context(self.cert_file, self.key_file)
        except TlsError as exc:
            log.error("SIGHUP: TLS pair not reloaded, still serving the previous one: %s", exc)
            return False
        self._current = fresh
        self.reloads += 1
        log.info("SIGHUP: TLS certificate %s reloaded", self.cert_file)
        return True

    def _on_client_hello(
        self, conn: ssl.SSLObject | ssl.SSLSocket, _server_name: str | None, _ctx: ssl.SSLContext
    ) -> None:
        if conn.context is not self._current:
            conn.context = self._current

"""An independent read-login client, written only from docs/rpc.md ("TLS", "Read authentication")
and docs/sites.md ("Clients", "peers.json").

It does not import gmchain's login helpers, RPC server or SDK: the signed message is built here
from the documented bytes, with `msgpack` for the canonical encoding (protocol.md section 1) and
crypto_sm only for the SM3 and SM2 primitives (and the key-file format, docs/crypto.md). A bug
shared by the node and this client can then only come from the documents.

Rules it keeps, each with the sentence of the docs it comes from:
- L1 (sites.md "Clients"): the site's certificate is `rpc_tls_cert` of its peers.json entry; its
  SM3 over the DER bytes must equal `rpc_tls_sm3` (and the fingerprint the operator announced),
  else nothing is sent. The certificate is the only CA trusted; the host name is checked (the
  subjectAltName is the RPC host, dialled exactly).
- L2 (rpc.md "TLS"): TLS 1.2 or later.
- L3 (rpc.md "Logging in" 2): login root = SM3("GMCHAIN/RPC-LOGIN/v1" || 0x00 ||
  enc([chainId, nodeId, challenge])), enc = msgpack with a text string and two byte strings;
  `chainId` from gm_nodeInfo, `nodeId` the answering node's 20-byte address — this client also
  requires it to equal peers.json's `node_id` for the site it dialled.
- L4 (rpc.md "Logging in" 2, protocol.md section 4): the SM2 signature (ID 1234567812345678) of
  the 32-byte root, sent as 64-byte r || s; the public key 65 bytes uncompressed.
- L5 (rpc.md "Logging in" 4): later requests carry `Authorization: Bearer 0x<token>`.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from gmchain.crypto_sm import PrivateKey, sm3_hash

__all__ = [
    "LOGIN_DOMAIN",
    "LoginError",
    "PinnedSite",
    "RpcRefused",
    "Session",
    "compute_login_root",
    "load_pinned_site",
    "login",
]

LOGIN_DOMAIN = b"GMCHAIN/RPC-LOGIN/v1"  # protocol.md section 3, the rpc-login row


class LoginError(ValueError):
    """The docs' preconditions do not hold (certificate, fingerprint, node id)."""


class RpcRefused(Exception):
    """A JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data


@dataclass(frozen=True, slots=True, kw_only=True)
class PinnedSite:
    """One site of peers.json whose certificate matched its fingerprint (rule L1)."""

    name: str
    org: str
    url: str
    node_id: bytes
    cert_pem: str
    context: ssl.SSLContext


def _hex(value: str, size: int | None = None) -> bytes:
    if not value.startswith("0x"):
        raise LoginError(f"expected 0x hex, got {value!r}")
    raw = bytes.fromhex(value[2:])
    if size is not None and len(raw) != size:
        raise LoginError(f"expected {size} bytes, got {len(raw)}")
    return raw


def load_pinned_site(peers_file: Path, name: str, announced_sm3: str | None = None) -> PinnedSite:
    """The site `name` of peers.json, its certificate checked against its fingerprint (L1, L2)."""
    peers = json.loads(Path(peers_file).read_text())
    entry = next((s for s in peers["sites"] if s["name"] == name), None)
    if entry is None:
        raise LoginError(f"no site {name!r} in {peers_file}")
    pem = entry["rpc_tls_cert"]
    if not pem:
        raise LoginError(f"site {name!r} has no RPC certificate")
    der = ssl.PEM_cert_to_DER_cert(pem)
    fingerprint = "0x" + sm3_hash(der).hex()
    if fingerprint != entry["rpc_tls_sm3"]:
        raise LoginError("the certificate is not the fingerprinted one")
    if announced_sm3 is not None and fingerprint != announced_sm3.lower():
        raise LoginError("the certificate is not the one the operator announced")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=pem)
    host = entry["rpc_host"]
    netloc = f"[{host}]" if ":" in host else host
    return PinnedSite(
        name=name,
        org=entry["org"],
        url=f"https://{netloc}:{entry['rpc_port']}",
        node_id=_hex(entry["node_id"], 20),
        cert_pem=pem,
        context=ctx,
    )


def compute_login_root(chain_id: str, node_id: bytes, challenge: bytes) -> bytes:
    """Rule L3: SM3(domain || 0x00 || enc([chainId, nodeId, challenge]))."""
    if len(node_id) != 20 or len(challenge) != 32:
        raise LoginError("nodeId is 20 bytes and the challenge 32")
    enc = msgpack.packb([chain_id, node_id, challenge], use_bin_type=True)
    return sm3_hash(LOGIN_DOMAIN + b"\x00" + enc)


def post(
    site: PinnedSite,
    body: Any,
    *,
    headers: dict[str, str] | None = None,
    path: str = "/",
    timeout_s: float = 30.0,
) -> tuple[int, Any]:
    """POST one JSON body over the pinned TLS context; (HTTP status, decoded JSON or None)."""
    req = urllib.request.Request(
        site.url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s, context=site.context) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, (json.loads(raw) if raw else None)


def call(site: PinnedSite, method: str, params: Any = None, token: str | None = None) -> Any:
    """One JSON-RPC call; the result, or RpcRefused with the error object."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    req = {"jsonrpc": "2.0", "id": 1, "method": method, "params": [] if params is None else params}
    _, reply = post(site, req, headers=headers)
    if "error" in reply:
        err = reply["error"]
        raise RpcRefused(err["code"], err["message"], err.get("data"))
    return reply["result"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    token: str
    org: str
    role: str
    read_all: bool
    expires_ms: int


def login(site: PinnedSite, key: PrivateKey) -> Session:
    """Challenge, sign the login root (L3, L4), log in; the session (L5 uses its token)."""
    info = call(site, "gm_nodeInfo")
    node_id = _hex(info["nodeId"], 20)
    if node_id != site.node_id:
        raise LoginError("the answering node is not the site of peers.json")
    ch = call(site, "gm_authChallenge")
    challenge = _hex(ch["challenge"], 32)
    root = compute_login_root(info["chainId"], node_id, challenge)
    signature = key.sign(root)
    result = call(
        site,
        "gm_authLogin",
        {
            "publicKey": "0x" + key.public_key.to_bytes().hex(),
            "challenge": ch["challenge"],
            "signature": "0x" + signature.hex(),
        },
    )
    return Session(
        token=result["token"],
        org=result["org"],
        role=result["role"],
        read_all=result["readAll"],
        expires_ms=result["expiresMs"],
    )

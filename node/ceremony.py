"""The genesis ceremony of separate sites: public descriptors, their signatures and their checks.

A site (one firm's node) creates its node key and admin key in its own folder and exports a
public descriptor (site.json); a reading or user account exports account.json. A coordinator
assembles genesis.json and peers.json from the descriptors (node/ceremony_genesis.py); every site
checks the genesis hash and installs them. docs/sites.md is the operator's guide and states each
field; this module is the one reader and writer of both descriptor formats.

Rules this module keeps:
1. A descriptor holds no secret: public keys, names, addresses, the RPC certificate (public) and
   signatures. Private keys are written only into the folder given to `site init` / `account
   init` (crypto_sm key files, mode 0600, never overwritten).
2. Every descriptor is signed by every key it names, over compute_signing_root("site-descriptor",
   [version, kind, ...every other field but the certificate text and the signatures...]) (the
   exact lists: `site_root`, `account_root`): a proof of possession of each key, and a seal on
   the addresses, org and role, so nobody on the way to the coordinator can swap a key or an
   address without the signatures failing. The certificate text is covered by its SM3
   fingerprint, which is in the root.
3. Reading a descriptor checks, before anything else is done with it: exactly the known fields,
   each field's type and range, the chain id it was made for, the fingerprint against the
   certificate, then every signature. A failure is a CeremonyError naming the file and the field.
4. Names and orgs use the contracts' identifier characters (letters, digits, `._-:/@`), 1..64
   bytes; a role is one of the membership contract's roles; a host is an IP literal or a DNS
   name that is not a wildcard (the other sites dial it); a port is 1..65535.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gmchain.contracts.framework import IDENT_CHARS
from gmchain.contracts.membership import ROLES
from gmchain.crypto_sm import CryptoError, PrivateKey, PublicKey
from gmchain.ledger.wire import compute_signing_root
from gmchain.node.tlscert import cert_fingerprint

__all__ = [
    "DESCRIPTOR_VERSION",
    "AccountDescriptor",
    "CeremonyError",
    "SiteDescriptor",
    "account_root",
    "check_host",
    "check_ident",
    "check_port",
    "make_account_descriptor",
    "make_site_descriptor",
    "parse_hostport",
    "read_account_descriptor",
    "read_json_file",
    "read_site_descriptor",
    "site_root",
]

DESCRIPTOR_VERSION = 1
SITE_ROLES = ("validator", "observer")
_NAME_MAX = 64


class CeremonyError(ValueError):
    """A ceremony input is wrong; the message names the file and the field (one line)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteDescriptor:
    """A checked site.json (rule 3). Keys are 65-byte SM2 public keys."""

    chain_id: str
    name: str
    org: str
    role: str  # "validator" | "observer"
    power: int  # voting power; 0 for an observer
    node_pubkey: bytes
    admin_pubkey: bytes
    p2p_host: str
    p2p_port: int
    rpc_host: str
    rpc_port: int
    rpc_tls_sm3: bytes  # SM3 of the RPC certificate's DER; b"" without TLS
    rpc_tls_cert: str  # the certificate PEM (public); "" without TLS
    node_signature: bytes
    admin_signature: bytes

    @property
    def node_id(self) -> bytes:
        return PublicKey.from_bytes(self.node_pubkey).address


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountDescriptor:
    """A checked account.json (rule 3)."""

    chain_id: str
    name: str
    org: str
    role: str  # a membership role: admin | regulator | member
    pubkey: bytes
    signature: bytes


def site_root(
    *,
    chain_id: str,
    name: str,
    org: str,
    role: str,
    power: int,
    node_pubkey: bytes,
    admin_pubkey: bytes,
    p2p_host: str,
    p2p_port: int,
    rpc_host: str,
    rpc_port: int,
    rpc_tls_sm3: bytes,
) -> bytes:
    """Rule 2: what the node key and the admin key of a site both sign."""
    return compute_signing_root(
        "site-descriptor",
        [
            DESCRIPTOR_VERSION,
            "site",
            chain_id,
            name,
            org,
            role,
            power,
            node_pubkey,
            admin_pubkey,
            p2p_host,
            p2p_port,
            rpc_host,
            rpc_port,
            rpc_tls_sm3,
        ],
    )


def account_root(*, chain_id: str, name: str, org: str, role: str, pubkey: bytes) -> bytes:
    """Rule 2: what an account key signs in its descriptor."""
    return compute_signing_root(
        "site-descriptor", [DESCRIPTOR_VERSION, "account", chain_id, name, org, role, pubkey]
    )


# --- field checks (rule 4) -----------------------------------------------------------------------


def check_ident(what: str, value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value.encode()) <= _NAME_MAX:
        raise CeremonyError(f"{what}: expected 1..{_NAME_MAX} characters, got {value!r}")
    bad = sorted({c for c in value if c not in IDENT_CHARS})
    if bad:
        raise CeremonyError(
            f"{what} {value!r}: characters {''.join(bad)!r} are not allowed "
            "(letters, digits and ._-:/@ only)"
        )
    return value


def check_host(what: str, host: object) -> str:
    if not isinstance(host, str) or not host or len(host) > 253:
        raise CeremonyError(f"{what}: expected a host name or IP address, got {host!r}")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if any(c.isspace() or c in "/[]@:" for c in host):
            raise CeremonyError(f"{what}: {host!r} is not a host name or IP address") from None
        return host
    if ip.is_unspecified:
        raise CeremonyError(
            f"{what}: {host} is a wildcard; give the address the other sites and clients dial"
        )
    return host


def check_port(what: str, port: object) -> int:
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise CeremonyError(f"{what}: expected a port 1..65535, got {port!r}")
    return port


def parse_hostport(what: str, text: str) -> tuple[str, int]:
    """`HOST:PORT` (an IPv6 host in brackets: `[::1]:8545`) -> (host, port), checked (rule 4)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise CeremonyError(f"{what}: expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return check_host(what, host), check_port(what, int(port))


def _hex(where: str, doc: dict[str, Any], name: str, size: int | None) -> bytes:
    value = doc[name]
    if not isinstance(value, str) or (value and not value.startswith("0x")):
        raise CeremonyError(f"{where}: {name} must be 0x-prefixed hex")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError:
        raise CeremonyError(f"{where}: {name} is not hex") from None
    if size is not None and len(raw) != size:
        raise CeremonyError(f"{where}: {name} must be {size} bytes, got {len(raw)}")
    return raw


def _pubkey(where: str, doc: dict[str, Any], name: str) -> bytes:
    raw = _hex(where, doc, name, 65)
    try:
        PublicKey.from_bytes(raw)
    except CryptoError:
        raise CeremonyError(f"{where}: {name} is not an SM2 public key") from None
    return raw


def _check_fields(where: str, doc: object, fields: tuple[str, ...], kind: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise CeremonyError(f"{where}: expected a JSON object")
    if doc.get("kind") != kind:
        raise CeremonyError(f"{where}: not a {kind} descriptor (kind {doc.get('kind')!r})")
    if doc.get("version") != DESCRIPTOR_VERSION:
        raise CeremonyError(
            f"{where}: descriptor version {doc.get('version')!r}, this build reads "
            f"{DESCRIPTOR_VERSION}"
        )
    missing = [f for f in fields if f not in doc]
    extra = sorted(set(doc) - set(fields))
    if missing or extra:
        raise CeremonyError(f"{where}: missing fields {missing}, unknown fields {extra}")
    return doc


def _check_chain(where: str, doc: dict[str, Any], chain_id: str | None) -> str:
    got = doc["chain_id"]
    if not isinstance(got, str) or not got:
        raise CeremonyError(f"{where}: chain_id must be a non-empty string")
    if chain_id is not None and got != chain_id:
        raise CeremonyError(f"{where}: made for chain {got!r}, not {chain_id!r}")
    return got


def read_json_file(path: str | Path) -> object:
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise CeremonyError(f"no such file: {p}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CeremonyError(f"{p}: not JSON ({exc})") from None


# --- site descriptors -----------------------------------------------------------------------------

SITE_FIELDS = (
    "version",
    "kind",
    "chain_id",
    "name",
    "org",
    "role",
    "power",
    "node_pubkey",
    "admin_pubkey",
    "p2p_host",
    "p2p_port",
    "rpc_host",
    "rpc_port",
    "rpc_tls_sm3",
    "rpc_tls_cert",
    "node_signature",
    "admin_signature",
)


def make_site_descriptor(
    *,
    chain_id: str,
    name: str,
    org: str,
    role: str,
    power: int,
    node_key: PrivateKey,
    admin_key: PrivateKey,
    p2p: tuple[str, int],
    rpc: tuple[str, int],
    rpc_tls_cert: str = "",
) -> dict[str, Any]:
    """Rules 1-2: the JSON object of a site's descriptor, signed by both of its keys."""
    if not isinstance(chain_id, str) or not chain_id:
        raise CeremonyError("chain id: required")
    check_ident("name", name)
    check_ident("org", org)
    if role not in SITE_ROLES:
        raise CeremonyError(f"role: expected one of {', '.join(SITE_ROLES)}, got {role!r}")
    if role == "observer":
        power = 0
    elif not isinstance(power, int) or not 1 <= power <= 1_000_000:
        raise CeremonyError(f"power: expected 1..1000000 for a validator, got {power!r}")
    if p2p == rpc:
        raise CeremonyError(f"p2p and rpc: both are {p2p[0]}:{p2p[1]}; give each its own port")
    tls_sm3 = bytes.fromhex(cert_fingerprint(rpc_tls_cert)[2:]) if rpc_tls_cert else b""
    fields: dict[str, Any] = {
        "chain_id": chain_id,
        "name": name,
        "org": org,
        "role": role,
        "power": power,
        "node_pubkey": node_key.public_key.to_bytes(),
        "admin_pubkey": admin_key.public_key.to_bytes(),
        "p2p_host": check_host("p2p host", p2p[0]),
        "p2p_port": check_port("p2p port", p2p[1]),
        "rpc_host": check_host("rpc host", rpc[0]),
        "rpc_port": check_port("rpc port", rpc[1]),
        "rpc_tls_sm3": tls_sm3,
    }
    root = site_root(**fields)
    doc = {"version": DESCRIPTOR_VERSION, "kind": "site"}
    for key, value in fields.items():
        doc[key] = "0x" + value.hex() if isinstance(value, bytes) else value
    doc["rpc_tls_cert"] = rpc_tls_cert
    doc["node_signature"] = "0x" + node_key.sign(root).hex()
    doc["admin_signature"] = "0x" + admin_key.sign(root).hex()
    return doc


def read_site_descriptor(
    doc: object, *, where: str = "site descriptor", chain_id: str | None = None
) -> SiteDescriptor:
    """Rule 3: check a parsed site.json; CeremonyError names what is wrong."""
    d = _check_fields(where, doc, SITE_FIELDS, "site")
    got_chain = _check_chain(where, d, chain_id)
    name = check_ident(f"{where}: name", d["name"])
    org = check_ident(f"{where}: org", d["org"])
    role = d["role"]
    if role not in SITE_ROLES:
        raise CeremonyError(f"{where}: role must be one of {', '.join(SITE_ROLES)}, got {role!r}")
    power = d["power"]
    ok_power = isinstance(power, int) and not isinstance(power, bool)
    if not ok_power or (role == "validator" and not 1 <= power <= 1_000_000):
        raise CeremonyError(f"{where}: power must be 1..1000000 for a validator, got {power!r}")
    if role == "observer" and power != 0:
        raise CeremonyError(f"{where}: an observer's power must be 0, got {power!r}")
    cert = d["rpc_tls_cert"]
    sm3 = _hex(where, d, "rpc_tls_sm3", None)
    if not isinstance(cert, str) or bool(cert) != bool(sm3):
        raise CeremonyError(f"{where}: rpc_tls_cert and rpc_tls_sm3 must be both set or both empty")
    if cert:
        try:
            actual = cert_fingerprint(cert)
        except ValueError:
            raise CeremonyError(f"{where}: rpc_tls_cert is not a PEM certificate") from None
        if actual != "0x" + sm3.hex():
            raise CeremonyError(f"{where}: rpc_tls_sm3 is not the SM3 of rpc_tls_cert")
    site = SiteDescriptor(
        chain_id=got_chain,
        name=name,
        org=org,
        role=role,
        power=power,
        node_pubkey=_pubkey(where, d, "node_pubkey"),
        admin_pubkey=_pubkey(where, d, "admin_pubkey"),
        p2p_host=check_host(f"{where}: p2p_host", d["p2p_host"]),
        p2p_port=check_port(f"{where}: p2p_port", d["p2p_port"]),
        rpc_host=check_host(f"{where}: rpc_host", d["rpc_host"]),
        rpc_port=check_port(f"{where}: rpc_port", d["rpc_port"]),
        rpc_tls_sm3=sm3,
        rpc_tls_cert=cert,
        node_signature=_hex(where, d, "node_signature", 64),
        admin_signature=_hex(where, d, "admin_signature", 64),
    )
    root = site_root(
        chain_id=site.chain_id,
        name=site.name,
        org=site.org,
        role=site.role,
        power=site.power,
        node_pubkey=site.node_pubkey,
        admin_pubkey=site.admin_pubkey,
        p2p_host=site.p2p_host,
        p2p_port=site.p2p_port,
        rpc_host=site.rpc_host,
        rpc_port=site.rpc_port,
        rpc_tls_sm3=site.rpc_tls_sm3,
    )
    for what, key, sig in (
        ("node", site.node_pubkey, site.node_signature),
        ("admin", site.admin_pubkey, site.admin_signature),
    ):
        if not PublicKey.from_bytes(key).verify(root, sig):
            raise CeremonyError(
                f"{where}: {what}_signature is not the {what} key's signature over the "
                "descriptor (a forged or edited descriptor)"
            )
    return site


# --- account descriptors -------------------------------------------------------------------------

ACCOUNT_FIELDS = ("version", "kind", "chain_id", "name", "org", "role", "pubkey", "signature")


def _check_role(where: str, role: object) -> str:
    if role not in ROLES:
        raise CeremonyError(f"{where}role must be one of {', '.join(ROLES)}, got {role!r}")
    assert isinstance(role, str)
    return role


def make_account_descriptor(
    *, chain_id: str, name: str, org: str, role: str, key: PrivateKey
) -> dict[str, Any]:
    """Rules 1-2: the JSON object of an account's descriptor, signed by its key."""
    if not isinstance(chain_id, str) or not chain_id:
        raise CeremonyError("chain id: required")
    check_ident("name", name)
    check_ident("org", org)
    _check_role("", role)
    pubkey = key.public_key.to_bytes()
    root = account_root(chain_id=chain_id, name=name, org=org, role=role, pubkey=pubkey)
    return {
        "version": DESCRIPTOR_VERSION,
        "kind": "account",
        "chain_id": chain_id,
        "name": name,
        "org": org,
        "role": role,
        "pubkey": "0x" + pubkey.hex(),
        "signature": "0x" + key.sign(root).hex(),
    }


def read_account_descriptor(
    doc: object, *, where: str = "account descriptor", chain_id: str | None = None
) -> AccountDescriptor:
    """Rule 3: check a parsed account.json; CeremonyError names what is wrong."""
    d = _check_fields(where, doc, ACCOUNT_FIELDS, "account")
    acct = AccountDescriptor(
        chain_id=_check_chain(where, d, chain_id),
        name=check_ident(f"{where}: name", d["name"]),
        org=check_ident(f"{where}: org", d["org"]),
        role=_check_role(f"{where}: ", d["role"]),
        pubkey=_pubkey(where, d, "pubkey"),
        signature=_hex(where, d, "signature", 64),
    )
    root = account_root(
        chain_id=acct.chain_id, name=acct.name, org=acct.org, role=acct.role, pubkey=acct.pubkey
    )
    if not PublicKey.from_bytes(acct.pubkey).verify(root, acct.signature):
        raise CeremonyError(
            f"{where}: signature is not the account key's signature over the descriptor "
            "(a forged or edited descriptor)"
        )
    return acct

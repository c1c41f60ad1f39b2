"""Client key files for the CLI and `gmchain dev`: default locations, passphrases, the dev key.

Rules this module keeps:
1. Keys live in `crypto_sm` key files (encrypted with SM4-GCM under a PBKDF2-HMAC-SM3 key, mode
   0600, never overwritten; docs/crypto.md). This module only chooses paths and passphrases.
2. The default client key is `$GMCHAIN_HOME/dev/client.key` (`GMCHAIN_HOME` defaults to
   `~/.gmchain`).
3. A passphrase comes from the environment variable named by `--passphrase-env`, else from
   `GMCHAIN_PASSPHRASE`, else it is "empty". `crypto_sm` refuses an empty passphrase, so "empty"
   means the well-known `DEV_PASSPHRASE` — INSECURE by design, for the dev chain only (anyone who
   can read the file can use the key; the file mode still limits who can read it).
4. The dev key uses the lowest iteration count crypto_sm allows (its passphrase is public anyway),
   so CLI commands against `gmchain dev` do not pay 0.4 s of PBKDF2 each.
5. A node key's passphrase comes from the variable named by `--passphrase-env`, else from
   `GMCHAIN_NODE_PASSPHRASE` (the variable a node reads by default, `key_passphrase_env`), else
   it is the dev passphrase (rule 3's warning applies).
6. A join request (docs/joining.md) is a JSON object of exactly four fields: `chain_id`,
   `node_pubkey` (0x + the 65-byte SM2 key), `org`, `pop_signature` (0x + the 64-byte SM2
   signature of that node key over compute_signing_root("join-request", [chain_id, node_pubkey,
   org]), made by contracts.governance.make_join_request). It carries no secret; reading one
   checks every field and the signature.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gmchain.crypto_sm import CryptoError, PrivateKey, PublicKey, load_private_key, save_private_key
from gmchain.crypto_sm.keyfile import MIN_ITERATIONS

__all__ = [
    "DEV_PASSPHRASE",
    "NODE_PASSPHRASE_ENV",
    "PASSPHRASE_ENV",
    "JoinRequest",
    "default_home",
    "default_key_path",
    "ensure_dev_key",
    "load_key",
    "make_join_request_doc",
    "read_join_request",
    "resolve_node_passphrase",
    "resolve_passphrase",
]

PASSPHRASE_ENV = "GMCHAIN_PASSPHRASE"
NODE_PASSPHRASE_ENV = "GMCHAIN_NODE_PASSPHRASE"  # = NodeConfig.key_passphrase_env's default
# What an "empty" passphrase stands for (rule 3). Public, hence insecure: dev chains only.
DEV_PASSPHRASE = b"gmchain-dev"  # = node.daemon.DEV_PASSPHRASE (the dev chain's keys)


def default_home() -> Path:
    return Path(os.environ.get("GMCHAIN_HOME") or Path.home() / ".gmchain")


def default_key_path() -> Path:
    return default_home() / "dev" / "client.key"


def resolve_passphrase(env_var: str | None = None) -> bytes:
    """Rule 3. A named variable that is unset is an error, not a silent fallback."""
    if env_var:
        if env_var not in os.environ:
            raise ValueError(f"environment variable {env_var} (named by --passphrase-env) is unset")
        value = os.environ[env_var]
    else:
        value = os.environ.get(PASSPHRASE_ENV, "")
    return value.encode() if value else DEV_PASSPHRASE


def resolve_node_passphrase(env_var: str | None = None) -> bytes:
    """Rule 5."""
    if env_var:
        return resolve_passphrase(env_var)
    value = os.environ.get(NODE_PASSPHRASE_ENV, "")
    return value.encode() if value else DEV_PASSPHRASE


def load_key(path: str | os.PathLike[str], passphrase: bytes) -> PrivateKey:
    """Load a key file, with a message that names the file when it is missing."""
    if not os.path.lexists(path):
        raise FileNotFoundError(f"no key file at {path} (create one with `gmchain keygen --out`)")
    return load_private_key(path, passphrase)


def ensure_dev_key(path: str | os.PathLike[str] | None = None) -> PrivateKey:
    """The dev client key at `path` (default: default_key_path()), created on first use (rule 4)."""
    target = Path(path) if path is not None else default_key_path()
    if target.exists():
        return load_private_key(target, DEV_PASSPHRASE)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = PrivateKey.generate()
    save_private_key(target, key, DEV_PASSPHRASE, iterations=MIN_ITERATIONS)
    return key


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinRequest:
    """Rule 6: a checked join request."""

    chain_id: str
    node_pubkey: bytes  # 65-byte SM2 public key
    org: str
    pop_signature: bytes  # 64 bytes

    @property
    def node_id(self) -> bytes:
        return PublicKey.from_bytes(self.node_pubkey).address


_JOIN_FIELDS = ("chain_id", "node_pubkey", "org", "pop_signature")


def _check_org(org: str) -> None:
    """The org as the governance contract's admit_observer takes it (contracts/gov_kinds.py), so
    a request it would refuse is refused here, with the contract's own words."""
    from gmchain.contracts.framework import ContractError, MethodSpec
    from gmchain.contracts.governance import KINDS

    org_arg = next(a for a in KINDS["admit_observer"] if a.name == "org")
    spec = MethodSpec(name="join request", args=(org_arg,), readonly=False, attr="")
    try:
        spec.check_args([org])
    except ContractError as exc:
        raise ValueError(f"join request: {exc}") from None


def make_join_request_doc(chain_id: str, node_key: PrivateKey, org: str) -> dict[str, str]:
    """Rule 6: the JSON object of `node_key`'s request to join chain `chain_id` for `org`."""
    from gmchain.contracts.governance import make_join_request

    if not chain_id:
        raise ValueError("join request: the chain id is empty")
    _check_org(org)
    pubkey, org, pop = make_join_request(chain_id, node_key, org)
    return {
        "chain_id": chain_id,
        "node_pubkey": "0x" + pubkey.hex(),
        "org": org,
        "pop_signature": "0x" + pop.hex(),
    }


def _hex_field(doc: dict[str, Any], name: str, size: int) -> bytes:
    value = doc[name]
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(f"join request: {name} must be 0x-prefixed hex")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError:
        raise ValueError(f"join request: {name} is not hex") from None
    if len(raw) != size:
        raise ValueError(f"join request: {name} must be {size} bytes, got {len(raw)}")
    return raw


def read_join_request(doc: object, *, chain_id: str | None = None) -> JoinRequest:
    """Rule 6: check a parsed join request (and, when given, that it is for `chain_id`);
    ValueError names what is wrong."""
    from gmchain.contracts.gov_kinds import join_request_root

    if not isinstance(doc, dict) or sorted(doc) != sorted(_JOIN_FIELDS):
        raise ValueError(f"join request: expected a JSON object with exactly {_JOIN_FIELDS}")
    for name in ("chain_id", "org"):
        if not isinstance(doc[name], str) or not doc[name]:
            raise ValueError(f"join request: {name} must be a non-empty string")
    if chain_id is not None and doc["chain_id"] != chain_id:
        raise ValueError(f"join request: for chain {doc['chain_id']!r}, not {chain_id!r}")
    _check_org(doc["org"])
    pubkey = _hex_field(doc, "node_pubkey", 65)
    pop = _hex_field(doc, "pop_signature", 64)
    try:
        key = PublicKey.from_bytes(pubkey)
    except CryptoError:
        raise ValueError("join request: node_pubkey is not an SM2 public key") from None
    if not key.verify(join_request_root(doc["chain_id"], pubkey, doc["org"]), pop):
        raise ValueError(
            "join request: pop_signature is not the node key's signature over "
            "[chain_id, node_pubkey, org] (a forged or edited request)"
        )
    return JoinRequest(
        chain_id=doc["chain_id"], node_pubkey=pubkey, org=doc["org"], pop_signature=pop
    )

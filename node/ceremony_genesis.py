"""The coordinator's and the sites' halves of the genesis ceremony: assemble, hash, install.

`assemble` turns checked descriptors (node/ceremony.py) into genesis.json and peers.json;
`install` checks them at a site and writes the site's genesis and peers. docs/sites.md is the
operator's guide and states the peers.json format field by field.

Rules this module keeps:
1. Check everything, then write: a refusal writes nothing. Outputs that exist are replaced only
   with `force` (at install, an identical file counts as not existing: re-running is harmless).
2. Assembling refuses: a descriptor of another chain or with a bad signature (node/ceremony.py
   rule 3); a key that appears twice anywhere (node, admin or account, in one descriptor or two);
   a name twice; a listening address (host, port) twice, P2P or RPC, across all sites; no
   validator; an account the membership contract would refuse at genesis (its own words).
3. The genesis is a pure function of the descriptors' contents and the timestamp: sites sorted by
   name, validators and observers in that order; accounts are each site's admin (pubkey, org,
   "admin") in site order, then the account descriptors sorted by (org, role, pubkey). So the
   order of `--site` arguments does not change the hash.
4. The genesis hash is `Genesis.compute_hash()` (ledger/genesis.py), lowercase hex without 0x,
   exactly the `genesis_hash` field save_genesis writes; `--expect-hash` takes it with or without
   0x, in either case.
5. Installing refuses: a genesis whose hash is not the expected one (the operator's copy, read out
   by the coordinator on another channel); a genesis or peers.json of another chain; a peers.json
   of another genesis; a genesis that does not hold this site's node key (in its role and power)
   and admin key; a peers.json whose entry for this site differs in any field from this site's
   descriptor.
   Every other site of peers.json becomes a `[[peers]]` entry of the site's config.toml; the
   config's other keys are kept as written.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from gmchain.contracts.keys import CryptoSmVerifier
from gmchain.contracts.membership import genesis_writes
from gmchain.crypto_sm import PublicKey
from gmchain.ledger.types import Genesis, GenesisValidator
from gmchain.node.ceremony import (
    AccountDescriptor,
    CeremonyError,
    SiteDescriptor,
    check_host,
    check_ident,
    check_port,
    read_json_file,
    read_site_descriptor,
)
from gmchain.node.config import (
    ConfigError,
    NodeConfig,
    PeerConfig,
    load_genesis,
    read_config,
    save_genesis,
    write_config,
)

__all__ = [
    "PEERS_VERSION",
    "assemble_genesis",
    "genesis_hash_of",
    "install_site",
    "normalise_hash",
    "peers_doc",
    "write_assembly",
]

PEERS_VERSION = 1


def _key_label(pubkey: bytes) -> str:
    return "0x" + PublicKey.from_bytes(pubkey).address.hex()


def _check_unique(sites: list[SiteDescriptor], accounts: list[AccountDescriptor]) -> None:
    """Rule 2's duplicates."""
    keys: dict[bytes, str] = {}

    def claim(pubkey: bytes, who: str) -> None:
        if pubkey in keys:
            raise CeremonyError(
                f"key {_key_label(pubkey)} appears twice: as {keys[pubkey]} and as {who}"
            )
        keys[pubkey] = who

    names: dict[str, str] = {}
    addresses: dict[tuple[str, int], str] = {}
    for s in sites:
        claim(s.node_pubkey, f"site {s.name}'s node key")
        claim(s.admin_pubkey, f"site {s.name}'s admin key")
        if s.name in names:
            raise CeremonyError(f"site name {s.name!r} is used by two sites")
        names[s.name] = "site"
        for what, addr in (("p2p", (s.p2p_host, s.p2p_port)), ("rpc", (s.rpc_host, s.rpc_port))):
            key = (addr[0].lower(), addr[1])
            if key in addresses:
                raise CeremonyError(
                    f"site {s.name}'s {what} address {addr[0]}:{addr[1]} is also {addresses[key]}'s"
                )
            addresses[key] = f"site {s.name}'s {what} address"
    for a in accounts:
        claim(a.pubkey, f"account {a.name} ({a.org}, {a.role})")


def assemble_genesis(
    chain_id: str,
    sites: list[SiteDescriptor],
    accounts: list[AccountDescriptor],
    *,
    timestamp_ms: int,
) -> Genesis:
    """Rules 2-3: the genesis of checked descriptors (each already read for `chain_id`)."""
    for d in [*[(s.name, s.chain_id) for s in sites], *[(a.name, a.chain_id) for a in accounts]]:
        if d[1] != chain_id:  # (the readers checked it; a caller may not have)
            raise CeremonyError(f"{d[0]}: made for chain {d[1]!r}, not {chain_id!r}")
    _check_unique(sites, accounts)
    ordered = sorted(sites, key=lambda s: s.name)
    validators = [s for s in ordered if s.role == "validator"]
    if not validators:
        raise CeremonyError("no validator among the sites: a chain needs at least one")
    acct_rows = [(s.admin_pubkey, s.org, "admin") for s in ordered]
    acct_rows += sorted((a.pubkey, a.org, a.role) for a in accounts)
    try:
        genesis_writes(acct_rows, CryptoSmVerifier())
        return Genesis(
            chain_id=chain_id,
            timestamp_ms=timestamp_ms,
            validators=tuple(
                GenesisValidator(pubkey=s.node_pubkey, power=s.power, org=s.org) for s in validators
            ),
            observers=tuple(s.node_pubkey for s in ordered if s.role == "observer"),
            accounts=tuple(acct_rows),
        )
    except (ValueError, TypeError) as exc:
        raise CeremonyError(f"genesis: {exc}") from None


def genesis_hash_of(g: Genesis) -> str:
    """Rule 4."""
    return g.compute_hash().hex()


def normalise_hash(text: str) -> str:
    """Rule 4: a hash as typed (with or without 0x, either case) -> lowercase hex without 0x."""
    h = text.strip().lower().removeprefix("0x")
    if len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
        raise CeremonyError(f"expected hash: {text!r} is not 32 bytes of hex")
    return h


def _site_entry(s: SiteDescriptor) -> dict[str, Any]:
    return {
        "name": s.name,
        "org": s.org,
        "role": s.role,
        "node_pubkey": "0x" + s.node_pubkey.hex(),
        "node_id": "0x" + s.node_id.hex(),
        "p2p_host": s.p2p_host,
        "p2p_port": s.p2p_port,
        "rpc_host": s.rpc_host,
        "rpc_port": s.rpc_port,
        "rpc_tls_sm3": "0x" + s.rpc_tls_sm3.hex() if s.rpc_tls_sm3 else "",
        "rpc_tls_cert": s.rpc_tls_cert,
    }


def peers_doc(g: Genesis, sites: list[SiteDescriptor]) -> dict[str, Any]:
    """peers.json (docs/sites.md "peers.json"): every site, sorted by name."""
    return {
        "version": PEERS_VERSION,
        "chain_id": g.chain_id,
        "genesis_hash": genesis_hash_of(g),
        "sites": [_site_entry(s) for s in sorted(sites, key=lambda s: s.name)],
    }


def _json_text(doc: object) -> str:
    return json.dumps(doc, indent=2) + "\n"


def _refuse_existing(path: Path, text: str | None, force: bool) -> None:
    """Rule 1: an existing different file needs `force`."""
    if force or not os.path.lexists(path):
        return
    if text is not None and path.is_file() and path.read_text() == text:
        return
    raise CeremonyError(f"{path} already exists (use --force to replace it)")


def write_assembly(out: Path, g: Genesis, sites: list[SiteDescriptor], *, force: bool) -> None:
    """Rule 1: write out/genesis.json and out/peers.json, or neither."""
    peers_text = _json_text(peers_doc(g, sites))
    genesis_file, peers_file = out / "genesis.json", out / "peers.json"
    if out.exists() and not out.is_dir():
        raise CeremonyError(f"--out {out} is not a directory")
    for p in (genesis_file, peers_file):
        _refuse_existing(p, None, force)
    out.mkdir(parents=True, exist_ok=True)
    save_genesis(genesis_file, g)
    peers_file.write_text(peers_text)


# --- installing at a site -----------------------------------------------------------------------


def _read_peers(doc: object, where: str, g: Genesis, ghash: str) -> list[dict[str, Any]]:
    if not isinstance(doc, dict) or doc.get("version") != PEERS_VERSION:
        raise CeremonyError(f"{where}: not a version-{PEERS_VERSION} peers.json")
    if doc.get("chain_id") != g.chain_id:
        raise CeremonyError(
            f"{where}: for chain {doc.get('chain_id')!r}, the genesis is {g.chain_id!r}"
        )
    if doc.get("genesis_hash") != ghash:
        raise CeremonyError(f"{where}: made for another genesis ({doc.get('genesis_hash')!r})")
    sites = doc.get("sites")
    if not isinstance(sites, list) or not sites:
        raise CeremonyError(f"{where}: sites must be a non-empty list")
    members = {v.pubkey for v in g.validators} | set(g.observers)
    for i, s in enumerate(sites):
        w = f"{where}: sites[{i}]"
        if not isinstance(s, dict):
            raise CeremonyError(f"{w}: expected an object")
        try:
            check_ident(f"{w}: name", s.get("name"))
            check_host(f"{w}: p2p_host", s.get("p2p_host"))
            check_port(f"{w}: p2p_port", s.get("p2p_port"))
            pubkey = bytes.fromhex(str(s.get("node_pubkey", "")).removeprefix("0x"))
        except CeremonyError:
            raise
        except ValueError as exc:
            raise CeremonyError(f"{w}: node_pubkey: {exc}") from None
        if pubkey not in members:
            raise CeremonyError(f"{w} ({s['name']}): its node key is not in the genesis")
    return sites


def _check_member(g: Genesis, me: SiteDescriptor) -> None:
    powers = {v.pubkey: (v.power, v.org) for v in g.validators}
    if me.role == "validator" and powers.get(me.node_pubkey) != (me.power, me.org):
        raise CeremonyError(
            f"the genesis does not hold this site's node key as a validator of {me.org} with "
            f"power {me.power}"
        )
    if me.role == "observer" and me.node_pubkey not in g.observers:
        raise CeremonyError("the genesis does not hold this site's node key as an observer")
    if (me.admin_pubkey, me.org, "admin") not in g.accounts:
        raise CeremonyError(f"the genesis does not hold this site's admin key as {me.org}'s admin")


def _config_with_peers(config_file: Path, peers: tuple[PeerConfig, ...]) -> NodeConfig:
    """The site's config as written (relative paths kept), with `peers` replaced."""
    if not config_file.exists():
        raise CeremonyError(f"no config at {config_file} (is this a `site init` folder?)")
    try:
        cfg = dataclasses.replace(read_config(config_file), peers=peers)
        cfg.resolve(config_file.parent).validate()
    except (TypeError, ConfigError) as exc:
        raise CeremonyError(f"{config_file}: {exc}") from None
    return cfg


def install_site(
    d: Path,
    *,
    genesis_file: Path,
    peers_file: Path,
    expect_hash: str,
    chain_id: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Rule 5, then rule 1: check, then write D/genesis.json, D/peers.json, D/config.toml."""
    me = read_site_descriptor(
        read_json_file(d / "site.json"), where=str(d / "site.json"), chain_id=chain_id
    )
    want = normalise_hash(expect_hash)
    try:
        g = load_genesis(genesis_file)
    except ConfigError as exc:
        raise CeremonyError(str(exc)) from None
    got = genesis_hash_of(g)
    if got != want:
        raise CeremonyError(
            f"genesis hash mismatch: {genesis_file} hashes to {got}, expected {want}; do not "
            "install it, ask the coordinator"
        )
    if g.chain_id != me.chain_id:
        raise CeremonyError(f"{genesis_file}: chain {g.chain_id!r}, this site is {me.chain_id!r}")
    _check_member(g, me)
    peers_raw = read_json_file(peers_file)
    sites = _read_peers(peers_raw, str(peers_file), g, got)
    mine = [s for s in sites if s.get("node_pubkey") == "0x" + me.node_pubkey.hex()]
    if len(mine) != 1:
        raise CeremonyError(f"{peers_file}: lists this site's node key {len(mine)} times, not once")
    if mine[0] != _site_entry(me):
        raise CeremonyError(f"{peers_file}: this site's entry differs from its site.json")
    peers = tuple(
        PeerConfig(
            pubkey=str(s["node_pubkey"]).removeprefix("0x"),
            host=s["p2p_host"],
            port=s["p2p_port"],
            name=s["name"],
        )
        for s in sites
        if s is not mine[0]
    )
    cfg = _config_with_peers(d / "config.toml", peers)
    genesis_text = Path(genesis_file).read_text()
    peers_text = _json_text(peers_raw)
    _refuse_existing(d / "genesis.json", genesis_text, force)
    _refuse_existing(d / "peers.json", peers_text, force)
    # Everything is checked: write (rule 1).
    (d / "genesis.json").write_text(genesis_text)
    (d / "peers.json").write_text(peers_text)
    write_config(d / "config.toml", cfg)
    return {"name": me.name, "genesis_hash": got, "peers": [p.name for p in peers]}

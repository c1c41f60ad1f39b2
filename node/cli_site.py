"""`gmchain site|account|genesis ...`: the genesis ceremony of separate sites (docs/sites.md).

    gmchain site init --dir D --name N --org ORG --chain-id ID --p2p HOST:PORT --rpc HOST:PORT
                      [--power 1] [--no-validator] [--tls] [--rpc-auth reads]
    gmchain account init --dir D --org ORG --role ROLE --chain-id ID [--name N]
    gmchain genesis assemble --chain-id ID --site A/site.json ... [--account X/account.json ...]
                      [--timestamp-ms T] --out DIR [--force]
    gmchain genesis hash FILE
    gmchain site install --dir D --genesis FILE --peers FILE --expect-hash H [--force]

Rules this module keeps (besides node/cli.py's: one-line errors, exit 1 / 2, `--json`):
1. Private keys are created in the folder given and nowhere else; nothing this module prints or
   writes outside that folder holds a secret (node/ceremony.py rule 1).
2. A node key's passphrase comes from $GMCHAIN_NODE_PASSPHRASE (what the node reads at start),
   an admin or account key's from $GMCHAIN_PASSPHRASE; when the variable is unset and stdin is
   a terminal, it is typed twice. An empty passphrase and the public dev passphrase are refused:
   dev keys belong to `gmchain dev` and `gmchain cluster`.
3. `site init` and `account init` never replace anything: a folder that already holds one of
   their outputs is refused before any key is made. `genesis assemble` and `site install`
   replace their outputs only with --force (node/ceremony_genesis.py rule 1).
4. Every check runs before the first write (the ceremony modules' rules); a refusal leaves the
   folder as it was.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

__all__ = ["add_site_commands"]

_Handler = Callable[[argparse.Namespace], int]
NODE_PASSPHRASE_ENV = "GMCHAIN_NODE_PASSPHRASE"
PASSPHRASE_ENV = "GMCHAIN_PASSPHRASE"
SITE_OUTPUTS = ("node.key", "admin.key", "site.json", "config.toml", "tls/rpc.crt", "tls/rpc.key")
ACCOUNT_OUTPUTS = ("account.key", "account.json")


def _fail(message: str) -> Exception:
    from gmchain.node.cli_client import CliError

    return CliError(message)


def _passphrase(env: str, what: str) -> bytes:
    """Rule 2."""
    from gmchain.node.keys_cli import DEV_PASSPHRASE

    value = os.environ.get(env)
    if value is None and sys.stdin.isatty():
        value = getpass.getpass(f"passphrase for the {what}: ")
        if value and getpass.getpass(f"passphrase for the {what} (again): ") != value:
            raise _fail(f"the two passphrases for the {what} differ; nothing was written")
    if not value:
        raise _fail(
            f"no passphrase for the {what}: set ${env} (or run in a terminal to type one); "
            "an empty passphrase is refused outside `gmchain dev` and `gmchain cluster`"
        )
    if value.encode() == DEV_PASSPHRASE:
        raise _fail(f"${env} is the public dev passphrase: choose a secret one for the {what}")
    return value.encode()


def _refuse_existing(d: Path, names: tuple[str, ...], what: str) -> None:
    """Rule 3."""
    for name in names:
        if os.path.lexists(d / name):
            raise _fail(f"{d / name} already exists: {d} already holds {what}; pick a new --dir")


def _emit(args: argparse.Namespace, info: dict[str, Any], lines: list[str]) -> None:
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print("\n".join(lines))


def _cmd_site_init(args: argparse.Namespace) -> int:
    from gmchain.crypto_sm import PrivateKey, save_private_key
    from gmchain.node.ceremony import make_site_descriptor, parse_hostport
    from gmchain.node.config import NodeConfig, write_config

    d = Path(args.dir)
    p2p = parse_hostport("--p2p", args.p2p)
    rpc = parse_hostport("--rpc", args.rpc)
    _refuse_existing(d, SITE_OUTPUTS, "a site")
    node_key, admin_key = PrivateKey.generate(), PrivateKey.generate()
    role = "observer" if args.no_validator else "validator"
    # Check the descriptor (names, org, power, addresses) before the first write (rule 4); it is
    # made again below once the certificate exists.
    describe = functools.partial(
        make_site_descriptor,
        chain_id=args.chain_id,
        name=args.name,
        org=args.org,
        role=role,
        power=args.power,
        node_key=node_key,
        admin_key=admin_key,
        p2p=p2p,
        rpc=rpc,
    )
    describe()
    node_pw = _passphrase(NODE_PASSPHRASE_ENV, "node key")
    admin_pw = _passphrase(PASSPHRASE_ENV, "admin key")
    known = {f.name for f in fields(NodeConfig)}
    extra: dict[str, Any] = {}
    if "rpc_auth" in known:
        extra["rpc_auth"] = args.rpc_auth
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_pem = ""
    if args.tls:
        from gmchain.node.tlscert import make_self_signed

        make_self_signed(d / "tls" / "rpc.crt", d / "tls" / "rpc.key", [rpc[0]])
        cert_pem = (d / "tls" / "rpc.crt").read_text()
        if "rpc_tls_cert" in known:
            extra["rpc_tls_cert"] = "tls/rpc.crt"
            extra["rpc_tls_key"] = "tls/rpc.key"
    doc = describe(rpc_tls_cert=cert_pem)
    save_private_key(d / "node.key", node_key, node_pw)
    save_private_key(d / "admin.key", admin_key, admin_pw)
    (d / "site.json").write_text(json.dumps(doc, indent=2) + "\n")
    cfg = NodeConfig(
        name=args.name,
        data_dir="db",
        genesis_file="genesis.json",
        key_file="node.key",
        key_passphrase_env=NODE_PASSPHRASE_ENV,
        rpc_host=rpc[0],
        rpc_port=rpc[1],
        p2p_host=p2p[0],
        p2p_port=p2p[1],
        **extra,
    )
    write_config(d / "config.toml", cfg)
    info = {
        "dir": str(d),
        "name": args.name,
        "org": args.org,
        "role": role,
        "node_id": "0x" + node_key.public_key.address.hex(),
        "admin_address": "0x" + admin_key.public_key.address.hex(),
        "rpc_tls_sm3": doc["rpc_tls_sm3"],
        "descriptor": str(d / "site.json"),
    }
    lines = [
        f"site {args.name} ({args.org}, {role}) in {d}",
        f"node id        {info['node_id']}  (node.key, passphrase ${NODE_PASSPHRASE_ENV})",
        f"admin address  {info['admin_address']}  (admin.key, passphrase ${PASSPHRASE_ENV})",
    ]
    if args.tls:
        lines.append(f"rpc tls sm3    {doc['rpc_tls_sm3']}  (tls/rpc.crt)")
        if "rpc_tls_cert" not in known:
            lines.append("warning: this build's node has no TLS listener; config left plain")
    lines.append(f"send {d / 'site.json'} (public) to the coordinator; keep the .key files here")
    _emit(args, info, lines)
    return 0


def _cmd_account_init(args: argparse.Namespace) -> int:
    from gmchain.crypto_sm import PrivateKey, save_private_key
    from gmchain.node.ceremony import make_account_descriptor

    d = Path(args.dir)
    name = args.name or d.resolve().name
    _refuse_existing(d, ACCOUNT_OUTPUTS, "an account")
    key = PrivateKey.generate()
    doc = make_account_descriptor(
        chain_id=args.chain_id, name=name, org=args.org, role=args.role, key=key
    )
    pw = _passphrase(PASSPHRASE_ENV, "account key")
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    save_private_key(d / "account.key", key, pw)
    (d / "account.json").write_text(json.dumps(doc, indent=2) + "\n")
    info = {
        "dir": str(d),
        "name": name,
        "org": args.org,
        "role": args.role,
        "address": "0x" + key.public_key.address.hex(),
        "descriptor": str(d / "account.json"),
    }
    _emit(
        args,
        info,
        [
            f"account {name} ({args.org}, {args.role}) in {d}",
            f"address  {info['address']}  (account.key, passphrase ${PASSPHRASE_ENV})",
            f"send {d / 'account.json'} (public) to the coordinator; keep account.key here",
        ],
    )
    return 0


def _cmd_genesis_assemble(args: argparse.Namespace) -> int:
    from gmchain.node.ceremony import (
        read_account_descriptor,
        read_json_file,
        read_site_descriptor,
    )
    from gmchain.node.ceremony_genesis import assemble_genesis, genesis_hash_of, write_assembly

    sites = [
        read_site_descriptor(read_json_file(p), where=p, chain_id=args.chain_id) for p in args.site
    ]
    accounts = [
        read_account_descriptor(read_json_file(p), where=p, chain_id=args.chain_id)
        for p in args.account or ()
    ]
    ts = args.timestamp_ms if args.timestamp_ms is not None else int(time.time() * 1000)
    g = assemble_genesis(args.chain_id, sites, accounts, timestamp_ms=ts)
    out = Path(args.out)
    write_assembly(out, g, sites, force=args.force)
    ghash = genesis_hash_of(g)
    info = {
        "chain_id": args.chain_id,
        "genesis_hash": ghash,
        "genesis": str(out / "genesis.json"),
        "peers": str(out / "peers.json"),
        "validators": len(g.validators),
        "observers": len(g.observers),
        "accounts": len(g.accounts),
    }
    _emit(
        args,
        info,
        [
            f"chain {args.chain_id}: {len(g.validators)} validators, {len(g.observers)} "
            f"observers, {len(g.accounts)} accounts",
            f"wrote {out / 'genesis.json'} and {out / 'peers.json'}",
            f"genesis hash {ghash}",
            "send both files to every site, and read the hash to each operator on another "
            "channel (phone, signed mail): they install with --expect-hash",
        ],
    )
    return 0


def _cmd_genesis_hash(args: argparse.Namespace) -> int:
    from gmchain.node.ceremony_genesis import genesis_hash_of
    from gmchain.node.config import load_genesis

    g = load_genesis(args.file)
    ghash = genesis_hash_of(g)
    _emit(args, {"chain_id": g.chain_id, "genesis_hash": ghash}, [ghash])
    return 0


def _cmd_site_install(args: argparse.Namespace) -> int:
    from gmchain.node.ceremony_genesis import install_site

    d = Path(args.dir)
    info = install_site(
        d,
        genesis_file=Path(args.genesis),
        peers_file=Path(args.peers),
        expect_hash=args.expect_hash,
        chain_id=args.chain_id,
        force=args.force,
    )
    _emit(
        args,
        info,
        [
            f"site {info['name']}: genesis {info['genesis_hash']} installed in {d}",
            f"peers: {', '.join(info['peers']) or '(none)'}",
            f"start it with: gmchain node start --config {d / 'config.toml'}",
        ],
    )
    return 0


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON document")


def add_site_commands(sub: Any) -> None:
    """Register `site`, `account` and `genesis` on node/cli.py's subparsers."""
    p = sub.add_parser("site", help="a site's keys, descriptor and config (docs/sites.md)")
    site = p.add_subparsers(dest="site_command", metavar="SUBCOMMAND")
    site.required = True
    q = site.add_parser(
        "init",
        help="create a site's node and admin keys, its public descriptor and its config",
        description="Create, in --dir: node.key, admin.key (encrypted; passphrases from "
        f"${NODE_PASSPHRASE_ENV} and ${PASSPHRASE_ENV}, or typed), site.json (public: send it to "
        "the coordinator), config.toml, and with --tls tls/rpc.crt and tls/rpc.key.",
    )
    q.add_argument("--dir", required=True, metavar="D", help="the site's folder (new or empty)")
    q.add_argument("--name", required=True, help="the node's name, unique on the chain")
    q.add_argument("--org", required=True, help="the organisation that runs the site")
    q.add_argument("--chain-id", required=True, metavar="ID", help="the chain being founded")
    q.add_argument(
        "--p2p", required=True, metavar="HOST:PORT", help="P2P address: bound, and dialled by peers"
    )
    q.add_argument(
        "--rpc", required=True, metavar="HOST:PORT", help="JSON-RPC address: bound, and dialled"
    )
    q.add_argument("--power", type=int, default=1, help="voting power (default 1)")
    q.add_argument(
        "--no-validator", action="store_true", help="an observer: follows, does not vote"
    )
    q.add_argument(
        "--tls",
        action="store_true",
        help="make a self-signed RPC certificate for the rpc host (tls/) and serve RPC over TLS",
    )
    q.add_argument(
        "--rpc-auth",
        choices=("reads", "off"),
        default="reads",
        help='config rpc_auth: "reads" needs a login for org data (default reads)',
    )
    _json_flag(q)
    q.set_defaults(handler=_cmd_site_init)

    q = site.add_parser(
        "install",
        help="check the genesis hash, then install genesis.json and peers.json in a site",
    )
    q.add_argument("--dir", required=True, metavar="D", help="the site's folder (`site init`)")
    q.add_argument("--genesis", required=True, metavar="FILE", help="genesis.json received")
    q.add_argument("--peers", required=True, metavar="FILE", help="peers.json received")
    q.add_argument(
        "--expect-hash",
        required=True,
        metavar="H",
        help="the genesis hash the coordinator read out on another channel",
    )
    q.add_argument(
        "--chain-id", metavar="ID", help="refuse unless the site is for this chain (default: any)"
    )
    q.add_argument(
        "--force", action="store_true", help="replace a different genesis.json/peers.json"
    )
    _json_flag(q)
    q.set_defaults(handler=_cmd_site_install)

    p = sub.add_parser("account", help="an account's key and public descriptor (docs/sites.md)")
    acct = p.add_subparsers(dest="account_command", metavar="SUBCOMMAND")
    acct.required = True
    q = acct.add_parser(
        "init",
        help="create an account key (account.key) and its public descriptor (account.json)",
    )
    q.add_argument("--dir", required=True, metavar="D", help="the account's folder (new or empty)")
    q.add_argument("--org", required=True, help="the account's organisation")
    q.add_argument(
        "--role", required=True, help="admin, regulator or member (the membership roles)"
    )
    q.add_argument("--chain-id", required=True, metavar="ID", help="the chain being founded")
    q.add_argument("--name", help="a label for the coordinator (default: the folder's name)")
    _json_flag(q)
    q.set_defaults(handler=_cmd_account_init)

    p = sub.add_parser("genesis", help="assemble a genesis from descriptors; print its hash")
    gen = p.add_subparsers(dest="genesis_command", metavar="SUBCOMMAND")
    gen.required = True
    q = gen.add_parser(
        "assemble",
        help="check the descriptors and write genesis.json and peers.json",
    )
    q.add_argument("--chain-id", required=True, metavar="ID", help="the chain being founded")
    q.add_argument(
        "--site", action="append", required=True, metavar="FILE", help="a site.json (repeat)"
    )
    q.add_argument("--account", action="append", metavar="FILE", help="an account.json (repeat)")
    q.add_argument(
        "--timestamp-ms", type=int, metavar="T", help="genesis time, ms since 1970 (default now)"
    )
    q.add_argument("--out", required=True, metavar="DIR", help="where to write the two files")
    q.add_argument("--force", action="store_true", help="replace existing output files")
    _json_flag(q)
    q.set_defaults(handler=_cmd_genesis_assemble)
    q = gen.add_parser("hash", help="print a genesis file's hash (what every site compares)")
    q.add_argument("file", metavar="FILE", help="a genesis.json")
    _json_flag(q)
    q.set_defaults(handler=_cmd_genesis_hash)

"""The `gmchain` command line: the parser, `main`, keys, and the commands run by other modules.

The client commands (status, tx, evidence, proof) live in node/cli_client.py; `gov` in
node/cli_gov.py; `relay` in node/cli_relay.py; `site`, `account` and `genesis` (the genesis
ceremony of separate sites) in node/cli_site.py.

Rules this module keeps:
1. Every command has `--help`. Errors are one line on stderr, never a traceback: exit 1 for a
   failure (node unreachable, RPC error, failed transaction, bad file, wrong passphrase), exit 2
   for a usage error. `GMCHAIN_DEBUG=1` re-raises unexpected exceptions, for developers.
2. Output is for people by default; `--json` prints one JSON document for machines.
3. Client commands talk to a node only through `node.sdk` (JSON-RPC; default
   http://127.0.0.1:8545). `proof verify` is offline: it opens no connection.
4. Commands implemented elsewhere (`dev`, `node start`, `crypto-bench`, `cluster`, `bench`) are
   imported lazily inside their handlers, so the client commands work without them; where only
   the SDK is installed (no `[node]` extra) such a command fails in one line saying what to
   install. `gmchain --version` prints the version, commit and SM2 backend (node/cli_meta.py).
5. Key files are never overwritten; new ones are mode 0600 (crypto_sm). Passphrases come from the
   environment, never from argv (argv is visible to every user in `ps`); see node/keys_cli.py.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gmchain.node.cli_client import (
    CliError,
    cmd_evidence_attest,
    cmd_evidence_flow,
    cmd_evidence_get,
    cmd_evidence_submit,
    cmd_proof_get,
    cmd_proof_verify,
    cmd_status,
    cmd_tx_get,
    print_json,
)
from gmchain.node.cli_gov import add_gov_commands
from gmchain.node.cli_meta import (
    CliParser,
    VersionAction,
    add_completion_command,
)
from gmchain.node.cli_relay import add_relay_command
from gmchain.node.cli_site import add_site_commands
from gmchain.node.cli_xc import add_xc_commands

__all__ = ["build_parser", "main"]

_DEFAULT_RPC = os.environ.get("GMCHAIN_RPC") or "http://127.0.0.1:8545"
_Handler = Callable[[argparse.Namespace], int]
# Top-level modules of the `[node]` extra (pyproject.toml): a command that needs one of them is
# not available where only the SDK is installed (rule 4).
_NODE_EXTRA = {"plyvel", "uvloop", "prometheus_client"}


# --- commands: keys, node, delegations ----------------------------------------------------------


def _cmd_keygen(args: argparse.Namespace) -> int:
    from gmchain.crypto_sm import PrivateKey, save_private_key
    from gmchain.node.keys_cli import (
        DEV_PASSPHRASE,
        NODE_PASSPHRASE_ENV,
        resolve_node_passphrase,
        resolve_passphrase,
    )

    if args.out is None and not args.node:  # a usage error (rule 1): exit 2
        print(
            "gmchain keygen: error: --out is required without --node (see gmchain keygen --help)",
            file=sys.stderr,
        )
        return 2
    out = Path(args.out or "node.key")
    if os.path.lexists(out):
        raise CliError(f"{out} already exists: refusing to overwrite a key file")
    if args.no_passphrase:
        passphrase = DEV_PASSPHRASE
    elif args.node:
        passphrase = resolve_node_passphrase(args.passphrase_env)
    else:
        passphrase = resolve_passphrase(args.passphrase_env)
    if passphrase == DEV_PASSPHRASE:
        print("gmchain: warning: key encrypted under the public dev passphrase", file=sys.stderr)
    key = PrivateKey.generate()
    if not out.parent.exists():
        raise CliError(f"directory {out.parent} does not exist")
    save_private_key(out, key, passphrase)
    info = {
        "address": "0x" + key.public_key.address.hex(),
        "public_key": "0x" + key.public_key.to_bytes().hex(),
        "path": str(out),
    }
    if args.node:  # a node's id is its key's address (p2p PeerInfo.node_id)
        info = {"node_id": info["address"], **info}
    if args.json:
        print_json(info)
    elif args.node:
        print(f"node id     {info['node_id']}")
        print(f"public key  {info['public_key']}")
        print(f"written to  {out} (mode 0600; the private key stays in this file)")
        env = args.passphrase_env or NODE_PASSPHRASE_ENV
        print(f"the node reads its passphrase from ${env} (config key_passphrase_env)")
    else:
        print(f"address     {info['address']}")
        print(f"public key  {info['public_key']}")
        print(f"written to  {out} (mode 0600)")
    return 0


def _cmd_node_join_request(args: argparse.Namespace) -> int:
    from gmchain.node.keys_cli import load_key, make_join_request_doc, resolve_node_passphrase

    key = load_key(args.key, resolve_node_passphrase(args.passphrase_env))
    doc = make_join_request_doc(args.chain_id, key, args.org)
    text = json.dumps(doc, indent=2) + "\n"
    if args.out is None:
        sys.stdout.write(text)
        return 0
    out = Path(args.out)
    if os.path.lexists(out) and not args.force:
        raise CliError(f"{out} already exists (use --force to replace it)")
    out.write_text(text)
    print(f"join request of node 0x{key.public_key.address.hex()} for {args.org} written to {out}")
    return 0


def _delegate(module: str, func: str, what: str) -> Callable[..., Any]:
    """`module.func`, imported now (rule 4), or a clear error if that part is not installed."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if exc.name is not None and module.startswith(exc.name):
            raise CliError(
                f"`gmchain {what}` is not available: {module} is not installed"
            ) from None
        if missing in _NODE_EXTRA or (exc.name or "").startswith("aiohttp.web"):
            raise CliError(
                f"`gmchain {what}` needs the node's dependencies ({missing} is missing): "
                "pip install 'gmchain[node]'"
            ) from None
        raise
    fn = getattr(mod, func, None)
    if fn is None:
        raise CliError(f"`gmchain {what}` is not available: {module}.{func} is missing")
    return fn  # type: ignore[no-any-return]


def _returned_code(result: Any) -> int:
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def _cmd_dev(args: argparse.Namespace) -> int:
    return _returned_code(_delegate("gmchain.node.daemon", "run_dev", "dev")(args))


def _cmd_node_start(args: argparse.Namespace) -> int:
    if not Path(args.config).is_file():
        raise CliError(f"no config file at {args.config}")
    return _returned_code(_delegate("gmchain.node.daemon", "run_node", "node start")(args))


def _cmd_crypto_bench(args: argparse.Namespace) -> int:
    argv = (["--json"] if args.json else []) + (
        ["--seconds", str(args.seconds)] if args.seconds is not None else []
    )
    return _returned_code(_delegate("gmchain.crypto_sm.bench", "main", "crypto-bench")(argv))


def _cmd_cluster(args: argparse.Namespace) -> int:
    return _returned_code(_delegate("gmchain.node.cluster", "main", "cluster")(args.rest))


def _cmd_platform(args: argparse.Namespace) -> int:
    return _returned_code(_delegate("gmchain.node.platform", "main", "platform")(args.rest))


def _cmd_db(args: argparse.Namespace) -> int:
    if args.rest[:1] == ["safety-reset"]:  # needs consensus types: lives in node/, not ledger/
        return _returned_code(_delegate("gmchain.node.safetystore", "main", "db")(args.rest))
    if args.rest[:1] in (["snapshot"], ["restore"]):  # node/cli_db.py (backup, fast join)
        return _returned_code(_delegate("gmchain.node.cli_db", "main", "db")(args.rest))
    return _returned_code(_delegate("gmchain.ledger.store_tool", "main", "db")(args.rest))


def _cmd_bench(args: argparse.Namespace) -> int:
    return _returned_code(_delegate("gmchain.bench.cli", "main", "bench")(args.rest))


# --- the parser ---------------------------------------------------------------------------------


def _common_parents() -> tuple[CliParser, CliParser]:
    out = CliParser(add_help=False)
    out.add_argument("--json", action="store_true", help="print one JSON document")
    rpc = CliParser(add_help=False)
    rpc.add_argument(
        "--rpc",
        default=_DEFAULT_RPC,
        metavar="URL",
        help=f"the node's JSON-RPC URL (default $GMCHAIN_RPC or {_DEFAULT_RPC})",
    )
    rpc.add_argument(
        "--key", metavar="FILE", help="signing key file (default $GMCHAIN_HOME/dev/client.key)"
    )
    rpc.add_argument(
        "--passphrase-env",
        metavar="VAR",
        help="read the key's passphrase from env VAR (default $GMCHAIN_PASSPHRASE, "
        "else the dev passphrase)",
    )
    rpc.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds to wait for each RPC answer (default 10)",
    )
    rpc.add_argument(
        "--ca-file",
        metavar="FILE",
        help="PEM certificates to trust for an https:// node, e.g. its rpc.crt (default: the "
        "system's CAs)",
    )
    rpc.add_argument(
        "--auth-key",
        metavar="FILE",
        help="account key to log in with when the node has rpc_auth = reads (passphrase as for "
        "--key; default: no login)",
    )
    return out, rpc


def _add_wait(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-wait", action="store_true", help="return once the node accepts the tx")
    p.add_argument(
        "--wait-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds to wait for the commit (default 30)",
    )


def _add_log_options(p: argparse.ArgumentParser) -> None:
    """The daemon's log options; each overrides its config key (docs/ops.md, "Logs")."""
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="log lines as text or as one JSON object each (default: config key log_format,"
        " else text)",
    )
    p.add_argument(
        "--log-file",
        metavar="FILE",
        help="append the log to FILE and reopen it on SIGHUP (default: config key log_file,"
        " else stderr)",
    )


def _level(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer 1-5, got {text!r}") from None
    if not 1 <= value <= 5:
        raise argparse.ArgumentTypeError(f"expected an integer 1-5, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    out, rpc = _common_parents()
    parser = CliParser(
        prog="gmchain",
        description="gmchain: a permissioned BFT chain for securities evidence (SM2/SM3/SM4).",
    )
    parser.add_argument("--version", action=VersionAction)  # node/cli_meta.py rule 2
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CliParser)
    sub.required = True

    p = sub.add_parser("keygen", parents=[out], help="create an SM2 key file (mode 0600)")
    p.add_argument(
        "--out", metavar="FILE", help="where to write the key file (required without --node)"
    )
    p.add_argument(
        "--node",
        action="store_true",
        help="a node key: prints its node id; --out defaults to ./node.key and the passphrase "
        "to $GMCHAIN_NODE_PASSPHRASE (what a node reads)",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--passphrase-env", metavar="VAR", help="encrypt under the passphrase in env VAR"
    )
    g.add_argument(
        "--no-passphrase",
        action="store_true",
        help="encrypt under the public dev passphrase (INSECURE, dev only)",
    )
    p.set_defaults(handler=_cmd_keygen)

    p = sub.add_parser("dev", help="run a one-validator dev chain (initialised on first use)")
    p.add_argument("--data-dir", metavar="D", help="data directory (default $GMCHAIN_HOME/dev)")
    p.add_argument(
        "--rpc-port",
        type=int,
        default=8545,
        metavar="PORT",
        help="JSON-RPC port on 127.0.0.1 (default 8545)",
    )
    p.add_argument("--reset", action="store_true", help="wipe the dev chain and start afresh")
    _add_log_options(p)
    p.set_defaults(handler=_cmd_dev)

    p = sub.add_parser("node", help="run a node from a config file")
    node_sub = p.add_subparsers(dest="node_command", metavar="SUBCOMMAND", parser_class=CliParser)
    node_sub.required = True
    q = node_sub.add_parser("start", help="start the node described by --config")
    q.add_argument("--config", required=True, metavar="FILE", help="the node's config file")
    _add_log_options(q)
    q.set_defaults(handler=_cmd_node_start)
    q = node_sub.add_parser(
        "join-request",
        help="write a node's request to join a chain (node key, org, proof of possession)",
        description="Sign a join request with the node key (docs/joining.md): the committee "
        "proposes admit_observer with it. Nothing secret is written.",
    )
    q.add_argument("--key", required=True, metavar="FILE", help="the node's key file")
    q.add_argument("--org", required=True, help="the organisation the node belongs to")
    q.add_argument("--chain-id", required=True, metavar="ID", help="the chain to join")
    q.add_argument("--out", metavar="FILE", help="write the JSON here (default: stdout)")
    q.add_argument("--force", action="store_true", help="replace an existing --out file")
    q.add_argument(
        "--passphrase-env",
        metavar="VAR",
        help="the key's passphrase is in env VAR (default $GMCHAIN_NODE_PASSPHRASE, else the "
        "dev passphrase)",
    )
    q.set_defaults(handler=_cmd_node_join_request)

    p = sub.add_parser("crypto-bench", parents=[out], help="measure SM2/SM3/SM4 speed here")
    p.add_argument("--seconds", type=float, metavar="S", help="seconds per measurement")
    p.set_defaults(handler=_cmd_crypto_bench)

    for name, handler, text in (
        ("cluster", _cmd_cluster, "run a local multi-node cluster (node.cluster)"),
        ("bench", _cmd_bench, "the TPS/latency certification harness (bench.cli)"),
        (
            "platform",
            _cmd_platform,
            "a regulator chain, two business chains and their relayers on this machine "
            "(node.platform)",
        ),
        (
            "db",
            _cmd_db,
            "ledger store maintenance: `db check PATH` deep-checks a stopped node; "
            "`db safety-reset PATH --round R` replaces damaged consensus safety data; "
            "`db snapshot --config C --out F` backs up a (running) node; "
            "`db restore --snapshot F --config C` rebuilds a node from one (fast join)",
        ),
    ):
        p = sub.add_parser(name, help=text, description=text + "; arguments are passed on.")
        p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the tool")
        p.set_defaults(handler=handler)

    p = sub.add_parser("status", parents=[out, rpc], help="the node's status")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("tx", help="transactions")
    tx_sub = p.add_subparsers(dest="tx_command", metavar="SUBCOMMAND", parser_class=CliParser)
    tx_sub.required = True
    q = tx_sub.add_parser("get", parents=[out, rpc], help="a transaction and its receipt")
    q.add_argument("tx_id", metavar="TX_ID", help="0x-hex transaction id")
    q.set_defaults(handler=cmd_tx_get)

    p = sub.add_parser("evidence", help="evidence records (the evidence contract)")
    ev = p.add_subparsers(dest="evidence_command", metavar="SUBCOMMAND", parser_class=CliParser)
    ev.required = True
    q = ev.add_parser("submit", parents=[out, rpc], help="submit one evidence record")
    q.add_argument("--id", required=True, help="record id (new, unique)")
    q.add_argument("--flow", required=True, help="business flow id")
    q.add_argument("--step", required=True, help="step name within the flow")
    q.add_argument(
        "--scenario", default="private-fund-sale", help="scenario name (default private-fund-sale)"
    )
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--data", metavar="TEXT", help="the raw data as text (only its SM3 goes on chain)"
    )
    src.add_argument("--file", metavar="F", help="the raw data file (only its SM3 goes on chain)")
    q.add_argument("--meta", action="append", metavar="K=V", help="a metadata entry (repeatable)")
    q.add_argument(
        "--level", type=_level, default=2, help="data classification level 1-5 (default 2)"
    )
    q.add_argument(
        "--prev",
        default="auto",
        metavar="ID",
        help="previous record of the flow: an id, 'none', or 'auto' (default: look it up)",
    )
    q.add_argument("--storage-ref", metavar="REF", help="where the encrypted raw data lives")
    _add_wait(q)
    q.set_defaults(handler=cmd_evidence_submit)

    q = ev.add_parser("get", parents=[out, rpc], help="one evidence record")
    q.add_argument("record_id", metavar="ID", help="the record id")
    q.set_defaults(handler=cmd_evidence_get)

    q = ev.add_parser("flow", parents=[out, rpc], help="every record of a flow, in order")
    q.add_argument("flow_id", metavar="FLOW", help="the business flow id")
    q.add_argument(
        "--verify",
        action="store_true",
        help="check the hash links (locally and by the contract); exit 1 if broken",
    )
    q.set_defaults(handler=cmd_evidence_flow)

    q = ev.add_parser(
        "attest",
        parents=[out, rpc],
        help="add another party's SM2 signature over a record's digest",
    )
    q.add_argument("--id", required=True, help="record id")
    q.add_argument("--attester-key", required=True, metavar="FILE", help="the attester's key file")
    q.add_argument(
        "--attester-passphrase-env",
        metavar="VAR",
        help="env VAR holding the attester key's passphrase",
    )
    q.add_argument("--role", required=True, help="the attester's role (investor, depositor, ...)")
    _add_wait(q)
    q.set_defaults(handler=cmd_evidence_attest)

    p = sub.add_parser("proof", help="transaction proofs")
    pr = p.add_subparsers(dest="proof_command", metavar="SUBCOMMAND", parser_class=CliParser)
    pr.required = True
    q = pr.add_parser("get", parents=[out, rpc], help="export a transaction's JSON proof bundle")
    q.add_argument("tx_id", metavar="TX_ID", nargs="?", help="0x-hex transaction id")
    q.add_argument("--record", metavar="ID", help="prove the transaction that wrote this record")
    q.add_argument("--out", metavar="FILE", help="write the bundle here (default: stdout)")
    q.add_argument("--force", action="store_true", help="replace an existing --out file")
    q.add_argument(
        "--at-height", type=int, metavar="H", help="prove against this header (default head)"
    )
    q.set_defaults(handler=cmd_proof_get)

    q = pr.add_parser(
        "verify",
        parents=[out],
        help="verify a proof bundle offline (no RPC) against --genesis or --validators",
    )
    q.add_argument("file", metavar="FILE", help="the JSON proof bundle")
    q.add_argument(
        "--genesis",
        metavar="FILE",
        help="the chain's genesis.json: the commit certificates must verify against its "
        "validators (this or --validators is required)",
    )
    q.add_argument(
        "--validators",
        metavar="FILE",
        help='a validator set you trust: JSON {"chain_id"?: ..., "validators": [{"pubkey", '
        '"power", "org"}]} or just the list (then --chain-id is required)',
    )
    q.add_argument(
        "--chain-id",
        metavar="ID",
        help="the chain the trusted validator set signs for (required with --validators unless "
        "its file names one)",
    )
    q.set_defaults(handler=cmd_proof_verify)

    add_gov_commands(sub, out, rpc, _add_wait)  # `gmchain gov ...` (node/cli_gov.py)
    add_xc_commands(sub, out, rpc)  # `gmchain xc ...` (node/cli_xc.py)
    add_relay_command(sub)  # `gmchain relay` (node/cli_relay.py)
    add_site_commands(sub)  # `gmchain site|account|genesis` (node/cli_site.py)
    add_completion_command(sub)  # `gmchain completion` (node/cli_meta.py)
    return parser


def _error_text(exc: BaseException) -> str | None:
    """The one-line message for an expected failure, or None if it is unexpected (our bug)."""
    from gmchain.crypto_sm import CryptoError
    from gmchain.node.sdk import SdkError

    if isinstance(exc, CliError | SdkError | CryptoError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return str(exc) if not exc.filename else f"no such file: {exc.filename}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}"
    if isinstance(exc, IsADirectoryError):
        return f"is a directory: {exc.filename}"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
    if isinstance(exc, ValueError):
        return str(exc)
    return None


def _non_text_argument(argv: Sequence[str]) -> str | None:
    """The usage error for the first argument that is not UTF-8 text, or None.

    Python hands bytes that are not UTF-8 over as lone surrogates (PEP 383); such a string has
    no UTF-8 form, so no node could store it: refuse it here, naming the option it belongs to."""
    for i, arg in enumerate(argv):
        try:
            arg.encode()
        except UnicodeEncodeError:
            shown = arg.encode(errors="surrogateescape").decode("utf-8", errors="backslashreplace")
            where = f"the value of {argv[i - 1]}" if i and argv[i - 1].startswith("-") else "an"
            return f"{where} argument {shown!r} is not valid UTF-8 text; pass it in UTF-8"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the exit code (0 ok, 1 failure, 2 usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    bad = _non_text_argument(argv)
    if bad is not None:
        print(f"gmchain: error: {bad}", file=sys.stderr)
        return 2
    # Tools with their own parsers get their arguments untouched (argparse.REMAINDER would not
    # capture a leading option such as `gmchain bench --profile single`).
    delegated = {
        "cluster": _cmd_cluster,
        "bench": _cmd_bench,
        "db": _cmd_db,
        "platform": _cmd_platform,
    }
    handler: _Handler
    if argv and argv[0] in delegated and not (len(argv) == 2 and argv[1] in ("-h", "--help")):
        handler, args = delegated[argv[0]], argparse.Namespace(rest=argv[1:])
    else:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help (0) or a usage error (2)
            return exc.code if isinstance(exc.code, int) else 2
        handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("gmchain: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # a tool's own exit: a message (str) is its one-line error
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(f"gmchain: {str(exc.code).removeprefix('error: ')}", file=sys.stderr)
        return 1
    except Exception as exc:
        text = _error_text(exc)
        if text is None:
            if os.environ.get("GMCHAIN_DEBUG"):
                raise
            text = f"internal error ({type(exc).__name__}: {exc}); rerun with GMCHAIN_DEBUG=1"
        print(f"gmchain: {text}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

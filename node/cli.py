"""The `gmchain` command line: keys, the dev chain, node start, evidence, proofs.

Rules this module keeps:
1. Every command has `--help`. Errors are one line on stderr, never a traceback: exit 1 for a
   failure (node unreachable, RPC error, failed transaction, bad file, wrong passphrase), exit 2
   for a usage error. `GMCHAIN_DEBUG=1` re-raises unexpected exceptions, for developers.
2. Output is for people by default; `--json` prints one JSON document for machines.
3. Client commands talk to a node only through `node.sdk` (JSON-RPC; default
   http://127.0.0.1:8545). `proof verify` is offline: it opens no connection.
4. Commands implemented elsewhere (`dev`, `node start`, `crypto-bench`, `cluster`, `bench`) are
   imported lazily inside their handlers, so the client commands work without them.
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
from typing import Any, NoReturn

__all__ = ["build_parser", "main"]

_DEFAULT_RPC = os.environ.get("GMCHAIN_RPC") or "http://127.0.0.1:8545"
_Handler = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """A failure to report in one line (exit 1)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit 2 (rule 1)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --- output -------------------------------------------------------------------------------------


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))


def _print_fields(obj: dict[str, Any], indent: str = "") -> None:
    width = max((len(k) for k in obj), default=0)
    for key, value in obj.items():
        if isinstance(value, dict):
            print(f"{indent}{key}:")
            _print_fields(value, indent + "  ")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            print(f"{indent}{key}:")
            for i, item in enumerate(value):
                print(f"{indent}  [{i}]")
                _print_fields(item, indent + "    ")
        else:
            shown = json.dumps(value) if isinstance(value, list | bool) or value is None else value
            print(f"{indent}{key.ljust(width)}  {shown}")


def _get(obj: dict[str, Any], *names: str, default: Any = None) -> Any:
    for name in names:
        if name in obj:
            return obj[name]
    return default


def _status_name(receipt: dict[str, Any]) -> str:
    name = _get(receipt, "status_name", "statusName")
    status = receipt.get("status")
    if isinstance(status, str):
        return status
    return str(name) if name is not None else str(status)


def _is_ok(receipt: dict[str, Any]) -> bool:
    return receipt.get("status") in (0, "OK", "ok")


def _report_receipt(args: argparse.Namespace, receipt: dict[str, Any], what: str) -> int:
    """Print a receipt; a failed transaction is a failed command (exit 1)."""
    if args.json:
        _print_json(receipt)
    tx_id = _get(receipt, "tx_id", "txId", "transactionHash", default="?")
    if receipt.get("pending"):
        if not args.json:
            print(f"submitted: tx {tx_id} (not waiting for the commit)")
        return 0
    height = _get(receipt, "height", "block_height", "blockNumber", default="?")
    if not _is_ok(receipt):
        error = receipt.get("error") or "no reason given"
        print(
            f"gmchain: {what} failed: {error} (status {_status_name(receipt)}, tx {tx_id}, "
            f"block {height})",
            file=sys.stderr,
        )
        return 1
    if not args.json:
        print(f"{what}: committed in block {height}, tx {tx_id}")
    return 0


# --- shared plumbing ----------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Any:
    from gmchain.node.sdk import SyncClient

    return SyncClient(args.rpc, timeout_s=args.timeout)


def _signing_key(args: argparse.Namespace) -> Any:
    from gmchain.node.keys_cli import default_key_path, load_key, resolve_passphrase

    path = args.key or default_key_path()
    return load_key(path, resolve_passphrase(args.passphrase_env))


def _tx_id(text: str) -> bytes:
    from gmchain.node.sdk import from_hex

    return from_hex(text, 32, what="transaction id")


def _read_json_file(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise CliError(f"{path} is not valid JSON: {exc}") from None


# --- commands: keys, node, delegations ----------------------------------------------------------


def _cmd_keygen(args: argparse.Namespace) -> int:
    from gmchain.crypto_sm import PrivateKey, save_private_key
    from gmchain.node.keys_cli import DEV_PASSPHRASE, resolve_passphrase

    out = Path(args.out)
    if os.path.lexists(out):
        raise CliError(f"{out} already exists: refusing to overwrite a key file")
    passphrase = DEV_PASSPHRASE if args.no_passphrase else resolve_passphrase(args.passphrase_env)
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
    if args.json:
        _print_json(info)
    else:
        print(f"address     {info['address']}")
        print(f"public key  {info['public_key']}")
        print(f"written to  {out} (mode 0600)")
    return 0


def _delegate(module: str, func: str, what: str) -> Callable[..., Any]:
    """`module.func`, imported now (rule 4), or a clear error if that part is not installed."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            raise CliError(
                f"`gmchain {what}` is not available: {module} is not installed"
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


def _cmd_db(args: argparse.Namespace) -> int:
    if args.rest[:1] == ["safety-reset"]:  # needs consensus types: lives in node/, not ledger/
        return _returned_code(_delegate("gmchain.node.safetystore", "main", "db")(args.rest))
    return _returned_code(_delegate("gmchain.ledger.store_tool", "main", "db")(args.rest))


def _cmd_bench(args: argparse.Namespace) -> int:
    return _returned_code(_delegate("gmchain.bench.cli", "main", "bench")(args.rest))


# --- commands: client ---------------------------------------------------------------------------


def _cmd_status(args: argparse.Namespace) -> int:
    status = _client(args).status()
    if args.json:
        _print_json(status)
    else:
        _print_fields(status)
    return 0


def _cmd_tx_get(args: argparse.Namespace) -> int:
    client = _client(args)
    tx_id = _tx_id(args.tx_id)
    tx = client.get_tx(tx_id)
    if tx is None:
        raise CliError(f"no transaction {args.tx_id} on this node (unknown or still pending)")
    receipt = client.get_receipt(tx_id)
    out = {"transaction": tx, "receipt": receipt}
    if args.json:
        _print_json(out)
    else:
        _print_fields(out)
    return 0


def _parse_meta(items: Sequence[str]) -> dict[str, str]:
    meta: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--meta expects KEY=VALUE, got {item!r}")
        if key in meta:
            raise CliError(f"--meta key {key!r} given twice")
        meta[key] = value
    return meta


def _cmd_evidence_submit(args: argparse.Namespace) -> int:
    data = Path(args.file).read_bytes() if args.file is not None else args.data.encode()
    meta = _parse_meta(args.meta or [])
    key = _signing_key(args)
    prev = None if args.prev in ("", "none") else args.prev
    receipt = _client(args).submit_evidence(
        key,
        record_id=args.id,
        flow_id=args.flow,
        scenario=args.scenario,
        step=args.step,
        data=data,
        storage_ref=args.storage_ref,
        metadata=meta,
        level=args.level,
        prev_record_id=prev,
        wait=not args.no_wait,
        timeout_s=args.wait_timeout,
    )
    return _report_receipt(args, receipt, f"evidence {args.id}")


def _cmd_evidence_get(args: argparse.Namespace) -> int:
    record = _client(args).get_evidence(args.record_id)
    if args.json:
        _print_json(record)
    else:
        _print_fields(record)
    return 0


def _cmd_evidence_flow(args: argparse.Namespace) -> int:
    client = _client(args)
    flow = client.get_flow(args.flow_id)
    records = flow["records"]
    result: dict[str, Any] = dict(flow)
    code = 0
    if args.verify:
        problems = _check_links(records)
        remote = client.verify_flow(args.flow_id)
        intact = not problems and bool(_get(remote, "intact", "ok", "valid", default=False))
        # The answer is only as complete as the node's chain (issue 10, fault 2): say at which
        # height, and refuse to call a flow intact on a node still catching up.
        st = client.status()
        result["verify"] = {
            "intact": intact,
            "problems": problems,
            "node": remote,
            "answeredAt": st.get("height"),
            "catchingUp": bool(st.get("catchingUp")),
        }
        code = 0 if intact and not st.get("catchingUp") else 1
    if args.json:
        _print_json(result)
        return code
    if not records:
        print(f"flow {args.flow_id}: no records")
    for i, rec in enumerate(records):
        step = _get(rec, "step", default="?")
        rid = _get(rec, "record_id", "recordId", default="?")
        rhash = _get(rec, "record_hash", "recordHash", default="?")
        print(f"{i:>3}  {rid}  step={step}  hash={rhash}")
    if args.verify:
        at = result["verify"]["answeredAt"]
        if code == 0:
            print(f"flow {args.flow_id}: hash chain intact ({len(records)} records) at height {at}")
        elif result["verify"]["intact"]:
            print(
                f"gmchain: flow {args.flow_id}: {len(records)} records intact at height {at}, but "
                "the node is catching up (gm_status catchingUp): later records may be missing; "
                "verify against a node that is not catching up",
                file=sys.stderr,
            )
        else:
            for p in result["verify"]["problems"] or ["the node reports the chain broken"]:
                print(f"gmchain: flow {args.flow_id}: {p}", file=sys.stderr)
    return code


def _check_links(records: Sequence[dict[str, Any]]) -> list[str]:
    """Local check of the hash links the node returned: each prev_hash is the previous record's
    record_hash (the first is 32 zero bytes) and each prev_record_id names the previous record."""
    problems = []
    prev_hash, prev_id = "0x" + "00" * 32, None
    for i, rec in enumerate(records):
        if _get(rec, "prev_hash", "prevHash") != prev_hash:
            problems.append(f"record {i} does not link to the hash of record {i - 1}")
        if _get(rec, "prev_record_id", "prevRecordId") != prev_id:
            problems.append(f"record {i} does not name record {i - 1} as its predecessor")
        prev_hash = _get(rec, "record_hash", "recordHash")
        prev_id = _get(rec, "record_id", "recordId")
    return problems


def _cmd_evidence_attest(args: argparse.Namespace) -> int:
    from gmchain.node.keys_cli import load_key, resolve_passphrase

    attester = load_key(args.attester_key, resolve_passphrase(args.attester_passphrase_env))
    key = _signing_key(args)
    receipt = _client(args).attest(
        key,
        record_id=args.id,
        attester_key=attester,
        role=args.role,
        wait=not args.no_wait,
        timeout_s=args.wait_timeout,
    )
    return _report_receipt(args, receipt, f"attestation of {args.id}")


def _cmd_proof_get(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.record:
        if args.tx_id:
            raise CliError("give a TX_ID or --record, not both")
        record = client.get_evidence(args.record)
        tx_hex = _get(record, "tx_id", "txId")
        if not isinstance(tx_hex, str):
            raise CliError(f"evidence record {args.record} carries no transaction id")
        args.tx_id = tx_hex
    elif not args.tx_id:
        raise CliError("give a TX_ID or --record ID")
    bundle = client.get_tx_proof(_tx_id(args.tx_id), args.at_height)
    text = json.dumps(bundle, indent=2, sort_keys=True) + "\n"
    if args.out:
        if os.path.lexists(args.out) and not args.force:
            raise CliError(f"{args.out} already exists (use --force to replace it)")
        Path(args.out).write_text(text, encoding="utf-8")
        if not args.json:
            print(f"proof of tx {args.tx_id} written to {args.out}")
        else:
            _print_json({"path": args.out, "tx_id": args.tx_id})
    else:
        sys.stdout.write(text)
    return 0


def _cmd_proof_verify(args: argparse.Namespace) -> int:
    """Offline; succeeds only if the bundle verified against --genesis or --validators."""
    from gmchain.node.sdk import SdkError, verify_proof_bundle

    if not args.genesis and not args.validators:
        raise CliError(
            "no trust anchor: pass --genesis FILE (the chain's genesis.json) or --validators FILE "
            "(a validator set you trust); a bundle cannot certify itself"
        )
    if args.genesis and args.validators:
        raise CliError("give --genesis or --validators, not both")
    try:
        try:
            bundle = _read_json_file(args.file)
        except RecursionError:  # json's decoder recurses per nesting level
            raise SdkError(f"malformed bundle: {args.file} is nested too deeply") from None
        if args.genesis:
            verified = verify_proof_bundle(bundle, genesis=args.genesis, chain_id=args.chain_id)
        else:
            anchor = _read_json_file(args.validators)
            vals = anchor.get("validators") if isinstance(anchor, dict) else anchor
            chain_id = anchor.get("chain_id") if isinstance(anchor, dict) else None
            if not isinstance(vals, list):
                raise CliError(f"{args.validators}: expected {{chain_id?, validators: [...]}}")
            if args.chain_id and chain_id and args.chain_id != chain_id:
                raise CliError(f"--chain-id {args.chain_id!r} differs from {args.validators}'s")
            chain_id = args.chain_id or chain_id
            if not chain_id:
                raise CliError(
                    f"{args.validators} names no chain_id: pass --chain-id (the chain the "
                    "validator set signs for; it must come from you, not from the bundle)"
                )
            verified = verify_proof_bundle(bundle, validators=vals, chain_id=chain_id)
    except SdkError as exc:
        if args.json:
            _print_json({"valid": False, "reason": str(exc)})
        else:
            print(f"INVALID: {exc}")
        return 1
    if args.json:
        _print_json(
            {
                "valid": True,
                "tx_id": "0x" + verified.tx_id.hex(),
                "height": verified.height,
                "acc_size": verified.acc_size,
                "anchor_height": verified.anchor_height,
                "chain_id": verified.chain_id,
                "validator_set": "0x" + verified.validator_set.hex(),
                "genesis_hash": (
                    None if verified.genesis_hash is None else "0x" + verified.genesis_hash.hex()
                ),
            }
        )
    else:
        print(verified.describe())
    return 0


# --- the parser ---------------------------------------------------------------------------------


def _common_parents() -> tuple[_Parser, _Parser]:
    out = _Parser(add_help=False)
    out.add_argument("--json", action="store_true", help="print one JSON document")
    rpc = _Parser(add_help=False)
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
    parser = _Parser(
        prog="gmchain",
        description="gmchain: a permissioned BFT chain for securities evidence (SM2/SM3/SM4).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("keygen", parents=[out], help="create an SM2 key file (mode 0600)")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the key file")
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
    p.set_defaults(handler=_cmd_dev)

    p = sub.add_parser("node", help="run a node from a config file")
    node_sub = p.add_subparsers(dest="node_command", metavar="SUBCOMMAND", parser_class=_Parser)
    node_sub.required = True
    q = node_sub.add_parser("start", help="start the node described by --config")
    q.add_argument("--config", required=True, metavar="FILE", help="the node's config file")
    q.set_defaults(handler=_cmd_node_start)

    p = sub.add_parser("crypto-bench", parents=[out], help="measure SM2/SM3/SM4 speed here")
    p.add_argument("--seconds", type=float, metavar="S", help="seconds per measurement")
    p.set_defaults(handler=_cmd_crypto_bench)

    for name, handler, text in (
        ("cluster", _cmd_cluster, "run a local multi-node cluster (node.cluster)"),
        ("bench", _cmd_bench, "the TPS/latency certification harness (bench.cli)"),
        (
            "db",
            _cmd_db,
            "ledger store maintenance: `db check PATH` deep-checks a stopped node; "
            "`db safety-reset PATH --round R` replaces damaged consensus safety data",
        ),
    ):
        p = sub.add_parser(name, help=text, description=text + "; arguments are passed on.")
        p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the tool")
        p.set_defaults(handler=handler)

    p = sub.add_parser("status", parents=[out, rpc], help="the node's status")
    p.set_defaults(handler=_cmd_status)

    p = sub.add_parser("tx", help="transactions")
    tx_sub = p.add_subparsers(dest="tx_command", metavar="SUBCOMMAND", parser_class=_Parser)
    tx_sub.required = True
    q = tx_sub.add_parser("get", parents=[out, rpc], help="a transaction and its receipt")
    q.add_argument("tx_id", metavar="TX_ID", help="0x-hex transaction id")
    q.set_defaults(handler=_cmd_tx_get)

    p = sub.add_parser("evidence", help="evidence records (the evidence contract)")
    ev = p.add_subparsers(dest="evidence_command", metavar="SUBCOMMAND", parser_class=_Parser)
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
    q.set_defaults(handler=_cmd_evidence_submit)

    q = ev.add_parser("get", parents=[out, rpc], help="one evidence record")
    q.add_argument("record_id", metavar="ID")
    q.set_defaults(handler=_cmd_evidence_get)

    q = ev.add_parser("flow", parents=[out, rpc], help="every record of a flow, in order")
    q.add_argument("flow_id", metavar="FLOW")
    q.add_argument(
        "--verify",
        action="store_true",
        help="check the hash links (locally and by the contract); exit 1 if broken",
    )
    q.set_defaults(handler=_cmd_evidence_flow)

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
    q.set_defaults(handler=_cmd_evidence_attest)

    p = sub.add_parser("proof", help="transaction proofs")
    pr = p.add_subparsers(dest="proof_command", metavar="SUBCOMMAND", parser_class=_Parser)
    pr.required = True
    q = pr.add_parser("get", parents=[out, rpc], help="export a transaction's JSON proof bundle")
    q.add_argument("tx_id", metavar="TX_ID", nargs="?", help="0x-hex transaction id")
    q.add_argument("--record", metavar="ID", help="prove the transaction that wrote this record")
    q.add_argument("--out", metavar="FILE", help="write the bundle here (default: stdout)")
    q.add_argument("--force", action="store_true", help="replace an existing --out file")
    q.add_argument(
        "--at-height", type=int, metavar="H", help="prove against this header (default head)"
    )
    q.set_defaults(handler=_cmd_proof_get)

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
    q.set_defaults(handler=_cmd_proof_verify)
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
    delegated = {"cluster": _cmd_cluster, "bench": _cmd_bench, "db": _cmd_db}
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

"""The `gmchain` client commands: status, tx, evidence and proof (node/cli.py builds the parser).

Rules this module keeps (with node/cli.py's rules 1, 2 and 5):
1. Every command talks to a node only through the SDK (`gmchain.node.sdk`, JSON-RPC; default
   http://127.0.0.1:8545), so each works where only the SDK is installed (`pip install gmchain`,
   without the `[node]` extra).
2. `proof verify` is offline: it opens no connection and trusts only the anchor the user names
   (--genesis or --validators), checked by the one light client (chain/lightclient.py).
3. A failed transaction is a failed command (exit 1); `--json` prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "CliError",
    "cmd_evidence_attest",
    "cmd_evidence_flow",
    "cmd_evidence_get",
    "cmd_evidence_submit",
    "cmd_proof_get",
    "cmd_proof_verify",
    "cmd_status",
    "cmd_tx_get",
    "print_json",
]


class CliError(Exception):
    """A failure to report in one line (exit 1)."""


# --- output -------------------------------------------------------------------------------------


def print_json(obj: Any) -> None:
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
        print_json(receipt)
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
    """The SDK client of `--rpc`, with `--ca-file` and `--auth-key` (docs/rpc.md)."""
    from gmchain.node.sdk import SyncClient

    ca_file = getattr(args, "ca_file", None)
    return SyncClient(args.rpc, timeout_s=args.timeout, ca_file=ca_file, auth_key=_auth_key(args))


def _auth_key(args: argparse.Namespace) -> Any:
    """The `--auth-key` account key (None without it); its passphrase as for `--key`."""
    path = getattr(args, "auth_key", None)
    if not path:
        return None
    from gmchain.node.keys_cli import load_key, resolve_passphrase

    return load_key(path, resolve_passphrase(getattr(args, "passphrase_env", None)))


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


# --- commands ----------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    status = _client(args).status()
    if args.json:
        print_json(status)
    else:
        _print_fields(status)
    return 0


def cmd_tx_get(args: argparse.Namespace) -> int:
    client = _client(args)
    tx_id = _tx_id(args.tx_id)
    tx = client.get_tx(tx_id)
    if tx is None:
        raise CliError(f"no transaction {args.tx_id} on this node (unknown or still pending)")
    receipt = client.get_receipt(tx_id)
    out = {"transaction": tx, "receipt": receipt}
    if args.json:
        print_json(out)
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


def cmd_evidence_submit(args: argparse.Namespace) -> int:
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


def cmd_evidence_get(args: argparse.Namespace) -> int:
    record = _client(args).get_evidence(args.record_id)
    if args.json:
        print_json(record)
    else:
        _print_fields(record)
    return 0


def cmd_evidence_flow(args: argparse.Namespace) -> int:
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
        print_json(result)
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


def cmd_evidence_attest(args: argparse.Namespace) -> int:
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


def cmd_proof_get(args: argparse.Namespace) -> int:
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
            print_json({"path": args.out, "tx_id": args.tx_id})
    else:
        sys.stdout.write(text)
    return 0


def cmd_proof_verify(args: argparse.Namespace) -> int:
    """Offline (rule 2); succeeds only if the bundle verified against --genesis or --validators."""
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
            vals, chain_id = _read_validators_file(args.validators, args.chain_id)
            verified = verify_proof_bundle(bundle, validators=vals, chain_id=chain_id)
    except SdkError as exc:
        if args.json:
            print_json({"valid": False, "reason": str(exc)})
        else:
            print(f"INVALID: {exc}")
        return 1
    if args.json:
        print_json(
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


def _read_validators_file(path: str, chain_id: str | None) -> tuple[list[Any], str]:
    """--validators FILE: `{"chain_id"?: ..., "validators": [...]}` or just the list; the chain
    id comes from the file or --chain-id (they must agree), never from the bundle."""
    anchor = _read_json_file(path)
    vals = anchor.get("validators") if isinstance(anchor, dict) else anchor
    named = anchor.get("chain_id") if isinstance(anchor, dict) else None
    if not isinstance(vals, list):
        raise CliError(f"{path}: expected {{chain_id?, validators: [...]}}")
    if chain_id and named and chain_id != named:
        raise CliError(f"--chain-id {chain_id!r} differs from {path}'s")
    chain_id = chain_id or named
    if not chain_id:
        raise CliError(
            f"{path} names no chain_id: pass --chain-id (the chain the validator set signs "
            "for; it must come from you, not from the bundle)"
        )
    return vals, str(chain_id)

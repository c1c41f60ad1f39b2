"""`gmchain xc ...`: what crossed between chains, from the command line (issue 13).

The relay and its guarantees: docs/crosschain.md.

    gmchain xc record --chain SRC (--record ID | --seq N) [--wait S] [--proof-out FILE]
    gmchain xc ack --record ID [--wait S] [--proof-out FILE]
    gmchain xc arrivals --chain SRC [--missing N]
    gmchain xc client --chain ID

Rules this module keeps (with node/cli.py's rules 1-3):
1. Read-only: every command is one or a few JSON-RPC reads through the SDK (gm_getRelayedRecord,
   gm_getAck, gm_getArrivals, gm_getCrossChainClient, gm_getTransactionProof); nothing is signed.
2. `record` asks the chain that received the record (the regulator: --rpc); `ack` asks the chain
   that sent it (the business chain). With `--wait S` a command polls until the answer exists or S
   seconds passed (then it fails, exit 1, saying what is missing): relaying takes a moment.
3. `--proof-out FILE` writes the proof bundle (gm_getTransactionProof, as `gmchain proof get`) of
   the transaction that put the answer on that chain: for `record`, the regulator's
   `xclient.recv_packets` transaction that accepted the packet (the stored copy names it:
   `recvTxId`); for `ack`, the business chain's `xclient.recv_ack` transaction that recorded the
   acknowledgement. The ack does not name that transaction, so it is found by reading the blocks
   after the record's own block (at most MAX_ACK_SCAN of them) for an `xclient.recv_ack` whose
   receipt has the `AckRecorded` event of this record. `gmchain proof verify FILE --genesis
   <that chain's genesis.json>` checks either offline.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gmchain.node.cli_client import CliError, print_json

__all__ = ["add_xc_commands"]

POLL_S = 0.5
MAX_ACK_SCAN = 5000  # blocks read after the record's block to find its recv_ack (rule 3)


def _client(args: argparse.Namespace) -> Any:
    from gmchain.node.sdk import SyncClient

    return SyncClient(args.rpc, timeout_s=args.timeout)


def _poll(read: Callable[[], Any], wait_s: float, what: str) -> Any:
    """Rule 2: `read()` until it answers (not None) or `wait_s` passed."""
    deadline = time.monotonic() + wait_s
    while True:
        found = read()
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            suffix = f" after waiting {wait_s:g} s" if wait_s else " (try --wait S)"
            raise CliError(f"{what}{suffix}")
        time.sleep(POLL_S)


def _write_proof(args: argparse.Namespace, client: Any, tx_hex: Any, what: str) -> None:
    """Rule 3."""
    from gmchain.node.sdk import from_hex

    if not isinstance(tx_hex, str):
        raise CliError(f"the answer names no {what} transaction to prove")
    if os.path.lexists(args.proof_out) and not args.force:
        raise CliError(f"{args.proof_out} already exists (use --force to replace it)")
    bundle = client.get_tx_proof(from_hex(tx_hex, 32, what="transaction id"))
    Path(args.proof_out).write_text(json.dumps(bundle, indent=2, sort_keys=True) + "\n")
    if not args.json:
        print(f"proof of the {what} transaction {tx_hex} written to {args.proof_out}")


def _show(obj: dict[str, Any]) -> None:
    width = max((len(k) for k in obj), default=0)
    for key, value in obj.items():
        shown = (
            json.dumps(value) if isinstance(value, list | dict | bool) or value is None else value
        )
        print(f"  {key.ljust(width)}  {shown}")


def cmd_xc_record(args: argparse.Namespace) -> int:
    if (args.record is None) == (args.seq is None):
        raise CliError("give --record ID or --seq N")
    client = _client(args)
    key: Any = args.record if args.record is not None else args.seq
    rec = _poll(
        lambda: client.call_rpc("gm_getRelayedRecord", [args.chain, key]),
        args.wait,
        f"no record {key!r} of chain {args.chain} has arrived on this chain",
    )
    if args.json and not args.proof_out:
        print_json(rec)
    elif not args.json:
        print(f"record {rec.get('recordId', key)} of {args.chain}, verified on arrival:")
        _show(rec)
    if args.proof_out:
        _write_proof(args, client, rec.get("recvTxId"), "recv_packets")
        if args.json:
            print_json({**rec, "proofOut": args.proof_out})
    return 0


def cmd_xc_ack(args: argparse.Namespace) -> int:
    client = _client(args)
    ack = _poll(
        lambda: client.call_rpc("gm_getAck", [args.record]),
        args.wait,
        f"no acknowledgement of record {args.record!r} on this chain",
    )
    if args.json and not args.proof_out:
        print_json(ack)
    elif not args.json:
        print(
            f"record {args.record}: acknowledged by {ack.get('regulator')} at height "
            f"{ack.get('regulatorHeight')} ({ack.get('status')})"
        )
        _show(ack)
    if args.proof_out:
        _write_proof(args, client, _recv_ack_tx(client, args.record), "recv_ack")
        if args.json:
            print_json({**ack, "proofOut": args.proof_out})
    return 0


def _recv_ack_tx(client: Any, record_id: str) -> str | None:
    """Rule 3: the id of the business chain's `xclient.recv_ack` tx that recorded the ack."""
    record = client.get_evidence(record_id)
    receipt = client.call_rpc("gm_getTransactionReceipt", [record["txId"]])
    start = int(receipt["blockNumber"]) + 1
    head = client.height()
    for height in range(start, min(head, start + MAX_ACK_SCAN) + 1):
        block = client.call_rpc("gm_getBlockByNumber", [height, True]) or {}
        for tx in block.get("transactions", []):
            if not isinstance(tx, dict) or (tx.get("contract"), tx.get("method")) != (
                "xclient",
                "recv_ack",
            ):
                continue
            r = client.call_rpc("gm_getTransactionReceipt", [tx["txId"]]) or {}
            for e in r.get("events", []):
                if e.get("name") == "AckRecorded" and ["record_id", record_id] in e["fields"]:
                    return str(tx["txId"])
    return None


def cmd_xc_arrivals(args: argparse.Namespace) -> int:
    a = _client(args).call_rpc("gm_getArrivals", [args.chain, args.missing])
    if args.json:
        print_json(a)
    elif a is None:
        raise CliError(f"chain {args.chain!r} is not registered on this chain")
    else:
        print(
            f"from {args.chain}: {a.get('count')} records arrived, all up to seq "
            f"{a.get('contiguous')}, highest seq {a.get('maxSeq')}, missing {a.get('missing')}"
        )
    return 0


def cmd_xc_client(args: argparse.Namespace) -> int:
    c = _client(args).call_rpc("gm_getCrossChainClient", [args.chain])
    if c is None:
        raise CliError(f"chain {args.chain!r} is not registered on this chain")
    if args.json:
        print_json(c)
    else:
        print(f"light client of {args.chain}:")
        _show(c)
    return 0


def add_xc_commands(sub: Any, out: argparse.ArgumentParser, rpc: argparse.ArgumentParser) -> None:
    """`gmchain xc ...` on the top-level subparsers `sub` (node/cli.py build_parser)."""
    p = sub.add_parser("xc", help="cross-chain: relayed records, acknowledgements, light clients")
    xc = p.add_subparsers(dest="xc_command", metavar="SUBCOMMAND", parser_class=type(p))
    xc.required = True

    def waiting(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--wait",
            type=float,
            default=0.0,
            metavar="S",
            help="poll up to S seconds until it is there (default: ask once)",
        )
        q.add_argument(
            "--proof-out",
            metavar="FILE",
            help="write the proof bundle of the transaction that put it on this chain",
        )
        q.add_argument("--force", action="store_true", help="replace an existing --proof-out")

    q = xc.add_parser(
        "record",
        parents=[out, rpc],
        help="a record relayed from another chain, as this chain verified it",
    )
    q.add_argument("--chain", required=True, help="the chain the record came from")
    q.add_argument("--record", metavar="ID", help="the record id")
    q.add_argument("--seq", type=int, metavar="N", help="or its packet sequence number")
    waiting(q)
    q.set_defaults(handler=cmd_xc_record)

    q = xc.add_parser(
        "ack",
        parents=[out, rpc],
        help="the regulator's acknowledgement of one of this chain's records",
    )
    q.add_argument("--record", required=True, metavar="ID", help="the record id")
    waiting(q)
    q.set_defaults(handler=cmd_xc_ack)

    q = xc.add_parser(
        "arrivals",
        parents=[out, rpc],
        help="what arrived from a chain: count, contiguous, missing seqs",
    )
    q.add_argument("--chain", required=True, help="the source chain")
    q.add_argument(
        "--missing",
        type=int,
        default=20,
        metavar="N",
        help="list at most N missing seqs (default 20)",
    )
    q.set_defaults(handler=cmd_xc_arrivals)

    q = xc.add_parser("client", parents=[out, rpc], help="this chain's light client of a chain")
    q.add_argument("--chain", required=True, help="the registered chain")
    q.set_defaults(handler=cmd_xc_client)

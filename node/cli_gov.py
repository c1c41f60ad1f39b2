"""`gmchain gov ...`: governance proposals, votes and the epoch, from the command line.

Rules this module keeps (with node/cli.py's rules 1-3 and node/cli_client.py's rule 3):
1. Every command talks to the node through the SDK only (`SyncClient`: JSON-RPC). Proposals and
   votes are transactions of the governance contract signed with `--key` (an admin account of a
   committee organisation, contracts/governance.py G1); reads are the gm_getProposal,
   gm_getProposals, gm_getCommittee, gm_getEpoch and gm_getValidators methods.
2. `propose KIND [VALUE ...]` takes the kind's arguments in the order of its schema
   (contracts/gov_kinds.py KINDS; `gmchain gov propose --help` lists them): keys, addresses and
   proofs as 0x hex ("0x" alone is empty bytes), numbers as decimal, names as text. With
   `--join-request FILE` (written by `gmchain node join-request`, docs/joining.md) the node key,
   its org and its proof of possession come from the file instead; the contract verifies the
   proof. Every value is checked here against the schema first, so a mistake is a one-line usage
   error naming the argument, not a failed transaction.
3. A proposal stays open for `--expiry-blocks` blocks (default 100000); the contract refuses
   more than contracts/governance.py MAX_LIFETIME.
4. The cross-chain kinds (register_chain, unfreeze_chain, set_relay_rule, clear_relay_rule) take
   their values from flags (`--genesis`, `--epoch`, `--validators-from-rpc`, `--dest`,
   `--scenario`): node/cli_govxc.py's rules.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any

from gmchain.node.cli_client import CliError, print_json
from gmchain.node.cli_govxc import XC_KINDS, add_xc_options, xc_values
from gmchain.node.sdk.errors import SdkError, from_hex

__all__ = ["add_gov_commands"]

DEFAULT_EXPIRY_BLOCKS = 100_000
# Arguments a join request supplies (rule 2): argument name -> the request's field.
_FROM_REQUEST = {
    "node_pubkey": "node_pubkey",
    "new_pubkey": "node_pubkey",
    "org": "org",
    "pop": "pop",
}
_TAKES_REQUEST = ("admit_observer", "add_validator", "rotate_node_key")


def _kinds() -> dict[str, Any]:
    from gmchain.contracts.gov_kinds import KINDS

    return KINDS


# --- argument conversion (rule 2) ----------------------------------------------------------------


def _hex(name: str, text: str, size: int | None, max_len: int | None) -> bytes:
    try:
        raw = from_hex(text, size, what=name)
    except SdkError as exc:
        raise CliError(str(exc)) from None
    if max_len is not None and len(raw) > max_len:
        raise CliError(f"{name}: at most {max_len} bytes, got {len(raw)}")
    return raw


def _convert(arg: Any, text: str) -> Any:
    """One command-line value as the kind's `Arg` says (the contract checks it again)."""
    if arg.kind is bytes:
        return _hex(arg.name, text, arg.size, arg.max_len)
    if arg.kind is int:
        try:
            return int(text, 10)
        except ValueError:
            raise CliError(f"{arg.name}: expected a decimal integer, got {text!r}") from None
    if arg.kind is bool:
        if text not in ("yes", "no", "true", "false"):
            raise CliError(f"{arg.name}: expected yes or no, got {text!r}")
        return text in ("yes", "true")
    return text


def _read_join_request(path: str) -> dict[str, Any]:
    """The fields of a join request file (docs/joining.md): node key, org and proof as values."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except json.JSONDecodeError as exc:
        raise CliError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not {"node_pubkey", "org", "pop_signature"} <= set(doc):
        raise CliError(f"{path}: a join request has node_pubkey, org and pop_signature")
    return {
        "node_pubkey": _hex("node_pubkey", str(doc["node_pubkey"]), 65, None),
        "org": str(doc["org"]),
        "pop": _hex("pop_signature", str(doc["pop_signature"]), 64, None),
        "chain_id": doc.get("chain_id"),
    }


def proposal_values(kind: str, values: Sequence[str], request: dict[str, Any] | None) -> list[Any]:
    """Rule 2: the kind's positional values from the command line and the join request."""
    kinds = _kinds()
    name = kind.replace("-", "_")
    if name not in kinds:
        raise CliError(f"unknown proposal kind {kind!r}; kinds: {', '.join(kinds)}")
    schema = kinds[name]
    if request is not None and name not in _TAKES_REQUEST:
        raise CliError(f"--join-request applies to {', '.join(_TAKES_REQUEST)}, not {name}")
    given = list(values)
    out: list[Any] = []
    for arg in schema:
        if request is not None and arg.name in _FROM_REQUEST:
            out.append(request[_FROM_REQUEST[arg.name]])
        elif given:
            out.append(_convert(arg, given.pop(0)))
        else:
            raise CliError(f"{name}: missing {arg.name} (arguments: {_usage(schema)})")
    if given:
        raise CliError(f"{name}: too many values (arguments: {_usage(schema)})")
    return _checked(name, schema, out)


def _checked(kind: str, schema: Sequence[Any], values: list[Any]) -> list[Any]:
    """The values checked by the contract framework's own schema check (the same code the
    contract runs), so a bad value is a usage error here, not a failed transaction."""
    from gmchain.contracts.framework import ContractError, MethodSpec

    spec = MethodSpec(name=kind, args=tuple(schema), readonly=False, attr="")
    try:
        return list(spec.check_args(values))
    except ContractError as exc:
        raise CliError(f"{kind}: {exc}") from None


def _usage(schema: Sequence[Any]) -> str:
    return " ".join(a.name.upper() for a in schema) or "none"


def _statuses() -> tuple[str, ...]:
    from gmchain.contracts.gov_state import STATUSES

    return STATUSES


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _kinds_help() -> str:
    try:
        kinds = _kinds()
    except ModuleNotFoundError:  # an install without the governance contract
        return ""
    lines = [f"  {k:<17} {_usage(s)}" for k, s in kinds.items() if k not in XC_KINDS]
    return (
        "kinds and their arguments:\n"
        + "\n".join(lines)
        + "\n\ncross-chain kinds take flags (docs/governance.md, Proposal kinds):\n"
        "  register-chain   --genesis FILE [--epoch N] [--validators-from-rpc URL]\n"
        "  unfreeze-chain   REASON --genesis FILE [--epoch N] [--validators-from-rpc URL]\n"
        "  set-relay-rule   --dest CHAIN_ID [--scenario S ...]\n"
        "  clear-relay-rule"
    )


# --- commands ------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Any:
    from gmchain.node.cli_client import _client as client_of  # --ca-file, --auth-key

    return client_of(args)


def _signing_key(args: argparse.Namespace) -> Any:
    from gmchain.node.keys_cli import default_key_path, load_key, resolve_passphrase

    return load_key(args.key or default_key_path(), resolve_passphrase(args.passphrase_env))


def _send(args: argparse.Namespace, client: Any, method: str, values: list[Any]) -> Any:
    """Sign and send one governance transaction; the receipt, or CliError if it failed."""
    receipt = client.send(
        _signing_key(args),
        "governance",
        method,
        values,
        wait=not args.no_wait,
        timeout_s=args.wait_timeout,
    )
    if not receipt.get("pending") and receipt.get("status") != 0:
        raise CliError(
            f"governance.{method} failed: {receipt.get('error') or 'no reason given'} "
            f"(tx {receipt.get('txId')}, block {receipt.get('blockNumber')})"
        )
    return receipt


def cmd_gov_propose(args: argparse.Namespace) -> int:
    from gmchain.ledger.codec import encode

    request = None if args.join_request is None else _read_join_request(args.join_request)
    xc = xc_values(args.kind, args)
    if xc is None:
        values = proposal_values(args.kind, args.values, request)
    elif request is not None:
        raise CliError(f"--join-request applies to {', '.join(_TAKES_REQUEST)}")
    else:
        name = args.kind.replace("-", "_")
        values = _checked(name, _kinds()[name], xc)
    client = _client(args)
    if request is not None and request["chain_id"] not in (None, client.chain_id()):
        raise CliError(f"{args.join_request} is a join request for chain {request['chain_id']!r}")
    expiry = client.height() + args.expiry_blocks
    kind = args.kind.replace("-", "_")
    receipt = _send(args, client, "propose", [kind, encode(values), expiry])
    if args.json:
        print_json(receipt)
    elif receipt.get("pending"):
        print(f"submitted: tx {receipt['txId']} (not waiting for the commit)")
    else:
        print(
            f"proposal {receipt['result']} ({kind}) created in block {receipt['blockNumber']}, "
            f"open until height {expiry}; vote with: gmchain gov vote {receipt['result']} yes"
        )
    return 0


def cmd_gov_vote(args: argparse.Namespace) -> int:
    receipt = _send(args, _client(args), "vote", [args.id, args.choice == "yes"])
    if args.json:
        print_json(receipt)
    elif receipt.get("pending"):
        print(f"submitted: tx {receipt['txId']} (not waiting for the commit)")
    else:
        print(f"voted {args.choice} on proposal {args.id}: it is now {receipt['result']}")
    return 0


def cmd_gov_close(args: argparse.Namespace) -> int:
    receipt = _send(args, _client(args), "close", [args.id])
    if args.json:
        print_json(receipt)
    elif not receipt.get("pending"):
        print(f"proposal {args.id} closed: {receipt['result']}")
    return 0


def _show_proposal(p: dict[str, Any]) -> None:
    votes = ", ".join(f"{v['org']}={'yes' if v['yes'] else 'no'}" for v in p["votes"]) or "none"
    print(f"proposal {p['id']}: {p['kind']} {json.dumps(p['args'])}")
    print(
        f"  status    {p['status']}"
        + (f" at height {p['decidedHeight']}" if p["decidedHeight"] else "")
    )
    print(f"  proposer  {p['proposerOrg']} ({p['proposer']}) at height {p['createdHeight']}")
    print(f"  expires   after height {p['expiryHeight']}")
    print(f"  votes     {votes}")
    if p["note"]:
        print(f"  note      {p['note']}")


def cmd_gov_show(args: argparse.Namespace) -> int:
    p = _client(args).call_rpc("gm_getProposal", [args.id])
    if p is None:
        raise CliError(f"no proposal {args.id}")
    if args.json:
        print_json(p)
    else:
        _show_proposal(p)
    return 0


def cmd_gov_list(args: argparse.Namespace) -> int:
    found = _client(args).call_rpc("gm_getProposals", [args.status, args.limit])
    if args.json:
        print_json(found)
        return 0
    if not found:
        print("no proposals" + (f" with status {args.status}" if args.status else ""))
    for p in found:
        print(f"{p['id']:>5}  {p['status']:<9} {p['kind']:<17} by {p['proposerOrg']}")
    return 0


def cmd_gov_committee(args: argparse.Namespace) -> int:
    c = _client(args).call_rpc("gm_getCommittee")
    if args.json:
        print_json(c)
        return 0
    p_num, p_den, a_num, a_den = c["thresholds"]
    for m in c["members"]:
        print(f"{m['org']:<24} weight {m['weight']}")
    print(f"participation > {p_num}/{p_den}, approval > {a_num}/{a_den} of the total weight")
    return 0


def cmd_gov_epoch(args: argparse.Namespace) -> int:
    e = _client(args).call_rpc("gm_getEpoch")
    if args.json:
        print_json(e)
        return 0
    print(f"epoch {e['epoch']} (from height {e['startHeight']}, read at {e['answeredAt']})")
    print(f"  validators hash  {e['validatorsHash']}")
    for v in e["validators"]:
        print(f"  validator {v['nodeId']}  power {v['power']:<4} {v['org']}")
    for o in e["observers"]:
        print(f"  observer  {o}")
    for name, value in e["params"].items():
        print(f"  {name:<18} {value}")
    return 0


def cmd_gov_validators(args: argparse.Namespace) -> int:
    params = [] if args.height is None else [args.height]
    s = _client(args).call_rpc("gm_getValidators", params)
    if args.json:
        print_json(s)
        return 0
    print(f"height {s['height']}: epoch {s['epoch']}, total power {s['totalPower']}")
    for v in s["validators"]:
        print(f"  {v['nodeId']}  power {v['power']:<4} {v['org']}  {v['pubkey']}")
    return 0


# --- the parser --------------------------------------------------------------------------------


def add_gov_commands(
    sub: Any,
    out: argparse.ArgumentParser,
    rpc: argparse.ArgumentParser,
    add_wait: Callable[[argparse.ArgumentParser], None],
) -> None:
    """`gmchain gov ...` on the top-level subparsers `sub` (node/cli.py build_parser)."""
    p = sub.add_parser("gov", help="governance: proposals, votes, committee, epoch")
    gov = p.add_subparsers(dest="gov_command", metavar="SUBCOMMAND", parser_class=type(p))
    gov.required = True

    q = gov.add_parser(
        "propose",
        parents=[out, rpc],
        help="propose a change (needs an admin key of a committee org)",
        description="Propose a governance change (docs/governance.md, Proposals).",
        epilog=_kinds_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.add_argument("kind", metavar="KIND", help="the proposal kind (see the list below)")
    q.add_argument("values", nargs="*", metavar="VALUE", help="the kind's arguments, in order")
    q.add_argument(
        "--join-request",
        metavar="FILE",
        help="take the node key, its org and its proof of possession from this join request "
        "(admit_observer, add_validator, rotate_node_key)",
    )
    q.add_argument(
        "--expiry-blocks",
        type=_positive,
        default=DEFAULT_EXPIRY_BLOCKS,
        metavar="N",
        help=f"the proposal stays open N blocks (default {DEFAULT_EXPIRY_BLOCKS})",
    )
    add_xc_options(q)
    add_wait(q)
    q.set_defaults(handler=cmd_gov_propose)

    q = gov.add_parser("vote", parents=[out, rpc], help="vote on an open proposal")
    q.add_argument("id", type=_positive, metavar="ID", help="the proposal id")
    q.add_argument("choice", choices=("yes", "no"), help="yes or no")
    add_wait(q)
    q.set_defaults(handler=cmd_gov_vote)

    q = gov.add_parser("close", parents=[out, rpc], help="mark a proposal past its expiry expired")
    q.add_argument("id", type=_positive, metavar="ID", help="the proposal id")
    add_wait(q)
    q.set_defaults(handler=cmd_gov_close)

    q = gov.add_parser("list", parents=[out, rpc], help="proposals, ascending by id")
    q.add_argument(
        "--status", choices=_statuses(), help="only proposals with this status (default: all)"
    )
    q.add_argument(
        "--limit",
        type=_positive,
        default=100,
        metavar="N",
        help="at most N proposals (default 100)",
    )
    q.set_defaults(handler=cmd_gov_list)

    q = gov.add_parser("show", parents=[out, rpc], help="one proposal with its votes")
    q.add_argument("id", type=_positive, metavar="ID", help="the proposal id")
    q.set_defaults(handler=cmd_gov_show)

    q = gov.add_parser("committee", parents=[out, rpc], help="committee orgs, weights, thresholds")
    q.set_defaults(handler=cmd_gov_committee)

    q = gov.add_parser("epoch", parents=[out, rpc], help="the current epoch and its configuration")
    q.set_defaults(handler=cmd_gov_epoch)

    q = gov.add_parser("validators", parents=[out, rpc], help="the validator set at a height")
    q.add_argument("--height", type=int, metavar="H", help="block height (default: the next block)")
    q.set_defaults(handler=cmd_gov_validators)

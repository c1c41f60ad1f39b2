"""`gmchain gov propose` for the cross-chain kinds (issue 13; contracts/gov_kinds.py G-K5):
the proposal values of register-chain, unfreeze-chain and set-relay-rule from files and flags.

Rules this module keeps (with node/cli_gov.py's rules 1-3):
1. `register-chain --genesis FILE` and `unfreeze-chain REASON --genesis FILE` name the foreign
   chain by its genesis.json (the file its nodes run): its chain id, its genesis hash
   (`Genesis.compute_hash`) and its genesis block id (`chain.genesis.make_genesis_block`); the
   validator set is the genesis's, epoch 0.
2. With `--validators-from-rpc URL` the epoch is `--epoch N` or, by default, that chain's current
   epoch (`gm_getEpoch`), and its set is VERIFIED from the genesis, never taken on the node's
   word: the node must serve the genesis's chain id, and the set is reached by checking
   `gm_getEpochProof` windows of at most MAX_PROOF_WINDOW epoch changes from epoch 0 with
   chain/lightclient.py's `verify_epoch_proof`, starting at `TrustAnchor.from_genesis`; when N is
   the current epoch, the node's `gm_getEpoch` set must be the verified one. Without it, an
   `--epoch` other than 0 is a usage error (only the genesis's set is known).
3. `set-relay-rule --dest ID [--scenario S ...]` (no scenario: every record is relayed; each
   scenario is sent as a one-item list, the kind's schema); `clear-relay-rule` takes nothing.
4. These flags on any other kind, or a cross-chain kind given without its flags, are usage
   errors (CliError), before anything is sent.
"""

from __future__ import annotations

import argparse
from typing import Any

from gmchain.node.cli_client import CliError

__all__ = ["MAX_PROOF_WINDOW", "XC_KINDS", "add_xc_options", "foreign_chain", "xc_values"]

MAX_PROOF_WINDOW = 32  # node/rpcgov.py MAX_PROOF_EPOCHS: epoch changes per gm_getEpochProof
XC_KINDS = ("register_chain", "unfreeze_chain", "set_relay_rule", "clear_relay_rule")
_CHAIN_FLAGS = ("genesis", "epoch", "validators_from_rpc")
_RULE_FLAGS = ("dest", "scenario")


def add_xc_options(q: argparse.ArgumentParser) -> None:
    """The flags of rules 1-3 on `gmchain gov propose`."""
    g = q.add_argument_group("cross-chain kinds (register-chain, unfreeze-chain, set-relay-rule)")
    g.add_argument("--genesis", metavar="FILE", help="the foreign chain's genesis.json")
    g.add_argument(
        "--epoch", type=int, metavar="N", help="the epoch of the set (default: 0, or the current)"
    )
    g.add_argument(
        "--validators-from-rpc",
        metavar="URL",
        help="take the epoch's validator set from a node of the foreign chain, verified from "
        "--genesis by its epoch-change proofs",
    )
    g.add_argument("--dest", metavar="CHAIN_ID", help="set-relay-rule: the chain to report to")
    g.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="S",
        help="set-relay-rule: relay this evidence scenario (repeat; none: every record)",
    )


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    return [n for n in names if getattr(args, n, None) not in (None, [])]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def xc_values(kind: str, args: argparse.Namespace) -> list[Any] | None:
    """The values of a cross-chain kind (rules 1-4); None for any other kind."""
    name = kind.replace("-", "_")
    flags = _given(args, _CHAIN_FLAGS + _RULE_FLAGS)
    if name not in XC_KINDS:
        if flags:
            raise CliError(f"{', '.join(map(_flag, flags))} apply to {', '.join(XC_KINDS)}")
        return None
    allowed = {
        "register_chain": _CHAIN_FLAGS,
        "unfreeze_chain": _CHAIN_FLAGS,
        "set_relay_rule": _RULE_FLAGS,
        "clear_relay_rule": (),
    }[name]
    wrong = [f for f in flags if f not in allowed]
    if wrong:
        raise CliError(f"{name} does not take {', '.join(map(_flag, wrong))}")
    positional = {"unfreeze_chain": 1}.get(name, 0)
    if len(args.values) != positional:
        want = "REASON" if positional else "no VALUE"
        raise CliError(f"{name} takes {want} (got {len(args.values)} values)")
    if name == "set_relay_rule":
        if args.dest is None:
            raise CliError("set_relay_rule needs --dest CHAIN_ID [--scenario S ...]")
        return [args.dest, [[s] for s in args.scenario]]
    if name == "clear_relay_rule":
        return []
    if args.genesis is None:
        raise CliError(f"{name} needs --genesis FILE (the foreign chain's genesis.json)")
    chain_id, genesis_hash, block_id, epoch, validators = foreign_chain(
        args.genesis, args.epoch, args.validators_from_rpc, args.timeout
    )
    if name == "register_chain":
        return [chain_id, genesis_hash, block_id, epoch, validators]
    return [chain_id, epoch, validators, args.values[0]]


def foreign_chain(
    genesis_file: str, epoch: int | None, rpc_url: str | None, timeout_s: float = 10.0
) -> tuple[str, bytes, bytes, int, list[list[Any]]]:
    """(chain id, genesis hash, genesis block id, epoch, [[pubkey, power, org], ...]) of the
    chain whose genesis.json is `genesis_file` (rules 1, 2)."""
    from gmchain.chain.genesis import make_genesis_block
    from gmchain.chain.validators import GenesisValidators
    from gmchain.node.config import ConfigError, load_genesis

    try:
        genesis = load_genesis(genesis_file)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    block_id = bytes(make_genesis_block(genesis)[0].header.block_id)
    if rpc_url is None:
        if epoch not in (None, 0):
            raise CliError(
                f"epoch {epoch}: the genesis names epoch 0's validators only; give "
                "--validators-from-rpc URL to take a later epoch's set (verified from the genesis)"
            )
        vals = list(GenesisValidators(genesis).validators_at(0))
        found = 0
    else:
        found, vals = _verified_set(genesis, epoch, rpc_url, timeout_s)
    items = [[v.pubkey, v.power, v.org] for v in sorted(vals, key=lambda v: v.node_id)]
    return genesis.chain_id, bytes(genesis.compute_hash()), block_id, found, items


def _verified_set(genesis: Any, epoch: int | None, url: str, timeout_s: float) -> tuple[int, Any]:
    """Rule 2: the epoch and its validator set, checked from the genesis."""
    from gmchain.chain.lightclient import ProofCheckError, TrustAnchor, verify_epoch_proof
    from gmchain.node.sdk import SyncClient

    client = SyncClient(url, timeout_s=timeout_s)
    served = client.chain_id()
    if served != genesis.chain_id:
        raise CliError(f"{url} serves chain {served!r}, not the genesis's {genesis.chain_id!r}")
    current = client.call_rpc("gm_getEpoch")
    target = int(current["epoch"]) if epoch is None else epoch
    if target < 0:
        raise CliError(f"--epoch must be 0 or more, got {target}")
    trust = TrustAnchor.from_genesis(genesis)
    while trust.epoch < target:
        upto = min(target, trust.epoch + MAX_PROOF_WINDOW)
        proof = client.call_rpc("gm_getEpochProof", [trust.epoch, upto])
        try:
            trust = verify_epoch_proof(proof, trust)
        except ProofCheckError as exc:
            raise CliError(
                f"{url}: the epoch-change proof {trust.epoch}..{upto} does not verify from the "
                f"genesis: {exc}"
            ) from None
    if target == int(current["epoch"]):
        served_keys = sorted(v["pubkey"].removeprefix("0x") for v in current["validators"])
        if served_keys != sorted(v.pubkey.hex() for v in trust.validators):
            raise CliError(f"{url}: gm_getEpoch's validators are not the verified set of {target}")
    return target, trust.validators

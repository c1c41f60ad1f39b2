"""Governance proposal kinds: each kind's arguments, its checks, and the change it makes.

Rules this module keeps (docs/governance.md, EPOCHS.md E2, E10):
G-K1. A kind's arguments are a positional list checked by its `Arg` schema (the framework's), so
      a proposal holds only well-shaped values.
G-K2. `plan(kind, args, view)` checks everything against the current state and returns a `Plan`
      (what to write), or raises ContractError naming the rule; it writes nothing. It runs when
      a proposal is made (to refuse a change that is invalid now) and again when the proposal is
      approved (the state may have moved; a change invalid then makes the proposal "failed").
G-K3. Invariants of every plan: at least one validator, total power > 0; no key both validator
      and observer; a revoked node key (tombstone) is never admitted again; a removed org never
      comes back, and its validators, observers and committee seat go with it; the committee
      never becomes empty; parameters stay in their PARAMS ranges.
G-K4. A new node key comes with a proof of possession: the key's SM2 signature over
      compute_signing_root("join-request", [chain_id, node_pubkey, org]). An observer's key
      already proved it, so add_validator of a current observer takes an empty proof.
G-K5. Cross-chain kinds (issue 13; contracts/xc_layout.py; docs/crosschain.md) write only two
      kinds of key of the `xclient` namespace (framework rule 7): `client_key(chain_id)` and
      `RELAY_RULE_KEY`. `register_chain` writes a fresh ClientState (active, latest_height 0) for
      a chain that is not registered and is not this chain; `unfreeze_chain` only acts on a
      FROZEN client: status active, the new epoch and validators, frozen_reason None, its
      latest_height kept; `set_relay_rule` names a destination other than this chain, with
      distinct scenarios (stored ascending; none: every record); `clear_relay_rule` needs a rule.
      A foreign validator set is well formed: valid SM2 keys, powers in [1, 2^32], no key twice.
      A chain id is an identifier without "/" (xclient keys put it before a "/").
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from gmchain.contracts.framework import Arg, ContractError, StateReader
from gmchain.contracts.gov_state import (
    committee,
    committee_key,
    is_node_key_revoked,
    is_org_removed,
    latest_config,
    observer_org_key,
    removed_org_key,
    revoked_key_key,
    thresholds,
)
from gmchain.contracts.keys import Sm2Verifier, address_of
from gmchain.contracts.membership import is_tombstoned, lookup_account, org_has_accounts
from gmchain.contracts.xc_layout import (
    ACTIVE,
    FROZEN,
    RELAY_RULE_KEY,
    ClientState,
    RelayRule,
    client_key,
)
from gmchain.ledger.codec import decode, encode
from gmchain.ledger.epoch import PARAMS, EpochConfig
from gmchain.ledger.genesis import MAX_COMMITTEE_WEIGHT, GenesisValidator, check_gov_thresholds
from gmchain.ledger.scalars import MAX_VALIDATORS
from gmchain.ledger.wire import compute_signing_root

__all__ = ["KINDS", "MAX_RELAY_SCENARIOS", "Plan", "View", "join_request_root", "plan"]

_PUB = Arg("node_pubkey", bytes, size=65, doc="SM2 node public key 0x04||X||Y")
_ORG = Arg("org", str, max_len=64, charset="ident")
_POP = Arg("pop", bytes, size=64, doc="proof of possession (G-K4)")
_POWER = Arg("power", int, min=1, max=2**32)
MAX_RELAY_SCENARIOS = 32
_CHAIN = Arg("chain_id", str, max_len=64, charset="ident", doc="a foreign chain's id (G-K5)")
_EPOCH = Arg("epoch", int, doc="the epoch of the validator set")
_FOREIGN_SET = Arg(
    "validators",
    list,
    min_len=1,
    max_len=MAX_VALIDATORS,
    items=(Arg("pubkey", bytes, size=65), _POWER, Arg("org", str, max_len=64)),
    doc="the foreign chain's validators of that epoch, [pubkey, power, org] each (G-K5)",
)

# kind -> argument schema (G-K1).
KINDS: dict[str, tuple[Arg, ...]] = {
    "admit_org": (_ORG, Arg("admin_pubkey", bytes, size=65, doc="the org's first admin account")),
    "remove_org": (_ORG,),
    "admit_observer": (_PUB, _ORG, _POP),
    "remove_observer": (_PUB,),
    "add_validator": (
        _PUB,
        _POWER,
        _ORG,
        Arg("pop", bytes, max_len=64, doc="proof of possession; empty for a current observer"),
    ),
    "remove_validator": (_PUB,),
    "set_power": (_PUB, _POWER),
    "rotate_node_key": (
        Arg("old_pubkey", bytes, size=65),
        Arg("new_pubkey", bytes, size=65),
        Arg("pop", bytes, size=64, doc="proof of possession of the new key (G-K4)"),
    ),
    "revoke_node_key": (_PUB,),
    "revoke_account": (Arg("address", bytes, size=20),),
    "set_param": (Arg("name", str, max_len=32, choices=tuple(PARAMS)), Arg("value", int)),
    "set_committee": (_ORG, Arg("weight", int, max=MAX_COMMITTEE_WEIGHT, doc="0 removes")),
    "set_thresholds": (
        Arg("participation_num", int, max=1000),
        Arg("participation_den", int, max=1000),
        Arg("approval_num", int, max=1000),
        Arg("approval_den", int, max=1000),
    ),
    "register_chain": (
        _CHAIN,
        Arg("genesis_hash", bytes, size=32, doc="the foreign genesis document's hash"),
        Arg("genesis_block_id", bytes, size=32, doc="the foreign chain's block 0 id"),
        _EPOCH,
        _FOREIGN_SET,
    ),
    "unfreeze_chain": (_CHAIN, _EPOCH, _FOREIGN_SET, Arg("reason", str, max_len=200)),
    "set_relay_rule": (
        Arg("dest_chain_id", str, max_len=64, charset="ident", doc="the chain to report to"),
        Arg(
            "scenarios",
            list,
            max_len=MAX_RELAY_SCENARIOS,
            items=(Arg("scenario", str, max_len=64),),
            doc="[scenario] items: the evidence scenarios relayed; none: every record",
        ),
    ),
    "clear_relay_rule": (),
}


def join_request_root(chain_id: str, node_pubkey: bytes, org: str) -> bytes:
    """G-K4: what a node key signs to prove possession."""
    return compute_signing_root("join-request", [chain_id, node_pubkey, org])


@dataclass(frozen=True, slots=True, kw_only=True)
class View:
    """What planning reads: this contract's state, membership's, and what the tx knows."""

    gov: StateReader
    membership: StateReader
    xclient: StateReader
    verifier: Sm2Verifier
    chain_id: str
    pid: int
    height: int


@dataclass(slots=True, kw_only=True)
class Plan:
    """The writes an approved proposal makes (G-K2); `config` None: the epoch config is kept."""

    config: EpochConfig | None = None
    gov: dict[bytes, bytes | None] = field(default_factory=dict)
    xclient: dict[bytes, bytes | None] = field(default_factory=dict)  # G-K5, framework rule 7
    register_admin: tuple[bytes, str] | None = None  # (pubkey, org) in membership
    revoke_account: tuple[bytes, str] | None = None  # (address, org) in membership
    changes: list[str] = field(default_factory=list)  # for the Executed event


class _Config:
    """A working copy of the latest epoch configuration."""

    def __init__(self, base: EpochConfig) -> None:
        self.base = base
        self.validators = {v.pubkey: v for v in base.validators}
        self.observers = set(base.observers)
        self.params = dict(base.params)

    def build(self) -> EpochConfig | None:
        # G-K3: checked here with clear messages before EpochConfig's own checks.
        if not self.validators:
            raise ContractError("G-K3: the change would leave no validator")
        if sum(v.power for v in self.validators.values()) <= 0:
            raise ContractError("G-K3: the change would leave no voting power")
        config = replace(
            self.base,
            validators=tuple(sorted(self.validators.values(), key=lambda v: v.node_id)),
            observers=tuple(sorted(self.observers)),
            params=tuple(sorted(self.params.items())),
        )
        return None if config == self.base else config


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ContractError(message)


def _org_exists(view: View, org: str, cfg: _Config) -> bool:
    return (
        org_has_accounts(view.membership, org)
        or any(v.org == org for v in cfg.validators.values())
        or view.gov.get(committee_key(org)) is not None
        or view.gov.get(b"a/" + org.encode()) is not None
    )


def _need_live_org(view: View, org: str, cfg: _Config) -> None:
    _need(not is_org_removed(view.gov, org), f"G-K3: org {org!r} was removed by governance")
    _need(_org_exists(view, org, cfg), f"org {org!r} is not known (admit it first: admit_org)")


def _need_new_key(view: View, pubkey: bytes, cfg: _Config) -> None:
    _need(
        not is_node_key_revoked(view.gov, pubkey),
        f"G-K3: node key {pubkey.hex()[:16]}... was revoked and can never be admitted again",
    )
    _need(pubkey not in cfg.validators, f"node key {pubkey.hex()[:16]}... is already a validator")
    _need(pubkey not in cfg.observers, f"node key {pubkey.hex()[:16]}... is already an observer")


def _need_pop(view: View, pubkey: bytes, org: str, pop: bytes) -> None:
    _need(view.verifier.is_valid_public(pubkey), "node key is not a valid SM2 public key")
    _need(
        view.verifier.verify(pubkey, join_request_root(view.chain_id, pubkey, org), pop),
        "G-K4: the proof of possession does not verify (an SM2 signature of the node key over "
        "the join-request root [chain_id, node_pubkey, org])",
    )


def _observer_org(view: View, pubkey: bytes) -> str:
    raw = view.gov.get(observer_org_key(pubkey))
    return "" if raw is None else str(decode(raw))


def _drop_key(cfg: _Config, plan: Plan, pubkey: bytes) -> bool:
    """Remove `pubkey` as validator or observer; True if it was either."""
    if pubkey in cfg.validators:
        del cfg.validators[pubkey]
        plan.changes.append(f"validator {pubkey.hex()[:16]} removed")
        return True
    if pubkey in cfg.observers:
        cfg.observers.discard(pubkey)
        plan.gov[observer_org_key(pubkey)] = None
        plan.changes.append(f"observer {pubkey.hex()[:16]} removed")
        return True
    return False


def _foreign_chain(view: View, chain_id: str) -> ClientState | None:
    """G-K5: the stored client of `chain_id` (None: not registered), after the id's checks."""
    _need("/" not in chain_id, f"G-K5: a chain id may not contain '/': {chain_id!r}")
    _need(chain_id != view.chain_id, f"G-K5: {chain_id!r} is this chain's own id")
    raw = view.xclient.get(client_key(chain_id))
    return None if raw is None else ClientState.decode(raw)


def _foreign_set(view: View, items: list[list[Any]]) -> tuple[GenesisValidator, ...]:
    """G-K5: a well-formed foreign validator set."""
    out: dict[bytes, GenesisValidator] = {}
    for i, (pubkey, power, org) in enumerate(items):
        _need(
            view.verifier.is_valid_public(pubkey),
            f"G-K5: validator {i}: {pubkey.hex()[:16]}... is not a valid SM2 public key",
        )
        _need(pubkey not in out, f"G-K5: validator {i}: key {pubkey.hex()[:16]}... given twice")
        out[pubkey] = GenesisValidator(pubkey=pubkey, power=power, org=org)
    return tuple(sorted(out.values(), key=lambda v: v.node_id))


def _plan_xc(kind: str, args: tuple[Any, ...], view: View, p: Plan) -> None:
    """G-K5: the cross-chain kinds."""
    match kind:
        case "register_chain":
            chain_id, genesis_hash, block_id, epoch, items = args
            _need(
                _foreign_chain(view, chain_id) is None,
                f"G-K5: chain {chain_id!r} is already registered",
            )
            state = ClientState(
                genesis_hash=genesis_hash,
                genesis_block_id=block_id,
                epoch=epoch,
                validators=_foreign_set(view, items),
            )
            p.xclient[client_key(chain_id)] = state.encode()
            p.changes.append(
                f"chain {chain_id} registered at epoch {epoch} with {len(items)} validators"
            )
        case "unfreeze_chain":
            chain_id, epoch, items, reason = args
            old = _foreign_chain(view, chain_id)
            _need(old is not None, f"G-K5: chain {chain_id!r} is not registered")
            assert old is not None
            _need(old.status == FROZEN, f"G-K5: chain {chain_id!r} is not frozen")
            new = replace(
                old,
                epoch=epoch,
                validators=_foreign_set(view, items),
                status=ACTIVE,
                frozen_reason=None,
            )
            p.xclient[client_key(chain_id)] = new.encode()
            p.changes.append(
                f"chain {chain_id} unfrozen at epoch {epoch} with {len(items)} validators "
                f"(frozen for: {old.frozen_reason}); {reason}"
            )
        case "set_relay_rule":
            dest, items = args
            _need(dest != view.chain_id, f"G-K5: the destination {dest!r} is this chain")
            _need("/" not in dest, f"G-K5: a chain id may not contain '/': {dest!r}")
            scenarios = tuple(sorted(s for (s,) in items))
            _need(len(set(scenarios)) == len(scenarios), "G-K5: a scenario is named twice")
            rule = RelayRule(dest_chain_id=dest, scenarios=scenarios)
            raw = view.xclient.get(RELAY_RULE_KEY)
            _need(
                raw is None or RelayRule.decode(raw) != rule, "G-K5: the relay rule is already this"
            )
            p.xclient[RELAY_RULE_KEY] = rule.encode()
            what = ", ".join(scenarios) if scenarios else "every scenario"
            p.changes.append(f"relay rule: {what} to {dest}")
        case "clear_relay_rule":
            _need(view.xclient.get(RELAY_RULE_KEY) is not None, "G-K5: there is no relay rule")
            p.xclient[RELAY_RULE_KEY] = None
            p.changes.append("relay rule cleared")


_XC_KINDS = ("register_chain", "unfreeze_chain", "set_relay_rule", "clear_relay_rule")


def plan(kind: str, args: tuple[Any, ...], view: View) -> Plan:
    """G-K2: check `kind` with `args` against the current state; the writes it would make."""
    cfg = _Config(latest_config(view.gov))
    p = Plan()
    tomb = encode([view.pid, view.height])
    if kind in _XC_KINDS:
        _plan_xc(kind, args, view, p)
        return p
    match kind:
        case "admit_org":
            org, admin = args
            _need(not is_org_removed(view.gov, org), f"G-K3: org {org!r} was removed for good")
            _need(not _org_exists(view, org, cfg), f"org {org!r} already exists")
            _need(view.verifier.is_valid_public(admin), "admin_pubkey is not a valid SM2 key")
            address = address_of(admin)
            _need(lookup_account(view.membership, address) is None, "admin key is registered")
            _need(not is_tombstoned(view.membership, address), "admin key was revoked for good")
            p.gov[b"a/" + org.encode()] = tomb
            p.register_admin = (admin, org)
            p.changes.append(f"org {org} admitted, admin {address.hex()}")
        case "remove_org":
            (org,) = args
            _need_live_org(view, org, cfg)
            for v in [v for v in cfg.validators.values() if v.org == org]:
                _drop_key(cfg, p, v.pubkey)
            for o in [o for o in sorted(cfg.observers) if _observer_org(view, o) == org]:
                _drop_key(cfg, p, o)
            if view.gov.get(committee_key(org)) is not None:
                _need(len(committee(view.gov)) > 1, "G-K3: the committee would become empty")
                p.gov[committee_key(org)] = None
            p.gov[removed_org_key(org)] = tomb
            p.changes.append(f"org {org} removed")
        case "admit_observer":
            pubkey, org, pop = args
            _need_live_org(view, org, cfg)
            _need_new_key(view, pubkey, cfg)
            _need_pop(view, pubkey, org, pop)
            cfg.observers.add(pubkey)
            p.gov[observer_org_key(pubkey)] = encode(org)
            p.changes.append(f"observer {pubkey.hex()[:16]} admitted for {org}")
        case "remove_observer":
            (pubkey,) = args
            _need(pubkey in cfg.observers, f"node key {pubkey.hex()[:16]}... is not an observer")
            _drop_key(cfg, p, pubkey)
        case "add_validator":
            pubkey, power, org, pop = args
            _need_live_org(view, org, cfg)
            if pubkey in cfg.observers and pop == b"":
                cfg.observers.discard(pubkey)  # G-K4: it proved possession when admitted
                p.gov[observer_org_key(pubkey)] = None
            else:
                _need_new_key(view, pubkey, cfg)
                _need(len(pop) == 64, "G-K4: a new validator key needs a 64-byte proof")
                _need_pop(view, pubkey, org, pop)
            _need(pubkey not in cfg.validators, "node key is already a validator")
            cfg.validators[pubkey] = GenesisValidator(pubkey=pubkey, power=power, org=org)
            p.changes.append(f"validator {pubkey.hex()[:16]} added with power {power}")
        case "remove_validator":
            (pubkey,) = args
            _need(pubkey in cfg.validators, f"node key {pubkey.hex()[:16]}... is not a validator")
            _drop_key(cfg, p, pubkey)
        case "set_power":
            pubkey, power = args
            old = cfg.validators.get(pubkey)
            _need(old is not None, f"node key {pubkey.hex()[:16]}... is not a validator")
            assert old is not None
            _need(old.power != power, f"the validator's power is already {power}")
            cfg.validators[pubkey] = replace(old, power=power)
            p.changes.append(f"validator {pubkey.hex()[:16]} power {old.power} -> {power}")
        case "rotate_node_key":
            old_key, new_key, pop = args
            _need(old_key != new_key, "the new key equals the old one")
            _need_new_key(view, new_key, cfg)
            if old_key in cfg.validators:
                v = cfg.validators.pop(old_key)
                _need_pop(view, new_key, v.org, pop)
                cfg.validators[new_key] = replace(v, pubkey=new_key)
            elif old_key in cfg.observers:
                org = _observer_org(view, old_key)
                _need_pop(view, new_key, org, pop)
                cfg.observers.discard(old_key)
                cfg.observers.add(new_key)
                p.gov[observer_org_key(old_key)] = None
                p.gov[observer_org_key(new_key)] = encode(org)
            else:
                raise ContractError(
                    f"node key {old_key.hex()[:16]}... is not a validator or an observer"
                )
            p.changes.append(f"node key {old_key.hex()[:16]} rotated to {new_key.hex()[:16]}")
        case "revoke_node_key":
            (pubkey,) = args
            _need(not is_node_key_revoked(view.gov, pubkey), "node key is already revoked")
            _drop_key(cfg, p, pubkey)
            p.gov[revoked_key_key(pubkey)] = tomb
            p.changes.append(f"node key {pubkey.hex()[:16]} revoked")
        case "revoke_account":
            (address,) = args
            account = lookup_account(view.membership, address)
            _need(account is not None, f"no account 0x{address.hex()}")
            assert account is not None
            p.revoke_account = (address, account[1])
            p.changes.append(f"account {address.hex()} of {account[1]} revoked")
        case "set_param":
            name, value = args
            _, lo, hi = PARAMS[name]
            _need(lo <= value <= hi, f"parameter {name} must be in [{lo}, {hi}], got {value}")
            _need(cfg.params.get(name) != value, f"parameter {name} is already {value}")
            cfg.params[name] = value
            p.changes.append(f"parameter {name} = {value}")
        case "set_committee":
            org, weight = args
            seats = dict(committee(view.gov))
            if weight == 0:
                _need(org in seats, f"org {org!r} has no committee seat")
                _need(len(seats) > 1, "G-K3: the committee would become empty")
                p.gov[committee_key(org)] = None
            else:
                _need_live_org(view, org, cfg)
                _need(seats.get(org) != weight, f"org {org!r} already has weight {weight}")
                p.gov[committee_key(org)] = encode(weight)
            p.changes.append(f"committee {org} weight {seats.get(org, 0)} -> {weight}")
        case "set_thresholds":
            values = tuple(args)
            why = check_gov_thresholds(*values)
            _need(why == "", f"thresholds: {why}")
            _need(values != thresholds(view.gov), "the thresholds are already these")
            p.gov[b"t"] = encode(list(values))
            p.changes.append("thresholds " + "/".join(str(x) for x in values))
        case _:
            raise ContractError(f"unknown proposal kind {kind!r}; kinds: {', '.join(KINDS)}")
    p.config = cfg.build()
    return p

"""An epoch's configuration: who validates, who may connect, the chain parameters (issue 12).

Rules this module keeps (docs/consensus.md "Epochs", docs/governance.md):
1. An epoch is a run of consecutive blocks certified by one validator set. Epoch 0 starts at
   genesis with the configuration derived from the genesis document (`EpochConfig.from_genesis`).
   Governance (contracts/governance.py) decides the next configuration; it takes effect after the
   committed block that ended the epoch, never in the middle of a round.
2. `validators` are ascending by node id, no key twice, at least one; `observers` are SM2 node
   keys of admitted non-voting nodes, ascending, none a validator's; `params` are (name, value)
   pairs ascending by name, each name in PARAMS with a value in its range.
3. `validator_set_fingerprint(validators)` = SM3("GMCHAIN/VALIDATOR-SET/v1" || for each validator
   in ascending public-key order: its 65-byte key || u64 big-endian power). Organisations do not
   count: certificates don't. It names a set (trust anchors, gm_getEpoch's validatorsHash).
   `next_validators_commitment(epoch, validators)` = SM3("GMCHAIN/NEXT-VALIDATORS/v1" ||
   u64be(epoch) || validator_set_fingerprint(validators)) names a set AND the epoch it certifies:
   every header carries it for the next block of its branch (`BlockHeader.next_validators_hash`):
   (e, set_e) on a block of epoch e that does not end it, (e + 1, set_{e+1}) on the block that
   ends epoch e and on its suffix. So an epoch's end is marked in what its certificate signs: a
   certified header inside epoch e cannot be presented as the end of e (issue 12 finding F4).
4. The struct's codec is derived from its fields (ledger.struct_codec), its tag registered in
   ledger.wire.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from gmchain.crypto_sm import sm3_hash
from gmchain.ledger.genesis import MAX_OBSERVERS, Genesis, GenesisValidator
from gmchain.ledger.scalars import (
    MAX_VALIDATORS,
    PUBKEY_SIZE,
    Digest,
    check_bytes,
    check_int,
    check_list,
    check_str,
    need,
)
from gmchain.ledger.struct_codec import Struct, max_items, wire_struct
from gmchain.ledger.wire import HASH_PREFIXES, Tag

__all__ = ["PARAMS", "EpochConfig", "next_validators_commitment", "validator_set_fingerprint"]

D_VALIDATOR_SET = HASH_PREFIXES["validator-set"]
D_NEXT_VALIDATORS = HASH_PREFIXES["next-validators"]

# Chain parameters that must agree chain-wide: name -> (default, minimum, maximum).
# `replay_window`'s epoch-0 value comes from the genesis document.
PARAMS: Mapping[str, tuple[int, int, int]] = {
    "block_max_bytes": (8 * 1024 * 1024, 64 * 1024, 64 * 1024 * 1024),
    "block_max_txs": (5000, 1, 100_000),
    "replay_window": (1000, 1, 1_000_000),
    "round_timeout_ms": (1000, 100, 60_000),
    "tx_max_bytes": (64 * 1024, 1024, 1024 * 1024),
}


def validator_set_fingerprint(validators: Iterable[GenesisValidator]) -> Digest:
    """Rule 3."""
    parts = sorted(v.pubkey + v.power.to_bytes(8, "big") for v in validators)
    return Digest(sm3_hash(D_VALIDATOR_SET + b"".join(parts)))


def next_validators_commitment(epoch: int, validators: Iterable[GenesisValidator]) -> Digest:
    """Rule 3: what a header whose next block is of `epoch`, certified by `validators`, carries
    as `next_validators_hash`."""
    check_int("epoch", epoch)
    fingerprint = validator_set_fingerprint(validators)
    return Digest(sm3_hash(D_NEXT_VALIDATORS + epoch.to_bytes(8, "big") + fingerprint))


def default_params(genesis: Genesis) -> tuple[tuple[str, int], ...]:
    values = {name: spec[0] for name, spec in PARAMS.items()}
    values["replay_window"] = genesis.replay_window
    return tuple(sorted(values.items()))


@wire_struct
@dataclass(frozen=True, slots=True, kw_only=True)
class EpochConfig(Struct):
    """Rule 2: the configuration of one epoch."""

    TAG: ClassVar[Tag] = Tag.EPOCH_CONFIG
    epoch: int
    validators: tuple[GenesisValidator, ...] = field(metadata=max_items(MAX_VALIDATORS))
    observers: tuple[bytes, ...] = field(default=(), metadata=max_items(MAX_OBSERVERS))
    params: tuple[tuple[str, int], ...] = field(default=(), metadata=max_items(len(PARAMS)))

    def __post_init__(self) -> None:
        check_int("epoch", self.epoch)
        check_list("validators", self.validators, MAX_VALIDATORS)
        need(len(self.validators) >= 1, "validators: at least one")
        vals = tuple(self.validators)
        need(all(isinstance(v, GenesisValidator) for v in vals), "validators: GenesisValidator")
        ids = [v.node_id for v in vals]
        need(ids == sorted(set(ids)), "validators: ascending by node id, no key twice")
        object.__setattr__(self, "validators", vals)
        check_list("observers", self.observers, MAX_OBSERVERS)
        for o in self.observers:
            check_bytes("observer", o, PUBKEY_SIZE)
        obs = tuple(self.observers)
        need(list(obs) == sorted(set(obs)), "observers: ascending, no key twice")
        keys = {v.pubkey for v in vals}
        need(not keys.intersection(obs), "observers: a validator is not an observer")
        object.__setattr__(self, "observers", obs)
        check_list("params", self.params, len(PARAMS))
        params = []
        for pair in self.params:
            need(isinstance(pair, list | tuple) and len(pair) == 2, "params: expected pairs")
            name, value = pair
            check_str("param name", name, 32)
            need(name in PARAMS, f"params: unknown parameter {name}")
            need(isinstance(value, int) and not isinstance(value, bool), "params: integer values")
            need(PARAMS[name][1] <= value <= PARAMS[name][2], "params: value out of its range")
            params.append((name, value))
        names = [n for n, _ in params]
        need(names == sorted(set(names)), "params: ascending by name, no name twice")
        object.__setattr__(self, "params", tuple(params))

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> EpochConfig:
        """Rule 1: epoch 0."""
        return cls(
            epoch=0,
            validators=tuple(sorted(genesis.validators, key=lambda v: v.node_id)),
            observers=tuple(sorted(set(genesis.observers))),
            params=default_params(genesis),
        )

    def param(self, name: str) -> int:
        """A parameter's value in this epoch (its default when the config does not name it)."""
        for n, v in self.params:
            if n == name:
                return v
        return PARAMS[name][0]

    @property
    def validators_hash(self) -> Digest:
        return validator_set_fingerprint(self.validators)

    @property
    def next_validators_commitment(self) -> Digest:
        """Rule 3: the `next_validators_hash` of a header whose next block is of this epoch."""
        return next_validators_commitment(self.epoch, self.validators)

    def admitted_keys(self) -> frozenset[bytes]:
        """Node keys the P2P layer admits in this epoch: validators and observers."""
        return frozenset(v.pubkey for v in self.validators) | frozenset(self.observers)

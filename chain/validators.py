"""The validator-set provider: the one object every reader asks "the validator set at height h".

Rules this module keeps:
1. Every reader of the validator set (the replica's voting set and signature keys, proof bundles,
   peer admission, the SDK's trust anchor, the simulator) asks a `ValidatorProvider`; none reads
   `Genesis.validators` itself, so epochs (governance, milestone 2) change this one place.
2. For now the set is the genesis set at every height (`GenesisValidators`): there are no epochs.
   Heights below 0 are the caller's bug.
3. `voting_set_at(h)` is the same set as `validators_at(h)`, in the shape `consensus/` needs
   (node id and power; quorum arithmetic in `consensus.types.ValidatorSet`).
"""

from __future__ import annotations

from typing import Protocol

from gmchain.consensus.types import Validator, ValidatorSet
from gmchain.ledger.types import Genesis, GenesisValidator

__all__ = ["GenesisValidators", "ValidatorProvider"]


class ValidatorProvider(Protocol):
    def validators_at(self, height: int) -> tuple[GenesisValidator, ...]:
        """The validators (SM2 keys, power, org) that vote on the block at `height`."""
        ...

    def voting_set_at(self, height: int) -> ValidatorSet:
        """Rule 3: the same set as consensus sees it."""
        ...


class GenesisValidators:
    """Rule 2: the genesis validator set at every height."""

    __slots__ = ("_set", "_validators")

    def __init__(self, genesis: Genesis) -> None:
        self._validators = genesis.validators
        self._set = ValidatorSet(
            Validator(node_id=v.node_id, power=v.power) for v in genesis.validators
        )

    def validators_at(self, height: int) -> tuple[GenesisValidator, ...]:
        assert height >= 0, height
        return self._validators

    def voting_set_at(self, height: int) -> ValidatorSet:
        assert height >= 0, height
        return self._set

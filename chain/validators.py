"""The validator-set provider: the one object every reader asks "the validator set at height h".

Rules this module keeps:
1. Every reader of the validator set (the replica's voting set and signature keys, proof bundles,
   peer admission, the SDK's trust anchor, the simulator) asks a `ValidatorProvider`; none reads
   `Genesis.validators` itself, so epochs (governance, milestone 2) change this one place.
2. `GenesisValidators`: the genesis set at every height, for a chain with no governance change
   (and for callers that hold only a genesis document). Heights below 0 are the caller's bug.
3. `voting_set_at(h)` is the same set as `validators_at(h)`, in the shape `consensus/` needs
   (node id and power; quorum arithmetic in `consensus.types.ValidatorSet`).
4. `StoreValidators` (EPOCHS.md E7) answers from the stored epoch records (chain/epochs.py
   rule 2): epoch 0 is `EpochConfig.from_genesis` from height 0; epoch n >= 1 from its record's
   start height (the height after the committed block that ended epoch n - 1). A height belongs
   to the latest epoch that starts at or below it: above the committed head that is the current
   epoch's answer, which is the right one for every block the replica may still certify (the
   suffix of an uncommitted epoch end is certified by the current set; the chain computes its
   `next_validators_hash` itself). `reload()` picks up records committed since.
"""

from __future__ import annotations

import bisect
from typing import Protocol

from gmchain.chain.epochs import EpochRecord
from gmchain.consensus.types import Validator, ValidatorSet
from gmchain.ledger.epoch import EpochConfig
from gmchain.ledger.store_api import ChainStore
from gmchain.ledger.types import Genesis, GenesisValidator

__all__ = ["GenesisValidators", "StoreValidators", "ValidatorProvider"]


class ValidatorProvider(Protocol):
    def validators_at(self, height: int) -> tuple[GenesisValidator, ...]:
        """The validators (SM2 keys, power, org) that vote on the block at `height`."""
        ...

    def voting_set_at(self, height: int) -> ValidatorSet:
        """Rule 3: the same set as consensus sees it."""
        ...

    def epoch_at(self, height: int) -> int:
        """The epoch of the committed block at `height` (rule 4)."""
        ...

    def config(self, epoch: int) -> EpochConfig:
        """Epoch `epoch`'s configuration; KeyError for an epoch not (yet) recorded."""
        ...

    def current_epoch(self) -> int:
        """The latest epoch recorded: the one the next committed block belongs to."""
        ...


class GenesisValidators:
    """Rule 2: the genesis validator set at every height."""

    __slots__ = ("_config", "_set", "_validators")

    def __init__(self, genesis: Genesis) -> None:
        self._validators = genesis.validators
        self._config = EpochConfig.from_genesis(genesis)
        self._set = ValidatorSet(
            Validator(node_id=v.node_id, power=v.power) for v in genesis.validators
        )

    def validators_at(self, height: int) -> tuple[GenesisValidator, ...]:
        assert height >= 0, height
        return self._validators

    def voting_set_at(self, height: int) -> ValidatorSet:
        assert height >= 0, height
        return self._set

    def epoch_at(self, height: int) -> int:
        assert height >= 0, height
        return 0

    def config(self, epoch: int) -> EpochConfig:
        if epoch != 0:
            raise KeyError(f"no epoch {epoch}: this chain runs the genesis set only")
        return self._config

    def current_epoch(self) -> int:
        return 0


def _voting_set(validators: tuple[GenesisValidator, ...]) -> ValidatorSet:
    return ValidatorSet(Validator(node_id=v.node_id, power=v.power) for v in validators)


class StoreValidators:
    """Rule 4: the validator set of each epoch, from the store's epoch records.

    Invariant: `_starts[n]` is epoch n's start height and `_configs[n]` its configuration, for
    n = 0 .. the store's last epoch when `reload` last ran; starts ascend strictly. Appended to by
    the committing thread only; readers on other threads see a prefix (list appends are atomic).
    """

    __slots__ = ("_configs", "_sets", "_starts", "_store")

    def __init__(self, genesis: Genesis, store: ChainStore) -> None:
        self._store = store
        self._configs: list[EpochConfig] = [EpochConfig.from_genesis(genesis)]
        self._sets: list[ValidatorSet] = [_voting_set(self._configs[0].validators)]
        self._starts: list[int] = [0]
        self.reload()

    def reload(self) -> None:
        """Read the records the store committed since the last call."""
        for n in range(len(self._configs), self._store.last_epoch() + 1):
            raw = self._store.get_epoch_record(n)
            assert raw is not None, f"epoch record {n} missing below the last one"
            record = EpochRecord.decode(raw)
            assert record.start_height > self._starts[-1], "epoch starts must ascend"
            self._sets.append(_voting_set(record.config.validators))
            self._configs.append(record.config)
            self._starts.append(record.start_height)  # last: readers index by it

    def record(self, epoch: int) -> EpochRecord | None:
        """The stored record of epoch `epoch` >= 1 (None for 0 or one never written)."""
        raw = self._store.get_epoch_record(epoch) if epoch >= 1 else None
        return None if raw is None else EpochRecord.decode(raw)

    def start_height(self, epoch: int) -> int:
        return self._starts[epoch]

    def epoch_at(self, height: int) -> int:
        assert height >= 0, height
        return bisect.bisect_right(self._starts, height) - 1

    def validators_at(self, height: int) -> tuple[GenesisValidator, ...]:
        return self._configs[self.epoch_at(height)].validators

    def voting_set_at(self, height: int) -> ValidatorSet:
        return self._sets[self.epoch_at(height)]

    def config(self, epoch: int) -> EpochConfig:
        if not 0 <= epoch < len(self._starts):
            raise KeyError(
                f"no epoch {epoch} recorded (the current epoch is {len(self._starts) - 1})"
            )
        return self._configs[epoch]

    def current_epoch(self) -> int:
        return len(self._starts) - 1

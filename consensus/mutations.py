"""Planted bugs for the mutation checks (docs/consensus.md, "Mutation checks"); never in a node.

Rules this module keeps:
1. A planted bug reaches a replica only through `Replica(bugs=...)`, a constructor argument
   separate from `ConsensusConfig`: the configuration has no field for bugs, so no config file,
   no `NodeConfig` field and no `ConsensusConfig` a node builds can carry one.
2. Only the simulator (`consensus/sim`) and tests import this module; `node/` never does
   (tests/test_mutation_isolation.py reads the node package's imports and calls to check it).
3. Each bug breaks exactly one rule, named beside it, so a safety violation found with it on and
   not with it off shows that the simulator exercises that rule.
4. `EARLY_EPOCH_SWITCH` is the one bug that lives outside the replica: the simulator's world reads
   it from `SimConfig.bugs` (the node's driver has no way to receive it, rule 2).
"""

from __future__ import annotations

from enum import Enum

from gmchain.consensus.types import ValidatorSet

__all__ = ["NO_BUGS", "Bug", "weak_2f_power"]


class Bug(Enum):
    """Planted bugs for mutation tests only."""

    SKIP_LOCK_CHECK = "skip-lock-check"  # S2 not applied when voting, nor its check in L2
    QUORUM_2F = "quorum-2f"  # certificates accepted with 2f instead of 2f+1 power
    UNVERIFIED_TC = "unverified-tc"  # timeout certificates are not verified
    FORGET_SAFETY = "forget-safety"  # persisted SafetyData ignored on restart
    # E5: a QC of the previous epoch is checked against the current set as if it were ours
    # (consensus/certs.py rule 6: only the epoch root may come from the previous epoch)
    PREVIOUS_EPOCH_QC = "previous-epoch-qc"
    # E4/E5: the simulator switches a node to the next epoch's replica as soon as it has executed
    # an epoch-ending block, before that block is committed (consensus/sim/world.py rule 4)
    EARLY_EPOCH_SWITCH = "early-epoch-switch"


NO_BUGS: frozenset[Bug] = frozenset()


def weak_2f_power(validators: ValidatorSet) -> int:
    """The buggy threshold of Bug.QUORUM_2F: 2f with f = floor((total - 1) / 3)."""
    return max(1, 2 * ((validators.total_power - 1) // 3))

"""The deterministic consensus simulator (see consensus/sim/world.py and docs/consensus.md).

`run_seed(SimConfig(seed=...))` runs one seeded world and returns its invariant violations;
`python -m gmchain.consensus.sim` runs many. Randomness is always a seeded `random.Random` instance.
"""

from gmchain.consensus.sim.world import FAULT_KINDS, SimConfig, SimResult, run_seed

__all__ = ["FAULT_KINDS", "SimConfig", "SimResult", "run_seed"]

"""The simulator's configuration and result records (consensus/sim/world.py runs them).

Rules this module keeps:
1. A `SimConfig` determines a run completely (world.py rule 1): `command()` prints the CLI line
   that replays it bit for bit.
2. Fields added later default to the behaviour before them, so every earlier seed replays the
   same (`reconfig` = 0: no governance, no spare nodes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gmchain.consensus.mutations import Bug

__all__ = ["FAULT_KINDS", "SimConfig", "SimResult"]

FAULT_KINDS = ("network", "partition", "rounds", "twins_split", "crash", "drift", "byzantine")


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    seed: int
    nodes: int = 4
    byzantine: int = 1
    faults: frozenset[str] = frozenset(FAULT_KINDS)
    bugs: frozenset[Bug] = frozenset()
    twins: bool = True  # allow Twins among the Byzantine nodes
    twins_rate_percent: int = 40  # chance that a Byzantine node runs as two twins
    outage_percent: int = 30  # with "crash": chance of one long outage (down until the heal)
    behaviours: frozenset[str] = frozenset()  # Byzantine behaviours; empty = drawn per node
    fault_ms: int = 1500
    liveness_ms: int = 12_000
    votes: str = "mixed"  # "broadcast", "leader" (DiemBFT v4), or "mixed": by the seed's parity
    reconfig: int = 0  # rule 4: governance actions (each a new epoch when it executes)
    spares: int = 0  # rule 4: nodes outside the genesis set that may join

    @property
    def broadcast_votes(self) -> bool:
        if self.votes == "mixed":
            return self.seed % 2 == 0
        return self.votes == "broadcast"

    def command(self) -> str:
        faults = ",".join(sorted(self.faults)) or "none"
        parts = [
            "python -m gmchain.consensus.sim",
            f"--seed {self.seed}",
            f"--nodes {self.nodes}",
            f"--byzantine {self.byzantine}",
            f"--faults {faults}",
            f"--fault-ms {self.fault_ms}",
            f"--liveness-ms {self.liveness_ms}",
        ]
        if not self.twins:
            parts.append("--no-twins")
        if self.outage_percent != 30:
            parts.append(f"--outage {self.outage_percent}")
        if self.twins_rate_percent != 40:
            parts.append(f"--twins-rate {self.twins_rate_percent}")
        if self.behaviours:
            parts.append(f"--behaviours {','.join(sorted(self.behaviours))}")
        for b in sorted(x.value for x in self.bugs):
            parts.append(f"--bug {b}")
        if self.votes != "mixed":
            parts.append(f"--votes {self.votes}")
        if self.reconfig or self.spares:
            parts.append(f"--reconfig {self.reconfig} --spares {self.spares}")
        return " ".join(parts)


@dataclass(slots=True, kw_only=True)
class SimResult:
    seed: int
    violations: list[str] = field(default_factory=list)
    liveness_failure: bool = False
    commits: int = 0  # blocks committed (max over honest nodes)
    virtual_ms: int = 0
    messages: int = 0
    synced_responses: int = 0  # non-empty SyncResponses delivered (committed sync exercised)
    command: str = ""
    note: str = ""  # why a run ended early (e.g. a message explosion)
    epochs: int = 0  # the latest epoch any node reached (rule 4)
    gov_executed: tuple[str, ...] = ()  # the governance actions that executed, in order
    subject_crashes: int = 0  # crashes of the node a governance decision was about
    catch_up_epochs: int = 0  # most epochs a node restarted behind (it must catch up: liveness)

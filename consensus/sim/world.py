"""The deterministic simulator: virtual time, a faulty network, crashes, drift, Byzantine replicas.

Rules this module keeps:
1. Determinism: all randomness comes from one `random.Random(seed)` instance (never the global
   one), events are ordered by (virtual time, sequence number), and nothing iterates a set of
   bytes; so `run_seed(cfg)` is a pure function of `cfg` and a failing seed replays bit for bit.
2. Faults run during [0, fault_ms): drops, duplicates, drawn delays (reordering follows), symmetric
   and asymmetric partitions, crashes with restart (the effects after a random point of the step
   being run are lost; SafetyData and the committed store survive), per-node clock offset and
   drift. At fault_ms the network heals and every crashed node restarts; Byzantine nodes go on.
3. Invariants checked on every run: agreement (one block per height among honest commits),
   validity (only submitted txs, each at most once), no honest double vote (per voter and round),
   commit order (each honest replica commits heights 1, 2, 3, ... exactly once), and liveness
   (probe txs submitted after the heal commit at every honest node within liveness_ms).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from random import Random
from typing import cast

from gmchain.chain.genesis import make_genesis_block
from gmchain.chain.validators import GenesisValidators
from gmchain.consensus.certs import make_genesis_qc
from gmchain.consensus.messages import ConsensusMessage, SyncResponse
from gmchain.consensus.mutations import Bug
from gmchain.consensus.replica import Replica
from gmchain.consensus.safety import SafetyData
from gmchain.consensus.sim.app import (
    SIM_CHAIN_ID,
    FakeSigner,
    FakeVerifier,
    SimApp,
    make_sim_genesis,
    sim_txs,
)
from gmchain.consensus.sim.byzantine import BEHAVIOURS, Byzantine
from gmchain.consensus.types import (
    Broadcast,
    Commit,
    ConsensusConfig,
    Effect,
    MessageReceived,
    PersistBlock,
    PersistSafety,
    Send,
    Start,
    Tick,
)
from gmchain.crypto_sm import sm3_hash
from gmchain.ledger.types import Digest, NodeId, Proposal, SignedTx, TimeoutVote, Vote

__all__ = ["FAULT_KINDS", "SimConfig", "SimResult", "run_seed"]

FAULT_KINDS = ("network", "partition", "rounds", "twins_split", "crash", "drift", "byzantine")
TICK_MS = 10
MAX_EVENTS_PER_SEED = 2_000_000  # a healthy seed needs well under 100,000 (see World.run)
_PROBES = 80  # index of the first probe tx in sim_txs(): the batches take at most 16 x 5


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


@dataclass(slots=True, kw_only=True)
class _Instance:
    idx: int  # unique per instance (twins are two instances)
    node_id: NodeId
    signer: FakeSigner
    honest: bool
    app: SimApp
    byz: Byzantine | None
    replica: Replica | None = None
    disk: SafetyData | None = None  # what PersistSafety wrote (survives a crash)
    offset_ms: int = 0
    drift_ppm: int = 0
    crash_pending: bool = False
    committed_height: int = 0


class _World:
    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.rng = Random(cfg.seed)
        rng = self.rng
        self.faults = cfg.faults
        self.genesis = make_sim_genesis(cfg.nodes)
        self.genesis_id = make_genesis_block(self.genesis)[0].block_id
        self.genesis_qc = make_genesis_qc(self.genesis_id)
        provider = GenesisValidators(self.genesis)  # who votes: asked, never read from genesis
        secrets = {}
        signers = []
        for i, v in enumerate(provider.validators_at(0)):
            secret = sm3_hash(b"sim-secret" + cfg.seed.to_bytes(8, "big") + bytes([i]))
            secrets[v.node_id] = secret
            signers.append(FakeSigner(v.node_id, secret))
        self.verifier = FakeVerifier(secrets)
        self.validators = provider.voting_set_at(0)
        # A small in-memory window makes lagging replicas use committed sync (SyncRequest) too.
        self.config = ConsensusConfig.minimal(
            committed_window=2,
            block_request_count=3,
            broadcast_votes=cfg.broadcast_votes,
        )
        self.submitted: dict[Digest, SignedTx] = {}
        byz_ids = (
            set(rng.sample(range(cfg.nodes), cfg.byzantine))
            if "byzantine" in self.faults
            else set()
        )
        self.instances: list[_Instance] = []
        for i, s in enumerate(signers):
            copies = 1
            if i in byz_ids and cfg.twins and rng.randrange(100) < cfg.twins_rate_percent:
                copies = 2
            for _ in range(copies):
                self._add_instance(s, honest=i not in byz_ids)
        self.by_id: dict[NodeId, list[_Instance]] = {}
        for inst in self.instances:
            self.by_id.setdefault(inst.node_id, []).append(inst)
        # network parameters
        net = "network" in self.faults
        self.p_drop = rng.uniform(0.0, 0.15) if net else 0.0
        self.p_dup = rng.uniform(0.0, 0.1) if net else 0.0
        self.delay_kind = rng.choice(("uniform", "exp", "bimodal")) if net else "uniform"
        self.partitions: list[tuple[int, int, set[tuple[int, int]]]] = []
        # Twins-style (Bano et al., OPODIS 2021): per-round partitions, round -> group of instance
        # indexes; messages of that round cross the group's border in neither direction.
        self.round_groups: dict[int, set[int]] = {}
        self.heap: list[tuple[int, int, str, int, object]] = []
        self.seq = 0
        self.now = 0
        self.exploded = False  # the event budget ran out (World.run)
        self.healed = False
        # invariants
        self.violations: list[str] = []
        self.chain: dict[int, Digest] = {}
        self.tx_height: dict[Digest, int] = {}
        self.votes: dict[tuple[NodeId, int], Digest] = {}
        self.messages = 0
        self.synced_responses = 0

    def _add_instance(self, signer: FakeSigner, *, honest: bool) -> None:
        rng = self.rng
        app = SimApp(genesis=self.genesis)
        byz = None
        if not honest:
            k = rng.randint(1, 3)
            drawn = frozenset(rng.sample(BEHAVIOURS, k))
            byz = Byzantine(
                behaviours=self.cfg.behaviours or drawn,
                rng=Random(rng.getrandbits(64)),
                signer=signer,
                validators=self.validators,
                chain_id=SIM_CHAIN_ID,
                genesis_qc=self.genesis_qc,
            )
        inst = _Instance(
            idx=len(self.instances),
            node_id=signer.node_id,
            signer=signer,
            honest=honest,
            app=app,
            byz=byz,
        )
        if "drift" in self.faults:
            inst.offset_ms = rng.randint(0, 100)
            inst.drift_ppm = rng.randint(-50_000, 50_000)
        self.instances.append(inst)

    # --- scheduling -----------------------------------------------------------------------------

    def push(self, t: int, kind: str, idx: int, payload: object) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, idx, payload))

    def local_now(self, inst: _Instance) -> int:
        return self.now + inst.offset_ms + self.now * inst.drift_ppm // 1_000_000

    def draw_delay(self) -> int:
        rng = self.rng
        if self.healed:
            return rng.randint(1, 20)
        if self.delay_kind == "uniform":
            return rng.randint(1, 60)
        if self.delay_kind == "exp":
            return 1 + min(400, int(rng.expovariate(1 / 25)))
        return rng.randint(1, 10) if rng.random() < 0.8 else rng.randint(100, 300)

    def is_blocked(self, src: int, dst: int) -> bool:
        if self.healed:
            return False
        return any(a <= self.now < b and (src, dst) in links for a, b, links in self.partitions)

    def plan_faults(self) -> None:
        rng, cfg = self.rng, self.cfg
        n_inst = len(self.instances)
        if "partition" in self.faults:
            for _ in range(rng.randint(1, 2)):
                start = rng.randint(0, cfg.fault_ms - 100)
                end = min(cfg.fault_ms, start + rng.randint(100, 800))
                group = set(rng.sample(range(n_inst), rng.randint(1, max(1, n_inst // 2))))
                sym = rng.random() < 0.5
                links = set()
                for a in range(n_inst):
                    for b in range(n_inst):
                        if a in group and b not in group:
                            links.add((a, b))
                            if sym:
                                links.add((b, a))
                self.partitions.append((start, end, links))
        if "twins_split" in self.faults:
            # Twins (Bano et al.): each twin pair straddles a long symmetric partition, honest
            # nodes are dealt to both sides; with correct quorums at most one side can commit.
            side: set[int] = set()
            seen: dict[NodeId, int] = {}
            for inst in self.instances:
                if not inst.honest:
                    if inst.node_id in seen:
                        continue  # the second twin stays on the other side
                    seen[inst.node_id] = inst.idx
                    side.add(inst.idx)
                elif rng.random() < 0.5:
                    side.add(inst.idx)
            start = rng.randint(0, cfg.fault_ms // 2)
            end = rng.randint(start + (cfg.fault_ms - start) // 2, cfg.fault_ms)
            links = {
                (a, b) for a in range(n_inst) for b in range(n_inst) if (a in side) != (b in side)
            }
            self.partitions.append((start, end, links))
        if "rounds" in self.faults:
            for r in range(1, rng.randint(4, 16)):
                if rng.random() < 0.5:
                    k = rng.randint(1, max(1, n_inst // 2))
                    self.round_groups[r] = set(rng.sample(range(n_inst), k))
        if "crash" in self.faults:
            honest = [i.idx for i in self.instances if i.honest]
            for _ in range(rng.randint(1, 2)):
                victim = rng.choice(honest)
                t = rng.randint(0, cfg.fault_ms - 50)
                self.push(t, "crash", victim, None)
                self.push(min(cfg.fault_ms, t + rng.randint(50, 600)), "restart", victim, None)
            if rng.randrange(100) < cfg.outage_percent:  # a long outage: back far behind
                victim = rng.choice(honest)
                self.push(rng.randint(0, cfg.fault_ms // 4), "crash", victim, None)
        nonce = 0
        for _ in range(rng.randint(6, 16)):
            t = rng.randint(0, cfg.fault_ms)
            batch = [sim_txs()[nonce + k] for k in range(rng.randint(1, 5))]
            nonce += len(batch)
            self.push(t, "submit", -1, batch)
        self.probes = [sim_txs()[_PROBES + k] for k in range(3)]
        self.push(cfg.fault_ms + 50, "submit", -1, self.probes)
        self.push(cfg.fault_ms, "heal", -1, None)

    # --- running --------------------------------------------------------------------------------

    def start_instance(self, inst: _Instance) -> None:
        app = inst.app
        committed = app.committed_header
        high_qc = app.committed_qc()
        inst.committed_height = committed.height
        inst.replica = Replica(
            config=self.config,
            validators=self.validators,
            chain_id=SIM_CHAIN_ID,
            signer=inst.signer,
            verifier=self.verifier,
            app=app,
            committed=committed,
            high_qc=high_qc,
            safety=inst.disk,
            now_ms=self.local_now(inst),
            genesis_id=self.genesis_id,
            blocks=app.chain.pending_blocks(),
            bugs=self.cfg.bugs,
        )
        self.run_step(inst, Start(now_ms=self.local_now(inst)))

    def run(self) -> SimResult:
        cfg = self.cfg
        self.plan_faults()
        for inst in self.instances:
            self.start_instance(inst)
            self.push(self.rng.randint(0, TICK_MS), "tick", inst.idx, None)
        deadline = cfg.fault_ms + cfg.liveness_ms
        probe_ids = [t.tx_id for t in self.probes]
        live = False
        events = 0
        while self.heap:
            t, _, kind, idx, payload = heapq.heappop(self.heap)
            if t > deadline:
                break
            events += 1
            if events > MAX_EVENTS_PER_SEED:
                # A message explosion (virtual time stalls while messages multiply): report it as
                # a liveness failure with its replay command instead of spinning for hours.
                self.exploded = True
                break
            self.now = t
            if kind == "tick":
                inst = self.instances[idx]
                if inst.replica is not None:
                    self.run_step(inst, Tick(now_ms=self.local_now(inst)))
                self.push(t + TICK_MS, "tick", idx, None)
                if self.healed and idx == 0 and self._probes_done(probe_ids):
                    live = True
                    break
            elif kind == "msg":
                inst = self.instances[idx]
                sender, msg = cast(tuple[NodeId, ConsensusMessage], payload)
                if inst.replica is not None:
                    self.messages += 1
                    if inst.byz is not None:
                        inst.byz.observe(msg)
                    if isinstance(msg, SyncResponse) and msg.items:
                        self.synced_responses += 1
                    ev = MessageReceived(sender=sender, msg=msg, now_ms=self.local_now(inst))
                    self.run_step(inst, ev)
            elif kind == "submit":
                for inst in self.instances:
                    self.push(t + self.rng.randint(0, 30), "gossip", inst.idx, payload)
                for tx in payload:  # type: ignore[attr-defined]
                    self.submitted[tx.tx_id] = tx
            elif kind == "gossip":
                inst = self.instances[idx]
                inst.app.add_txs(payload, self.local_now(inst))  # type: ignore[arg-type]
            elif kind == "crash":
                self.instances[idx].crash_pending = True
            elif kind == "restart":
                self.restart(self.instances[idx])
            elif kind == "heal":
                self.healed = True
                for inst in self.instances:
                    if inst.replica is None or inst.crash_pending:
                        inst.crash_pending = False
                        self.restart(inst)
        result = SimResult(seed=cfg.seed, command=cfg.command())
        result.violations = self.violations
        result.liveness_failure = not live
        if self.exploded:
            result.violations = [*result.violations]  # (safety verdicts so far still stand)
            result.note = f"message explosion: over {MAX_EVENTS_PER_SEED} events by t={self.now} ms"
        result.commits = max((i.committed_height for i in self.instances if i.honest), default=0)
        result.virtual_ms = self.now
        result.messages = self.messages
        result.synced_responses = self.synced_responses
        return result

    def _probes_done(self, probe_ids: list[Digest]) -> bool:
        for inst in self.instances:
            if inst.honest and not all(inst.app.is_committed_tx(p) for p in probe_ids):
                return False
        return True

    def restart(self, inst: _Instance) -> None:
        if inst.replica is not None:
            return
        # The pool and the chain object are memory (the store is the disk); peers re-gossip
        # what is still pending.
        inst.app.restarted()
        pending = [t for tid, t in self.submitted.items() if not inst.app.is_committed_tx(tid)]
        inst.app.add_txs(pending, self.local_now(inst))
        self.start_instance(inst)

    def run_step(self, inst: _Instance, event: object) -> None:
        assert inst.replica is not None
        effects: list[Effect] = inst.replica.step(event)  # type: ignore[arg-type]
        if inst.byz is not None:
            effects = inst.byz.transform(effects, inst.app, self.local_now(inst))
        cut = len(effects)
        if inst.crash_pending:
            cut = self.rng.randint(0, len(effects))  # the un-synced tail is lost
        for e in effects[:cut]:
            self.execute(inst, e)
        if inst.crash_pending:
            inst.crash_pending = False
            inst.replica = None

    def execute(self, inst: _Instance, e: Effect) -> None:
        match e:
            case PersistSafety(data=data):
                assert isinstance(data, SafetyData)
                inst.disk = data
                if inst.honest and data.last_vote is not None:
                    v = data.last_vote
                    key = (v.voter, int(v.round))
                    prev = self.votes.setdefault(key, v.block_id)
                    if prev != v.block_id:
                        self.violations.append(
                            f"double vote by {v.voter.hex()[:8]} in round {v.round}"
                        )
            case PersistBlock(block=block):
                inst.app.persist_block(block)
            case Send(to=to, msg=msg):
                for dst in self.by_id.get(to, []):
                    self.transmit(inst, dst, msg)
            case Broadcast(msg=msg):
                for dst in self.instances:
                    if dst.node_id != inst.node_id:
                        self.transmit(inst, dst, msg)
            case Commit(blocks=blocks, proof=proof):
                if inst.honest:
                    self.check_commit(inst, blocks)
                inst.app.apply_commit(blocks, proof, self.local_now(inst))
                inst.committed_height = blocks[-1].header.height

    def transmit(self, src: _Instance, dst: _Instance, msg: ConsensusMessage) -> None:
        if self.is_blocked(src.idx, dst.idx):
            return
        if self.round_groups and not self.healed:
            r = _round_of(msg)
            group = self.round_groups.get(r) if r is not None else None
            if group is not None and (src.idx in group) != (dst.idx in group):
                return
        rng = self.rng
        if not self.healed and rng.random() < self.p_drop:
            return
        copies = 2 if (not self.healed and rng.random() < self.p_dup) else 1
        for _ in range(copies):
            self.push(self.now + self.draw_delay(), "msg", dst.idx, (src.node_id, msg))

    def check_commit(self, inst: _Instance, blocks: tuple[object, ...]) -> None:
        for b in blocks:
            h = b.header  # type: ignore[attr-defined]
            bid = h.block_id
            if h.height != inst.committed_height + 1:
                self.violations.append(
                    f"node {inst.idx} committed height {h.height} after {inst.committed_height}"
                )
            inst.committed_height = h.height
            prev = self.chain.setdefault(h.height, bid)
            if prev != bid:
                self.violations.append(f"agreement: two blocks committed at height {h.height}")
                continue
            for t in b.txs:  # type: ignore[attr-defined]
                if t.tx_id not in self.submitted:
                    self.violations.append("validity: a tx nobody submitted was committed")
                at = self.tx_height.setdefault(t.tx_id, h.height)
                if at != h.height:
                    self.violations.append(f"validity: tx committed at heights {at}, {h.height}")


def _round_of(msg: ConsensusMessage) -> int | None:
    if isinstance(msg, Proposal):
        return int(msg.block.header.round)
    if isinstance(msg, Vote | TimeoutVote):
        return int(msg.round)
    return None


def run_seed(cfg: SimConfig) -> SimResult:
    """Run one seeded simulation and check every invariant."""
    return _World(cfg).run()

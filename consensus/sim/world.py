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
   validity (only submitted txs, each at most once), no honest double vote (per voter, epoch and
   round), commit order (each honest replica commits heights 1, 2, 3, ... exactly once), and
   liveness (probe txs submitted after the heal commit at every honest node within liveness_ms).
4. Epochs (`reconfig` > 0; consensus/sim/epochs.py): a governance script changes the validator
   set with real transactions; a node switches to the next epoch's replica when a commit ends
   its epoch (the chain hands over the switch; the rest of the step's commits are the old
   replica's suffix, dropped), and restarts in the epoch its store is in. The epoch invariants
   (epochs.py rule 4) are checked too, and liveness also needs every honest node in the latest
   epoch with the script finished. With the planted bug EARLY_EPOCH_SWITCH a node applies a
   set change as soon as it executes the deciding block, before any commit.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
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
from gmchain.consensus.sim.config import FAULT_KINDS, SimConfig, SimResult
from gmchain.consensus.sim.epochs import (
    EpochInvariants,
    GovScript,
    node_id_of,
    sim_node_pubkey,
)
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
    ValidatorSet,
    make_validator_set,
)
from gmchain.crypto_sm import sm3_hash
from gmchain.ledger.epoch import EpochConfig
from gmchain.ledger.types import (
    Block,
    Digest,
    NodeId,
    Proposal,
    Receipt,
    SignedTx,
    TimeoutVote,
    Vote,
)

__all__ = ["FAULT_KINDS", "SimConfig", "SimResult", "run_seed"]

TICK_MS = 10
MAX_EVENTS_PER_SEED = 2_000_000  # a healthy seed needs well under 100,000 (see World.run)
_PROBES = 80  # index of the first probe tx in sim_txs(): the batches take at most 16 x 5


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
    pubkey: bytes = b""  # the node key it signs with now (rotates with governance, rule 4)
    epoch: int = 0  # the epoch its replica runs
    switched: bool = False  # a commit of the step in progress ended the epoch (rule 4)
    early_set: ValidatorSet | None = None  # Bug.EARLY_EPOCH_SWITCH: the set to apply now


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
        pubkeys = []
        for i, v in enumerate(provider.validators_at(0)):
            secret = sm3_hash(b"sim-secret" + cfg.seed.to_bytes(8, "big") + bytes([i]))
            secrets[v.node_id] = secret
            signers.append(FakeSigner(v.node_id, secret))
            pubkeys.append(v.pubkey)
        # Rule 4: spare nodes' keys (j < spares) and keys validators may rotate to.
        for j in range(cfg.spares + cfg.reconfig if cfg.reconfig else 0):
            nid = node_id_of(sim_node_pubkey(j))
            secrets[nid] = sm3_hash(b"sim-spare" + cfg.seed.to_bytes(8, "big") + bytes([j]))
        self.secrets = secrets
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
                self._add_instance(s, honest=i not in byz_ids, pubkey=pubkeys[i])
        self.gov: GovScript | None = None
        self.epochs = EpochInvariants(EpochConfig.from_genesis(self.genesis))
        if cfg.reconfig:
            spares = [sim_node_pubkey(j) for j in range(cfg.spares)]
            for k in spares:
                self._add_instance(
                    FakeSigner(node_id_of(k), secrets[node_id_of(k)]), honest=True, pubkey=k
                )
            self.gov = GovScript(
                rng=Random(rng.getrandbits(64)),
                count=cfg.reconfig,
                model={
                    v.pubkey: v.power for v in EpochConfig.from_genesis(self.genesis).validators
                },
                byzantine=frozenset(pubkeys[i] for i in byz_ids),
                spares=spares,
                fresh=[sim_node_pubkey(j) for j in range(cfg.spares, cfg.spares + cfg.reconfig)],
                start_ms=rng.randint(0, cfg.fault_ms // 3),
            )
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
        self.votes: dict[tuple[NodeId, int, int], Digest] = {}
        self.messages = 0
        self.synced_responses = 0
        self.subject_crashes = 0  # SimResult.subject_crashes
        self.catch_up_epochs = 0  # SimResult.catch_up_epochs

    def _add_instance(self, signer: FakeSigner, *, honest: bool, pubkey: bytes) -> None:
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
            pubkey=pubkey,
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
        if self.gov is not None:
            self.push(self.gov.start_ms, "gov", -1, None)
        self.probes = [sim_txs()[_PROBES + k] for k in range(3)]
        self.push(cfg.fault_ms + 50, "submit", -1, self.probes)
        self.push(cfg.fault_ms, "heal", -1, None)

    # --- running --------------------------------------------------------------------------------

    def start_instance(self, inst: _Instance, early: ValidatorSet | None = None) -> None:
        """Start (or restart, or switch, rule 4) `inst`'s replica in the epoch its store is in;
        `early`: Bug.EARLY_EPOCH_SWITCH's set, applied in the current epoch."""
        app = inst.app
        committed = app.committed_header
        high_qc = app.committed_qc()
        switch = app.current_epoch_switch()
        validators, epoch, root_qc = self.validators, 0, None
        if switch is not None:
            epoch, root_qc = switch.config.epoch, switch.root_qc
            validators = make_validator_set(switch.config)
            if committed.block_id == switch.ending.block_id:
                high_qc = root_qc
            self._adopt_rotated_key(inst, switch.config)
        if early is not None:
            validators = early
            high_qc = inst.replica.high_qc if inst.replica is not None else high_qc
        inst.committed_height = committed.height
        inst.epoch = epoch
        if inst.byz is not None:
            inst.byz.validators, inst.byz.epoch = validators, epoch
        inst.replica = Replica(
            config=self.config,
            validators=validators,
            chain_id=SIM_CHAIN_ID,
            signer=inst.signer if inst.signer.node_id in validators else None,
            verifier=self.verifier,
            app=app,
            committed=committed,
            high_qc=high_qc,
            safety=inst.disk,
            now_ms=self.local_now(inst),
            genesis_id=self.genesis_id,
            blocks=app.chain.pending_blocks(),
            epoch=epoch,
            root_qc=root_qc,
            bugs=self.cfg.bugs,
        )
        self.run_step(inst, Start(now_ms=self.local_now(inst)))

    def _adopt_rotated_key(self, inst: _Instance, config: EpochConfig) -> None:
        """Rule 4: a node whose key governance rotated signs with the new key from the first
        epoch that names it (messages to its old id still reach it)."""
        keys = {v.pubkey for v in config.validators}
        rotations = self.gov.rotations if self.gov is not None else {}
        key = inst.pubkey
        while key not in keys and key in rotations:
            key = rotations[key]
        if key != inst.pubkey and key in keys:
            nid = node_id_of(key)
            inst.pubkey, inst.signer = key, FakeSigner(nid, self.secrets[nid])
            self.by_id.setdefault(nid, []).append(inst)

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
            elif kind == "gov":
                self._step_gov(t)
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
        result.epochs = self.epochs.latest
        result.gov_executed = tuple(self.gov.executed) if self.gov is not None else ()
        result.subject_crashes = self.subject_crashes
        result.catch_up_epochs = self.catch_up_epochs
        return result

    def _step_gov(self, t: int) -> None:
        """Rule 4: advance the governance script; maybe crash the node a decision is about."""
        assert self.gov is not None
        txs, subject = self.gov.step(t, self._receipt)
        if txs:
            self.push(t, "submit", -1, txs)
        if subject is not None and "crash" in self.faults and not self.healed:
            for inst in self.instances:
                if inst.pubkey == subject and inst.honest and self.rng.random() < 0.4:
                    self.subject_crashes += 1
                    self.push(t + self.rng.randint(0, 40), "crash", inst.idx, None)
                    self.push(t + self.rng.randint(50, 600), "restart", inst.idx, None)
        if not self.gov.finished:
            self.push(t + 20, "gov", -1, None)

    def _receipt(self, tx_id: bytes) -> Receipt | None:
        for inst in self.instances:
            if inst.honest and inst.app.is_committed_tx(tx_id):
                return inst.app.receipt(tx_id)
        return None

    def _probes_done(self, probe_ids: list[Digest]) -> bool:
        if self.gov is not None and not self.gov.finished:
            return False
        latest = self.epochs.latest
        for inst in self.instances:
            if inst.honest and not all(inst.app.is_committed_tx(p) for p in probe_ids):
                return False
            if inst.honest and (inst.replica is None or inst.epoch != latest):
                return False  # rule 4: every honest node reaches the latest epoch
        return True

    def restart(self, inst: _Instance) -> None:
        if inst.replica is not None:
            return
        # The pool and the chain object are memory (the store is the disk); peers re-gossip
        # what is still pending.
        inst.app.restarted()
        self.catch_up_epochs = max(self.catch_up_epochs, self.epochs.latest - inst.epoch)
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
        inst.switched = False
        for e in effects[:cut]:
            self.execute(inst, e)
        if inst.crash_pending:
            inst.crash_pending = False
            inst.replica = None
        elif inst.switched or inst.early_set is not None:  # rule 4: the next epoch's replica
            early, inst.early_set = inst.early_set, None
            self.start_instance(inst, None if inst.switched else early)

    def execute(self, inst: _Instance, e: Effect) -> None:
        if inst.honest and isinstance(e, Send | Broadcast):
            self.violations += self.epochs.check_outgoing(inst.epoch, e.msg)
        match e:
            case PersistSafety(data=data):
                assert isinstance(data, SafetyData)
                inst.disk = data
                if inst.honest and data.last_vote is not None:
                    v = data.last_vote
                    key = (v.voter, int(v.epoch), int(v.round))
                    prev = self.votes.setdefault(key, v.block_id)
                    if prev != v.block_id:
                        self.violations.append(
                            f"double vote by {v.voter.hex()[:8]} in round {v.round}"
                        )
            case PersistBlock(block=block):
                inst.app.persist_block(block)
                if Bug.EARLY_EPOCH_SWITCH in self.cfg.bugs and self.gov is not None:
                    inst.early_set = self.gov.early_set(block) or inst.early_set
            case Send(to=to, msg=msg):
                for dst in self.by_id.get(to, []):
                    self.transmit(inst, dst, msg)
            case Broadcast(msg=msg):
                for dst in self.instances:
                    if dst.node_id != inst.node_id:
                        self.transmit(inst, dst, msg)
            case Commit(blocks=blocks, proof=proof):
                if inst.switched:
                    return  # rule 4: the old replica's commits past E (the suffix)
                inst.app.apply_commit(blocks, proof, self.local_now(inst))
                head = inst.app.committed_header.height  # E, when the commit ended the epoch
                kept = [b for b in blocks if b.header.height <= head]
                if inst.honest:
                    self.check_commit(inst, kept)
                    self.violations += self.epochs.check_commit([b.header for b in kept], proof.qc)
                inst.committed_height = head
                switch = inst.app.take_epoch_switch()
                if switch is not None:
                    self.violations += self.epochs.on_switch(switch)
                    inst.switched = True

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

    def check_commit(self, inst: _Instance, blocks: Sequence[Block]) -> None:
        for b in blocks:
            h = b.header
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
            for t in b.txs:
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

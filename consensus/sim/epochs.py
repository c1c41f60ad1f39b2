"""Reconfiguration in the simulator: a governance script and the epoch invariants (issue 12).

Rules this module keeps (docs/consensus.md, "Epochs" and "The simulator"):
1. Real governance: every change is a `governance.propose` by the sim account (the admin of the
   sim's only committee organisation, so its one vote decides) followed by its `governance.vote`,
   both SM2-signed transactions through the real contract (contracts/governance.py). One action
   at a time: the vote is submitted once the proposal is committed at some honest node (its id is
   the propose receipt's result), the next action once the vote is committed there.
2. Draws keep the model's assumption in every epoch: the Byzantine nodes' power stays below a
   third of the total (n >= 3f + 1 by power), at least one validator remains. Kinds: a spare node
   joins (`add_validator`, a real SM2 node key with its proof of possession), a validator leaves
   (`remove_validator`), `set_power`, and an honest validator rotates its key
   (`rotate_node_key`: the node signs with the new key from the epoch that names it).
3. The model follows what executed: an action changes it only if its vote's receipt says
   "executed"; a refused or failed one is noted and the script goes on.
4. Invariants (checked by the world, reported as violations):
   a. agreement across epochs: every node that switches to epoch e names the same ending block E
      and the same configuration;
   b. each epoch's QCs are formed by its own set only: every QC an honest node commits with (the
      proof's, and each committed block's justify) has distinct signers of ITS epoch's set with
      a quorum of that set's power; the first block of an epoch is justified by QC(E), of the
      previous epoch, certifying its parent E;
   c. an honest replica of epoch e sends no certificate of another epoch except its root QC(E)
      (proposals' justify, timeouts' and SyncInfos' high QCs, TCs);
   d. (liveness) every honest node reaches the latest epoch, and the script finishes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from random import Random

from gmchain.consensus.messages import ConsensusMessage, SyncInfo
from gmchain.consensus.sim.app import SIM_CHAIN_ID, make_sim_call
from gmchain.consensus.types import EpochStart, Validator, ValidatorSet
from gmchain.crypto_sm import PrivateKey, sm3_hash
from gmchain.ledger.codec import Value
from gmchain.ledger.epoch import EpochConfig
from gmchain.ledger.types import (
    Block,
    BlockHeader,
    Digest,
    GenesisValidator,
    NodeId,
    Proposal,
    QuorumCert,
    Receipt,
    SignedTx,
    TimeoutVote,
    Vote,
)

__all__ = ["EpochInvariants", "GovScript", "sim_node_key", "sim_node_pubkey"]

GOV_NONCE_BASE = 1_000_000  # governance tx nonces: far from the evidence txs' (app.py rule 2)
EXPIRY_HEIGHT = 500_000  # a proposal's expiry height (far beyond any run, within G2's bound)
_ORG = "org-sim"


@functools.cache
def sim_node_key(j: int) -> PrivateKey:
    """Rule 2: the real SM2 node key j of a node that may join (or a key a node rotates to)."""
    return PrivateKey(sm3_hash(b"gmchain-sim-node" + j.to_bytes(2, "big")))


@functools.cache
def sim_node_pubkey(j: int) -> bytes:
    return sim_node_key(j).public_key.to_bytes()


@functools.cache
def _pop(j: int) -> bytes:
    # Imported here: a simulation without governance (reconfig = 0) needs none of it.
    from gmchain.contracts.governance import make_join_request

    pop: bytes = make_join_request(SIM_CHAIN_ID, sim_node_key(j), _ORG)[2]
    return pop


def node_id_of(pubkey: bytes) -> NodeId:
    return GenesisValidator(pubkey=pubkey, power=1, org=_ORG).node_id


@dataclass(slots=True, kw_only=True)
class _Action:
    kind: str
    values: tuple[Value, ...]
    subject: bytes  # the node key the action is about (its current key)
    propose: SignedTx
    vote: SignedTx | None = None
    new_key: bytes | None = None  # rotate_node_key / add_validator: the key that enters


@dataclass(slots=True, kw_only=True)
class GovScript:
    """Rules 1-3. `model`: node key -> power of the latest executed configuration."""

    rng: Random
    count: int  # actions to run
    model: dict[bytes, int]
    byzantine: frozenset[bytes]  # keys of Byzantine nodes (never rotated)
    spares: list[bytes]  # keys of spare nodes that may join (each at most once)
    fresh: list[bytes]  # keys validators may rotate to
    start_ms: int
    current: _Action | None = None
    done_count: int = 0
    next_at_ms: int = 0
    nonce: int = GOV_NONCE_BASE
    notes: list[str] = field(default_factory=list)
    # old key -> new key, from the proposal on (dropped if it does not execute)
    rotations: dict[bytes, bytes] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.next_at_ms = self.start_ms

    @property
    def finished(self) -> bool:
        return self.done_count >= self.count

    def _is_safe(self, model: dict[bytes, int]) -> bool:
        total = sum(model.values())
        byz = sum(p for k, p in model.items() if k in self.byzantine)
        return bool(model) and 3 * byz < total

    def _draw(self) -> _Action | None:
        rng, m = self.rng, self.model
        options: list[tuple[str, tuple[Value, ...], bytes, bytes | None]] = []
        for k in self.spares:
            if self._is_safe({**m, k: 1}):
                options.append(("add_validator", (k, 1, _ORG, _pop(self._index(k))), k, k))
        for k in sorted(m):
            rest = {x: p for x, p in m.items() if x != k}
            if self._is_safe(rest):
                options.append(("remove_validator", (k,), k, None))
            for p in (1, 2, 3):
                if p != m[k] and self._is_safe({**m, k: p}):
                    options.append(("set_power", (k, p), k, None))
            if k not in self.byzantine and self.fresh:
                new = self.fresh[0]
                options.append(("rotate_node_key", (k, new, _pop(self._index(new))), k, new))
        if not options:
            return None
        from gmchain.contracts.governance import propose_args

        kinds = sorted({o[0] for o in options})
        kind = rng.choice(kinds)
        kind, values, subject, new_key = rng.choice([o for o in options if o[0] == kind])
        tx = self._call("propose", propose_args(kind, list(values), EXPIRY_HEIGHT))
        return _Action(kind=kind, values=values, subject=subject, propose=tx, new_key=new_key)

    def _index(self, key: bytes) -> int:
        for j in range(4096):
            if sim_node_pubkey(j) == key:
                return j
        raise AssertionError("not a sim node key")

    def _call(self, method: str, args: Sequence[Value]) -> SignedTx:
        self.nonce += 1
        return make_sim_call(self.nonce, "governance", method, args)

    def step(
        self, now_ms: int, receipt: Callable[[bytes], Receipt | None]
    ) -> tuple[list[SignedTx], bytes | None]:
        """Advance rule 1: (transactions to submit, the key of a node the decision is about when
        the decisive vote goes out, for the world's crash-the-subject scenario)."""
        if self.finished or now_ms < self.next_at_ms:
            return [], None
        act = self.current
        if act is None:
            act = self._draw()
            if act is None:
                self.notes.append("no safe action left")
                self.done_count = self.count
                return [], None
            self.current = act
            if act.kind == "rotate_node_key":
                assert act.new_key is not None
                # Known before the switch that needs it: the world adopts the new key only in
                # an epoch whose configuration names it (world.py rule 4).
                self.rotations[act.subject] = act.new_key
            return [act.propose], None
        if act.vote is None:
            got = receipt(act.propose.tx_id)
            if got is None:
                return [], None
            if not isinstance(got.result, int) or got.error:
                self.notes.append(f"{act.kind} proposal refused: {got.error}")
                self.rotations.pop(act.subject, None)
                self._finish(now_ms)
                return [], None
            from gmchain.contracts.governance import vote_args

            act.vote = self._call("vote", vote_args(got.result, True))
            return [act.vote], act.subject
        got = receipt(act.vote.tx_id)
        if got is None:
            return [], None
        if got.result == "executed":
            self._apply(act)
            self.executed.append(act.kind)
        else:
            self.notes.append(f"{act.kind} vote: {got.result!r} {got.error}")
            self.rotations.pop(act.subject, None)
        self._finish(now_ms)
        return [], None

    def _finish(self, now_ms: int) -> None:
        """The next action right away (back-to-back epochs) or a little later."""
        self.current = None
        self.done_count += 1
        self.next_at_ms = now_ms + self.rng.choice((0, 0, 50, 200))

    def early_set(self, block: Block) -> ValidatorSet | None:
        """Bug.EARLY_EPOCH_SWITCH: the set the current action's decision makes, as soon as a
        block carrying that decision is executed (None for other blocks, and for rotations)."""
        act = self.current
        if act is None or act.vote is None or act.kind == "rotate_node_key":
            return None
        if all(t.tx_id != act.vote.tx_id for t in block.txs):
            return None
        model = dict(self.model)
        self._apply(act, model)
        return ValidatorSet(Validator(node_id=node_id_of(k), power=p) for k, p in model.items())

    def _apply(self, act: _Action, m: dict[bytes, int] | None = None) -> None:
        """Rule 3 on the model (or on a copy `m`, which leaves the script as it is)."""
        real = m is None
        m = self.model if m is None else m
        match act.kind:
            case "add_validator":
                m[act.subject] = 1
                if real:
                    self.spares.remove(act.subject)
            case "remove_validator":
                del m[act.subject]
            case "set_power":
                power = act.values[1]
                assert isinstance(power, int)
                m[act.subject] = power
            case "rotate_node_key":
                assert act.new_key is not None
                m[act.new_key] = m.pop(act.subject)
                if real:
                    self.fresh.remove(act.new_key)


def _qc_signers_ok(qc: QuorumCert, config: EpochConfig) -> bool:
    power = {v.node_id: v.power for v in config.validators}
    ids = [nid for nid, _ in qc.signatures]
    if len(set(ids)) != len(ids) or any(i not in power for i in ids):
        return False
    total = sum(power.values())
    return 3 * sum(power[i] for i in ids) > 2 * total


def _same_target(a: QuorumCert, b: QuorumCert) -> bool:
    return (a.epoch, a.block_id, a.round, a.height) == (b.epoch, b.block_id, b.round, b.height)


class EpochInvariants:
    """Rule 4 a-c; the world calls it and appends what it returns to its violations."""

    def __init__(self, genesis_config: EpochConfig) -> None:
        self.configs: dict[int, EpochConfig] = {0: genesis_config}
        self.endings: dict[int, Digest] = {}  # epoch e+1 -> E's block id
        self.roots: dict[int, QuorumCert] = {}  # epoch e+1 -> QC(E) (first seen)

    @property
    def latest(self) -> int:
        return max(self.configs)

    def on_switch(self, switch: EpochStart) -> list[str]:
        """4a."""
        e = switch.config.epoch
        if e not in self.configs or e not in self.endings:
            self.configs[e] = switch.config
            self.endings[e] = switch.ending.block_id
            self.roots[e] = switch.root_qc
            return []
        if self.configs[e] != switch.config or self.endings[e] != switch.ending.block_id:
            return [f"agreement across epochs: two different starts of epoch {e}"]
        return []

    def check_commit(self, headers: Sequence[BlockHeader], proof_qc: QuorumCert) -> list[str]:
        """4b for a commit's kept blocks and its proof."""
        out = []
        for h in headers:
            qc = h.justify
            if h.height == 1:
                continue  # the genesis QC
            if qc.epoch == h.epoch:
                cfg = self.configs.get(qc.epoch)
            elif qc.epoch + 1 == h.epoch and self.endings.get(h.epoch) == qc.block_id:
                cfg = self.configs.get(qc.epoch)  # the root QC(E): epoch e's
            else:
                out.append(f"epoch {h.epoch} block at {h.height} justified by epoch {qc.epoch}")
                continue
            if cfg is not None and not _qc_signers_ok(qc, cfg):
                out.append(f"a QC of epoch {qc.epoch} not formed by its set (height {qc.height})")
        cfg = self.configs.get(proof_qc.epoch)
        if cfg is not None and not _qc_signers_ok(proof_qc, cfg):
            out.append(f"a commit QC of epoch {proof_qc.epoch} not formed by its set")
        return out

    def check_outgoing(self, epoch: int, msg: ConsensusMessage) -> list[str]:
        """4c for one message an honest replica of `epoch` sends."""
        root = self.roots.get(epoch)

        def ok(qc: QuorumCert) -> bool:
            return qc.epoch == epoch or (root is not None and _same_target(qc, root))

        qcs: list[QuorumCert] = []
        epochs: list[int] = []
        match msg:
            case Proposal():
                epochs.append(msg.block.header.epoch)
                qcs.append(msg.block.header.justify)
                if msg.tc is not None:
                    epochs.append(msg.tc.epoch)
                    qcs.append(msg.tc.high_qc)
            case TimeoutVote():
                epochs.append(msg.epoch)
                qcs.append(msg.high_qc)
            case SyncInfo():
                qcs.append(msg.high_qc)
                if msg.tc is not None:
                    epochs.append(msg.tc.epoch)
                    qcs.append(msg.tc.high_qc)
            case Vote():
                epochs.append(msg.epoch)
            case _:
                return []
        if any(e != epoch for e in epochs) or any(not ok(q) for q in qcs):
            return [f"an honest replica of epoch {epoch} sent a certificate of another epoch"]
        return []

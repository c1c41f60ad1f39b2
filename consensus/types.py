"""Consensus interfaces: validator sets, configuration, the node's protocols, events and effects.

Rules this module keeps:
1. A quorum is voting power strictly greater than 2/3 of the total (Jolteon, Gelashvili et al.,
   FC 2022, section 2: n >= 3f + 1, quorum 2f + 1, generalised to weights).
2. The leader of round r is `sorted_by_node_id[r mod n]` (round robin; DiemBFT v4 section 4.1).
3. Events and effects are frozen, slotted, keyword-only dataclasses; the core never reads a clock,
   so every event that can lead to a proposal or a timer carries the node's `now_ms`.
4. `ConsensusConfig` has no way to carry a planted bug: those live in consensus/mutations.py and
   reach a replica only as `Replica(bugs=...)`, which the simulator and tests alone pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gmchain.consensus.messages import CommitProof, ConsensusMessage
from gmchain.ledger.epoch import EpochConfig
from gmchain.ledger.types import Block, BlockHeader, Digest, NodeId, QuorumCert, Round

__all__ = [
    "App",
    "Broadcast",
    "Commit",
    "ConsensusConfig",
    "Effect",
    "EpochStart",
    "Event",
    "MessageReceived",
    "PeerInLaterEpoch",
    "PersistBlock",
    "PersistSafety",
    "Send",
    "Signer",
    "Start",
    "Tick",
    "Validator",
    "ValidatorSet",
    "Verifier",
    "make_validator_set",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Validator:
    node_id: NodeId
    power: int

    def __post_init__(self) -> None:
        if not (isinstance(self.node_id, bytes) and len(self.node_id) == 20):
            raise ValueError("node_id: expected 20 bytes")
        if not (isinstance(self.power, int) and 1 <= self.power <= 2**32):
            raise ValueError("power: expected an integer in [1, 2**32]")


class ValidatorSet:
    """An immutable set of validators with voting power; quorum is > 2/3 of the total power."""

    __slots__ = ("_by_id", "_order", "quorum_power", "total_power", "validators")

    def __init__(self, validators: Iterable[Validator]) -> None:
        vals = sorted(validators, key=lambda v: v.node_id)
        if not vals:
            raise ValueError("a validator set needs at least one validator")
        ids = [v.node_id for v in vals]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate validator node_id")
        self.validators: tuple[Validator, ...] = tuple(vals)
        self._by_id = {v.node_id: v.power for v in vals}
        self._order = tuple(ids)
        self.total_power = sum(v.power for v in vals)
        # Invariant: quorum_power is the least power strictly above 2/3 of the total.
        self.quorum_power = self.total_power * 2 // 3 + 1

    @property
    def validity_power(self) -> int:
        """More than 1/3 of the power: at least one honest member (timeout amplification)."""
        return self.total_power // 3 + 1

    @property
    def node_ids(self) -> tuple[NodeId, ...]:
        return self._order

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._by_id

    def leader(self, round_: int) -> NodeId:
        return self._order[round_ % len(self._order)]

    def power_of(self, node_id: NodeId) -> int:
        return self._by_id.get(node_id, 0)

    def power_of_all(self, ids: Iterable[NodeId]) -> int:
        return sum(self._by_id.get(i, 0) for i in set(ids))

    def is_quorum(self, ids: Iterable[NodeId]) -> bool:
        return self.power_of_all(ids) >= self.quorum_power


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsensusConfig:
    """Pacemaker and buffer bounds. Integers only (milliseconds, percent)."""

    round_timeout_ms: int = 1000  # base timeout of a round
    timeout_backoff_percent: int = 150  # each backoff step multiplies the timeout by this/100
    max_round_timeout_ms: int = 10_000
    max_future_rounds: int = 100  # messages for rounds beyond current + this are dropped
    max_buffered_msgs: int = 256  # proposals waiting for missing ancestors (total)
    block_request_count: int = 16  # ancestors asked for in one BlockRequest
    sync_batch: int = 64  # committed blocks asked for in one SyncRequest
    committed_window: int = 64  # committed blocks kept in memory to answer BlockRequests
    request_retry_ms: int = 200  # resend an unanswered block/sync request after this long
    # L3: broadcast votes so every replica forms each QC (True), or send them to the next leader
    # only, as DiemBFT v4 does (False). Both are safe; the simulator runs both.
    broadcast_votes: bool = True

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        positive = (
            "round_timeout_ms",
            "max_round_timeout_ms",
            "max_future_rounds",
            "max_buffered_msgs",
            "block_request_count",
            "sync_batch",
            "committed_window",
            "request_retry_ms",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if not 100 <= self.timeout_backoff_percent <= 1000:
            raise ValueError("timeout_backoff_percent: expected 100..1000")
        if self.max_round_timeout_ms < self.round_timeout_ms:
            raise ValueError("max_round_timeout_ms must be >= round_timeout_ms")

    @classmethod
    def minimal(cls, **overrides: object) -> ConsensusConfig:
        """A small preset for tests and the simulator: short timeouts, small buffers."""
        base: dict[str, object] = {
            "round_timeout_ms": 200,
            "max_round_timeout_ms": 1600,
            "max_future_rounds": 20,
            "max_buffered_msgs": 64,
            "block_request_count": 8,
            "sync_batch": 32,
            "committed_window": 16,
            "request_retry_ms": 100,
        }
        base.update(overrides)
        return cls(**base)  # type: ignore[arg-type]

    def compute_timeout_ms(self, backoff: int) -> int:
        """L5: the period after `backoff` steps (consensus/pacemaker.py rules 4-5), capped."""
        t = self.round_timeout_ms
        for _ in range(min(backoff, 32)):
            t = t * self.timeout_backoff_percent // 100
            if t >= self.max_round_timeout_ms:
                return self.max_round_timeout_ms
        return t


# --- the node's side --------------------------------------------------------------------------


class Signer(Protocol):
    node_id: NodeId

    def sign(self, msg: bytes) -> bytes: ...  # msg is a 32-byte signing root; 64-byte result


class Verifier(Protocol):
    def verify(self, node_id: NodeId, msg: bytes, sig: bytes) -> bool: ...


class App(Protocol):
    """The node's mempool and speculative executor. All calls are synchronous and cheap."""

    def has_pending(self) -> bool: ...

    def ready_to_propose(self, now_ms: int) -> bool:
        """The packing policy says "cut a block now". Transactions already included in an
        uncommitted block (built or validated) must not count as pending: the core may commit
        and propose within one step, before the node has applied the Commit effect."""
        ...

    def build_block(
        self,
        *,
        parent: BlockHeader,
        round: Round,
        justify: QuorumCert,
        proposer: NodeId,
        now_ms: int,
    ) -> Block: ...

    def validate_block(self, block: Block, parent: BlockHeader, *, now_ms: int) -> bool:
        """Whether `block` is a valid child of `parent`. `now_ms` is the now of the event being
        stepped (the bound on how far a timestamp may run ahead): the app reads no clock."""
        ...

    def on_pruned(self, block_ids: Sequence[Digest]) -> None: ...

    def get_committed_blocks(
        self, from_height: int, max_count: int
    ) -> Sequence[tuple[Block, CommitProof]]: ...


class EpochStart(Protocol):
    """What the replica of a new epoch is built from (E5): chain/epochs.py's `EpochSwitch`,
    handed over once by the chain after the commit that ended the previous epoch."""

    @property
    def config(self) -> EpochConfig: ...  # the new epoch's configuration (its `epoch` number)

    @property
    def ending(self) -> BlockHeader: ...  # E: the committed block that ended the previous epoch

    @property
    def root_qc(self) -> QuorumCert: ...  # QC(E), of the previous epoch: the new root


def make_validator_set(config: EpochConfig) -> ValidatorSet:
    """The voting set of an epoch's configuration (node ids and powers; organisations do not
    count, ledger/epoch.py rule 3)."""
    return ValidatorSet(Validator(node_id=v.node_id, power=v.power) for v in config.validators)


# --- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Start:
    now_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    now_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageReceived:
    """Any consensus message from a peer (proposal, vote, timeout, or a consensus.messages one)."""

    sender: NodeId
    msg: ConsensusMessage
    now_ms: int


Event = Start | Tick | MessageReceived


# --- effects --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PersistSafety:
    """Fsync `data` before running any later effect of the same list."""

    data: object  # consensus.safety.SafetyData (typed loosely to avoid an import cycle)


@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    to: NodeId
    msg: ConsensusMessage


@dataclass(frozen=True, slots=True, kw_only=True)
class Broadcast:
    msg: ConsensusMessage


@dataclass(frozen=True, slots=True, kw_only=True)
class Commit:
    """Blocks newly committed, oldest first; `proof` certifies the last one (2-chain rule)."""

    blocks: tuple[Block, ...]
    proof: CommitProof


@dataclass(frozen=True, slots=True, kw_only=True)
class PersistBlock:
    """Store this uncommitted block (by id) until it is committed or pruned (App.on_pruned).

    On restart pass the stored blocks back as `Replica(blocks=...)`: a replica whose high QC
    certifies a block only it had (n = 1, or a whole-network crash) can then go on.
    """

    block: Block


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerInLaterEpoch:
    """A peer signed a message of `epoch`, later than ours (E5): we are behind an epoch change.

    The replica has already asked that peer for committed blocks (the sync stops at the block
    that ended our epoch, which the node then commits and switches on); the node counts it and
    may sync by its own means too. Emitted at most once per (peer, epoch)."""

    peer: NodeId
    epoch: int


Effect = PersistSafety | PersistBlock | Send | Broadcast | Commit | PeerInLaterEpoch

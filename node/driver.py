"""The consensus driver: the one thread that steps the replica and runs its effects.

Rules this module keeps (STYLE.md habit 2; etcd raft's `Ready`: persist, then send, then apply):
1. One thread, "consensus", owns the replica and the chain's write side: every `Replica.step`,
   and so every call the replica makes into the chain (build_block, validate_block with its
   signature checks and block execution, commit with its synced batch), runs on it — never on
   the event loop, which stays free to serve RPC and the network. The replica is stepped from
   this thread only, never re-entrantly; a message a node sends to itself is stepped after the
   effects of the step that sent it.
2. Events come in through a thread-safe inbox (`deliver`, `wake`, `call`); a `Tick` is stepped
   at least every `tick_s` (on an idle node and under a stream of messages alike), so the
   pacemaker's timers fire, and at once on `wake`.
3. The effects of one step run in order: persist (PersistSafety, synced; PersistBlock), then
   send, then apply (Commit). Sends and commit notifications are handed to the loop through one
   FIFO (`to_loop`, `loop.call_soon_threadsafe` in a node), so a message leaves after the write
   that allows it, and listeners hear of a commit after its synced batch is written and after
   the messages of the same step were handed over. One fsync per step where possible: SafetyData
   only grows (consensus.safety), so writing the step's newest copy where its first PersistSafety
   stands keeps "persisted before the signature leaves" for every signature of the step; a block
   stored since the last synced write makes the next PersistSafety sync again.
4. Fail-stop (node/service.py rule 5): an exception in a step or its effects stops the driver
   for good — it steps nothing more, drops its inbox — and is handed to `on_fail` on the loop.
5. What the loop may read of the replica is `view`, a frozen snapshot replaced (one reference
   store, atomic) after every step; the loop never touches the replica itself.
6. Epochs (docs/consensus.md "Epochs", E4/E5): after each Commit the chain is asked whether that
   commit ended the epoch (`take_epoch_switch`). If it did, the driver builds the next epoch's
   replica (`make_replica`, from the new configuration, E's header and QC(E)), drops the old one
   — the rest of its step's effects still run except its commits (the chain ended the epoch at
   E; anything the old replica commits after is a suffix block, dropped) — and steps `Start` on
   the new one before anything else. `on_epoch(config)` is then called on the loop (the P2P
   layer admits the new epoch's validators and observers: node/network.py; a no-op when not
   wired). `PeerInLaterEpoch` is counted (`later_epoch_reports`); the replica already asked
   that peer for the committed blocks that take us to the epoch end.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from gmchain.chain.core import Chain, CommittedBlock
from gmchain.consensus import (
    Broadcast,
    Commit,
    ConsensusConfig,
    Effect,
    Event,
    MessageReceived,
    PersistBlock,
    PersistSafety,
    Replica,
    Send,
    Start,
    Tick,
)
from gmchain.consensus.messages import ConsensusMessage, SyncInfo
from gmchain.consensus.types import EpochStart, PeerInLaterEpoch
from gmchain.ledger.epoch import EpochConfig
from gmchain.ledger.store import Store
from gmchain.ledger.types import NodeId
from gmchain.node.safetystore import save_safety
from gmchain.node.transport import Transport

__all__ = ["ConsensusDriver", "ReplicaView", "compute_epoch_consensus_config"]

log = logging.getLogger("gmchain.node")

THREAD_NAME = "consensus"


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """Rule 5: what the loop may know of the replica, as of the end of its last step."""

    round: int = 0
    lag: int = 0  # consensus L10: committed blocks a verified certificate shows we lack
    heard_status: bool = False  # a peer's certificates verified at least once (L10)
    epoch: int = 0  # the epoch the replica runs (rule 6)
    dropped_other_epoch: int = 0  # messages of other epochs this epoch's replica dropped (E5)
    timed_out_round: int = 0  # the last round this replica signed a timeout in (0: none yet)


def compute_epoch_consensus_config(base: ConsensusConfig, config: EpochConfig) -> ConsensusConfig:
    """E11: the chain parameters of an epoch take effect at its start. Epoch 0 keeps the node's
    configured timeouts (the genesis document names none; its params are the defaults); from
    epoch 1 on, `round_timeout_ms` is the epoch's (max_round_timeout_ms raised to at least it)."""
    if config.epoch == 0:
        return base
    timeout = config.param("round_timeout_ms")
    return replace(
        base,
        round_timeout_ms=timeout,
        max_round_timeout_ms=max(base.max_round_timeout_ms, timeout),
    )


class _Stop:
    """The inbox item that ends the thread."""


class _Wake:
    """The inbox item that asks for a Tick now (new transactions in the pool)."""


_STOP = _Stop()
_WAKE = _Wake()
_Item = Event | Callable[[], None] | _Stop | _Wake


class ConsensusDriver:
    """Steps `replica` on its own thread; see the module rules."""

    def __init__(
        self,
        *,
        replica: Replica,
        chain: Chain,
        store: Store,
        transport: Transport,
        node_id: NodeId,
        clock_ms: Callable[[], int],
        to_loop: Callable[..., None],
        on_commit: Callable[[list[CommittedBlock]], None],
        on_fail: Callable[[str, BaseException], None],
        on_stepped: Callable[[ReplicaView], None] = lambda _v: None,
        tick_s: float = 0.01,
        take_epoch_switch: Callable[[], EpochStart | None] = lambda: None,
        make_replica: Callable[[EpochStart], Replica] | None = None,
        on_epoch: Callable[[EpochConfig], None] = lambda _c: None,
    ) -> None:
        # Owned by the consensus thread (rule 1): others read `view`; tests may inspect it.
        self.replica = replica
        self._chain = chain
        self.store = store  # (public: a test records the writes through a proxy)
        self.transport = transport
        self._node_id = node_id
        self._clock_ms = clock_ms
        self._to_loop = to_loop  # rule 3: runs a callable on the loop, in FIFO order
        self._on_commit = on_commit
        self._on_fail = on_fail
        self._on_stepped = on_stepped
        self._tick_s = tick_s
        # Rule 6: the chain's hand-over of an epoch switch, the next replica's builder, the hook.
        self._take_epoch_switch = take_epoch_switch
        self._make_replica = make_replica
        self._on_epoch = on_epoch
        self.later_epoch_reports = 0  # PeerInLaterEpoch effects seen (rule 6)
        self.later_epoch = 0  # the highest epoch they named (read by the loop for /metrics)
        self._inbox: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._local: deque[Event] = deque()  # self-addressed messages of the current drain
        self._thread: threading.Thread | None = None
        self._halted = threading.Event()  # rule 4 (or stopped): nothing is stepped any more
        self.view = ReplicaView()

    # --- the loop's side ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread; its first step is `Start`, before anything already in the inbox
        (a peer's message may arrive between the transport's start and the node's)."""
        assert self._thread is None
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def deliver(self, sender: NodeId, msg: ConsensusMessage) -> None:
        """A consensus message from a peer (already decoded and size-checked)."""
        self._inbox.put(MessageReceived(sender=sender, msg=msg, now_ms=self._clock_ms()))

    def wake(self) -> None:
        """Step a Tick soon (the pool gained transactions: a leader may propose now)."""
        self._inbox.put(_WAKE)

    def call(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the consensus thread between two steps (for state that thread owns)."""
        self._inbox.put(fn)

    def send_status(self, to: NodeId | None) -> None:
        """Our certificates (consensus L9, L10) to one peer, or to all (`to` None)."""
        self.call(lambda: self._send_sync_info(to))

    def halt(self) -> None:
        """Rule 4 from outside (a read found the store damaged): step nothing more."""
        self._halted.set()

    def stop(self) -> None:
        """End the thread after the step it is in (blocking: call it off the loop)."""
        self._halted.set()
        self._inbox.put(_STOP)
        if self._thread is not None:
            self._thread.join()

    @property
    def thread_id(self) -> int | None:
        """The consensus thread's identity (None before `start`)."""
        return None if self._thread is None else self._thread.ident

    # --- the consensus thread -------------------------------------------------------------------

    def _run(self) -> None:
        item: _Item = Start(now_ms=self._clock_ms())
        next_tick = time.monotonic() + self._tick_s
        while True:
            if isinstance(item, _Stop):
                return
            if not self._halted.is_set():  # (halted: drain without stepping until the stop)
                self._handle(item)
                if isinstance(item, _Wake) or time.monotonic() >= next_tick:
                    if not isinstance(item, _Wake):
                        self._handle(_WAKE)  # rule 2: a busy inbox does not starve the timers
                    next_tick = time.monotonic() + self._tick_s
            try:
                item = self._inbox.get(timeout=max(0.0, next_tick - time.monotonic()))
            except queue.Empty:
                item = _WAKE

    def _handle(self, item: _Item) -> None:
        try:
            if isinstance(item, _Wake):
                self._drain(Tick(now_ms=self._clock_ms()))
            elif callable(item):
                item()
            else:
                assert not isinstance(item, _Stop)
                self._drain(item)
        except Exception as exc:  # rule 4
            self._halted.set()
            self._local.clear()
            self._to_loop(self._on_fail, "a consensus step (or a store write it made)", exc)

    def _drain(self, event: Event) -> None:
        """Step `event`, then every self-addressed message its effects produced (rule 1)."""
        self._local.append(event)
        while self._local:
            self.run_effects(self.replica.step(self._local.popleft()))
        r = self.replica
        self.view = ReplicaView(
            round=int(r.round),
            lag=r.lag,
            heard_status=r.heard_status,
            epoch=r.epoch,
            dropped_other_epoch=r.gate.dropped,
            timed_out_round=int(r.state.timed_out_round),
        )
        self._on_stepped(self.view)

    def _send_sync_info(self, to: NodeId | None) -> None:
        info: SyncInfo = self.replica.get_sync_info()
        if to is None:
            self._to_loop(self.transport.broadcast, info)
        else:
            self._to_loop(self.transport.send, to, info)

    def run_effects(self, effects: Sequence[Effect]) -> None:
        """Rule 3 (public for the rule's own test)."""
        newest = next((e for e in reversed(effects) if isinstance(e, PersistSafety)), None)
        synced = False
        block_since_sync = False
        switched = False  # rule 6: this step's commit ended the epoch
        for eff in effects:
            match eff:
                case PersistSafety():
                    if newest is not None and (not synced or block_since_sync):
                        save_safety(self.store, newest.data)
                        synced, block_since_sync = True, False
                case Send(to=to, msg=msg):
                    if to == self._node_id:
                        self._local.append(
                            MessageReceived(sender=self._node_id, msg=msg, now_ms=self._clock_ms())
                        )
                    else:
                        self._to_loop(self.transport.send, to, msg)
                case Broadcast(msg=msg):
                    self._to_loop(self.transport.broadcast, msg)
                case PersistBlock(block=block):
                    self._chain.persist_block(block)
                    block_since_sync = True
                case Commit(blocks=blocks, proof=proof):
                    if switched:
                        continue  # rule 6: past E, the old epoch's replica commits suffix blocks
                    done = self._chain.commit(blocks, proof)
                    if done:
                        self._to_loop(self._on_commit, done)
                    switch = self._take_epoch_switch()
                    if switch is not None:
                        self._switch_epoch(switch)
                        switched = True
                case PeerInLaterEpoch(epoch=epoch):
                    self.later_epoch_reports += 1
                    self.later_epoch = max(self.later_epoch, epoch)  # gmchain_epoch_behind
                case _:
                    raise AssertionError(f"unknown effect {eff!r}")

    def _switch_epoch(self, switch: EpochStart) -> None:
        """Rule 6: the next epoch's replica replaces the old one; its Start is stepped first."""
        if self._make_replica is None:
            raise AssertionError(
                f"epoch {switch.config.epoch} started at height {switch.ending.height + 1}, "
                "but this driver was built without make_replica"
            )
        self.replica = self._make_replica(switch)
        self._local.clear()  # the old replica's messages to itself: of the old epoch
        self._local.append(Start(now_ms=self._clock_ms()))
        log.info(
            "epoch %d starts after height %d: %d validators",
            switch.config.epoch,
            switch.ending.height,
            len(switch.config.validators),
        )
        self._to_loop(self._on_epoch, switch.config)

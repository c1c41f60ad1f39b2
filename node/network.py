"""Multi-node wiring: consensus messages and transaction gossip over the authenticated transport.

Rules this module keeps:
1. Every payload on the wire is one canonical struct (`ledger.codec`): a consensus message
   or a `TxBatch` (tags registered in ledger.wire.Tag; `_WIRE` lists those a peer may send). A
   payload that does not decode, or has a tag we do not accept from peers, is the peer's fault:
   the transport disconnects and bans it (`report_misbehaviour`) and nothing else changes.
2. Transactions admitted through this node's RPC are gossiped once, in batches (flushed every
   `GOSSIP_FLUSH_S` or at `GOSSIP_BATCH` txs), to every connected peer; the network is a full mesh
   of admitted nodes, so there is no re-gossip. Receivers admit them through the same checks as
   RPC (signature verified once, cached; duplicates are normal and silently skipped).
3. Every container fits the wire (docs/protocol.md, "Nesting depth" and "Message size"): the
   decoder allows the deepest of the accepted structs' NESTING, so a proposal, block or sync
   response carries every transaction admission accepts; a leader's block holds at most
   MAX_BLOCK_TX_BYTES of transactions (chain/core.py), a gossip batch is cut by bytes as well as
   by count, and a block or sync response larger than one message is cut to the blocks that fit
   (the requester fetches the rest: consensus/retrieval.py falls back to committed sync for a
   short block answer, and its repair tick asks again after a short sync answer). So an honest
   node never sends what a peer refuses.
4. Proposals carry whole transactions, not ids: on a LAN full mesh every replica already holds
   (and has verified) almost all of them, so validation skips the signature checks through the
   verify-once cache, and there is no fetch-on-miss round trip that a leader could abuse to
   stall a round. The cost is bandwidth (~350 B per tx per replica), cheap at our rates.
4. Every session starts with the node's certificates (a `SyncInfo`, consensus L9/L10), and every
   `sync_status_interval_ms` they go to all peers: a node behind on an idle chain learns the
   verified committed height of its peers and syncs, with no transaction needed to wake it.
5. Admission follows the epoch (issue 12, E9; node/peeradmission.py): the transport admits the
   current epoch's validators and observers; `on_epoch(config)` (the Transport port's hook, run
   when an epoch-ending block commits) admits the new epoch's set, disconnects and refuses the
   nodes it drops, and checks equivocation against the new validators' keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gmchain.chain.validators import GenesisValidators
from gmchain.consensus.equivocation import EquivocationDetector
from gmchain.consensus.messages import (
    MAX_MESSAGE_ARRAY,
    MAX_MESSAGE_BYTES,
    BlockRequest,
    BlockResponse,
    SyncInfo,
    SyncRequest,
    SyncResponse,
)
from gmchain.crypto_sm import PrivateKey, PublicKey
from gmchain.ledger.codec import DecodeError, Limits, decode
from gmchain.ledger.epoch import EpochConfig
from gmchain.ledger.struct_codec import Struct, max_items, wire_struct
from gmchain.ledger.types import (
    MAX_TX_BYTES,
    Genesis,
    NodeId,
    Proposal,
    SignedTx,
    TimeoutVote,
    Vote,
)
from gmchain.ledger.wire import Tag
from gmchain.node.api import ApiError
from gmchain.node.config import NodeConfig, PeerConfig
from gmchain.node.peeradmission import PeerAdmission
from gmchain.node.service import KeyVerifier
from gmchain.p2p import P2PConfig, P2PNetwork

__all__ = [
    "GOSSIP_BATCH",
    "WIRE_LIMITS",
    "NetworkBridge",
    "P2PCollector",
    "PeerNode",
    "TxBatch",
    "decode_wire",
    "make_network",
]

log = logging.getLogger("gmchain.network")

GOSSIP_BATCH = 512
GOSSIP_FLUSH_S = 0.005
MAX_GOSSIP_TASKS = 64  # gossip batches being admitted at once; beyond, batches are shed
REGOSSIP_AFTER_S = 3.0  # a tx still pending this long is offered to the peers again
REGOSSIP_MAX = 2048  # at most this many re-offered per period (oldest first)
MAX_BATCH_TXS = 4 * GOSSIP_BATCH  # a peer's TxBatch holds at most this many


@wire_struct
@dataclass(frozen=True, slots=True, kw_only=True)
class TxBatch(Struct):
    """Raw transactions gossiped together (each exactly as the client signed it)."""

    TAG: ClassVar[Tag] = Tag.TX_BATCH
    # each raw tx is decoded on its own, by admission
    txs: tuple[bytes, ...] = field(metadata=max_items(MAX_BATCH_TXS))

    def __post_init__(self) -> None:
        if not isinstance(self.txs, tuple | list) or len(self.txs) > MAX_BATCH_TXS:
            raise ValueError(f"txs: expected at most {MAX_BATCH_TXS} raw transactions")
        for t in self.txs:
            if not isinstance(t, bytes) or len(t) > MAX_TX_BYTES:
                raise ValueError("txs: each must be bytes of at most MAX_TX_BYTES")
        object.__setattr__(self, "txs", tuple(self.txs))


_WIRE: dict[int, type[Struct]] = {
    cls.TAG: cls
    for cls in (
        Proposal,
        Vote,
        TimeoutVote,
        BlockRequest,
        BlockResponse,
        SyncRequest,
        SyncResponse,
        SyncInfo,
        TxBatch,
    )
}


# Rule 3: the depth is the deepest accepted struct's NESTING; each struct's own shape and value
# checks then hold its parts to theirs (a Vote cannot smuggle a deep value in).
WIRE_LIMITS = Limits(
    max_size=MAX_MESSAGE_BYTES,
    max_bin=MAX_MESSAGE_BYTES,
    max_array=MAX_MESSAGE_ARRAY,
    max_depth=max(cls.NESTING for cls in _WIRE.values()),
)
_BATCH_BYTES = MAX_MESSAGE_BYTES - 64  # a gossip batch's raw txs (+5 bytes of bin header each)


def decode_wire(payload: bytes) -> Struct:
    """Decode one wire payload into its struct; DecodeError on anything else."""
    value = decode(payload, WIRE_LIMITS)
    if not isinstance(value, list) or not value or not isinstance(value[0], int):
        raise DecodeError("wire payload: expected a tagged struct")
    cls = _WIRE.get(value[0])
    if cls is None or isinstance(value[0], bool):
        raise DecodeError(f"wire payload: tag {value[0]!r} is not accepted from peers")
    return cls.from_fields(value)


class P2PCollector(Collector):
    """The transport's counters (`P2PNetwork.stats`) on the node's /metrics, read at scrape
    time; refusals and disconnects by reason (issue 10, fault 8: counted, not logged each)."""

    _BY_REASON = (
        ("handshake_refusals", "Inbound handshakes refused before authentication"),
        ("rejects", "Protocol violations and refusals (before and after authentication)"),
        ("disconnects", "Sessions closed"),
    )
    _TOTALS = (
        ("handshakes_ok", "Handshakes completed"),
        ("handshakes_failed", "Handshakes failed (inbound and outbound)"),
        ("dial_failures", "Outbound dials that failed"),
        ("send_dropped", "Messages dropped because a peer's queue was full"),
        ("rate_limited", "Inbound frames delayed by a peer's rate limit"),
        ("bans", "Bans issued"),
    )

    def __init__(self, net: P2PNetwork) -> None:
        self._net = net

    def collect(self) -> Iterator[Metric]:
        stats = self._net.stats
        for key, text in self._BY_REASON:
            family = CounterMetricFamily(
                f"gmchain_p2p_{key}", f"{text}, by reason", labels=["reason"]
            )
            for reason, n in sorted(stats[key].items()):
                family.add_metric([reason], n)
            yield family
        for key, text in self._TOTALS:
            yield CounterMetricFamily(f"gmchain_p2p_{key}", text, value=stats[key])
        pending = GaugeMetricFamily(
            "gmchain_p2p_pending_handshakes",
            "Unauthenticated inbound connections now, by pool (admitted peers' hosts, strangers)",
            labels=["pool"],
        )
        for pool, n in sorted(stats["pending_handshakes"].items()):
            pending.add_metric([pool], n)
        yield pending
        yield GaugeMetricFamily("gmchain_p2p_banned", "Nodes banned now", value=stats["banned_now"])
        yield GaugeMetricFamily(
            "gmchain_p2p_admitted",
            "Other nodes admitted now: the current epoch's validators and observers (E9)",
            value=stats.get("admitted", 0),
        )


class PeerNode(Protocol):
    """What the network asks of the node it serves (node/service.py NodeService has it)."""

    def deliver(self, sender: NodeId, msg: Any) -> None: ...

    async def admit_many(
        self, items: Sequence[tuple[SignedTx, bytes]], *, gossip: bool = True
    ) -> list[ApiError | None]: ...

    def send_status(self, to: NodeId | None) -> None: ...

    def pending_txs(self, max_count: int) -> list[SignedTx]: ...

    def is_pending(self, tx_id: bytes) -> bool: ...

    def register_metrics(self, collector: Collector) -> None: ...


class NetworkBridge:
    """The node's transport port over a P2PNetwork (node/transport.py `Transport`), and the
    inbound side that hands peers' messages to the node it is started with."""

    def __init__(
        self,
        net_factory: Any,
        *,
        genesis: Genesis,
        sync_status_interval_ms: int,
        regossip_after_s: float = REGOSSIP_AFTER_S,
        admission: PeerAdmission | None = None,
    ) -> None:
        self._net_factory = net_factory
        # Rule 5: the admitted set and address book (None: the factory's network admits a
        # fixed set, as in tests that record what is sent).
        self.admission = admission
        self.regossip_after_s = regossip_after_s
        self._status_period = sync_status_interval_ms / 1000
        self.net: P2PNetwork | None = None  # made at `start`, with the node to deliver to
        self._node: PeerNode | None = None
        self._outbox: list[bytes] = []
        self._flush_task: asyncio.Task[None] | None = None
        self._regossip_task: asyncio.Task[None] | None = None
        self._status_task: asyncio.Task[None] | None = None
        self._seen_pending: dict[bytes, float] = {}  # tx id -> when last offered to peers
        self._closing = False
        self._gossip_tasks = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = {
            "bad_payloads": 0,
            "gossip_shed": 0,
            "regossip": 0,
            "equivocations": 0,
            "gossip_in": 0,
            "gossip_out": 0,
            "gossip_rejected": 0,
            "unservable_replies": 0,
        }
        # the set this node starts with: its epoch's validators (rule 5), else genesis's
        voters = (
            admission.config.validators
            if admission is not None
            else GenesisValidators(genesis).validators_at(0)
        )
        keys = [PublicKey.from_bytes(v.pubkey) for v in voters]
        self.detector = EquivocationDetector(chain_id=genesis.chain_id, verifier=KeyVerifier(keys))

    async def start(self, node: PeerNode) -> None:
        """Connect: peers' messages go to `node` from now on."""
        self._node = node
        self.net = self._net_factory(self._on_message)
        if self.admission is not None:
            self.admission.bind(self.net)
        node.register_metrics(P2PCollector(self.net))
        await self.net.start()
        loop = asyncio.get_running_loop()
        self._flush_task = loop.create_task(self._flush_loop())
        self._regossip_task = loop.create_task(self._regossip_loop())
        self._status_task = loop.create_task(self._status_loop())

    async def stop(self) -> None:
        self._closing = True
        for t in list(self._tasks):
            t.cancel()
        for task in (self._flush_task, self._regossip_task, self._status_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.net is not None:
            await self.net.stop()

    # --- the Transport port (node/transport.py) ---------------------------------------------------

    @property
    def has_peers(self) -> bool:
        return True

    def peer_count(self) -> int:
        return 0 if self.net is None else len(self.net.connected_peers())

    def connected_peers(self) -> list[NodeId]:
        return [] if self.net is None else [NodeId(p) for p in self.net.connected_peers()]

    def send(self, to: NodeId, msg: Any) -> None:
        self._send(to, msg)

    def broadcast(self, msg: Any) -> None:
        self._send(None, msg)

    def gossip(self, raw: bytes) -> None:
        self._outbox.append(raw)

    def on_epoch(self, config: EpochConfig) -> None:
        """Rule 5: the node switched to epoch `config.epoch` (its ending block committed)."""
        if self.admission is not None and not self.admission.on_epoch(config):
            return  # not a later epoch than the one admitted
        keys = [PublicKey.from_bytes(v.pubkey) for v in config.validators]
        self.detector.verifier = KeyVerifier(keys)

    # --- admission (rule 5) ---------------------------------------------------------------------

    def set_admitted(
        self, keys: frozenset[bytes], peers: Sequence[PeerConfig] | None = None
    ) -> None:
        """Admit exactly the node keys `keys` (with `peers` as the address book when given)."""
        if self.admission is None:
            raise RuntimeError("this bridge was made without a PeerAdmission")
        self.admission.set_admitted(keys, peers)

    # --- outbound -------------------------------------------------------------------------------

    def _send(self, to: NodeId | None, msg: Any) -> None:
        payload = msg.encode()
        if len(payload) > MAX_MESSAGE_BYTES and isinstance(msg, BlockResponse | SyncResponse):
            cut = _cut_to_fit(msg)
            if cut is None:
                # A reply to a peer never stops this node: a committed block that no carrier
                # fits (only a block from before the byte rule of chain/core.py) is not served.
                self.stats["unservable_replies"] += 1
                log.warning(
                    "not answering %s: one block does not fit a message", type(msg).__name__
                )
                return
            payload = cut
        # (anything else too large is our bug: P2PNetwork raises, and the node stops loudly)
        if self.net is None:
            return  # not started: no session exists to carry it
        if to is None:
            self.net.broadcast(payload)
        else:
            self.net.send(to, payload)

    def on_peer_up(self, peer: bytes) -> None:
        """Rule 4: a new session starts with our certificates, so a peer that restarted behind
        us on an idle chain learns our committed height at once (consensus L10)."""
        if self._node is not None:
            self._node.send_status(NodeId(peer))

    async def _status_loop(self) -> None:
        """Rule 4, periodically: a session may outlive a message lost before it was sent."""
        assert self._node is not None
        while not self._closing:
            await asyncio.sleep(self._status_period)
            self._node.send_status(None)

    async def _regossip_loop(self) -> None:
        """Offer long-pending txs to the peers again: gossip sent once can be lost (a partition,
        a peer restarting), and a tx held by one non-leader replica alone would never commit
        while the others sit idle (simulator, seed 10006)."""
        loop = asyncio.get_running_loop()
        node = self._node
        assert node is not None
        while not self._closing:
            await asyncio.sleep(self.regossip_after_s)
            now = loop.time()
            again: list[bytes] = []
            for tx in node.pending_txs(REGOSSIP_MAX):
                first = self._seen_pending.setdefault(tx.tx_id, now)
                if now - first >= self.regossip_after_s:
                    again.append(tx.encode())
                    self._seen_pending[tx.tx_id] = now
            if len(self._seen_pending) > 4 * REGOSSIP_MAX:
                self._seen_pending = {
                    t: v for t, v in self._seen_pending.items() if node.is_pending(t)
                }
            self._outbox.extend(again)
            self.stats["regossip"] += len(again)

    async def _flush_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(GOSSIP_FLUSH_S)
            while self._outbox:
                n, size = 0, 0
                for raw in self._outbox[:GOSSIP_BATCH]:
                    if n and size + len(raw) + 5 > _BATCH_BYTES:
                        break  # rule 3: a batch of large txs is cut by bytes
                    n, size = n + 1, size + len(raw) + 5
                batch, self._outbox = self._outbox[:n], self._outbox[n:]
                assert self.net is not None
                self.net.broadcast(TxBatch(txs=tuple(batch)).encode())
                self.stats["gossip_out"] += len(batch)

    # --- inbound --------------------------------------------------------------------------------

    async def _on_message(self, sender: bytes, payload: bytes) -> None:
        assert self.net is not None and self._node is not None
        try:
            msg = decode_wire(payload)
        except DecodeError as exc:
            self.stats["bad_payloads"] += 1
            self.net.report_misbehaviour(sender, f"undecodable payload: {exc}")
            return
        if isinstance(msg, TxBatch):
            # Never let gossip hold up the peer's read loop: consensus messages from the same
            # peer queue behind it on the one TCP stream (the cluster4 stall under load).
            if self._gossip_tasks >= MAX_GOSSIP_TASKS:
                self.stats["gossip_shed"] += len(msg.txs)  # the origin still has them
                return
            self._gossip_tasks += 1
            task = asyncio.get_running_loop().create_task(self._on_txs(sender, msg))
            self._tasks.add(task)
            task.add_done_callback(self._gossip_done)
            return
        why = self.detector.check(sender, msg)
        if why is not None:
            self.stats["equivocations"] += 1
            # Proof of misbehaviour: an honest replica persists its last voted and last proposed
            # rounds before a vote or proposal leaves (consensus.safety S1, P2), so even after a
            # crash it never signs two different ones for one round.
            log.warning("peer %s misbehaved: %s", sender.hex()[:12], why)
            self.net.report_misbehaviour(sender, why)
            return
        try:
            self._node.deliver(NodeId(sender), msg)
        except Exception:
            log.exception("consensus failed on a message from %s", sender.hex()[:12])
            raise

    def _gossip_done(self, task: asyncio.Task[None]) -> None:
        self._gossip_tasks -= 1
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("gossip batch failed", exc_info=task.exception())

    async def _on_txs(self, sender: bytes, batch: TxBatch) -> None:
        assert self.net is not None and self._node is not None
        bad = 0
        txs = []
        for raw in batch.txs:
            self.stats["gossip_in"] += 1
            try:
                txs.append((SignedTx.decode_tx(raw), raw))
            except DecodeError:
                bad += 1
        # durable (the default): gossiped txs go into this node's pool log too, so they survive
        # a crash of this node as well as of their origin (one group fsync per batch).
        results = await self._node.admit_many(txs, gossip=False)
        self.stats["gossip_rejected"] += sum(r is not None for r in results)
        if bad:
            self.stats["bad_payloads"] += 1
            self.net.report_misbehaviour(sender, f"{bad} undecodable transactions in a batch")


def _cut_to_fit(msg: BlockResponse | SyncResponse) -> bytes | None:
    """The encoding of the longest prefix of `msg`'s blocks that fits one message (rule 3);
    None if not even its first block fits.

    One block always fits (chain/core.py bounds a block by MAX_BLOCK_TX_BYTES); the requester
    fetches the rest from where the answer stopped (rule 3). Each part
    is encoded once to learn its size (64 bytes cover the response's own array headers)."""
    budget = MAX_MESSAGE_BYTES - 64
    cut: BlockResponse | SyncResponse
    if isinstance(msg, BlockResponse):
        n = _prefix_that_fits([len(b.encode()) for b in msg.blocks], budget)
        cut = BlockResponse(block_id=msg.block_id, blocks=msg.blocks[:n])
    else:
        sizes = [len(b.encode()) + len(p.encode()) + 1 for b, p in msg.items]
        cut = SyncResponse(items=msg.items[: _prefix_that_fits(sizes, budget)])
    payload = cut.encode()
    return payload if len(payload) <= MAX_MESSAGE_BYTES else None


def _prefix_that_fits(sizes: Sequence[int], budget: int) -> int:
    """How many leading parts fit `budget` bytes (at least one: it always fits, see above)."""
    total = 0
    for i, size in enumerate(sizes):
        total += size
        if total > budget:
            return max(1, i)
    return len(sizes)


def make_network(
    cfg: NodeConfig,
    genesis: Genesis,
    key: PrivateKey,
    *,
    epoch: EpochConfig | None = None,
    reload_peers: Callable[[], Sequence[PeerConfig]] | None = None,
) -> NetworkBridge:
    """The transport of a node with peers: a NetworkBridge over the real P2PNetwork (started
    with the node: `await bridge.start(service)`). It admits `epoch`'s nodes (the epoch the node
    starts in; default epoch 0 from genesis) and dials those of `cfg.peers`; `reload_peers`
    reads the peers again at each epoch switch (node/peeradmission.py rule 2)."""
    admission = PeerAdmission(
        config=epoch if epoch is not None else EpochConfig.from_genesis(genesis),
        peers=cfg.peers,
        reload_peers=reload_peers,
        own_key=key.public_key.to_bytes(),
    )
    bridges: list[NetworkBridge] = []  # the bridge below; sessions start only after it exists

    def factory(on_message: Any) -> P2PNetwork:
        return P2PNetwork(
            chain_id=genesis.chain_id,
            key=key,
            peers=admission.address_book,
            admitted=admission.keys,
            genesis_hash=genesis.compute_hash(),
            config=P2PConfig(
                listen_host=cfg.p2p_host,
                listen_port=cfg.p2p_port,
                max_pending_handshakes=cfg.p2p_pending_handshakes,
                max_pending_per_address=cfg.p2p_pending_per_address,
                hello_timeout_s=cfg.p2p_hello_timeout_ms / 1000,
                max_frame=MAX_MESSAGE_BYTES,
                handshake_rate_per_address=cfg.p2p_handshake_rate_per_address,
                handshake_rate_strangers=cfg.p2p_handshake_rate_strangers,
                handshake_threads=cfg.p2p_handshake_threads,
            ),
            on_message=on_message,
            on_peer_up=lambda peer: bridges[0].on_peer_up(peer),
        )

    bridge = NetworkBridge(
        factory,
        genesis=genesis,
        sync_status_interval_ms=cfg.sync_status_interval_ms,
        admission=admission,
    )
    bridges.append(bridge)
    return bridge

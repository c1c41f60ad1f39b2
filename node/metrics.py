"""The node's Prometheus metrics (served at /metrics; docs/ops.md "Metrics" lists each one).

Rules this module keeps:
1. One registry per node (a process may run several nodes, e.g. in tests), holding the node's
   own metrics and the process collector (RSS, CPU, open descriptors, start time).
2. What an operator alerts on is exported as a plain number: `gmchain_catching_up` (0/1),
   `gmchain_sync_lag_blocks`, `gmchain_last_block_timestamp_seconds`,
   `gmchain_round_timeouts_total`, `gmchain_failed_receipts_total{status}`,
   `gmchain_disk_free_bytes`, `gmchain_validator_peers` against `gmchain_quorum_peers`; who the
   node is comes as info metrics with value 1 (`gmchain_node_info{name,...}`,
   `gmchain_build_info{version,commit,python,openssl,...}`), joined in queries on `instance`.
3. Values that are cheap to read are read at scrape time (node/service.py `metrics_text`);
   counters are incremented where the event happens.
4. Epoch metrics (issue 12, docs/governance.md "Metrics"): `gmchain_epoch` is the epoch of the
   next block to commit (gm_getEpoch's `epoch`); `gmchain_epoch_behind` is 1 while a peer has
   shown a certificate of a later epoch than ours (stuck in an old epoch until it syncs across
   the change); `gmchain_governance_proposals{status}` counts the governance contract's
   proposals by status, read from committed state at a scrape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
)

from gmchain.consensus import ValidatorSet
from gmchain.ledger.types import NodeId, Receipt, ReceiptStatus
from gmchain.node.buildinfo import BuildInfo, get_build_info

__all__ = [
    "BuildInfo",
    "NodeMetrics",
    "compute_quorum_peers",
    "get_build_info",
    "refresh_scrape_metrics",
]


class NodeMetrics:
    """Every metric of one node, in its own registry (rule 1)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        GCCollector(registry=r)  # docs/ops.md "The garbage collector"
        self.height = Gauge("gmchain_block_height", "Committed block height", registry=r)
        self.committed = Counter("gmchain_committed_txs", "Committed transactions", registry=r)
        self.pool = Gauge("gmchain_pool_size", "Pending transactions in the pool", registry=r)
        self.rejected = Counter(
            "gmchain_rejected_txs", "Transactions refused at admission", ["reason"], registry=r
        )
        self.latency = Histogram(
            "gmchain_commit_latency_seconds",
            "Receipt to commit, per transaction received at this node (admission included)",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.block_txs = Histogram(
            "gmchain_block_txs",
            "Transactions per committed block",
            buckets=(0, 1, 10, 100, 500, 1000, 2000, 5000),
            registry=r,
        )
        self.round = Gauge("gmchain_consensus_round", "Current consensus round", registry=r)
        self.peers = Gauge("gmchain_peers", "Connected peers", registry=r)
        self.lag = Gauge(
            "gmchain_sync_lag_blocks",
            "Committed blocks behind the peers' verified committed height (consensus L10)",
            registry=r,
        )
        self.catching_up = Gauge(
            "gmchain_catching_up",
            "1 while the node is behind its peers' verified committed height or has not yet"
            " heard any peer's certificates (gm_status catchingUp), else 0",
            registry=r,
        )
        self.last_block_time = Gauge(
            "gmchain_last_block_timestamp_seconds",
            "Timestamp of the committed head block (unix seconds, from its header)",
            registry=r,
        )
        self.round_timeouts = Counter(
            "gmchain_round_timeouts",
            "Rounds in which this validator's round timer fired (it signed a timeout)",
            registry=r,
        )
        self.failed_receipts = Counter(
            "gmchain_failed_receipts",
            "Committed transactions whose receipt status is not OK, by status",
            ["status"],
            registry=r,
        )
        self.disk_free = Gauge(
            "gmchain_disk_free_bytes",
            "Free bytes (for unprivileged users) on the file system of the ledger store or of"
            " the pool log, whichever has less",
            registry=r,
        )
        self.validator_peers = Gauge(
            "gmchain_validator_peers",
            "Connected peers that are validators of the current set",
            registry=r,
        )
        self.quorum_peers = Gauge(
            "gmchain_quorum_peers",
            "The fewest validator peers that must be connected for a quorum (with this node's"
            " own vote if it is a validator)",
            registry=r,
        )
        self.node_info = Gauge(
            "gmchain_node_info",
            "Who this node is (value 1)",
            ["name", "node_id", "chain_id", "role"],
            registry=r,
        )
        self.build_info = Gauge(
            "gmchain_build_info",
            "What this node runs (value 1)",
            ["version", "commit", "python", "openssl", "sm2_backend"],
            registry=r,
        )
        b = get_build_info()
        self.build_info.labels(b.version, b.commit, b.python, b.openssl, b.sm2_backend).set(1)

        # --- epochs and governance (issue 12) ---
        self.epoch = Gauge("gmchain_epoch", "Epoch of the next block to commit", registry=r)
        self.epoch_behind = Gauge(
            "gmchain_epoch_behind",
            "1 while a peer has proven a later epoch than this node's (stuck in an old epoch)",
            registry=r,
        )
        self.proposals = Gauge(
            "gmchain_governance_proposals",
            "Governance proposals by status (committed state, read at scrape)",
            ["status"],
            registry=r,
        )
        self._peer_epoch = 0  # the highest epoch a peer's verified certificate showed
        self._our_epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The node's current epoch changed (or was read at a commit)."""
        self._our_epoch = epoch
        self.epoch.set(epoch)
        self.epoch_behind.set(1 if self._peer_epoch > epoch else 0)

    def peer_epoch_seen(self, epoch: int) -> None:
        """A peer proved it is in `epoch` (a verified certificate of that epoch): the hook the
        consensus side calls when it drops a message of a later epoch (EPOCHS.md E5)."""
        self._peer_epoch = max(self._peer_epoch, epoch)
        self.epoch_behind.set(1 if self._peer_epoch > self._our_epoch else 0)

    def set_governance(self, peer_epoch: int, counts: Mapping[str, int]) -> None:
        """At a scrape: the highest epoch peers reported, and the proposals per status."""
        self.peer_epoch_seen(peer_epoch)
        self.set_proposals(counts)

    def set_proposals(self, counts: Mapping[str, int]) -> None:
        """Proposals per status (`counts` names every status, zeros included)."""
        for status, n in counts.items():
            self.proposals.labels(status=status).set(n)

    def count_failed_receipts(self, receipts: Iterable[Receipt]) -> None:
        """`gmchain_failed_receipts_total{status}`: one per committed receipt that is not OK,
        labelled with its status's name in lower case (e.g. "failed", "bad_arguments")."""
        for receipt in receipts:
            if receipt.status != ReceiptStatus.OK:
                self.failed_receipts.labels(receipt.status.name.lower()).inc()


def compute_quorum_peers(voting: ValidatorSet, me: NodeId) -> int:
    """The fewest other validators whose power, with ours, reaches the quorum power (the
    strongest first): fewer connected validator peers than this and no certificate can form
    with this node's help."""
    need = voting.quorum_power - voting.power_of(me)
    powers = sorted((voting.power_of(v) for v in voting.node_ids if v != me), reverse=True)
    count = 0
    for p in powers:
        if need <= 0:
            break
        need -= p
        count += 1
    return count


class _Peers(Protocol):
    def peer_count(self) -> int: ...

    def connected_peers(self) -> Iterable[NodeId]: ...


class _View(Protocol):
    @property
    def lag(self) -> int: ...


def refresh_scrape_metrics(
    m: NodeMetrics,
    *,
    view: _View,
    pool_size: int,
    transport: _Peers,
    catching_up: bool,
    free_bytes: int | None,
    voting: ValidatorSet,
    node_id: NodeId,
) -> None:
    """Rule 3: the values read at scrape time."""
    m.pool.set(pool_size)
    m.peers.set(transport.peer_count())
    m.lag.set(view.lag)
    m.catching_up.set(1 if catching_up else 0)
    if free_bytes is not None:
        m.disk_free.set(free_bytes)
    m.validator_peers.set(sum(1 for p in transport.connected_peers() if p in voting))
    m.quorum_peers.set(compute_quorum_peers(voting, node_id))

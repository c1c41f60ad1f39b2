"""The node's Prometheus metrics (served at /metrics, docs/ops.md "Metrics").

Epoch metrics (issue 12, docs/governance.md "Metrics"): `gmchain_epoch` is the epoch of the next
block to commit (gm_getEpoch's `epoch`); `gmchain_epoch_behind` is 1 while a peer has shown a
certificate of a later epoch than ours (this node is stuck in an old epoch until it syncs across
the change); `gmchain_governance_proposals{status}` counts the governance contract's proposals by
status, read from committed state when /metrics is scraped.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["NodeMetrics"]


class NodeMetrics:
    """Every metric of one node, in its own registry (a process may run several nodes)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.height = Gauge("gmchain_block_height", "Committed block height", registry=r)
        self.committed = Counter("gmchain_committed_txs", "Committed transactions", registry=r)
        self.pool = Gauge("gmchain_pool_size", "Pending transactions in the pool", registry=r)
        self.rejected = Counter(
            "gmchain_rejected_txs", "Transactions refused at admission", ["reason"], registry=r
        )
        self.latency = Histogram(
            "gmchain_commit_latency_seconds",
            "Admission to commit, per transaction",
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

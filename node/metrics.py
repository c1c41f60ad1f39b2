"""The node's Prometheus metrics (served at /metrics, docs/ops.md "Metrics")."""

from __future__ import annotations

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

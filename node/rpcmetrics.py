"""The RPC layer's own metrics, in the Prometheus text exposition format 0.0.4.

Rules this module keeps:
1. `RpcMetrics` holds plain counters and gauges: the server (node/rpc.py) and the subscriptions
   (node/rpcsubs.py) change them on the event loop, so there is no lock and counting costs one
   attribute or dict update per request.
2. `requests` counts known method names only, so a client cannot grow it with made-up names.
3. Rendering reads the numbers as they are; `/metrics` appends both texts to the node's own.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from gmchain.node.rpclimits import ConnectionGuard
from gmchain.node.rpcsend import SendBudget

__all__ = ["RpcMetrics", "guard_metrics_text"]


@dataclass(slots=True)
class RpcMetrics:
    requests: Counter[str] = field(default_factory=Counter)  # by method (known names only)
    errors: Counter[int] = field(default_factory=Counter)  # by JSON-RPC error code
    in_flight: int = 0  # requests between the start and the end of their handler
    ws_connections: int = 0  # WebSockets open
    subscriptions: int = 0  # subscriptions whose task has not ended, over all connections

    def render(self) -> str:
        lines = [
            "# HELP gmchain_rpc_requests_total JSON-RPC requests handled, by method.",
            "# TYPE gmchain_rpc_requests_total counter",
        ]
        lines += [
            f'gmchain_rpc_requests_total{{method="{m}"}} {n}' for m, n in self.requests.items()
        ]
        lines += [
            "# HELP gmchain_rpc_errors_total JSON-RPC error replies, by error code.",
            "# TYPE gmchain_rpc_errors_total counter",
        ]
        lines += [f'gmchain_rpc_errors_total{{code="{c}"}} {n}' for c, n in self.errors.items()]
        for name, value, text in (
            ("in_flight", self.in_flight, "JSON-RPC requests being handled."),
            ("ws_connections", self.ws_connections, "Open WebSocket connections."),
            ("subscriptions", self.subscriptions, "Active WebSocket subscriptions."),
        ):
            lines += [
                f"# HELP gmchain_rpc_{name} {text}",
                f"# TYPE gmchain_rpc_{name} gauge",
                f"gmchain_rpc_{name} {value}",
            ]
        return "\n".join(lines) + "\n"


def guard_metrics_text(guard: ConnectionGuard, send_budget: SendBudget) -> str:
    """The connection guard's counters and the bytes queued for all WebSockets."""
    g = guard
    lines = []
    for name, kind, value, text in (
        ("connections", "gauge", g.connections, "Open RPC connections."),
        ("connections_refused_total", "counter", g.refused, "Connections refused at a cap."),
        (
            "connections_evicted_total",
            "counter",
            g.evicted,
            "Connections closed to let a lighter address in (the total was full).",
        ),
        (
            "header_timeouts_total",
            "counter",
            g.timed_out,
            "Connections closed by the header timeout.",
        ),
        ("ws_queued_bytes", "gauge", send_budget.queued, "Bytes queued for WebSockets."),
    ):
        lines += [
            f"# HELP gmchain_rpc_{name} {text}",
            f"# TYPE gmchain_rpc_{name} {kind}",
            f"gmchain_rpc_{name} {value}",
        ]
    return "\n".join(lines) + "\n"

"""`gmchain relay`: run the relayer of one (business, regulator) pair (issue 13; docs/crosschain.md,
"The relayer").

    gmchain relay --business URL --regulator URL --key FILE [--metrics-port P] [--interval S]
                  [--ca-file PEM] [--auth-key FILE]
                  [--once] [--passphrase-env VAR] [--log-format text|json]

Rules this module keeps:
1. The relayer itself is crosschain/relayer.py; this module only wires it: the SDK client
   (`node.sdk.Client`, JSON-RPC over HTTP) adapted to `ChainRpc`, the key file (an ordinary
   account admitted on both chains; passphrase as every client command: node/keys_cli.py rule 3)
   adapted to `Signer`, the node's log format (node/logsetup.py), and the metrics.
2. SIGTERM and SIGINT stop the relayer cleanly: the current cycle's transactions are awaited
   (their receipts, within the tx timeout), then the process exits 0. SIGKILL loses nothing: the
   relayer keeps no state (crosschain/relayer.py), the next start reads progress from the chains.
3. `--once` runs exactly one cycle and exits: 0 if the cycle met no error, 1 otherwise (the cycle
   line says which). Drills and tests drive the relayer cycle by cycle with it.
4. Metrics (`--metrics-port`, 127.0.0.1 unless `--metrics-host`): a Prometheus text endpoint
   `/metrics` over a registry of its own (not the node's), read from `RelayStats` at each scrape:
   gmchain_relay_lag_blocks{chain}, gmchain_relay_lag_seconds{chain},
   gmchain_relay_packets_delivered_total{chain}, gmchain_relay_packets_refused_total{chain,reason},
   gmchain_relay_missing{chain}, gmchain_relay_acks_delivered_total{chain}, plus
   gmchain_relay_cycles_total{chain} and gmchain_relay_cycle_errors_total{chain}.
5. `--ca-file` is trusted for both chains' https:// URLs; `--auth-key` (a regulator account of
   the business chain) logs the business side in when that chain has rpc_auth = "reads": the
   relayer reads every org's outbox, which only the regulator's readAll may (docs/rpc.md).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Iterator
from typing import Any

from gmchain.crosschain.relay_rpc import RelayRpcError, RelayUnreachable
from gmchain.crosschain.relayer import RelayConfig, Relayer, RelayStats
from gmchain.crypto_sm import PrivateKey

__all__ = ["KeySigner", "RelayMetrics", "SdkChainRpc", "add_relay_command", "cmd_relay"]

log = logging.getLogger("gmchain.relay")


class SdkChainRpc:
    """Rule 1: `ChainRpc` over the SDK's client; SDK errors become the relayer's."""

    def __init__(
        self,
        url: str,
        timeout_s: float = 30,
        *,
        ca_file: str | None = None,
        auth_key: PrivateKey | None = None,
    ) -> None:
        from gmchain.node.sdk import Client

        self.client = Client(url, timeout_s=timeout_s, ca_file=ca_file, auth_key=auth_key)

    async def call(self, method: str, params: list[Any]) -> Any:
        from gmchain.node.sdk import NodeUnreachable, RpcError, SdkError

        # gm_waitForReceipt holds the request up to its own timeout (ms): allow for it.
        timeout = None
        if method == "gm_waitForReceipt" and len(params) > 1 and isinstance(params[1], int):
            timeout = params[1] / 1000 + 10
        try:
            return await self.client.call_rpc(method, params, timeout_s=timeout)
        except RpcError as exc:
            raise RelayRpcError(exc.code, exc.message) from None
        except NodeUnreachable as exc:
            raise RelayUnreachable(str(exc)) from None
        except SdkError as exc:
            raise RelayUnreachable(f"{self.client.url}: {exc}") from None

    async def close(self) -> None:
        await self.client.close()


class KeySigner:
    """Rule 1: `Signer` over an SM2 key."""

    def __init__(self, key: PrivateKey) -> None:
        self._key = key
        self.public_key = key.public_key.to_bytes()

    def sign(self, tx_id: bytes) -> bytes:
        return self._key.sign(tx_id)


class RelayMetrics:
    """Rule 4: a prometheus_client collector over `RelayStats`, in its own registry."""

    def __init__(self, stats: RelayStats) -> None:
        from prometheus_client import CollectorRegistry

        self.stats = stats
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s, chain = self.stats, [self.stats.chain]
        gauges = (
            ("lag_blocks", "Blocks between the business head and the oldest undelivered record"),
            ("lag_seconds", "Age of the oldest record not yet on the regulator chain"),
            ("missing", "Records queued on the business chain and not on the regulator chain"),
        )
        for name, text in gauges:
            g = GaugeMetricFamily(f"gmchain_relay_{name}", text, labels=["chain"])
            g.add_metric(chain, float(getattr(s, name)))
            yield g
        counters = (
            ("packets_delivered", "Packets the regulator chain accepted", s.delivered),
            (
                "acks_delivered",
                "Acknowledgements newly recorded on the business chain",
                s.acks_delivered,
            ),
            ("cycles", "Relay cycles run", s.cycles),
            ("cycle_errors", "Errors met in relay cycles", s.errors),
        )
        for name, text, value in counters:
            c = CounterMetricFamily(f"gmchain_relay_{name}", text, labels=["chain"])
            c.add_metric(chain, value)
            yield c
        refused = CounterMetricFamily(
            "gmchain_relay_packets_refused",
            "Packets refused (by the regulator chain's reason, or before sending)",
            labels=["chain", "reason"],
        )
        for reason, n in sorted(s.refused.items()):
            refused.add_metric([s.chain, reason], n)
        yield refused

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


async def _serve_metrics(metrics: RelayMetrics, host: str, port: int) -> Any:
    from aiohttp import web

    async def handle(_: web.Request) -> web.Response:
        return web.Response(body=metrics.text(), content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def run_relay(
    args: argparse.Namespace, key: PrivateKey, auth_key: PrivateKey | None = None
) -> int:
    # rule 5: TLS on both sides; the login (a regulator account) on the business side
    ca_file = getattr(args, "ca_file", None)
    business = SdkChainRpc(args.business, ca_file=ca_file, auth_key=auth_key)
    regulator = SdkChainRpc(args.regulator, ca_file=ca_file)
    config = RelayConfig(max_inflight=args.max_inflight, tx_timeout_s=args.tx_timeout)
    relayer = Relayer(business, regulator, KeySigner(key), config=config, log=log)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)  # rule 2
    runner = None
    if args.metrics_port is not None:
        runner = await _serve_metrics(
            RelayMetrics(relayer.stats), args.metrics_host, args.metrics_port
        )
    log.info(
        "relay started: business %s, regulator %s, account %s",
        args.business,
        args.regulator,
        key.public_key.to_bytes().hex()[:16],
        extra={"event": "relay_start", "fields": {}},
    )
    try:
        if args.once:
            report = await relayer.cycle()
            return 1 if report.errors else 0
        await relayer.run(stop, interval_s=args.interval)
        log.info("relay stopped", extra={"event": "relay_stop", "fields": {}})
        return 0
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if runner is not None:
            await runner.cleanup()
        await business.close()
        await regulator.close()


def cmd_relay(args: argparse.Namespace) -> int:
    from gmchain.node.keys_cli import load_key, resolve_passphrase
    from gmchain.node.logsetup import configure_logging

    if args.interval <= 0:
        raise ValueError("--interval must be > 0")
    key = load_key(args.key, resolve_passphrase(args.passphrase_env))
    auth = None
    if args.auth_key:
        auth = load_key(args.auth_key, resolve_passphrase(args.passphrase_env))
    configure_logging(fmt=args.log_format, level=args.log_level, node_name="relay")
    return asyncio.run(run_relay(args, key, auth))


def add_relay_command(sub: Any) -> None:
    p = sub.add_parser(
        "relay",
        help="relay evidence records from a business chain to its regulator chain (and acks back)",
        description="Relay evidence records from a business chain to its regulator chain and "
        "their acknowledgements back (docs/crosschain.md, The relayer). Stateless: progress is "
        "read from the chains every cycle.",
    )
    p.add_argument("--business", required=True, metavar="URL", help="a business chain node's RPC")
    p.add_argument("--regulator", required=True, metavar="URL", help="a regulator chain node's RPC")
    p.add_argument(
        "--key", required=True, metavar="FILE", help="the relayer's account key (both chains)"
    )
    p.add_argument("--passphrase-env", metavar="VAR", help="env var holding the key passphrase")
    p.add_argument(
        "--ca-file",
        metavar="FILE",
        help="PEM certificates to trust for https:// nodes, both chains (default: the system's)",
    )
    p.add_argument(
        "--auth-key",
        metavar="FILE",
        help="a regulator account key to log in to the business chain with when it has "
        "rpc_auth = reads (passphrase as for --key; default: no login)",
    )
    p.add_argument("--metrics-port", type=int, metavar="P", help="serve /metrics on this port")
    p.add_argument(
        "--metrics-host", default="127.0.0.1", metavar="HOST", help="address /metrics binds to"
    )
    p.add_argument(
        "--interval", type=float, default=2.0, metavar="S", help="seconds between cycles"
    )
    p.add_argument("--once", action="store_true", help="run one cycle and exit (1 on errors)")
    p.add_argument(
        "--max-inflight", type=int, default=4, metavar="N", help="txs in flight per chain"
    )
    p.add_argument(
        "--tx-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds to wait for each transaction's receipt",
    )
    p.add_argument("--log-format", choices=("text", "json"), default="text", help="log line format")
    p.add_argument("--log-level", default="info", help="debug, info, warning or error")
    p.set_defaults(handler=cmd_relay)

"""The node process: load config, open the store, start consensus, RPC (and P2P), run until told.

`gmchain dev` = `init_dev` (first use) + `run_node` on the dev config; `gmchain node start --config`
= `run_node`. `start_node` is the in-process form tests use.

Fail-stop (node/service.py rule 5): when the service reports a fatal error the process shuts down
what it can within FATAL_STOP_S and exits with EXIT_FATAL; a watchdog thread ends it with that
status even if the shutdown itself hangs (a store that cannot write may block a close).

Signals: while a node runs, SIGINT and SIGTERM stop it and SIGHUP reopens its log file and
re-reads its RPC TLS pair; once it has stopped, the process's handlers for the three are the
ones it had before (a program that runs a node in-process keeps its own Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gmchain.crypto_sm import PrivateKey, load_private_key, save_private_key
from gmchain.ledger.leveldb_build import leveldb_build
from gmchain.ledger.store import Store, StoreError
from gmchain.ledger.types import Genesis, GenesisValidator
from gmchain.node.config import (
    ConfigError,
    NodeConfig,
    gmchain_home,
    load_config,
    load_genesis,
    save_genesis,
    write_config,
)
from gmchain.node.gcpolicy import apply_gc_policy
from gmchain.node.logsetup import ReopenableFileHandler, configure_logging, event_extra
from gmchain.node.opslog import RefusalSummary
from gmchain.node.poolwal import PoolWal
from gmchain.node.rpc import RpcConfig, RpcServer
from gmchain.node.rpctls import TlsError
from gmchain.node.service import EXIT_FATAL, NodeService

__all__ = ["NodeHandle", "init_dev", "run_dev", "run_node", "start_node"]

log = logging.getLogger("gmchain.daemon")

DEV_CHAIN_ID = "gmchain-dev"
DEV_ORG = "dev-org"
# Dev keys are encrypted under this well-known passphrase: a dev chain is not for production.
DEV_PASSPHRASE = "gmchain-dev"
FATAL_STOP_S = 10.0  # after a fatal error: time for a clean shutdown before the watchdog exits
_HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # given back by _serve


def init_dev(
    data_dir: Path, *, rpc_port: int = 8545, p2p_port: int = 30300, verify_processes: int = 0
) -> Path:
    """Create a one-validator dev chain in `data_dir` (keys, genesis, config); return the config
    path. Keys are encrypted under DEV_PASSPHRASE: a dev chain is not for production."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    node_key = PrivateKey.generate()
    client_key = PrivateKey.generate()
    save_private_key(data_dir / "node.key", node_key, DEV_PASSPHRASE.encode())
    save_private_key(data_dir / "client.key", client_key, DEV_PASSPHRASE.encode())
    genesis = Genesis(
        chain_id=DEV_CHAIN_ID,
        timestamp_ms=int(time.time() * 1000),
        validators=(GenesisValidator(pubkey=node_key.public_key.to_bytes(), power=1, org=DEV_ORG),),
        accounts=((client_key.public_key.to_bytes(), DEV_ORG, "admin"),),
    )
    save_genesis(data_dir / "genesis.json", genesis)
    cfg = NodeConfig(
        name="dev",
        data_dir="db",
        genesis_file="genesis.json",
        key_file="node.key",
        key_passphrase=DEV_PASSPHRASE,
        rpc_port=rpc_port,
        p2p_port=p2p_port,
        verify_processes=verify_processes,
    )
    path = data_dir / "config.toml"
    write_config(path, cfg)
    return path


@dataclass
class NodeHandle:
    service: NodeService
    rpc: RpcServer
    store: Store
    extra: list[Any]

    @property
    def rpc_url(self) -> str:
        scheme = "http" if self.rpc.tls is None else "https"
        return f"{scheme}://{self.service.config.rpc_host}:{self.rpc.port}"

    async def stop(self) -> None:
        for x in reversed(self.extra):
            with contextlib.suppress(Exception):
                await x.stop()
        await self.rpc.stop()
        await self.service.stop()
        self.store.close()


def _passphrase(cfg: NodeConfig) -> bytes:
    return os.environ.get(cfg.key_passphrase_env, cfg.key_passphrase).encode()


def open_store(data_dir: str, chain_id: str) -> Store:
    """The node's ledger store, opened as the node runs it: checked, and with LevelDB's block
    checksums verified on every read (ledger/store.py rule 7)."""
    return Store.open(data_dir, chain_id=chain_id, verify_checksums=True)


async def start_node(
    cfg: NodeConfig, *, rpc_port: int | None = None, config_path: Path | None = None
) -> NodeHandle:
    """Open everything and start serving; the caller owns the handle. `config_path` (the file
    `cfg` came from) is read again for its peers at each epoch switch (node/peeradmission.py)."""
    genesis = load_genesis(cfg.genesis_file)
    key = load_private_key(cfg.key_file, _passphrase(cfg))
    if rpc_port is not None:
        cfg = replace(cfg, rpc_port=rpc_port)
    store = open_store(cfg.data_dir, genesis.chain_id)
    try:
        wal = PoolWal(Path(cfg.data_dir).with_name(Path(cfg.data_dir).name + ".pool"))
        extra: list[Any] = []
        bridge = None
        from gmchain.node.peeradmission import read_current_epoch

        epoch = read_current_epoch(store, genesis)  # the epoch the node runs in (E9)
        mine = key.public_key.to_bytes()
        lone = epoch.admitted_keys() == {mine} and len(epoch.validators) == 1
        if not lone:
            from gmchain.node.network import make_network  # multi-node wiring (p2p)

            bridge = make_network(
                cfg,
                genesis,
                key,
                epoch=epoch,
                reload_peers=None
                if config_path is None
                else lambda: load_config(config_path).peers,
            )
        service = NodeService(
            config=cfg, genesis=genesis, key=key, store=store, wal=wal, transport=bridge
        )
        if bridge is not None:
            await bridge.start(service)
            extra.append(bridge)
        await service.start()
        rpc = RpcServer(
            service,
            host=cfg.rpc_host,
            port=cfg.rpc_port,
            config=RpcConfig.from_node_config(cfg),
        )
        await rpc.start()
        summary = RefusalSummary(
            _refusal_sources(service, rpc, bridge), interval_s=cfg.log_summary_interval_s
        )
        summary.start()
        extra.append(summary)
        from gmchain.node.snapshot_ops import AdminSocket, admin_socket_path

        admin = AdminSocket(store, admin_socket_path(cfg.data_dir))  # `gmchain db snapshot`
        await admin.start()
        extra.append(admin)
    except BaseException:
        store.close()
        raise
    return NodeHandle(service=service, rpc=rpc, store=store, extra=extra)


def _labelled_counts(counter: Any) -> dict[str, float]:
    """A prometheus_client Counter with one label: {label value: count}."""
    out: dict[str, float] = {}
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels:
                out[next(iter(sample.labels.values()))] = sample.value
    return out


def _refusal_sources(service: NodeService, rpc: RpcServer, bridge: Any) -> dict[str, Any]:
    """What the periodic refusal summary sums (node/opslog.py `RefusalSummary`): JSON-RPC error
    replies by code, admission refusals by reason, P2P refusals by reason (handshakes refused
    before authentication, protocol violations and bans after it)."""
    sources: dict[str, Any] = {
        "rpc": lambda: {str(code): n for code, n in rpc.metrics.errors.items()},
        "admission": lambda: _labelled_counts(service.metrics.rejected),
    }
    if bridge is not None:

        def p2p() -> dict[str, float]:
            if bridge.net is None:
                return {}
            stats = bridge.net.stats
            out = {f"handshake:{k}": float(v) for k, v in stats["handshake_refusals"].items()}
            out.update({f"session:{k}": float(v) for k, v in stats["rejects"].items()})
            return out

        sources["p2p"] = p2p
    return sources


async def _serve(
    cfg: NodeConfig,
    log_file: ReopenableFileHandler | None = None,
    config_path: Path | None = None,
) -> int:
    handle = await start_node(cfg, config_path=config_path)
    gc_policy = apply_gc_policy()  # node/gcpolicy.py rule 1: started, before the first request
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    before = {sig: signal.getsignal(sig) for sig in _HANDLED_SIGNALS}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, _on_sighup, log_file, handle.rpc)
    try:
        return await _serve_until_stopped(cfg, handle, stop, loop, gc_policy.describe())
    finally:
        _give_signals_back(loop, before)


async def _serve_until_stopped(
    cfg: NodeConfig,
    handle: NodeHandle,
    stop: asyncio.Event,
    loop: asyncio.AbstractEventLoop,
    gc: str,
) -> int:
    st = handle.service.status()
    log.info(
        "node %s started: %s of chain %s at height %d, node id %s, JSON-RPC %s, gmchain %s",
        cfg.name,
        st.role,
        st.chain_id,
        st.height,
        st.node_id.hex(),
        handle.rpc_url,
        st.version,
        extra=event_extra(
            "node_start",
            role=st.role,
            chain_id=st.chain_id,
            height=st.height,
            node_id=st.node_id.hex(),
            rpc=handle.rpc_url,
            version=st.version,
            data_dir=cfg.data_dir,
            leveldb=leveldb_build().describe(),  # docs/ops.md, "The LevelDB build"
            gc=gc,  # docs/ops.md, "The garbage collector"
        ),
    )
    print(
        f"gmchain node {cfg.name} ({st.role}) chain {st.chain_id} height {st.height}\n"
        f"  node id   {st.node_id.hex()}\n"
        f"  JSON-RPC  {handle.rpc_url}  (metrics: {handle.rpc_url}/metrics)\n"
        f"  data      {cfg.data_dir}",
        flush=True,
    )
    service = handle.service
    waits = [loop.create_task(stop.wait()), loop.create_task(service.fatal.wait())]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for t in waits:
        t.cancel()
    if service.fatal_error is not None:
        _arm_exit_watchdog(FATAL_STOP_S + 5.0)
        print(f"stopping after a fatal error (exit {EXIT_FATAL})…", flush=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(handle.stop(), FATAL_STOP_S)
        return EXIT_FATAL
    print("stopping…", flush=True)
    log.info("node %s stopping (signal)", cfg.name, extra=event_extra("node_stop"))
    await handle.stop()
    return 0


def _give_signals_back(loop: asyncio.AbstractEventLoop, before: dict[signal.Signals, Any]) -> None:
    """The handlers a process had before the node ran are its own again once the node stops: a
    program that runs a node in-process keeps its Ctrl-C (uvloop leaves a closed loop's handler
    installed, and asyncio's removal installs the default, not the previous one). `_serve` owns
    its loop (`_run` makes it): a handler some other code had added to that same loop for these
    signals (`loop.add_signal_handler`) is replaced while the node runs and not put back."""
    for sig, handler in before.items():
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(sig)
        if handler is not None:  # None: not installed from Python, nothing to put back
            signal.signal(sig, handler)


def _on_sighup(handler: ReopenableFileHandler | None, rpc: RpcServer) -> None:
    """SIGHUP: reopen the log file, and re-read the RPC TLS pair (node/rpctls.py rule 2)."""
    _reopen_log(handler)
    if rpc.tls is not None:
        rpc.tls.reload()


def _reopen_log(handler: ReopenableFileHandler | None) -> None:
    """SIGHUP: reopen the log file (after logrotate moved it); logs to stderr need nothing."""
    if handler is None:
        log.info("SIGHUP: logging to stderr, no log file to reopen")
        return
    handler.reopen()
    log.info("SIGHUP: log file %s reopened", handler.baseFilename, extra=event_extra("log_reopen"))


def _arm_exit_watchdog(after_s: float) -> None:
    """End the process with EXIT_FATAL after `after_s` whatever the shutdown is stuck in."""

    def _exit() -> None:
        logging.getLogger("gmchain.daemon").critical("shutdown hung; exiting now")
        logging.shutdown()
        os._exit(EXIT_FATAL)

    timer = threading.Timer(after_s, _exit)
    timer.daemon = True
    timer.start()


def _run(cfg: NodeConfig, config_path: Path | None = None) -> int:
    try:
        log_file = configure_logging(
            fmt=cfg.log_format,
            level=os.environ.get("GMCHAIN_LOG") or cfg.log_level,
            node_name=cfg.name,
            log_file=cfg.log_file,
        )
    except (OSError, ValueError) as exc:
        print(f"error: logging: {exc}", file=sys.stderr)
        return 1
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    try:
        return asyncio.run(_serve(cfg, log_file, config_path))
    except (OSError, StoreError, TlsError) as exc:  # (a damaged store or pool log; TLS files)
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _with_log_options(cfg: NodeConfig, args: argparse.Namespace) -> NodeConfig:
    """`--log-format` and `--log-file` override the config's keys (then checked again)."""
    fmt = getattr(args, "log_format", None)
    path = getattr(args, "log_file", None)
    if fmt is not None:
        cfg = replace(cfg, log_format=fmt)
    if path is not None:
        cfg = replace(cfg, log_file=str(Path(path).resolve()) if path else "")
    cfg.validate()
    return cfg


def run_node(args: argparse.Namespace) -> int:
    try:
        cfg = _with_log_options(load_config(args.config), args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return _run(cfg, Path(args.config))


def run_dev(args: argparse.Namespace) -> int:
    data_dir = Path(getattr(args, "data_dir", None) or gmchain_home() / "dev")
    rpc_port = getattr(args, "rpc_port", None)
    if rpc_port is None:
        rpc_port = 8545
    if getattr(args, "reset", False) and data_dir.exists():
        shutil.rmtree(data_dir)
    cfg_path = data_dir / "config.toml"
    if not cfg_path.exists():
        init_dev(data_dir, rpc_port=rpc_port)
        print(f"initialised a one-validator dev chain in {data_dir}", flush=True)
    try:
        cfg = _with_log_options(load_config(cfg_path), args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    cfg = replace(cfg, rpc_port=rpc_port)
    return _run(cfg)

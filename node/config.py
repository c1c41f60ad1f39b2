"""Node configuration: a frozen dataclass with `validate()`, loaded from TOML; the genesis file.

Rules this module keeps:
1. Every field has a safe default; `validate()` names the first bad field and says what is allowed.
2. Config never enables consensus mutation flags (consensus/mutations.py): there is no field for
   them and an unknown key is refused (tests/test_mutation_isolation.py).
3. The genesis file is JSON with hex keys; its canonical encoding (ledger.types.Genesis) is what
   the chain hashes, so two nodes agree on the chain iff they agree on those bytes.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from gmchain.consensus.messages import MAX_MESSAGE_ARRAY
from gmchain.ledger.genesis import DEFAULT_GOV_THRESHOLDS
from gmchain.ledger.types import Genesis, GenesisValidator

__all__ = [
    "ConfigError",
    "NodeConfig",
    "PeerConfig",
    "gmchain_home",
    "load_config",
    "load_genesis",
    "read_config",
    "save_genesis",
    "write_config",
]


class ConfigError(ValueError):
    """The configuration is unusable; the message says which field and why."""


def gmchain_home() -> Path:
    return Path(os.environ.get("GMCHAIN_HOME") or Path.home() / ".gmchain")


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerConfig:
    pubkey: str  # hex of the 65-byte SM2 public key
    host: str
    port: int
    name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    data_dir: str
    genesis_file: str
    key_file: str
    name: str = "node"
    key_passphrase_env: str = "GMCHAIN_NODE_PASSPHRASE"  # the key file's passphrase comes from here
    key_passphrase: str = ""  # fallback when the env var is unset (dev chains only)
    rpc_host: str = "127.0.0.1"
    rpc_port: int = 8545
    p2p_host: str = "127.0.0.1"
    p2p_port: int = 30300
    peers: tuple[PeerConfig, ...] = ()
    # p2p pre-authentication limits (issue 10, fault 8; docs/p2p.md §6): strangers together,
    # any one address (admitted peers' configured hosts get reserved slots on top), first message
    p2p_pending_handshakes: int = 64
    p2p_pending_per_address: int = 4
    p2p_hello_timeout_ms: int = 2000
    # handshakes that reach SM2 work per second: from one address (an admitted peer's host: per
    # peer there, its own budget), from strangers together; the threads that do that work
    p2p_handshake_rate_per_address: int = 2
    p2p_handshake_rate_strangers: int = 20
    p2p_handshake_threads: int = 2
    # consensus pacemaker
    round_timeout_ms: int = 1500
    max_round_timeout_ms: int = 20_000
    # packing
    min_block_txs: int = 1
    max_block_txs: int = 1000  # a block must validate well inside one round timeout
    min_wait_ms: int = 5
    max_wait_ms: int = 50
    target_latency_ms: int = 250
    # a block's execution must fit this wall time at the measured cost per transaction
    # (consensus/packing.py K6; 0: no time cap, only max_block_txs)
    block_time_budget_ms: int = 400
    # admission: SM2 verification in this many worker processes (0: in threads, sharing the GIL
    # with the event loop; see node/verifypool.py)
    verify_processes: int = 0
    # the consensus thread goes first (node/service.py rule 6): the event loop runs this many nice
    # steps below it, the admission verify threads twice as many (0: all alike; `gmchain cluster`
    # writes 5: its nodes share the machine's cores)
    worker_nice: int = 0
    # mempool
    mempool_max_txs: int = 100_000
    mempool_per_sender: int = 20_000
    # transactions that left the pool without committing (revoked sender, expired): how many of
    # their reasons are remembered for gm_waitForReceipt / receipt queries (node/mempool.py)
    mempool_dropped_memory: int = 100_000
    # the most pool transactions one block build skips (they fail the block rules) while filling
    # a block: a pool full of them must not make a build unbounded (chain/core.py rule 4)
    pack_scan_max_txs: int = 4000
    # rpc (node/rpc.py RpcConfig, node/rpclimits.py; docs/ops.md gives each one's reason)
    rpc_max_body_bytes: int = 1024 * 1024
    rpc_max_in_flight_per_conn: int = 256
    rpc_max_in_flight_per_ip: int = 2048
    rpc_max_waits_per_conn: int = 256
    rpc_max_waits_per_ip: int = 2048
    rpc_max_connections: int = 1024
    rpc_max_connections_per_ip: int = 64
    rpc_max_ws_per_ip: int = 32
    rpc_max_json_elements: int = 20_000
    rpc_max_in_flight_bytes_per_ip: int = 16 * 1024 * 1024
    rpc_fd_reserve: int = 1024
    rpc_header_timeout_s: float = 10.0
    rpc_idle_timeout_s: float = 60.0
    rpc_max_response_bytes: int = 16 * 1024 * 1024
    rpc_ws_send_queue_bytes: int = 32 * 1024 * 1024
    rpc_ws_send_total_bytes: int = 256 * 1024 * 1024
    rpc_allowed_hosts: tuple[str, ...] = ()
    rpc_allowed_origins: tuple[str, ...] = ()
    rpc_error_log_per_minute: int = 10  # internal-error tracebacks logged (node/ratelog.py)
    # TLS and read authentication (node/rpctls.py, node/rpcauth.py; docs/rpc.md "TLS", "Read
    # authentication"): a PEM certificate chain and key (both or neither; re-read on SIGHUP);
    # rpc_auth "off" (every read open) or "reads" (org data needs a login); a login's lifetime
    rpc_tls_cert: str = ""
    rpc_tls_key: str = ""
    rpc_auth: str = "off"
    rpc_session_ttl_s: int = 900
    # proofs (node/proofserve.py): the longest header chain one commit certificate may need, the
    # worker threads that assemble proofs off the event loop, and one client's share of them
    proof_max_span: int = 256
    proof_threads: int = 2
    proof_jobs_per_client: int = 1
    proof_queue_per_client: int = 128
    # storage: refuse new submissions below this much free disk (node/diskspace.py; 0 = off)
    min_free_disk_mb: int = 256
    # catching up (docs/ops.md "Limits and failure behaviour"): peers exchange their certificates
    # every this many ms (and when a session starts); /health answers 503 while the node is behind
    # its peers' verified committed height by more than health_max_lag_blocks
    sync_status_interval_ms: int = 2000
    health_max_lag_blocks: int = 5
    # logs (node/logsetup.py, node/opslog.py; docs/ops.md "Logs"): `text` or `json` lines, to
    # `log_file` (reopened on SIGHUP) or stderr; the level (GMCHAIN_LOG overrides it); a commit
    # line at most every this many blocks or seconds; refusals summed every this many seconds
    log_format: str = "text"
    log_file: str = ""
    log_level: str = "INFO"
    log_commit_every_blocks: int = 100
    log_commit_every_s: int = 10
    log_summary_interval_s: int = 60
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if not self.data_dir:
            raise ConfigError("data_dir: required")
        for name in ("genesis_file", "key_file"):
            if not getattr(self, name):
                raise ConfigError(f"{name}: required")
        for name in ("rpc_port", "p2p_port"):
            port = getattr(self, name)
            if not isinstance(port, int) or not 0 <= port <= 65535:
                raise ConfigError(f"{name}: expected a port number 0..65535, got {port!r}")
        for name in (
            "round_timeout_ms",
            "max_round_timeout_ms",
            "min_block_txs",
            "max_block_txs",
            "max_wait_ms",
            "target_latency_ms",
            "mempool_max_txs",
            "mempool_per_sender",
            "rpc_max_body_bytes",
            "p2p_pending_handshakes",
            "p2p_pending_per_address",
            "p2p_hello_timeout_ms",
            "p2p_handshake_rate_per_address",
            "p2p_handshake_rate_strangers",
            "p2p_handshake_threads",
            "proof_max_span",
            "proof_threads",
            "proof_jobs_per_client",
            "proof_queue_per_client",
            "mempool_dropped_memory",
            "pack_scan_max_txs",
            "rpc_error_log_per_minute",
            "sync_status_interval_ms",
            "health_max_lag_blocks",
            "log_commit_every_blocks",
            "log_commit_every_s",
            "log_summary_interval_s",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
        self._validate_rpc()
        self._validate_log()
        vp = self.verify_processes
        if not isinstance(vp, int) or isinstance(vp, bool) or not 0 <= vp <= 64:
            raise ConfigError(f"verify_processes: expected an integer 0..64, got {vp!r}")
        bt = self.block_time_budget_ms
        if not isinstance(bt, int) or isinstance(bt, bool) or not 0 <= bt <= 600_000:
            raise ConfigError(f"block_time_budget_ms: expected an integer 0..600000, got {bt!r}")
        wn = self.worker_nice
        if not isinstance(wn, int) or isinstance(wn, bool) or not 0 <= wn <= 9:
            raise ConfigError(f"worker_nice: expected an integer 0..9, got {wn!r}")
        if self.p2p_handshake_threads > 64:
            n = self.p2p_handshake_threads
            raise ConfigError(f"p2p_handshake_threads: at most 64, got {n}")
        if self.proof_threads > 64:
            raise ConfigError(f"proof_threads: at most 64, got {self.proof_threads}")
        if self.proof_jobs_per_client > self.proof_threads:
            raise ConfigError("proof_jobs_per_client must not exceed proof_threads")
        if self.proof_jobs_per_client > self.proof_queue_per_client:
            raise ConfigError("proof_jobs_per_client must not exceed proof_queue_per_client")
        if self.max_block_txs > MAX_MESSAGE_ARRAY:
            # A peer refuses a message with a longer array (docs/protocol.md, Message size):
            # a larger block could be built here and never decoded anywhere else.
            raise ConfigError(
                f"max_block_txs: at most {MAX_MESSAGE_ARRAY} (the most items one peer message"
                f" may hold), got {self.max_block_txs}"
            )
        mf = self.min_free_disk_mb
        if not isinstance(mf, int) or isinstance(mf, bool) or not 0 <= mf <= 1024 * 1024:
            raise ConfigError(f"min_free_disk_mb: expected an integer 0..1048576, got {mf!r}")
        if self.min_block_txs > self.max_block_txs:
            raise ConfigError("min_block_txs must not exceed max_block_txs")
        if self.min_wait_ms > self.max_wait_ms:
            raise ConfigError("min_wait_ms must not exceed max_wait_ms")
        for p in self.peers:
            try:
                if len(bytes.fromhex(p.pubkey)) != 65:
                    raise ValueError
            except ValueError:
                raise ConfigError(
                    f"peers: {p.name or p.host}: pubkey must be 65 bytes hex"
                ) from None

    def _validate_log(self) -> None:
        if self.log_format not in ("text", "json"):
            raise ConfigError(f'log_format: expected "text" or "json", got {self.log_format!r}')
        if not isinstance(self.log_file, str):
            raise ConfigError(f'log_file: expected a path ("" = stderr), got {self.log_file!r}')
        levels = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        if not isinstance(self.log_level, str) or self.log_level.upper() not in levels:
            raise ConfigError(
                f"log_level: expected one of {', '.join(levels)}, got {self.log_level!r}"
            )

    def _validate_rpc(self) -> None:
        """The rpc_* keys, checked by the RPC layer's own rules (one statement of them)."""
        for name in ("rpc_tls_cert", "rpc_tls_key"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f'{name}: expected a path ("" = plain HTTP)')
        for name in ("rpc_allowed_hosts", "rpc_allowed_origins"):
            value = getattr(self, name)
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{name}: expected a list of strings, got {value!r}")
        from gmchain.node.rpcconfig import RpcConfig  # which imports this module

        try:
            RpcConfig.from_node_config(self).validate()
        except (ValueError, TypeError) as exc:
            raise ConfigError(str(exc).replace("RpcConfig.", "rpc_")) from None

    def resolve(self, base: Path) -> NodeConfig:
        """Make relative paths relative to the config file's directory."""

        def abs_(p: str) -> str:
            return p if os.path.isabs(p) else str((base / p).resolve())

        return replace(
            self,
            data_dir=abs_(self.data_dir),
            genesis_file=abs_(self.genesis_file),
            key_file=abs_(self.key_file),
            log_file=abs_(self.log_file) if self.log_file else "",
            rpc_tls_cert=abs_(self.rpc_tls_cert) if self.rpc_tls_cert else "",
            rpc_tls_key=abs_(self.rpc_tls_key) if self.rpc_tls_key else "",
        )


def load_config(path: str | os.PathLike[str]) -> NodeConfig:
    """The config file at `path`, its relative paths resolved against its folder, validated."""
    p = Path(path)
    cfg = read_config(p)
    try:
        cfg = cfg.resolve(p.parent)
    except TypeError as exc:
        raise ConfigError(str(exc)) from None
    cfg.validate()
    return cfg


def read_config(path: str | os.PathLike[str]) -> NodeConfig:
    """The config file as written (relative paths kept, not validated); ConfigError names what
    is wrong with it. Also node/ceremony_genesis.py's reader of a site's config."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {p} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {p}: {exc}") from None
    known = {f.name for f in fields(NodeConfig)} - {"peers", "extra"}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "peers":
            try:
                kwargs["peers"] = tuple(PeerConfig(**peer) for peer in value)
            except TypeError as exc:
                raise ConfigError(f"peers: {exc}") from None
        elif key in known:
            kwargs[key] = value
        else:
            raise ConfigError(f"unknown config key {key!r}")
    try:
        return NodeConfig(**kwargs)
    except TypeError as exc:
        raise ConfigError(str(exc)) from None


def write_config(path: str | os.PathLike[str], cfg: NodeConfig) -> None:
    lines = []
    for f in fields(NodeConfig):
        if f.name in ("peers", "extra"):
            continue
        v = getattr(cfg, f.name)
        lines.append(f"{f.name} = {json.dumps(v)}")
    for peer in cfg.peers:
        lines.append("")
        lines.append("[[peers]]")
        lines.append(f"name = {json.dumps(peer.name)}")
        lines.append(f"pubkey = {json.dumps(peer.pubkey)}")
        lines.append(f"host = {json.dumps(peer.host)}")
        lines.append(f"port = {peer.port}")
    # 0600: the file may hold the key's passphrase (an existing file is tightened too).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w") as out:
        os.fchmod(fd, 0o600)
        out.write("\n".join(lines) + "\n")


def save_genesis(path: str | os.PathLike[str], g: Genesis) -> None:
    doc = {
        "chain_id": g.chain_id,
        "timestamp_ms": g.timestamp_ms,
        "replay_window": g.replay_window,
        "validators": [
            {"pubkey": v.pubkey.hex(), "power": v.power, "org": v.org} for v in g.validators
        ],
        "observers": [o.hex() for o in g.observers],
        "accounts": [{"pubkey": k.hex(), "org": o, "role": r} for k, o, r in g.accounts],
        "committee": [{"org": o, "weight": w} for o, w in g.committee],
        "gov_thresholds": list(g.gov_thresholds),
        "genesis_hash": g.compute_hash().hex(),
    }
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")


def load_genesis(path: str | os.PathLike[str]) -> Genesis:
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
        g = Genesis(
            chain_id=doc["chain_id"],
            timestamp_ms=doc["timestamp_ms"],
            replay_window=doc.get("replay_window", 1000),
            validators=tuple(
                GenesisValidator(pubkey=bytes.fromhex(v["pubkey"]), power=v["power"], org=v["org"])
                for v in doc["validators"]
            ),
            observers=tuple(bytes.fromhex(o) for o in doc.get("observers", [])),
            accounts=tuple(
                (bytes.fromhex(a["pubkey"]), a["org"], a["role"]) for a in doc.get("accounts", [])
            ),
            committee=tuple((c["org"], c["weight"]) for c in doc.get("committee", [])),
            gov_thresholds=tuple(doc.get("gov_thresholds", DEFAULT_GOV_THRESHOLDS)),
        )
    except FileNotFoundError:
        raise ConfigError(f"genesis file {p} not found") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"genesis file {p} is invalid: {exc}") from None
    expect = doc.get("genesis_hash")
    if expect is not None and expect != g.compute_hash().hex():
        raise ConfigError(f"genesis file {p}: genesis_hash does not match its contents")
    return g

"""Shared helpers for the single-node chain tests (tests/test_node_*.py).

Rules these helpers keep:
1. Nothing here decides a test's outcome: they build inputs (keys, genesis, signed transactions,
   blocks a Byzantine leader could forge) and run things (an in-process chain rig over a real
   LevelDB store, a `gmchain dev` subprocess); every assertion lives in the test files.
2. A forged block carries header commitments computed by the real executor over its transactions,
   with only the block rules switched off (`lax`), so a replica that refuses it refuses it for the
   rule under test and not for a commitment mismatch; tests show that with a lax control replica.
3. Time is injected: the rig's clock is a settable integer, never the wall clock.

Sources: DESIGN.md ("The way a transaction travels", "Replay protection", "Reliability strategy");
chain/core.py rule 2 (what a replica checks before voting); chain/executor.py rule 3.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import resource
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gmchain.chain.core import Chain, compute_block_header
from gmchain.chain.executor import BlockContext, ExecResult, Executor
from gmchain.chain.txrules import TxRules
from gmchain.consensus.messages import CommitProof
from gmchain.consensus.packing import PackingConfig, PackingPolicy
from gmchain.contracts import default_registry
from gmchain.crypto_sm import PrivateKey, load_private_key, sm3_hash
from gmchain.ledger.codec import Value
from gmchain.ledger.epoch import next_validators_commitment
from gmchain.ledger.store import Store
from gmchain.ledger.types import (
    Block,
    BlockHeader,
    Genesis,
    GenesisValidator,
    Height,
    NodeId,
    QuorumCert,
    Round,
    SignedTx,
    TxBody,
)
from gmchain.node.chainpool import MempoolPool
from gmchain.node.mempool import Mempool, MempoolConfig
from gmchain.node.proofserve import ProofLimits, ProofService

__all__ = [
    "CHAIN_ID",
    "DEV_PASSPHRASE",
    "RESTART_DEADLINE_S",
    "ROOT",
    "START_DEADLINE_S",
    "ChainRig",
    "NodeProcess",
    "RpcSession",
    "TestNet",
    "evidence_args",
    "fake_commit_proof",
    "forge_block",
    "free_port",
    "lax_check_tx",
    "make_net",
    "sign_tx",
]

ROOT = Path(__file__).resolve().parent.parent
# Deadlines for real processes are failure conditions only: tests poll and go on as soon as the
# condition holds. They must tolerate a loaded 2-core machine (eight test runs at once took a
# `gmchain dev` start past 10 s) and still fail a real hang well inside the suite's budget.
START_DEADLINE_S = 90.0
RESTART_DEADLINE_S = 120.0
CHAIN_ID = "node-test-chain"
DEV_PASSPHRASE = "gmchain-dev"
T0 = 1_700_000_000_000  # genesis timestamp (ms) of the in-process chains


# --- keys, genesis, transactions -----------------------------------------------------------------


@dataclass
class TestNet:
    """A genesis with one validator and a few admitted accounts (org `org-a`, role `admin`)."""

    genesis: Genesis
    node_key: PrivateKey
    accounts: list[PrivateKey]
    outsider: PrivateKey  # a well-formed key that is not an admitted account

    __test__ = False  # not a pytest class


def make_net(n_accounts: int = 3, *, replay_window: int = 20) -> TestNet:
    node_key = PrivateKey.generate()
    accounts = [PrivateKey.generate() for _ in range(n_accounts)]
    genesis = Genesis(
        chain_id=CHAIN_ID,
        timestamp_ms=T0,
        validators=(GenesisValidator(pubkey=node_key.public_key.to_bytes(), power=1, org="org-a"),),
        replay_window=replay_window,
        accounts=tuple((k.public_key.to_bytes(), "org-a", "admin") for k in accounts),
    )
    return TestNet(genesis, node_key, accounts, PrivateKey.generate())


def evidence_args(
    record_id: str, flow_id: str | None = None, *, data: bytes = b"raw", prev: str | None = None
) -> list[Value]:
    """Arguments of `evidence.submit` for a record (a new flow of its own unless `flow_id`)."""
    return [
        record_id,
        flow_id or f"flow-{record_id}",
        "private-fund-sale",
        "risk-disclosure",
        sm3_hash(data),
        None,
        [["investor", "alice"]],
        2,
        prev,
    ]


def sign_tx(
    key: PrivateKey,
    *,
    expiry: int,
    chain_id: str = CHAIN_ID,
    contract: str = "evidence",
    method: str = "submit",
    args: Sequence[Value] | None = None,
    nonce: int | None = None,
    bad_signature: bool = False,
    sender: bytes | None = None,
) -> SignedTx:
    body = TxBody(
        chain_id=chain_id,
        sender=sender if sender is not None else key.public_key.to_bytes(),
        nonce=secrets.randbits(63) if nonce is None else nonce,
        expiry=Height(expiry),
        contract=contract,
        method=method,
        args=tuple(args if args is not None else evidence_args(f"r{secrets.token_hex(6)}")),
    )
    sig = key.sign(body.compute_id())
    if bad_signature:  # a valid signature of another message: well-formed, wrong
        sig = key.sign(sm3_hash(b"not this transaction"))
    return SignedTx(body=body, signature=sig)


# --- an in-process chain ------------------------------------------------------------------------


def fake_commit_proof(block: Block) -> CommitProof:
    """A structurally valid commit proof for `block` (Chain.commit stores it, never checks it)."""
    h = block.header
    qc = QuorumCert(block_id=h.block_id, round=h.round, height=h.height)
    return CommitProof(header=h, qc=qc)


class ChainRig:
    """A `node.chain.Chain` over a real Store in `path`, with an injected clock."""

    def __init__(self, path: Path, net: TestNet, *, mempool: MempoolConfig | None = None) -> None:
        self.path = path
        self.net = net
        self.now_ms = T0 + 1_000_000
        self.store = Store.open(path, chain_id=net.genesis.chain_id)
        self.rules = TxRules.with_new_caches(
            chain_id=net.genesis.chain_id,
            replay_window=net.genesis.replay_window,
            registry=default_registry(),
        )
        self.mempool = Mempool(config=mempool or MempoolConfig(), rules=self.rules)
        self.chain = Chain(
            genesis=net.genesis,
            store=self.store,
            rules=self.rules,
            pool=MempoolPool(self.mempool),
            packing=PackingPolicy(PackingConfig()),
        )
        self.node_id = NodeId(net.node_key.public_key.address)
        self.round = 0

    def close(self) -> None:
        self.store.close()

    def proof_service(self, limits: ProofLimits) -> ProofService:
        """The node's proof service over this rig's store and head (close it before the rig)."""
        return ProofService(
            store=self.store,
            validators=self.net.genesis.validators,
            head_height=lambda: self.chain.head.height,
            limits=limits,
        )

    def admit(self, *txs: SignedTx) -> None:
        """Put txs in the pool as the service would after checking them (signature unchecked,
        and recorded as verified; the call unchecked: chain/txrules.py R6)."""
        for tx in txs:
            self.mempool.add(tx, len(tx.encode()), self.chain.head.height, self.now_ms)
            self.rules.verified.mark((tx.tx_id,))

    def build(self, parent: BlockHeader | None = None) -> Block:
        """The leader's block on `parent` (default: the committed head) from the pool."""
        parent = parent or self.chain.head
        self.round += 1
        self.now_ms += 1000
        return self.chain.build_block(
            parent=parent,
            round=Round(self.round),
            justify=QuorumCert(block_id=parent.block_id, round=parent.round, height=parent.height),
            proposer=self.node_id,
            now_ms=self.now_ms,
        )

    def commit(self, *blocks: Block) -> None:
        done = self.chain.commit(list(blocks), fake_commit_proof(blocks[-1]))
        assert [c.block.block_id for c in done] == [b.block_id for b in blocks]

    def build_and_commit(self, *txs: SignedTx) -> Block:
        self.admit(*txs)
        block = self.build()
        self.commit(block)
        return block

    def receipts(self, block: Block) -> list[Any]:
        from gmchain.ledger.types import Receipt

        out = []
        for tx in block.txs:
            raw = self.store.get_receipt(tx.tx_id)
            assert raw is not None
            out.append(Receipt.decode(raw))
        return out


def lax_check_tx(executor: Executor) -> None:
    """Switch off an executor's block rules (a Byzantine leader): any sender is an org-a admin."""

    def check(
        tx: SignedTx, height: int, parent: ExecResult | None, seen: set[bytes] | None = None
    ) -> tuple[bytes, str, str]:
        return (tx.body.sender, "org-a", "admin")

    executor.check_tx = check  # type: ignore[method-assign]


def forge_block(
    rig: ChainRig,
    parent: BlockHeader,
    txs: Sequence[SignedTx],
    *,
    ts: int,
    lax: bool = True,
    parent_res: ExecResult | None = None,
) -> Block:
    """A block on `parent` whose commitments are what executing `txs` really gives (rule 2)."""
    ex = Executor(
        rules=TxRules.with_new_caches(
            chain_id=rig.net.genesis.chain_id,
            replay_window=rig.net.genesis.replay_window,
            registry=default_registry(),
        ),
        committed=rig.store,
    )
    if lax:
        lax_check_tx(ex)
    ctx = BlockContext(
        chain_id=rig.net.genesis.chain_id,
        height=parent.height + 1,
        timestamp_ms=ts,
        parent_state_hash=parent.state_hash,
        parent_frontier=parent_res.frontier if parent_res else rig.chain.frontier,
    )
    result, rejected = ex.execute(ctx, list(txs), parent_res, strict=True)
    assert not rejected
    header = compute_block_header(
        parent,
        result,
        chain_id=rig.net.genesis.chain_id,
        epoch=0,
        round=Round(parent.round + 1),
        proposer=rig.node_id,
        timestamp_ms=ts,
        next_validators_hash=next_validators_commitment(0, rig.net.genesis.validators),
        justify=QuorumCert(block_id=parent.block_id, round=parent.round, height=parent.height),
    )
    return Block(header=header, txs=tuple(txs))


# --- real processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RpcSession:
    """A keep-alive JSON-RPC client over http.client (one connection; not thread-safe)."""

    def __init__(self, port: int, timeout_s: float = 30) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def post(self, payload: Any) -> Any:
        body = json.dumps(payload).encode()
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port, self.timeout_s)
            try:
                self._conn.request("POST", "/", body, {"Content-Type": "application/json"})
                return json.loads(self._conn.getresponse().read())
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def call(self, method: str, *params: Any) -> Any:
        reply = self.post({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        if "error" in reply:
            raise RpcFailure(reply["error"])
        return reply["result"]


class RpcFailure(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('message')} (code {error.get('code')})")
        self.code = error.get("code")
        self.error = error


@dataclass
class NodeProcess:
    """`gmchain dev --data-dir D --rpc-port P` as a child process (stdout/stderr to a log)."""

    data_dir: Path
    home: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    starts: int = 0
    nofile: int | None = None  # RLIMIT_NOFILE (soft = hard) of the child, e.g. systemd's 1024

    def _limit_fds(self) -> None:
        if self.nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        self.starts += 1
        self.log_path = self.data_dir.parent / f"node-{self.data_dir.name}-{self.starts}.log"
        env = {**os.environ, "GMCHAIN_HOME": str(self.home), "PYTHONPATH": str(ROOT)}
        env.pop("GMCHAIN_NODE_PASSPHRASE", None)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(ROOT / ".venv" / "bin" / "gmchain"),
                    "dev",
                    "--data-dir",
                    str(self.data_dir),
                    "--rpc-port",
                    str(self.port),
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=self._limit_fds if self.nofile is not None else None,
            )

    def wait_ready(self, deadline_s: float = START_DEADLINE_S) -> dict[str, Any]:
        """gm_status once the node answers; AssertionError after `deadline_s` or if it died."""
        end = time.monotonic() + deadline_s
        session = RpcSession(self.port, timeout_s=2)
        try:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"node exited with {self.proc.returncode}:\n{self.log()}")
                try:
                    status: dict[str, Any] = session.call("gm_status")
                    return status
                except (OSError, http.client.HTTPException, ValueError):
                    session.close()
                if time.monotonic() > end:
                    raise AssertionError(
                        f"node did not answer gm_status within {deadline_s} s:\n{self.log()}"
                    )
                time.sleep(0.05)
        finally:
            session.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL
        self.proc.wait(60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(60)

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-4000:]

    def client_key(self) -> PrivateKey:
        from gmchain.node.keys_cli import load_key

        return load_key(self.data_dir / "client.key", DEV_PASSPHRASE.encode())


@contextlib.contextmanager
def running_dev_node(
    tmp_path: Path, *, nofile: int | None = None, deadline_s: float = START_DEADLINE_S
) -> Iterator[NodeProcess]:
    """A `gmchain dev` child under `tmp_path`, started and answering; stopped on exit."""
    proc = NodeProcess(data_dir=tmp_path / "dev", home=tmp_path / "home", nofile=nofile)
    try:
        proc.start()
        proc.wait_ready(deadline_s)
        yield proc
    finally:
        proc.stop()


def rss_mib(pid: int) -> float:
    """Resident memory of process `pid` in MiB, from /proc (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


@contextlib.asynccontextmanager
async def running_service(tmp_path: Path, net: TestNet, **config: Any) -> AsyncIterator[Any]:
    """A started in-process NodeService of `net`'s validator over a real Store in `tmp_path`
    (NodeConfig fields from `config`); stopped and closed on exit."""
    from gmchain.node.config import NodeConfig
    from gmchain.node.service import NodeService

    store = Store.open(tmp_path / "db", chain_id=net.genesis.chain_id)
    cfg = NodeConfig(data_dir=str(tmp_path / "db"), genesis_file="-", key_file="-", **config)
    service = NodeService(config=cfg, genesis=net.genesis, key=net.node_key, store=store)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
        store.close()


@contextlib.asynccontextmanager
async def running_dev_service(tmp_path: Path) -> AsyncIterator[tuple[Any, Genesis, PrivateKey]]:
    """A started in-process NodeService of a fresh `gmchain dev` directory in `tmp_path/dev`:
    (service, genesis, the dev client's key, admitted to submit evidence); stopped on exit."""
    from gmchain.node.config import load_config, load_genesis
    from gmchain.node.daemon import DEV_PASSPHRASE, init_dev
    from gmchain.node.service import NodeService

    cfg = load_config(init_dev(tmp_path / "dev", rpc_port=0))
    genesis = load_genesis(cfg.genesis_file)
    key = load_private_key(cfg.key_file, DEV_PASSPHRASE.encode())
    client = load_private_key(tmp_path / "dev" / "client.key", DEV_PASSPHRASE.encode())
    store = Store.open(cfg.data_dir, chain_id=genesis.chain_id)
    service = NodeService(config=cfg, genesis=genesis, key=key, store=store)
    await service.start()
    try:
        yield service, genesis, client
    finally:
        await service.stop()
        store.close()


async def commit_evidence(
    service: Any, genesis: Genesis, client: PrivateKey, n: int, prefix: str
) -> list[bytes]:
    """Submit `n` evidence records (ids `{prefix}{i}`) signed by `client` and wait until each
    committed; their tx ids in submission order."""
    ids = []
    for i in range(n):
        body = TxBody(
            chain_id=genesis.chain_id,
            sender=client.public_key.to_bytes(),
            nonce=i,
            expiry=100,
            contract="evidence",
            method="submit",
            args=evidence_args(f"{prefix}{i}", f"{prefix}f{i}", data=b"%d" % i),
        )
        tx = SignedTx(body=body, signature=client.sign(body.compute_id()))
        ids.append(await service.submit_raw_tx(tx.encode()))
    for t in ids:
        assert await service.wait_tx(t, 10) is not None
    return ids


def get_health(port: int) -> tuple[int, dict[str, Any]] | None:
    """(HTTP status, body) of the node's /health, or None if it does not answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/health")
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def run_gmchain(*args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """`gmchain ARGS` as a child process of this checkout (output captured as text)."""
    return subprocess.run(
        [sys.executable, "-m", "gmchain.node.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )

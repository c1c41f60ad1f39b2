"""Shared helpers for real-process cluster drills (tests/test_cluster*.py, tests/test_drill*.py).

Rules this module keeps:
1. Every node is a real OS process started by `node.cluster.start_nodes` (the code path of
   `gmchain cluster up`); the test process only talks to nodes over JSON-RPC and TCP.
2. Ports come from bind-to-0 probing, never from a fixed list, so drills can run in parallel
   (pytest -n 2) and next to a developer's own cluster.
3. The load generator records a transaction as *acknowledged* only when `gm_sendRawTransaction`
   returned its id without error (DESIGN.md: a tx is acknowledged once it is in the pool).
4. `check_invariants` is the end of every drill and cannot be skipped: every node serves the same
   block hash at every height, and every acknowledged transaction is in exactly one block.
   It waits for convergence (nodes idle, same head) with a generous deadline, then compares.
5. Cluster changes a governance drill needs are made the way a site's operator makes them (docs/
   joining.md): one admin account per validator org in the genesis (before any node starts), a
   new site's folder around a key made by `gmchain keygen --node`, peers added to (or a rotated
   key replaced in) every node's `[[peers]]`, which a running node re-reads at an epoch switch.

Sources: DESIGN.md "Reliability strategy"; issue 5 items 5-6; node/cluster.py (layout of D).
"""

from __future__ import annotations

import http.client
import itertools
import json
import random
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gmchain.crypto_sm import PrivateKey, PublicKey, load_private_key, save_private_key
from gmchain.crypto_sm.keyfile import MIN_ITERATIONS
from gmchain.ledger.types import SignedTx, TxBody
from gmchain.node.cluster import (
    init_cluster,
    kill_node,
    node_status,
    start_nodes,
    stop_nodes,
)
from gmchain.node.config import (
    PeerConfig,
    load_config,
    load_genesis,
    save_genesis,
    write_config,
)
from gmchain.node.daemon import DEV_PASSPHRASE
from tests.node_helpers import START_DEADLINE_S
from tests.ports import free_port_block

__all__ = [
    "Cluster",
    "InvariantReport",
    "LoadGen",
    "check_invariants",
    "free_port_block",
    "metric_value",
    "metrics_text",
    "rpc_call",
    "running_cluster",
    "wait_until",
]


# --- ports and RPC -------------------------------------------------------------------------------


def rpc_call(
    port: int, method: str, params: list[Any] | None = None, timeout_s: float = 5.0
) -> Any:
    """One JSON-RPC call to 127.0.0.1:port; returns `result`, raises RuntimeError on `error`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
        conn.request("POST", "/", body, {"Content-Type": "application/json"})
        reply = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    if "error" in reply:
        raise RuntimeError(f"{method} on :{port}: {reply['error']}")
    return reply.get("result")


def rpc_batch(port: int, calls: list[tuple[str, list[Any]]], timeout_s: float = 20.0) -> list[Any]:
    """A JSON-RPC batch; results in call order (RuntimeError if any call failed)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        body = json.dumps(
            [
                {"jsonrpc": "2.0", "id": i, "method": m, "params": p}
                for i, (m, p) in enumerate(calls)
            ]
        )
        conn.request("POST", "/", body, {"Content-Type": "application/json"})
        replies = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    by_id = {r["id"]: r for r in replies}
    out = []
    for i in range(len(calls)):
        r = by_id[i]
        if "error" in r:
            raise RuntimeError(f"{calls[i][0]} on :{port}: {r['error']}")
        out.append(r["result"])
    return out


def metrics_text(port: int, timeout_s: float = 5.0) -> str:
    """The Prometheus text a node serves at /metrics on its RPC port."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0.0 if there is none)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        if metric != name:
            continue
        got = dict(
            (k, v.strip('"'))
            for k, _, v in (pair.partition("=") for pair in rest.rstrip("}").split(",") if pair)
        )
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


def wait_until(pred: Any, timeout_s: float, what: str, interval_s: float = 0.1) -> Any:
    """Poll `pred()` until it returns a truthy value; AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


# --- the cluster ---------------------------------------------------------------------------------


@dataclass
class Cluster:
    """A cluster directory made by `init_cluster`, with helpers to drive its node processes."""

    d: Path
    doc: dict[str, Any]

    @classmethod
    def create(
        cls,
        d: Path,
        *,
        validators: int = 4,
        observers: int = 0,
        round_timeout_ms: int = 1000,
        org_admins: bool = False,
    ) -> Cluster:
        n = validators + observers
        rng = random.Random()
        base_rpc = free_port_block(n, rng=rng)
        base_p2p = free_port_block(n, rng=rng)
        while base_p2p < base_rpc + n and base_rpc < base_p2p + n:  # overlapping blocks
            base_p2p = free_port_block(n, rng=rng)
        doc = init_cluster(
            d,
            validators=validators,
            observers=observers,
            base_rpc=base_rpc,
            base_p2p=base_p2p,
            round_timeout_ms=round_timeout_ms,
        )
        cluster = cls(d=d, doc=doc)
        if org_admins:
            cluster._add_org_admins()
        return cluster

    # governance set-up (rule 5)

    def _add_org_admins(self) -> None:
        """An admin account for every validator org without one, its key in `admins/<org>.key`
        (the layout `gmchain cluster init` uses for the committee orgs' admins; org1's is
        `client.key`): committee drills need one admin per committee org (the default committee
        is the validator orgs). Only before any node started (the genesis is read at start)."""
        path = self.d / "genesis.json"
        genesis = load_genesis(path)
        have = {org for _, org, role in genesis.accounts if role == "admin"}
        added = []
        for org in sorted({v.org for v in genesis.validators} - have):
            key = PrivateKey.generate()
            (self.d / "admins").mkdir(exist_ok=True)
            save_private_key(
                self.d / "admins" / f"{org}.key",
                key,
                DEV_PASSPHRASE.encode(),
                iterations=MIN_ITERATIONS,
            )
            added.append((key.public_key.to_bytes(), org, "admin"))
        if added:
            save_genesis(path, replace(genesis, accounts=(*genesis.accounts, *added)))

    def admin_key(self, org: str) -> PrivateKey:
        """The admin account of `org`: `admins/<org>.key`, or for org1 the cluster's client key."""
        path = self.d / "admins" / f"{org}.key"
        if not path.exists() and org == "org1":
            return self.client_key()
        return load_private_key(path, DEV_PASSPHRASE.encode())

    def _save_doc(self) -> None:
        (self.d / "cluster.json").write_text(json.dumps(self.doc, indent=2) + "\n")

    def _append_peer(self, name: str, peer: PeerConfig) -> None:
        """Add a `[[peers]]` entry to `name`'s config (`write_config` puts the peers last)."""
        with open(self.d / name / "config.toml", "a") as f:
            f.write(
                f"\n[[peers]]\nname = {json.dumps(peer.name)}\npubkey = {json.dumps(peer.pubkey)}"
                f"\nhost = {json.dumps(peer.host)}\nport = {peer.port}\n"
            )

    def add_site(self, name: str, key_file: Path, org: str) -> None:
        """A new site's node `name` around its own key file (made by `gmchain keygen --node`
        under the dev passphrase), as its operator sets it up (docs/joining.md): a config like
        the first node's listing every node as a peer, and its address added to every other
        node's peers. cluster.json lists it with role "joining". Nothing is started."""
        key = load_private_key(key_file, DEV_PASSPHRASE.encode())
        used = {int(n[k]) for n in self.doc["nodes"] for k in ("rpc_port", "p2p_port")}
        rng = random.Random()
        ports: list[int] = []
        while len(ports) < 2:
            port = free_port_block(1, rng=rng)
            if port not in used and port not in ports:
                ports.append(port)
        nd = self.d / name
        nd.mkdir()
        shutil.copy2(key_file, nd / "node.key")
        base = load_config(self.d / self.names[0] / "config.toml")
        entry = {
            "name": name,
            "role": "joining",
            "pubkey": key.public_key.to_bytes().hex(),
            "rpc_port": ports[0],
            "p2p_port": ports[1],
            "org": org,
        }
        peers = tuple(_peer_of(n) for n in self.doc["nodes"])
        write_config(
            nd / "config.toml",
            replace(
                base,
                name=name,
                data_dir="db",
                genesis_file="../genesis.json",
                key_file="node.key",
                rpc_port=ports[0],
                p2p_port=ports[1],
                peers=peers,
            ),
        )
        for n in self.names:
            self._append_peer(n, _peer_of(entry))
        self.doc["nodes"].append(entry)
        self._save_doc()

    def replace_node_key(self, name: str, key_file: Path) -> None:
        """Node `name` runs with a new key from now on (a key rotation; the node must be stopped):
        its key file is replaced and every other node's peer entry for it names the new key."""
        key = load_private_key(key_file, DEV_PASSPHRASE.encode())
        shutil.copy2(key_file, self.d / name / "node.key")
        entry = self.node(name)
        old, entry["pubkey"] = entry["pubkey"], key.public_key.to_bytes().hex()
        for n in self.names:
            path = self.d / n / "config.toml"
            if n != name:
                path.write_text(
                    path.read_text().replace(json.dumps(old), json.dumps(entry["pubkey"]))
                )
        self._save_doc()

    # names, ports, keys

    @property
    def names(self) -> list[str]:
        return [n["name"] for n in self.doc["nodes"]]

    @property
    def validators(self) -> list[str]:
        return [n["name"] for n in self.doc["nodes"] if n["role"] == "validator"]

    def node(self, name: str) -> dict[str, Any]:
        return next(n for n in self.doc["nodes"] if n["name"] == name)

    def rpc_port(self, name: str) -> int:
        return int(self.node(name)["rpc_port"])

    def p2p_port(self, name: str) -> int:
        return int(self.node(name)["p2p_port"])

    def pubkey(self, name: str) -> PublicKey:
        return PublicKey.from_bytes(bytes.fromhex(self.node(name)["pubkey"]))

    def node_id(self, name: str) -> bytes:
        return self.pubkey(name).address

    def node_key(self, name: str) -> PrivateKey:
        return load_private_key(self.d / name / "node.key", DEV_PASSPHRASE.encode())

    def client_key(self) -> PrivateKey:
        return load_private_key(self.d / "client.key", DEV_PASSPHRASE.encode())

    def leader_order(self) -> list[str]:
        """Validator names in the consensus leader order (ValidatorSet sorts by node id)."""
        return sorted(self.validators, key=self.node_id)

    def leader_of(self, round_: int) -> str:
        order = self.leader_order()
        return order[round_ % len(order)]

    def log(self, name: str) -> str:
        p = self.d / name / "node.log"
        return p.read_text(errors="replace") if p.exists() else ""

    # processes

    def start(self, names: list[str] | None = None, wait_s: float = START_DEADLINE_S) -> list[str]:
        return start_nodes(self.d, names, wait_s=wait_s)

    def stop(self, names: list[str] | None = None) -> list[str]:
        return stop_nodes(self.d, names, grace_s=10.0)

    def kill(self, name: str) -> bool:
        return kill_node(self.d, name)

    def status(self, name: str) -> dict[str, Any] | None:
        return node_status(self.rpc_port(name), timeout_s=2.0)

    def height(self, name: str) -> int | None:
        st = self.status(name)
        return None if st is None else int(st["height"])

    def heights(self, names: list[str] | None = None) -> dict[str, int | None]:
        return {n: self.height(n) for n in (names or self.names)}

    def wait_height(
        self, target: int, names: list[str] | None = None, timeout_s: float = 60
    ) -> None:
        names = names or self.names

        def ok() -> bool:
            hs = self.heights(names)
            return all(h is not None and h >= target for h in hs.values())

        wait_until(ok, timeout_s, f"{names} to reach height {target} (now {self.heights(names)})")

    def route_through(self, port_for: dict[tuple[str, str], int]) -> None:
        """Rewrite configs so that dialer `a` reaches listener `b` at `port_for[(a, b)]`.

        Only the node with the smaller node id dials (p2p/network.py), so one entry per
        unordered pair, keyed (dialer, listener), covers every session. Nodes must be stopped.
        """
        for (a, b), port in port_for.items():
            assert self.node_id(a) < self.node_id(b), f"{a} does not dial {b}"
            path = self.d / a / "config.toml"
            cfg = load_config(path)
            key_b = self.node(b)["pubkey"]
            peers = tuple(replace(p, port=port) if p.pubkey == key_b else p for p in cfg.peers)
            write_config(path, replace(cfg, peers=peers))

    def dial_pairs(self, names: list[str] | None = None) -> list[tuple[str, str]]:
        """Every (dialer, listener) pair among `names`."""
        ns = names or self.names
        out = []
        for i, a in enumerate(ns):
            for b in ns[i + 1 :]:
                out.append((a, b) if self.node_id(a) < self.node_id(b) else (b, a))
        return out

    # chain reads

    def block_hashes(self, name: str, upto: int) -> list[str]:
        port = self.rpc_port(name)
        out: list[str] = []
        for lo in range(0, upto + 1, 100):
            calls = [("gm_getBlockByNumber", [h, False]) for h in range(lo, min(upto, lo + 99) + 1)]
            for blk in rpc_batch(port, calls):
                assert blk is not None, f"{name} has a hole below its head {upto}"
                out.append(blk["hash"])
        return out

    def blocks(self, name: str, upto: int, start: int = 0) -> list[dict[str, Any]]:
        """Blocks `start`..`upto` of node `name` (None where it has none)."""
        port = self.rpc_port(name)
        out: list[dict[str, Any]] = []
        for lo in range(start, upto + 1, 100):
            calls = [("gm_getBlockByNumber", [h, False]) for h in range(lo, min(upto, lo + 99) + 1)]
            out.extend(rpc_batch(port, calls))
        return out


def _peer_of(n: dict[str, Any]) -> PeerConfig:
    return PeerConfig(pubkey=n["pubkey"], host="127.0.0.1", port=int(n["p2p_port"]), name=n["name"])


@contextmanager
def running_cluster(
    d: Path,
    *,
    validators: int = 4,
    observers: int = 0,
    round_timeout_ms: int = 1000,
    start: list[str] | None = None,
    proxied: bool = False,
    org_admins: bool = False,
) -> Iterator[tuple[Cluster, Any]]:
    """Create a cluster in `d`, start `start` (default: every node), always stop it afterwards.

    With `proxied`, every session runs through a `faultproxy.ProxyNet` (yielded second; None
    otherwise), one proxy per (dialer, listener) pair, named "a>b". On failure the tail of every
    node's log is printed (pytest shows it with the failure).
    """
    from tests.faultproxy import ProxyNet

    cluster = Cluster.create(
        d,
        validators=validators,
        observers=observers,
        round_timeout_ms=round_timeout_ms,
        org_admins=org_admins,
    )
    net = None
    try:
        if proxied:
            net = ProxyNet()
            ports = {}
            for a, b in cluster.dial_pairs():
                ports[(a, b)] = net.add(f"{a}>{b}", cluster.p2p_port(b)).port
            cluster.route_through(ports)
        cluster.start(start if start is not None else cluster.names)
        yield cluster, net
    except BaseException:
        for n in cluster.names:
            tail = cluster.log(n).splitlines()[-40:]
            print(f"----- {n}/node.log (last {len(tail)} lines) -----")
            print("\n".join(tail))
        raise
    finally:
        cluster.stop()
        if net is not None:
            net.close()


# --- load ----------------------------------------------------------------------------------------


@dataclass
class LoadGen:
    """Submits evidence transactions at about `rate` tx/s, round robin over `targets`.

    `acked` maps tx id (0x hex) to the node that acknowledged it. Targets can be changed while
    running (`set_targets`); a node that refuses the connection just costs a skipped slot.
    """

    cluster: Cluster
    targets: list[str]
    rate: float = 100.0
    acked: dict[str, str] = field(default_factory=dict)
    expiry: dict[str, int] = field(default_factory=dict)  # tx id -> the expiry height it named
    errors: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> LoadGen:
        self._key = self.cluster.client_key()
        st = rpc_call(self.cluster.rpc_port(self.targets[0]), "gm_nodeInfo")
        self._chain_id = st["chainId"]
        window = st.get("replayWindow")
        self._delta = max(1, window // 2) if isinstance(window, int) else 100
        self._thread = threading.Thread(target=self._run, name="loadgen", daemon=True)
        self._thread.start()
        return self

    def set_targets(self, targets: list[str]) -> None:
        with self._lock:
            self.targets = list(targets)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _count(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def _run(self) -> None:
        conns: dict[str, http.client.HTTPConnection] = {}
        heads: dict[str, tuple[int, float]] = {}  # node -> (its height, when it was read)
        seq = 0
        period = 1.0 / self.rate
        next_t = time.monotonic()
        while not self._stop.is_set():
            with self._lock:
                targets = list(self.targets)
            if not targets:
                time.sleep(0.05)
                continue
            name = targets[seq % len(targets)]
            seq += 1
            try:
                # Each node's own head, at most 1 s old: the tx's expiry is head + W/2, and a
                # stale head (a node left unread for minutes) made expiries that had passed or
                # were a few blocks away, so acknowledged txs expired unpacked.
                if time.monotonic() - heads.get(name, (0, -1e9))[1] > 1.0:
                    st = rpc_call(self.cluster.rpc_port(name), "gm_status")
                    heads[name] = (int(st["height"]), time.monotonic())
                tx = self._build(seq, heads[name][0])
                tx_id = self._submit(conns, name, tx)
            except (OSError, http.client.HTTPException, RuntimeError, ValueError) as exc:
                conns.pop(name, None)
                self._count(type(exc).__name__)
            else:
                if tx_id is not None:
                    self.acked[tx_id] = name
                    self.expiry[tx_id] = int(tx.body.expiry)
            next_t += period
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_t = time.monotonic()  # behind: do not burst to catch up
        for c in conns.values():
            c.close()

    def _build(self, seq: int, head: int) -> SignedTx:
        rid = f"drill-{id(self):x}-{seq}"
        body = TxBody(
            chain_id=self._chain_id,
            sender=self._key.public_key.to_bytes(),
            nonce=random.getrandbits(63),
            expiry=head + self._delta,  # type: ignore[arg-type]
            contract="evidence",
            method="submit",
            args=(rid, f"flow-{rid}", "drill", "load", bytes(32), None, [], 2, None),
        )
        return SignedTx(body=body, signature=self._key.sign(body.compute_id()))

    def _submit(
        self, conns: dict[str, http.client.HTTPConnection], name: str, tx: SignedTx
    ) -> str | None:
        conn = conns.get(name)
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.cluster.rpc_port(name), timeout=5.0)
            conns[name] = conn
        body = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "gm_sendRawTransaction",
                "params": ["0x" + tx.encode().hex()],
            }
        )
        conn.request("POST", "/", body, {"Content-Type": "application/json"})
        reply = json.loads(conn.getresponse().read())
        if "error" in reply:
            self._count(f"rpc:{reply['error'].get('code')}")
            return None
        tx_id = reply["result"]
        assert tx_id == "0x" + tx.tx_id.hex(), "node computed a different tx id"
        return str(tx_id)


# --- invariants ----------------------------------------------------------------------------------


@dataclass
class InvariantReport:
    height: int
    nodes: list[str]
    acked: int
    txs_in_chain: int


def check_invariants(
    cluster: Cluster,
    acked: dict[str, str],
    names: list[str] | None = None,
    *,
    expiry: dict[str, int] | None = None,
    stall_s: float = 30.0,
    timeout_s: float = 300.0,
) -> InvariantReport:
    """The two drill invariants (never skippable), after waiting for the nodes to converge.

    1. Every node in `names` (default: all) serves the same block hash at every height.
    2. Every acknowledged tx id is in exactly one block, and no tx id is in two blocks.
    """
    names = names or cluster.names

    def converged() -> tuple[int, str] | None:
        sts = [cluster.status(n) for n in names]
        if any(s is None for s in sts):
            return None
        heads = {(int(s["height"]), s["head"]) for s in sts if s is not None}
        if len(heads) != 1:
            return None
        ((h, head),) = heads
        # idle: nothing pending anywhere, so no acknowledged tx can still be on its way
        if any(int(s["pendingTxs"]) for s in sts if s is not None):
            return None
        return h, head

    # Converged = same head everywhere and nothing pending. Slow is not failure: give up only
    # when nothing moved (no height, no pool change) for `stall_s`, or after `timeout_s` in all.
    got = None
    start = last_move = time.monotonic()
    last_seen: Any = None
    while got is None:
        got = converged()
        if got is not None:
            break
        seen = (
            [(s or {}).get("height") for s in map(cluster.status, names)],
            [(s or {}).get("pendingTxs") for s in map(cluster.status, names)],
        )
        now = time.monotonic()
        if seen != last_seen:
            last_seen, last_move = seen, now
        if now - last_move > stall_s or now - start > timeout_s:
            detail = {n: cluster.status(n) for n in names}
            raise AssertionError(
                f"nodes did not converge (stalled {now - last_move:.0f}s, "
                f"waited {now - start:.0f}s): {detail}"
            )
        time.sleep(0.25)
    height = got[0]
    # 1. identical block hashes at every height on every node
    reference = cluster.blocks(names[0], height)
    ref_hashes = [b["hash"] for b in reference]
    assert [b["number"] for b in reference] == list(range(height + 1))
    for b_prev, b in itertools.pairwise(reference):
        assert b["parentHash"] == b_prev["hash"], f"broken parent link at {b['number']}"
    for n in names[1:]:
        hashes = cluster.block_hashes(n, height)
        diff = [h for h in range(height + 1) if hashes[h] != ref_hashes[h]]
        assert not diff, f"{n} differs from {names[0]} at heights {diff[:10]} (fork)"
    # 2. every acknowledged tx in exactly one block; no tx twice
    where: dict[str, list[int]] = {}
    for b in reference:
        for t in b["transactions"]:
            where.setdefault(t, []).append(int(b["number"]))
    twice = {t: hs for t, hs in where.items() if len(hs) > 1}
    assert not twice, f"transactions in more than one block: {list(twice.items())[:5]}"
    missing = [t for t in acked if t not in where]
    expired = [t for t in missing if expiry is not None and expiry.get(t, height + 1) <= height]
    assert not missing, (
        f"{len(missing)} of {len(acked)} acknowledged transactions are in no block "
        f"({len(expired)} of them expired unpacked: expiry <= head {height}), e.g. "
        f"{[(t, acked[t], (expiry or {}).get(t)) for t in missing[:5]]}"
    )
    return InvariantReport(
        height=height, nodes=list(names), acked=len(acked), txs_in_chain=len(where)
    )

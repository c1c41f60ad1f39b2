"""`gmchain cluster`: a local multi-node chain on 127.0.0.1, each node its own OS process.

    gmchain cluster init --validators 4 [--observers 1] --dir D [--base-rpc 8545] [--base-p2p 30300]
    gmchain cluster up --dir D [--wait S]         start every node that is not running
    gmchain cluster down --dir D                  SIGTERM, then SIGKILL after a grace period
    gmchain cluster status --dir D [--json]       each node's name, role, pid, rpc, height, head
    gmchain cluster kill --dir D NAME             SIGKILL one node (fault drills)

Layout of D: `genesis.json`, `client.key` (an admin account of org1), `cluster.json` (the node
list), and one folder per node: `config.toml`, `node.key`, `db/`, `node.log`, `node.pid`.
Keys are encrypted under the dev passphrase: a local cluster is for development and drills.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from crypto_sm import PrivateKey, save_private_key
from ledger.types import Genesis, GenesisValidator
from node.config import NodeConfig, PeerConfig, save_genesis, write_config
from node.daemon import DEV_PASSPHRASE

__all__ = ["init_cluster", "main", "node_status", "start_nodes", "stop_nodes"]

CHAIN_ID = "gmchain-local"


def init_cluster(
    d: Path,
    *,
    validators: int,
    observers: int = 0,
    base_rpc: int = 8545,
    base_p2p: int = 30300,
    round_timeout_ms: int = 2000,
) -> dict[str, Any]:
    if (d / "cluster.json").exists():
        raise SystemExit(f"error: {d} already holds a cluster (remove it or pick another --dir)")
    if validators < 1 or observers < 0 or validators + observers > 64:
        raise SystemExit("error: need 1..64 nodes in all, at least one validator")
    d.mkdir(parents=True, exist_ok=True)
    pw = DEV_PASSPHRASE.encode()
    nodes: list[dict[str, Any]] = []
    keys = []
    for i in range(validators + observers):
        role = "validator" if i < validators else "observer"
        name = f"node{i}" if role == "validator" else f"observer{i - validators}"
        key = PrivateKey.generate()
        keys.append(key)
        nd = d / name
        nd.mkdir(exist_ok=True)
        save_private_key(nd / "node.key", key, pw)
        nodes.append(
            {
                "name": name,
                "role": role,
                "pubkey": key.public_key.to_bytes().hex(),
                "rpc_port": base_rpc + i,
                "p2p_port": base_p2p + i,
                "org": f"org{i + 1}",
            }
        )
    client = PrivateKey.generate()
    save_private_key(d / "client.key", client, pw)
    genesis = Genesis(
        chain_id=CHAIN_ID,
        timestamp_ms=int(time.time() * 1000),
        validators=tuple(
            GenesisValidator(pubkey=bytes.fromhex(n["pubkey"]), power=1, org=n["org"])
            for n in nodes
            if n["role"] == "validator"
        ),
        observers=tuple(bytes.fromhex(n["pubkey"]) for n in nodes if n["role"] == "observer"),
        accounts=((client.public_key.to_bytes(), "org1", "admin"),),
    )
    save_genesis(d / "genesis.json", genesis)
    for n in nodes:
        peers = tuple(
            PeerConfig(pubkey=o["pubkey"], host="127.0.0.1", port=o["p2p_port"], name=o["name"])
            for o in nodes
            if o is not n
        )
        cfg = NodeConfig(
            name=n["name"],
            data_dir="db",
            genesis_file="../genesis.json",
            key_file="node.key",
            key_passphrase=DEV_PASSPHRASE,
            rpc_port=n["rpc_port"],
            p2p_port=n["p2p_port"],
            peers=peers,
            round_timeout_ms=round_timeout_ms,
        )
        write_config(d / n["name"] / "config.toml", cfg)
    doc = {"chain_id": CHAIN_ID, "nodes": nodes}
    (d / "cluster.json").write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def _load(d: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads((d / "cluster.json").read_text())
    except FileNotFoundError:
        raise SystemExit(
            f"error: no cluster in {d} (run `gmchain cluster init --dir {d}`)"
        ) from None
    return doc


def _pid(d: Path, name: str) -> int | None:
    try:
        pid = int((d / name / "node.pid").read_text())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    # A zombie child of this process counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split(")")[-1].split()[0] == "Z":
                return None
    except OSError:
        pass
    return pid


def start_nodes(d: Path, names: list[str] | None = None, *, wait_s: float = 20.0) -> list[str]:
    doc = _load(d)
    started = []
    for n in doc["nodes"]:
        name = n["name"]
        if names and name not in names:
            continue
        if _pid(d, name) is not None:
            continue
        nd = d / name
        log = open(nd / "node.log", "ab")  # noqa: SIM115 — handed to the child
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "node.cli",
                "node",
                "start",
                "--config",
                str(nd / "config.toml"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=str(nd),
        )
        log.close()
        (nd / "node.pid").write_text(str(proc.pid))
        started.append(name)
    deadline = time.monotonic() + wait_s
    for n in doc["nodes"]:
        if n["name"] not in started:
            continue
        while time.monotonic() < deadline:
            if node_status(n["rpc_port"]) is not None:
                break
            if _pid(d, n["name"]) is None:
                raise SystemExit(f"error: {n['name']} exited; see {d / n['name'] / 'node.log'}")
            time.sleep(0.1)
    return started


def stop_nodes(d: Path, names: list[str] | None = None, *, grace_s: float = 10.0) -> list[str]:
    doc = _load(d)
    stopped = []
    for n in doc["nodes"]:
        if names and n["name"] not in names:
            continue
        pid = _pid(d, n["name"])
        if pid is None:
            continue
        os.kill(pid, signal.SIGTERM)
        stopped.append(n["name"])
    deadline = time.monotonic() + grace_s
    for name in stopped:
        while _pid(d, name) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        pid = _pid(d, name)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
    return stopped


def kill_node(d: Path, name: str) -> bool:
    pid = _pid(d, name)
    if pid is None:
        return False
    os.kill(pid, signal.SIGKILL)
    return True


def node_status(rpc_port: int, timeout_s: float = 1.0) -> dict[str, Any] | None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "gm_status", "params": []}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{rpc_port}/",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            reply = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    result = reply.get("result")
    return result if isinstance(result, dict) else None


def cluster_status(d: Path) -> dict[str, Any]:
    doc = _load(d)
    out = []
    for n in doc["nodes"]:
        pid = _pid(d, n["name"])
        st = node_status(n["rpc_port"]) if pid is not None else None
        out.append(
            {
                "name": n["name"],
                "role": n["role"],
                "pid": pid,
                "rpc": f"http://127.0.0.1:{n['rpc_port']}",
                "height": None if st is None else st.get("height"),
                "head": None if st is None else st.get("head"),
            }
        )
    return {"nodes": out}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gmchain cluster", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pi = sub.add_parser("init", help="create keys, genesis and one config per node")
    pi.add_argument("--validators", type=int, default=4)
    pi.add_argument("--observers", type=int, default=0)
    pi.add_argument("--dir", required=True)
    pi.add_argument("--base-rpc", type=int, default=8545)
    pi.add_argument("--base-p2p", type=int, default=30300)
    pi.add_argument("--round-timeout-ms", type=int, default=2000)
    pu = sub.add_parser("up", help="start every node that is not running")
    pu.add_argument("--dir", required=True)
    pu.add_argument("--wait", type=float, default=20.0, help="seconds to wait for RPC")
    pu.add_argument("nodes", nargs="*", help="only these nodes")
    pd = sub.add_parser("down", help="stop nodes (SIGTERM, then SIGKILL)")
    pd.add_argument("--dir", required=True)
    pd.add_argument("nodes", nargs="*", help="only these nodes")
    ps = sub.add_parser("status", help="each node's pid, height and head")
    ps.add_argument("--dir", required=True)
    ps.add_argument("--json", action="store_true")
    pk = sub.add_parser("kill", help="SIGKILL one node (drills)")
    pk.add_argument("--dir", required=True)
    pk.add_argument("node")
    args = p.parse_args(argv)
    d = Path(args.dir)
    if args.cmd == "init":
        doc = init_cluster(
            d,
            validators=args.validators,
            observers=args.observers,
            base_rpc=args.base_rpc,
            base_p2p=args.base_p2p,
            round_timeout_ms=args.round_timeout_ms,
        )
        for n in doc["nodes"]:
            print(
                f"{n['name']:12} {n['role']:9} rpc 127.0.0.1:{n['rpc_port']}  p2p {n['p2p_port']}"
            )
        print(f"cluster in {d}; start it with: gmchain cluster up --dir {d}")
    elif args.cmd == "up":
        started = start_nodes(d, args.nodes or None, wait_s=args.wait)
        print("started: " + (", ".join(started) if started else "nothing (all running)"))
    elif args.cmd == "down":
        stopped = stop_nodes(d, args.nodes or None)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing (none running)"))
    elif args.cmd == "status":
        st = cluster_status(d)
        if args.json:
            print(json.dumps(st))
        else:
            for n in st["nodes"]:
                head = (n["head"] or "-")[:18]
                pid = n["pid"] or "down"
                print(
                    f"{n['name']:12} {n['role']:9} pid {pid!s:>7} height {n['height']!s:>6} {head}"
                )
    elif args.cmd == "kill" and not kill_node(d, args.node):
        print(f"{args.node} is not running", file=sys.stderr)
        return 1
    return 0

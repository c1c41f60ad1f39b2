"""`gmchain cluster`: a local multi-node chain on 127.0.0.1, each node its own OS process.

    gmchain cluster init --validators 4 [--observers 1] --dir D [--base-rpc 8545] [--base-p2p 30300]
    gmchain cluster up --dir D [--wait S]         start every node that is not running
    gmchain cluster down --dir D                  SIGTERM, then SIGKILL after a grace period
    gmchain cluster status --dir D [--json]       each node's name, role, pid, rpc, height, head
    gmchain cluster kill --dir D NAME             SIGKILL one node (fault drills)
    gmchain cluster add-node --dir D [--name N] [--org ORG]   a joining node (not admitted yet)

Layout of D: `genesis.json`, `client.key` (an admin account of org1), `admins/orgK.key` (an admin
account of each other validator org, K = 2..: with client.key, one key per seat of the default
governance committee), `cluster.json` (the node list), and one folder per node: `config.toml`,
`node.key`, `db/`, `node.log`, `node.pid`.
Keys are encrypted under the dev passphrase: a local cluster is for development and drills.

Rules this module keeps:
1. A signal goes only to a process whose command line is this node's `node start --config
   <D>/<name>/config.toml`; a pid file naming anything else is stale, removed and reported.
2. `up` is all or nothing for the nodes it starts: ports are checked first (nothing starts if
   one is busy), and if a node exits or does not answer within --wait, the nodes this call
   started are stopped again.
3. While `up` waits, a node it started is judged by its own child process (the Popen handle),
   never by its pid file: a node counts as exited only once that child has exited, and giving up
   stops and reaps every child this call started. Right after spawn the child is inside execve
   and /proc shows no command line yet (measured: most spawns on a loaded machine, for up to
   ~50 ms); rule 1 would take that for a stranger, remove the pid file and orphan the node.
4. Every failure is one line on stderr (ClusterError) saying what failed and what to do; exit 1.
5. `add-node` (node/cluster_join.py, which keeps its own rules) adds a node the committee has not
   admitted yet; `up` starts it like any node, and the others refuse it until an epoch admits it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gmchain.crypto_sm import PrivateKey, save_private_key
from gmchain.ledger.types import Genesis, GenesisValidator
from gmchain.node.cli_meta import CliParser
from gmchain.node.config import NodeConfig, PeerConfig, save_genesis, write_config
from gmchain.node.daemon import DEV_PASSPHRASE

__all__ = [
    "ClusterError",
    "init_cluster",
    "kill_node",
    "load_cluster",
    "main",
    "node_status",
    "start_nodes",
    "stop_nodes",
    "terminate_processes",
]

CHAIN_ID = "gmchain-local"
# The nodes of a local cluster share the machine's cores: the consensus thread goes first within
# each (node/config.py `worker_nice`; docs/ops.md). A node alone on its server keeps 0.
CLUSTER_WORKER_NICE = 5


class ClusterError(Exception):
    """A `gmchain cluster` failure, reported as one line that says what to do."""


def init_cluster(
    d: Path,
    *,
    validators: int,
    observers: int = 0,
    base_rpc: int = 8545,
    base_p2p: int = 30300,
    round_timeout_ms: int = 2000,
    chain_id: str = CHAIN_ID,
    orgs: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Keys, genesis and configs of a new cluster in `d`; node i's org is `orgs[i]` (default
    org1, org2, ...; distinct, one per node), the chain's id `chain_id`."""
    if (d / "cluster.json").exists():
        raise ClusterError(f"{d} already holds a cluster; remove it or pick another --dir")
    if validators < 1 or observers < 0 or validators + observers > 64:
        raise ClusterError("need 1..64 nodes in all, at least one validator")
    names = list(orgs) if orgs is not None else [f"org{i + 1}" for i in range(64)]
    if len(set(names)) != len(names) or len(names) < validators + observers:
        raise ClusterError("orgs: one distinct org name per node")
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
                "org": names[i],
            }
        )
    client = PrivateKey.generate()
    save_private_key(d / "client.key", client, pw)
    accounts = [(client.public_key.to_bytes(), nodes[0]["org"], "admin")]
    for n in nodes[1:validators]:  # the other validator orgs' admins (the committee's seats)
        admin = PrivateKey.generate()
        (d / "admins").mkdir(exist_ok=True)
        save_private_key(d / "admins" / f"{n['org']}.key", admin, pw)
        accounts.append((admin.public_key.to_bytes(), n["org"], "admin"))
    genesis = Genesis(
        chain_id=chain_id,
        timestamp_ms=int(time.time() * 1000),
        validators=tuple(
            GenesisValidator(pubkey=bytes.fromhex(n["pubkey"]), power=1, org=n["org"])
            for n in nodes
            if n["role"] == "validator"
        ),
        observers=tuple(bytes.fromhex(n["pubkey"]) for n in nodes if n["role"] == "observer"),
        accounts=tuple(accounts),
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
            worker_nice=CLUSTER_WORKER_NICE,
        )
        write_config(d / n["name"] / "config.toml", cfg)
    doc = {"chain_id": chain_id, "nodes": nodes}
    (d / "cluster.json").write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def load_cluster(d: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads((d / "cluster.json").read_text())
    except FileNotFoundError:
        raise ClusterError(
            f"no cluster in {d} (no cluster.json); create one with `gmchain cluster init --dir {d}`"
        ) from None
    except (OSError, ValueError) as exc:
        raise ClusterError(f"cannot read {d / 'cluster.json'}: {exc}") from None
    return doc


def _config_path(d: Path, name: str) -> Path:
    return (d / name / "config.toml").resolve()


def _node_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "gmchain.node.cli", "node", "start", "--config", str(config)]


def _cmdline(pid: int) -> list[str] | None:
    """The argv of process `pid` (None if it has gone or cannot be read)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        if Path("/proc/self/cmdline").exists():
            return None  # Linux: the process has gone
        out = subprocess.run(  # no /proc (macOS, BSD): ask ps
            ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True
        )
        return out.stdout.split() if out.returncode == 0 and out.stdout.strip() else None
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat from field 3 (state) on ([] if unreadable)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()
    except OSError:
        return []


def _is_zombie(pid: int) -> bool:
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] == "Z"


_PF_KTHREAD = 0x00200000  # /proc/<pid>/stat field 9 (flags): a kernel thread
EXEC_SETTLE_S = 2.0  # how long a live process may show an empty command line (inside execve)


def _settled_cmdline(pid: int) -> list[str] | None:
    """`_cmdline(pid)`, waiting up to EXEC_SETTLE_S while it is empty for a live user process.

    Inside execve the new image's argv is not set up yet, and /proc/<pid>/cmdline reads empty:
    another `gmchain cluster` run reading a node's pid file just after `up` wrote it would see
    that. A kernel thread (always empty) and a zombie are answered at once."""
    deadline = time.monotonic() + EXEC_SETTLE_S
    while True:
        argv = _cmdline(pid)
        if argv != [] or time.monotonic() > deadline:
            return argv
        fields = _stat_fields(pid)
        if not fields or fields[0] == "Z" or int(fields[6]) & _PF_KTHREAD:
            return argv
        time.sleep(0.01)


def _gone(pid: int) -> bool:
    """Whether `pid` has exited (no such process, or a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by another user: certainly not a node we started
    return _is_zombie(pid)


def _is_our_node(pid: int, config: Path) -> bool:
    """Whether `pid` runs `node start --config <config>`: a pid file can outlive its process
    (a reboot, a crash), and the system may have given the pid to an unrelated program."""
    argv = _settled_cmdline(pid)
    if (
        not argv
        or len(argv) < 5
        or argv[-5:-1] != ["gmchain.node.cli", "node", "start", "--config"]
    ):
        return False
    given = Path(argv[-1])
    if not given.is_absolute():  # (started with a relative path: it is relative to its cwd)
        try:
            given = Path(os.readlink(f"/proc/{pid}/cwd")) / given
        except OSError:
            return False
    return given.resolve() == config


def _pid(d: Path, name: str, *, notes: list[str] | None = None) -> int | None:
    """The pid of node `name` if that node is running, else None.

    A pid file naming a process that is not this node is stale: it is removed (with a line in
    `notes` when given) and that process is never signalled."""
    pid_file = d / name / "node.pid"
    try:
        pid = int(pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    if _gone(pid):  # (a zombie child of this process counts as dead)
        return None
    if not _is_our_node(pid, _config_path(d, name)):
        if _gone(pid):  # it exited while we looked (an exiting process shows no command line)
            return None
        argv = _cmdline(pid) or ["?"]
        if notes is not None:
            notes.append(
                f"{name}: node.pid names pid {pid}, which is not this node "
                f"(it runs {' '.join(argv)[:80]!r}); not signalling it, removed the stale pid file"
            )
        pid_file.unlink(missing_ok=True)
        return None
    return pid


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _check_ports(nodes: list[dict[str, Any]]) -> None:
    for n in nodes:
        for what, port in (("rpc", n["rpc_port"]), ("p2p", n["p2p_port"])):
            if _port_in_use(port):
                raise ClusterError(
                    f"{n['name']}: {what} port {port} on 127.0.0.1 is in use (by another program "
                    "or another cluster); nothing was started. Free the port, or create the "
                    "cluster again with other --base-rpc/--base-p2p"
                )


def _last_line(path: Path, width: int = 160) -> str:
    """A log's last line, cut to `width` characters ("" if unreadable); also node/platform_procs."""
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:width] if lines else ""


def start_nodes(
    d: Path,
    names: list[str] | None = None,
    *,
    wait_s: float = 20.0,
    notes: list[str] | None = None,
) -> list[str]:
    """Start every node (of `names`) that is not running and wait until each answers RPC.

    All or nothing for this call: ports are checked before anything starts, and if a node exits
    or does not answer within `wait_s`, the nodes this call started are stopped again and
    ClusterError says which node failed and where its log is. A node counts as exited only when
    the child process this call spawned has exited (rule 3); whatever ends the wait early (a
    failure, an exception, Ctrl-C) stops and reaps every child this call started."""
    doc = load_cluster(d)
    todo = [
        n
        for n in doc["nodes"]
        if (not names or n["name"] in names) and _pid(d, n["name"], notes=notes) is None
    ]
    _check_ports(todo)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for n in todo:
            name = n["name"]
            nd = (d / name).resolve()
            with open(nd / "node.log", "ab") as log:  # the child holds its own copy
                procs[name] = subprocess.Popen(
                    _node_command(_config_path(d, name)),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    cwd=str(nd),
                )
            (nd / "node.pid").write_text(str(procs[name].pid))
        deadline = time.monotonic() + wait_s
        for n in todo:
            failure = _wait_answers(d, n, procs[n["name"]], deadline, wait_s)
            if failure is not None:
                raise _StartFailed(n["name"], failure)
    except BaseException as exc:
        stopped = _stop_children(d, procs)
        if not isinstance(exc, _StartFailed):
            raise
        undone = f"stopped {', '.join(stopped)} again" if stopped else "nothing left running"
        raise ClusterError(
            f"{exc.failure}; {undone}. See {d / exc.name / 'node.log'}, fix it and run "
            f"`gmchain cluster up --dir {d}` again"
        ) from None
    return list(procs)


class _StartFailed(Exception):
    def __init__(self, name: str, failure: str) -> None:
        super().__init__(failure)
        self.name = name
        self.failure = failure


def _wait_answers(
    d: Path, n: dict[str, Any], proc: subprocess.Popen[bytes], deadline: float, wait_s: float
) -> str | None:
    """None once node `n` answers gm_status, else why it will not: its process `proc` exited
    (with the last line of its log), or `deadline` passed."""
    name = n["name"]
    while node_status(n["rpc_port"]) is None:
        code = proc.poll()
        if code is not None:
            how = f"with code {code}" if code >= 0 else f"on signal {-code}"
            why = _last_line(d / name / "node.log")
            return f"{name} exited at start {how}" + (f" ({why})" if why else "")
        if time.monotonic() > deadline:
            return f"{name} did not answer on rpc port {n['rpc_port']} within {wait_s:g} s"
        time.sleep(0.1)
    return None


def _stop_children(
    d: Path, procs: dict[str, subprocess.Popen[bytes]], grace_s: float = 10.0
) -> list[str]:
    """Stop the node processes this call spawned (SIGTERM, SIGKILL after `grace_s`), reap them
    and remove their pid files; the names of those that were still running.

    Signalling by handle is safe: a child not yet reaped keeps its pid, so no other process can
    hold it."""
    running = [name for name, p in procs.items() if p.poll() is None]
    terminate_processes([procs[name] for name in running], grace_s)
    for name in procs:
        (d / name / "node.pid").unlink(missing_ok=True)
    return running


def terminate_processes(procs: Sequence[subprocess.Popen[bytes]], grace_s: float = 10.0) -> None:
    """SIGTERM every process of `procs` still running, SIGKILL those not gone `grace_s` later,
    and reap them all (processes this process started)."""
    running = [p for p in procs if p.poll() is None]
    for p in running:
        p.terminate()
    deadline = time.monotonic() + grace_s
    for p in running:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def stop_nodes(
    d: Path,
    names: list[str] | None = None,
    *,
    grace_s: float = 10.0,
    notes: list[str] | None = None,
) -> list[str]:
    doc = load_cluster(d)
    stopped: dict[str, int] = {}
    for n in doc["nodes"]:
        if names and n["name"] not in names:
            continue
        pid = _pid(d, n["name"], notes=notes)
        if pid is None:
            (d / n["name"] / "node.pid").unlink(missing_ok=True)
            continue
        os.kill(pid, signal.SIGTERM)
        stopped[n["name"]] = pid
    deadline = time.monotonic() + grace_s
    for name, pid in stopped.items():
        while _pid(d, name) == pid and time.monotonic() < deadline:
            time.sleep(0.05)
        if _pid(d, name) == pid:
            os.kill(pid, signal.SIGKILL)
        (d / name / "node.pid").unlink(missing_ok=True)
    return list(stopped)


def kill_node(d: Path, name: str, *, notes: list[str] | None = None) -> bool:
    pid = _pid(d, name, notes=notes)
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


def cluster_status(d: Path, *, notes: list[str] | None = None) -> dict[str, Any]:
    doc = load_cluster(d)
    out = []
    for n in doc["nodes"]:
        pid = _pid(d, n["name"], notes=notes)
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


def build_parser() -> argparse.ArgumentParser:
    """The parser of `gmchain cluster` (its help and completion: node/cli_meta.py)."""
    p = CliParser(prog="gmchain cluster", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=CliParser)
    dir_help = "the cluster's folder"
    pi = sub.add_parser("init", help="create keys, genesis and one config per node")
    pi.add_argument("--validators", type=int, default=4, help="number of validators")
    pi.add_argument("--observers", type=int, default=0, help="number of observers")
    pi.add_argument("--dir", required=True, help=dir_help + " (new)")
    pi.add_argument("--base-rpc", type=int, default=8545, help="first RPC port (node i: + i)")
    pi.add_argument("--base-p2p", type=int, default=30300, help="first P2P port (node i: + i)")
    pi.add_argument("--round-timeout-ms", type=int, default=2000, help="nodes' round_timeout_ms")
    pu = sub.add_parser("up", help="start every node that is not running")
    pu.add_argument("--dir", required=True, help=dir_help)
    pu.add_argument("--wait", type=float, default=20.0, help="seconds to wait for RPC")
    pu.add_argument("nodes", nargs="*", help="only these nodes (default: all)")
    pd = sub.add_parser("down", help="stop nodes (SIGTERM, then SIGKILL)")
    pd.add_argument("--dir", required=True, help=dir_help)
    pd.add_argument("nodes", nargs="*", help="only these nodes (default: all)")
    ps = sub.add_parser("status", help="each node's pid, height and head")
    ps.add_argument("--dir", required=True, help=dir_help)
    ps.add_argument("--json", action="store_true", help="print one JSON document")
    pk = sub.add_parser("kill", help="SIGKILL one node (drills)")
    pk.add_argument("--dir", required=True, help=dir_help)
    pk.add_argument("node", help="the node's name (nodeN)")
    pa = sub.add_parser("add-node", help="add a joining node (admitted by a vote)")
    pa.add_argument("--dir", required=True, help=dir_help)
    pa.add_argument("--name", help="the node's folder and name (default: the next nodeN)")
    pa.add_argument("--org", default="org1", help="its organisation, known to the chain")
    pa.add_argument("--rpc-port", type=int, help="default: the highest node rpc port + 1")
    pa.add_argument("--p2p-port", type=int, help="default: the highest node p2p port + 1")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    notes: list[str] = []
    try:
        return _run(args, notes)
    except ClusterError as exc:
        print(f"gmchain cluster: {exc}", file=sys.stderr)
        return 1
    finally:
        for note in notes:
            print(f"gmchain cluster: {note}", file=sys.stderr)


def _run(args: argparse.Namespace, notes: list[str]) -> int:
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
        started = start_nodes(d, args.nodes or None, wait_s=args.wait, notes=notes)
        print("started: " + (", ".join(started) if started else "nothing (all running)"))
    elif args.cmd == "down":
        stopped = stop_nodes(d, args.nodes or None, notes=notes)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing (none running)"))
    elif args.cmd == "status":
        st = cluster_status(d, notes=notes)
        if args.json:
            print(json.dumps(st))
        else:
            for n in st["nodes"]:
                head = (n["head"] or "-")[:18]
                pid = n["pid"] or "down"
                print(
                    f"{n['name']:12} {n['role']:9} pid {pid!s:>7} height {n['height']!s:>6} {head}"
                )
    elif args.cmd == "add-node":
        from gmchain.node.cluster_join import add_node

        n = add_node(
            d, name=args.name, org=args.org, rpc_port=args.rpc_port, p2p_port=args.p2p_port
        )
        print(f"{n['name']:12} {n['role']:9} rpc 127.0.0.1:{n['rpc_port']}  p2p {n['p2p_port']}")
        print(f"node id      {n['node_id']}\njoin request {n['join_request']}")
        print(
            "every node now lists it among its peers; the committee admits it with "
            "admit_observer (docs/joining.md); start it with: "
            f"gmchain cluster up --dir {d} {n['name']}"
        )
    elif args.cmd == "kill" and not kill_node(d, args.node, notes=notes):
        if args.node not in {n["name"] for n in load_cluster(d)["nodes"]}:
            raise ClusterError(f"no node {args.node!r} in {d}; see `gmchain cluster status`")
        raise ClusterError(f"{args.node} is not running; nothing was signalled")
    return 0

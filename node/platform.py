"""`gmchain platform`: a regulator chain, two business chains and their relayers on one machine
(issue 13 item 6; docs/crosschain.md, "The platform").

    gmchain platform up [--dir D] [--validators N] [--base-port P] [--wait S]
    gmchain platform down [--dir D]
    gmchain platform status [--dir D] [--json]

D defaults to $GMCHAIN_HOME/platform (~/.gmchain/platform); P to $GMCHAIN_PLATFORM_BASE_PORT,
else 8600. Layout of D: `platform.json` (chains, ports, relayers, whether the on-chain set-up is
done), one local cluster folder per chain (`regulator/`, `firm-a/`, `firm-b/`: node/cluster.py's
layout, chain id = the folder name), `relayers/<firm>.key|.log|.pid`, and `env.sh` (the URLs,
keys and genesis files, for a shell: `. D/env.sh`).

Ports: chain i (regulator 0, firm-a 1, firm-b 2), node k: rpc P + 20*i + k, p2p P + 20*i + 10 + k;
the relayer of firm-a serves its metrics on P + 61, of firm-b on P + 62. N <= 10.

Rules this module keeps:
1. `up` creates D on first use (keys, genesis files, configs: node/cluster.py `init_cluster`;
   each chain's validator orgs are named after it: `firm-a`, `firm-a-2`, ...; the first org's
   admin key is the cluster's `client.key`), after checking that every port is free: a busy port
   is one line naming it and its owner's role, and nothing is created or started.
2. `up` starts what is not running, in order: the chains' nodes, the on-chain set-up
   (node/platform_setup.py: relayer accounts, registrations and relay rules by governance vote),
   then one `gmchain relay` process per business chain. If anything fails, what this call
   started is stopped again and the error says which step failed and where the log is. When
   everything already runs, `up` says so and changes nothing (exit 0).
3. A signal goes only to a process whose command line is the one started for it (node/cluster.py
   rule 1 for nodes, node/platform_procs.py rule 2 for relayers); a pid file naming anything else
   is stale: removed and reported, never signalled.
4. `down` stops the relayers first (nothing half-submitted is lost: a relayer is stateless),
   then the business chains, then the regulator, and prints what it stopped.
5. `status` only reads: each chain's nodes and height, and per relayer its process and the
   progress read from the chains (node/platform_setup.py rule 4): lag in blocks (business head
   minus the regulator's verified height of it), records queued, delivered, missing, acked.
6. Keys are under the dev passphrase: the platform is for development, demos and drills.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gmchain.crypto_sm import PrivateKey, load_private_key, save_private_key
from gmchain.node.cluster import (
    ClusterError,
    _port_in_use,
    cluster_status,
    init_cluster,
    load_cluster,
    start_nodes,
    stop_nodes,
)
from gmchain.node.config import gmchain_home
from gmchain.node.daemon import DEV_PASSPHRASE
from gmchain.node.platform_procs import (
    BUSINESS,
    CHAINS,
    REGULATOR,
    RELAYER_STOP_S,
    PlatformError,
    chain_url,
    relayer_key,
    relayer_pid,
    start_relayer,
    stop_pid,
    stop_relayers,
)
from gmchain.node.platform_setup import (
    ChainAccess,
    PlatformSetupError,
    read_progress,
    set_up_chains,
)
from gmchain.node.sdk import SdkError

__all__ = [
    "BUSINESS",
    "CHAINS",
    "REGULATOR",
    "PlatformError",
    "default_dir",
    "init_platform",
    "load_platform",
    "main",
    "platform_down",
    "platform_status",
    "platform_up",
    "stop_relayers",
]

DEFAULT_BASE_PORT = 8600
BASE_PORT_ENV = "GMCHAIN_PLATFORM_BASE_PORT"
CHAIN_STRIDE = 20  # ports per chain (rpc at +0.., p2p at +10..)
MAX_VALIDATORS = 10
SETUP_ROUND_TIMEOUT_MS = 2000


def default_dir() -> Path:
    return gmchain_home() / "platform"


def default_base_port() -> int:
    text = os.environ.get(BASE_PORT_ENV)
    if not text:
        return DEFAULT_BASE_PORT
    try:
        return int(text)
    except ValueError:
        raise PlatformError(f"${BASE_PORT_ENV}={text!r} is not a port number") from None


def _orgs(chain: str, n: int) -> list[str]:
    return [chain] + [f"{chain}-{k}" for k in range(2, n + 1)]


def _ports(base: int, n: int) -> list[tuple[int, str]]:
    """Every port the platform would use, with its owner (rule 1)."""
    out = []
    for i, chain in enumerate(CHAINS):
        for k in range(n):
            out.append((base + CHAIN_STRIDE * i + k, f"{chain} node{k} rpc"))
            out.append((base + CHAIN_STRIDE * i + 10 + k, f"{chain} node{k} p2p"))
    for j, firm in enumerate(BUSINESS):
        out.append((_metrics_port(base, j), f"relayer of {firm} metrics"))
    return out


def _metrics_port(base: int, j: int) -> int:
    return base + CHAIN_STRIDE * len(CHAINS) + 1 + j


def init_platform(
    d: Path, *, validators: int = 1, base_port: int = DEFAULT_BASE_PORT
) -> dict[str, Any]:
    """Rule 1: the folder of a new platform (nothing runs yet); its platform.json document."""
    if (d / "platform.json").exists():
        raise PlatformError(f"{d} already holds a platform")
    if not 1 <= validators <= MAX_VALIDATORS:
        raise PlatformError(f"--validators: 1..{MAX_VALIDATORS} per chain")
    top = 65535 - CHAIN_STRIDE * len(CHAINS) - len(BUSINESS) - 1
    if not 1024 <= base_port <= top:
        raise PlatformError(f"--base-port {base_port}: pick a port in 1024..{top}")
    for port, owner in _ports(base_port, validators):
        if _port_in_use(port):
            raise PlatformError(
                f"port {port} ({owner}) on 127.0.0.1 is in use, by another program or another "
                f"platform; nothing was created. Free it, or pick another --base-port"
            )
    d.mkdir(parents=True, exist_ok=True)
    chains = {}
    for i, chain in enumerate(CHAINS):
        base = base_port + CHAIN_STRIDE * i
        try:
            init_cluster(
                d / chain,
                validators=validators,
                base_rpc=base,
                base_p2p=base + 10,
                chain_id=chain,
                orgs=_orgs(chain, validators),
                round_timeout_ms=SETUP_ROUND_TIMEOUT_MS,
            )
        except ClusterError as exc:
            raise PlatformError(f"{chain}: {exc}") from None
        chains[chain] = {"dir": chain, "rpc_port": base}
    (d / "relayers").mkdir(exist_ok=True)
    relayers = {}
    for j, firm in enumerate(BUSINESS):
        save_private_key(
            d / "relayers" / f"{firm}.key", PrivateKey.generate(), DEV_PASSPHRASE.encode()
        )
        relayers[firm] = {
            "key": f"relayers/{firm}.key",
            "metrics_port": _metrics_port(base_port, j),
        }
    doc = {
        "version": 1,
        "validators": validators,
        "base_port": base_port,
        "chains": chains,
        "relayers": relayers,
        "setup_done": False,
    }
    _save(d, doc)
    _write_env(d, doc)
    return doc


def _save(d: Path, doc: dict[str, Any]) -> None:
    tmp = d / "platform.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(d / "platform.json")


def load_platform(d: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads((d / "platform.json").read_text())
    except FileNotFoundError:
        raise PlatformError(
            f"no platform in {d} (no platform.json); create one with "
            f"`gmchain platform up --dir {d}`"
        ) from None
    except (OSError, ValueError) as exc:
        raise PlatformError(f"cannot read {d / 'platform.json'}: {exc}") from None
    return doc


def _env_name(chain: str) -> str:
    return chain.upper().replace("-", "_")


def _write_env(d: Path, doc: dict[str, Any]) -> None:
    root = d.resolve()
    lines = [f"# written by `gmchain platform up`: the platform in {root}"]
    lines.append(f"export GMCHAIN_PLATFORM_DIR={root}")
    for chain in CHAINS:
        name = _env_name(chain)
        lines.append(f"export {name}_RPC={chain_url(doc, chain)}")
        lines.append(f"export {name}_KEY={root / chain / 'client.key'}")
        lines.append(f"export {name}_GENESIS={root / chain / 'genesis.json'}")
    (d / "env.sh").write_text("\n".join(lines) + "\n")


# --- up, down, status --------------------------------------------------------------------------


def _access(d: Path, doc: dict[str, Any], chain: str) -> ChainAccess:
    cdir = d / chain
    pw = DEV_PASSPHRASE.encode()
    nodes = [n for n in load_cluster(cdir)["nodes"] if n["role"] == "validator"]
    admins = [(nodes[0]["org"], load_private_key(cdir / "client.key", pw))]
    for n in nodes[1:]:
        admins.append((n["org"], load_private_key(cdir / "admins" / f"{n['org']}.key", pw)))
    return ChainAccess(
        chain_id=chain,
        rpc=chain_url(doc, chain),
        genesis_file=cdir / "genesis.json",
        admins=tuple(admins),
    )


def platform_up(
    d: Path,
    *,
    validators: int | None = None,
    base_port: int | None = None,
    wait_s: float = 30.0,
    notes: list[str] | None = None,
    say: Callable[[str], None] | None = None,
) -> list[str]:
    """Rules 1-2; the lines saying what was done (one line "already up" if nothing was to do),
    each also passed to `say` as soon as it is done."""
    lines: list[str] = []

    def tell(line: str) -> None:
        lines.append(line)
        if say is not None:
            say(line)

    if not (d / "platform.json").exists():
        init_platform(d, validators=validators or 1, base_port=base_port or default_base_port())
        tell(f"created the platform in {d}")
    doc = load_platform(d)
    if (validators is not None and validators != doc["validators"]) or (
        base_port is not None and base_port != doc["base_port"]
    ):
        raise PlatformError(
            f"{d} holds a platform of {doc['validators']} validator(s) per chain on base port "
            f"{doc['base_port']}; run it as it is, or `gmchain platform down` and remove {d}, "
            "or use another --dir"
        )
    started_nodes: list[tuple[str, list[str]]] = []
    started_relayers: list[str] = []
    try:
        for chain, names in _start_chains(d, wait_s, notes, started_nodes):
            tell(f"started {chain}: {', '.join(names)} (rpc {chain_url(doc, chain)})")
        if not doc["setup_done"]:
            if say is not None:
                say("on-chain set-up: relayer accounts, registrations and relay rules by vote ...")
            regulator = _access(d, doc, REGULATOR)
            business = [_access(d, doc, f) for f in BUSINESS]
            keys = [
                load_private_key(relayer_key(d, doc, f), DEV_PASSPHRASE.encode()) for f in BUSINESS
            ]
            for line in asyncio.run(set_up_chains(regulator, business, keys)):
                tell(line)
            doc["setup_done"] = True
            _save(d, doc)
        todo = [f for f in BUSINESS if relayer_pid(d, doc, f, notes) is None]
        with ThreadPoolExecutor(max_workers=len(BUSINESS)) as pool:  # each waits for its port
            futures = [(f, pool.submit(start_relayer, d, doc, f, wait_s)) for f in todo]
            failures = []
            for firm, fut in futures:
                try:
                    proc = fut.result()
                except PlatformError as exc:
                    failures.append(str(exc))
                    continue
                started_relayers.append(firm)
                tell(
                    f"started the relayer of {firm} (pid {proc.pid}, log "
                    f"{d / 'relayers' / (firm + '.log')})"
                )
            if failures:
                raise PlatformError("; ".join(failures))
    except BaseException as exc:
        undone = _undo(d, doc, started_nodes, started_relayers)
        if isinstance(exc, PlatformError | ClusterError | PlatformSetupError | SdkError):
            raise PlatformError(f"{exc}; {undone}") from None
        raise
    if not lines:
        line = f"the platform in {d} is already up (see `gmchain platform status --dir {d}`)"
        tell(line)
        return lines
    _write_env(d, doc)
    tell(f"platform up: URLs and keys for a shell in {d / 'env.sh'} (. {d / 'env.sh'})")
    return lines


def _start_chains(
    d: Path, wait_s: float, notes: list[str] | None, started: list[tuple[str, list[str]]]
) -> list[tuple[str, list[str]]]:
    """The three chains' nodes, started at once (each start waits for its nodes' RPC); what was
    started is appended to `started` even when another chain fails (rule 2 stops it again)."""
    with ThreadPoolExecutor(max_workers=len(CHAINS)) as pool:
        futures = [(c, pool.submit(start_nodes, d / c, wait_s=wait_s, notes=notes)) for c in CHAINS]
        failures = []
        for chain, fut in futures:
            try:
                names = fut.result()
            except ClusterError as exc:
                failures.append(f"{chain}: {exc}")
                continue
            if names:
                started.append((chain, names))
    if failures:
        raise PlatformError("; ".join(failures))
    return list(started)


def _undo(
    d: Path,
    doc: dict[str, Any],
    started_nodes: list[tuple[str, list[str]]],
    started_relayers: list[str],
) -> str:
    """Rule 2: stop what this call started; says what was stopped."""
    stopped = []
    for firm in started_relayers:
        pid = relayer_pid(d, doc, firm)
        if pid is not None:
            stop_pid(pid, RELAYER_STOP_S, lambda p=pid, f=firm: relayer_pid(d, doc, f) == p)
            stopped.append(f"the relayer of {firm}")
    for chain, names in reversed(started_nodes):
        stop_nodes(d / chain, names)
        stopped.append(f"{chain} ({', '.join(names)})")
    return "stopped " + ", ".join(stopped) + " again" if stopped else "nothing was left running"


def platform_down(d: Path, *, notes: list[str] | None = None) -> list[str]:
    """Rule 4; what was stopped."""
    doc = load_platform(d)
    lines = stop_relayers(d, doc, notes)
    for chain in (*BUSINESS, REGULATOR):
        names = stop_nodes(d / chain, notes=notes)
        if names:
            lines.append(f"stopped {chain}: {', '.join(names)}")
    return lines or [f"nothing was running in {d}"]


def platform_status(d: Path, *, notes: list[str] | None = None) -> dict[str, Any]:
    """Rule 5."""
    doc = load_platform(d)
    chains = []
    for chain in CHAINS:
        st = cluster_status(d / chain, notes=notes)["nodes"]
        heights = [n["height"] for n in st if n["height"] is not None]
        chains.append(
            {
                "chain": chain,
                "rpc": chain_url(doc, chain),
                "running": sum(1 for n in st if n["pid"] is not None),
                "nodes": len(st),
                "height": max(heights) if heights else None,
            }
        )
    up = all(c["running"] for c in chains)
    progress = (
        asyncio.run(
            read_progress(chain_url(doc, REGULATOR), [(f, chain_url(doc, f)) for f in BUSINESS])
        )
        if up and doc["setup_done"]
        else {"business": [{"chain": f} for f in BUSINESS]}
    )
    relayers = []
    for firm, p in zip(BUSINESS, progress["business"], strict=True):
        pid = relayer_pid(d, doc, firm, notes)
        relayers.append(
            {"business": firm, "pid": pid, **{k: v for k, v in p.items() if k != "chain"}}
        )
    return {"dir": str(d), "setup_done": doc["setup_done"], "chains": chains, "relayers": relayers}


def _print_status(st: dict[str, Any]) -> None:
    for c in st["chains"]:
        print(
            f"{c['chain']:10} nodes {c['running']}/{c['nodes']} running  height "
            f"{c['height']!s:>6}  {c['rpc']}"
        )
    if not st["setup_done"]:
        print("on-chain set-up not done yet (run `gmchain platform up`)")
    for r in st["relayers"]:
        proc = f"pid {r['pid']}" if r["pid"] else "not running"
        if "error" in r:
            print(f"relayer {r['business']:7} {proc}; progress unreadable: {r['error']}")
        elif "queued" in r:
            print(
                f"relayer {r['business']:7} {proc:>11}  lag {r['lag_blocks']!s:>4} blocks  "
                f"queued {r['queued']}  delivered {r['delivered']}  missing {r['missing']}  "
                f"acked {r['acked']}  client {r['client_status']}"
            )
        else:
            print(f"relayer {r['business']:7} {proc}")


# --- command line ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The parser of `gmchain platform` (its help and completion: node/cli_meta.py)."""
    from gmchain.node.cli_meta import CliParser, DefaultsHelpFormatter

    kw: dict[str, Any] = {"formatter_class": DefaultsHelpFormatter}
    p = CliParser(prog="gmchain platform", description=__doc__.split("\n\n")[0], **kw)
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=CliParser)
    dir_help = "the platform's folder (default $GMCHAIN_HOME/platform)"
    pu = sub.add_parser("up", help="create (first use) and start everything not running", **kw)
    pu.add_argument("--dir", help=dir_help)
    pu.add_argument("--validators", type=int, help="validators per chain (first use; default 1)")
    pu.add_argument(
        "--base-port",
        type=int,
        help=f"first port (first use; default ${BASE_PORT_ENV} or {DEFAULT_BASE_PORT})",
    )
    pu.add_argument("--wait", type=float, default=30.0, help="seconds to wait for each start")
    pd = sub.add_parser("down", help="stop the relayers, then every chain", **kw)
    pd.add_argument("--dir", help=dir_help)
    ps = sub.add_parser("status", help="chains' heights, relayers' lag and missing records", **kw)
    ps.add_argument("--dir", help=dir_help)
    ps.add_argument("--json", action="store_true", help="print one JSON document")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    d = Path(args.dir) if args.dir else default_dir()
    notes: list[str] = []
    try:
        if args.cmd == "up":
            platform_up(
                d,
                validators=args.validators,
                base_port=args.base_port,
                wait_s=args.wait,
                notes=notes,
                say=lambda line: print(line, flush=True),
            )
        elif args.cmd == "down":
            for line in platform_down(d, notes=notes):
                print(line)
        else:
            st = platform_status(d, notes=notes)
            if args.json:
                print(json.dumps(st))
            else:
                _print_status(st)
    except (PlatformError, ClusterError) as exc:
        print(f"gmchain platform: {exc}", file=sys.stderr)
        return 1
    finally:
        for note in notes:
            print(f"gmchain platform: {note}", file=sys.stderr)
    return 0

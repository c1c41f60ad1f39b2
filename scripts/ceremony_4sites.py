#!/usr/bin/env python3
"""A worked example: four firms found a gmchain network, each on its own address, over TLS RPC.

    python scripts/ceremony_4sites.py --work DIR [--p2p-port 30300] [--rpc-port 8545]
                                      [--until install|start|all] [--keep-running]

Read it as the ceremony of docs/sites.md played by every party on one machine. Each party has its
own folder under DIR and its own secrets (passphrases in its own environment); only public
files travel between folders, and this script copies them explicitly (`send`):

    DIR/site1 .. DIR/site4   four firms (org1..org4), one validator node each, bound to
                             127.0.0.2 .. 127.0.0.5 (P2P and RPC), RPC over TLS, rpc_auth "reads"
    DIR/regulator            the regulator's reading account (org "regulator", role "regulator")
    DIR/org1-user, org2-user a user account of org1 and of org2 (role "member")
    DIR/coordinator          whoever assembles the genesis: sees only the public descriptors

Steps: every site runs `gmchain site init`, every account holder `gmchain account init`; the
descriptors are sent to the coordinator, who runs `gmchain genesis assemble`; genesis.json and
peers.json are sent to every site, the hash is read out on another channel, and every site runs
`gmchain genesis hash` and `gmchain site install --expect-hash`. The script then checks that no
private key (its file, its raw bytes, its hex) is in any folder but its own, starts the four
nodes (`gmchain node start`, real processes), has org1's and org2's admins submit evidence, and
checks the reads: org1's user reads org1's record, is refused org2's (-32012), the regulator reads
both, and a client without the site's certificate as its CA file fails TLS verification.

The last line printed is a JSON summary ({"ok": true, ...}); the exit code is 0 only if every
check passed. tests/test_site_ceremony.py runs this script.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

CHAIN_ID = "ceremony-demo"
SITES = [(f"site{i}", f"org{i}", f"127.0.0.{i + 1}") for i in range(1, 5)]
ACCOUNTS = [("regulator", "regulator", "regulator"), ("org1-user", "org1", "member")]
ACCOUNTS += [("org2-user", "org2", "member")]


class DrillFailed(Exception):
    """A check of the drill failed; the message says which."""


def secrets(party: str) -> dict[str, str]:
    """Each party's own passphrases (in real life: typed, or from the firm's secret store)."""
    return {
        "GMCHAIN_NODE_PASSPHRASE": f"{party}-node-passphrase-kept-at-{party}",
        "GMCHAIN_PASSPHRASE": f"{party}-admin-passphrase-kept-at-{party}",
    }


def gmchain(party: str, *argv: str) -> str:
    """Run `gmchain ARGV` as `party` (with only that party's secrets); its stdout."""
    print(f"[{party}] $ gmchain {shlex.join(argv)}", flush=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GMCHAIN_")}
    env.update(secrets(party))
    done = subprocess.run(
        [sys.executable, "-m", "gmchain.node.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise DrillFailed(f"[{party}] gmchain {argv[0]} {argv[1]} failed: {done.stderr.strip()}")
    for line in done.stdout.strip().splitlines():
        print(f"    {line}", flush=True)
    return done.stdout


def send(src: Path, dest_dir: Path) -> Path:
    """A public file travels from one party to another (mail, USB stick, file share)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name if src.name not in ("site.json", "account.json") else None
    if dest is None:
        dest = dest_dir / f"{src.parent.name}-{src.name}"
    shutil.copyfile(src, dest)
    print(f"    sent {src} -> {dest}", flush=True)
    return dest


# --- the ceremony ---------------------------------------------------------------------------------


def found_network(work: Path, p2p_port: int, rpc_port: int) -> str:
    """Steps 1-4 of docs/sites.md; the genesis hash every site checked."""
    coord = work / "coordinator"
    inbox = coord / "inbox"
    for name, org, host in SITES:
        gmchain(
            name,
            "site",
            "init",
            "--dir",
            str(work / name),
            "--name",
            name,
            "--org",
            org,
            "--chain-id",
            CHAIN_ID,
            "--p2p",
            f"{host}:{p2p_port}",
            "--rpc",
            f"{host}:{rpc_port}",
            "--tls",
            "--rpc-auth",
            "reads",
        )
        send(work / name / "site.json", inbox)
    for name, org, role in ACCOUNTS:
        gmchain(
            name,
            "account",
            "init",
            "--dir",
            str(work / name),
            "--org",
            org,
            "--role",
            role,
            "--chain-id",
            CHAIN_ID,
        )
        send(work / name / "account.json", inbox)
    argv = ["genesis", "assemble", "--chain-id", CHAIN_ID, "--out", str(coord), "--json"]
    for name, _, _ in SITES:
        argv += ["--site", str(inbox / f"{name}-site.json")]
    for name, _, _ in ACCOUNTS:
        argv += ["--account", str(inbox / f"{name}-account.json")]
    announced = json.loads(gmchain("coordinator", *argv))["genesis_hash"]
    print(f"[coordinator] reads the hash {announced} to every operator by phone", flush=True)
    for name, _, _ in SITES:
        received = work / name / "received"
        genesis = send(coord / "genesis.json", received)
        peers = send(coord / "peers.json", received)
        own = gmchain(name, "genesis", "hash", str(genesis)).strip()
        if own != announced:
            raise DrillFailed(f"{name}: genesis hash {own} is not the announced {announced}")
        gmchain(
            name,
            "site",
            "install",
            "--dir",
            str(work / name),
            "--genesis",
            str(genesis),
            "--peers",
            str(peers),
            "--expect-hash",
            announced,
            "--chain-id",
            CHAIN_ID,
        )
    return announced


def check_keys_stay_home(work: Path) -> int:
    """No private key file's content, raw key or key hex is in any folder but its own."""
    from gmchain.crypto_sm import load_private_key

    parties = [p for p in sorted(work.iterdir()) if p.is_dir()]
    contents = {p: [f.read_bytes() for f in p.rglob("*") if f.is_file()] for p in parties}
    secrets_of: list[tuple[Path, Path, list[bytes]]] = []
    for party in parties:
        for key_file in party.glob("*.key"):
            env = secrets(party.name)
            var = "GMCHAIN_NODE_PASSPHRASE" if key_file.name == "node.key" else "GMCHAIN_PASSPHRASE"
            raw = load_private_key(key_file, env[var].encode()).to_bytes()
            needles = [key_file.read_bytes(), raw, raw.hex().encode(), raw.hex().upper().encode()]
            secrets_of.append((party, key_file, needles))
        tls_key = party / "tls" / "rpc.key"
        if tls_key.exists():
            secrets_of.append((party, tls_key, [tls_key.read_bytes()]))
    for home, key_file, needles in secrets_of:
        for other in parties:
            if other == home:
                continue
            for blob in contents[other]:
                if any(n in blob for n in needles):
                    raise DrillFailed(f"{key_file} (or its key) is also in {other}")
    files = {bytes(n[0]) for _, _, n in secrets_of}
    if len(files) != len(secrets_of):
        raise DrillFailed("two key files have the same content")
    print(f"[check] {len(secrets_of)} private keys, each only in its own folder", flush=True)
    return len(secrets_of)


# --- running the network ------------------------------------------------------------------------


def rpc_url(host: str, rpc_port: int) -> str:
    return f"https://{host}:{rpc_port}"


def has_tls_rpc() -> bool:
    """Whether this build's node serves RPC over TLS (config rpc_tls_cert; docs/sites.md)."""
    from dataclasses import fields

    from gmchain.node.config import NodeConfig

    return "rpc_tls_cert" in {f.name for f in fields(NodeConfig)}


def ca_file(work: Path, name: str) -> Path:
    """The client's CA file for site `name`: its certificate, taken from peers.json (public),
    whose SM3 fingerprint the site signed in its descriptor."""
    from gmchain.node.tlscert import cert_fingerprint

    peers = json.loads((work / "coordinator" / "peers.json").read_text())
    entry = next(s for s in peers["sites"] if s["name"] == name)
    if cert_fingerprint(entry["rpc_tls_cert"]) != entry["rpc_tls_sm3"]:
        raise DrillFailed(f"{name}: peers.json certificate does not match its fingerprint")
    out = work / "clients" / f"{name}-rpc.crt"
    out.parent.mkdir(exist_ok=True)
    out.write_text(entry["rpc_tls_cert"])
    return out


def plain_call(url: str, method: str, context: ssl.SSLContext, timeout: float = 2.0) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": []}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
        return json.loads(resp.read()).get("result")


def start_nodes(work: Path, rpc_port: int, wait_s: float) -> list[subprocess.Popen[bytes]]:
    procs = []
    for name, _, _ in SITES:
        d = work / name
        print(f"[{name}] $ gmchain node start --config {d / 'config.toml'}", flush=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GMCHAIN_")}
        env["GMCHAIN_NODE_PASSPHRASE"] = secrets(name)["GMCHAIN_NODE_PASSPHRASE"]
        argv = ["node", "start", "--config", str(d / "config.toml")]
        with open(d / "node.log", "ab") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "gmchain.node.cli", *argv],
                    cwd=d,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
    deadline = time.monotonic() + wait_s
    for (name, _, host), proc in zip(SITES, procs, strict=True):
        context = ssl.create_default_context(cafile=str(ca_file(work, name)))
        url = rpc_url(host, rpc_port) if has_tls_rpc() else f"http://{host}:{rpc_port}"
        while True:
            if proc.poll() is not None:
                raise DrillFailed(f"{name} exited with {proc.returncode}; see {work / name}")
            try:
                if plain_call(url, "gm_status", context) is not None:
                    break
            except (OSError, urllib.error.URLError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise DrillFailed(f"{name} did not answer over TLS within {wait_s:g} s")
            time.sleep(0.3)
        print(f"[{name}] answers on {url}", flush=True)
    return procs


def stop_nodes(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


async def business_and_reads(work: Path, rpc_port: int, genesis_hash: str) -> list[str]:
    """Org1's and org2's admins submit; then who may read what (docs/rpc.md, read classes)."""
    from gmchain.crypto_sm import load_private_key
    from gmchain.node.sdk import Client, NodeUnreachable, RpcError

    def key(party: str, file: str) -> Any:
        return load_private_key(work / party / file, secrets(party)["GMCHAIN_PASSPHRASE"].encode())

    def client(site: int, auth: Any) -> Client:
        name, _, host = SITES[site - 1]
        return Client(rpc_url(host, rpc_port), ca_file=str(ca_file(work, name)), auth_key=auth)

    checks = []
    # All four nodes started from the genesis every site checked: its hash is block 0's parent.
    for i, (name, _, _) in enumerate(SITES, 1):
        async with client(i, None) as c:
            block0 = await c.call_rpc("gm_getBlockByNumber", [0, False])
        parent = block0.get("parentHash") or block0.get("header", {}).get("parentHash")
        if parent != "0x" + genesis_hash:
            raise DrillFailed(f"{name}: block 0's parent is {parent}, not the ceremony's hash")
    checks.append("four nodes on the ceremony's genesis")
    records = {}
    for site, party, org in ((1, "site1", "org1"), (2, "site2", "org2")):
        admin = key(party, "admin.key")
        async with client(site, admin) as c:
            receipt = await c.submit_evidence(
                admin,
                record_id=f"{org}-rec-1",
                flow_id=f"{org}-flow-1",
                scenario="private-fund-sale",
                step="subscription",
                data=f"{org} subscription form".encode(),
                metadata={"investor": f"INV-{org}"},
                timeout_s=60,
            )
        if receipt.get("status") != 0:  # 0: success (docs/rpc.md, receipts)
            raise DrillFailed(f"{org}'s submission failed: {receipt}")
        records[org] = f"{org}-rec-1"
        print(f"[{party}] admin of {org} submitted {records[org]}", flush=True)
    checks.append("org1's and org2's admins submitted evidence")

    user1 = key("org1-user", "account.key")
    async with client(3, user1) as c:  # org1's user, through another firm's node
        own = await c.get_evidence(records["org1"])
        if not own or own.get("org") != "org1" or own.get("metadata") is None:
            raise DrillFailed(f"org1's user could not read org1's record: {own}")
        try:
            leaked = await c.get_evidence(records["org2"])
        except RpcError as exc:
            if exc.code != -32012:
                raise DrillFailed(f"org1's user reading org2's record: code {exc.code}") from None
        else:
            raise DrillFailed(f"org1's user read org2's record: {leaked}")
    checks.append("org1's user reads org1's record and is refused org2's (-32012)")
    print("[org1-user] read org1's record; org2's: refused (-32012)", flush=True)

    regulator = key("regulator", "account.key")
    async with client(4, regulator) as c:
        for org, rec in records.items():
            got = await c.get_evidence(rec)
            if not got or got.get("org") != org or got.get("recordId") != rec:
                raise DrillFailed(f"the regulator could not read {org}'s record")
    checks.append("the regulator reads both records")
    print("[regulator] read org1's and org2's records", flush=True)

    # Without the site's certificate as CA file, TLS verification fails (no data is exchanged).
    _, _, host = SITES[0]
    try:
        plain_call(rpc_url(host, rpc_port), "gm_status", ssl.create_default_context())
    except urllib.error.URLError as exc:
        if not isinstance(exc.reason, ssl.SSLCertVerificationError):
            raise DrillFailed(f"a client without the CA file failed otherwise: {exc}") from None
    else:
        raise DrillFailed("a client without the CA file was answered")
    async with Client(rpc_url(host, rpc_port), auth_key=user1) as c:
        try:
            await c.status()
        except NodeUnreachable as exc:
            if "certificate" not in str(exc).lower():
                raise DrillFailed(f"SDK client without CA file: {exc}") from None
        else:
            raise DrillFailed("an SDK client without the CA file was answered")
    checks.append("a client without the CA file fails TLS verification")
    print("[stranger] without the CA file: certificate verify failed", flush=True)
    return checks


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", required=True, help="an empty folder for the parties' folders")
    p.add_argument("--p2p-port", type=int, default=30300, help="P2P port on each address")
    p.add_argument("--rpc-port", type=int, default=8545, help="RPC port on each address")
    p.add_argument(
        "--until",
        choices=("install", "start", "all"),
        default="all",
        help="stop after the ceremony, after starting the nodes, or run it all (default all)",
    )
    p.add_argument("--wait", type=float, default=120.0, help="seconds for the nodes to answer")
    p.add_argument("--keep-running", action="store_true", help="leave the nodes running")
    args = p.parse_args(argv)
    work = Path(args.work).resolve()
    if work.exists() and any(work.iterdir()):
        p.error(f"{work} is not empty")
    work.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"ok": False, "work": str(work), "checks": []}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ghash = found_network(work, args.p2p_port, args.rpc_port)
        summary["genesis_hash"] = ghash
        summary["checks"].append("every site checked the same genesis hash")
        summary["private_keys"] = check_keys_stay_home(work)
        summary["checks"].append("no private key in two folders")
        if args.until != "install":
            procs = start_nodes(work, args.rpc_port, args.wait)
            summary["checks"].append("four nodes answer over TLS on 127.0.0.2-5")
            if args.until == "all":
                if not has_tls_rpc():
                    raise DrillFailed("this build's node has no TLS RPC (config rpc_tls_cert)")
                summary["checks"] += asyncio.run(business_and_reads(work, args.rpc_port, ghash))
        summary["ok"] = True
    except DrillFailed as exc:
        summary["error"] = str(exc)
        print(f"FAILED: {exc}", file=sys.stderr, flush=True)
    finally:
        if procs and not args.keep_running:
            stop_nodes(procs)
    print(json.dumps(summary), flush=True)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""`gmchain db snapshot` and `gmchain db restore` (docs/ops.md, "Backup, restore and fast join").

Rules: every option has help text and shows its default; exit 0 done, 1 refused (damaged
snapshot, another chain, target not empty, a check of the chain failed), 2 usage or unreadable
input. The work is node/snapshot_ops.py's; this module only parses and prints.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from pathlib import Path

from gmchain.chain.fastjoin import FastJoinError
from gmchain.ledger.snapshot_crypt import encrypt_snapshot, is_encrypted
from gmchain.ledger.store import StoreError
from gmchain.node.config import ConfigError, load_config, load_genesis
from gmchain.node.snapshot_ops import restore_snapshot, take_snapshot

__all__ = ["PASSPHRASE_ENV", "main"]

PASSPHRASE_ENV = "GMCHAIN_SNAPSHOT_PASSPHRASE"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="gmchain db",
        description="backup, restore and fast join",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser(
        "snapshot",
        help="write a consistent snapshot of a node's store (the node may keep running)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    s.add_argument("--config", required=True, help="the node's config.toml (names its data dir)")
    s.add_argument(
        "--out",
        required=True,
        help="snapshot file to write, or an existing directory (then "
        "snapshot-<chain>-<height>.gmsnap in it)",
    )
    s.add_argument(
        "--encrypt",
        action="store_true",
        help="encrypt the file with SM4-GCM under a passphrase ($GMCHAIN_SNAPSHOT_PASSPHRASE, "
        "or asked for); the plain snapshot exists only while the command runs, next to --out",
    )
    r = sub.add_parser(
        "restore",
        help="rebuild a data directory from a snapshot, checked against the genesis' "
        "certificates (fast join); the target must be absent or empty",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    r.add_argument("--snapshot", required=True, help="the snapshot file (from any site)")
    r.add_argument(
        "--config",
        default=None,
        help="the new node's config.toml: its data_dir is the target, its genesis_file the trust",
    )
    r.add_argument("--data-dir", default=None, help="target data directory (instead of --config)")
    r.add_argument(
        "--genesis", default=None, help="the chain's genesis.json (with --data-dir): the trust"
    )
    r.add_argument("--quiet", action="store_true", help="no progress lines")
    return ap


def _passphrase(*, confirm: bool) -> bytes:
    """$GMCHAIN_SNAPSHOT_PASSPHRASE, or asked for on the terminal (twice when `confirm`)."""
    env = os.environ.get(PASSPHRASE_ENV)
    if env:
        return env.encode()
    if not sys.stdin.isatty():
        raise ConfigError(f"the snapshot passphrase: set ${PASSPHRASE_ENV} (no terminal to ask)")
    pw = getpass.getpass("snapshot passphrase: ")
    if confirm and getpass.getpass("again: ") != pw:
        raise ConfigError("the two passphrases differ")
    if not pw:
        raise ConfigError("an empty passphrase encrypts nothing")
    return pw.encode()


def _snapshot(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    out = Path(args.out)
    if not args.encrypt:
        manifest = take_snapshot(cfg.data_dir, out)
    else:
        pw = _passphrase(confirm=True)
        plain = (out if out.is_dir() else out.parent) / f".plain-{os.getpid()}.gmsnap"
        try:
            manifest = take_snapshot(cfg.data_dir, plain)
            if out.is_dir():
                out = out / f"snapshot-{manifest['chainId']}-{manifest['height']}.gmsnap.sm4"
            encrypt_snapshot(plain, out, pw)
        finally:
            plain.unlink(missing_ok=True)
        manifest = {**manifest, "encryptedFile": str(out)}
    print(json.dumps(manifest, indent=2, sort_keys=True))
    return 0


def _restore(args: argparse.Namespace) -> int:
    if args.config is not None:
        cfg = load_config(args.config)
        data_dir, genesis_file = args.data_dir or cfg.data_dir, args.genesis or cfg.genesis_file
    elif args.data_dir is not None and args.genesis is not None:
        data_dir, genesis_file = args.data_dir, args.genesis
    else:
        print("error: give --config, or --data-dir and --genesis", file=sys.stderr)
        return 2
    genesis = load_genesis(genesis_file)
    t0 = time.perf_counter()
    step = [0.0]

    def progress(h: int, head: int) -> None:
        now = time.perf_counter()
        if not args.quiet and (now - step[0] >= 5 or h == head):
            step[0] = now
            print(f"  checked and rebuilt block {h} of {head}", flush=True)

    snap = Path(args.snapshot)
    pw = _passphrase(confirm=False) if snap.is_file() and is_encrypted(snap) else None
    manifest, report = restore_snapshot(
        snap, Path(data_dir), genesis, progress=progress, passphrase=pw
    )
    print(
        f"restored {data_dir}: chain {manifest.chain_id} height {report.height} "
        f"(block {report.head_hash.hex()}), epoch {report.epoch}, "
        f"{report.transactions} transactions, {report.certificates_checked} certificates and "
        f"{report.state_records} state records checked, in {time.perf_counter() - t0:.1f} s\n"
        "  start the node as usual: it syncs the blocks after the snapshot from its peers.\n"
        "  A VALIDATOR key must not sign on it before `gmchain db safety-reset` "
        '(docs/ops.md, "Backup, restore and fast join").'
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _snapshot(args) if args.cmd == "snapshot" else _restore(args)
    except (ConfigError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (StoreError, FastJoinError) as e:
        print(f"refused: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())

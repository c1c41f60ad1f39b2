"""`gmchain db snapshot` and `gmchain db restore` (docs/ops.md, "Backup, restore and fast join").

Rules: every option has help text and shows its default; exit 0 done, 1 refused (damaged
snapshot, another chain, target not empty, a check of the chain failed), 2 usage or unreadable
input. The work is node/snapshot_ops.py's; this module only parses and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from gmchain.chain.fastjoin import FastJoinError
from gmchain.ledger.store import StoreError
from gmchain.node.config import ConfigError, load_config, load_genesis
from gmchain.node.snapshot_ops import restore_snapshot, take_snapshot

__all__ = ["main"]


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


def _snapshot(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    manifest = take_snapshot(cfg.data_dir, Path(args.out))
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

    manifest, report = restore_snapshot(
        Path(args.snapshot), Path(data_dir), genesis, progress=progress
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

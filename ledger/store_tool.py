"""Operator check of a ledger store: what `gmchain db check` runs (node/cli wires it up).

Usage: `python -m gmchain.ledger.store_tool check PATH [--chain-id ID]`

Rules: read-only in effect (first the LevelDB files themselves, `ledger.store_files`: what
LevelDB would skip silently; then the store is opened with `create=False`, LevelDB paranoid
checks and checksum verification on every read, then `check_consistency(deep=True)`, which reads
every record once and checks sealed metadata, e.g. consensus safety data); prints one line
per finding and exits 0 when the store is sound, 1 when it is damaged or inconsistent, 2 when it
cannot be checked (missing, locked by a running node, another chain, unknown format).
Sources: `ledger.store_check` for what is verified.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

from gmchain.ledger.store import Store, StoreCorrupt, StoreError
from gmchain.ledger.store_files import check_files

__all__ = ["CheckReport", "check_db", "main"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckReport:
    """Outcome of a deep check. `ok` is False iff `problem` names what is wrong."""

    ok: bool
    head_height: int | None
    acc_size: int
    seconds: float
    problem: str = ""


def check_db(path: str, *, chain_id: bytes | None = None) -> CheckReport:
    """Deep-check the store at `path`. Raises StoreError if it cannot be checked at all."""
    t0 = time.perf_counter()
    if os.path.isdir(path) and os.listdir(path):
        # Before the open: LevelDB's recovery rewrites the log files this looks at.
        findings = check_files(path)
        if findings:
            return CheckReport(
                ok=False,
                head_height=None,
                acc_size=0,
                seconds=time.perf_counter() - t0,
                problem="LevelDB files are damaged: " + "; ".join(findings),
            )
    try:
        with Store.open(path, create=False, chain_id=chain_id, verify_checksums=True) as s:
            s.check_consistency(deep=True)
            head, acc = s.head_height(), s.acc_size()
    except StoreCorrupt as e:
        return CheckReport(
            ok=False, head_height=None, acc_size=0, seconds=time.perf_counter() - t0, problem=str(e)
        )
    return CheckReport(ok=True, head_height=head, acc_size=acc, seconds=time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gmchain db", description="ledger store maintenance")
    sub = ap.add_subparsers(dest="cmd", required=True)
    chk = sub.add_parser("check", help="deep-check a (stopped) node's ledger store")
    chk.add_argument("path")
    chk.add_argument("--chain-id", default=None)
    args = ap.parse_args(argv)
    cid = None if args.chain_id is None else args.chain_id.encode("utf-8")
    try:
        report = check_db(args.path, chain_id=cid)
    except StoreError as e:
        print(f"cannot check {args.path}: {e}")
        return 2
    if not report.ok:
        print(f"DAMAGED: {report.problem}")
        return 1
    print(
        f"ok: head {report.head_height}, {report.acc_size} transactions, "
        f"checked in {report.seconds:.2f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

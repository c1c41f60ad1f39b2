"""Throughput of `Store.commit_block`: blocks/s and txs/s for blocks of many small transactions.

Usage: `python -m gmchain.ledger.store_bench [--blocks 50] [--txs 1000] [--dir PATH]`

Rules: blocks are built before the clock starts (the caller's encoding is not the store's cost);
each commit is the real one synced batch; the store lives in a fresh temporary directory unless
`--dir` names another (use it to measure a real disk: /tmp may be tmpfs, where fsync is free).
Per tx the block writes a 32-byte id, a ~64-byte receipt, a 32-byte accumulator leaf, one
~100-byte state write and one secondary index entry; the block body is ~200 bytes per tx.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from gmchain.crypto_sm import sm3_hash
from gmchain.ledger.store import BlockWrite, Store

__all__ = ["main", "make_bench_block"]


def make_bench_block(height: int, txs: int) -> BlockWrite:
    """A block of `txs` small transactions with every kind of record the store writes."""
    ids = [sm3_hash(b"bench|%d|%d" % (height, i)) for i in range(txs)]
    header = b"H" * 300
    return BlockWrite(
        height=height,
        block_hash=sm3_hash(b"bench-block|%d" % height),
        header_bytes=header,
        block_bytes=header + os.urandom(200 * txs),
        tx_ids=ids,
        receipts=[b"R" * 32 + t for t in ids],
        state_writes={("evidence", b"rec/" + t): b"E" * 100 for t in ids},
        acc_leaves=[sm3_hash(b"\x00" + t) for t in ids],
        acc_nodes={},
        commit_proof=b"Q" * 400,
        index_writes={b"ev/" + t[:16]: t for t in ids},
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=50)
    ap.add_argument("--txs", type=int, default=1000)
    ap.add_argument("--dir", default=None, help="parent directory of the scratch store")
    args = ap.parse_args(argv)
    blocks = [make_bench_block(h, args.txs) for h in range(args.blocks)]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp, Store.open(tmp, chain_id=b"bench") as s:
        t0 = time.perf_counter()
        for w in blocks:
            s.commit_block(w)
        dt = time.perf_counter() - t0
        t1 = time.perf_counter()
        s.check_consistency(deep=True)
        deep = time.perf_counter() - t1
        root_t = time.perf_counter()
        for _ in range(100 if s.acc_size() else 0):
            s.get_acc_inclusion_path(s.acc_size() // 3, s.acc_size())
        proof = (time.perf_counter() - root_t) / 100
    print(
        f"commit_block: {args.blocks} blocks x {args.txs} txs in {dt:.3f} s = "
        f"{args.blocks / dt:.1f} blocks/s, {args.blocks * args.txs / dt:,.0f} txs/s "
        f"({dt / args.blocks * 1e3:.2f} ms/block, "
        f"{dt / max(1, args.blocks * args.txs) * 1e6:.1f} us/tx)"
    )
    print(f"deep check: {deep:.3f} s; inclusion path: {proof * 1e6:.0f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

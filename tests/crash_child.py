"""Child process of the store crash test (`tests/test_store_crash.py`).

Usage: `python -m tests.crash_child DB_PATH SEED [MAX_HEIGHT]`

Opens the store, prints `ready <head>` and then commits blocks head+1, head+2, ... forever (or
up to MAX_HEIGHT). It prints each height to stdout (flushed) only after `commit_block` returned
and the height was recorded with a synced `put_meta` (the way consensus safety data must be on
disk before a vote leaves). The parent kills it with SIGKILL at random moments. Every block is a
pure function of (seed, height) (`make_block`), so the parent can recompute exactly the bytes
each reported height must hold.
"""

from __future__ import annotations

import random
import sys

from gmchain.crypto_sm import sm3_hash
from gmchain.ledger.store import BlockWrite, Store

__all__ = ["CHAIN_ID", "NAMESPACES", "SAFETY_KEY", "main", "make_block"]

CHAIN_ID = b"gmchain-crash-test"
SAFETY_KEY = "crash.last_committed"
NAMESPACES = ("evidence", "gov", "report")


def make_block(seed: int, height: int) -> BlockWrite:
    """The deterministic content of block `height` for a crash run seeded with `seed`."""
    rng = random.Random(f"store-crash:{seed}:{height}")
    n = rng.randrange(0, 40)
    tx_ids = [sm3_hash(b"tx|%d|%d|%d" % (seed, height, i)) for i in range(n)]
    receipts = [rng.randbytes(rng.randrange(1, 160)) for _ in range(n)]
    leaves = [sm3_hash(b"\x00" + t) for t in tx_ids]
    state: dict[tuple[str, bytes], bytes | None] = {}
    for _ in range(rng.randrange(0, 30)):
        key = (rng.choice(NAMESPACES), b"k%03d" % rng.randrange(300))
        state[key] = None if rng.random() < 0.2 else rng.randbytes(rng.randrange(0, 64))
    header = b"HDR|%d|" % height + sm3_hash(b"".join(tx_ids))
    index: dict[bytes, bytes | None] = {b"ev/" + t[:8]: b"%d" % height for t in tx_ids[:3]}
    return BlockWrite(
        height=height,
        block_hash=sm3_hash(b"blk|%d|%d" % (seed, height)),
        header_bytes=header,
        block_bytes=header + b"".join(tx_ids) + rng.randbytes(rng.randrange(0, 4000)),
        tx_ids=tx_ids,
        receipts=receipts,
        state_writes=state,
        acc_leaves=leaves,
        acc_nodes={},
        commit_proof=b"QC|%d" % height if rng.random() < 0.7 else b"",
        index_writes=index,
    )


def main(argv: list[str]) -> int:
    path, seed = argv[0], int(argv[1])
    max_height = int(argv[2]) if len(argv) > 2 else None
    store = Store.open(path, chain_id=CHAIN_ID)
    head = store.head_height()
    h = 0 if head is None else head + 1
    out = sys.stdout
    out.write(f"ready {-1 if head is None else head}\n")
    out.flush()
    while max_height is None or h <= max_height:
        store.commit_block(make_block(seed, h))
        # Like consensus safety data: synced before anything leaves the process.
        store.put_meta(SAFETY_KEY, b"%d" % h)
        out.write(f"{h}\n")
        out.flush()
        h += 1
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

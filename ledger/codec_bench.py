"""Cost of the struct codecs on the hot path: encode and decode of transactions, blocks, votes and
receipts, in milliseconds per batch (the best of `--reps` runs, CPU time of this process).

Usage: `python -m gmchain.ledger.codec_bench [--reps 15] [--json]`

Rules: every value is built before the clock starts; a decode case includes what a receiver pays
(msgpack, the canonical re-encode check, each struct's field checks and, for transactions and
headers, the SM3 id); `to_fields`/`from_fields` cases isolate the derived codec methods. CPU time,
not wall time, so that other processes on a loaded machine count less; compare two trees by
running both in alternation on the same machine (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from gmchain.ledger.types import (
    Block,
    BlockHeader,
    Digest,
    Event,
    Height,
    NodeId,
    QuorumCert,
    Receipt,
    ReceiptStatus,
    Round,
    SignedTx,
    TxBody,
    Vote,
)

__all__ = ["cases", "main"]


def cases() -> dict[str, Callable[[], Any]]:
    """The measured operations, each over its own prebuilt batch."""
    txs = [
        SignedTx(
            body=TxBody(
                chain_id="bench",
                sender=b"\x04" + bytes(64),
                nonce=i,
                expiry=Height(100),
                contract="evidence",
                method="record",
                args=(b"x" * 32, "label", i, [1, 2]),
            ),
            signature=bytes(64),
        )
        for i in range(10_000)
    ]
    raw_txs = [t.encode() for t in txs]
    qc = QuorumCert(
        block_id=Digest(bytes(32)),
        round=Round(1),
        height=Height(1),
        signatures=tuple((NodeId(bytes([i]) * 20), bytes(64)) for i in range(1, 5)),
    )
    header = BlockHeader(
        chain_id="bench",
        epoch=0,
        height=Height(2),
        round=Round(2),
        parent_id=Digest(bytes(32)),
        timestamp_ms=1,
        proposer=NodeId(bytes(20)),
        tx_root=Digest(bytes(32)),
        tx_count=1000,
        receipt_root=Digest(bytes(32)),
        acc_root=Digest(bytes(32)),
        acc_size=1000,
        state_hash=Digest(bytes(32)),
        next_validators_hash=Digest(bytes(32)),
        justify=qc,
    )
    block = Block(header=header, txs=tuple(txs[:1000]))
    raw_block = block.encode()
    votes = [
        Vote(
            block_id=Digest(bytes(32)),
            round=Round(i),
            height=Height(i),
            voter=NodeId(bytes(20)),
            signature=bytes(64),
        )
        for i in range(10_000)
    ]
    raw_votes = [v.encode() for v in votes]
    vote_fields = [v.to_fields() for v in votes]
    event = Event(contract="evidence", name="recorded", fields=(("id", b"y" * 32),))
    receipts = [
        Receipt(tx_id=Digest(bytes(32)), status=ReceiptStatus.OK, result=[1, b"x"], events=(event,))
        for _ in range(10_000)
    ]
    raw_receipts = [r.encode() for r in receipts]
    return {
        "encode 10k SignedTx": lambda: [t.encode() for t in txs],
        "decode 10k SignedTx": lambda: [SignedTx.decode(b) for b in raw_txs],
        "encode 1000-tx Block": lambda: block.encode(),
        "decode 1000-tx Block": lambda: Block.decode(raw_block),
        "encode 10k Vote": lambda: [v.encode() for v in votes],
        "decode 10k Vote": lambda: [Vote.decode(b) for b in raw_votes],
        "to_fields 10k SignedTx": lambda: [t.to_fields() for t in txs],
        "from_fields 10k Vote": lambda: [Vote.from_fields(f) for f in vote_fields],
        "encode 10k Receipt": lambda: [r.encode() for r in receipts],
        "decode 10k Receipt": lambda: [Receipt.decode(b) for b in raw_receipts],
    }


def _best_ms(fn: Callable[[], Any], reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--json", action="store_true", help="one JSON object: case -> ms")
    args = ap.parse_args(argv)
    results = {name: _best_ms(fn, args.reps) for name, fn in cases().items()}
    if args.json:
        print(json.dumps(results))
    else:
        for name, ms in results.items():
            print(f"{name:24s} {ms:8.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

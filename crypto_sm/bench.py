"""`gmchain crypto-bench`: measure SM2/SM3/SM4 throughput of the active backend.

Rules kept here: each figure is operations (or MB) per second of wall time over about
`seconds` of work, on inputs made fresh for the run; verification runs over many distinct keys
and messages so no cache answers for the work; the JSON object has the keys promised in
docs/crypto.md and nothing in it is estimated.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from gmchain.crypto_sm.backend import get_backend, set_backend
from gmchain.crypto_sm.sm2 import PrivateKey, PublicKey, verify_many
from gmchain.crypto_sm.sm3 import sm3_hash
from gmchain.crypto_sm.sm4 import sm4_gcm_encrypt

__all__ = ["main", "run_bench"]

_MSG_SIZE = 200  # a typical signed transaction body
_BULK = 64 * 1024


def _rate(step: Callable[[], int], seconds: float) -> float:
    """Run `step` (which returns how many units it did) for ~`seconds`; units per second."""
    done = step()  # warm-up, not counted
    done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += step()
    return done / elapsed


def _signed_batch(count: int, keys: int) -> list[tuple[PublicKey, bytes, bytes]]:
    privs = [PrivateKey.generate() for _ in range(keys)]
    items = []
    for i in range(count):
        priv = privs[i % keys]
        msg = os.urandom(_MSG_SIZE)
        items.append((priv.public_key, msg, priv.sign(msg)))
    return items


def run_bench(seconds: float = 2.0, threads: int | None = None) -> dict[str, Any]:
    """Measure and return the figures as a dict (see `main` for the JSON shape)."""
    cpus = os.cpu_count() or 1
    workers = threads if threads is not None else cpus
    fast = get_backend() == "openssl"
    batch = _signed_batch(512 if fast else 16, keys=16 if fast else 2)
    priv = PrivateKey.generate()
    msg = os.urandom(_MSG_SIZE)
    bulk = os.urandom(_BULK)
    key, nonce = os.urandom(16), os.urandom(12)

    def sign_step() -> int:
        priv.sign(msg)
        return 1

    def verify_1_step() -> int:
        for pub, m, sig in batch:
            if not pub.verify(m, sig):
                raise AssertionError("benchmark signature did not verify")
        return len(batch)

    def verify_n_step() -> int:
        if not all(verify_many(batch, threads=workers)):
            raise AssertionError("benchmark signature did not verify")
        return len(batch)

    def sm3_step() -> int:
        sm3_hash(bulk)
        return len(bulk)

    def sm3_small_step() -> int:
        sm3_hash(msg)
        return 1

    def sm4_step() -> int:
        sm4_gcm_encrypt(key, nonce, bulk)
        return len(bulk)

    mb = 1_000_000
    return {
        "backend": get_backend(),
        "cpu_count": cpus,
        "threads": workers,
        "sm2_sign_per_s": round(_rate(sign_step, seconds), 1),
        "sm2_verify_per_s_1thread": round(_rate(verify_1_step, seconds), 1),
        "sm2_verify_per_s_threads": round(_rate(verify_n_step, seconds), 1),
        "sm3_mb_per_s": round(_rate(sm3_step, seconds) / mb, 1),
        "sm3_200b_per_s": round(_rate(sm3_small_step, seconds / 2), 1),
        "sm4_gcm_mb_per_s": round(_rate(sm4_step, seconds) / mb, 1),
        "seconds_per_figure": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gmchain crypto-bench", description="Measure SM2/SM3/SM4 throughput."
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on one line")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per figure (2.0)")
    parser.add_argument("--threads", type=int, default=None, help="verify threads (all cores)")
    parser.add_argument("--backend", choices=("openssl", "gmssl"), default=None)
    args = parser.parse_args(argv)
    if args.backend:
        set_backend(args.backend)
    result = run_bench(seconds=args.seconds, threads=args.threads)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for name, value in result.items():
            print(f"{name:28} {value}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

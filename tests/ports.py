"""Port blocks for tests that start real nodes (imports nothing of gmchain: the independent
tests use it too).

Rules:
1. Ports come from `PORT_RANGE`, below the Linux ephemeral range (32768+), so outgoing
   connections of other tests do not take them between the probe and the node's bind.
2. Under pytest-xdist each worker probes only its own share of the range (`worker_port_range`):
   a test binds its probed ports seconds after the probe, as its nodes start, and a test on
   another worker must not probe the same ports meanwhile (tests/test_ports.py). Within one
   worker tests run one at a time.
3. A block is free when each of its ports can be bound now (SO_REUSEADDR, as the nodes bind).
"""

from __future__ import annotations

import os
import random
import socket

__all__ = ["PORT_RANGE", "free_port_block", "worker_port_range"]

PORT_RANGE = (12000, 32000)  # rule 1


def worker_port_range() -> tuple[int, int]:
    """Rule 2: this xdist worker's share of PORT_RANGE (all of it outside xdist)."""
    lo, hi = PORT_RANGE
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or "1")
    if count < 2 or not worker.startswith("gw") or not worker[2:].isdigit():
        return lo, hi
    width = (hi - lo) // count
    k = int(worker[2:]) % count
    return lo + k * width, lo + (k + 1) * width


def port_in_use(port: int) -> bool:
    """Rule 3."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def free_port_block(n: int, *, rng: random.Random | None = None) -> int:
    """A base port b such that b..b+n-1 are all free now, from this worker's share."""
    rng = rng or random.Random()
    lo, hi = worker_port_range()
    for _ in range(500):
        base = rng.randrange(lo, hi - n)
        if not any(port_in_use(base + i) for i in range(n)):
            return base
    raise RuntimeError(f"no block of {n} free ports found in {lo}..{hi}")

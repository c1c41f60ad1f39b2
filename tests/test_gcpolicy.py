"""node/gcpolicy.py: the node's collector settings, applied in a fresh interpreter (freezing the
test process's own objects would change every later test)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from gmchain.node.gcpolicy import GEN0, GEN1, GEN2

_PROBE = textwrap.dedent(
    """
    import gc, weakref
    from gmchain.node.gcpolicy import apply_gc_policy

    startup = [[i] for i in range(1000)]  # alive at start: frozen, never walked again
    policy = apply_gc_policy()
    assert gc.get_threshold() == policy.thresholds, (gc.get_threshold(), policy)
    assert policy.frozen >= 1000 and gc.get_freeze_count() == policy.frozen, policy
    assert gc.isenabled()

    class Node:
        pass

    def cycle():
        a, b = Node(), Node()
        a.other, b.other = b, a
        return weakref.ref(a)

    # Rule 2: cyclic garbage is still collected, with no explicit gc.collect(), once enough
    # tracked objects were allocated; and not after a few hundred (the old threshold).
    gone = cycle()
    keep = [[i] for i in range(700)]
    early = gone() is None
    keep += [[i] for i in range(policy.thresholds[0] * 2)]
    late = gone() is None
    collections = [s["collections"] for s in gc.get_stats()]
    print(policy.describe(), early, late, collections[0] >= 1)
    """
)


def test_policy_freezes_startup_and_still_collects_cycles() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=True
    ).stdout.split("\n")[0]
    described, early, late, collected = out.rsplit(" ", 3)
    assert described.startswith(f"thresholds {GEN0}/{GEN1}/{GEN2}, ")
    assert described.endswith(" objects frozen at start")
    assert (early, late, collected) == ("False", "True", "True"), out

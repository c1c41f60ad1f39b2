"""Real-process fault drills: SIGKILL under load, leader kill, long outage, 2|2 partition and heal.

Rules these drills keep (issue 5 item 6; DESIGN.md "Reliability strategy"):
1. Every node is its own OS process (`node.cluster.start_nodes`, as `gmchain cluster up`).
2. Every drill ends in `check_invariants` (identical block hashes at every height on every node;
   every acknowledged tx in exactly one block). It is never skipped or weakened by a drill.
3. Load goes only to nodes a drill does not kill: a killed node's acknowledged txs survive in its
   pool log (node/poolwal.py) but commit only once it restarts, which some drills never do.
4. Times are printed (pytest -s shows them) and bounded only by generous deadlines; no test asserts
   a speed.
"""

from __future__ import annotations

import itertools
import random
import time
from pathlib import Path

from tests.cluster_helpers import LoadGen, check_invariants, running_cluster, wait_until

RATE = 50.0  # tx/s: modest, 4 node processes share the CI machine's 2 cores


def _commit_times(cluster: object, names: list[str], seconds: float) -> list[tuple[float, int]]:
    """Poll the max height over `names` for `seconds`; (time, height) at each change."""
    from tests.cluster_helpers import Cluster

    assert isinstance(cluster, Cluster)
    out: list[tuple[float, int]] = []
    end = time.monotonic() + seconds
    last = -1
    while time.monotonic() < end:
        hs = [h for h in cluster.heights(names).values() if h is not None]
        h = max(hs) if hs else -1
        if h != last:
            out.append((time.monotonic(), h))
            last = h
        time.sleep(0.02)
    return out


def test_sigkill_validator_under_load_then_restart(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    with running_cluster(tmp_path / "c") as (c, _):
        victim = rng.choice(c.validators)
        others = [n for n in c.names if n != victim]
        load = LoadGen(c, others, rate=RATE).start()
        try:
            c.wait_height(5, timeout_s=60)
            assert c.kill(victim)
            h0 = max(h or 0 for h in c.heights(others).values())
            c.wait_height(h0 + 15, others, timeout_s=60)  # three of four keep committing
            c.start([victim])
            c.wait_height(h0 + 25, timeout_s=90)  # the restarted one catches up, all follow
        finally:
            load.stop()
        rep = check_invariants(c, load.acked, expiry=load.expiry)
        print(f"victim {victim}: {rep}, load errors {load.errors}")
        assert rep.acked > 0


def test_leader_kill_gap(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "c", round_timeout_ms=1000) as (c, _):
        victim = c.leader_order()[0]
        others = [n for n in c.names if n != victim]
        load = LoadGen(c, others, rate=RATE).start()
        try:
            c.wait_height(5, timeout_s=60)
            probe = others[0]

            def victim_leads() -> bool:
                st = c.status(probe)
                return st is not None and c.leader_of(int(st["round"])) == victim

            wait_until(victim_leads, 30, f"{victim} to lead a round", interval_s=0.002)
            assert c.kill(victim)
            t_kill = time.monotonic()
            changes = _commit_times(c, others, 8.0)
            c.start([victim])
        finally:
            load.stop()
        assert len(changes) >= 3, f"no commits after the leader was killed: {changes}"
        first_gap = changes[1][0] - t_kill
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(changes)]
        print(
            f"leader {victim} killed: first commit after {first_gap * 1000:.0f} ms, "
            f"max gap {max(gaps) * 1000:.0f} ms over {changes[-1][1] - changes[0][1]} blocks"
        )
        rep = check_invariants(c, load.acked, expiry=load.expiry)
        print(rep)


def test_node_down_100_blocks_catches_up(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "c") as (c, _):
        victim = c.validators[-1]
        others = [n for n in c.names if n != victim]
        load = LoadGen(c, others, rate=RATE).start()
        try:
            c.wait_height(3, timeout_s=60)
            assert c.kill(victim)
            down_at = max(h or 0 for h in c.heights(others).values())
            c.wait_height(down_at + 110, others, timeout_s=120)
            t0 = time.monotonic()
            c.start([victim])
            target = max(h or 0 for h in c.heights(others).values())
            c.wait_height(target, [victim], timeout_s=120)
            print(f"{victim} caught up {target - down_at} blocks in {time.monotonic() - t0:.1f} s")
            c.wait_height(target + 10, timeout_s=60)  # and then follows
        finally:
            load.stop()
        rep = check_invariants(c, load.acked, expiry=load.expiry)
        print(rep)
        assert rep.height >= down_at + 110


def test_partition_2_2_then_heal(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "c", proxied=True) as (c, net):
        assert net is not None
        side_a = c.validators[:2]
        cross = [f"{a}>{b}" for a, b in c.dial_pairs() if (a in side_a) != (b in side_a)]
        assert len(cross) == 4
        load = LoadGen(c, c.names, rate=RATE).start()
        try:
            c.wait_height(5, timeout_s=60)
            net.cut(cross)
            time.sleep(2.0)  # let commits already certified before the cut land
            frozen = c.heights()
            acked_before_wait = len(load.acked)
            time.sleep(6.0)
            during = c.heights()
            assert during == frozen, f"commits without a quorum: {frozen} -> {during}"
            assert len(load.acked) > acked_before_wait, "nodes stopped acknowledging txs"
            t_heal = time.monotonic()
            net.heal()
            top = max(h or 0 for h in frozen.values())
            c.wait_height(top + 5, timeout_s=90)
            print(
                f"partition held heights at {frozen}; commits resumed on all nodes "
                f"{time.monotonic() - t_heal:.1f} s after heal"
            )
        finally:
            load.stop()
        rep = check_invariants(c, load.acked, expiry=load.expiry)
        print(rep, {n: (p.accepted, p.refused) for n, p in net.proxies.items()})


def test_block_size_recovers_after_a_stall(tmp_path: Path) -> None:
    """After a stall (a dead validator's rounds time out), a backlog is packed in big blocks.

    Found by these drills: after one SIGKILL under load every later block carried one tx while
    the pools held over a thousand (consensus/packing.py K3 shrinks `target_size` per committed tx
    while latency is high; it grows only in `observe_queue`, which `Chain.ready_to_propose` calls,
    and `Replica._maybe_propose` never reaches that call while uncommitted non-empty blocks exist).
    """
    with running_cluster(tmp_path / "c") as (c, _):
        victim = c.validators[0]
        others = [n for n in c.names if n != victim]
        load = LoadGen(c, others, rate=RATE).start()
        try:
            c.wait_height(5, timeout_s=60)
            assert c.kill(victim)
            time.sleep(6.0)  # the victim's rounds time out: commit latency above target
            c.start([victim])
            time.sleep(4.0)
        finally:
            load.stop()
        probe = others[0]
        st = c.status(probe)
        assert st is not None
        h0, backlog = int(st["height"]), int(st["pendingTxs"])
        if backlog >= 60:  # else there is nothing to pack; the invariants below still run
            # The load has stopped: the backlog drains, then the chain goes idle.
            wait_until(
                lambda: (c.status(probe) or {}).get("pendingTxs") == 0, 120, "the backlog to drain"
            )
            h1 = c.height(probe) or h0
            sizes = [b["txCount"] for b in c.blocks(probe, h1)[h0 + 1 :]]
            print(f"backlog {backlog} at height {h0}; next block sizes {sizes}")
            assert sizes and max(sizes) > 1, f"backlog of {backlog} packed one per block: {sizes}"
        rep = check_invariants(c, load.acked, expiry=load.expiry)
        print(rep)

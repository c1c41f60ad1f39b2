"""An observer started late catches up from genesis, then follows; it never votes (issue 5).

Real processes: four validators and one observer from `gmchain cluster init --observers 1`.
"""

from __future__ import annotations

from pathlib import Path

from tests.cluster_helpers import LoadGen, check_invariants, running_cluster

RATE = 40.0


def test_late_observer_catches_up_and_follows(tmp_path: Path) -> None:
    with running_cluster(
        tmp_path / "c", observers=1, start=["node0", "node1", "node2", "node3"]
    ) as (c, _):
        validators = c.validators
        observer = next(n for n in c.names if n not in validators)
        load = LoadGen(c, validators, rate=RATE).start()
        try:
            c.wait_height(25, validators, timeout_s=90)
            c.start([observer])
            st = c.status(observer)
            assert st is not None and st["role"] == "observer"
            # Catch up from genesis to the validators' head...
            target = max(h or 0 for h in c.heights(validators).values())
            c.wait_height(target, [observer], timeout_s=90)
            # ...then keep following new blocks.
            c.wait_height(target + 10, [observer], timeout_s=90)
        finally:
            load.stop()
        rep = check_invariants(c, load.acked, c.names, expiry=load.expiry)
        print(rep)
        # It serves the chain over RPC like any node, and never signed a vote: no QC names it.
        blocks = c.blocks(observer, rep.height)
        assert len(blocks) == rep.height + 1
        obs_id = "0x" + c.node_id(observer).hex()
        signers = [s["signer"] for b in blocks[2:] for s in b["justify"]["signatures"]]
        assert signers, "no QC signatures seen: the check below would be vacuous"
        assert obs_id not in signers

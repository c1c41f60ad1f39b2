"""Issue 10, fault 2: a validator restarted on an idle chain catches up without a new transaction.

On 0921e03 a node learned that it was behind only from consensus traffic (a proposal, a timeout);
on an idle chain there is none, so a validator killed while 20 transactions committed stayed at
its old height indefinitely while `gm_status` and `/health` called it healthy. Now peers send
their certificates (SyncInfo with the QC of their latest commit) on connect and periodically; the
restarted node verifies them, syncs the committed blocks, and reports `catchingUp`, `lag` and
`peerHeight` in `gm_status` and `/health`, which answers 503 while it lags by more than
`health_max_lag_blocks`.

Real processes: a 4-validator cluster from `gmchain cluster init`, every session through a TCP
proxy (tests/faultproxy.py) so the restarted node can first be kept isolated (it must then report
`catchingUp` and /health 503: it cannot know its peers' height); nothing is submitted after the
restart. Deadlines are failure bounds only (a loaded 2-core machine).
"""

from __future__ import annotations

import http.client
import time
from pathlib import Path
from typing import Any

from gmchain.node.config import NodeConfig
from tests.cluster_helpers import Cluster, rpc_call, running_cluster, wait_until
from tests.node_helpers import evidence_args, get_health, sign_tx

CATCH_UP_S = 90.0
TXS = 20


def commit_one(c: Cluster, name: str, i: int) -> dict[str, Any]:
    port = c.rpc_port(name)
    st = rpc_call(port, "gm_status")
    tx = sign_tx(
        c.client_key(),
        expiry=int(st["height"]) + 50,
        chain_id=st["chainId"],
        args=evidence_args(f"idle-{i}-{time.monotonic_ns()}"),
    )
    tx_id = "0x" + tx.tx_id.hex()
    assert rpc_call(port, "gm_sendRawTransaction", ["0x" + tx.encode().hex()]) == tx_id
    receipt = rpc_call(port, "gm_waitForReceipt", [tx_id, 30_000], timeout_s=40)
    assert receipt is not None and not receipt.get("pending"), receipt
    return dict(receipt)


def settled_head(c: Cluster, names: list[str]) -> int:
    """The common height of `names` once it has not moved for a second."""
    last: list[int | None] = [None]
    since = [time.monotonic()]

    def stable() -> int | None:
        hs = set(c.heights(names).values())
        h = hs.pop() if len(hs) == 1 else None
        if h is None or h != last[0]:
            last[0], since[0] = h, time.monotonic()
            return None
        return h if time.monotonic() - since[0] >= 1.0 else None

    return int(wait_until(stable, 60, f"{names} to agree on an idle head"))


def test_a_restarted_validator_catches_up_on_an_idle_chain(tmp_path: Path) -> None:
    field = NodeConfig.__dataclass_fields__.get("health_max_lag_blocks")
    max_lag = 4 if field is None else field.default  # (base 0921e03 has no such key)
    assert isinstance(max_lag, int) and max_lag < TXS
    with running_cluster(tmp_path / "c", proxied=True) as (c, net):
        names = c.validators
        victim, live = names[3], names[:3]
        commit_one(c, live[0], 0)
        assert c.kill(victim)
        last = {}
        for i in range(1, TXS + 1):
            last = commit_one(c, live[i % 3], i)
        target = settled_head(c, live)
        assert target >= TXS

        # Restarted while its links are cut, it cannot know whether it is behind: it must say so.
        links = [f"{a}>{b}" for a, b in c.dial_pairs() if victim in (a, b)]
        net.cut(links)
        c.start([victim])
        port = c.rpc_port(victim)
        isolated = []  # checked after the catch-up (so that base 0921e03 fails on the main fault)
        isolated_until = time.monotonic() + 3.0
        while time.monotonic() < isolated_until:
            isolated.append((c.status(victim), get_health(port)))
            time.sleep(0.2)
        net.heal(links)
        seen: list[tuple[int, dict[str, Any], int | None, dict[str, Any] | None]] = []
        deadline = time.monotonic() + CATCH_UP_S
        while time.monotonic() < deadline:
            t = time.monotonic()
            st = c.status(victim)
            h = get_health(port)
            if st is not None:
                seen.append(
                    (
                        int(st["height"]),
                        st,
                        None if h is None else h[0],
                        None if h is None else h[1],
                    )
                )
                if int(st["height"]) >= target and st.get("catchingUp") is False:
                    break
            time.sleep(max(0.0, 0.05 - (time.monotonic() - t)))
        heights = [s[0] for s in seen]
        assert heights and heights[-1] >= target, (
            f"{victim} did not catch up to {target} within {CATCH_UP_S} s on an idle chain "
            f"(heights seen {heights[:3]}..{heights[-3:]}; last {seen[-1][1] if seen else None})"
        )

        for st, h in isolated:
            assert st is not None and st.get("catchingUp") is True and st["height"] < target, st
            assert h is not None and h[0] == 503 and h[1]["status"] == "unavailable", h

        # While it was behind by more than the threshold, it said so: never healthy, never
        # caught up.
        behind = [s for s in seen if s[0] < target - max_lag]
        for _, st, _, _ in behind:
            assert st.get("catchingUp") is True, st
        # (/health is a second request: judge it by the height in its own body)
        for _, _, code, body in seen:
            if body is not None and body.get("height", target) < target - max_lag:
                assert code == 503 and body["catchingUp"] is True, (code, body)
        # Once it had heard from its peers, the lag and peer height were from certificates.
        known = [s[1] for s in behind if s[1].get("peerHeight", 0) >= target]
        for st in known:
            assert st["lag"] == st["peerHeight"] - st["height"], st
        final = seen[-1][1]
        assert final["peerHeight"] >= target and final["lag"] == 0, final
        h = wait_until(lambda: get_health(port), 30, "/health")
        assert h[0] == 200 and h[1]["catchingUp"] is False, h

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/metrics")
            metrics = conn.getresponse().read().decode()
        finally:
            conn.close()
        assert "gmchain_sync_lag_blocks 0.0" in metrics, metrics[-2000:]

        # Reads state the height they answered at.
        got = rpc_call(port, "gm_getTransactionReceipt", [last["txId"]])
        assert got is not None and got["answeredAt"] >= got["blockNumber"], got
        blk = rpc_call(port, "gm_getBlockByNumber", [target, False])
        assert blk is not None and blk["answeredAt"] >= target, blk
        q = rpc_call(port, "gm_call", ["evidence", "get", [f"nope-{time.monotonic_ns()}"], True])
        assert isinstance(q, dict) and q["answeredAt"] >= target and "value" in q, q

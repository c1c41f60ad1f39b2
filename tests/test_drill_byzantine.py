"""Real-process drills with a lying peer: garbage payloads and equivocating votes.

Rules these drills keep (issue 5 item 6; DESIGN.md "Reliability strategy"; p2p/network.py):
1. The liar is the test process itself holding a validator's real key (it is in the cluster
   directory): it completes the SM2-authenticated handshake like the real node would, so what is
   tested is the node layer's answer to an *authenticated* peer that misbehaves.
2. Three honest validators of four keep a quorum, so the chain must keep committing.
3. Every drill ends in `check_invariants` over the honest nodes (never skipped).
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

from gmchain.ledger.codec import encode
from gmchain.ledger.types import Digest, Height, NodeId, Proposal, QuorumCert, Round, Vote
from gmchain.node.config import load_genesis
from gmchain.node.network import TxBatch, decode_wire
from gmchain.p2p import P2PConfig, P2PNetwork, PeerInfo
from tests.cluster_helpers import Cluster, LoadGen, check_invariants, running_cluster, wait_until

RATE = 50.0


class RogueNode:
    """A validator impersonated by the test process: P2PNetwork with that validator's key."""

    def __init__(self, cluster: Cluster, name: str, honest: list[str]) -> None:
        self.cluster = cluster
        self.name = name
        self.key = cluster.node_key(name)
        self.chain_id = cluster.doc["chain_id"]
        self.proposals: list[Proposal] = []
        self.equivocations = 0
        self.equivocate = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        peers = [
            PeerInfo.from_pubkey(cluster.pubkey(n), "127.0.0.1", cluster.p2p_port(n))
            for n in honest
        ]
        self.ids = {cluster.node_id(n): n for n in honest}

        async def make() -> P2PNetwork:
            net = P2PNetwork(
                chain_id=self.chain_id,
                genesis_hash=load_genesis(cluster.d / "genesis.json").compute_hash(),
                key=self.key,
                peers=peers,
                config=P2PConfig(
                    listen_port=cluster.p2p_port(name), reconnect_min_s=0.1, reconnect_max_s=1.0
                ),
                on_message=self._on_message,
            )
            await net.start()
            return net

        self.net = self._run(make())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def _call(self, fn: Any, *args: Any) -> Any:
        async def go() -> Any:
            return fn(*args)

        return self._run(go())

    async def _on_message(self, sender: bytes, payload: bytes) -> None:
        msg = decode_wire(payload)
        if isinstance(msg, Proposal):
            self.proposals.append(msg)
            if self.equivocate:
                self._double_vote(msg)

    def _double_vote(self, p: Proposal) -> None:
        """Vote for the proposed block and, in the same round, for a block that does not exist;
        send both votes to every honest node (the next leader among them)."""
        h = p.block.header
        real = p.block.block_id
        fake = Digest(os.urandom(32))
        for block_id in (real, fake):
            root = QuorumCert.signing_root(self.chain_id, h.epoch, block_id, h.round, h.height)
            vote = Vote(
                block_id=block_id,
                round=Round(h.round),
                height=Height(h.height),
                voter=NodeId(self.key.public_key.address),
                signature=self.key.sign(root),
            )
            for nid in self.ids:
                self.net.send(nid, vote.encode())
        self.equivocations += 1

    def connected(self) -> list[str]:
        return [self.ids[n] for n in self._call(self.net.connected_peers)]

    def send(self, to: str, payload: bytes) -> bool:
        return bool(self._call(self.net.send, self.cluster.node_id(to), payload))

    def close(self) -> None:
        self._run(self.net.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def _peers(c: Cluster, name: str) -> int:
    st = c.status(name)
    return -1 if st is None else int(st["peers"])


def test_garbage_peer_is_banned_and_chain_continues(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "c", start=["node0", "node1", "node2"]) as (c, _):
        honest = ["node0", "node1", "node2"]
        rogue = RogueNode(c, "node3", honest)
        rogue_hex = c.node_id("node3").hex()
        load = LoadGen(c, honest, rate=RATE).start()
        try:
            wait_until(lambda: len(rogue.connected()) == 3, 60, "the rogue to connect to all")
            c.wait_height(5, honest, timeout_s=60)
            garbage = {
                "node0": b"\xff\x00 not msgpack at all",  # undecodable
                "node1": encode([99, b"x"]),  # a struct tag peers may not send
                "node2": TxBatch(txs=(b"\x01\x02garbage tx",)).encode(),  # bad tx in a batch
            }
            for victim, payload in garbage.items():
                assert rogue.send(victim, payload), f"could not send to {victim}"
            for victim in honest:
                wait_until(
                    lambda v=victim: f"peer {rogue_hex} misbehaved" in c.log(v),
                    30,
                    f"{victim} to log the rogue's misbehaviour",
                )
            # banned: every honest node keeps only its two honest peers, although the rogue
            # keeps redialling (reconnect_max_s = 1 s) and accepting
            wait_until(lambda: rogue.connected() == [], 10, "the rogue to be disconnected")
            h0 = max(c.heights(honest).values(), key=lambda h: h or 0) or 0
            c.wait_height(h0 + 10, honest, timeout_s=60)  # the chain continues without it
            assert rogue.connected() == []
            assert all(_peers(c, n) == 2 for n in honest), {n: _peers(c, n) for n in honest}
        finally:
            load.stop()
            rogue.close()
        rep = check_invariants(c, load.acked, honest, expiry=load.expiry)
        print(rep)


def test_equivocating_voter_does_not_fork_or_stall(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "c", start=["node0", "node1", "node2"]) as (c, _):
        honest = ["node0", "node1", "node2"]
        rogue = RogueNode(c, "node3", honest)
        load = LoadGen(c, honest, rate=RATE).start()
        try:
            wait_until(lambda: len(rogue.connected()) == 3, 60, "the rogue to connect to all")
            rogue.equivocate = True  # from now on it double-votes (and gets itself banned)
            c.wait_height(5, honest, timeout_s=60)
            h0 = max(h or 0 for h in c.heights(honest).values())
            c.wait_height(h0 + 20, honest, timeout_s=90)
            assert rogue.equivocations >= 1, rogue.equivocations
            still = rogue.connected()
        finally:
            load.stop()
            rogue.close()
        print(f"{rogue.equivocations} double votes sent; rogue still connected to {still}")
        rep = check_invariants(c, load.acked, honest, expiry=load.expiry)
        print(rep)


def test_equivocating_voter_is_banned(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "c", start=["node0", "node1", "node2"]) as (c, _):
        honest = ["node0", "node1", "node2"]
        rogue = RogueNode(c, "node3", honest)
        load = LoadGen(c, honest, rate=RATE).start()
        try:
            wait_until(lambda: len(rogue.connected()) == 3, 60, "the rogue to connect to all")
            # Only now: equivocating from the start got it banned by one node before it had
            # connected to the others, and the wait above timed out (seen once in CI).
            rogue.equivocate = True
            c.wait_height(5, honest, timeout_s=60)
            h0 = max(h or 0 for h in c.heights(honest).values())
            c.wait_height(h0 + 10, honest, timeout_s=90)
            banned_by = [n for n in honest if "misbehaved" in c.log(n)]
        finally:
            load.stop()
            rogue.close()
        check_invariants(
            c, load.acked, honest, expiry=load.expiry
        )  # the invariants hold either way
        assert banned_by, "no honest node banned the equivocating voter"

"""Real-socket tests of P2PNetwork on 127.0.0.1 with ephemeral ports.

Good nodes are real P2PNetwork instances; the misbehaving peer is a raw asyncio client that
runs the real handshake (so it is authenticated as an admitted node) and then writes crafted
bytes. Waits are bounded polls (`_wait_until`), never timing assertions.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable

import pytest

from gmchain.crypto_sm import PrivateKey
from gmchain.p2p.config import P2PConfig, PeerInfo, RemoteProtocolError
from gmchain.p2p.framing import FrameDecoder, encode_frame
from gmchain.p2p.handshake import HANDSHAKE_MAX_FRAME, HandshakeResult, Initiator
from gmchain.p2p.network import P2PNetwork
from gmchain.p2p.session import FrameSealer, encode_data

CHAIN = "gmchain-test"
GENESIS_HASH = bytes(range(32))  # what every node of the test chain holds
WAIT_S = 10.0


async def _wait_until(pred: Callable[[], bool], timeout: float = WAIT_S) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


class Cluster:
    """n real nodes, all admitting each other (plus `extra` admitted keys without a node)."""

    def __init__(self, n: int, *, extra: int = 0, **cfg: object) -> None:
        self.keys = [PrivateKey.generate() for _ in range(n)]
        self.extra_keys = [PrivateKey.generate() for _ in range(extra)]
        self.cfg = P2PConfig.minimal(**cfg)
        self.inbox: list[list[tuple[bytes, bytes]]] = [[] for _ in range(n)]
        self.nets: list[P2PNetwork] = []

    def make_net(self, i: int, port: int = 0) -> P2PNetwork:
        def on_message(node_id: bytes, payload: bytes) -> None:
            self.inbox[i].append((node_id, payload))

        cfg = P2PConfig.minimal(**{**_fields(self.cfg), "listen_port": port})
        return P2PNetwork(
            chain_id=CHAIN,
            genesis_hash=GENESIS_HASH,
            key=self.keys[i],
            peers=[],
            config=cfg,
            on_message=on_message,
            rng=random.Random(i),
        )

    def peers(self) -> list[PeerInfo]:
        out = [
            PeerInfo.from_pubkey(k.public_key, "127.0.0.1", net.listen_port)
            for k, net in zip(self.keys, self.nets, strict=True)
        ]
        # admitted keys with no node behind them: a closed port, dials fail quietly
        out += [PeerInfo.from_pubkey(k.public_key, "127.0.0.1", 9) for k in self.extra_keys]
        return out

    async def start(self) -> None:
        self.nets = [self.make_net(i) for i in range(len(self.keys))]
        for net in self.nets:
            await net.start()
        for net in self.nets:
            net.update_admitted(self.peers())
        n = len(self.nets)
        await _wait_until(lambda: all(len(x.connected_peers()) == n - 1 for x in self.nets))

    async def stop(self) -> None:
        for net in self.nets:
            await net.stop()


def _fields(cfg: P2PConfig) -> dict[str, object]:
    return {f: getattr(cfg, f) for f in cfg.__dataclass_fields__}


class RawPeer:
    """A client that speaks the real handshake and can then send arbitrary bytes."""

    def __init__(self, key: PrivateKey, *, chain_id: str = CHAIN, source: str = "") -> None:
        self.key = key
        self.chain_id = chain_id
        self.source = source  # the local address to connect from ("" = the kernel's choice)
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter
        self.result: HandshakeResult
        self.sealer: FrameSealer

    async def connect(self, net: P2PNetwork) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            "127.0.0.1", net.listen_port, local_addr=(self.source, 0) if self.source else None
        )

    async def handshake(self, net: P2PNetwork, target: PrivateKey) -> None:
        await self.connect(net)
        dec = FrameDecoder(HANDSHAKE_MAX_FRAME)
        hs = Initiator(
            chain_id=self.chain_id,
            genesis_hash=GENESIS_HASH,
            identity=self.key,
            expected_peer=target.public_key,
        )
        self.writer.write(encode_frame(hs.start()))
        self.writer.write(encode_frame(hs.on_responder_hello(await self._frame(dec))))
        self.result = hs.on_responder_auth(await self._frame(dec))
        self.sealer = FrameSealer(self.result.send_key, self.result.send_iv)

    async def _frame(self, dec: FrameDecoder) -> bytes:
        while (f := dec.next_frame()) is None:
            data = await self.reader.read(4096)
            if not data:
                raise RemoteProtocolError("handshake_eof")
            dec.feed(data)
        return f[1]

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def closed_by_peer(self) -> bool:
        """Read until EOF (the node hung up); bounded."""
        try:
            async with asyncio.timeout(WAIT_S):
                while await self.reader.read(65536):
                    pass
        except ConnectionError:
            pass
        return True

    def close(self) -> None:
        self.writer.transport.abort()


async def _exchange(a: P2PNetwork, b: P2PNetwork, inbox_b: list[tuple[bytes, bytes]]) -> None:
    """a sends to b and b receives it (proves the pair still works)."""
    token = os.urandom(8)
    assert a.send(b.node_id, token)
    await _wait_until(lambda: (a.node_id, token) in inbox_b)


# ---------------------------------------------------------------------------- happy paths


async def test_two_nodes_exchange_in_order_both_ways() -> None:
    c = Cluster(2)
    await c.start()
    try:
        a, b = c.nets
        for i in range(200):
            assert a.send(b.node_id, b"a%d" % i)
            assert b.send(a.node_id, b"b%d" % i)
        await _wait_until(lambda: len(c.inbox[0]) == 200 and len(c.inbox[1]) == 200)
        assert c.inbox[1] == [(a.node_id, b"a%d" % i) for i in range(200)]
        assert c.inbox[0] == [(b.node_id, b"b%d" % i) for i in range(200)]
        assert a.stats["frames_out"] >= 200 and b.stats["frames_in"] >= 200
    finally:
        await c.stop()


async def test_four_nodes_broadcast_full_mesh() -> None:
    c = Cluster(4)
    await c.start()
    try:
        for i, net in enumerate(c.nets):
            assert net.broadcast(b"from %d" % i) == 3
        await _wait_until(lambda: all(len(box) == 3 for box in c.inbox))
        for i, box in enumerate(c.inbox):
            senders = {nid for nid, _ in box}
            assert senders == {n.node_id for j, n in enumerate(c.nets) if j != i}
    finally:
        await c.stop()


async def test_send_refuses_oversize_payload_and_unknown_peer() -> None:
    c = Cluster(2)
    await c.start()
    try:
        a, b = c.nets
        with pytest.raises(ValueError):
            a.send(b.node_id, bytes(c.cfg.max_frame + 1))
        assert a.send(b"\x00" * 20, b"x") is False
        assert a.send(b.node_id, bytes(c.cfg.max_frame))  # exactly the cap is fine
        await _wait_until(lambda: len(c.inbox[1]) == 1)
    finally:
        await c.stop()


# ---------------------------------------------------------------------------- refusals


async def test_unknown_key_is_refused() -> None:
    c = Cluster(2)
    await c.start()
    try:
        stranger = RawPeer(PrivateKey.generate())
        with pytest.raises((RemoteProtocolError, ConnectionError)):
            await stranger.handshake(c.nets[0], c.keys[0])
        await _wait_until(lambda: c.nets[0].stats["rejects"].get("unknown_node") == 1)
        assert c.nets[0].stats["connected"] == 1
        await _exchange(c.nets[1], c.nets[0], c.inbox[0])
    finally:
        await c.stop()


async def test_wrong_chain_id_is_refused() -> None:
    c = Cluster(2, extra=1)
    await c.start()
    try:
        peer = RawPeer(c.extra_keys[0], chain_id="another-chain")
        with pytest.raises((RemoteProtocolError, ConnectionError)):
            await peer.handshake(c.nets[0], c.keys[0])
        await _wait_until(lambda: c.nets[0].stats["rejects"].get("wrong_chain") == 1)
        assert not c.nets[0].is_banned(c.extra_keys[0].public_key.address)  # unproven identity
    finally:
        await c.stop()


async def test_handshake_timeout_on_a_silent_socket() -> None:
    c = Cluster(2, handshake_timeout_s=0.3)
    await c.start()
    try:
        silent = RawPeer(PrivateKey.generate())
        await silent.connect(c.nets[0])
        assert await silent.closed_by_peer()
        assert c.nets[0].stats["rejects"].get("handshake_timeout") == 1
        await _exchange(c.nets[0], c.nets[1], c.inbox[1])
    finally:
        await c.stop()


async def test_garbage_before_handshake_is_dropped() -> None:
    c = Cluster(2)
    await c.start()
    try:
        junk = RawPeer(PrivateKey.generate())
        await junk.connect(c.nets[0])
        await junk.send_raw(random.Random(5).randbytes(300))
        assert await junk.closed_by_peer()
        assert c.nets[0].stats["handshakes_failed"] == 1
        await _exchange(c.nets[1], c.nets[0], c.inbox[0])
    finally:
        await c.stop()


# ---------------------------------------------------------------------------- violations after auth


def _tampered(peer: RawPeer) -> bytes:
    frame = bytearray(peer.sealer.seal(encode_data(b"evil")))
    frame[-20] ^= 0x40  # inside the ciphertext
    return bytes(frame)


def _replayed(peer: RawPeer) -> bytes:
    f = peer.sealer.seal(encode_data(b"once"))
    return f + f


def _reordered(peer: RawPeer) -> bytes:
    f0 = peer.sealer.seal(encode_data(b"first"))
    f1 = peer.sealer.seal(encode_data(b"second"))
    return f1 + f0


def _oversize(peer: RawPeer) -> bytes:
    return (10 * 1024 * 1024).to_bytes(4, "big") + b"\x00" * 64


def _garbage(peer: RawPeer) -> bytes:
    return random.Random(9).randbytes(500)


def _bad_inner_tag(peer: RawPeer) -> bytes:
    return peer.sealer.seal(b"\x92\x05\xc4\x01x")  # [5, b"x"]: not a transport message


@pytest.mark.parametrize(
    ("craft", "reasons"),
    [
        (_tampered, {"decrypt"}),
        (_replayed, {"replay"}),
        (_reordered, {"reorder"}),
        (_oversize, {"oversize"}),
        (_garbage, {"oversize", "reorder", "decrypt", "malformed", "empty_frame"}),
        (_bad_inner_tag, {"bad_tag"}),
    ],
)
async def test_bad_frames_disconnect_and_ban(
    craft: Callable[[RawPeer], bytes], reasons: set[str]
) -> None:
    c = Cluster(3, extra=1)
    await c.start()
    try:
        target = c.nets[0]
        evil = RawPeer(c.extra_keys[0])
        evil_id = c.extra_keys[0].public_key.address
        await evil.handshake(target, c.keys[0])
        await _wait_until(lambda: evil_id in target.connected_peers())
        await evil.send_raw(craft(evil))
        assert await evil.closed_by_peer()
        await _wait_until(lambda: evil_id not in target.connected_peers())
        assert target.is_banned(evil_id)
        assert set(target.stats["rejects"]) & reasons
        assert target.stats["bans"] == 1
        assert [p for _, p in c.inbox[0] if p in (b"evil", b"second")] == []
        # the others are unaffected
        assert len(target.connected_peers()) == 2
        await _exchange(c.nets[1], target, c.inbox[0])
        await _exchange(target, c.nets[2], c.inbox[2])
        # and the banned node cannot come back during the ban
        again = RawPeer(c.extra_keys[0])
        with pytest.raises((RemoteProtocolError, ConnectionError)):
            await again.handshake(target, c.keys[0])
        await _wait_until(lambda: target.stats["rejects"].get("banned") == 1)
    finally:
        await c.stop()


async def test_report_misbehaviour_bans_then_ban_expires_and_peer_returns() -> None:
    c = Cluster(2, ban_seconds=0.5)
    await c.start()
    try:
        a, b = c.nets
        a.report_misbehaviour(b.node_id, "invalid vote")
        assert b.node_id not in a.connected_peers()
        assert a.is_banned(b.node_id)
        # after the ban the smaller node's dialer reconnects on its own
        await _wait_until(
            lambda: b.node_id in a.connected_peers() and a.is_banned(b.node_id) is False
        )
        await _wait_until(lambda: a.node_id in b.connected_peers())
        await _exchange(a, b, c.inbox[1])
        assert a.stats["rejects"]["misbehaviour"] == 1
    finally:
        await c.stop()


async def test_idle_peer_is_dropped_but_quiet_good_peers_stay_up() -> None:
    c = Cluster(2, extra=1, idle_timeout_s=0.6)
    await c.start()
    try:
        target = c.nets[0]
        mute = RawPeer(c.extra_keys[0])
        await mute.handshake(target, c.keys[0])
        assert await mute.closed_by_peer()  # says nothing after the handshake
        assert target.stats["disconnects"].get("idle_timeout") == 1
        # the two real nodes exchanged only keepalives in that time and are still connected
        assert c.nets[1].node_id in target.connected_peers()
        await _exchange(target, c.nets[1], c.inbox[1])
    finally:
        await c.stop()


# ---------------------------------------------------------------------------- limits and recovery


async def test_reconnect_after_peer_restarts() -> None:
    c = Cluster(2)
    await c.start()
    try:
        a, b = c.nets
        port_b = b.listen_port
        await b.stop()
        await _wait_until(lambda: b.node_id not in a.connected_peers())
        b2 = c.make_net(1, port=port_b)
        c.nets[1] = b2
        await b2.start()
        b2.update_admitted(c.peers())
        await _wait_until(lambda: b2.node_id in a.connected_peers())
        await _wait_until(lambda: a.node_id in b2.connected_peers())
        await _exchange(a, b2, c.inbox[1])
        await _exchange(b2, a, c.inbox[0])
    finally:
        await c.stop()


async def test_slow_consumer_gets_backpressure_not_unbounded_memory() -> None:
    c = Cluster(2, max_queue_frames=32)
    release = asyncio.Event()
    got: list[bytes] = []

    async def slow(node_id: bytes, payload: bytes) -> None:
        await release.wait()
        got.append(payload)

    await c.start()
    try:
        a, b = c.nets
        b._sessions._on_message = slow  # the node layer stalls
        accepted: list[bytes] = []
        payload_size = 32 * 1024
        for i in range(5000):
            p = i.to_bytes(4, "big") + bytes(payload_size)
            if not a.send(b.node_id, p):
                break
            accepted.append(p)
            if i % 16 == 0:
                await asyncio.sleep(0.005)  # let the writer push into TCP
        assert a.stats["send_dropped"] >= 1  # the queue filled: bounded, not growing
        assert len(accepted) < 5000
        release.set()
        await _wait_until(lambda: len(got) == len(accepted))
        assert got == accepted  # nothing lost or reordered among the accepted ones
    finally:
        await c.stop()


async def test_rate_limit_delays_but_delivers_in_order() -> None:
    c = Cluster(2, max_frames_per_s=400.0, burst_frames=10)
    await c.start()
    try:
        a, b = c.nets
        for i in range(60):
            assert a.send(b.node_id, b"%d" % i)
        await _wait_until(lambda: len(c.inbox[1]) == 60)
        assert [p for _, p in c.inbox[1]] == [b"%d" % i for i in range(60)]
        assert b.stats["rate_limited"] > 0
        assert a.node_id in b.connected_peers()  # throttled, not banned
    finally:
        await c.stop()


async def test_update_admitted_drops_removed_peer() -> None:
    c = Cluster(3)
    await c.start()
    try:
        a, b, x = c.nets
        keep = [p for p in c.peers() if p.node_id != x.node_id]
        a.update_admitted(keep)
        await _wait_until(lambda: x.node_id not in a.connected_peers())
        assert b.node_id in a.connected_peers()
        await asyncio.sleep(0.3)  # x keeps retrying if it is the dialer; a must keep refusing
        assert x.node_id not in a.connected_peers()
    finally:
        await c.stop()


async def test_pending_handshakes_are_capped() -> None:
    c = Cluster(2, max_pending_handshakes=2, handshake_timeout_s=1.0)
    await c.start()
    try:
        # strangers: from an address that is no admitted peer's host (those have reserved slots)
        silent = [RawPeer(PrivateKey.generate(), source="127.0.0.2") for _ in range(3)]
        for p in silent[:2]:
            await p.connect(c.nets[0])
        await _wait_until(lambda: c.nets[0].stats["pending_handshakes"]["strangers"] == 2)
        await silent[2].connect(c.nets[0])
        assert await silent[2].closed_by_peer()
        assert c.nets[0].stats["rejects"].get("too_many_handshakes") == 1
        for p in silent[:2]:
            p.close()
    finally:
        await c.stop()


async def test_failing_handler_does_not_kill_the_session() -> None:
    c = Cluster(2)
    await c.start()
    try:
        a, b = c.nets
        seen: list[bytes] = []

        def flaky(node_id: bytes, payload: bytes) -> None:
            if payload == b"boom":
                raise RuntimeError("node layer bug")
            seen.append(payload)

        b._sessions._on_message = flaky
        assert a.send(b.node_id, b"boom") and a.send(b.node_id, b"after")
        await _wait_until(lambda: seen == [b"after"])
        assert b.stats["handler_errors"] == 1
        assert a.node_id in b.connected_peers()
    finally:
        await c.stop()

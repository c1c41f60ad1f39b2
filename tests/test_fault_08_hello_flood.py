"""Fault 8 (issue 10), review round: a flood of VALID hellos froze the victim's event loop.

The hello proof is keyed by the genesis hash, and both it and the node's identity key are public
(any RPC caller reads them), so an attacker pays one HMAC per connection while the node paid an
SM2 key generation and encryption (~4 ms) per connection on its event loop, plus an SM2
decryption (~2 ms) when M3 claims an admitted identity. With 16 source addresses x 4 connections
the reviewer measured an average loop lag of 481 ms and a 2.7 s honest reconnect.

Now the handshake's SM2 work runs on a small thread pool (OpenSSL via ctypes releases the GIL),
and handshakes that reach SM2 work are rate limited per source address and, for strangers,
together (`p2p_handshake_rate_per_address`, `p2p_handshake_rate_strangers`); the admitted peers'
configured hosts have their own per-address budget that strangers cannot spend. Refusals are
counted as `handshake_rate`.

Also here (finding 4): someone at an admitted peer's own address could hold all of that address's
reserved slots with silent connections and so isolate the peer; now a new connection from a known
address whose slots are full evicts the oldest connection there that has not sent its hello.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from gmchain.crypto_sm import PrivateKey
from gmchain.p2p.config import P2PConfig, PeerInfo
from gmchain.p2p.network import P2PNetwork

CHAIN = "flood"
GENESIS = bytes(range(32))
ROOT = Path(__file__).resolve().parent.parent

# The attacker: a separate process (its CPU is not the victim's loop). For each of its source
# addresses it keeps `per` connections busy: a valid M1 (one HMAC with the public genesis hash),
# and, if M2 comes back, an M3 claiming the admitted peer with a garbage KEM ciphertext whose C1
# is on the curve (so the victim's decryption does the scalar multiplication).
_ATTACKER = r"""
import asyncio, os, sys, time
from gmchain.p2p.framing import FrameDecoder, encode_frame
from gmchain.p2p.handshake import (
    PROTOCOL_VERSION, InitiatorAuth, InitiatorHello, compute_hello_proof,
)

port, secs, first, last, per = (int(a) for a in sys.argv[1:6])
chain = sys.argv[6]
gh, vpub, ppub = (bytes.fromhex(a) for a in sys.argv[7:10])
EPH = bytes.fromhex("04" + "32c4ae2c1f1981195f9904466a39c9948fe30bbff2660be1715a4589334c74c7"
                    "bc3736a2f4f6779c59bdcee36b692153d0a9877cc62a474002df32e52139f0a0")
stats = {"conns": 0, "m2": 0}

async def one(src):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=(src, 0))
        except OSError:
            await asyncio.sleep(0.05)
            continue
        stats["conns"] += 1
        try:
            nonce = os.urandom(32)
            proof = compute_hello_proof(genesis_hash=gh, version=PROTOCOL_VERSION, chain_id=chain,
                                        ephemeral=EPH, nonce=nonce, responder=vpub)
            w.write(encode_frame(InitiatorHello(version=PROTOCOL_VERSION, chain_id=chain,
                                                ephemeral=EPH, nonce=nonce, proof=proof).encode()))
            d = FrameDecoder(4096)
            while (f := d.next_frame()) is None:
                data = await r.read(4096)
                if not data:
                    break
                d.feed(data)
            if f is not None:
                stats["m2"] += 1
                ct = b"\x04" + EPH[1:] + os.urandom(64)
                w.write(encode_frame(InitiatorAuth(kem_ct=ct, identity=ppub, signature=bytes(64),
                                                   mac=bytes(32)).encode()))
                await r.read(1)
        except OSError:
            pass
        finally:
            w.transport.abort()

async def main():
    srcs = [f"127.0.0.{i}" for i in range(first, last + 1)]
    await asyncio.gather(*(one(s) for s in srcs for _ in range(per)))
    print("ATTACKER", stats, flush=True)

asyncio.run(main())
"""


# Silent connections from one address, each reopened the moment the victim closes it.
_STALLER = r"""
import asyncio, sys, time
port, secs, n = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])

async def one():
    end = time.monotonic() + secs
    while time.monotonic() < end:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        try:
            async with asyncio.timeout(max(0.01, end - time.monotonic())):
                await r.read(1)
        except (OSError, TimeoutError):
            pass
        finally:
            w.transport.abort()

async def main():
    await asyncio.gather(*(one() for _ in range(n)))

asyncio.run(main())
"""


def _key_pair() -> tuple[PrivateKey, PrivateKey]:
    """(victim, peer) with the peer's node id smaller: the peer dials, the victim accepts."""
    while True:
        v, p = PrivateKey.generate(), PrivateKey.generate()
        if p.public_key.address < v.public_key.address:
            return v, p


class _LagMeter:
    """How late a 10 ms sleep on this loop wakes up: the event loop's responsiveness."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            self.samples.append(time.perf_counter() - t - 0.01)

    def start(self) -> None:
        self.samples.clear()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> tuple[float, float]:
        """(average, max) lag in seconds since start()."""
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        n = max(1, len(self.samples))
        return sum(self.samples) / n, max(self.samples, default=0.0)


def _network(key: PrivateKey, peer: PeerInfo, **overrides: object) -> P2PNetwork:
    return P2PNetwork(
        chain_id=CHAIN,
        genesis_hash=GENESIS,
        key=key,
        peers=[peer],
        config=P2PConfig(listen_port=0, **overrides),  # type: ignore[arg-type]
        on_message=lambda nid, payload: None,
    )


async def _time_connect(
    victim: P2PNetwork, key: PrivateKey, victim_key: PrivateKey, limit: float
) -> float:
    """Start the admitted peer afresh (a restart); seconds until both sides see the session."""
    info = PeerInfo.from_pubkey(victim_key.public_key, "127.0.0.1", victim.listen_port)
    peer = _network(key, info)
    await peer.start()
    t = time.monotonic()
    try:
        while time.monotonic() - t < limit:
            if key.public_key.address in victim.connected_peers() and peer.connected_peers():
                break
            await asyncio.sleep(0.02)
        return time.monotonic() - t
    finally:
        await peer.stop()


async def test_a_valid_hello_flood_from_16_addresses_does_not_freeze_the_loop() -> None:
    """The reviewer's probe `hello-flood-16addr` as a test. On adcc14f: average loop lag 481 ms
    and a 2.7 s reconnect (reviewer), 566 ms and 3.1 s here (2 cores at load 14); the bounds
    below leave room for a loaded machine."""
    kv, kp = _key_pair()
    victim = _network(kv, PeerInfo.from_pubkey(kp.public_key, "127.0.0.1", 1))
    await victim.start()
    meter = _LagMeter()
    attacker: subprocess.Popen[str] | None = None
    try:
        meter.start()
        baseline = await _time_connect(victim, kp, kv, 60)
        quiet_lag, _ = await meter.stop()
        assert baseline < 60, "the admitted peer does not connect even without an attack"
        args = [str(victim.listen_port), "12", "20", "35", "4", CHAIN, GENESIS.hex()]
        args += [kv.public_key.to_bytes().hex(), kp.public_key.to_bytes().hex()]
        attacker = subprocess.Popen(
            [sys.executable, "-c", _ATTACKER, *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            text=True,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60  # the attack is under way: the victim answers its hellos
        while victim.stats["handshakes_failed"] < 50:
            assert loop.time() < deadline and attacker.poll() is None, victim.stats
            await asyncio.sleep(0.05)
        meter.start()
        await asyncio.sleep(2.0)
        reconnect = await _time_connect(victim, kp, kv, 8)
        lag_avg, lag_max = await meter.stop()
        deadline = loop.time() + 60  # the victim's loop must keep serving while we wait
        while attacker.poll() is None:
            assert loop.time() < deadline, "the attacker did not finish"
            await asyncio.sleep(0.1)
        assert attacker.stdout is not None
        out = attacker.stdout.read()
        stats = victim.stats
        print(
            f"quiet: lag {quiet_lag * 1e3:.1f} ms, connect {baseline:.2f} s; flood: lag avg "
            f"{lag_avg * 1e3:.1f} ms max {lag_max * 1e3:.1f} ms, reconnect {reconnect:.2f} s"
        )
        print(out, stats["handshake_refusals"])
        # Seen with the fix on a 2-core machine at load 12: 7..53 ms and 0.1..1.7 s.
        assert lag_avg < 0.15, f"event loop lag {lag_avg * 1e3:.0f} ms on average under the flood"
        assert reconnect < 3.0, f"the admitted peer took {reconnect:.1f} s to reconnect"
        assert stats["handshake_refusals"].get("handshake_rate", 0) > 0, stats
    finally:
        if attacker is not None and attacker.poll() is None:
            attacker.kill()
            attacker.wait()
        await victim.stop()


def test_handshake_budget_rules() -> None:
    """Per address, strangers together, and the admitted peers' hosts on their own budget."""
    from gmchain.p2p.limits import HandshakeBudget  # new with this fix

    budget = HandshakeBudget(
        per_address_rate=1.0, per_address_burst=2, strangers_rate=2.0, strangers_burst=3, now=0.0
    )
    budget.set_known({"10.0.0.1": 2})  # two admitted peers configured there: twice the budget
    assert [budget.maybe_spend("192.0.2.1", 0.0) for _ in range(3)] == [True, True, False]
    assert budget.maybe_spend("192.0.2.2", 0.0) is True
    assert budget.maybe_spend("192.0.2.3", 0.0) is False  # strangers together: 3 spent
    # strangers' exhaustion does not touch the admitted peers' host: 2 x 2 of its own
    assert [budget.maybe_spend("10.0.0.1", 0.0) for _ in range(5)] == [True] * 4 + [False]
    # a refused attempt spends nothing: after 1 s each bucket has earned back its rate
    assert budget.maybe_spend("192.0.2.3", 1.0) is True
    assert budget.maybe_spend("192.0.2.2", 1.0) is True
    assert budget.maybe_spend("192.0.2.1", 1.0) is False  # strangers' pool: 2 earned, 2 spent
    # idle addresses are forgotten once their bucket has refilled (memory stays bounded)
    assert budget.count_tracked(100.0) == 0


async def test_silent_connections_from_an_admitted_peers_own_address_do_not_isolate_it() -> None:
    """The reviewer's `own-address-stall`: 8 silent connections from the admitted peer's own
    address (127.0.0.1 here), each reopened as soon as it is closed, held every slot reserved
    for it, and its reconnects were refused (`per_address_limit`) until the attacker stopped.
    Now a new connection evicts the oldest one there that has sent nothing, and the peer's
    (whose hello is on its way) is never the one evicted however fast the attacker churns."""
    kv, kp = _key_pair()
    victim = _network(
        kv,
        PeerInfo.from_pubkey(kp.public_key, "127.0.0.1", 1),
        hello_timeout_s=30.0,
        handshake_timeout_s=30.0,
    )
    await victim.start()
    per = P2PConfig().max_pending_per_address  # the slots reserved for the peer's host
    attacker = subprocess.Popen(
        [sys.executable, "-c", _STALLER, str(victim.listen_port), "60", str(per * 2)]
    )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while victim.stats["pending_handshakes"]["known"] < per:
            assert loop.time() < deadline, victim.stats
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.0)  # the churn is under way
        # The attack outlasts the bound by far (isolation would last all 60 s); 15 s leaves room
        # for a loaded 2-core machine (a 10 s reconnect was seen under load before the dialer
        # generated its ephemeral key ahead of the connection instead of while holding it silent).
        reconnect = await _time_connect(victim, kp, kv, 30)
        assert reconnect < 15, f"isolated: {victim.stats['handshake_refusals']}"
        assert victim.stats["handshake_refusals"].get("evicted_silent", 0) >= 1
    finally:
        attacker.kill()
        attacker.wait()
        await victim.stop()

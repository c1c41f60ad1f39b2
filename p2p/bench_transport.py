"""Throughput of the sealed transport: 1 KiB frames between two nodes on loopback.

Run: `.venv/bin/python -m gmchain.p2p.bench_transport [--frames N] [--size BYTES] [--uvloop]`.
Both nodes share one process and one event loop (so the figure includes both ends' work on
one core). The inbound rate limit is lifted for the measurement; with the default config a
peer is held to `max_frames_per_s` (2,000 frames/s). Also reports the handshake time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time

from gmchain.crypto_sm import PrivateKey
from gmchain.p2p.config import P2PConfig, PeerInfo
from gmchain.p2p.network import P2PNetwork

__all__ = ["main", "run_bench"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def run_bench(frames: int, size: int) -> dict[str, float]:
    """Send `frames` payloads of `size` bytes from node A to node B; return rates."""
    keys = [PrivateKey.generate(), PrivateKey.generate()]
    ports = [_free_port(), _free_port()]
    peers = [
        PeerInfo.from_pubkey(k.public_key, "127.0.0.1", p) for k, p in zip(keys, ports, strict=True)
    ]
    received = 0
    done = asyncio.Event()

    def on_message(node_id: bytes, payload: bytes) -> None:
        nonlocal received
        received += 1
        if received == frames:
            done.set()

    nets = [
        P2PNetwork(
            chain_id="bench",
            genesis_hash=bytes(32),
            key=k,
            peers=peers,
            config=P2PConfig(
                listen_port=p, max_frames_per_s=1e9, burst_frames=1 << 30, idle_timeout_s=60
            ),
            on_message=on_message,
        )
        for k, p in zip(keys, ports, strict=True)
    ]
    t0 = time.perf_counter()
    for n in sorted(nets, key=lambda n: n.node_id, reverse=True):
        await n.start()  # the listener first, so the dialer's first attempt succeeds
    a, b = nets
    while b.node_id not in a.connected_peers() or a.node_id not in b.connected_peers():
        await asyncio.sleep(0.001)
    t_connect = time.perf_counter() - t0
    payload = bytes(size)
    t0 = time.perf_counter()
    sent = 0
    while sent < frames:
        if a.send(b.node_id, payload):
            sent += 1
        else:
            await asyncio.sleep(0)  # queue full: let the writer drain (backpressure)
    await done.wait()
    elapsed = time.perf_counter() - t0
    for n in nets:
        await n.stop()
    return {
        "frames": frames,
        "payload_bytes": size,
        "seconds": round(elapsed, 3),
        "frames_per_s": round(frames / elapsed),
        "MB_per_s": round(frames * size / elapsed / 1e6, 2),
        "connect_and_handshake_ms": round(t_connect * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    print(json.dumps(asyncio.run(run_bench(args.frames, args.size))))


if __name__ == "__main__":
    main()

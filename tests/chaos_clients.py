"""Abusive clients and a full disk for the chaos drill (tests/chaos.py), over real sockets.

Rules this module keeps:
1. Every abuser connects from its own loopback address (all of 127.0.0.0/8 is local on Linux),
   never from 127.0.0.1, which the drill's legitimate clients and the validators themselves use:
   per-address limits (issue 10 faults 3a, 5, 8) must be able to tell the abuser from a member,
   as they would tell a remote attacker from one.
2. Real sockets and real bytes only: no node module is imported, patched or called in-process.
3. Each abuser is a context manager: it starts on enter, releases every socket or byte on exit,
   and counts what it did (`stats`) for the drill's report. Abusers never raise on a refused or
   reset connection: being refused is what a hardened node should do to them.

The abuses are the reproductions of issue 10: slowloris (fault 3a: idle half-sent requests that
exhaust a node's descriptors), a WebSocket client that never reads (fault 6: queued replies grow
without bound), receipt waits that hold request slots (fault 5), proof floods at the head (fault 7:
O(chain) work on the event loop) and stalled P2P handshakes (fault 8: pre-auth slots held by
anyone). `TmpfsDisk` is fault 4's small filesystem, filled with a ballast file on demand.
"""

from __future__ import annotations

import base64
import errno
import http.client
import json
import os
import random
import select
import socket
import struct
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = [
    "Abuser",
    "DeafWebSocket",
    "HandshakeStall",
    "ProofFlood",
    "Slowloris",
    "TmpfsDisk",
    "abuser_address",
    "rss_bytes",
]


def abuser_address(rng: random.Random) -> str:
    """A loopback source address other than 127.0.0.1 (rule 1)."""
    return f"127.{rng.randrange(1, 250)}.{rng.randrange(0, 250)}.{rng.randrange(2, 250)}"


def rss_bytes(pid: int) -> int | None:
    """Resident set size of `pid` (None once it has exited)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _connect(port: int, src: str, timeout_s: float, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # before connect, so the window the peer sees stays small
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout_s)
    try:
        s.bind((src, 0))
        s.connect(("127.0.0.1", port))
    except OSError:
        s.close()
        raise
    return s


class Abuser:
    """What every abuser shares: `_loop` threads run until exit; `ready` is set once the abuse
    is in place; `stats` counts what it did."""

    def __init__(self) -> None:
        self.stats: dict[str, int] = {}
        self.ready = threading.Event()  # the abuse is in place (connections open, batches sent)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _count(self, what: str, n: int = 1) -> None:
        self.stats[what] = self.stats.get(what, 0) + n

    def _spawn(self, target: Any, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, daemon=True, name=type(self).__name__)
        self._threads.append(t)
        t.start()

    def __enter__(self) -> Abuser:
        self._spawn(self._loop)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=70)
        self._release()

    def _loop(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        pass


class Slowloris(Abuser):
    """`conns` connections that each send half a request header, then one header line every
    `trickle_s`, forever; connections the server closes are re-opened (up to `reopen` a cycle)."""

    def __init__(
        self, port: int, *, conns: int, src: str, trickle_s: float = 2.0, reopen: int = 200
    ) -> None:
        super().__init__()
        self.port, self.conns, self.src = port, conns, src
        self.trickle_s, self.reopen = trickle_s, reopen
        self._socks: list[socket.socket] = []

    def _open(self, budget: int) -> None:
        for _ in range(min(budget, self.conns - len(self._socks))):
            if self._stop.is_set():
                return
            try:
                s = _connect(self.port, self.src, timeout_s=1.0)
                s.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            except OSError:
                self._count("connect_failed")
                continue
            s.setblocking(False)
            self._socks.append(s)
            self._count("opened")
        self.stats["max_open"] = max(self.stats.get("max_open", 0), len(self._socks))

    def _loop(self) -> None:
        self._open(self.conns)
        self.ready.set()
        while not self._stop.wait(self.trickle_s):
            alive = []
            for s in self._socks:
                try:
                    s.send(b"X-Slow: 1\r\n")
                    alive.append(s)
                except (BlockingIOError, InterruptedError):
                    alive.append(s)
                except OSError:
                    s.close()
                    self._count("closed_by_server")
            self._socks = alive
            self._open(self.reopen)

    def _release(self) -> None:
        for s in self._socks:
            s.close()
        self._socks = []


def _ws_frame(text: str, rng: random.Random) -> bytes:
    """One masked text frame (RFC 6455 section 5.2; clients must mask)."""
    payload = text.encode()
    n = len(payload)
    head = bytes([0x81])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = rng.randbytes(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def _ws_open(port: int, src: str, rcvbuf: int | None) -> tuple[socket.socket | None, str]:
    """A WebSocket handshake on /ws; (socket, "") or (None, why it was refused)."""
    try:
        s = _connect(port, src, timeout_s=10.0, rcvbuf=rcvbuf)
    except OSError as exc:
        return None, f"connect: {exc}"
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    try:
        while b"\r\n\r\n" not in head and len(head) < 8192:
            chunk = s.recv(1)  # byte by byte: nothing after the header may be consumed
            if not chunk:
                break
            head += chunk
    except OSError as exc:
        s.close()
        return None, f"handshake: {exc}"
    status = head.split(b"\r\n", 1)[0].decode(errors="replace")
    if " 101 " not in status + " ":
        s.close()
        return None, status or "closed during handshake"
    return s, ""


class DeafWebSocket(Abuser):
    """A WebSocket client that sends `batches` batches of `calls` requests and never reads.

    Its receive buffer is kept small, so every reply the node produces stays queued in the node.
    `method`/`params` choose the request: `rpc.discover` (fault 6: big replies) by default, or
    `gm_waitForReceipt` on unknown ids (fault 5: requests that hold a slot for 30 s).
    """

    def __init__(
        self,
        port: int,
        *,
        src: str,
        batches: int,
        calls: int = 100,
        method: str = "rpc.discover",
        params: list[Any] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.port, self.src, self.batches, self.calls = port, src, batches, calls
        self.method, self.params = method, params
        self._rng = random.Random(seed)
        self._sock: socket.socket | None = None
        self.refused = ""  # why the node refused the WebSocket, if it did

    def _loop(self) -> None:
        try:
            self._send_all()
        finally:
            self.ready.set()

    def _send_all(self) -> None:
        s, why = _ws_open(self.port, self.src, rcvbuf=4096)
        if s is None:
            self._count("refused")
            self.refused = why
            return
        self._sock = s
        s.settimeout(10.0)  # a server that stops reading us (TCP backpressure) ends the burst
        for b in range(self.batches):
            if self._stop.is_set():
                return
            batch = []
            for i in range(self.calls):
                params = self.params
                if self.method == "gm_waitForReceipt":
                    params = ["0x" + self._rng.randbytes(32).hex(), 30000]
                req: dict[str, Any] = {"jsonrpc": "2.0", "id": b * self.calls + i}
                req["method"] = self.method
                if params is not None:
                    req["params"] = params
                batch.append(req)
            frame = _ws_frame(json.dumps(batch), self._rng)
            try:
                s.sendall(frame)
            except TimeoutError:
                self._count("send_blocked")
                return
            except OSError:
                self._count("closed_by_server")
                return
            self._count("batches_sent")
            self._count("bytes_sent", len(frame))

    def _release(self) -> None:
        if self._sock is not None:
            self._sock.close()


class ProofFlood(Abuser):
    """`threads` clients, each posting `gm_getTransactionProof(tx, atHeight)` batches in a loop."""

    def __init__(
        self, port: int, *, src: str, tx_id: str, at_height: int, threads: int = 2, batch: int = 100
    ) -> None:
        super().__init__()
        self.port, self.src, self.tx_id, self.at = port, src, tx_id, at_height
        self.threads, self.batch = threads, batch
        self.stats["max_latency_ms"] = 0

    def __enter__(self) -> ProofFlood:
        for _ in range(self.threads):
            self._spawn(self._loop)
        self.ready.set()
        return self

    def _loop(self) -> None:
        body = json.dumps(
            [
                {
                    "jsonrpc": "2.0",
                    "id": i,
                    "method": "gm_getTransactionProof",
                    "params": [self.tx_id, self.at],
                }
                for i in range(self.batch)
            ]
        )
        while not self._stop.is_set():
            conn = http.client.HTTPConnection(
                "127.0.0.1", self.port, timeout=60, source_address=(self.src, 0)
            )
            t0 = time.monotonic()
            try:
                conn.request("POST", "/", body, {"Content-Type": "application/json"})
                reply = json.loads(conn.getresponse().read())
            except (OSError, http.client.HTTPException, ValueError):
                self._count("failed")
                self._stop.wait(0.2)
                continue
            finally:
                conn.close()
            ms = int((time.monotonic() - t0) * 1000)
            self.stats["max_latency_ms"] = max(self.stats["max_latency_ms"], ms)
            self._count("batches")
            items = reply if isinstance(reply, list) else [reply]
            self._count("errors", sum(1 for r in items if isinstance(r, dict) and "error" in r))


class HandshakeStall(Abuser):
    """`per_port` TCP connections to each P2P port that never complete a handshake; every
    `garbage_every`-th (0: none) sends random bytes first. A connection the node closes is
    re-taken at once."""

    def __init__(
        self, ports: list[int], *, src: str, per_port: int, garbage_every: int = 4, seed: int = 0
    ) -> None:
        super().__init__()
        self.ports, self.src, self.per_port = ports, src, per_port
        self.garbage_every = garbage_every
        self._rng = random.Random(seed)
        self._socks: dict[socket.socket, int] = {}
        self._n = 0

    def _take(self, port: int) -> None:
        try:
            s = _connect(port, self.src, timeout_s=1.0)
            self._n += 1
            if self.garbage_every and self._n % self.garbage_every == 0:
                s.sendall(self._rng.randbytes(64))
        except OSError:
            self._count("connect_failed")
            return
        s.setblocking(False)
        self._socks[s] = port
        self._count("taken")

    def _loop(self) -> None:
        while not self._stop.is_set():
            held = Counter(self._socks.values())
            for port in self.ports:  # top up: a port that refused (node down) is retried
                for _ in range(self.per_port - held[port]):
                    self._take(port)
            self.ready.set()
            socks = list(self._socks)
            readable = select.select(socks, [], [], 0.05)[0] if socks else []
            for s in readable:
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if data:
                    continue  # the node's first message: ignore it and keep stalling
                self._socks.pop(s)
                s.close()
                self._count("closed_by_server")
            # re-take a freed slot at once, as an attacker would, but without a busy loop
            self._stop.wait(0.01 if readable else 0.05)

    def _release(self) -> None:
        for s in self._socks:
            s.close()
        self._socks = {}


class TmpfsDisk:
    """A tmpfs of `size_bytes` mounted at `path` (needs root), and a ballast file that fills it."""

    def __init__(self, path: Path, size_bytes: int) -> None:
        self.path, self.size_bytes = path, size_bytes
        self.mounted = False
        self.ballast = path / "chaos-ballast"

    def mount(self) -> str | None:
        """Mount; None on success, else why it could not be mounted."""
        self.path.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_bytes}", "tmpfs", str(self.path)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            return (r.stderr or r.stdout).strip() or f"mount exited {r.returncode}"
        self.mounted = True
        return None

    def unmount(self) -> None:
        if self.mounted:
            r = subprocess.run(["umount", str(self.path)], capture_output=True)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
            self.mounted = False

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self) -> int:
        """Write the ballast until the filesystem is full; the bytes written."""
        written = 0
        fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (1 << 20, 64 << 10, 4 << 10, 512):
                block = bytes(chunk)
                while True:
                    try:
                        n = os.write(fd, block)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
                    written += n
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        self.ballast.unlink(missing_ok=True)

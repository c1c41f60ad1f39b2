"""Authenticated sessions: one sealed, rate-limited, keepalive-watched connection per peer.

Rules this module keeps (p2p/network.py states the transport's rules; these are the sessions'):
- At most one live session per node id (`conns`); a newer one replaces the older ("replaced").
- Memory is bounded per peer: the outbound queue by frames and bytes (`enqueue` returns False and
  counts a drop when full); inbound is read only after the previous chunk's frames were delivered
  (`on_message` is awaited, so a slow consumer pushes back into TCP), and the token bucket delays
  reads of a peer that sends faster than `max_frames_per_s`.
- `on_message(node_id, payload)` is called in order per peer, never concurrently for one peer.
  An exception from a callback is logged and counted, never fatal to the loop.
- Keepalive: after idle_timeout/3 without sending, a PING goes out; after idle_timeout without
  receiving (and not busy in on_message), the connection is closed ("idle_timeout").
- A protocol violation closes the session and bans the node; `close` is idempotent and tells the
  node layer (`on_peer_down`) once, only for the node's current session.
- Sessions are closed for re-keying after `rekey_after_bytes` sealed bytes (RFC 8446 §5.5).
- A session that becomes the node's current one is logged (`peer_up`: name, node id, address),
  and so is its end (`peer_down`: the same, the reason and how long it lasted), at INFO: a few
  lines per peer and restart, never per message.
`SessionTable` is owned by `P2PNetwork`, which hands it every dependency through its
constructor (config, clock, ban and running callbacks, the shared counters and task set).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any

from gmchain.p2p.config import P2PConfig, RemoteProtocolError
from gmchain.p2p.framing import FrameDecoder
from gmchain.p2p.handshake import HandshakeResult
from gmchain.p2p.limits import TokenBucket
from gmchain.p2p.session import (
    FRAME_OVERHEAD,
    PING_MESSAGE,
    Close,
    Data,
    FrameOpener,
    FrameSealer,
    Ping,
    decode_transport,
    encode_close,
)

__all__ = ["Connection", "MessageHandler", "PeerHandler", "SessionTable"]

log = logging.getLogger("gmchain.p2p")

MessageHandler = Callable[[bytes, bytes], Awaitable[None] | None]
PeerHandler = Callable[[bytes], None]

READ_CHUNK = 256 * 1024
WRITE_BATCH_BYTES = 256 * 1024


class Connection:
    """One authenticated session. Owned by the network; fields change only on the event loop."""

    __slots__ = (
        "address",
        "bucket",
        "closed",
        "decoder",
        "in_handler",
        "is_closed",
        "last_rx",
        "last_tx",
        "node_id",
        "opener",
        "queue",
        "queued_bytes",
        "reader",
        "sealer",
        "started",
        "tasks",
        "wake",
        "writer",
    )

    def __init__(
        self,
        *,
        result: HandshakeResult,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        decoder: FrameDecoder,
        config: P2PConfig,
        now: float,
    ) -> None:
        self.node_id = result.node_id
        peer = writer.get_extra_info("peername")
        self.address = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"  # host:port
        self.started = now  # when the session was registered (the network's clock)
        self.reader = reader
        self.writer = writer
        self.decoder = decoder  # may already hold frames that followed the handshake
        self.sealer = FrameSealer(result.send_key, result.send_iv)
        self.opener = FrameOpener(result.recv_key, result.recv_iv)
        self.bucket = TokenBucket(rate=config.max_frames_per_s, burst=config.burst_frames, now=now)
        self.queue: deque[bytes] = deque()  # encoded transport messages awaiting sealing
        self.queued_bytes = 0  # invariant: sum of len() of DATA messages in queue
        self.wake = asyncio.Event()  # set when queue gains an item or the conn closes
        self.closed = asyncio.Event()
        self.is_closed = False
        self.in_handler = False  # True while on_message runs (idle timer paused)
        self.last_rx = now
        self.last_tx = now
        self.tasks: list[asyncio.Task[None]] = []


class SessionTable:
    """The live sessions by node id, and the tasks that read and write them."""

    def __init__(
        self,
        *,
        config: P2PConfig,
        on_message: MessageHandler,
        on_peer_up: PeerHandler | None,
        on_peer_down: PeerHandler | None,
        now: Callable[[], float],
        ban: Callable[[bytes], None],
        is_running: Callable[[], bool],
        counters: Counter[str],
        rejects: Counter[str],
        tasks: set[asyncio.Task[Any]],
        label: Callable[[bytes], str] = lambda node_id: node_id.hex()[:12],
    ) -> None:
        self._config = config
        self._label = label  # a node id's name for the log lines
        self._on_message = on_message
        self._on_peer_up = on_peer_up
        self._on_peer_down = on_peer_down
        self._now = now  # the event loop's clock
        self._ban = ban
        self._is_running = is_running
        self._counters = counters  # shared with P2PNetwork.stats
        self._rejects = rejects  # shared with P2PNetwork.stats
        self._tasks = tasks  # the network's tasks, cancelled by stop()
        # node_id -> its live session; a closed session leaves at once (close()).
        self.conns: dict[bytes, Connection] = {}
        self.disconnects: Counter[str] = Counter()  # closed sessions by reason

    def register(
        self,
        result: HandshakeResult,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        decoder: FrameDecoder,
    ) -> Connection:
        """Make `result` the live session for its node (replacing an older one)."""
        decoder.max_body = self._config.max_frame + FRAME_OVERHEAD
        conn = Connection(
            result=result,
            reader=reader,
            writer=writer,
            decoder=decoder,
            config=self._config,
            now=self._now(),
        )
        self._counters["handshakes_ok"] += 1
        old = self.conns.get(conn.node_id)
        if old is not None:
            self.close(old, "replaced", graceful=True)
        self.conns[conn.node_id] = conn
        log.info(
            "peer connected: %s at %s",
            self._label(conn.node_id),
            conn.address,
            extra={
                "event": "peer_up",
                "fields": {
                    "peer": self._label(conn.node_id),
                    "node_id": conn.node_id.hex(),
                    "address": conn.address,
                },
            },
        )
        self._call_peer_handler(self._on_peer_up, conn.node_id)
        return conn

    async def run(self, conn: Connection) -> None:
        writer_task = asyncio.get_running_loop().create_task(self._writer_loop(conn))
        self._tasks.add(writer_task)
        writer_task.add_done_callback(self._tasks.discard)
        # The reader runs in this task and is never cancelled by _close (it may be inside
        # on_message); it sees is_closed or EOF after the transport is aborted.
        conn.tasks.append(writer_task)
        try:
            await self._reader_loop(conn)
        finally:
            self.close(conn, "shutdown" if not self._is_running() else "closed")

    def _call_peer_handler(self, handler: PeerHandler | None, node_id: bytes) -> None:
        if handler is None:
            return
        try:
            handler(node_id)
        except Exception:
            self._counters["handler_errors"] += 1
            log.exception("peer up/down handler failed")

    def enqueue(self, conn: Connection, message: bytes) -> bool:
        c = self._config
        if (
            conn.is_closed
            or len(conn.queue) >= c.max_queue_frames
            or conn.queued_bytes + len(message) > c.max_queue_bytes
        ):
            self._counters["send_dropped"] += 1
            return False
        conn.queue.append(message)
        conn.queued_bytes += len(message)
        conn.wake.set()
        return True

    def close(
        self, conn: Connection, reason: str, *, ban: bool = False, graceful: bool = False
    ) -> None:
        """Idempotent: close `conn`, optionally ban its node, and tell the node layer."""
        if conn.is_closed:
            return
        conn.is_closed = True
        self.disconnects[reason] += 1
        if ban:
            self._ban(conn.node_id)
        current = asyncio.current_task()
        for t in conn.tasks:  # only the writer; see run
            if t is not current:
                t.cancel()
        if graceful:
            with contextlib.suppress(Exception):  # best effort: the socket may be gone
                conn.writer.write(conn.sealer.seal(encode_close(reason)))
            conn.writer.close()
        else:
            conn.writer.transport.abort()
        conn.closed.set()
        conn.wake.set()
        if self.conns.get(conn.node_id) is conn:
            del self.conns[conn.node_id]
            lasted = self._now() - conn.started
            log.info(
                "peer disconnected: %s at %s (%s) after %.0f s",
                self._label(conn.node_id),
                conn.address,
                reason,
                lasted,
                extra={
                    "event": "peer_down",
                    "fields": {
                        "peer": self._label(conn.node_id),
                        "node_id": conn.node_id.hex(),
                        "address": conn.address,
                        "reason": reason,
                        "seconds": round(lasted, 3),
                    },
                },
            )
            self._call_peer_handler(self._on_peer_down, conn.node_id)

    async def _reader_loop(self, conn: Connection) -> None:
        try:
            while not conn.is_closed:
                frame = conn.decoder.next_frame()
                if frame is None:
                    data = await conn.reader.read(READ_CHUNK)
                    if not data:
                        self.close(conn, "eof")
                        return
                    conn.decoder.feed(data)
                    conn.last_rx = self._now()
                    continue
                header, body = frame
                message = decode_transport(conn.opener.open(header, body))
                self._counters["frames_in"] += 1
                self._counters["bytes_in"] += len(header) + len(body)
                delay = conn.bucket.take(self._now())
                if delay > 0:
                    self._counters["rate_limited"] += 1
                    await asyncio.sleep(delay)
                match message:
                    case Data(payload=payload):
                        await self._deliver(conn, payload)
                    case Ping():
                        pass
                    case Close(reason=reason):
                        log.info("peer %s closed: %s", conn.node_id.hex(), reason)
                        self.close(conn, "peer_closed")
                        return
        except RemoteProtocolError as e:
            log.warning("peer %s violated the protocol: %s", conn.node_id.hex(), e)
            self._rejects[e.reason] += 1
            self.close(conn, "violation", ban=True)
        except OSError:
            self.close(conn, "connection_error")

    async def _deliver(self, conn: Connection, payload: bytes) -> None:
        conn.in_handler = True
        try:
            result = self._on_message(conn.node_id, payload)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:
            self._counters["handler_errors"] += 1
            log.exception("on_message failed for peer %s", conn.node_id.hex())
        finally:
            conn.in_handler = False
            conn.last_rx = self._now()

    async def _writer_loop(self, conn: Connection) -> None:
        c = self._config
        ping_after = c.idle_timeout_s / 3
        try:
            while not conn.is_closed:
                now = self._now()
                if not conn.in_handler and now - conn.last_rx > c.idle_timeout_s:
                    self.close(conn, "idle_timeout")
                    return
                if not conn.queue:
                    conn.wake.clear()
                    wait = max(0.0, min(ping_after - (now - conn.last_tx), ping_after))
                    try:
                        async with asyncio.timeout(wait):
                            await conn.wake.wait()
                    except TimeoutError:
                        pass
                    if conn.is_closed:
                        return
                    if not conn.queue and self._now() - conn.last_tx >= ping_after:
                        conn.queue.append(PING_MESSAGE)
                    continue
                batch: list[bytes] = []
                size = 0
                while conn.queue and size < WRITE_BATCH_BYTES:
                    message = conn.queue.popleft()
                    if message is not PING_MESSAGE:
                        conn.queued_bytes -= len(message)
                    frame = conn.sealer.seal(message)
                    batch.append(frame)
                    size += len(frame)
                conn.writer.writelines(batch)
                self._counters["frames_out"] += len(batch)
                self._counters["bytes_out"] += size
                conn.last_tx = self._now()
                if conn.sealer.bytes_sealed >= c.rekey_after_bytes:
                    self.close(conn, "rekey", graceful=True)
                    return
                try:
                    async with asyncio.timeout(c.idle_timeout_s):
                        await conn.writer.drain()
                except TimeoutError:  # the peer stopped reading or vanished without a FIN
                    self.close(conn, "write_timeout")
                    return
        except OSError:
            self.close(conn, "connection_error")

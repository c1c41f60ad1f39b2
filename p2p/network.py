"""P2PNetwork: the asyncio side of the transport (listen, dial, handshake, sealed frames).

Rules kept here:
- Only admitted nodes complete a handshake: the current epoch's validators and observers
  (issue 12, E9), a set of SM2 node keys replaced at run time by `set_admitted`. Everything else
  is refused during the handshake (`_get_refusal`), before any decryption: "not_admitted" for a
  key this network admitted earlier and no longer does, "unknown_node" for any other key. A
  refusal is counted by reason (`stats["rejects"]`, inbound ones also in
  `stats["handshake_refusals"]`, logged as a periodic summary by the gate, never once each).
- `set_admitted` closes at once every session with a node no longer admitted (disconnect reason
  "not_admitted", logged once per node) and stops dialing it. The address book (`PeerInfo`s:
  key, host, port) is separate from the admitted set: an admitted key with no address is
  accepted inbound and never dialed; an address whose key is not admitted is kept (it becomes
  a dial target if a later epoch admits its key) but nothing is sent to it.
- Only the side with the lexicographically smaller node_id dials; the other only accepts, so
  two nodes never race to open two sessions. A newer authenticated session for the same node
  replaces the older one (the peer restarted and our side has not yet seen the old socket die).
- A protocol violation after authentication closes the connection and bans the node for
  `ban_seconds`. Before authentication nobody is banned: the claimed identity is unproven and
  banning it would let anyone lock an honest node out. Pre-auth failures are counted by reason
  (`handshake_refusals`) and the socket closed; the gate logs them as a periodic summary.
- No stranger can keep this node from its admitted peers (issue 10, fault 8): an inbound
  connection needs a slot from `p2p.preauth.PreAuthGate` (per source address, reserved for the
  admitted peers' configured hosts, a bounded pool for strangers); its first message must arrive
  within `hello_timeout_s` and prove the chain before any SM2 work (p2p.handshake). Outbound
  dials take no inbound slot, so they are never blocked by a flood. A new connection from an
  admitted peer's configured host whose slots are all held evicts the oldest one there that has
  sent no byte at all ("evicted_silent"), so silent sockets at that host cannot lock it out.
- Nothing CPU-heavy on the event loop (it runs consensus): the handshake's SM2 work (~6 ms per
  handshake) runs on `handshake_threads` worker threads (OpenSSL via ctypes releases the GIL),
  and only as many handshakes per second reach it as the gate's budget allows (per address;
  strangers together; the admitted peers' hosts on their own), refused as "handshake_rate".
  The hello proof's key is public, so the proof only keeps out those who never asked.
- Authenticated sessions (bounded queues, ordered delivery, keepalive, re-keying after
  `rekey_after_bytes`) are `p2p.connections.SessionTable`'s, which keeps its own rules; this module
  listens, dials and runs the handshakes that feed it.

Sources: DESIGN.md "Transport"; docs/p2p.md; reconnect backoff per `p2p.limits`.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import random
import struct
import termios
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from gmchain.crypto_sm import PrivateKey, PublicKey
from gmchain.p2p.config import P2PConfig, PeerInfo, RemoteProtocolError
from gmchain.p2p.connections import MessageHandler, PeerHandler, SessionTable
from gmchain.p2p.framing import FrameDecoder, encode_frame
from gmchain.p2p.handshake import HANDSHAKE_MAX_FRAME, HandshakeResult, Initiator, Responder
from gmchain.p2p.limits import BanList, compute_backoff
from gmchain.p2p.preauth import PreAuthGate, compute_address
from gmchain.p2p.session import encode_data

__all__ = ["MessageHandler", "P2PNetwork", "PeerHandler"]

log = logging.getLogger("gmchain.p2p")

_T = TypeVar("_T")


class _Pending:
    """One inbound connection that has not authenticated yet (it holds a gate slot)."""

    __slots__ = ("address", "evicted", "reader", "writer")

    def __init__(
        self, address: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.address = address
        self.reader = reader
        self.writer = writer
        # Set when a newer connection from the same known address took over this one's slot:
        # the handler then neither releases the slot nor counts a second refusal.
        self.evicted = False


def _is_silent(pending: _Pending) -> bool:
    """Whether `pending` has sent no byte yet: nothing in its stream buffer, nothing waiting in
    the kernel's receive buffer (FIONREAD)."""
    if getattr(pending.reader, "_buffer", b""):  # asyncio keeps what arrived in a bytearray
        return False
    sock = pending.writer.get_extra_info("socket")
    if sock is None:
        return True
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return True  # the socket is gone: nothing to protect
    return int(struct.unpack("i", raw)[0]) == 0


class P2PNetwork:
    """Authenticated, encrypted transport between admitted nodes. Payloads are opaque bytes."""

    def __init__(
        self,
        *,
        chain_id: str,
        genesis_hash: bytes,
        key: PrivateKey,
        peers: Sequence[PeerInfo],
        config: P2PConfig,
        on_message: MessageHandler,
        on_peer_up: PeerHandler | None = None,
        on_peer_down: PeerHandler | None = None,
        rng: random.Random | None = None,
        admitted: frozenset[bytes] | None = None,
    ) -> None:
        """`peers` is the address book; `admitted` the node keys that may connect (None: the
        keys of `peers`, every one of them admitted)."""
        config.validate()
        if len(genesis_hash) != 32:
            raise ValueError("genesis_hash must be 32 bytes")
        self._chain_id = chain_id
        self._genesis_hash = genesis_hash
        self._key = key
        self._config = config
        self._node_id: bytes = key.public_key.address
        self._rng = rng or random.Random()
        self._gate = PreAuthGate(config)
        # address -> connections from there still waiting for their hello, oldest first
        self._silent: dict[str, list[_Pending]] = {}
        self._pool: ThreadPoolExecutor | None = None  # the handshakes' SM2 work; while running
        # The admitted node keys (65-byte SM2 public keys); ours may be among them or not.
        self._admitted_keys: frozenset[bytes] = frozenset()
        self._admitted_ids: frozenset[bytes] = frozenset()  # their node ids
        # Keys admitted earlier in this network's life and not now (refused as "not_admitted").
        self._dropped_keys: set[bytes] = set()
        # The dial targets: node_id -> where to dial it, for every admitted peer in the address
        # book (never our own node).
        self._admitted: dict[bytes, PeerInfo] = {}
        self._set_admitted(
            frozenset(p.pubkey.to_bytes() for p in peers) if admitted is None else admitted, peers
        )
        self._bans = BanList()
        self._dialers: dict[bytes, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._port = 0
        self._running = False
        self._counters: Counter[str] = Counter()
        self._rejects: Counter[str] = Counter()
        self._sessions = SessionTable(
            config=config,
            on_message=on_message,
            on_peer_up=on_peer_up,
            on_peer_down=on_peer_down,
            now=self._now,
            ban=self._ban,
            is_running=lambda: self._running,
            counters=self._counters,
            rejects=self._rejects,
            tasks=self._tasks,
            label=self._peer_label,
        )

    # ------------------------------------------------------------------ public API

    @property
    def node_id(self) -> bytes:
        return self._node_id

    @property
    def listen_port(self) -> int:
        """The bound port (useful with listen_port=0)."""
        return self._port

    async def start(self) -> None:
        """Listen, then dial every admitted peer whose node_id is larger than ours."""
        if self._running:
            raise RuntimeError("already started")
        self._running = True
        self._pool = ThreadPoolExecutor(
            max_workers=self._config.handshake_threads, thread_name_prefix="p2p-handshake"
        )
        await self._gate.resolve_names()
        self._server = await asyncio.start_server(
            self._handle_inbound, self._config.listen_host, self._config.listen_port
        )
        self._port = self._server.sockets[0].getsockname()[1]
        for node_id in self._admitted:
            self._maybe_start_dialer(node_id)

    async def stop(self) -> None:
        """Close the listener and every session; cancel all tasks."""
        if not self._running:
            return
        self._running = False
        if self._server is not None:
            self._server.close()
        for conn in list(self._sessions.conns.values()):
            self._sessions.close(conn, "shutdown", graceful=True)
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._dialers.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self._server is not None:
            await self._server.wait_closed()

    def send(self, node_id: bytes, payload: bytes) -> bool:
        """Queue `payload` for `node_id`; False if not connected or its queue is full."""
        if len(payload) > self._config.max_frame:
            raise ValueError(f"payload of {len(payload)} bytes exceeds max_frame")
        conn = self._sessions.conns.get(node_id)
        if conn is None or conn.is_closed:
            return False
        return self._sessions.enqueue(conn, encode_data(payload))

    def broadcast(self, payload: bytes) -> int:
        """Queue `payload` for every connected peer; return how many accepted it."""
        if len(payload) > self._config.max_frame:
            raise ValueError(f"payload of {len(payload)} bytes exceeds max_frame")
        message = encode_data(payload)
        return sum(
            1 for c in list(self._sessions.conns.values()) if self._sessions.enqueue(c, message)
        )

    def connected_peers(self) -> list[bytes]:
        return sorted(nid for nid, c in self._sessions.conns.items() if not c.is_closed)

    def report_misbehaviour(self, node_id: bytes, reason: str) -> None:
        """The node layer found an invalid message from `node_id`: disconnect and ban it."""
        self._rejects["misbehaviour"] += 1
        log.warning("peer %s misbehaved: %s", node_id.hex(), reason)
        self._ban(node_id)
        conn = self._sessions.conns.get(node_id)
        if conn is not None:
            self._sessions.close(conn, "misbehaviour")

    def update_admitted(self, peers: Sequence[PeerInfo]) -> None:
        """Admit exactly the nodes of `peers` (with their addresses): `set_admitted` with their
        keys."""
        self.set_admitted(frozenset(p.pubkey.to_bytes() for p in peers), peers)

    def set_admitted(self, keys: frozenset[bytes], peers: Sequence[PeerInfo]) -> None:
        """Admit exactly the node keys `keys` from now on (an epoch's validators and observers),
        with `peers` as the address book. Sessions with nodes no longer admitted are closed at
        once and their dialers stopped; admitted peers with an address are dialed (by the side
        with the smaller node id, as always)."""
        self._set_admitted(keys, peers)
        for nid, conn in list(self._sessions.conns.items()):
            if nid not in self._admitted_ids:
                log.warning("peer %s is no longer admitted: disconnecting it", nid.hex())
                self._sessions.close(conn, "not_admitted", graceful=True)
        for nid, task in list(self._dialers.items()):
            if nid not in self._admitted:
                task.cancel()
                del self._dialers[nid]
        if self._running:
            for nid in self._admitted:
                self._maybe_start_dialer(nid)
            task = asyncio.get_running_loop().create_task(self._gate.resolve_names())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @property
    def admitted_keys(self) -> frozenset[bytes]:
        """The node keys admitted now."""
        return self._admitted_keys

    def is_banned(self, node_id: bytes) -> bool:
        return self._bans.is_banned(node_id, self._now())

    @property
    def stats(self) -> dict[str, Any]:
        """Counters: frames/bytes in/out, drops, handshakes, rejects and disconnects by reason."""
        out: dict[str, Any] = {
            k: self._counters[k]
            for k in (
                "frames_in",
                "frames_out",
                "bytes_in",
                "bytes_out",
                "send_dropped",
                "rate_limited",
                "handshakes_ok",
                "handshakes_failed",
                "handler_errors",
                "dial_failures",
            )
        }
        out["rejects"] = dict(self._rejects)
        out["handshake_refusals"] = dict(self._gate.refusals)
        out["pending_handshakes"] = self._gate.count_held()
        out["disconnects"] = dict(self._sessions.disconnects)
        out["bans"] = self._bans.total
        out["banned_now"] = self._bans.count_active(self._now()) if self._running else 0
        out["connected"] = len(self._sessions.conns)
        out["admitted"] = len(self._admitted_ids - {self._node_id})
        return out

    # ------------------------------------------------------------------ admission and bans

    def _set_admitted(self, keys: frozenset[bytes], peers: Sequence[PeerInfo]) -> None:
        self._dropped_keys = (self._dropped_keys | self._admitted_keys) - keys
        self._admitted_keys = frozenset(keys)
        self._admitted_ids = frozenset(PublicKey.from_bytes(k).address for k in keys)
        self._admitted = {
            p.node_id: p
            for p in peers
            if p.node_id != self._node_id and p.pubkey.to_bytes() in self._admitted_keys
        }
        self._gate.set_peers(self._admitted.values())

    def _peer_label(self, node_id: bytes) -> str:
        """`name (id prefix)` of an admitted peer, for the session log lines."""
        info = self._admitted.get(node_id)
        name = info.name if info is not None and info.name else "peer"
        return f"{name} ({node_id.hex()[:8]})"

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _ban(self, node_id: bytes) -> None:
        self._bans.ban(node_id, self._now(), self._config.ban_seconds)

    def _get_refusal(self, peer: PublicKey) -> str | None:
        """Why `peer` may not open a session now, or None (runs before any crypto)."""
        node_id = peer.address
        if node_id == self._node_id:
            return "self"
        key = peer.to_bytes()
        if key not in self._admitted_keys:
            return "not_admitted" if key in self._dropped_keys else "unknown_node"
        if self._bans.is_banned(node_id, self._now()):
            return "banned"
        return None

    # ------------------------------------------------------------------ handshakes

    async def _read_handshake_frame(
        self, reader: asyncio.StreamReader, decoder: FrameDecoder
    ) -> bytes:
        while True:
            frame = decoder.next_frame()
            if frame is not None:
                return frame[1]
            data = await reader.read(HANDSHAKE_MAX_FRAME)
            if not data:
                raise RemoteProtocolError("handshake_eof")
            decoder.feed(data)

    async def _in_pool(self, fn: Callable[[], _T]) -> _T:
        """Run the SM2 step `fn` on the handshake threads, off the event loop."""
        if self._pool is None:
            raise RemoteProtocolError("shutdown")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def _run_responder(
        self,
        pending: _Pending,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        decoder: FrameDecoder,
    ) -> HandshakeResult:
        hs = Responder(
            chain_id=self._chain_id,
            genesis_hash=self._genesis_hash,
            identity=self._key,
            authorize=self._get_refusal,
            replay_guard=self._gate.replay_guard,
        )
        hello_timeout = self._config.hello_timeout_s
        if hello_timeout < self._config.handshake_timeout_s:
            try:
                async with asyncio.timeout(hello_timeout):
                    m1 = await self._read_handshake_frame(reader, decoder)
            except TimeoutError:
                raise RemoteProtocolError("hello_timeout") from None
        else:  # the whole handshake's deadline comes first
            m1 = await self._read_handshake_frame(reader, decoder)
        self._forget_silent(pending)
        hs.check_initiator_hello(m1)  # an HMAC at most
        if not self._gate.maybe_spend_handshake(pending.address, self._now()):
            raise RemoteProtocolError("handshake_rate")
        writer.write(encode_frame(await self._in_pool(hs.answer_initiator_hello)))
        hs.check_initiator_auth(await self._read_handshake_frame(reader, decoder))
        m4, result = await self._in_pool(hs.answer_initiator_auth)
        writer.write(encode_frame(m4))
        await writer.drain()
        return result

    async def _new_initiator(self, info: PeerInfo) -> Initiator:
        """Generates the ephemeral SM2 key (in the pool) *before* the TCP connection opens, so
        the hello leaves the moment it does: a connection that stays silent can be evicted by a
        newer one from the same address (p2p/preauth.py), and under load the key generation
        alone kept an honest peer's fresh dial silent for seconds."""
        return await self._in_pool(
            lambda: Initiator(
                chain_id=self._chain_id,
                genesis_hash=self._genesis_hash,
                identity=self._key,
                expected_peer=info.pubkey,
            )
        )

    async def _run_initiator(
        self,
        hs: Initiator,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        decoder: FrameDecoder,
    ) -> HandshakeResult:
        writer.write(encode_frame(hs.start()))
        m2 = await self._read_handshake_frame(reader, decoder)
        writer.write(encode_frame(await self._in_pool(lambda: hs.on_responder_hello(m2))))
        m4 = await self._read_handshake_frame(reader, decoder)
        result = await self._in_pool(lambda: hs.on_responder_auth(m4))
        refusal = self._get_refusal(result.peer)  # admitted list or bans may have changed
        if refusal is not None:
            raise RemoteProtocolError(refusal)
        return result

    def _handshake_failed(self, reason: str, writer: asyncio.StreamWriter) -> None:
        self._counters["handshakes_failed"] += 1
        self._rejects[reason] += 1
        writer.transport.abort()

    def _refuse_inbound(self, reason: str, address: str, writer: asyncio.StreamWriter) -> None:
        self._handshake_failed(reason, writer)
        self._gate.on_refused(reason, address, self._now())

    def _forget_silent(self, pending: _Pending) -> None:
        """`pending` sent its hello (or ended): it is no longer a candidate for eviction."""
        waiting = self._silent.get(pending.address)
        if waiting is not None and pending in waiting:
            waiting.remove(pending)
            if not waiting:
                del self._silent[pending.address]

    def _maybe_evict_silent(self, address: str) -> bool:
        """At a known address whose slots are all held: close the oldest connection there that
        has sent nothing at all, and return True (its slot is the caller's now). A connection
        whose hello has arrived but is not processed yet (bytes in its buffer or the kernel's)
        is never chosen: an honest peer sends its hello at once, so churning silent sockets
        cannot push it out."""
        if not self._gate.is_known(address):
            return False
        oldest = next((p for p in self._silent.get(address, ()) if _is_silent(p)), None)
        if oldest is None:
            return False
        self._forget_silent(oldest)
        oldest.evicted = True
        self._refuse_inbound("evicted_silent", address, oldest.writer)
        return True

    async def _handle_inbound(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            peername = writer.get_extra_info("peername")
            address = (compute_address(str(peername[0])) if peername else None) or "?"
            refusal = self._gate.get_refusal(address) if self._running else "shutdown"
            inherited = refusal == "per_address_limit" and self._maybe_evict_silent(address)
            if refusal is not None and not inherited:
                self._refuse_inbound(refusal, address, writer)
                return
            decoder = FrameDecoder(HANDSHAKE_MAX_FRAME)
            # an evicted connection's slot at a known address (never a stranger's) passes on
            stranger = False if inherited else self._gate.take(address)
            pending = _Pending(address, reader, writer)
            self._silent.setdefault(address, []).append(pending)
            reason: str | None = None
            try:
                async with asyncio.timeout(self._config.handshake_timeout_s):
                    result = await self._run_responder(pending, reader, writer, decoder)
            except TimeoutError:
                reason = "handshake_timeout"
            except RemoteProtocolError as e:
                reason = e.reason
            except OSError:
                reason = "handshake_eof"
            finally:
                self._forget_silent(pending)
                if not pending.evicted:
                    self._gate.release(address, stranger)
            if reason is not None:
                if not pending.evicted:  # an evicted one was counted when it was evicted
                    self._refuse_inbound(reason, address, writer)
                return
            await self._sessions.run(self._sessions.register(result, reader, writer, decoder))
        except asyncio.CancelledError:
            # Cancelled by stop(). asyncio's stream server (3.11) logs a cancelled handler
            # task as an error, so this top-level task ends normally.
            writer.transport.abort()
        finally:
            self._tasks.discard(task)

    # ------------------------------------------------------------------ dialing

    def _maybe_start_dialer(self, node_id: bytes) -> None:
        if node_id in self._dialers or not node_id > self._node_id:
            return
        task = asyncio.get_running_loop().create_task(self._dial_loop(node_id))
        self._dialers[node_id] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _backoff(self, attempt: int) -> float:
        c = self._config
        return compute_backoff(
            attempt,
            min_s=c.reconnect_min_s,
            max_s=c.reconnect_max_s,
            factor=c.reconnect_factor,
            jitter=c.reconnect_jitter,
            rng=self._rng,
        )

    async def _dial_loop(self, node_id: bytes) -> None:
        attempt = 0
        while self._running:
            info = self._admitted.get(node_id)
            if info is None:
                return
            conn = self._sessions.conns.get(node_id)
            if conn is not None:
                await conn.closed.wait()
                attempt = 0
                await asyncio.sleep(self._backoff(0))
                continue
            banned_until = self._bans.get_banned_until(node_id, self._now())
            if banned_until is not None:
                await asyncio.sleep(banned_until - self._now())
                continue
            if await self._dial_once(info):
                attempt = 0
                continue
            await asyncio.sleep(self._backoff(attempt))
            attempt += 1

    async def _dial_once(self, info: PeerInfo) -> bool:
        writer: asyncio.StreamWriter | None = None
        decoder = FrameDecoder(HANDSHAKE_MAX_FRAME)
        try:
            async with asyncio.timeout(self._config.handshake_timeout_s):
                hs = await self._new_initiator(info)
                reader, writer = await asyncio.open_connection(info.host, info.port)
                result = await self._run_initiator(hs, reader, writer, decoder)
        except asyncio.CancelledError:
            if writer is not None:
                writer.transport.abort()
            raise
        except (TimeoutError, OSError, RemoteProtocolError) as e:
            reason = e.reason if isinstance(e, RemoteProtocolError) else "dial_failed"
            if isinstance(e, TimeoutError):
                reason = "handshake_timeout"
            self._counters["dial_failures"] += 1
            log.debug("dial %s failed: %r", info.node_id.hex(), e)
            if writer is not None:
                self._handshake_failed(reason, writer)
            return False
        conn = self._sessions.register(result, reader, writer, decoder)
        task = asyncio.get_running_loop().create_task(self._sessions.run(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

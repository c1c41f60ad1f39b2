"""A fault-injecting TCP proxy for partition drills: one listener per directed dial (a -> b).

Rules this module keeps:
1. The proxy never looks inside the byte stream (sessions are SM4-GCM sealed end to end); its only
   faults are at the TCP level: `cut()` aborts every live connection and refuses new ones (accept,
   then reset), `heal()` lets connections through again. So a partition looks to the nodes like a
   network that drops every connection, which is what a real split does to TCP sessions.
2. All proxies of one `ProxyNet` share one asyncio loop in one daemon thread of the test process;
   the public methods are thread-safe (they hop onto that loop and wait for it).
3. Listeners bind port 0, so ports never collide; `port` is known as soon as `add()` returns, which
   is before the nodes start (their configs are rewritten to dial the proxy).

Sources: p2p/network.py (only the smaller node id dials, so one proxy per unordered pair suffices);
issue 5 item 6 ("partition 2|2 through a fault-injecting proxy").
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["Proxy", "ProxyNet"]

_T = TypeVar("_T")


class Proxy:
    """Forwards 127.0.0.1:port to 127.0.0.1:target while not cut. Lives on ProxyNet's loop."""

    def __init__(self, name: str, target: int) -> None:
        self.name = name
        self.target = target
        self.port = 0
        self.cut_now = False
        self.accepted = 0  # connections forwarded
        self.refused = 0  # connections reset because the link was cut
        self._server: asyncio.Server | None = None
        self._live: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_conn, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._abort_all()

    def _abort_all(self) -> None:
        for w in list(self._live):
            w.transport.abort()
        self._live.clear()

    def set_cut(self, cut: bool) -> None:
        self.cut_now = cut
        if cut:
            self._abort_all()

    async def _on_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_now:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        if self.cut_now:  # cut while we were connecting
            self.refused += 1
            writer.transport.abort()
            up_w.transport.abort()
            return
        self.accepted += 1
        self._live.update((writer, up_w))
        await asyncio.gather(
            self._pipe(reader, up_w, writer), self._pipe(up_r, writer, up_w), return_exceptions=True
        )
        self._live.discard(writer)
        self._live.discard(up_w)

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, other: asyncio.StreamWriter
    ) -> None:
        try:
            while not self.cut_now:
                data = await src.read(65536)
                if not data or self.cut_now:
                    break
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            # one side ended: end both, as a TCP middlebox that loses a leg would
            for w in (dst, other):
                with contextlib.suppress(Exception):
                    w.transport.abort()


class ProxyNet:
    """A set of proxies on one background loop."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="proxynet", daemon=True)
        self._thread.start()
        self.proxies: dict[str, Proxy] = {}

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def add(self, name: str, target_port: int) -> Proxy:
        p = Proxy(name, target_port)
        self._run(p.start())
        self.proxies[name] = p
        return p

    def cut(self, names: list[str]) -> None:
        async def go() -> None:
            for n in names:
                self.proxies[n].set_cut(True)

        self._run(go())

    def heal(self, names: list[str] | None = None) -> None:
        async def go() -> None:
            for n in names or list(self.proxies):
                self.proxies[n].set_cut(False)

        self._run(go())

    def close(self) -> None:
        async def go() -> None:
            for p in self.proxies.values():
                await p.stop()

        with contextlib.suppress(Exception):
            self._run(go())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

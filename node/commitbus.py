"""The commit bus: one object the listeners of a commit subscribe to; the consensus driver
publishes each commit on it.

Rules this module keeps:
1. `publish` runs on the event loop (the driver hands commits over with `call_soon_threadsafe`,
   node/driver.py rule 3), after the commit's synced batch is written and the chain's head is
   published: a listener may read the store up to the committed blocks it is given.
2. Listeners run in subscription order, each with every commit in order; a listener must not
   block (a slow consumer is cut off, never buffered without bound: `Subscriptions`).
3. The transaction waiters (`TxWaiters`) and the subscriptions (`Subscriptions`) live here; the
   node's metrics, packing feedback and pool log listeners are subscribed by node/service.py, and
   later listeners (a relayer) subscribe the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from gmchain.chain.core import CommittedBlock
from gmchain.ledger.types import Block, Receipt

__all__ = ["CommitBus", "CommitListener", "Subscriptions", "TxWaiters"]

CommitListener = Callable[[list[CommittedBlock]], None]


class CommitBus:
    """Rule 1, 2: the listeners of a commit, in subscription order."""

    def __init__(self) -> None:
        self._listeners: list[CommitListener] = []

    def subscribe(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

    def publish(self, done: list[CommittedBlock]) -> None:
        for listener in self._listeners:
            listener(done)


class TxWaiters:
    """Futures of callers waiting for a transaction to commit (or to leave the pool)."""

    def __init__(self) -> None:
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}

    def __len__(self) -> int:
        return len(self._waiters)

    def on_commit(self, done: list[CommittedBlock]) -> None:
        for cb in done:
            for tx in cb.block.txs:
                self.release(tx.tx_id)

    def release(self, tx_id: bytes) -> None:
        """The tx committed or left the pool: its waiters look again."""
        for fut in self._waiters.pop(tx_id, ()):
            if not fut.done():
                fut.set_result(None)

    async def wait(self, tx_id: bytes, timeout_s: float) -> None:
        """Until `tx_id` is released or `timeout_s` passes (no error at the timeout)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(tx_id, []).append(fut)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except TimeoutError:
            pass
        finally:
            lst = self._waiters.get(tx_id)
            if lst is not None and fut in lst:
                lst.remove(fut)
                if not lst:
                    del self._waiters[tx_id]

    def cancel_all(self) -> None:
        for futs in self._waiters.values():
            for f in futs:
                if not f.done():
                    f.cancel()


_OVERFLOW = object()


class Subscriptions:
    """Committed heads and contract events for streaming subscribers."""

    def __init__(self) -> None:
        self._heads: set[asyncio.Queue[Any]] = set()
        self._events: set[tuple[str | None, str | None, asyncio.Queue[Any]]] = set()

    def heads(self) -> AsyncIterator[Block]:
        """Every block committed from this call on (registered now, not at first iteration)."""
        q: asyncio.Queue[Any] = asyncio.Queue(maxsize=1024)
        self._heads.add(q)
        return _drain(q, lambda: self._heads.discard(q))

    def events(self, contract: str | None, name: str | None) -> AsyncIterator[Any]:
        """(height, tx_id, Event) of matching committed events, from this call on."""
        q: asyncio.Queue[Any] = asyncio.Queue(maxsize=4096)
        entry = (contract, name, q)
        self._events.add(entry)
        return _drain(q, lambda: self._events.discard(entry))

    def on_commit(self, done: list[CommittedBlock]) -> None:
        for cb in done:
            block = cb.block
            for q in list(self._heads):
                _offer(q, block)
            if not self._events:
                continue
            for tx, rbytes in zip(block.txs, cb.receipts, strict=True):
                for ev in Receipt.decode(rbytes).events:
                    for contract, name, q in list(self._events):
                        if (contract is None or contract == ev.contract) and (
                            name is None or name == ev.name
                        ):
                            _offer(q, (block.header.height, tx.tx_id, ev))


async def _drain(q: asyncio.Queue[Any], cleanup: Callable[[], None]) -> AsyncIterator[Any]:
    """Yield a subscriber's queue until it overflows or the consumer closes the iterator."""
    try:
        while True:
            item = await q.get()
            if item is _OVERFLOW:
                return
            yield item
    finally:
        cleanup()


def _offer(q: asyncio.Queue[Any], item: Any) -> None:
    """Deliver to a subscriber; a subscriber too slow to keep up is ended, not buffered forever."""
    try:
        q.put_nowait(item)
    except asyncio.QueueFull:
        while not q.empty():
            q.get_nowait()
        q.put_nowait(_OVERFLOW)

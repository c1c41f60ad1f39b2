"""The consensus driver (node/driver.py) in a real in-process node: real store, real signatures.

Rules under test:
- driver rule 1 / issue 11 acceptance: the event loop no longer executes blocks — building,
  executing and committing a block happen on the consensus thread, never on the loop's thread;
- queries rule 1: reads on the loop during commits see whole commits (a block at the published
  head is there with every receipt; a contract query reads one snapshot);
- driver rule 4: an exception on the consensus thread stops the node (fatal, NodeService rule 5).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gmchain.ledger.types import SignedTx
from gmchain.node.driver import THREAD_NAME
from gmchain.node.service import NodeService
from tests.node_helpers import evidence_args, make_net, running_service, sign_tx


def _record_threads(obj: Any, name: str, seen: list[tuple[str, int]]) -> None:
    """Wrap the real bound method `obj.name` so each call records the thread it ran on."""
    real: Callable[..., Any] = getattr(obj, name)

    def recorded(*args: Any, **kw: Any) -> Any:
        seen.append((name, threading.get_ident()))
        return real(*args, **kw)

    setattr(obj, name, recorded)


async def _submit_all(service: NodeService, txs: list[SignedTx]) -> None:
    ids = await asyncio.gather(*(service.submit_raw_tx(t.encode()) for t in txs))
    for tx_id in ids:
        assert await service.wait_tx(tx_id, 30) is not None, "no receipt within 30 s"


async def test_blocks_are_built_executed_and_committed_off_the_event_loop(tmp_path: Path) -> None:
    net = make_net(2, replay_window=50)
    async with running_service(tmp_path, net) as service:
        seen: list[tuple[str, int]] = []
        chain = service.chain
        _record_threads(chain, "build_block", seen)
        _record_threads(chain, "commit", seen)
        _record_threads(chain.executor, "execute", seen)
        h = service.height()
        txs = [
            sign_tx(net.accounts[i % 2], expiry=h + 40, args=evidence_args(f"drv-{i}"))
            for i in range(12)
        ]
        await _submit_all(service, txs[:6])
        await _submit_all(service, txs[6:])
        loop_thread = threading.get_ident()
        kinds = {name for name, _ in seen}
        assert {"build_block", "commit", "execute"} <= kinds, kinds
        threads = {ident for _, ident in seen}
        assert loop_thread not in threads  # the loop never ran any of them
        assert threads == {service.driver.thread_id}  # one thread ran them all...
        names = {t.name for t in threading.enumerate() if t.ident in threads}
        assert names == {THREAD_NAME}  # ...the consensus driver's


async def test_reads_during_commits_see_whole_commits(tmp_path: Path) -> None:
    net = make_net(3, replay_window=200)
    async with running_service(tmp_path, net, max_block_txs=20) as service:
        h0 = service.height()
        txs = [
            sign_tx(net.accounts[i % 3], expiry=h0 + 150, args=evidence_args(f"rd-{i}"))
            for i in range(240)
        ]
        stop = asyncio.Event()
        heights: set[int] = set()
        checks = 0

        async def reader() -> None:
            nonlocal checks
            while not stop.is_set():
                st = service.status()
                head = st.height
                block = service.get_block(head)
                assert block is not None, f"published head {head} has no block in the store"
                assert block.header.acc_size <= st.committed_txs
                summary = service.get_block_summary(head)
                assert summary is not None and summary[1] == [t.tx_id for t in block.txs]
                for tx in block.txs:
                    got = service.get_receipt(tx.tx_id)
                    assert got is not None and got[1] == head, "a receipt of the head is missing"
                    look = service.get_tx(tx.tx_id)
                    assert look is not None and look.block_id == block.block_id
                heights.add(head)
                checks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(reader())
        try:
            for k in range(0, len(txs), 40):  # batches, so that commits keep coming
                await asyncio.gather(*(service.submit_raw_tx(t.encode()) for t in txs[k : k + 40]))
            for t in txs:
                assert await service.wait_tx(t.tx_id, 60) is not None
        finally:
            stop.set()
            await task
        assert len(heights) >= 5, heights  # the reads did run across many commits
        assert checks > len(heights)


async def test_a_contract_query_reads_one_snapshot(tmp_path: Path) -> None:
    """A snapshot taken before a commit does not see it (LevelDB snapshot isolation); Queries
    runs each `call` on one such snapshot, so a commit cannot land between two of its reads."""
    net = make_net(1, replay_window=50)
    async with running_service(tmp_path, net) as service:
        h = service.height()
        first = sign_tx(net.accounts[0], expiry=h + 20, args=evidence_args("snap-a"))
        await _submit_all(service, [first])
        with service.store.snapshot() as snap:
            second = sign_tx(net.accounts[0], expiry=h + 20, args=evidence_args("snap-b"))
            await _submit_all(service, [second])
            executor = service.chain.executor
            assert executor.query("evidence", "get", ["snap-a"], committed=snap) is not None
            assert executor.query("evidence", "get", ["snap-b"], committed=snap) is None
            assert service.call("evidence", "get", ["snap-b"]) is not None  # a fresh snapshot


async def test_an_exception_on_the_consensus_thread_stops_the_node(tmp_path: Path) -> None:
    net = make_net(1, replay_window=50)
    async with running_service(tmp_path, net) as service:
        real_commit = service.chain.commit

        def commit_then_fail(*args: Any) -> Any:
            real_commit(*args)
            raise OSError("the disk went away")

        service.chain.commit = commit_then_fail  # type: ignore[method-assign]
        tx = sign_tx(net.accounts[0], expiry=service.height() + 20, args=evidence_args("f-1"))
        await service.submit_raw_tx(tx.encode())
        await asyncio.wait_for(service.fatal.wait(), 30)
        assert isinstance(service.fatal_error, OSError)
        height = service.height()
        await asyncio.sleep(0.2)
        assert service.height() == height  # nothing is stepped any more

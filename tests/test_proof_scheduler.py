"""node/proofserve.py rules 3 and 5: the proof workers take their next job themselves, by turn
among the clients, never more than a client's share at once; a job given up before it started
never runs, one given up while running keeps its slot until its work ends."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gmchain.node.api import ApiError, ErrorCode
from gmchain.node.proofserve import ProofLimits, ProofService, _Job, _Scheduler

DEADLINE_S = 20.0  # generous: a loaded CI machine; a real hang still fails


async def _until(cond: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + DEADLINE_S
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class _Gates:
    """Jobs that record when they start and end, and block until their gate opens."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: list[str] = []
        self.ended: list[str] = []
        self.running: dict[str, int] = {}  # per client, now
        self.most: dict[str, int] = {}  # per client, the most at once
        self.gates: dict[str, threading.Event] = {}

    def job(self, client: str, name: str) -> Callable[[], str]:
        gate = self.gates[name] = threading.Event()

        def work() -> str:
            with self.lock:
                self.started.append(name)
                n = self.running[client] = self.running.get(client, 0) + 1
                self.most[client] = max(self.most.get(client, 0), n)
            assert gate.wait(DEADLINE_S), f"gate {name} never opened"
            with self.lock:
                self.running[client] -= 1
                self.ended.append(name)
            return name

        return work

    def open(self, name: str) -> None:
        self.gates[name].set()


@pytest.fixture
def gates() -> Iterator[_Gates]:
    g = _Gates()
    yield g
    for gate in g.gates.values():  # never leave a worker blocked
        gate.set()


def _submit(sched: _Scheduler, client: str, work: Callable[[], Any]) -> _Job:
    job = _Job(client, work, asyncio.get_running_loop())
    sched.submit(job)
    return job


async def test_share_holds_and_another_client_is_served(gates: _Gates) -> None:
    sched = _Scheduler(threads=2, jobs_per_client=1, on_end=lambda job: None)
    try:
        a = [_submit(sched, "A", gates.job("A", f"A{i}")) for i in range(3)]
        await _until(lambda: gates.started == ["A0"], "A0 to start")
        b = _submit(sched, "B", gates.job("B", "B0"))
        await _until(lambda: "B0" in gates.started, "B0 to start beside A0")
        assert gates.started == ["A0", "B0"]  # the second worker did not take A1: A's share is 1
        for name in ("B0", "A0", "A1", "A2"):
            gates.open(name)
        assert [await j.future for j in a] == ["A0", "A1", "A2"]
        assert await b.future == "B0"
        assert gates.most == {"A": 1, "B": 1}
    finally:
        sched.close()


async def test_one_client_alone_uses_its_whole_share(gates: _Gates) -> None:
    sched = _Scheduler(threads=2, jobs_per_client=2, on_end=lambda job: None)
    try:
        jobs = [_submit(sched, "A", gates.job("A", f"A{i}")) for i in range(4)]
        await _until(lambda: len(gates.started) == 2, "two of A's jobs at once")
        for i in range(4):
            gates.open(f"A{i}")
        assert [await j.future for j in jobs] == ["A0", "A1", "A2", "A3"]
        assert gates.most == {"A": 2}
    finally:
        sched.close()


async def test_clients_are_served_in_turn(gates: _Gates) -> None:
    """One worker: a client arriving behind another's queue waits for at most one more of its
    jobs, not for the whole queue."""
    sched = _Scheduler(threads=1, jobs_per_client=1, on_end=lambda job: None)
    try:
        jobs = [_submit(sched, "A", gates.job("A", f"A{i}")) for i in range(4)]
        await _until(lambda: gates.started == ["A0"], "A0 to start")
        jobs.append(_submit(sched, "B", gates.job("B", "B0")))
        for name in ("A0", "A1", "B0", "A2", "A3"):
            await _until(lambda n=name: n in gates.started, f"{name} to start")  # type: ignore[misc]
            gates.open(name)
        for j in jobs:
            await j.future
        assert gates.started == ["A0", "A1", "B0", "A2", "A3"]
    finally:
        sched.close()


async def test_a_failing_job_reaches_its_caller_and_the_worker_goes_on() -> None:
    sched = _Scheduler(threads=1, jobs_per_client=1, on_end=lambda job: None)
    try:

        def boom() -> None:
            raise ApiError(ErrorCode.NOT_FOUND, "no such transaction")

        bad = _submit(sched, "A", boom)
        good = _submit(sched, "A", lambda: 7)
        with pytest.raises(ApiError) as info:
            await bad.future
        assert info.value.code is ErrorCode.NOT_FOUND
        assert await good.future == 7
    finally:
        sched.close()


async def test_close_refuses_waiting_jobs_after_running_ones_end(gates: _Gates) -> None:
    ended: list[_Job] = []
    sched = _Scheduler(threads=1, jobs_per_client=1, on_end=ended.append)
    running = _submit(sched, "A", gates.job("A", "A0"))
    waiting = _submit(sched, "A", gates.job("A", "A1"))
    await _until(lambda: gates.started == ["A0"], "A0 to start")
    closer = threading.Thread(target=sched.close)
    closer.start()
    await asyncio.sleep(0.05)
    assert closer.is_alive()  # it waits for the running job
    gates.open("A0")
    await _until(lambda: not closer.is_alive(), "close to return")
    assert await running.future == "A0"
    with pytest.raises(ApiError) as info:  # the node is stopping: said, not a bare cancel
        await waiting.future
    assert info.value.code is ErrorCode.NOT_READY
    assert gates.started == ["A0"]
    await _until(lambda: len(ended) == 2, "both jobs to end")  # queue places given back
    with pytest.raises(RuntimeError):
        _submit(sched, "A", lambda: None)


def test_workers_start_with_the_first_job() -> None:
    before = set(threading.enumerate())
    sched = _Scheduler(threads=3, jobs_per_client=1, on_end=lambda job: None)
    assert set(threading.enumerate()) == before  # a service never asked holds no thread
    sched.close()  # nothing started, nothing to wait for


# --- through ProofService: the accepted count per client (proof_queue_per_client) -----------


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ProofService]:
    from tests.node_helpers import ChainRig, make_net

    net = make_net(1, replay_window=50)
    rig = ChainRig(tmp_path / "db", net)
    limits = ProofLimits(max_span=8, threads=1, jobs_per_client=1, queue_per_client=2)
    proofs = rig.proof_service(limits)
    try:
        yield proofs
    finally:
        proofs.close()
        rig.close()


async def test_a_job_given_up_before_it_started_never_runs(
    service: ProofService, gates: _Gates
) -> None:
    first = asyncio.create_task(service._run("A", gates.job("A", "A0")))
    await _until(lambda: gates.started == ["A0"], "A0 to start")
    second = asyncio.create_task(service._run("A", gates.job("A", "A1")))
    await asyncio.sleep(0.01)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    # Its queue place is free at once: a second request is accepted beside the running one.
    third = asyncio.create_task(service._run("A", gates.job("A", "A2")))
    await asyncio.sleep(0.01)
    assert not third.done()  # accepted and waiting, not refused
    gates.open("A0")
    gates.open("A2")
    assert await first == "A0" and await third == "A2"
    assert gates.started == ["A0", "A2"]  # A1 never ran


async def test_a_job_given_up_while_running_keeps_its_slot(
    service: ProofService, gates: _Gates
) -> None:
    first = asyncio.create_task(service._run("A", gates.job("A", "A0")))
    await _until(lambda: gates.started == ["A0"], "A0 to start")
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    second = asyncio.create_task(service._run("A", gates.job("A", "A1")))
    await _until(lambda: service._accepted.get("A") == 2, "A1 to be accepted")
    # The queue holds two: the abandoned running job still counts, so a third is refused.
    with pytest.raises(ApiError) as info:
        await service._run("A", gates.job("A", "A2"))
    assert info.value.code is ErrorCode.RATE_LIMITED
    await asyncio.sleep(0.05)
    assert gates.started == ["A0"]  # A1 waits: A0's work has not ended
    gates.open("A0")
    await _until(lambda: "A1" in gates.started, "A1 to start once A0's work ended")
    gates.open("A1")
    assert await second == "A1"
    assert gates.most == {"A": 1}


async def test_a_job_whose_error_a_future_refuses_still_ends(service: ProofService) -> None:
    """StopIteration cannot be set on an asyncio Future: the caller gets a RuntimeError and
    the client's queue place is given back (queue_per_client is 2 here)."""

    def stops() -> None:
        raise StopIteration

    for _ in range(3):
        with pytest.raises(RuntimeError, match="StopIteration"):
            await service._run("A", stops)
    assert "A" not in service._accepted
    assert await service._run("A", lambda: "served") == "served"

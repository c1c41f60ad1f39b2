"""Crash test of the ledger store: SIGKILL a committing child at random moments, reopen, verify.

Rule under test (DESIGN.md Storage, REFERENCES.md restart bugs): a block is either entirely on disk
or not at all, and every block whose `commit_block` returned before the kill survives it with
exactly the bytes written. The child (`tests/crash_child.py`) reports each height after its
commit returned; its blocks are a pure function of (seed, height), so the parent recomputes them.
One database is reused across all kills; after each kill the parent reopens the store, runs the
deep consistency check, compares the new blocks, the tx records and the whole namespaced state
with a model, then restarts the child, which continues from head + 1.

Note: SIGKILL leaves the OS page cache intact, so this proves batch atomicity and recovery across
process death; power loss (the reason for `sync=True`) is not simulated here.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gmchain.ledger.store import Store
from tests.crash_child import CHAIN_ID, NAMESPACES, SAFETY_KEY, make_block

ROOT = Path(__file__).resolve().parent.parent


class _Child:
    """One run of the child process, with its stdout read by a thread."""

    def __init__(self, db: Path, seed: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.crash_child", str(db), str(seed)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.ready = threading.Event()
        self.ready_head: int | None = None
        self.reported: list[int] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            text = line.decode().strip()
            if text.startswith("ready"):
                self.ready_head = int(text.split()[1])
                self.ready.set()
            elif text:
                self.reported.append(int(text))
        self.ready.set()  # EOF: do not keep a waiter hanging

    def kill(self) -> str:
        """SIGKILL the child, wait for it and its output; return its stderr."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._reader.join()
        assert self.proc.stderr is not None
        err = self.proc.stderr.read().decode(errors="replace")
        assert self.proc.returncode == -signal.SIGKILL, f"child exited by itself:\n{err}"
        return err


def _verify_round(
    store: Store,
    seed: int,
    verified_head: int,
    model: dict[tuple[str, bytes], bytes],
) -> int:
    """Check blocks verified_head+1..head against make_block; advance and compare the state."""
    head = store.head_height()
    head = -1 if head is None else head
    acc = 0 if verified_head < 0 else store.get_acc_size_at(verified_head)
    assert acc is not None
    for h in range(verified_head + 1, head + 1):
        w = make_block(seed, h)
        assert store.get_block_by_height(h) == w.block_bytes, h
        assert store.get_header_by_height(h) == w.header_bytes, h
        assert store.get_block_hash(h) == w.block_hash
        assert store.get_height_by_hash(w.block_hash) == h
        assert store.get_commit_proof(h) == (w.commit_proof or None)
        assert store.get_tx_ids(h) == list(w.tx_ids)
        rows = zip(w.tx_ids, w.receipts, w.acc_leaves, strict=True)
        for i, (tx_id, receipt, leaf) in enumerate(rows):
            assert store.get_tx_location(tx_id) == (h, i)
            assert store.get_receipt(tx_id) == receipt
            assert store.get_acc_leaf(acc + i) == leaf
        acc += len(w.tx_ids)
        for key, value in w.state_writes.items():
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value
    assert store.acc_size() == acc
    stored = {(ns, key): v for ns in NAMESPACES for key, v in store.iter_state(ns)}
    assert stored == model
    return head


def _campaign(db: Path, seed: int, kills: int) -> int:
    rng = random.Random(seed)
    model: dict[tuple[str, bytes], bytes] = {}
    verified_head = -1
    all_reported: list[int] = []
    for _ in range(kills):
        child = _Child(db, seed)
        if rng.random() < 0.2:
            # Anywhere, including during interpreter start-up and Store.open.
            threading.Event().wait(rng.uniform(0.0, 0.4))
        else:
            assert child.ready.wait(60), "child never became ready"
            # Short: the child commits a small block in about a millisecond, so this still lands
            # at random points of commits while keeping the chain (and each deep check) small.
            threading.Event().wait(rng.uniform(0.0, 0.03))
        child.kill()
        reported = child.reported
        all_reported += reported
        assert reported == sorted(reported)
        with Store.open(db, chain_id=CHAIN_ID, paranoid_checks=True) as store:
            store.check_consistency(deep=True)
            head = store.head_height()
            head = -1 if head is None else head
            # Nothing reported is lost; at most the one block whose report was cut off is extra.
            last = max(all_reported, default=-1)
            assert last <= head <= max(last, verified_head) + 1
            safety = store.get_meta(SAFETY_KEY)
            assert (safety is None and last == -1) or last <= int(safety or b"-1") <= head
            verified_head = _verify_round(store, seed, verified_head, model)
    return verified_head


def test_store_survives_sigkill_50_times(tmp_path: Path) -> None:
    head = _campaign(tmp_path / "db", seed=20240601, kills=50)
    assert head >= 0  # the run committed something, so the kills hit a working writer


@pytest.mark.soak
@pytest.mark.parametrize("seed", [77, 78, 79, 80, 81])
def test_store_survives_sigkill_500_times(tmp_path: Path, seed: int) -> None:
    # 5 x 100 kills: a fresh database every 100 keeps the per-kill deep check short.
    head = _campaign(tmp_path / "db", seed=seed, kills=100)
    assert head >= 0

"""Structured logs and the operator's story lines (node/logsetup.py, node/opslog.py; issue 14
item 3).

Units with an injected clock: the JSON line's fields, the reopen after a move, commit sampling,
the sync start/progress/done lines, round timeouts counted each and logged at a bounded rate,
refusal summaries, the quorum-peers number. Then one real `gmchain dev` process with
`log_format = "json"` and a log file: every line is JSON with the documented fields, commits and
refusals are there, and after the file is moved a SIGHUP makes the node write to a new file at
the same path.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gmchain.consensus import ValidatorSet
from gmchain.consensus.types import Validator
from gmchain.crypto_sm import load_private_key
from gmchain.ledger.types import NodeId
from gmchain.node.config import load_config, write_config
from gmchain.node.daemon import DEV_PASSPHRASE, init_dev
from gmchain.node.gcpolicy import GEN0, GEN1, GEN2
from gmchain.node.logsetup import JsonFormatter, ReopenableFileHandler, event_extra
from gmchain.node.metrics import compute_quorum_peers
from gmchain.node.opslog import CommitLog, RefusalSummary, RoundLog, SyncLog, compute_deltas
from tests.node_helpers import NodeProcess, RpcFailure, RpcSession, evidence_args, sign_tx


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _record(msg: str, *args: Any, **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord("gmchain.test", logging.INFO, __file__, 1, msg, args, None)
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


# --- the JSON line ------------------------------------------------------------------------------


def test_json_line_has_the_documented_fields() -> None:
    extra = event_extra("commit", height=7, block="ab" * 8, msg="clash", odd={1, 2})
    rec = _record("committed height %d", 7, node="firm-a", **extra)
    rec.created = 1_796_577_537.25
    doc = json.loads(JsonFormatter().format(rec))
    assert doc["ts"] == "2026-12-06T17:18:57.250Z"
    assert doc["level"] == "INFO" and doc["logger"] == "gmchain.test" and doc["node"] == "firm-a"
    assert doc["msg"] == "committed height 7" and doc["event"] == "commit"
    assert doc["height"] == 7 and doc["block"] == "ab" * 8
    assert doc["field_msg"] == "clash"  # an event field never replaces a standard one
    assert doc["odd"] == repr({1, 2})  # not JSON: written as its repr, never an exception
    assert "exc" not in doc


def test_json_line_carries_the_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    doc = json.loads(JsonFormatter().format(rec))
    assert "ValueError: boom" in doc["exc"] and "event" not in doc


def test_reopen_writes_to_a_new_file_after_a_move(tmp_path: Path) -> None:
    path = tmp_path / "node.log"
    h = ReopenableFileHandler(str(path))
    h.setFormatter(logging.Formatter("%(message)s"))
    try:
        h.emit(_record("before"))
        path.rename(tmp_path / "node.log.1")
        h.emit(_record("moved, not reopened"))
        h.reopen()
        h.emit(_record("after"))
    finally:
        h.close()
    assert (tmp_path / "node.log.1").read_text().split() == ["before", "moved,", "not", "reopened"]
    assert path.read_text() == "after\n"


# --- commits, sync, round timeouts, refusals --------------------------------------------------


class _Header:
    def __init__(self, height: int) -> None:
        self.height = height


class _Block:
    def __init__(self, height: int, txs: int) -> None:
        self.header = _Header(height)
        self.txs = [None] * txs
        self.block_id = bytes([height % 256]) * 32


def _events(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == event]


def test_commit_lines_are_sampled_by_blocks_and_by_time(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    cl = CommitLog(every_blocks=10, every_s=5.0, clock=clock)
    assert cl.on_commit([_Block(1, 3)])  # the first commit is always logged
    logged = [cl.on_commit([_Block(h, 2)]) for h in range(2, 11)]
    assert logged == [False] * 8 + [False]  # 9 blocks since the line: not yet
    assert cl.on_commit([_Block(11, 4)])  # the 10th block
    lines = _events(caplog, "commit")
    assert [r.fields["height"] for r in lines] == [1, 11]  # type: ignore[attr-defined]
    assert lines[1].fields["blocks_since"] == 10 and lines[1].fields["txs_since"] == 22  # type: ignore[attr-defined]
    assert cl.on_commit([_Block(12, 0)]) is False
    clock.t += 5.0
    assert cl.on_commit([_Block(13, 1)])  # T seconds since the last line
    assert _events(caplog, "commit")[-1].fields["blocks_since"] == 2  # type: ignore[attr-defined]


def test_sync_lines_start_progress_and_done(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    sl = SyncLog(progress_s=5.0, clock=clock)
    sl.on_view(height=10, peak=10, catching_up=False, heard=True)
    sl.on_view(height=10, peak=10, catching_up=False, heard=True)  # nothing new: no line
    sl.on_view(height=10, peak=60, catching_up=True, heard=True)
    clock.t += 1
    sl.on_view(height=20, peak=60, catching_up=True, heard=True)  # within progress_s: no line
    clock.t += 4
    sl.on_view(height=40, peak=60, catching_up=True, heard=True)
    clock.t += 1
    sl.on_view(height=60, peak=60, catching_up=False, heard=True)
    got = [(r.event, r.fields) for r in caplog.records if hasattr(r, "event")]  # type: ignore[attr-defined]
    assert [e for e, _ in got] == ["sync_done", "sync_start", "sync_progress", "sync_done"]
    assert got[1][1] == {"height": 10, "peak": 60, "heard": True}
    assert got[2][1]["from_height"] == 10 and got[2][1]["blocks_per_s"] == 6.0
    assert got[3][1] == {"height": 60, "peak": 60, "from_height": 10, "seconds": 6.0}


def test_sync_progress_while_no_peer_has_answered(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    sl = SyncLog(progress_s=5.0, clock=clock)
    sl.on_view(height=7, peak=7, catching_up=True, heard=False)
    clock.t += 5
    sl.on_view(height=7, peak=7, catching_up=True, heard=False)
    lines = [r for r in caplog.records if hasattr(r, "event")]
    assert [r.event for r in lines] == ["sync_start", "sync_progress"]  # type: ignore[attr-defined]
    assert "has not heard any peer's certificates" in lines[0].getMessage()
    assert lines[1].fields == {"from_height": 7, "height": 7, "heard": False}  # type: ignore[attr-defined]
    assert "still no peer's certificates after 5 s" in lines[1].getMessage()


def test_round_timeouts_are_counted_each_and_logged_at_a_bounded_rate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    counted = []
    rl = RoundLog(
        leader_of=lambda r: f"node{r % 4}",
        on_timeout=lambda: counted.append(1),
        timed_out_round=3,  # restored: not a new timeout
        per_minute=2,
        clock=clock,
    )
    rl.on_view(timed_out_round=3)
    for r in range(4, 10):
        rl.on_view(timed_out_round=r)
        rl.on_view(timed_out_round=r)  # the same round again (re-broadcast): counted once
    assert len(counted) == 6
    lines = _events(caplog, "round_timeout")
    assert [r.fields["round"] for r in lines] == [4, 5]  # type: ignore[attr-defined]
    assert lines[0].fields["leader"] == "node0" and lines[0].fields["next_leader"] == "node1"  # type: ignore[attr-defined]
    clock.t += 60
    rl.on_view(timed_out_round=10)
    last = _events(caplog, "round_timeout")[-1]
    assert last.fields["round"] == 10 and last.fields["not_logged"] == 4  # type: ignore[attr-defined]
    assert "4 more round timeouts not logged" in last.getMessage()


def test_refusal_summary_logs_what_grew(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    rpc = {"-32601": 2.0}
    adm: dict[str, float] = {}
    s = RefusalSummary({"rpc": lambda: rpc, "admission": lambda: adm}, interval_s=60)
    assert s.summarize() == {}  # nothing grew since it was made
    rpc["-32601"] = 5.0
    adm["expired"] = 1.0
    assert s.summarize() == {"rpc": {"-32601": 3}, "admission": {"expired": 1}}
    line = _events(caplog, "refusals")[-1]
    assert "rpc -32601: 3" in line.getMessage() and "admission expired: 1" in line.getMessage()
    assert s.summarize() == {}
    assert compute_deltas({"a": {"x": 1}}, {"a": {"x": 1, "y": 2}, "b": {}}) == {"a": {"y": 2}}


def _vset(*powers: int) -> tuple[ValidatorSet, list[NodeId]]:
    ids = [NodeId(bytes([i + 1]) * 20) for i in range(len(powers))]
    vals = [Validator(node_id=i, power=p) for i, p in zip(ids, powers, strict=True)]
    return ValidatorSet(vals), ids


def test_quorum_peers() -> None:
    four, ids = _vset(1, 1, 1, 1)  # quorum 3 of 4
    assert compute_quorum_peers(four, ids[0]) == 2  # a validator: itself and two peers
    assert compute_quorum_peers(four, NodeId(b"\x09" * 20)) == 3  # an observer: three peers
    one, ids1 = _vset(1)
    assert compute_quorum_peers(one, ids1[0]) == 0  # a lone validator needs nobody
    weighted, idw = _vset(5, 1, 1, 1)  # total 8, quorum 6
    assert compute_quorum_peers(weighted, idw[0]) == 1
    assert compute_quorum_peers(weighted, idw[1]) == 1  # with the heavy one: 1 + 5


# --- a real node --------------------------------------------------------------------------------


def _json_lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        doc = json.loads(line)  # every line is one JSON object
        for key in ("ts", "level", "logger", "node", "msg"):
            assert key in doc, (key, doc)
        out.append(doc)
    return out


def test_a_real_node_writes_json_lines_and_reopens_its_file_on_sighup(tmp_path: Path) -> None:
    data_dir = tmp_path / "dev"
    cfg_path = init_dev(data_dir)
    cfg = load_config(cfg_path)
    log_file = tmp_path / "logs" / "node.log"
    log_file.parent.mkdir()
    write_config(
        cfg_path,
        replace(
            cfg,
            log_format="json",
            log_file=str(log_file),
            log_commit_every_blocks=1,
            log_summary_interval_s=1,
        ),
    )
    node = NodeProcess(data_dir=data_dir, home=tmp_path / "home")
    node.start()
    try:
        st = node.wait_ready()
        key = load_private_key(data_dir / "client.key", DEV_PASSPHRASE.encode())
        rpc = RpcSession(node.port)
        try:
            for i in range(3):
                tx = sign_tx(
                    key,
                    expiry=int(st["height"]) + 50,
                    chain_id=st["chainId"],
                    args=evidence_args(f"log-{i}"),
                )
                tx_id = rpc.call("gm_sendRawTransaction", "0x" + tx.encode().hex())
                assert rpc.call("gm_waitForReceipt", tx_id, 30_000) is not None
            with pytest.raises(RpcFailure) as refused_call:
                rpc.call("gm_noSuchMethod")
            assert refused_call.value.code == -32601
        finally:
            rpc.close()

        def events() -> list[str]:
            return [d.get("event", "") for d in _json_lines(log_file)]

        deadline = time.monotonic() + 60
        while "refusals" not in events() and time.monotonic() < deadline:
            time.sleep(0.2)
        docs = _json_lines(log_file)
        assert {"node_start", "commit", "refusals"} <= {d.get("event") for d in docs}, docs
        assert all(d["node"] == "dev" for d in docs)
        (start,) = [d for d in docs if d.get("event") == "node_start"]
        assert start["gc"].startswith(f"thresholds {GEN0}/{GEN1}/{GEN2}, "), start  # gcpolicy
        commits = [d for d in docs if d.get("event") == "commit"]
        assert len(commits) >= 3 and all(len(d["block"]) == 16 for d in commits)
        refused = [d for d in docs if d.get("event") == "refusals"]
        assert refused[0]["rpc"] == {"-32601": 1}, refused

        moved = tmp_path / "logs" / "node.log.1"
        log_file.rename(moved)
        assert node.proc is not None
        node.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while not log_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert log_file.exists(), "no new log file after SIGHUP"
        deadline = time.monotonic() + 30
        while "log_reopen" not in events() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "log_reopen" in events()
        assert "log_reopen" not in [d.get("event") for d in _json_lines(moved)]
    finally:
        node.stop()
    assert "node_stop" in [d.get("event") for d in _json_lines(log_file)]

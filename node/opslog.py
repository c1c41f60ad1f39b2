"""Log lines that tell an operator the node's story: commits, sync, round timeouts, refusals.

Rules this module keeps (docs/ops.md, "Logs"):
1. Every line here carries an `event` and its fields (node/logsetup.py rule 1), and its text
   names the same numbers, so `text` and `json` logs tell the same story.
2. Bounded volume whatever the load: commits are sampled (`CommitLog`: the first commit, then
   at most one line per `every_blocks` blocks or `every_s` seconds, whichever comes first, each
   line summing what it stood for); sync progress is one line when catching up starts, one per
   `progress_s` while it lasts and one when it ends; round timeouts are counted each and logged
   at most `per_minute` a minute (node/ratelog.py), a line saying how many were left out;
   refusals are counted where they happen and summed here once per `interval_s`.
3. Time comes from an injected monotonic clock (tests drive it); nothing here does IO besides
   logging, and nothing raises into the caller.
4. Threads: `SyncLog` and `RoundLog` are called on the consensus thread only (from the
   driver's `on_stepped`), `CommitLog` and `RefusalSummary` on the event loop only.

Leaders rotate every round (consensus/types.py `ValidatorSet.leader`), so a leader change is
news only when a round ended without its leader's block: that is the round-timeout line, which
names the leader that timed out and the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence

from gmchain.crypto_sm import PublicKey
from gmchain.ledger.types import Block, NodeId
from gmchain.node.config import NodeConfig
from gmchain.node.logsetup import event_extra
from gmchain.node.ratelog import LogLimiter

__all__ = [
    "CommitLog",
    "RefusalSummary",
    "RoundLog",
    "SyncLog",
    "compute_deltas",
    "compute_peer_names",
]

log = logging.getLogger("gmchain.node")

Clock = Callable[[], float]


def compute_peer_names(
    config: NodeConfig, me: NodeId, validators: Sequence[NodeId]
) -> dict[NodeId, str]:
    """Node id -> "name (id prefix)" for this node, its configured peers and every validator
    (the names the log lines use)."""
    out = {me: f"{config.name} ({me.hex()[:8]}, this node)"}
    for p in config.peers:
        with contextlib.suppress(ValueError):
            nid = NodeId(PublicKey.from_bytes(bytes.fromhex(p.pubkey)).address)
            out[nid] = f"{p.name or p.host} ({nid.hex()[:8]})"
    for nid in validators:
        out.setdefault(nid, nid.hex()[:8])
    return out


class CommitLog:
    """Rule 2, commits: sampled lines with the head's height, txs and block id prefix."""

    def __init__(self, *, every_blocks: int, every_s: float, clock: Clock = time.monotonic) -> None:
        if every_blocks < 1 or every_s <= 0:
            raise ValueError("every_blocks and every_s must be positive")
        self.every_blocks = every_blocks
        self.every_s = every_s
        self._clock = clock
        self._last_at: float | None = None  # clock time of the last line (None: none yet)
        self._blocks = 0  # blocks committed since the last line
        self._txs = 0  # their transactions

    def on_commit(self, blocks: Sequence[Block]) -> bool:
        """Count `blocks` (committed, in order); log a line if one is due. Returns whether it
        logged."""
        if not blocks:
            return False
        self._blocks += len(blocks)
        self._txs += sum(len(b.txs) for b in blocks)
        now = self._clock()
        due = (
            self._last_at is None
            or self._blocks >= self.every_blocks
            or now - self._last_at >= self.every_s
        )
        if not due:
            return False
        head = blocks[-1]
        since = 0.0 if self._last_at is None else now - self._last_at
        log.info(
            "committed height %d (block %s, %d txs); %d blocks and %d txs since %s",
            head.header.height,
            head.block_id.hex()[:16],
            len(head.txs),
            self._blocks,
            self._txs,
            "the node started" if self._last_at is None else f"the last line {since:.1f} s ago",
            extra=event_extra(
                "commit",
                height=head.header.height,
                block=head.block_id.hex()[:16],
                txs=len(head.txs),
                blocks_since=self._blocks,
                txs_since=self._txs,
                seconds_since=round(since, 3),
            ),
        )
        self._last_at, self._blocks, self._txs = now, 0, 0
        return True


class SyncLog:
    """Rule 2, sync: when catching up starts (from, peak), while it lasts, and when it ends."""

    def __init__(self, *, progress_s: float = 5.0, clock: Clock = time.monotonic) -> None:
        self.progress_s = progress_s
        self._clock = clock
        self._behind: bool | None = None  # None: nothing observed yet
        self._from = 0  # height when catching up started
        self._started = 0.0  # clock time it started
        self._last_line = 0.0  # clock time of the last progress line

    def on_view(self, *, height: int, peak: int, catching_up: bool, heard: bool) -> None:
        """The state after a consensus step: our committed `height`, the peers' verified
        committed `peak`, whether we count as catching up and whether any peer was heard."""
        now = self._clock()
        if catching_up and not self._behind:
            self._behind, self._from, self._started, self._last_line = True, height, now, now
            why = "is behind its peers" if heard else "has not heard any peer's certificates yet"
            log.info(
                "catching up: the node %s (height %d, peers' verified height %d)",
                why,
                height,
                peak,
                extra=event_extra("sync_start", height=height, peak=peak, heard=heard),
            )
        elif catching_up and now - self._last_line >= self.progress_s and not heard:
            self._last_line = now
            log.info(
                "catching up: still no peer's certificates after %.0f s (height %d)",
                now - self._started,
                height,
                extra=event_extra(
                    "sync_progress", from_height=self._from, height=height, heard=False
                ),
            )
        elif catching_up and now - self._last_line >= self.progress_s:
            self._last_line = now
            rate = (height - self._from) / max(now - self._started, 1e-9)
            log.info(
                "catching up: height %d -> %d of peers' %d (%.1f blocks/s)",
                self._from,
                height,
                peak,
                rate,
                extra=event_extra(
                    "sync_progress",
                    from_height=self._from,
                    height=height,
                    peak=peak,
                    blocks_per_s=round(rate, 2),
                ),
            )
        elif not catching_up and self._behind is not False:
            if self._behind is None:  # the first observation: nothing was caught up
                self._behind = False
                log.info(
                    "in sync at height %d",
                    height,
                    extra=event_extra("sync_done", height=height, peak=peak, from_height=height),
                )
                return
            self._behind = False
            took = now - self._started
            log.info(
                "caught up: height %d -> %d (peers' verified height %d) in %.1f s",
                self._from,
                height,
                peak,
                took,
                extra=event_extra(
                    "sync_done",
                    height=height,
                    peak=peak,
                    from_height=self._from,
                    seconds=round(took, 3),
                ),
            )


class RoundLog:
    """Rule 2, round timeouts: count each (`on_timeout`), log at most `per_minute` a minute."""

    def __init__(
        self,
        *,
        leader_of: Callable[[int], str],
        on_timeout: Callable[[], None],
        timed_out_round: int,
        per_minute: int = 6,
        clock: Clock = time.monotonic,
    ) -> None:
        self._leader_of = leader_of
        self._on_timeout = on_timeout
        self._last = timed_out_round  # the last round we saw this node time out in
        self._limiter = LogLimiter(per_minute=per_minute, clock=clock)

    def on_view(self, *, timed_out_round: int) -> None:
        if timed_out_round <= self._last:
            return
        r, self._last = timed_out_round, timed_out_round
        self._on_timeout()
        left_out = self._limiter.maybe_allow("round_timeout")
        if left_out is None:
            return
        leader, following = self._leader_of(r), self._leader_of(r + 1)
        more = (
            f" ({left_out} more round timeouts not logged since the last line)" if left_out else ""
        )
        log.warning(
            "round %d timed out waiting for leader %s; round %d is led by %s%s",
            r,
            leader,
            r + 1,
            following,
            more,
            extra=event_extra(
                "round_timeout",
                round=r,
                leader=leader,
                next_leader=following,
                not_logged=left_out,
            ),
        )


class StoryLogs:
    """Rule 4: the node's story lines, composed: commits (on the loop), sync progress and round
    timeouts (on the consensus thread, after each step)."""

    def __init__(
        self,
        *,
        every_blocks: int,
        every_s: float,
        leader_of: Callable[[int], str],
        on_timeout: Callable[[], None],
        timed_out_round: int,
    ) -> None:
        self.commits = CommitLog(every_blocks=every_blocks, every_s=every_s)
        self.sync = SyncLog()
        self.rounds = RoundLog(
            leader_of=leader_of, on_timeout=on_timeout, timed_out_round=timed_out_round
        )

    def on_view(
        self, *, timed_out_round: int, height: int, lag: int, catching_up: bool, heard: bool
    ) -> None:
        self.rounds.on_view(timed_out_round=timed_out_round)
        self.sync.on_view(height=height, peak=height + lag, catching_up=catching_up, heard=heard)


def compute_deltas(
    before: Mapping[str, Mapping[str, float]], after: Mapping[str, Mapping[str, float]]
) -> dict[str, dict[str, int]]:
    """What each counter grew by, per source and key; zero growth is left out."""
    out: dict[str, dict[str, int]] = {}
    for source, now in after.items():
        old = before.get(source, {})
        grew = {k: int(v - old.get(k, 0)) for k, v in sorted(now.items())}
        grew = {k: n for k, n in grew.items() if n > 0}
        if grew:
            out[source] = grew
    return out


class RefusalSummary:
    """Rule 2, refusals: every `interval_s`, one line with what each source refused since the
    last line (RPC errors by code, admission refusals by reason, P2P refusals by reason)."""

    def __init__(
        self,
        sources: Mapping[str, Callable[[], Mapping[str, float]]],
        *,
        interval_s: float = 60.0,
    ) -> None:
        self._sources = dict(sources)
        self.interval_s = interval_s
        self._last = self._read()
        self._task: asyncio.Task[None] | None = None

    def _read(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for name, read in self._sources.items():
            try:
                out[name] = {str(k): float(v) for k, v in read().items()}
            except Exception:  # rule 3: a source that fails is left out, never fatal
                log.debug("refusal source %s failed", name, exc_info=True)
        return out

    def summarize(self) -> dict[str, dict[str, int]]:
        """Log (and return) what grew since the last call; nothing is logged when nothing did."""
        now = self._read()
        grew = compute_deltas(self._last, now)
        self._last = now
        if grew:
            text = "; ".join(
                f"{src} " + ", ".join(f"{k}: {n}" for k, n in by.items())
                for src, by in grew.items()
            )
            log.info(
                "refused in the last %.0f s: %s",
                self.interval_s,
                text,
                extra=event_extra("refusals", interval_s=self.interval_s, **grew),
            )
        return grew

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.summarize()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.summarize()  # what was refused since the last line is not lost at shutdown

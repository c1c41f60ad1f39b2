"""Unit tests of the replica's parts, one per rule in each part's module header.

The parts are driven directly (the rule tests in test_consensus_rules.py drive them through
`Replica.step`); signatures are the simulator's keyed SM3, as in those tests.
"""

from __future__ import annotations

import dataclasses

import pytest

from gmchain.consensus import ConsensusConfig, SafetyData
from gmchain.consensus.aggregation import TimeoutAggregator, VoteAggregator
from gmchain.consensus.certs import CertChecker
from gmchain.consensus.helpbudget import HELP_PER_PERIOD, HelpBudget
from gmchain.consensus.pacemaker import Pacemaker
from gmchain.consensus.round_state import RoundState
from gmchain.ledger.types import NodeId, QuorumCert, Round
from tests.test_consensus_rules import World, count_verifications

CFG = ConsensusConfig(round_timeout_ms=1000, timeout_backoff_percent=150, max_round_timeout_ms=3000)


# --- pacemaker ------------------------------------------------------------------------------------


def test_pacemaker_arms_only_with_progress_to_make_and_fires_at_the_deadline() -> None:
    pm = Pacemaker(config=CFG)
    asked: list[bool] = []

    def idle() -> bool:
        asked.append(True)
        return False

    assert not pm.on_tick(0, can_time_out=False, needs_progress=idle)
    assert pm.deadline_ms is None and asked == []  # an observer is never asked (rule 2)
    assert not pm.on_tick(0, can_time_out=True, needs_progress=idle)
    assert pm.deadline_ms is None and asked == [True]
    assert not pm.on_tick(10, can_time_out=True, needs_progress=lambda: True)
    assert pm.deadline_ms == 1010
    assert not pm.on_tick(1009, can_time_out=True, needs_progress=lambda: True)
    assert pm.on_tick(1010, can_time_out=True, needs_progress=lambda: True)
    pm.restart(1010)  # rule 3: fires again one period later while the round lasts
    assert pm.deadline_ms == 2010
    assert not pm.on_tick(1500, can_time_out=True, needs_progress=lambda: False)
    assert pm.deadline_ms is None  # nothing left to do: disarmed


def test_pacemaker_backs_off_after_tc_rounds_capped_and_a_qc_alone_keeps_it() -> None:
    pm = Pacemaker(config=CFG)
    periods = []
    for _ in range(4):
        pm.on_round_advanced(0, by_tc=True, keep_armed=True)
        periods.append(pm.deadline_ms)
    assert periods == [1500, 2250, 3000, 3000]  # 1000 * 1.5^k, capped at 3000 (rule 4)
    assert pm.backoff == 3  # no higher than the first k whose period is the cap
    pm.on_round_advanced(0, by_tc=False, keep_armed=True)
    assert pm.backoff == 3 and pm.deadline_ms == 3000  # a QC alone never lowers it (rule 4)
    pm.on_round_advanced(5, by_tc=False, keep_armed=False)
    assert pm.deadline_ms is None


def test_pacemaker_tc_and_qc_rounds_alternating_grow_the_period_until_a_commit() -> None:
    """Rule 4: the alternation TC, QC, TC, QC ... commits nothing (2-chain), so the period must
    keep growing through it; it used to fall back to the base at every QC (session 7 stall)."""
    pm = Pacemaker(config=ConsensusConfig(round_timeout_ms=1000, max_round_timeout_ms=10_000))
    now, periods = 0, []
    for by_tc in (True, False, True, False, True, False):
        now += 2000  # every round needs 2 s: more than 1000 and 1500 ms, less than 2250
        pm.on_round_advanced(now, by_tc=by_tc, keep_armed=True)
        periods.append(pm.period_ms())
    assert periods == [1500, 1500, 2250, 2250, 3375, 3375]


def test_pacemaker_steps_down_at_a_commit_only_after_a_round_the_shorter_period_held() -> None:
    pm = Pacemaker(config=CFG)
    pm.on_round_advanced(0, by_tc=True, keep_armed=True)
    pm.on_round_advanced(0, by_tc=True, keep_armed=True)
    assert pm.backoff == 2 and pm.period_ms() == 2250
    pm.on_round_advanced(1000, by_tc=False, keep_armed=True)  # 1000 ms > 1500 / 2
    pm.on_commit()
    assert pm.backoff == 2  # slow: the shorter period would not have held it with room (rule 5)
    pm.on_round_advanced(1750, by_tc=False, keep_armed=True)  # 750 ms <= 1500 / 2
    assert pm.backoff == 2 and pm.deadline_ms == 1750 + 2250  # no commit yet: unchanged
    pm.on_commit()
    assert pm.backoff == 1 and pm.deadline_ms == 1750 + 2250  # next round's period: 1500
    pm.on_commit()
    assert pm.backoff == 1  # one step per fast round, however many commits follow it
    pm.on_round_advanced(1800, by_tc=False, keep_armed=True)  # 50 ms <= 1000 / 2
    pm.on_commit()
    assert pm.backoff == 0 and pm.period_ms() == 1000
    pm.on_round_advanced(1850, by_tc=False, keep_armed=True)
    pm.on_commit()
    assert pm.backoff == 0  # never below the base
    pm.on_round_advanced(1900, by_tc=True, keep_armed=True)  # a TC round is never "fast"
    pm.on_commit()
    assert pm.backoff == 1


# --- round state ----------------------------------------------------------------------------------


def test_round_state_moves_only_up_with_higher_certificates() -> None:
    w = World()
    b1, b2, b3 = w.chain([1, 2, 5])
    st = RoundState.restore(high_qc=w.gqc, safety=SafetyData(), committed=w.genesis)
    assert st.round == 1 and st.qcs == {w.gqc.block_id: w.gqc}
    q2 = w.qc(b2.header)
    assert st.raise_high_qc(q2) and st.advance() and st.round == 3
    assert not st.raise_high_qc(w.qc(b1.header)) and st.high_qc == q2  # lower: ignored (rule 1)
    tc = w.tc(4, {0: q2, 1: q2, 2: q2})
    assert st.raise_last_tc(tc) and st.advance() and st.round == 5  # max(2, 4) + 1 (rule 2)
    assert not st.raise_last_tc(w.tc(3, {0: q2, 1: q2, 2: q2})) and st.last_tc == tc
    assert not st.advance() and st.round == 5
    assert st.raise_high_qc(w.qc(b3.header)) and st.advance() and st.round == 6


def test_round_state_restores_the_persisted_higher_qc_and_proposed_round() -> None:
    w = World()
    (b1, b2) = w.chain([1, 2])
    disk = SafetyData(high_qc=w.qc(b2.header), last_proposed_round=Round(2))
    st = RoundState.restore(high_qc=w.qc(b1.header), safety=disk, committed=w.genesis)
    assert st.high_qc == disk.high_qc and st.round == 3 and st.proposed_round == 2


# --- aggregation ----------------------------------------------------------------------------------


def _certs(w: World) -> CertChecker:
    return CertChecker(
        chain_id=w.block(w.genesis, 1, w.gqc).header.chain_id,
        validators=w.vs,
        verifier=w.verifier,
        genesis_id=w.genesis.block_id,
    )


def test_votes_count_once_per_voter_and_form_a_sorted_quorum_cert() -> None:
    w = World()
    b1, other = w.block(w.genesis, 1, w.gqc), w.block(w.genesis, 1, w.gqc, ntx=1)
    agg = VoteAggregator(validators=w.vs, certs=_certs(w), max_future_rounds=5)
    r1 = Round(1)
    assert agg.add(w.vote(2, b1.header), current_round=r1) is None
    assert agg.add(w.vote(2, other.header), current_round=r1) is None  # same voter: ignored
    assert agg.add(w.vote(0, b1.header), current_round=r1) is None  # 2 of 4: no quorum yet
    qc = agg.add(w.vote(1, b1.header), current_round=r1)
    assert qc is not None and qc.block_id == b1.block_id and qc.round == 1
    voters = [v for v, _ in qc.signatures]
    assert voters == sorted(voters) and len(voters) == 3  # rule 2: the same bytes everywhere
    assert set(agg.by_round[r1]) == {w.ids()[0], w.ids()[1], w.ids()[2]}


def test_votes_outside_the_window_or_badly_signed_are_not_counted() -> None:
    w = World()
    b1 = w.block(w.genesis, 1, w.gqc)
    agg = VoteAggregator(validators=w.vs, certs=_certs(w), max_future_rounds=5)
    assert agg.add(w.vote(0, b1.header), current_round=Round(3)) is None  # below current - 1
    far = w.block(w.genesis, 7, w.gqc)
    assert agg.add(w.vote(0, far.header), current_round=Round(1)) is None  # beyond current + 5
    assert not any(agg.by_round.values())
    forged = dataclasses.replace(w.vote(0, b1.header), signature=bytes(64))
    assert agg.add(forged, current_round=Round(1)) is None
    assert agg.by_round[Round(1)] == {}
    agg.add(w.vote(0, b1.header), current_round=Round(1))
    agg.prune_below(2)
    assert agg.by_round == {}


def _counting_certs(w: World) -> tuple[CertChecker, list[NodeId]]:
    asked = count_verifications(w)
    return _certs(w), asked


def test_a_vote_after_the_quorum_is_neither_verified_nor_counted() -> None:
    """aggregation.py rule 4: with broadcast votes a replica gets n votes and needs 2f + 1."""
    w = World()
    b1, other = w.block(w.genesis, 1, w.gqc), w.block(w.genesis, 1, w.gqc, ntx=1)
    certs, asked = _counting_certs(w)
    agg = VoteAggregator(validators=w.vs, certs=certs, max_future_rounds=5)
    r1 = Round(1)
    assert agg.add(w.vote(0, b1.header), current_round=r1) is None
    assert agg.add(w.vote(1, b1.header), current_round=r1) is None
    assert agg.add(w.vote(2, b1.header), current_round=r1) is not None
    assert len(asked) == 3
    assert agg.add(w.vote(3, b1.header), current_round=r1) is None  # late: not checked
    forged = dataclasses.replace(w.vote(3, b1.header), signature=bytes(64))
    assert agg.add(forged, current_round=r1) is None
    assert len(asked) == 3
    assert set(agg.by_round[r1]) == set(w.ids()[:3])
    # A vote for another block of that round is still checked (and counted if valid).
    assert agg.add(w.vote(3, other.header), current_round=r1) is None
    assert asked[3:] == [w.ids()[3]] and w.ids()[3] in agg.by_round[r1]


def test_signatures_of_the_checker_s_own_signer_are_not_verified_again() -> None:
    """certs.py rule 7: what this replica signed in this process; nothing else."""
    w = World()
    b1, b2 = w.block(w.genesis, 1, w.gqc), w.block(w.genesis, 1, w.gqc, ntx=1)
    certs, asked = _counting_certs(w)
    assert certs.trusting(None) is None
    me = certs.trusting(w.signers[0])
    assert me is not None and me.node_id == w.ids()[0]
    mine = w.vote(0, b1.header)
    h = b1.header
    root = QuorumCert.signing_root(h.chain_id, h.epoch, h.block_id, h.round, h.height)
    assert me.sign(root) == mine.signature  # (the fake signer is deterministic)
    assert certs.verify_vote(mine) and asked == []
    # Our key's signature made elsewhere (a vote re-sent from persisted safety data) is checked.
    assert certs.verify_vote(w.vote(0, b2.header)) and asked == [w.ids()[0]]
    # So is a forged signature in our name, and it is refused.
    assert not certs.verify_vote(dataclasses.replace(mine, signature=bytes(64)))
    assert asked == [w.ids()[0]] * 2


def test_timeouts_count_once_per_voter_and_the_tc_carries_the_highest_qc() -> None:
    w = World()
    (b1,) = w.chain([1])
    q1 = w.qc(b1.header)
    agg = TimeoutAggregator(validators=w.vs)
    assert agg.add(w.timeout(0, 3, w.gqc)) == 1
    assert agg.add(w.timeout(0, 3, q1)) is None  # the same voter again: ignored
    assert agg.add(w.timeout(1, 3, q1)) == 2
    assert agg.add(w.timeout(2, 3, w.gqc)) == 3
    tc = agg.make_tc(Round(3))
    assert tc.round == 3 and tc.high_qc == q1
    assert [e[0] for e in tc.entries] == sorted(w.ids()[:3])
    assert _certs(w).verify_tc(tc)


# --- help budget ----------------------------------------------------------------------------------


def test_help_budget_limits_replies_per_peer_round_and_period() -> None:
    peer, other = NodeId(b"\x01" * 20), NodeId(b"\x02" * 20)
    hb = HelpBudget(period_ms=1000, validator_count=4)
    assert hb.try_spend(peer, 5, now=0)
    assert not hb.try_spend(peer, 5, now=999)  # the same round within a period (rule 1)
    assert all(hb.try_spend(peer, r, now=10) for r in range(6, 6 + HELP_PER_PERIOD - 1))
    assert not hb.try_spend(peer, 99, now=20)  # HELP_PER_PERIOD replies already
    assert hb.try_spend(other, 99, now=20)  # another peer has its own budget
    assert hb.try_spend(peer, 99, now=1011)  # a new period
    hb.on_round_advanced()
    assert hb.helped == {}  # rule 3


@pytest.mark.parametrize("n", [1, 50])
def test_help_budget_tables_stay_bounded(n: int) -> None:
    hb = HelpBudget(period_ms=10, validator_count=4)
    last = 0
    for t in range(0, 2000, 7):
        for p in range(n):
            hb.try_spend(NodeId(bytes([p]) * 20), t, now=t)
        last = t
    # Rule 2: what outlived its period is dropped once a table outgrows its bound, so at most
    # a bound's worth of stale entries can be left; the rest are replies of the last period.
    assert len([t for t in hb.helped.values() if last - t >= 10]) <= HELP_PER_PERIOD * 4 + 1
    assert len([p for p, ts in hb.helped_at.items() if last - ts[-1] >= 10]) <= 4 * 4 + 1
    assert len(hb.helped) <= HELP_PER_PERIOD * 4 + 1 + 2 * n  # two reply times fit in a period

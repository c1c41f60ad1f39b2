"""Rule tests of node/rpcsession.py (login challenges and session tokens), one per rule, on an
injected clock and an injected random source."""

from __future__ import annotations

import itertools

from gmchain.crypto_sm import sm3_hash
from gmchain.node.rpcsession import (
    CHALLENGE_TTL_MS,
    CHALLENGES_PER_CLIENT,
    TOKENS_PER_ACCOUNT,
    Sessions,
    compute_login_root,
)

T0 = 1_800_000_000_000


def _sessions(ttl_ms: int = 900_000) -> Sessions:
    counter = itertools.count()
    return Sessions(ttl_ms=ttl_ms, random_bytes=lambda n: next(counter).to_bytes(n, "big"))


def test_rule1_a_challenge_is_single_use_and_expires() -> None:
    s = _sessions()
    issued = s.issue_challenge("1.2.3.4", T0)
    assert issued is not None
    challenge, expires = issued
    assert expires == T0 + CHALLENGE_TTL_MS
    assert s.take_challenge(challenge, T0 + 1)
    assert not s.take_challenge(challenge, T0 + 2)  # replay
    late = s.issue_challenge("1.2.3.4", T0)
    assert late is not None
    assert not s.take_challenge(late[0], T0 + CHALLENGE_TTL_MS)  # expired
    assert not s.take_challenge(b"\x00" * 32, T0)  # never issued


def test_rule1_challenges_are_bounded_per_client_and_freed_by_use_or_expiry() -> None:
    s = _sessions()
    got = [s.issue_challenge("1.2.3.4", T0) for _ in range(CHALLENGES_PER_CLIENT)]
    assert all(g is not None for g in got)
    assert s.issue_challenge("1.2.3.4", T0) is None
    assert s.issue_challenge("5.6.7.8", T0) is not None  # another client is not affected
    first = got[0]
    assert first is not None and s.take_challenge(first[0], T0)
    assert s.issue_challenge("1.2.3.4", T0) is not None  # a used one frees its slot
    assert s.issue_challenge("1.2.3.4", T0) is None
    assert s.issue_challenge("1.2.3.4", T0 + CHALLENGE_TTL_MS) is not None  # expired ones too


def test_rule2_only_the_token_digest_is_kept_and_sessions_expire() -> None:
    s = _sessions(ttl_ms=1000)
    token = s.open_session(address=b"a" * 20, org="org1", role="member", now_ms=T0)
    assert token not in s._sessions and sm3_hash(token) in s._sessions
    session = s.session_of(token, T0 + 999)
    assert session is not None and (session.org, session.read_all) == ("org1", False)
    assert s.session_of(token, T0 + 1000) is None
    assert len(s) == 0


def test_rule2_tokens_are_bounded_per_account() -> None:
    s = _sessions()
    tokens = [
        s.open_session(address=b"a" * 20, org="org1", role="member", now_ms=T0 + i)
        for i in range(TOKENS_PER_ACCOUNT + 1)
    ]
    assert s.session_of(tokens[0], T0 + 100) is None  # the oldest ended
    assert all(s.session_of(t, T0 + 100) is not None for t in tokens[1:])
    other = s.open_session(address=b"b" * 20, org="csrc", role="regulator", now_ms=T0)
    session = s.session_of(other, T0)
    assert session is not None and session.read_all


def test_rule3_the_login_root_names_chain_node_and_challenge() -> None:
    base = compute_login_root("chain", b"n" * 20, b"c" * 32)
    assert base != compute_login_root("chain2", b"n" * 20, b"c" * 32)
    assert base != compute_login_root("chain", b"m" * 20, b"c" * 32)
    assert base != compute_login_root("chain", b"n" * 20, b"d" * 32)

"""Rule tests of chain/txrules.py, driving TxRules directly: one test per rule, the order of the
rules (a transaction that breaks several gets the first one's Rejection, so no check hides a
later one), and the two caches (verify once per node, parse each key once)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest

from gmchain.chain.txrules import (
    Account,
    KeyCache,
    Rejection,
    SignatureCache,
    TxRejected,
    TxRules,
)
from gmchain.contracts import default_registry
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.types import MAX_TX_BYTES, SignedTx, TxBody
from tests.node_helpers import CHAIN_ID, sign_tx

W = 10
HEAD = 5
NOT_A_POINT = b"\x04" + b"\x01" * 64


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return PrivateKey.generate()


def rules(verified: int = 100) -> TxRules:
    return TxRules(
        chain_id=CHAIN_ID,
        replay_window=W,
        registry=default_registry(),
        keys=KeyCache(),
        verified=SignatureCache(verified),
    )


def tx(key: PrivateKey, *, expiry: int = HEAD + 3, **kw: object) -> SignedTx:
    return sign_tx(key, expiry=expiry, **kw)  # type: ignore[arg-type]


def with_sender(t: SignedTx, sender: bytes, key: PrivateKey) -> SignedTx:
    b = t.body
    body = TxBody(
        chain_id=b.chain_id,
        sender=sender,
        nonce=b.nonce,
        expiry=b.expiry,
        contract=b.contract,
        method=b.method,
        args=b.args,
    )
    return SignedTx(body=body, signature=key.sign(body.compute_id()))


def static(r: TxRules, t: SignedTx, size: int | None = None) -> Rejection | None:
    try:
        r.check_static(t, size if size is not None else len(t.encode()), HEAD)
    except TxRejected as exc:
        assert exc.message
        return exc.rejection
    return None


@dataclass
class View:
    """A TxStateView over sets: the state R7 and R8 read, as plain data."""

    uncommitted: set[bytes] = field(default_factory=set)
    committed: set[bytes] = field(default_factory=set)
    accounts: dict[bytes, Account] = field(default_factory=dict)
    removed_orgs: dict[str, int] = field(default_factory=dict)

    def in_uncommitted(self, tx_id: bytes) -> bool:
        return tx_id in self.uncommitted

    def is_committed(self, tx_id: bytes) -> bool:
        return tx_id in self.committed

    def sender_account(self, pubkey: bytes) -> Account | None:
        return self.accounts.get(pubkey)

    def org_removal(self, org: str) -> int | None:
        return self.removed_orgs.get(org)


# --- R1-R2 ----------------------------------------------------------------------------------------


def test_r1_r2_decode(key: PrivateKey) -> None:
    t = tx(key)
    assert TxRules.decode(t.encode()) == t
    with pytest.raises(TxRejected) as info:
        TxRules.decode(b"\x00" * (MAX_TX_BYTES + 1))
    assert info.value.rejection is Rejection.TOO_LARGE
    for bad in (t.encode()[:-1], t.encode() + b"\x00", b"\xc1"):
        with pytest.raises(TxRejected) as info:
            TxRules.decode(bad)
        assert info.value.rejection is Rejection.BAD_ENCODING


# --- R3-R6, one at a time and in order ------------------------------------------------------------


def test_each_static_rule(key: PrivateKey) -> None:
    r = rules()
    assert static(r, tx(key)) is None
    assert static(r, tx(key), size=MAX_TX_BYTES + 1) is Rejection.TOO_LARGE
    assert static(r, tx(key), size=MAX_TX_BYTES) is None
    assert static(r, tx(key, chain_id="other")) is Rejection.WRONG_CHAIN
    assert static(r, with_sender(tx(key), NOT_A_POINT, key)) is Rejection.INVALID_KEY
    assert static(r, tx(key, expiry=HEAD)) is Rejection.EXPIRED
    assert static(r, tx(key, expiry=HEAD + 1)) is None  # the window's edges
    assert static(r, tx(key, expiry=HEAD + W)) is None
    assert static(r, tx(key, expiry=HEAD + W + 1)) is Rejection.EXPIRY_TOO_FAR
    assert static(r, tx(key, contract="nope")) is Rejection.UNKNOWN_CONTRACT
    assert static(r, tx(key, method="nope")) is Rejection.UNKNOWN_METHOD
    assert static(r, tx(key, method="get", args=["rec"])) is Rejection.QUERY_METHOD
    assert static(r, tx(key, contract="membership", method="list", args=[])) is (
        Rejection.QUERY_METHOD
    )
    assert static(r, tx(key, args=["only-one-arg"])) is Rejection.BAD_ARGUMENTS
    assert static(r, tx(key, method="submit", args=[1, 2, 3])) is Rejection.BAD_ARGUMENTS


def test_the_first_broken_rule_wins(key: PrivateKey) -> None:
    """The documented order R1 < R3 < R4 < R5 < R6: each transaction below breaks every rule
    from one on, and must be refused for that one (so every Rejection is reachable)."""
    r = rules()
    worst = tx(key, chain_id="other", expiry=HEAD, contract="nope")
    worst = with_sender(worst, NOT_A_POINT, key)
    assert static(r, worst, size=MAX_TX_BYTES + 1) is Rejection.TOO_LARGE
    assert static(r, worst) is Rejection.WRONG_CHAIN
    no_key = with_sender(tx(key, expiry=HEAD, contract="nope"), NOT_A_POINT, key)
    assert static(r, no_key) is Rejection.INVALID_KEY
    assert static(r, tx(key, expiry=HEAD, contract="nope")) is Rejection.EXPIRED
    assert static(r, tx(key, contract="nope")) is Rejection.UNKNOWN_CONTRACT


# --- R7-R8 ----------------------------------------------------------------------------------------


def test_r7_r8_state(key: PrivateKey) -> None:
    t = tx(key)
    account = (key.public_key.to_bytes(), "org-a", "admin")
    view = View(accounts={key.public_key.to_bytes(): account})
    assert TxRules.check_state(t, view) == account
    cases = [
        (View(accounts=view.accounts), {t.tx_id}, Rejection.DUPLICATE),  # in the same block
        (View(uncommitted={t.tx_id}, accounts=view.accounts), None, Rejection.DUPLICATE),
        (View(committed={t.tx_id}, accounts=view.accounts), None, Rejection.DUPLICATE),
        (View(), None, Rejection.UNKNOWN_SENDER),
        (View(committed={t.tx_id}), None, Rejection.DUPLICATE),  # R7 before R8
        (View(accounts=view.accounts, removed_orgs={"org-a": 7}), None, Rejection.ORG_REMOVED),
    ]
    for v, seen, want in cases:
        with pytest.raises(TxRejected) as info:
            TxRules.check_state(t, v, seen)
        assert info.value.rejection is want
    # R8b names the org and the proposal; another org's removal does not matter.
    with pytest.raises(TxRejected) as info:
        TxRules.check_state(t, View(accounts=view.accounts, removed_orgs={"org-a": 7}))
    assert info.value.message == (
        "account's organisation 'org-a' was removed by governance (proposal 7)"
    )
    assert TxRules.check_state(t, View(accounts=view.accounts, removed_orgs={"b": 1})) == account


# --- R4 + R9 and the caches -----------------------------------------------------------------------


def test_r9_verified_once_and_remembered(key: PrivateKey) -> None:
    r = rules()
    good, forged = tx(key), tx(key, bad_signature=True)
    r.check_signature(good)
    assert r.is_verified(good.tx_id)
    with pytest.raises(TxRejected) as info:
        r.check_signature(forged)
    assert info.value.rejection is Rejection.BAD_SIGNATURE and not r.is_verified(forged.tx_id)
    no_key = with_sender(tx(key), NOT_A_POINT, key)
    with pytest.raises(TxRejected) as info:
        r.check_signature(no_key)
    assert info.value.rejection is Rejection.INVALID_KEY
    # A cached id is not verified again (a wrongly cached forgery passes: that is the cache).
    r.verified.mark((forged.tx_id,))
    r.check_signature(forged)


def test_block_signatures_stop_at_the_first_bad_and_remember_the_good(key: PrivateKey) -> None:
    r = rules()
    txs = [tx(key) for _ in range(3)]
    forged = tx(key, bad_signature=True)
    with pytest.raises(TxRejected) as info:
        r.check_signatures([*txs, forged])
    assert info.value.rejection is Rejection.BAD_SIGNATURE
    assert forged.tx_id.hex()[:16] in info.value.message
    assert all(r.is_verified(t.tx_id) for t in txs) and not r.is_verified(forged.tx_id)
    with pytest.raises(TxRejected) as info:
        r.check_signatures([with_sender(tx(key), NOT_A_POINT, key)])
    assert info.value.rejection is Rejection.INVALID_KEY
    r.check_signatures(txs)  # all known: nothing to verify


def test_signature_cache_is_an_lru_with_a_bound() -> None:
    c = SignatureCache(3)
    ids = [bytes([i]) * 32 for i in range(5)]
    c.mark(ids[:3])
    c.mark([ids[0]])  # refresh: ids[1] is now the least recently used
    c.mark([ids[3]])
    assert ids[1] not in c and all(i in c for i in (ids[0], ids[2], ids[3]))
    c.mark([ids[4]])
    assert ids[2] not in c and len(c) == 3
    with pytest.raises(ValueError):
        SignatureCache(0)


def test_signature_cache_keeps_its_bound_under_threads() -> None:
    c = SignatureCache(100)

    def mark(base: int) -> None:
        for i in range(2000):
            c.mark([(base * 10_000 + i).to_bytes(32, "big")])

    threads = [threading.Thread(target=mark, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(c) == 100


def test_key_cache_parses_once_and_refuses_a_non_point(key: PrivateKey) -> None:
    keys = KeyCache(maxsize=8)
    raw = key.public_key.to_bytes()
    first = keys.get(raw)
    assert first is not None and first.to_bytes() == raw
    assert keys.get(raw) is first  # parsed once
    assert keys.get(NOT_A_POINT) is None
    assert KeyCache().get(raw) is not first  # a cache is an object, not a module global

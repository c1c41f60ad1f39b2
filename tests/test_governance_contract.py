"""Rule tests for the governance contract (contracts/governance.py G1-G7, gov_kinds G-K1..G-K4,
gov_state G-S1..G-S3; EPOCHS.md E2, E10), through the miniature executor with real SM2 keys, and
E10 through the real chain library over LevelDB."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gmchain.contracts.framework import ContractError, default_registry
from gmchain.contracts.gov_state import K_EPOCH, epoch_key
from gmchain.contracts.governance import (
    committee,
    epoch_config,
    genesis_writes,
    is_node_key_revoked,
    latest_epoch,
    make_join_request,
    pending_epoch_change,
    propose_args,
    removed_orgs,
    revoked_node_keys,
    vote_args,
)
from gmchain.contracts.keys import address_of
from gmchain.contracts.membership import lookup_account
from gmchain.contracts.testing import Harness, Outcome, make_context
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.codec import decode, encode
from gmchain.ledger.epoch import EpochConfig
from gmchain.ledger.genesis import Genesis, GenesisValidator
from gmchain.ledger.types import ReceiptStatus

CHAIN = "gov-test"
ORGS = ("csrc", "firm-a", "firm-b", "firm-c")  # each one validator and one admin: weight 1 each


def pub(k: PrivateKey) -> bytes:
    return k.public_key.to_bytes()


class Net:
    """Four orgs with a validator and an admin each, a member of firm-a, an outsider org's admin,
    and one genesis observer."""

    def __init__(self, **genesis_kw: Any) -> None:
        self.nodes = {org: PrivateKey.generate() for org in ORGS}
        self.admins = {org: PrivateKey.generate() for org in ORGS}
        self.member = PrivateKey.generate()  # firm-a, role member
        self.outsider = PrivateKey.generate()  # admin of "outside": no validator, no seat
        self.observer = PrivateKey.generate()
        accounts = [(pub(self.admins[o]), o, "admin") for o in ORGS]
        accounts += [
            (pub(self.member), "firm-a", "member"),
            (pub(self.outsider), "outside", "admin"),
        ]
        kw: dict[str, Any] = {
            "validators": tuple(
                GenesisValidator(pubkey=pub(self.nodes[o]), power=1, org=o) for o in ORGS
            ),
            "observers": (pub(self.observer),),
            "accounts": tuple(accounts),
        }
        kw.update(genesis_kw)
        self.genesis = Genesis(chain_id=CHAIN, timestamp_ms=1, **kw)
        self.h = Harness(
            default_registry(),
            self.genesis.accounts,
            chain_id=CHAIN,
            state={"governance": genesis_writes(self.genesis)},
        )

    @property
    def gov(self) -> Any:
        return self.h.store.reader("governance")

    def propose(
        self, kind: str, values: list[Any], *, by: str = "firm-a", expiry: int | None = None
    ) -> Outcome:
        e = self.h.height + 100 if expiry is None else expiry
        return self.h.call(
            pub(self.admins[by]), "governance", "propose", propose_args(kind, values, e)
        )

    def vote(self, pid: int, org: str, yes: bool = True, **kw: Any) -> Outcome:
        return self.h.call(pub(self.admins[org]), "governance", "vote", vote_args(pid, yes), **kw)

    def decide(self, kind: str, values: list[Any], voters: tuple[str, ...] = ORGS[:3]) -> int:
        """Propose and vote yes with `voters` (3 of 4 approve); returns the proposal id."""
        pid = ok(self.propose(kind, values)).result
        for org in voters:
            ok(self.vote(pid, org))
        return int(pid)

    def proposal(self, pid: int) -> dict[str, Any]:
        return dict(self.h.query("governance", "proposal", [pid]))

    def config(self) -> EpochConfig:
        c = epoch_config(self.gov, latest_epoch(self.gov))
        assert c is not None
        return c


def ok(outcome: Outcome) -> Outcome:
    assert outcome.status is ReceiptStatus.OK, outcome.error
    return outcome


def refused(outcome: Outcome, message: str, status: ReceiptStatus = ReceiptStatus.FAILED) -> None:
    assert outcome.status is status, (outcome.status, outcome.error)
    assert message in outcome.error, outcome.error


def events(outcome: Outcome) -> list[str]:
    return [e.name for e in outcome.events]


# --- genesis (G-S2) -----------------------------------------------------------------------------


def test_genesis_writes_epoch_zero_committee_and_thresholds() -> None:
    net = Net()
    assert decode(net.gov.get(K_EPOCH)) == [0, 0]
    assert epoch_config(net.gov, 0) == EpochConfig.from_genesis(net.genesis)
    assert epoch_config(net.gov, 1) is None
    assert latest_epoch(net.gov) == 0 and pending_epoch_change(net.gov, 0) is None
    assert committee(net.gov) == tuple((o, 1) for o in ORGS)  # default: validator orgs
    c = dict(net.h.query("governance", "committee", []))
    assert c["thresholds"] == [2, 3, 2, 3]
    assert net.h.query("governance", "current_epoch", []) == 0
    got = dict(net.h.query("governance", "epoch_config", [0]))
    assert (
        got["epoch"] == 0
        and len(got["validators"]) == 4
        and got["observers"] == [pub(net.observer)]
    )
    explicit = Net(committee=(("csrc", 2), ("firm-a", 1)), gov_thresholds=(1, 2, 3, 4))
    assert committee(explicit.gov) == (("csrc", 2), ("firm-a", 1))
    assert dict(explicit.h.query("governance", "committee", []))["thresholds"] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"committee": (("b", 1), ("a", 1))}, "committee: ascending by org"),
        ({"committee": (("a", 0),)}, "committee weight"),
        ({"gov_thresholds": (2, 3, 1, 3)}, "gov_thresholds: out of range"),  # approval < 1/2
        ({"gov_thresholds": (3, 3, 2, 3)}, "gov_thresholds: out of range"),  # participation 1
        ({"gov_thresholds": (2, 0, 2, 3)}, "gov_thresholds: out of range"),
        ({"gov_thresholds": (2, 3, 2)}, "gov_thresholds: expected 4 integers"),
    ],
)
def test_genesis_refuses_a_bad_committee_or_thresholds(kw: dict[str, Any], message: str) -> None:
    v = GenesisValidator(pubkey=pub(PrivateKey.generate()), power=1, org="a")
    with pytest.raises(ValueError, match=message):
        Genesis(chain_id=CHAIN, timestamp_ms=1, validators=(v,), **kw)


# --- every kind executes exactly once (G5, G7) ----------------------------------------------------


def _kinds(net: Net) -> dict[str, tuple[list[Any], Callable[[Net], None]]]:
    """kind -> (its values, a check of its effect)."""
    new_node, new_admin, rotated = (
        PrivateKey.generate(),
        PrivateKey.generate(),
        PrivateKey.generate(),
    )
    pk_join = make_join_request(CHAIN, new_node, "firm-b")
    a, b, c = (pub(net.nodes[o]) for o in ("firm-a", "firm-b", "firm-c"))

    def validators(n: Net) -> dict[bytes, GenesisValidator]:
        return {v.pubkey: v for v in n.config().validators}

    return {
        "admit_org": (
            ["firm-d", pub(new_admin)],
            lambda n: assert_eq(
                lookup_account(n.h.store.reader("membership"), address_of(pub(new_admin))),
                (pub(new_admin), "firm-d", "admin"),
            ),
        ),
        "remove_org": (
            ["firm-c"],
            lambda n: assert_eq(
                (c in validators(n), removed_orgs(n.gov), dict(committee(n.gov)).get("firm-c")),
                (False, {"firm-c": 1}, None),
            ),
        ),
        "admit_observer": (
            list(pk_join),
            lambda n: assert_eq(pk_join[0] in n.config().observers, True),
        ),
        "remove_observer": (
            [pub(net.observer)],
            lambda n: assert_eq(n.config().observers, ()),
        ),
        "add_validator": (
            [pk_join[0], 7, "firm-b", pk_join[2]],
            lambda n: assert_eq(validators(n)[pk_join[0]].power, 7),
        ),
        "remove_validator": ([c], lambda n: assert_eq(c in validators(n), False)),
        "set_power": ([a, 5], lambda n: assert_eq(validators(n)[a].power, 5)),
        "rotate_node_key": (
            [b, *make_join_request(CHAIN, rotated, "firm-b")[::2]],
            lambda n: assert_eq(
                (b in validators(n), validators(n)[pub(rotated)].org), (False, "firm-b")
            ),
        ),
        "revoke_node_key": (
            [c],
            lambda n: assert_eq((c in validators(n), revoked_node_keys(n.gov)), (False, {c})),
        ),
        "revoke_account": (
            [address_of(pub(net.member))],
            lambda n: assert_eq(
                lookup_account(n.h.store.reader("membership"), address_of(pub(net.member))), None
            ),
        ),
        "set_param": (
            ["block_max_txs", 100],
            lambda n: assert_eq(n.config().param("block_max_txs"), 100),
        ),
        "set_committee": (["firm-a", 3], lambda n: assert_eq(dict(committee(n.gov))["firm-a"], 3)),
        "set_thresholds": (
            [1, 2, 1, 2],
            lambda n: assert_eq(
                dict(n.h.query("governance", "committee", []))["thresholds"], [1, 2, 1, 2]
            ),
        ),
    }


def assert_eq(got: object, want: object) -> None:
    assert got == want


CONFIG_KINDS = {
    "remove_org",
    "admit_observer",
    "remove_observer",
    "add_validator",
    "remove_validator",
    "set_power",
    "rotate_node_key",
    "revoke_node_key",
    "set_param",
}


@pytest.mark.parametrize("kind", sorted(_kinds(Net())))
def test_every_kind_executes_exactly_once(kind: str) -> None:
    net = Net()
    values, check = _kinds(net)[kind]
    pid = ok(net.propose(kind, values)).result
    assert net.proposal(pid)["status"] == "open"
    assert ok(net.vote(pid, "csrc")).result == "open"
    assert ok(net.vote(pid, "firm-a")).result == "open"  # 2 of 4: not > 2/3
    last = ok(net.vote(pid, "firm-b"))
    assert last.result == "executed"
    assert events(last) == ["Voted", "ProposalApproved", "Executed"]
    check(net)
    p = net.proposal(pid)
    assert p["status"] == "executed" and p["decided_height"] == net.h.height
    # E2: a config change writes epoch 1 at this height; anything else leaves epoch 0.
    want_epoch = 1 if kind in CONFIG_KINDS else 0
    assert latest_epoch(net.gov) == want_epoch
    executed = dict(last.events[-1].fields)
    assert executed["epoch"] == (1 if want_epoch else None)
    if want_epoch:
        assert decode(net.gov.get(K_EPOCH)) == [1, net.h.height]
        assert pending_epoch_change(net.gov, net.h.height) == net.config()
    # Exactly once: the fourth org's vote, and any other, is refused and changes nothing.
    before = net.h.store.snapshot()
    refused(net.vote(pid, "csrc"), f"G3: proposal {pid} is already executed")
    refused(net.vote(pid, "firm-a", False), "already executed")
    assert net.h.store.snapshot() == before


# --- refusals -----------------------------------------------------------------------------------


def test_only_admins_of_committee_orgs_propose_and_vote() -> None:
    net = Net()
    args = propose_args("set_param", ["block_max_txs", 10], 50)
    refused(net.h.call(pub(net.member), "governance", "propose", args), "G1: only an admin")
    refused(
        net.h.call(pub(net.outsider), "governance", "propose", args),
        "G1: org 'outside' has no seat on the committee",
    )
    pid = ok(net.propose("set_param", ["block_max_txs", 10])).result
    refused(net.h.call(pub(net.member), "governance", "vote", [pid, True]), "G1: only an admin")
    refused(net.h.call(pub(net.outsider), "governance", "vote", [pid, True]), "G1: org 'outside'")
    refused(net.vote(99, "firm-a"), "no proposal 99")


def test_a_later_vote_replaces_the_earlier_one() -> None:
    net = Net()
    pid = ok(net.propose("set_param", ["block_max_txs", 10])).result
    ok(net.vote(pid, "csrc"))
    ok(net.vote(pid, "firm-a"))
    assert ok(net.vote(pid, "firm-a", False)).result == "open"  # replaced: 1 yes, 1 no
    assert net.proposal(pid)["votes"] == [
        [["org", "csrc"], ["yes", True]],
        [["org", "firm-a"], ["yes", False]],
    ]
    assert ok(net.vote(pid, "firm-b")).result == "open"  # 2 yes of 4: not > 2/3
    assert ok(net.vote(pid, "firm-a")).result == "executed"  # back to yes: 3 of 4


def test_rejected_when_approval_became_impossible() -> None:
    net = Net()
    pid = ok(net.propose("set_param", ["block_max_txs", 10])).result
    assert ok(net.vote(pid, "csrc", False)).result == "open"  # 3 may still say yes: 3 > 8/3
    out = ok(net.vote(pid, "firm-a", False))
    assert out.result == "rejected" and events(out) == ["Voted", "ProposalRejected"]
    refused(net.vote(pid, "firm-b"), f"G3: proposal {pid} is already rejected")
    assert latest_epoch(net.gov) == 0


def test_expired_proposals() -> None:
    net = Net()
    refused(net.propose("set_param", ["block_max_txs", 10], expiry=net.h.height + 1), "G2: expiry")
    refused(net.propose("set_param", ["block_max_txs", 10], expiry=10**7), "G2: expiry")
    h0 = net.h.height
    pid = ok(net.propose("set_param", ["block_max_txs", 10], expiry=h0 + 4)).result  # at h0 + 1
    ok(net.vote(pid, "csrc"))  # h0 + 2
    refused(net.h.call(pub(net.member), "governance", "close", [pid]), "G6: proposal 1 is open")
    assert ok(net.vote(pid, "firm-a")).result == "open"  # h0 + 4 = expiry: still counted
    out = ok(net.vote(pid, "firm-b"))  # h0 + 5, past the expiry: the vote does not count
    assert out.result == "expired" and events(out) == ["ProposalExpired"]
    assert net.proposal(pid)["status"] == "expired" and latest_epoch(net.gov) == 0
    refused(net.vote(pid, "firm-c"), "already expired")
    # close(): anyone with an account, once past the expiry.
    pid2 = ok(net.propose("set_param", ["block_max_txs", 11], expiry=net.h.height + 2)).result
    ok(net.vote(pid2, "csrc"))  # at its expiry height
    closed = ok(net.h.call(pub(net.member), "governance", "close", [pid2]))
    assert closed.result == "expired" and events(closed) == ["ProposalExpired"]
    refused(net.h.call(pub(net.member), "governance", "close", [pid2]), "already expired")


def test_a_bad_proof_of_possession_is_refused() -> None:
    net = Net()
    node, other = PrivateKey.generate(), PrivateKey.generate()
    pubkey, org, pop = make_join_request(CHAIN, node, "firm-b")
    forged = other.sign(b"x" * 32)
    for values in (
        [pubkey, org, forged],  # signed by another key
        [pubkey, "firm-a", pop],  # signed for another org
        [pubkey, org, make_join_request("other-chain", node, org)[2]],  # another chain
    ):
        refused(net.propose("admit_observer", values), "G-K4: the proof of possession")
    refused(net.propose("add_validator", [pubkey, 1, org, forged]), "G-K4")
    refused(net.propose("add_validator", [pubkey, 1, org, b""]), "G-K4: a new validator key")
    ok(net.propose("admit_observer", [pubkey, org, pop]))


def test_the_last_validator_cannot_be_removed() -> None:
    key = PrivateKey.generate()
    only = GenesisValidator(pubkey=pub(key), power=1, org="firm-a")
    net = Net(validators=(only,))
    for kind in ("remove_validator", "revoke_node_key"):
        refused(net.propose(kind, [pub(key)]), "G-K3: the change would leave no validator")
    refused(net.propose("remove_org", ["firm-a"]), "G-K3: the committee would become empty")


def test_a_proposal_no_longer_valid_when_approved_fails_without_changes() -> None:
    a, b = PrivateKey.generate(), PrivateKey.generate()
    net = Net(
        committee=(("firm-a", 1),),  # one org decides alone
        validators=tuple(GenesisValidator(pubkey=pub(k), power=1, org="firm-a") for k in (a, b)),
    )
    p1 = ok(net.propose("remove_validator", [pub(a)])).result
    p2 = ok(net.propose("remove_validator", [pub(b)])).result  # valid now: a is still there
    assert ok(net.vote(p1, "firm-a")).result == "executed"
    before = dict(net.h.store.state("governance").data)
    out = ok(net.vote(p2, "firm-a"))
    assert out.result == "failed"
    assert events(out) == ["Voted", "ProposalApproved", "ExecutionFailed"]
    assert net.proposal(p2)["note"] == "G-K3: the change would leave no validator"
    after = dict(net.h.store.state("governance").data)
    after.pop(b"p/" + p2.to_bytes(8, "big"))
    before.pop(b"p/" + p2.to_bytes(8, "big"))
    assert after == before  # only the proposal's record changed
    assert [v.pubkey for v in net.config().validators] == [pub(b)]


def test_params_and_kinds_are_checked() -> None:
    net = Net()
    refused(
        net.propose("set_param", ["no_such", 1]),
        "argument 'name' must be one of",
        ReceiptStatus.BAD_ARGUMENTS,
    )
    refused(net.propose("set_param", ["block_max_txs", 0]), "must be in [1, 100000], got 0")
    refused(net.propose("set_param", ["block_max_txs", 5000]), "already 5000")
    refused(
        net.propose("set_power", [b"\x04" * 65]), "set_power needs", ReceiptStatus.BAD_ARGUMENTS
    )
    bad_kind = net.h.call(
        pub(net.admins["firm-a"]), "governance", "propose", ["mint", encode([]), 50]
    )
    refused(bad_kind, "argument 'kind' must be one of", ReceiptStatus.BAD_ARGUMENTS)
    garbage = net.h.call(
        pub(net.admins["firm-a"]), "governance", "propose", ["set_param", b"\xc1", 50]
    )
    refused(garbage, "G2: args do not decode", ReceiptStatus.BAD_ARGUMENTS)
    refused(net.propose("set_thresholds", [1, 2, 1, 3]), "approval must be a fraction in [1/2, 1)")
    refused(net.propose("set_committee", ["nobody", 1]), "org 'nobody' is not known")
    refused(net.propose("admit_org", ["firm-a", pub(PrivateKey.generate())]), "already exists")


def test_revoked_node_keys_and_removed_orgs_never_come_back() -> None:
    net = Net()
    c = net.nodes["firm-c"]
    net.decide("revoke_node_key", [pub(c)])
    assert is_node_key_revoked(net.gov, pub(c))
    refused(
        net.propose(
            "add_validator", [pub(c), 1, "firm-c", make_join_request(CHAIN, c, "firm-c")[2]]
        ),
        "was revoked and can never be admitted again",
    )
    net.decide("remove_org", ["firm-c"], voters=("csrc", "firm-a", "firm-b"))
    refused(net.propose("admit_org", ["firm-c", pub(PrivateKey.generate())]), "removed for good")
    refused(net.propose("set_committee", ["firm-c", 1]), "G-K3: org 'firm-c' was removed")


def test_a_key_is_never_both_validator_and_observer() -> None:
    net = Net()
    obs = net.observer
    refused(
        net.propose(
            "admit_observer", list(make_join_request(CHAIN, net.nodes["firm-a"], "firm-a"))
        ),
        "is already a validator",
    )
    refused(
        net.propose(
            "add_validator", [pub(obs), 1, "firm-a", make_join_request(CHAIN, obs, "firm-a")[2]]
        ),
        "is already an observer",
    )
    net.decide("add_validator", [pub(obs), 2, "firm-a", b""])  # promoted: it proved possession
    assert pub(obs) not in net.config().observers
    assert {v.pubkey: v.power for v in net.config().validators}[pub(obs)] == 2


# --- thresholds with weights (G4) -------------------------------------------------------------


def test_weights_count() -> None:
    net = Net(committee=(("firm-a", 3), ("firm-b", 1), ("firm-c", 1)))  # T = 5, need yes > 10/3
    pid = ok(net.propose("set_param", ["block_max_txs", 10])).result
    assert ok(net.vote(pid, "firm-a")).result == "open"  # 3
    refused(net.vote(pid, "csrc"), "G1: org 'csrc' has no seat")
    assert ok(net.vote(pid, "firm-c")).result == "executed"  # 4 > 10/3
    pid = ok(net.propose("set_param", ["block_max_txs", 11])).result
    assert ok(net.vote(pid, "firm-b", False)).result == "open"  # 4 may still say yes
    assert ok(net.vote(pid, "firm-c", False)).result == "rejected"  # 3 * 3 <= 10
    pid = ok(net.propose("set_param", ["block_max_txs", 12])).result
    assert ok(net.vote(pid, "firm-a", False)).result == "rejected"  # 2 can never be > 10/3


def test_participation_threshold() -> None:
    net = Net(gov_thresholds=(9, 10, 1, 2))  # > 90 % must vote, > 1/2 say yes
    pid = ok(net.propose("set_param", ["block_max_txs", 10])).result
    for org in ("csrc", "firm-a", "firm-b"):
        assert ok(net.vote(pid, org)).result == "open"  # 3 yes of 4, but only 75 % voted
    assert ok(net.vote(pid, "firm-c", False)).result == "executed"  # 100 % voted, 3/4 yes


def test_committee_changes_apply_to_later_tallies() -> None:
    net = Net()
    net.decide("set_committee", ["csrc", 0])  # T = 3: need yes > 2
    pid = ok(net.propose("set_param", ["block_max_txs", 10])).result
    ok(net.vote(pid, "firm-a"))
    refused(net.vote(pid, "csrc"), "G1: org 'csrc' has no seat")
    assert ok(net.vote(pid, "firm-b")).result == "open"  # 2 of 3
    assert ok(net.vote(pid, "firm-c")).result == "executed"


# --- E2: the next epoch's configuration ---------------------------------------------------------


def test_two_decisions_in_one_block_make_one_epoch_change() -> None:
    net = Net()
    a = pub(net.nodes["firm-a"])
    p1 = ok(net.propose("set_power", [a, 5])).result
    p2 = ok(net.propose("set_param", ["block_max_txs", 10])).result
    for pid in (p1, p2):
        ok(net.vote(pid, "csrc"))
        ok(net.vote(pid, "firm-a"))
    ok(net.vote(p1, "firm-b"))
    h = net.h.height
    assert decode(net.gov.get(K_EPOCH)) == [1, h]
    ok(net.vote(p2, "firm-b", same_block=True))  # decided at the same height
    assert decode(net.gov.get(K_EPOCH)) == [1, h]  # rewritten, not epoch 2
    assert net.gov.get(epoch_key(2)) is None
    c1 = epoch_config(net.gov, 1)
    assert c1 is not None and c1.epoch == 1
    assert c1.param("block_max_txs") == 10 and {v.pubkey: v.power for v in c1.validators}[a] == 5
    assert pending_epoch_change(net.gov, h) == c1 and pending_epoch_change(net.gov, h - 1) is None
    # A decision in a later block writes epoch 2 on top of epoch 1's configuration.
    net.decide("set_param", ["round_timeout_ms", 2000])
    assert decode(net.gov.get(K_EPOCH)) == [2, net.h.height]
    c2 = epoch_config(net.gov, 2)
    assert (
        c2 is not None and c2.param("block_max_txs") == 10 and c2.param("round_timeout_ms") == 2000
    )
    assert net.h.query("governance", "current_epoch", []) == 2
    assert dict(net.h.query("governance", "epoch_config", [1]))["params"][1] == [
        "block_max_txs",
        10,
    ]
    statuses = [dict(p)["status"] for p in net.h.query("governance", "proposals", ["executed"])]
    assert statuses == ["executed"] * 3
    assert net.h.query("governance", "proposals", ["open", 5]) == []


def test_thresholds_are_strict() -> None:
    # Approval exactly at the threshold is not enough (participation not binding: > 0).
    net = Net(committee=(("csrc", 1), ("firm-a", 1), ("firm-b", 1)), gov_thresholds=(0, 1, 2, 3))
    pid = ok(net.propose("set_param", ["block_max_txs", 10])).result
    ok(net.vote(pid, "csrc"))
    assert ok(net.vote(pid, "firm-a")).result == "open"  # 2 of 3 = 2/3, not > 2/3
    assert ok(net.vote(pid, "firm-b")).result == "executed"
    # Rejected as soon as the best case is exactly the threshold: 2 of 3 can't pass.
    pid = ok(net.propose("set_param", ["block_max_txs", 11])).result
    assert ok(net.vote(pid, "csrc", False)).result == "rejected"
    # Participation exactly at its threshold is not enough either (approval 1/2 reached).
    net = Net(gov_thresholds=(3, 4, 1, 2))
    pid = ok(net.propose("set_param", ["block_max_txs", 10])).result
    for org in ("csrc", "firm-a"):
        ok(net.vote(pid, org))
    assert ok(net.vote(pid, "firm-b")).result == "open"  # 3 yes, but 3 of 4 voted: not > 3/4
    assert ok(net.vote(pid, "firm-c", False)).result == "executed"  # all voted, 3 yes > 1/2


def test_removing_an_org_removes_its_validators_observers_and_seat() -> None:
    net = Net()
    joins = sorted(make_join_request(CHAIN, PrivateKey.generate(), "firm-c") for _ in range(2))
    for join in joins:
        net.decide("admit_observer", list(join))
    assert set(net.config().observers) == {pub(net.observer), joins[0][0], joins[1][0]}
    pid = ok(net.propose("remove_org", ["firm-c"])).result
    ok(net.vote(pid, "csrc"))
    ok(net.vote(pid, "firm-a"))
    out = ok(net.vote(pid, "firm-c"))  # firm-c may vote on its own removal
    assert out.result == "executed"
    config = net.config()
    assert config.observers == (pub(net.observer),)  # a genesis observer has no org: it stays
    assert "firm-c" not in {v.org for v in config.validators}
    assert dict(committee(net.gov)).get("firm-c") is None
    changes = dict(out.events[-1].fields)["changes"]
    assert (
        changes
        == [
            f"validator {pub(net.nodes['firm-c']).hex()[:16]} removed",
            f"observer {joins[0][0].hex()[:16]} removed",  # in key order, on every node
            f"observer {joins[1][0].hex()[:16]} removed",
            "org firm-c removed",
            f"epoch {latest_epoch(net.gov)} configuration written",
        ]
    )
    # Its admin can no longer take part.
    refused(net.propose("set_param", ["block_max_txs", 9], by="firm-c"), "G1: org 'firm-c'")


def test_only_governance_may_write_membership() -> None:
    net = Net()
    for contract in ("evidence", "membership"):
        ctx = make_context(
            net.h.store, contract, sender_pubkey=pub(net.member), sender_org=None, sender_role=None
        )
        ctx.contract = contract
        with pytest.raises(ContractError, match=f"contract '{contract}' may not write"):
            ctx.writer_for("membership")
    ctx = make_context(
        net.h.store, "governance", sender_pubkey=pub(net.member), sender_org=None, sender_role=None
    )
    ctx.contract = "governance"
    ctx.writer_for("membership").put(b"k", b"v")
    assert net.h.store.reader("membership").get(b"k") == b"v"
    with pytest.raises(ContractError, match="may not write 'evidence'"):
        ctx.writer_for("evidence")

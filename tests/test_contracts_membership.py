"""Rule tests for contracts/membership.py (rules M1-M5), through the miniature executor."""

from __future__ import annotations

import pytest

from gmchain.contracts.framework import default_registry
from gmchain.contracts.keys import CryptoSmVerifier, address_of
from gmchain.contracts.membership import ACCOUNT_SHAPE, genesis_writes, lookup_account
from gmchain.contracts.testing import Harness, MemoryState
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.jsonfmt import view_to_json
from gmchain.ledger.types import Event, ReceiptStatus


def new_key() -> bytes:
    return PrivateKey.generate().public_key.to_bytes()


ADMIN_A, MEMBER_A, ADMIN_B, REG_ADMIN, REGULATOR = (new_key() for _ in range(5))
GENESIS = [
    (ADMIN_A, "firm-a", "admin"),
    (MEMBER_A, "firm-a", "member"),
    (ADMIN_B, "firm-b", "admin"),
    (REG_ADMIN, "csrc", "admin"),
    (REGULATOR, "csrc", "regulator"),
]


@pytest.fixture
def chain() -> Harness:
    return Harness(default_registry(), GENESIS)


def ok(outcome):  # type: ignore[no-untyped-def]
    assert outcome.status is ReceiptStatus.OK, outcome.error
    return outcome


def failed(outcome, message: str) -> None:  # type: ignore[no-untyped-def]
    assert outcome.status is ReceiptStatus.FAILED
    assert outcome.error == message


def test_genesis_accounts_are_found() -> None:
    state = MemoryState()
    for k, v in genesis_writes(GENESIS, CryptoSmVerifier()).items():
        state.put(k, v)
    assert lookup_account(state, address_of(ADMIN_A)) == (ADMIN_A, "firm-a", "admin")
    assert lookup_account(state, address_of(REGULATOR)) == (REGULATOR, "csrc", "regulator")
    assert lookup_account(state, address_of(new_key())) is None


@pytest.mark.parametrize(
    ("accounts", "message"),
    [
        ([(b"\x04" + bytes(63), "o", "admin")], "genesis account 0: pubkey must be 65 bytes"),
        ([(b"\x02" + bytes(64), "o", "admin")], "genesis account 0: pubkey must be 65 bytes"),
        ([(ADMIN_A, "", "admin")], "genesis account 0: org must be 1..64 bytes"),
        ([(ADMIN_A, "a b", "admin")], "genesis account 0: org 'a b' has characters"),
        ([(ADMIN_A, "o", "root")], "genesis account 0: role 'root' is not one of"),
        ([(ADMIN_A, "o", "admin"), (ADMIN_A, "p", "member")], "genesis account 1: duplicate key"),
        ([(b"\x04" + bytes(64), "o", "admin")], "genesis account 0: pubkey is not a valid SM2"),
    ],
)
def test_genesis_refuses_bad_accounts(accounts: list[tuple[bytes, str, str]], message: str) -> None:
    with pytest.raises(ValueError) as info:
        genesis_writes(accounts, CryptoSmVerifier())
    assert str(info.value).startswith(message)


def test_admin_registers_in_own_org(chain: Harness) -> None:
    key = new_key()
    out = ok(chain.call(ADMIN_A, "membership", "register", [key, "firm-a", "member"]))
    assert out.result == address_of(key)
    assert out.events == (
        Event(
            contract="membership",
            name="AccountRegistered",
            fields=(
                ("address", address_of(key)),
                ("org", "firm-a"),
                ("role", "member"),
                ("by", address_of(ADMIN_A)),
            ),
        ),
    )
    got = chain.query("membership", "get", [address_of(key)])
    assert got == [
        ["address", address_of(key)],
        ["pubkey", key],
        ["org", "firm-a"],
        ["role", "member"],
    ]
    assert view_to_json(got, ACCOUNT_SHAPE.or_none().describe()) == {
        "address": "0x" + address_of(key).hex(),
        "pubkey": "0x" + key.hex(),
        "org": "firm-a",
        "role": "member",
    }
    listed = chain.query("membership", "list", ["firm-a"])
    addresses = [dict(a)["address"] for a in listed]
    assert addresses == sorted([address_of(ADMIN_A), address_of(MEMBER_A), address_of(key)])
    assert len(chain.query("membership", "list", ["firm-a", 2])) == 2
    # the new account can act: an admin it registers can register in turn
    admin2 = new_key()
    ok(chain.call(ADMIN_A, "membership", "register", [admin2, "firm-a", "admin"]))
    ok(chain.call(admin2, "membership", "register", [new_key(), "firm-a", "member"]))


def test_only_admins_register(chain: Harness) -> None:
    key = new_key()
    failed(
        chain.call(MEMBER_A, "membership", "register", [key, "firm-a", "member"]),
        "only an admin may register accounts; the sender's role is 'member'",
    )
    failed(
        chain.call(REGULATOR, "membership", "register", [key, "csrc", "member"]),
        "only an admin may register accounts; the sender's role is 'regulator'",
    )
    failed(
        chain.call(new_key(), "membership", "register", [key, "firm-a", "member"]),
        "only an admin may register accounts; the sender's role is None",
    )


def test_admins_register_only_in_their_org(chain: Harness) -> None:
    failed(
        chain.call(ADMIN_B, "membership", "register", [new_key(), "firm-a", "admin"]),
        "an admin of org 'firm-b' cannot register accounts of org 'firm-a'",
    )


def test_regulator_role_only_in_regulator_org(chain: Harness) -> None:
    failed(
        chain.call(ADMIN_A, "membership", "register", [new_key(), "firm-a", "regulator"]),
        "role 'regulator' can only be granted in a regulator org; 'firm-a' is not one",
    )
    ok(chain.call(REG_ADMIN, "membership", "register", [new_key(), "csrc", "regulator"]))


def test_role_must_be_known(chain: Harness) -> None:
    out = chain.call(ADMIN_A, "membership", "register", [new_key(), "firm-a", "root"])
    assert out.status is ReceiptStatus.BAD_ARGUMENTS
    assert out.error == "argument 'role' must be one of admin, regulator, member; got 'root'"


def test_key_must_be_on_the_curve(chain: Harness) -> None:
    bad = b"\x04" + bytes(64)
    failed(
        chain.call(ADMIN_A, "membership", "register", [bad, "firm-a", "member"]),
        "pubkey is not a valid SM2 public key (not a point on the curve)",
    )


def test_duplicate_registration(chain: Harness) -> None:
    failed(
        chain.call(ADMIN_A, "membership", "register", [MEMBER_A, "firm-a", "admin"]),
        f"account 0x{address_of(MEMBER_A).hex()} is already registered "
        "(org 'firm-a', role 'member')",
    )


def test_revoke_is_permanent(chain: Harness) -> None:
    addr = address_of(MEMBER_A)
    out = ok(chain.call(ADMIN_A, "membership", "revoke", [addr]))
    assert out.result is None
    assert out.events[0].name == "AccountRevoked"
    assert dict(out.events[0].fields) == {
        "address": addr,
        "org": "firm-a",
        "by": address_of(ADMIN_A),
    }
    assert chain.query("membership", "get", [addr]) is None
    assert lookup_account(chain.store.reader("membership"), addr) is None
    listed = [dict(a)["address"] for a in chain.query("membership", "list", ["firm-a"])]
    assert listed == [address_of(ADMIN_A)]
    revoked_at = chain.height
    failed(
        chain.call(ADMIN_A, "membership", "register", [MEMBER_A, "firm-a", "member"]),
        f"account 0x{addr.hex()} was revoked at height {revoked_at} "
        "and can never be registered again",
    )
    # a revoked account can no longer act
    failed(
        chain.call(MEMBER_A, "evidence", "submit", ["r1", "f1", "s", "t", bytes(32), None, [], 1]),
        "the sender has no account in any org; only an org's accounts can submit evidence",
    )


def test_revoke_rules(chain: Harness) -> None:
    unknown = address_of(new_key())
    failed(chain.call(ADMIN_A, "membership", "revoke", [unknown]), f"no account 0x{unknown.hex()}")
    failed(
        chain.call(ADMIN_B, "membership", "revoke", [address_of(MEMBER_A)]),
        "an admin of org 'firm-b' cannot revoke accounts of org 'firm-a'",
    )
    failed(
        chain.call(MEMBER_A, "membership", "revoke", [address_of(ADMIN_A)]),
        "only an admin may revoke accounts; the sender's role is 'member'",
    )
    failed(
        chain.call(ADMIN_A, "membership", "revoke", [address_of(ADMIN_A)]),
        "an admin cannot revoke its own account",
    )
    out = chain.call(ADMIN_A, "membership", "revoke", [b"short"])
    assert out.status is ReceiptStatus.BAD_ARGUMENTS
    assert out.error == "argument 'address' must be 20 bytes, got 5"


def test_queries_validate_arguments(chain: Harness) -> None:
    from gmchain.contracts.framework import BadArguments

    with pytest.raises(BadArguments, match="argument 'limit' must be in"):
        chain.query("membership", "list", ["firm-a", 0])
    assert chain.query("membership", "list", ["nobody"]) == []

"""The membership contract: permissioned accounts (SM2 key, organisation, role).

Rules this contract keeps (each error message names the rule that failed):
M1. Only an account with role "admin" may register or revoke accounts, and only in its own org.
M2. Roles are "admin", "regulator" and "member". "regulator" may be granted only inside a
    regulator org: an org that had a regulator account at genesis. A securities firm therefore
    cannot promote its own staff to regulator. Regulators get no extra write rights: they read
    everything, which every account can do through queries anyway.
M3. A registered key must be a valid SM2 public key (on the curve, GB/T 32918.1 §7.2.2).
M4. An address is registered at most once; a revoked key stays revoked for good (a tombstone
    keeps it out), because revocation usually means the key is compromised.
M5. An admin cannot revoke its own account (so an org can never revoke its way to no admin by a
    single mistaken call).
Check everything, then write (STYLE.md habit 9).

State layout (keys relative to the contract's namespace):
    b"a/" + address(20)                 -> encode([pubkey, org, role])
    b"o/" + org + b"\\x00" + address(20)  -> b"\\x01"   (index for `list(org)`)
    b"x/" + address(20)                 -> encode([org, height])   (revoked: tombstone)
    b"g/" + org                         -> b"\\x01"   (a regulator org, written at genesis)
Events: AccountRegistered(address, org, role, by), AccountRevoked(address, org, by).

Sources: DESIGN.md ("Who uses it"), ledger/types.py (`Genesis.accounts`, `Address`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gmchain.contracts.framework import (
    IDENT_CHARS,
    Arg,
    Context,
    Contract,
    ContractError,
    QueryContext,
    StateAccess,
    StateReader,
    method,
    query,
)
from gmchain.contracts.keys import ADDRESS_SIZE, CryptoSmVerifier, Sm2Verifier, address_of
from gmchain.contracts.results import Shape
from gmchain.ledger.codec import Value, decode, encode

__all__ = [
    "ACCOUNT_FIELDS",
    "ACCOUNT_SHAPE",
    "MAX_LIST",
    "ROLES",
    "MembershipContract",
    "genesis_writes",
    "is_tombstoned",
    "lookup_account",
    "org_has_accounts",
    "removed_accounts",
    "revoked_org",
    "write_account",
    "write_revocation",
]

ROLES = ("admin", "regulator", "member")
# An account result: [name, value] pairs in this order.
ACCOUNT_SHAPE = Shape.record(
    ("address", Shape.of("bytes", size=20)),
    ("pubkey", Shape.of("bytes", size=65)),
    ("org", Shape.of("str")),
    ("role", Shape.of("str")),
)
ACCOUNT_FIELDS = tuple(name for name, _ in ACCOUNT_SHAPE.fields)
MAX_LIST = 1000
_ORG_MAX = 64
_ONE = b"\x01"


def _account_key(address: bytes) -> bytes:
    return b"a/" + address


def _org_key(org: str, address: bytes) -> bytes:
    return b"o/" + org.encode() + b"\x00" + address


def _tombstone_key(address: bytes) -> bytes:
    return b"x/" + address


def _regulator_org_key(org: str) -> bytes:
    return b"g/" + org.encode()


def lookup_account(reader: StateReader, address: bytes) -> tuple[bytes, str, str] | None:
    """(pubkey, org, role) of a live account, or None if unknown or revoked."""
    raw = reader.get(_account_key(address))
    if raw is None:
        return None
    pubkey, org, role = decode(raw)
    return pubkey, org, role


def org_has_accounts(reader: StateReader, org: str) -> bool:
    """Whether `org` has at least one live account."""
    return bool(reader.scan(b"o/" + org.encode() + b"\x00", 1))


def is_tombstoned(reader: StateReader, address: bytes) -> bool:
    """Whether `address` was revoked (rule M4: for good)."""
    return reader.get(_tombstone_key(address)) is not None


def revoked_org(reader: StateReader, address: bytes) -> str | None:
    """The org a revoked account belonged to (its tombstone, rule M4), or None if not revoked."""
    raw = reader.get(_tombstone_key(address))
    if raw is None:
        return None
    org, _height = decode(raw)
    assert isinstance(org, str)
    return org


def write_account(state: StateAccess, pubkey: bytes, org: str, role: str) -> bytes:
    """Write a new account (the caller checked rules M1-M4); returns its address. The
    governance contract uses it too, to admit an org's first admin (contracts/governance.py)."""
    address = address_of(pubkey)
    state.put(_account_key(address), encode([pubkey, org, role]))
    state.put(_org_key(org, address), _ONE)
    return address


def write_revocation(state: StateAccess, address: bytes, org: str, height: int) -> None:
    """Remove a live account for good (the caller checked the rules; also used by governance)."""
    state.delete(_account_key(address))
    state.delete(_org_key(org, address))
    state.put(_tombstone_key(address), encode([org, height]))


def removed_accounts(writes: Mapping[tuple[str, bytes], bytes | None]) -> list[bytes]:
    """Addresses whose account a block's state `writes` (namespace, key) -> value delete."""
    return [
        key[2:]
        for (ns, key), value in writes.items()
        if ns == "membership" and value is None and key.startswith(b"a/")
    ]


def genesis_writes(
    accounts: Sequence[tuple[bytes, str, str]], verifier: Sm2Verifier | None = None
) -> dict[bytes, bytes]:
    """State writes (relative keys) that admit the genesis accounts; ValueError if one is bad.

    With a `verifier`, keys are also checked to lie on the curve (rule M3).
    """
    writes: dict[bytes, bytes] = {}
    for i, (pubkey, org, role) in enumerate(accounts):
        where = f"genesis account {i}"
        if not isinstance(pubkey, bytes) or len(pubkey) != 65 or pubkey[0] != 4:
            raise ValueError(f"{where}: pubkey must be 65 bytes 0x04||X||Y")
        if verifier is not None and not verifier.is_valid_public(pubkey):
            raise ValueError(f"{where}: pubkey is not a valid SM2 public key")
        if not isinstance(org, str) or not 0 < len(org.encode()) <= _ORG_MAX:
            raise ValueError(f"{where}: org must be 1..{_ORG_MAX} bytes")
        if any(c not in IDENT_CHARS for c in org):
            raise ValueError(f"{where}: org {org!r} has characters outside letters, digits, ._-:/@")
        if role not in ROLES:
            raise ValueError(f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
        address = address_of(pubkey)
        if _account_key(address) in writes:
            raise ValueError(f"{where}: duplicate key (address {address.hex()})")
        writes[_account_key(address)] = encode([pubkey, org, role])
        writes[_org_key(org, address)] = _ONE
        if role == "regulator":
            writes[_regulator_org_key(org)] = _ONE
    return writes


def _account_value(address: bytes, pubkey: bytes, org: str, role: str) -> list[Value]:
    return ACCOUNT_SHAPE.pairs(address, pubkey, org, role)


_ADDRESS = Arg("address", bytes, size=ADDRESS_SIZE, doc="20-byte account address")
_ORG = Arg("org", str, max_len=_ORG_MAX, charset="ident")


class MembershipContract(Contract):
    """Permissioned accounts: who may send transactions, for which org, in which role."""

    NAME = "membership"

    def __init__(self, verifier: Sm2Verifier | None = None) -> None:
        self._verifier: Sm2Verifier = verifier if verifier is not None else CryptoSmVerifier()

    @staticmethod
    def _require_admin(ctx: Context, org: str, action: str) -> None:
        # Rule M1.
        if ctx.sender_role != "admin":
            raise ContractError(
                f"only an admin may {action} accounts; the sender's role is {ctx.sender_role!r}"
            )
        if ctx.sender_org != org:
            raise ContractError(
                f"an admin of org {ctx.sender_org!r} cannot {action} accounts of org {org!r}"
            )

    @method(
        Arg("pubkey", bytes, size=65, doc="SM2 public key 0x04||X||Y"),
        _ORG,
        Arg("role", str, max_len=16, choices=ROLES),
        returns=Shape.of("bytes", size=20, doc="the new account's address"),
    )
    def register(self, ctx: Context, pubkey: bytes, org: str, role: str) -> Value:
        """Admit an account (rules M1-M4)."""
        self._require_admin(ctx, org, "register")
        if role == "regulator" and ctx.state.get(_regulator_org_key(org)) is None:
            raise ContractError(
                f"role 'regulator' can only be granted in a regulator org; {org!r} is not one"
            )
        if not self._verifier.is_valid_public(pubkey):
            raise ContractError("pubkey is not a valid SM2 public key (not a point on the curve)")
        address = address_of(pubkey)
        existing = lookup_account(ctx.state, address)
        if existing is not None:
            raise ContractError(
                f"account 0x{address.hex()} is already registered "
                f"(org {existing[1]!r}, role {existing[2]!r})"
            )
        tomb = ctx.state.get(_tombstone_key(address))
        if tomb is not None:
            _, height = decode(tomb)
            raise ContractError(
                f"account 0x{address.hex()} was revoked at height {height} "
                "and can never be registered again"
            )
        write_account(ctx.state, pubkey, org, role)
        ctx.emit(
            "AccountRegistered",
            ("address", address),
            ("org", org),
            ("role", role),
            ("by", ctx.sender),
        )
        return address

    @method(_ADDRESS, returns=Shape.of("null"))
    def revoke(self, ctx: Context, address: bytes) -> Value:
        """Remove an account of the admin's own org for good (rules M1, M4, M5)."""
        account = lookup_account(ctx.state, address)
        if account is None:
            raise ContractError(f"no account 0x{address.hex()}")
        _, org, _ = account
        self._require_admin(ctx, org, "revoke")
        if address == ctx.sender:
            raise ContractError("an admin cannot revoke its own account")
        write_revocation(ctx.state, address, org, ctx.height)
        ctx.emit("AccountRevoked", ("address", address), ("org", org), ("by", ctx.sender))
        return None

    @query(_ADDRESS, returns=ACCOUNT_SHAPE.or_none())
    def get(self, q: QueryContext, address: bytes) -> Value:
        """One live account, or None."""
        account = lookup_account(q.state, address)
        if account is None:
            return None
        return _account_value(address, *account)

    @query(
        _ORG,
        Arg("limit", int, optional=True, min=1, max=MAX_LIST, doc=f"default {MAX_LIST}"),
        name="list",
        returns=Shape.list_of(ACCOUNT_SHAPE, doc="ascending by address"),
    )
    def list_accounts(self, q: QueryContext, org: str, limit: int | None) -> Value:
        """The live accounts of one org."""
        out: list[Value] = []
        prefix = b"o/" + org.encode() + b"\x00"
        for key, _ in q.state.scan(prefix, MAX_LIST if limit is None else limit):
            address = key[len(prefix) :]
            account = lookup_account(q.state, address)
            assert account is not None, "org index points at a missing account"
            out.append(_account_value(address, *account))
        return out

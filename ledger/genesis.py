"""The genesis document: the chain's founding validators, observers and accounts.

Rules this module keeps (docs/protocol.md section 6):
1. The genesis hash is `compute_signing_root("genesis", genesis)`; it is block 0's parent_id, so
   a node bound to one genesis refuses every block of another.
2. At least one and at most MAX_VALIDATORS validators, no key twice; at most MAX_OBSERVERS
   observers and MAX_ACCOUNTS accounts. Each struct checks this when built or decoded.
3. Each struct's codec is derived from its fields (ledger.struct_codec), its tag registered in
   ledger.wire.
4. The governance committee (contracts/governance.py, docs/governance.md): `committee` is
   (org, weight) pairs strictly ascending by org, each weight in [1, MAX_COMMITTEE_WEIGHT]; empty
   means every distinct validator org with weight 1. `gov_thresholds` = (participation numerator,
   denominator, approval numerator, denominator): a proposal is approved when the committee weight
   that voted is > participation x total weight and the weight that voted yes is > approval x
   total weight. 0 <= participation < 1; 1/2 <= approval < 1; denominators in [1, 1000].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from gmchain.crypto_sm import sm3_hash
from gmchain.ledger.scalars import (
    MAX_VALIDATORS,
    NODE_ID_SIZE,
    PUBKEY_SIZE,
    Digest,
    NodeId,
    check_bytes,
    check_int,
    check_list,
    check_str,
    need,
)
from gmchain.ledger.struct_codec import Struct, max_items, wire_struct
from gmchain.ledger.wire import Tag, compute_signing_root

__all__ = [
    "DEFAULT_GOV_THRESHOLDS",
    "MAX_COMMITTEE",
    "MAX_COMMITTEE_WEIGHT",
    "MAX_THRESHOLD_DEN",
    "Genesis",
    "GenesisValidator",
    "check_gov_thresholds",
]

MAX_OBSERVERS = 256
MAX_ACCOUNTS = 4096
MAX_COMMITTEE = 256
MAX_COMMITTEE_WEIGHT = 1_000_000
MAX_THRESHOLD_DEN = 1000
DEFAULT_GOV_THRESHOLDS = (2, 3, 2, 3)  # participation > 2/3, approval > 2/3 of committee weight


@wire_struct
@dataclass(frozen=True, slots=True, kw_only=True)
class GenesisValidator(Struct):
    """A validator admitted at genesis: its SM2 public key, voting power and organisation."""

    TAG: ClassVar[Tag] = Tag.GENESIS_VALIDATOR
    pubkey: bytes
    power: int
    org: str

    def __post_init__(self) -> None:
        check_bytes("pubkey", self.pubkey, PUBKEY_SIZE)
        check_int("power", self.power, 1, 2**32)
        check_str("org", self.org, 64)

    @property
    def node_id(self) -> NodeId:
        return NodeId(sm3_hash(self.pubkey)[:NODE_ID_SIZE])


def check_gov_thresholds(p_num: int, p_den: int, a_num: int, a_den: int) -> str:
    """Rule 4: "" if the thresholds are acceptable, else what is wrong (for a person)."""
    if not (1 <= p_den <= MAX_THRESHOLD_DEN and 1 <= a_den <= MAX_THRESHOLD_DEN):
        return f"denominators must be in [1, {MAX_THRESHOLD_DEN}]"
    if not 0 <= p_num < p_den:
        return "participation must be a fraction in [0, 1)"
    if not (a_num < a_den and 2 * a_num >= a_den):
        return "approval must be a fraction in [1/2, 1)"
    return ""


@wire_struct
@dataclass(frozen=True, slots=True, kw_only=True)
class Genesis(Struct):
    """The chain's founding document; its hash is the genesis block's parent_id."""

    TAG: ClassVar[Tag] = Tag.GENESIS
    chain_id: str
    timestamp_ms: int
    validators: tuple[GenesisValidator, ...] = field(metadata=max_items(MAX_VALIDATORS))
    # SM2 public keys of admitted non-voting nodes
    observers: tuple[bytes, ...] = field(default=(), metadata=max_items(MAX_OBSERVERS))
    replay_window: int = 1000  # W: a tx is valid while head < expiry <= head + W
    # Accounts admitted at genesis: (SM2 public key, org, role). Roles: "admin" may admit accounts.
    accounts: tuple[tuple[bytes, str, str], ...] = field(
        default=(), metadata=max_items(MAX_ACCOUNTS)
    )
    # Rule 4: the governance committee, (org, weight) ascending by org; empty: validator orgs.
    committee: tuple[tuple[str, int], ...] = field(default=(), metadata=max_items(MAX_COMMITTEE))
    # Rule 4: (participation num, den, approval num, den) as fractions of the committee weight.
    gov_thresholds: tuple[int, int, int, int] = DEFAULT_GOV_THRESHOLDS

    def __post_init__(self) -> None:
        check_str("chain_id", self.chain_id, 64)
        check_int("timestamp_ms", self.timestamp_ms)
        check_list("validators", self.validators, MAX_VALIDATORS)
        need(len(self.validators) >= 1, "validators: at least one")
        object.__setattr__(self, "validators", tuple(self.validators))
        ids = [v.node_id for v in self.validators]
        need(len(set(ids)) == len(ids), "validators: duplicate key")
        check_list("observers", self.observers, MAX_OBSERVERS)
        for o in self.observers:
            check_bytes("observer", o, PUBKEY_SIZE)
        object.__setattr__(self, "observers", tuple(self.observers))
        check_int("replay_window", self.replay_window, 1, 1_000_000)
        check_list("accounts", self.accounts, MAX_ACCOUNTS)
        accounts = []
        for acct in self.accounts:
            need(isinstance(acct, list | tuple) and len(acct) == 3, "accounts: expected triples")
            check_bytes("account key", acct[0], PUBKEY_SIZE)
            check_str("account org", acct[1], 64)
            check_str("account role", acct[2], 16)
            accounts.append((acct[0], acct[1], acct[2]))
        object.__setattr__(self, "accounts", tuple(accounts))
        check_list("committee", self.committee, MAX_COMMITTEE)
        committee = []
        for pair in self.committee:
            need(isinstance(pair, list | tuple) and len(pair) == 2, "committee: expected pairs")
            check_str("committee org", pair[0], 64)
            check_int("committee weight", pair[1], 1, MAX_COMMITTEE_WEIGHT)
            committee.append((pair[0], pair[1]))
        orgs = [o for o, _ in committee]
        need(orgs == sorted(set(orgs)), "committee: ascending by org, no org twice")
        object.__setattr__(self, "committee", tuple(committee))
        need(
            isinstance(self.gov_thresholds, list | tuple) and len(self.gov_thresholds) == 4,
            "gov_thresholds: expected 4 integers",
        )
        for t in self.gov_thresholds:
            check_int("gov_threshold", t, 0, MAX_THRESHOLD_DEN)
        need(check_gov_thresholds(*self.gov_thresholds) == "", "gov_thresholds: out of range")
        object.__setattr__(self, "gov_thresholds", tuple(self.gov_thresholds))

    def committee_or_default(self) -> tuple[tuple[str, int], ...]:
        """Rule 4: the committee, or every distinct validator org with weight 1 if none is set."""
        if self.committee:
            return self.committee
        return tuple((org, 1) for org in sorted({v.org for v in self.validators}))

    def compute_hash(self) -> Digest:
        return compute_signing_root("genesis", self.to_fields())

"""The genesis document: the chain's founding validators, observers and accounts.

Rules this module keeps (docs/protocol.md section 6):
1. The genesis hash is `compute_signing_root("genesis", genesis)`; it is block 0's parent_id, so
   a node bound to one genesis refuses every block of another.
2. At least one and at most MAX_VALIDATORS validators, no key twice; at most MAX_OBSERVERS
   observers and MAX_ACCOUNTS accounts. Each struct checks this when built or decoded.
3. Each struct's codec is derived from its fields (ledger.struct_codec), its tag registered in
   ledger.wire.
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

__all__ = ["Genesis", "GenesisValidator"]

MAX_OBSERVERS = 256
MAX_ACCOUNTS = 4096


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

    def compute_hash(self) -> Digest:
        return compute_signing_root("genesis", self.to_fields())

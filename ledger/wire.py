"""The wire registry: every struct type tag and every hash domain of gmchain, in one place.

Rules this module keeps (docs/architecture.md, "The wire registry"; docs/protocol.md sections 2, 3):
1. A struct's type tag is a member of `Tag`, and nowhere else: a struct class says
   `TAG = Tag.X`, and `register_struct` (run by `ledger.struct_codec.wire_struct` when the class
   is defined) records it. Two members with one value, or two classes with one tag, fail at
   import (`enum.unique`, `WireCollision`). A class whose TAG is not a `Tag` member cannot register.
2. A domain is a named byte string in `SIGNING_DOMAINS` (hashed as
   `SM3(domain || 0x00 || enc(v))` by `compute_signing_root`) or `HASH_PREFIXES` (other SM3 inputs
   that start with a fixed string: a fingerprint, an on-disk checksum). Over both tables together,
   a repeated name, a repeated string, a string holding a NUL, or a string that is a prefix of
   another fails at import: so no hash input of one kind can be read as one of another kind, and
   no signature of one kind can be replayed as another.
3. The p2p transport is a separate namespace (p2p/names.py): its frame tags number the envelope a
   payload travels in, not the payload, and p2p may import only crypto_sm. Its domains are signed
   with the same node key as votes, so tests/test_wire_registry.py checks them against these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import IntEnum, unique
from types import MappingProxyType
from typing import Final, Protocol

from gmchain.crypto_sm import sm3_hash
from gmchain.ledger.codec import Value, encode, encode_checked_fields
from gmchain.ledger.scalars import Digest

__all__ = [
    "DOMAIN",
    "HASH_PREFIXES",
    "SIGNING_DOMAINS",
    "Tag",
    "WireCollision",
    "WireStruct",
    "compute_encoded_root",
    "compute_signing_root",
    "compute_struct_root",
    "register_struct",
    "registered_structs",
    "struct_for_tag",
]


class WireCollision(Exception):
    """Two registrations claim one tag, one domain name or one domain string (raised at import)."""


@unique
class Tag(IntEnum):
    """Every struct type tag (docs/protocol.md section 2). Never reuse a retired number."""

    # ledger: transactions, receipts, headers, blocks, genesis (ledger/tx.py, block.py, genesis.py)
    TX_BODY = 1
    SIGNED_TX = 2
    EVENT = 3
    RECEIPT = 4
    BLOCK_HEADER = 5
    BLOCK = 6
    # ledger: consensus certificates and messages (ledger/certs.py, ledger/block.py)
    VOTE = 7
    QUORUM_CERT = 8
    TIMEOUT_VOTE = 9
    TIMEOUT_CERT = 10
    PROPOSAL = 11
    GENESIS_VALIDATOR = 12
    GENESIS = 13
    # ledger: an epoch's configuration (ledger/epoch.py; docs/governance.md)
    EPOCH_CONFIG = 14
    # consensus: retrieval, sync, commit proofs (consensus/messages.py), persisted safety data
    BLOCK_REQUEST = 20
    BLOCK_RESPONSE = 21
    SYNC_REQUEST = 22
    SYNC_RESPONSE = 23
    COMMIT_PROOF = 24
    SAFETY_DATA = 25
    SYNC_INFO = 26
    # node: transaction gossip (node/network.py)
    TX_BATCH = 40
    # contracts: sealed off-chain evidence data (contracts/evidence_data.py; docs/evidence.md)
    SEALED_DATA = 0x45


def _domain_tables(
    signing: Iterable[tuple[str, bytes]], prefixes: Iterable[tuple[str, bytes]]
) -> tuple[Mapping[str, bytes], Mapping[str, bytes]]:
    """Build both domain tables, refusing every collision of rule 2."""
    tables: tuple[dict[str, bytes], dict[str, bytes]] = ({}, {})
    seen: dict[bytes, str] = {}
    for table, rows in zip(tables, (signing, prefixes), strict=True):
        for name, value in rows:
            if name in tables[0] or name in tables[1]:
                raise WireCollision(f"domain name {name!r} registered twice")
            if b"\x00" in value:
                raise WireCollision(f"domain {name!r} contains a NUL byte")
            for other, other_name in seen.items():
                if value.startswith(other) or other.startswith(value):
                    raise WireCollision(
                        f"domains {name!r} and {other_name!r}: one prefixes the other"
                    )
            seen[value] = name
            table[name] = value
    return MappingProxyType(tables[0]), MappingProxyType(tables[1])


SIGNING_DOMAINS, HASH_PREFIXES = _domain_tables(
    signing=[
        ("tx", b"GMCHAIN/TX/v1"),
        ("header", b"GMCHAIN/HEADER/v1"),
        ("vote", b"GMCHAIN/VOTE/v1"),
        ("timeout", b"GMCHAIN/TIMEOUT/v1"),
        ("proposal", b"GMCHAIN/PROPOSAL/v1"),
        ("genesis", b"GMCHAIN/GENESIS/v1"),
        ("attest", b"GMCHAIN/EVIDENCE-ATTEST/v1"),
        ("evidence-record", b"GMCHAIN/EVIDENCE-RECORD/v1"),
        ("state", b"GMCHAIN/STATE/v1"),
        # a node key's proof of possession in a governance join request (contracts/gov_kinds.py)
        ("join-request", b"GMCHAIN/JOIN-REQUEST/v1"),
        # an account's login to a node's JSON-RPC: [chain_id, node id, challenge]
        # (node/rpcsession.py, docs/rpc.md "Read authentication")
        ("rpc-login", b"GMCHAIN/RPC-LOGIN/v1"),
        # a site's or account's public descriptor in the genesis ceremony (node/ceremony.py)
        ("site-descriptor", b"GMCHAIN/SITE-DESCRIPTOR/v1"),
    ],
    prefixes=[
        # SM3(prefix || each validator's key and power): chain/lightclient.py, docs/rpc.md
        ("validator-set", b"GMCHAIN/VALIDATOR-SET/v1"),
        # SM3(prefix || u64be(epoch) || validator-set fingerprint): the header's
        # next_validators_hash, ledger/epoch.py rule 3
        ("next-validators", b"GMCHAIN/NEXT-VALIDATORS/v1"),
        # SM3(prefix || payload) checksum of a sealed on-disk record: ledger/store_keys.py
        ("sealed-record", b"gmchain/sealed-record/v1"),
        # SM3 chain over a snapshot file's records: ledger/snapshot.py rule 3
        ("snapshot-content", b"gmchain/snapshot-content/v1"),
    ],
)
# The name every caller of compute_signing_root uses (one string per kind of signed message).
DOMAIN: Final[Mapping[str, bytes]] = SIGNING_DOMAINS


def compute_signing_root(domain: str, value: Value) -> Digest:
    """SM3(SIGNING_DOMAINS[domain] || 0x00 || canonical bytes of value)."""
    return Digest(sm3_hash(SIGNING_DOMAINS[domain] + b"\x00" + encode(value)))


def compute_struct_root(domain: str, fields: list[Value]) -> Digest:
    """compute_signing_root of a built struct's fields (already checked, so not walked again)."""
    return Digest(sm3_hash(SIGNING_DOMAINS[domain] + b"\x00" + encode_checked_fields(fields)))


def compute_encoded_root(domain: str, encoded: bytes) -> Digest:
    """compute_signing_root of a value given as its canonical bytes (taken from a decoded
    message: the caller answers for their being exactly the value's encoding)."""
    return Digest(sm3_hash(SIGNING_DOMAINS[domain] + b"\x00" + encoded))


# --- the struct classes that carry the tags ----------------------------------------------------


class WireStruct(Protocol):
    """What the registry needs of a struct class: its tag and its canonical codec."""

    TAG: int

    def encode(self) -> bytes: ...


_CLASSES: dict[Tag, type] = {}


def register_struct(cls: type) -> None:
    """Record `cls` as the struct of its TAG (rule 1). A class of the same module and name may
    register again (dataclass(slots=True) rebuilds the class it decorates)."""
    tag = getattr(cls, "TAG", None)
    if not isinstance(tag, Tag):
        raise WireCollision(f"{cls.__qualname__}: TAG must be a member of ledger.wire.Tag")
    known = _CLASSES.get(tag)
    if known is not None and _qualified(known) != _qualified(cls):
        raise WireCollision(f"tag {int(tag)} claimed by {_qualified(cls)} and {_qualified(known)}")
    _CLASSES[tag] = cls


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def struct_for_tag(tag: int) -> type | None:
    """The registered struct class of `tag`, or None (also for tags whose module is not loaded)."""
    try:
        return _CLASSES.get(Tag(tag))
    except ValueError:
        return None


def registered_structs() -> list[type]:
    """Every struct class registered so far, ascending by tag (import a module to register it)."""
    return [_CLASSES[t] for t in sorted(_CLASSES)]

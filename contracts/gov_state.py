"""The governance contract's state: its keys, what genesis writes, and the readers others use.

Rules this module keeps (EPOCHS.md E1, E2; docs/governance.md):
G-S1. Keys, relative to the contract's namespace `GOV_NAMESPACE` ("governance"):
        b"ep"                  -> encode([latest_epoch, written_height])
        b"ep/" + u64be(epoch)  -> EpochConfig(epoch).encode()
        b"c/" + org            -> encode(weight)            the committee (weight >= 1)
        b"t"                   -> encode([p_num, p_den, a_num, a_den])   the thresholds
        b"n"                   -> encode(next proposal id)  (ids start at 1)
        b"p/" + u64be(id)      -> encode(Proposal.to_value())
        b"r/" + org            -> encode([proposal_id, height])   org removed (for good)
        b"k/" + node_pubkey    -> encode([proposal_id, height])   node key revoked (for good)
        b"ob/" + node_pubkey   -> encode(org)    the org of an observer admitted by governance
        b"a/" + org            -> encode([proposal_id, height])   org admitted by governance
G-S2. Genesis writes ep/0 = EpochConfig.from_genesis, ep = [0, 0], the committee (the genesis
      document's, or every validator org with weight 1) and the thresholds.
G-S3. A change to the epoch configuration decided at height h writes config latest+1 and
      ep = [latest+1, h]; a second change at the same height rewrites that config in place
      (`write_next_config`). The configuration others check against is always the latest one
      written (`latest_config`), even before it takes effect.
G-S4. Readers take any `StateReader` of this namespace (a query's, a transaction's, or the
      executor's view of a block's parent state), so the chain library and the node can call
      them without running the contract.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gmchain.contracts.framework import StateAccess, StateReader
from gmchain.ledger.codec import Value, decode, encode
from gmchain.ledger.epoch import EpochConfig
from gmchain.ledger.genesis import Genesis

__all__ = [
    "GOV_NAMESPACE",
    "STATUSES",
    "Proposal",
    "committee",
    "epoch_config",
    "epoch_key",
    "genesis_writes",
    "is_node_key_revoked",
    "is_org_removed",
    "latest_config",
    "latest_epoch",
    "org_removal",
    "pending_epoch_change",
    "read_proposal",
    "removed_orgs",
    "revoked_node_keys",
    "thresholds",
    "write_next_config",
]

GOV_NAMESPACE = "governance"
STATUSES = ("open", "executed", "failed", "rejected", "expired")
_SCAN_ALL = 1 << 20

K_EPOCH = b"ep"
K_THRESHOLDS = b"t"
K_NEXT_ID = b"n"


def epoch_key(epoch: int) -> bytes:
    return b"ep/" + epoch.to_bytes(8, "big")


def committee_key(org: str) -> bytes:
    return b"c/" + org.encode()


def proposal_key(pid: int) -> bytes:
    return b"p/" + pid.to_bytes(8, "big")


def removed_org_key(org: str) -> bytes:
    return b"r/" + org.encode()


def revoked_key_key(pubkey: bytes) -> bytes:
    return b"k/" + pubkey


def observer_org_key(pubkey: bytes) -> bytes:
    return b"ob/" + pubkey


def admitted_org_key(org: str) -> bytes:
    return b"a/" + org.encode()


@dataclass(frozen=True, slots=True, kw_only=True)
class Proposal:
    """One proposal as stored under p/<id>. `votes`: (org, yes) ascending by org, one per org."""

    pid: int
    kind: str
    args: tuple[Value, ...]
    proposer_org: str
    proposer: bytes  # the proposing admin's address
    created_height: int
    expiry_height: int  # open while height <= expiry_height
    status: str  # one of STATUSES
    votes: tuple[tuple[str, bool], ...] = ()
    decided_height: int = 0  # 0 while open
    note: str = ""  # why it failed, or what execution changed

    def to_value(self) -> list[Value]:
        return [
            self.kind,
            list(self.args),
            self.proposer_org,
            self.proposer,
            self.created_height,
            self.expiry_height,
            self.status,
            [[org, yes] for org, yes in self.votes],
            self.decided_height,
            self.note,
        ]

    @classmethod
    def from_value(cls, pid: int, v: Value) -> Proposal:
        assert isinstance(v, list) and len(v) == 10, "stored proposal has a bad shape"
        kind, args, porg, proposer, created, expiry, status, votes, decided, note = v
        return cls(
            pid=pid,
            kind=kind,
            args=tuple(args),
            proposer_org=porg,
            proposer=proposer,
            created_height=created,
            expiry_height=expiry,
            status=status,
            votes=tuple((org, yes) for org, yes in votes),
            decided_height=decided,
            note=note,
        )

    def with_vote(self, org: str, yes: bool) -> Proposal:
        """A later vote by the same org replaces its earlier one."""
        votes = dict(self.votes)
        votes[org] = yes
        return replace(self, votes=tuple(sorted(votes.items())))


def read_proposal(reader: StateReader, pid: int) -> Proposal | None:
    raw = reader.get(proposal_key(pid))
    return None if raw is None else Proposal.from_value(pid, decode(raw))


def write_proposal(state: StateAccess, p: Proposal) -> None:
    state.put(proposal_key(p.pid), encode(p.to_value()))


# --- readers others rely on (EPOCHS.md E2, gov.md "API others rely on") ----------------------


def _epoch_record(reader: StateReader) -> tuple[int, int]:
    raw = reader.get(K_EPOCH)
    if raw is None:
        return 0, 0  # a state without governance (never on a chain built from a Genesis)
    latest, height = decode(raw)
    return latest, height


def latest_epoch(reader: StateReader) -> int:
    """The latest epoch whose configuration is written (it may not have started yet)."""
    return _epoch_record(reader)[0]


def epoch_config(reader: StateReader, epoch: int) -> EpochConfig | None:
    """The configuration of `epoch`, or None if it was never written."""
    if not 0 <= epoch < 2**64:
        return None
    raw = reader.get(epoch_key(epoch))
    return None if raw is None else EpochConfig.decode(raw)


def latest_config(reader: StateReader) -> EpochConfig:
    """G-S3: the configuration every check compares against."""
    config = epoch_config(reader, latest_epoch(reader))
    assert config is not None, "governance state has no epoch configuration (no genesis?)"
    return config


def pending_epoch_change(reader: StateReader, height: int) -> EpochConfig | None:
    """E2/E3: the configuration written by executing the block at `height`, or None (that block
    does not end its epoch). `reader` must see the state after that block."""
    latest, written = _epoch_record(reader)
    if latest == 0 or written != height:
        return None
    return epoch_config(reader, latest)


def write_next_config(state: StateAccess, config: EpochConfig, height: int) -> int:
    """G-S3: write `config` (its epoch field is replaced) as the next epoch's; returns the epoch."""
    latest, written = _epoch_record(state)
    epoch = latest if written == height and latest > 0 else latest + 1
    state.put(epoch_key(epoch), replace(config, epoch=epoch).encode())
    state.put(K_EPOCH, encode([epoch, height]))
    return epoch


def committee(reader: StateReader) -> tuple[tuple[str, int], ...]:
    """(org, weight) pairs ascending by org."""
    return tuple((key[2:].decode(), decode(raw)) for key, raw in reader.scan(b"c/", _SCAN_ALL))


def thresholds(reader: StateReader) -> tuple[int, int, int, int]:
    raw = reader.get(K_THRESHOLDS)
    assert raw is not None, "governance state has no thresholds (no genesis?)"
    p_num, p_den, a_num, a_den = decode(raw)
    return p_num, p_den, a_num, a_den


def org_removal(reader: StateReader, org: str) -> int | None:
    """The id of the proposal that removed `org`, or None if it was not removed (E10)."""
    raw = reader.get(removed_org_key(org))
    return None if raw is None else int(decode(raw)[0])


def is_org_removed(reader: StateReader, org: str) -> bool:
    return reader.get(removed_org_key(org)) is not None


def removed_orgs(reader: StateReader) -> dict[str, int]:
    """Every removed org -> the proposal that removed it."""
    return {key[2:].decode(): decode(raw)[0] for key, raw in reader.scan(b"r/", _SCAN_ALL)}


def is_node_key_revoked(reader: StateReader, pubkey: bytes) -> bool:
    return reader.get(revoked_key_key(pubkey)) is not None


def revoked_node_keys(reader: StateReader) -> frozenset[bytes]:
    """Node keys revoked by governance: never admitted again (P2P refuses them)."""
    return frozenset(key[2:] for key, _ in reader.scan(b"k/", _SCAN_ALL))


def genesis_writes(genesis: Genesis) -> dict[bytes, bytes]:
    """G-S2: the governance state of a new chain (relative keys)."""
    writes = {
        epoch_key(0): EpochConfig.from_genesis(genesis).encode(),
        K_EPOCH: encode([0, 0]),
        K_THRESHOLDS: encode(list(genesis.gov_thresholds)),
        K_NEXT_ID: encode(1),
    }
    for org, weight in genesis.committee_or_default():
        writes[committee_key(org)] = encode(weight)
    return writes

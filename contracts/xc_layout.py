"""The state the cross-chain contracts share (issue 13; docs/crosschain.md).

Three contracts touch cross-chain state, and this module is the one place its layout is written
down, so none of them reads another's bytes by guesswork:
- `governance` registers a chain's light client and unfreezes it (writes `xclient` through
  framework rule 7), and sets this chain's relay rule;
- `evidence` reads the relay rule and appends the records it selects to its outbox (its own
  namespace);
- `xclient` (crosschain/xclient.py) keeps the light clients, the packets that arrived and the
  acknowledgements.

Rules this module keeps:
1. `client_key(chain_id)` in the `xclient` namespace holds a `ClientState`, encoded as the
   canonical list `[genesis_hash, genesis_block_id, epoch, validators, status, latest_height,
   frozen_reason]` (`validators` = `[[pubkey, power, org], ...]` ascending by node id as an
   EpochConfig keeps them; `status` "active" or "frozen"; `frozen_reason` a string or None).
2. `RELAY_RULE_KEY` in the `xclient` namespace holds `[dest_chain_id, scenarios]`: the chain this
   chain reports to and the evidence scenarios it relays (an empty list: every record). Absent:
   nothing is relayed.
3. The evidence outbox (in the `evidence` namespace): `outbox_key(seq)` holds
   `[tx_id, record_id, flow_id, org]`; `OUTBOX_COUNT_KEY` holds the number of packets queued so
   far as a u64 big-endian; sequence numbers start at 1. The receipt of the transaction that
   queued packet `seq` carries the evidence event `PacketQueued` with fields
   `[("seq", seq), ("dest", dest_chain_id), ("record_id", record_id)]`.
4. Decoding checks the shape and raises ValueError; these values are written only by contracts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gmchain.ledger.codec import Value, decode, encode
from gmchain.ledger.genesis import GenesisValidator

__all__ = [
    "ACTIVE",
    "FROZEN",
    "OUTBOX_COUNT_KEY",
    "PACKET_QUEUED",
    "RELAY_RULE_KEY",
    "XCLIENT",
    "ClientState",
    "RelayRule",
    "client_key",
    "outbox_key",
    "validators_from_value",
    "validators_to_value",
]

XCLIENT = "xclient"  # the contract (and namespace) name
ACTIVE = "active"
FROZEN = "frozen"
RELAY_RULE_KEY = b"rule"
OUTBOX_COUNT_KEY = b"outn"
PACKET_QUEUED = "PacketQueued"


def client_key(chain_id: str) -> bytes:
    return b"c/" + chain_id.encode()


def outbox_key(seq: int) -> bytes:
    return b"out/" + seq.to_bytes(8, "big")


def validators_to_value(validators: Sequence[GenesisValidator]) -> list[Value]:
    return [[v.pubkey, v.power, v.org] for v in sorted(validators, key=lambda v: v.node_id)]


def validators_from_value(value: Value) -> tuple[GenesisValidator, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("validators: expected a non-empty list")
    out = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 3):
            raise ValueError("validators: expected [pubkey, power, org] items")
        out.append(GenesisValidator(pubkey=item[0], power=item[1], org=item[2]))
    return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientState:
    """Rule 1: what the light client of one registered chain trusts."""

    genesis_hash: bytes
    genesis_block_id: bytes
    epoch: int
    validators: tuple[GenesisValidator, ...]
    status: str = ACTIVE
    latest_height: int = 0
    frozen_reason: str | None = None

    def encode(self) -> bytes:
        return encode(
            [
                self.genesis_hash,
                self.genesis_block_id,
                self.epoch,
                validators_to_value(self.validators),
                self.status,
                self.latest_height,
                self.frozen_reason,
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> ClientState:
        v = decode(data)
        if not (isinstance(v, list) and len(v) == 7):
            raise ValueError("client state: expected 7 fields")
        gh, gb, epoch, vals, status, latest, reason = v
        if status not in (ACTIVE, FROZEN):
            raise ValueError(f"client state: unknown status {status!r}")
        return cls(
            genesis_hash=gh,
            genesis_block_id=gb,
            epoch=epoch,
            validators=validators_from_value(vals),
            status=status,
            latest_height=latest,
            frozen_reason=reason,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayRule:
    """Rule 2."""

    dest_chain_id: str
    scenarios: tuple[str, ...] = ()

    def encode(self) -> bytes:
        return encode([self.dest_chain_id, list(self.scenarios)])

    @classmethod
    def decode(cls, data: bytes) -> RelayRule:
        v = decode(data)
        if not (isinstance(v, list) and len(v) == 2 and isinstance(v[1], list)):
            raise ValueError("relay rule: expected [dest_chain_id, scenarios]")
        return cls(dest_chain_id=v[0], scenarios=tuple(v[1]))

    def selects(self, scenario: str) -> bool:
        return not self.scenarios or scenario in self.scenarios

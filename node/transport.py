"""The transport port: how a node reaches its peers, given to NodeService's constructor.

Rules this module keeps:
1. Every method is called on the event loop thread only (the consensus driver hands its sends to
   the loop, node/driver.py rule 3); an implementation never blocks and never raises for a peer
   that is gone (a message to a disconnected peer is dropped: consensus retransmits, gossip
   re-offers).
2. `has_peers` is fixed for the node's life: whether this node is one of several (a lone
   validator is the whole chain and never waits to hear from anyone, node/service.py `status`).
3. `on_epoch(config)` is called once per epoch switch, after the epoch-ending block committed
   (issue 12, E9): the transport admits exactly `config`'s validators and observers from then on.
"""

from __future__ import annotations

from typing import Protocol

from gmchain.consensus.messages import ConsensusMessage
from gmchain.ledger.epoch import EpochConfig
from gmchain.ledger.types import NodeId

__all__ = ["NoPeers", "Transport"]


class Transport(Protocol):
    """What the node asks of its network (node/network.py `PeerTransport` is the real one)."""

    @property
    def has_peers(self) -> bool:
        """Rule 2: whether this node runs with peers at all."""
        ...

    def send(self, to: NodeId, msg: ConsensusMessage) -> None:
        """One consensus message to one peer."""
        ...

    def broadcast(self, msg: ConsensusMessage) -> None:
        """One consensus message to every connected peer."""
        ...

    def gossip(self, raw: bytes) -> None:
        """A raw transaction admitted here, to be offered to the peers (batched)."""
        ...

    def peer_count(self) -> int:
        """Peers connected now."""
        ...

    def connected_peers(self) -> list[NodeId]:
        """The node ids of the peers connected now (for the quorum metrics)."""
        ...

    def on_epoch(self, config: EpochConfig) -> None:
        """Rule 3: the node runs epoch `config.epoch` now."""
        ...


class NoPeers:
    """The transport of a lone node (a one-validator chain): nobody to talk to."""

    @property
    def has_peers(self) -> bool:
        return False

    def send(self, to: NodeId, msg: ConsensusMessage) -> None:
        pass

    def broadcast(self, msg: ConsensusMessage) -> None:
        pass

    def gossip(self, raw: bytes) -> None:
        pass

    def peer_count(self) -> int:
        return 0

    def connected_peers(self) -> list[NodeId]:
        return []

    def on_epoch(self, config: EpochConfig) -> None:
        pass

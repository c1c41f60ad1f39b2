"""Which nodes this node's P2P layer admits, epoch by epoch, and where it dials them (issue 12,
E9; docs/p2p.md "Admission by epoch").

Rules this module keeps:
1. The admitted set is exactly the current epoch's validators and observers
   (`EpochConfig.admitted_keys()`): at start, the configuration of the latest epoch in the
   committed state (the governance contract's `ep` record, EPOCHS.md E2; epoch 0 from the
   genesis document when the state holds none), then each epoch's configuration as the node
   switches to it (`on_epoch`, called after the epoch-ending block commits; a configuration of
   an epoch not later than the current one changes nothing). Our own key need not be in it: a
   node waiting to be voted in, or one that was removed, still dials the admitted nodes (they
   refuse it until an epoch admits it, and count every refusal).
2. The address book is the config's `[[peers]]` (any key: an entry for a key not admitted yet
   waits for the epoch that admits it, then it is dialed). At each epoch switch the book is read
   again through `reload_peers` (the node's config file), so an operator adds a joining site's
   address before the committee votes and no restart is needed. A file that no longer loads
   keeps the book the node has (logged).
3. The transport is given the set and the book together (`P2PNetwork.set_admitted`), which
   disconnects the nodes no longer admitted and refuses them from then on (p2p/network.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import Protocol

from gmchain.contracts.governance import GOV_NAMESPACE, epoch_config, latest_epoch
from gmchain.crypto_sm import PublicKey
from gmchain.ledger.epoch import EpochConfig
from gmchain.ledger.types import Genesis
from gmchain.node.config import PeerConfig
from gmchain.p2p import PeerInfo

__all__ = ["PeerAdmission", "StateSource", "compute_address_book", "read_current_epoch"]

log = logging.getLogger("gmchain.network")


class StateSource(Protocol):
    """What `read_current_epoch` reads: the committed state (ledger.store.Store has it)."""

    def get_state(self, namespace: str, key: bytes) -> bytes | None: ...

    def iter_state(self, namespace: str, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]: ...


class _AdmissionTarget(Protocol):
    """The transport side (p2p.P2PNetwork)."""

    def set_admitted(self, keys: frozenset[bytes], peers: Sequence[PeerInfo]) -> None: ...


class _GovernanceState:
    """The governance contract's namespace of the committed state, as a StateReader."""

    def __init__(self, state: StateSource) -> None:
        self._state = state

    def get(self, key: bytes) -> bytes | None:
        return self._state.get_state(GOV_NAMESPACE, key)

    def scan(self, prefix: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        return list(islice(self._state.iter_state(GOV_NAMESPACE, prefix), limit))


def read_current_epoch(state: StateSource, genesis: Genesis) -> EpochConfig:
    """Rule 1 at start: the latest epoch's configuration in the committed state (the governance
    contract's readers). Blocks after an epoch-ending block are dropped at its commit (E4), so
    the committed state's latest epoch is the epoch the node runs in."""
    reader = _GovernanceState(state)
    latest = latest_epoch(reader)
    config = epoch_config(reader, latest)
    if config is None and latest == 0:  # a store from before governance: genesis's epoch 0
        return EpochConfig.from_genesis(genesis)
    if config is None or config.epoch != latest:
        raise ValueError(f"governance state: no configuration of its latest epoch {latest}")
    return config


def compute_address_book(peers: Sequence[PeerConfig]) -> list[PeerInfo]:
    """Rule 2: every configured peer with its address, admitted or not."""
    return [
        PeerInfo.from_pubkey(PublicKey.from_bytes(bytes.fromhex(p.pubkey)), p.host, p.port, p.name)
        for p in peers
    ]


class PeerAdmission:
    """The admitted node keys and the address book of one node, and the transport they apply to.

    Methods run on the event loop thread (the driver hands `on_epoch` over to it)."""

    def __init__(
        self,
        *,
        config: EpochConfig,
        peers: Sequence[PeerConfig],
        reload_peers: Callable[[], Sequence[PeerConfig]] | None = None,
        own_key: bytes = b"",
    ) -> None:
        self._own_key = own_key  # this node's key: a switch that admits or drops it is logged
        self._config = config  # the epoch whose nodes are admitted (or were, before set_admitted)
        self._keys: frozenset[bytes] = config.admitted_keys()
        self._book: list[PeerInfo] = compute_address_book(peers)
        self._reload = reload_peers
        self._net: _AdmissionTarget | None = None  # bound when the transport exists
        for p in self._book:
            if p.pubkey.to_bytes() not in self._keys:
                log.info(
                    "peer %s (%s:%d) is not admitted in epoch %d: it is dialed once an epoch "
                    "admits it",
                    p.node_id.hex()[:12],
                    p.host,
                    p.port,
                    config.epoch,
                )

    @property
    def config(self) -> EpochConfig:
        """The configuration of the epoch the node runs in."""
        return self._config

    @property
    def epoch(self) -> int:
        return self._config.epoch

    @property
    def keys(self) -> frozenset[bytes]:
        """The node keys admitted now."""
        return self._keys

    @property
    def address_book(self) -> list[PeerInfo]:
        return list(self._book)

    def bind(self, net: _AdmissionTarget) -> None:
        """From now on every change goes to `net`; it is given the current state at once."""
        self._net = net
        net.set_admitted(self._keys, self._book)

    def set_admitted(
        self, keys: frozenset[bytes], peers: Sequence[PeerConfig] | None = None
    ) -> None:
        """Admit exactly `keys` (and take `peers` as the address book when given)."""
        if peers is not None:
            self._book = compute_address_book(peers)
        self._keys = frozenset(keys)
        if self._net is not None:
            self._net.set_admitted(self._keys, self._book)

    def on_epoch(self, config: EpochConfig) -> bool:
        """Rule 1: admit `config`'s nodes if it is a later epoch than ours; whether it acted."""
        if config.epoch <= self._config.epoch:
            return False
        peers = None
        if self._reload is not None:
            try:
                peers = self._reload()
                compute_address_book(peers)  # (every entry must make a PeerInfo)
            except Exception as exc:  # rule 2: a broken file keeps the book we have
                log.warning("peers not reloaded at epoch %d: %s", config.epoch, exc)
                peers = None
        removed = self._keys - config.admitted_keys()
        added = config.admitted_keys() - self._keys
        self._config = config
        self.set_admitted(config.admitted_keys(), peers)
        log.info(
            "epoch %d: %d nodes admitted (%d added, %d removed)",
            config.epoch,
            len(self._keys),
            len(added),
            len(removed),
        )
        if self._own_key in removed:
            log.warning(
                "epoch %d no longer admits this node: its peers refuse it from their switch on; "
                "it keeps answering RPC from its store",
                config.epoch,
            )
        elif self._own_key in added:
            log.info(
                "epoch %d admits this node: its peers accept it from their switch on", config.epoch
            )
        return True

"""Admission by epoch (issue 12, E9): real P2PNetwork instances on 127.0.0.1, real handshakes.

A node not admitted is refused in the handshake and counted; `set_admitted` admitting it lets
it connect; dropping it again disconnects it at once, and each of its reconnects is refused and
counted as "not_admitted". The node layer's PeerAdmission (node/peeradmission.py) applies an
epoch's configuration to a real network and ignores stale epochs. Waits are bounded polls.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.epoch import EpochConfig
from gmchain.ledger.genesis import GenesisValidator
from gmchain.ledger.types import Genesis
from gmchain.node.config import PeerConfig
from gmchain.node.network import P2PCollector
from gmchain.node.peeradmission import PeerAdmission, read_current_epoch
from gmchain.p2p.config import P2PConfig, PeerInfo
from gmchain.p2p.network import P2PNetwork

CHAIN = "gmchain-test"
GENESIS_HASH = bytes(range(32))
WAIT_S = 15.0


async def _wait_until(pred: Callable[[], bool], timeout: float = WAIT_S) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


def _ordered_keys(n: int) -> list[PrivateKey]:
    """n keys ascending by node id (the smaller id dials)."""
    return sorted((PrivateKey.generate() for _ in range(n)), key=lambda k: k.public_key.address)


def _net(
    key: PrivateKey,
    peers: list[PeerInfo],
    admitted: frozenset[bytes],
    inbox: list[bytes] | None = None,
) -> P2PNetwork:
    def on_message(node_id: bytes, payload: bytes) -> None:
        if inbox is not None:
            inbox.append(payload)

    return P2PNetwork(
        chain_id=CHAIN,
        genesis_hash=GENESIS_HASH,
        key=key,
        peers=peers,
        admitted=admitted,
        config=P2PConfig.minimal(),
        on_message=on_message,
        rng=random.Random(1),
    )


def _key(k: PrivateKey) -> bytes:
    return k.public_key.to_bytes()


def _metrics(net: P2PNetwork) -> str:
    registry = CollectorRegistry()
    registry.register(P2PCollector(net))
    return generate_latest(registry).decode()


async def test_refused_until_admitted_then_disconnected_and_refused_again() -> None:
    joiner_key, node_key = _ordered_keys(2)  # the joiner has the smaller id: it dials
    node = _net(node_key, [], frozenset({_key(node_key)}))
    inbox: list[bytes] = []
    await node.start()
    joiner = _net(
        joiner_key,
        [PeerInfo.from_pubkey(node_key.public_key, "127.0.0.1", node.listen_port)],
        frozenset({_key(node_key)}),
        inbox,
    )
    await joiner.start()
    try:
        # 1. Not admitted: refused in the handshake, counted, never connected.
        await _wait_until(lambda: node.stats["rejects"].get("unknown_node", 0) >= 2)
        assert node.stats["handshake_refusals"].get("unknown_node", 0) >= 2
        assert node.connected_peers() == [] and joiner.connected_peers() == []
        # 2. An epoch admits it (no address needed: it dials): it connects and messages flow.
        node.set_admitted(frozenset({_key(node_key), _key(joiner_key)}), [])
        await _wait_until(lambda: node.connected_peers() == [joiner.node_id])
        assert node.send(joiner.node_id, b"welcome")
        await _wait_until(lambda: inbox == [b"welcome"])
        assert node.stats["admitted"] == 1
        # 3. A later epoch drops it: disconnected at once, then every reconnect refused.
        node.set_admitted(frozenset({_key(node_key)}), [])
        await _wait_until(lambda: node.connected_peers() == [])
        assert node.stats["disconnects"].get("not_admitted") == 1
        await _wait_until(lambda: node.stats["rejects"].get("not_admitted", 0) >= 3)
        assert node.stats["handshake_refusals"].get("not_admitted", 0) >= 3
        assert node.connected_peers() == []
        assert node.stats["admitted"] == 0
        text = _metrics(node)
        assert 'gmchain_p2p_rejects_total{reason="not_admitted"}' in text
        assert 'gmchain_p2p_disconnects_total{reason="not_admitted"} 1.0' in text
        assert "gmchain_p2p_admitted 0.0" in text
    finally:
        await joiner.stop()
        await node.stop()


async def test_an_address_waits_for_the_epoch_that_admits_its_key() -> None:
    node_key, joiner_key = _ordered_keys(2)  # now the admitted node has the smaller id: it dials
    joiner = _net(joiner_key, [], frozenset({_key(node_key)}))
    await joiner.start()
    book = [PeerInfo.from_pubkey(joiner_key.public_key, "127.0.0.1", joiner.listen_port)]
    node = _net(node_key, book, frozenset({_key(node_key)}))
    await node.start()
    try:
        await asyncio.sleep(0.5)  # reconnect_min_s is 0.05: a dial would have happened by now
        assert joiner.stats["handshakes_ok"] == 0 and joiner.stats["handshake_refusals"] == {}
        node.set_admitted(frozenset({_key(node_key), _key(joiner_key)}), book)
        await _wait_until(lambda: joiner.connected_peers() == [node.node_id])
        await _wait_until(lambda: node.connected_peers() == [joiner.node_id])
    finally:
        await node.stop()
        await joiner.stop()


def _genesis(keys: list[PrivateKey]) -> Genesis:
    return Genesis(
        chain_id=CHAIN,
        timestamp_ms=1,
        validators=tuple(
            GenesisValidator(pubkey=_key(k), power=1, org=f"org{i}") for i, k in enumerate(keys)
        ),
    )


def _config(epoch: int, validators: list[PrivateKey], observers: list[PrivateKey]) -> EpochConfig:
    return EpochConfig(
        epoch=epoch,
        validators=tuple(
            sorted(
                (GenesisValidator(pubkey=_key(k), power=1, org="org0") for k in validators),
                key=lambda v: v.node_id,
            )
        ),
        observers=tuple(sorted(_key(k) for k in observers)),
    )


def _peer(k: PrivateKey, port: int) -> PeerConfig:
    return PeerConfig(pubkey=_key(k).hex(), host="127.0.0.1", port=port, name=f"p{port}")


async def test_peer_admission_applies_later_epochs_only_and_reloads_the_book() -> None:
    me, v1, v2, newcomer = (PrivateKey.generate() for _ in range(4))
    genesis = _genesis([me, v1, v2])
    books = [[_peer(v1, 1001), _peer(v2, 1002)]]
    admission = PeerAdmission(
        config=EpochConfig.from_genesis(genesis), peers=books[0], reload_peers=lambda: books[-1]
    )
    net = _net(me, [], frozenset())
    admission.bind(net)
    assert net.admitted_keys == {_key(me), _key(v1), _key(v2)}
    # Epoch 1 admits the newcomer as an observer; the operator added its address beforehand.
    books.append([*books[0], _peer(newcomer, 1003)])
    assert admission.on_epoch(_config(1, [me, v1, v2], [newcomer]))
    assert net.admitted_keys == {_key(me), _key(v1), _key(v2), _key(newcomer)}
    assert [p.port for p in admission.address_book] == [1001, 1002, 1003]
    assert net.stats["admitted"] == 3
    # A stale or repeated epoch changes nothing.
    assert not admission.on_epoch(_config(1, [me], []))
    assert not admission.on_epoch(EpochConfig.from_genesis(genesis))
    assert admission.epoch == 1 and len(net.admitted_keys) == 4
    # Epoch 2 removes v2; a peers file that no longer loads keeps the book the node has.
    books.append([PeerConfig(pubkey="zz", host="127.0.0.1", port=1, name="broken")])
    assert admission.on_epoch(_config(2, [me, v1], [newcomer]))
    assert net.admitted_keys == {_key(me), _key(v1), _key(newcomer)}
    assert [p.port for p in admission.address_book] == [1001, 1002, 1003]


def test_a_chain_without_epoch_records_runs_epoch_0_of_its_genesis(tmp_path: Path) -> None:
    from gmchain.ledger.store import Store

    keys = [PrivateKey.generate() for _ in range(3)]
    genesis = _genesis(keys)
    store = Store.open(tmp_path / "db", chain_id=CHAIN)
    try:
        assert read_current_epoch(store, genesis) == EpochConfig.from_genesis(genesis)
    finally:
        store.close()


def test_a_restart_admits_the_epoch_of_the_committed_state(tmp_path: Path) -> None:
    """Real governance transactions on a real chain and store: once the proposal admitting an
    observer has executed and committed, a node (re)starting on that store admits it."""
    from gmchain.contracts.governance import make_join_request, propose_args, vote_args
    from gmchain.node.config import NodeConfig
    from gmchain.node.network import make_network
    from tests.node_helpers import CHAIN_ID, ChainRig, fake_commit_proof, make_net, sign_tx

    net = make_net(1)  # one validator of org-a; its admin is net.accounts[0]
    rig = ChainRig(tmp_path / "db", net)
    try:
        assert read_current_epoch(rig.store, net.genesis) == EpochConfig.from_genesis(net.genesis)
        newcomer = PrivateKey.generate()
        pubkey, org, pop = make_join_request(CHAIN_ID, newcomer, "org-a")
        admin = net.accounts[0]
        args = propose_args("admit_observer", [pubkey, org, pop], 15)
        rig.build_and_commit(
            sign_tx(admin, expiry=10, contract="governance", method="propose", args=args)
        )
        if read_current_epoch(rig.store, net.genesis).epoch == 0:  # (not decided by proposing)
            vote = sign_tx(
                admin, expiry=10, contract="governance", method="vote", args=vote_args(1, True)
            )
            rig.admit(vote)
            ending = rig.build()  # ends epoch 0; committed through its (empty) child (E4)
            child = rig.build(parent=ending.header)
            rig.chain.commit([ending], fake_commit_proof(child))
        epoch = read_current_epoch(rig.store, net.genesis)
        assert epoch.epoch == 1 and epoch.observers == (pubkey,)
        cfg = NodeConfig(data_dir=str(tmp_path / "db"), genesis_file="-", key_file="-")
        bridge = make_network(cfg, net.genesis, net.node_key, epoch=epoch)
        assert bridge.admission is not None
        assert bridge.admission.keys == {net.node_key.public_key.to_bytes(), pubkey}
    finally:
        rig.close()


def test_the_bridge_switches_admission_and_equivocation_keys_at_an_epoch() -> None:
    from gmchain.ledger.types import NodeId
    from gmchain.node.config import NodeConfig
    from gmchain.node.network import make_network

    me, v1, joiner = (PrivateKey.generate() for _ in range(3))
    genesis = _genesis([me, v1])
    cfg = NodeConfig(data_dir="-", genesis_file="-", key_file="-", peers=(_peer(joiner, 1003),))
    bridge = make_network(cfg, genesis, me)
    assert bridge.admission is not None and bridge.admission.keys == {_key(me), _key(v1)}
    root, sig = b"\x01" * 32, joiner.sign(b"\x01" * 32)
    joiner_id = NodeId(joiner.public_key.address)
    assert not bridge.detector.verifier.verify(joiner_id, root, sig)  # not a validator yet
    bridge.on_epoch(_config(1, [me, v1, joiner], []))
    assert bridge.admission.keys == {_key(me), _key(v1), _key(joiner)}
    assert bridge.detector.verifier.verify(joiner_id, root, sig)
    bridge.on_epoch(_config(1, [me], []))  # the same epoch again: nothing changes
    assert bridge.detector.verifier.verify(joiner_id, root, sig)
    assert [p.port for p in bridge.admission.address_book] == [1003]

"""node/network.py re-gossip: a transaction still pending after the re-gossip period is offered to
the peers again (gossip sent once can be lost — a partition, a peer restarting — and a tx held by
one non-leader alone would never commit while the others sit idle). In-process: a real NodeService
that cannot commit alone (a second validator never answers) and a recording stand-in for P2P."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.store import Store
from gmchain.ledger.types import Genesis, GenesisValidator
from gmchain.node.config import NodeConfig
from gmchain.node.network import NetworkBridge, TxBatch, decode_wire
from gmchain.node.service import NodeService
from tests.node_helpers import T0, evidence_args, make_net, sign_tx


class RecordingNet:
    def __init__(self, on_message: Any) -> None:
        self.on_message = on_message
        self.broadcasts: list[bytes] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def broadcast(self, payload: bytes) -> int:
        self.broadcasts.append(payload)
        return 1

    def send(self, node_id: bytes, payload: bytes) -> bool:
        return True

    def connected_peers(self) -> list[bytes]:
        return [b"\x01" * 20]

    def report_misbehaviour(self, node_id: bytes, reason: str) -> None:
        pass

    def gossiped(self) -> list[bytes]:
        out: list[bytes] = []
        for p in self.broadcasts:
            msg = decode_wire(p)
            if isinstance(msg, TxBatch):
                out.extend(msg.txs)
        return out


async def test_a_long_pending_tx_is_gossiped_again(tmp_path: Path) -> None:
    net = make_net(1)
    other = PrivateKey.generate()  # a second validator that never answers: nothing commits
    genesis = Genesis(
        chain_id=net.genesis.chain_id,
        timestamp_ms=T0,
        validators=(
            GenesisValidator(pubkey=net.node_key.public_key.to_bytes(), power=1, org="org-a"),
            GenesisValidator(pubkey=other.public_key.to_bytes(), power=1, org="org-b"),
        ),
        replay_window=50,
        accounts=net.genesis.accounts,
    )
    store = Store.open(tmp_path / "db", chain_id=genesis.chain_id)
    cfg = NodeConfig(data_dir=str(tmp_path / "db"), genesis_file="-", key_file="-")
    holder: list[RecordingNet] = []

    def factory(on_message: Any) -> RecordingNet:
        holder.append(RecordingNet(on_message))
        return holder[0]

    bridge = NetworkBridge(
        factory, genesis=genesis, sync_status_interval_ms=1000, regossip_after_s=0.2
    )
    service = NodeService(
        config=cfg, genesis=genesis, key=net.node_key, store=store, transport=bridge
    )
    await bridge.start(service)
    await service.start()
    try:
        tx = sign_tx(net.accounts[0], expiry=50, args=evidence_args("regossip-1"))
        raw = tx.encode()
        await service.submit_raw_tx(raw)
        rec = holder[0]
        for _ in range(100):  # up to 2 s: first gossip, then at least two re-offers
            await asyncio.sleep(0.02)
            if rec.gossiped().count(raw) >= 3:
                break
        assert rec.gossiped().count(raw) >= 3, rec.gossiped().count(raw)
        assert service.is_pending(tx.tx_id) and bridge.stats["regossip"] >= 2
    finally:
        await bridge.stop()
        await service.stop()
        store.close()

"""A real node across an epoch change (node/driver.py rule 6; docs/consensus.md "Epochs").

One validator, real store, real SM2 signatures, real governance transactions: a decided
`set_param` ends epoch 0; the driver then runs epoch 1's replica (its round timeout is the epoch's
parameter, E11), the node keeps committing blocks of epoch 1, and after a restart it starts in
epoch 1 (the switch the chain stored), also after `gmchain db safety-reset` (which writes the
store's epoch).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gmchain.ledger.store import Store
from gmchain.ledger.types import SignedTx
from gmchain.node.safetystore import load_safety, reset_safety
from gmchain.node.service import NodeService
from tests.node_helpers import TestNet, evidence_args, make_net, running_service, sign_tx

gov = pytest.importorskip("gmchain.contracts.governance", reason="governance lands with gov")


async def _commit(service: NodeService, tx: SignedTx) -> tuple[object, int]:
    tx_id = await service.submit_raw_tx(tx.encode())
    got = await service.wait_tx(tx_id, 30)
    assert got is not None, "no receipt within 30 s"
    receipt, height, _ = got
    assert not receipt.error, receipt.error
    return receipt.result, height


async def _end_epoch_zero(service: NodeService, net: TestNet) -> int:
    """Propose and decide round_timeout_ms = 400; return the height of the deciding block."""
    admin = net.accounts[0]
    h = service.height()
    propose = sign_tx(
        admin,
        expiry=h + 40,
        contract="governance",
        method="propose",
        args=gov.propose_args("set_param", ["round_timeout_ms", 400], h + 1000),
    )
    pid, _ = await _commit(service, propose)
    vote = sign_tx(
        admin,
        expiry=h + 40,
        contract="governance",
        method="vote",
        args=gov.vote_args(pid, True),
    )
    status, height = await _commit(service, vote)
    assert status == "executed"
    return height


async def _wait_epoch(service: NodeService, epoch: int) -> None:
    for _ in range(300):
        if service.driver.view.epoch == epoch:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the driver never reached epoch {epoch}: {service.driver.view}")


async def test_a_node_switches_epoch_keeps_committing_and_restarts_in_it(tmp_path: Path) -> None:
    net = make_net(2, replay_window=200)
    if not hasattr(NodeService, "_replica_for_epoch"):
        pytest.fail("the driver's epoch switch is missing")
    async with running_service(tmp_path, net) as service:
        if not hasattr(service.chain, "take_epoch_switch"):
            pytest.skip("chain/epochs.py (issue 12, chainep) not merged yet")
        assert service.driver.view.epoch == 0
        ending = await _end_epoch_zero(service, net)
        await _wait_epoch(service, 1)
        replica = service.driver.replica
        assert replica.epoch == 1 and replica.cfg.round_timeout_ms == 400  # E11
        assert replica.committed_header.height >= ending
        h = service.height()
        _, at = await _commit(
            service, sign_tx(net.accounts[1], expiry=h + 40, args=evidence_args("after"))
        )
        block = service.get_block(at)
        assert block is not None and block.header.epoch == 1 and at > ending
    async with running_service(tmp_path, net) as service:  # the same store, reopened
        assert service.driver.replica.epoch == 1
        h = service.height()
        _, at = await _commit(
            service, sign_tx(net.accounts[1], expiry=h + 40, args=evidence_args("restarted"))
        )
        block = service.get_block(at)
        assert block is not None and block.header.epoch == 1
    # The operator's recovery writes the store's epoch, so epoch 1's replica keeps its rounds
    # (checked last: a lone validator reset to its own highest round cannot move on alone).
    store = Store.open(tmp_path / "db", chain_id=net.genesis.chain_id)
    try:
        stored = load_safety(store)
        assert stored is not None and stored.epoch == 1
        floor = max(stored.last_voted_round, stored.highest_timeout_round)
        floor = max(floor, stored.last_proposed_round, stored.preferred_round)
        assert reset_safety(store, floor).epoch == 1
    finally:
        store.close()

"""Issue 10, fault 9: a revoked sender's pending transactions must not block anyone.

Before the fix the pool dropped only EXPIRED/DUPLICATE/WRONG_CHAIN rejections, and `take` read
in arrival order: transactions of a sender revoked after admission stayed at the head of the pool
and filled every block build with rejections, so an unrelated transaction waited until they all
expired (17.6 s and 942 empty blocks in the report), and their submitters' `gm_waitForReceipt`
never heard why.

Now (chain/core.py, node/mempool.py):
- a transaction that fails the block rules against *committed* state (its sender's account was
  removed, or it expired) leaves the pool at once with a recorded reason, and every transaction of
  a revoked sender leaves when the revocation commits;
- `wait_tx`, and so gm_waitForReceipt and gm_getTransactionReceipt, of such a transaction fail
  with that reason (-31010 for a revoked sender);
- a block build examines at most `pack_scan_max_txs` pool transactions and skips the ones that
  cannot be included, so one sender's invalid transactions cannot fill a block build;
- packing is round-robin over senders (arrival order within one sender): one sender's backlog
  cannot hold back another sender's transaction.

Real components: NodeService with its consensus loop over a real LevelDB store and its JSON-RPC
server on a real socket; ChainRig (the real Chain over a real Store) for the packing-order rule.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gmchain.chain.txrules import Rejection
from gmchain.contracts.keys import address_of
from gmchain.ledger.jsonfmt import hex0x
from gmchain.ledger.types import ReceiptStatus
from gmchain.node.api import ApiError, ErrorCode
from gmchain.node.mempool import MempoolConfig
from gmchain.node.rpc import RpcServer
from gmchain.node.service import NodeService
from tests.node_helpers import (
    ChainRig,
    TestNet,
    evidence_args,
    make_net,
    running_service,
    sign_tx,
)

VICTIM_TXS = 300


@pytest.fixture
async def one_per_block(tmp_path: Path) -> AsyncIterator[tuple[NodeService, TestNet]]:
    """A single validator that packs one transaction per block (so the order is observable)."""
    net = make_net(3, replay_window=1000)
    async with running_service(tmp_path, net, min_block_txs=1, max_block_txs=1) as service:
        yield service, net


async def test_revoked_senders_txs_leave_the_pool_and_do_not_block_others(
    one_per_block: tuple[NodeService, TestNet],
) -> None:
    service, net = one_per_block
    admin, victim, bystander = net.accounts
    h = service.height()
    revoke = sign_tx(
        admin,
        expiry=h + 900,
        contract="membership",
        method="revoke",
        args=[address_of(victim.public_key.to_bytes())],
    )
    victims = [
        sign_tx(victim, expiry=h + 900, args=evidence_args(f"v{i}")) for i in range(VICTIM_TXS)
    ]
    # One batch: admitted together, the revocation first, so every victim tx is in the pool
    # (admitted while its sender was still an account) before the revocation can commit.
    results = await asyncio.gather(*(service.submit_raw_tx(t.encode()) for t in [revoke, *victims]))
    assert len(results) == VICTIM_TXS + 1
    waiters = [asyncio.ensure_future(service.wait_tx(t.tx_id, 60)) for t in victims[-3:]]
    got = await service.wait_tx(revoke.tx_id, 60)
    assert got is not None and got[0].status is ReceiptStatus.OK, got
    revoked_at = got[1]

    # The submitters of the victim's txs hear why, promptly, from the recorded reason.
    for w in waiters:
        with pytest.raises(ApiError) as info:
            await asyncio.wait_for(w, 60)
        assert info.value.code is ErrorCode.UNKNOWN_SENDER
        assert "revoked" in info.value.message or "not an admitted" in info.value.message
    assert not any(service.is_pending(t.tx_id) for t in victims)
    assert service.status().pending_txs == 0
    with pytest.raises(ApiError) as info:  # asking again later gives the same reason at once
        await service.wait_tx(victims[0].tx_id, 0.01)
    assert info.value.code is ErrorCode.UNKNOWN_SENDER
    reason = service.dropped_reason(victims[0].tx_id)
    assert reason is not None and reason.code is ErrorCode.UNKNOWN_SENDER
    # ... and so do the JSON-RPC receipt methods
    server = RpcServer(service, host="127.0.0.1", port=0)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            for method, params in (
                ("gm_waitForReceipt", [hex0x(victims[1].tx_id), 1000]),
                ("gm_getTransactionReceipt", [hex0x(victims[1].tx_id)]),
                ("gm_getTransactionByHash", [hex0x(victims[1].tx_id)]),
            ):
                body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
                async with session.post(f"http://127.0.0.1:{server.port}/", json=body) as r:
                    reply = await r.json()
                assert reply["error"]["code"] == ErrorCode.UNKNOWN_SENDER, (method, reply)
                assert "revoked" in reply["error"]["message"], (method, reply)
            # a txCommit subscription gets one notification saying why (the SDK's wait path)
            async with session.ws_connect(f"http://127.0.0.1:{server.port}/ws") as ws:
                sub = {
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "gm_subscribe",
                    "params": ["txCommit", hex0x(victims[2].tx_id)],
                }
                await ws.send_json(sub)
                ack = await asyncio.wait_for(ws.receive_json(), 60)
                note = await asyncio.wait_for(ws.receive_json(), 60)
                assert note["params"]["subscription"] == ack["result"]
                result = note["params"]["result"]
                assert result["dropped"] is True and result["code"] == ErrorCode.UNKNOWN_SENDER
                assert "revoked" in result["message"]
    finally:
        await server.stop()

    # An unrelated sender's tx commits within a few blocks, not after hundreds of empty ones.
    submitted_at = service.height()
    other = sign_tx(bystander, expiry=submitted_at + 900, args=evidence_args("bystander"))
    await service.submit_raw_tx(other.encode())
    got = await service.wait_tx(other.tx_id, 60)
    assert got is not None, "the unrelated tx did not commit within 60 s"
    assert got[1] <= submitted_at + 5, (
        f"unrelated tx committed at {got[1]}, {got[1] - submitted_at} blocks after submission "
        f"(revoked at {revoked_at})"
    )
    # none of the victim's txs was committed (the revocation had the first block to itself)
    assert all(service.get_receipt(t.tx_id) is None for t in victims)


def test_one_senders_backlog_does_not_hold_back_another(tmp_path: Path) -> None:
    net = make_net(2, replay_window=100)
    rig = ChainRig(tmp_path / "db", net, mempool=MempoolConfig())
    try:
        busy, other = net.accounts
        backlog = [
            sign_tx(busy, expiry=50, args=evidence_args(f"b{i}"), nonce=i) for i in range(40)
        ]
        rig.admit(*backlog)
        late = sign_tx(other, expiry=50, args=evidence_args("late"))
        rig.admit(late)
        rig.chain.packing.target_size = 5
        block = rig.build()
        ids = [t.tx_id for t in block.txs]
        assert late.tx_id in ids, "a later sender waited behind another sender's whole backlog"
        # within one sender, arrival order is kept
        own = [t.tx_id for t in block.txs if t.body.sender == busy.public_key.to_bytes()]
        assert own == [t.tx_id for t in backlog[: len(own)]]
    finally:
        rig.close()


def test_a_build_skips_unincludable_txs_and_evicts_the_dead_ones(tmp_path: Path) -> None:
    net = make_net(3, replay_window=100)
    rig = ChainRig(tmp_path / "db", net, mempool=MempoolConfig())
    try:
        admin, victim, other = net.accounts
        revoke = sign_tx(
            admin,
            expiry=50,
            contract="membership",
            method="revoke",
            args=[address_of(victim.public_key.to_bytes())],
        )
        rig.build_and_commit(revoke)  # committed: the victim is no longer an account
        stale = [sign_tx(victim, expiry=50, args=evidence_args(f"s{i}")) for i in range(30)]
        rig.admit(*stale)  # (as if admitted just before the revocation committed)
        good = sign_tx(other, expiry=50, args=evidence_args("good"))
        rig.admit(good)
        rig.chain.packing.target_size = 1
        block = rig.build()
        assert [t.tx_id for t in block.txs] == [good.tx_id]
        assert not any(t.tx_id in rig.mempool for t in stale)
        why = rig.mempool.dropped_reason(stale[-1].tx_id)
        assert why is not None and why.rejection is Rejection.UNKNOWN_SENDER
    finally:
        rig.close()


def test_a_build_skips_at_most_pack_scan_max_txs(tmp_path: Path) -> None:
    net = make_net(7, replay_window=100)
    rig = ChainRig(tmp_path / "db", net, mempool=MempoolConfig())
    try:
        admin, *revoked, other = net.accounts
        rig.build_and_commit(
            *(
                sign_tx(
                    admin,
                    expiry=50,
                    contract="membership",
                    method="revoke",
                    args=[address_of(k.public_key.to_bytes())],
                )
                for k in revoked
            )
        )
        stale = [sign_tx(k, expiry=50, args=evidence_args(f"x{i}")) for i, k in enumerate(revoked)]
        rig.admit(*stale)
        good = sign_tx(other, expiry=50, args=evidence_args("behind"))
        rig.admit(good)  # its sender comes last in the round
        rig.chain.packer.pack_scan_max = 3
        first = rig.build()
        assert first.txs == ()  # gave up after skipping 3 ...
        assert sum(t.tx_id in rig.mempool for t in stale) == len(stale) - 3  # ... and evicted them
        second = rig.build()
        assert [t.tx_id for t in second.txs] == [good.tx_id]
        assert not any(t.tx_id in rig.mempool for t in stale)
    finally:
        rig.close()

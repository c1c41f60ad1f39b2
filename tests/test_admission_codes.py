"""Every transaction error code of docs/rpc.md is reachable through the real RPC of a real node.

A real NodeService (real LevelDB, real SM2) behind the real RpcServer, over HTTP. Each submission
is built to break exactly one rule of chain/txrules.py and must get that rule's code (node/api.py
REJECTION_CODES), change nothing, and leave the node answering. Regressions (they failed before
the rules were written once, issue 11 item 5):
- -31004 for a sender that is not a valid public key was unreachable: admission looked the
  sender up first and answered -31010;
- a call whose arguments do not fit the method's schema was admitted and committed as a
  BAD_ARGUMENTS receipt; it is refused with -31012.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gmchain.chain.txrules import Rejection
from gmchain.ledger.jsonfmt import hex0x
from gmchain.ledger.types import MAX_TX_BYTES, SignedTx, TxBody
from gmchain.node.api import REJECTION_CODES, ErrorCode
from gmchain.node.rpc import RpcConfig, RpcServer
from gmchain.node.service import NodeService
from tests.node_helpers import TestNet, make_net, running_service, sign_tx

E = ErrorCode
W = 30


class _Rpc:
    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self.session = session
        self.url = f"http://127.0.0.1:{port}/"

    async def post(self, body: Any) -> Any:
        headers = {"Content-Type": "application/json"}
        async with self.session.post(self.url, data=json.dumps(body), headers=headers) as r:
            return await r.json()

    async def send_all(self, *raws: bytes) -> list[Any]:
        """One JSON-RPC batch of gm_sendRawTransaction: admitted by one admit_many call."""
        batch = [
            {"jsonrpc": "2.0", "id": i, "method": "gm_sendRawTransaction", "params": [hex0x(r)]}
            for i, r in enumerate(raws)
        ]
        replies = sorted(await self.post(batch), key=lambda r: r["id"])
        return [r["error"]["code"] if "error" in r else r["result"] for r in replies]

    async def send(self, raw: bytes) -> Any:
        (got,) = await self.send_all(raw)
        return got

    async def receipt(self, tx: SignedTx) -> Any:
        """The tx's receipt, waiting up to 20 s (the server caps one wait at 2 s)."""
        for _ in range(10):
            got = await self.call("gm_waitForReceipt", hex0x(tx.tx_id), 2000)
            if got is not None:
                return got
        raise AssertionError(f"{tx.tx_id.hex()} did not commit in 20 s")

    async def call(self, method: str, *params: Any) -> Any:
        reply = await self.post({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        assert "error" not in reply, reply
        return reply["result"]


async def _serving(svc: NodeService) -> AsyncIterator[_Rpc]:
    server = RpcServer(svc, host="127.0.0.1", port=0, config=RpcConfig.minimal())
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield _Rpc(session, server.port)
    finally:
        await server.stop()


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[NodeService, TestNet, _Rpc]]:
    net = make_net(2, replay_window=W)
    # A pool of two and one slot per sender: a JSON-RPC batch reaches both limits at once.
    async with running_service(tmp_path, net, mempool_max_txs=2, mempool_per_sender=1) as svc:
        async for rpc in _serving(svc):
            yield svc, net, rpc


def _tx(net: TestNet, k: int = 0, *, head: int, **kw: Any) -> SignedTx:
    """A transaction of admitted account `k`, valid at `head` unless `kw` says otherwise."""
    kw.setdefault("expiry", head + 10)
    return sign_tx(net.accounts[k], **kw)


async def test_every_rule_has_its_code_through_the_real_rpc(
    node: tuple[NodeService, TestNet, _Rpc],
) -> None:
    svc, net, rpc = node
    first = _tx(net, 1, head=svc.height())  # commit a block: then an expiry <= head exists
    assert await rpc.send(first.encode()) == hex0x(first.tx_id)
    await rpc.receipt(first)
    h = int(await rpc.call("gm_blockNumber"))
    good = _tx(net, head=h)
    before = (len(svc.mempool), svc.height())

    assert await rpc.send(good.encode()[:-1]) == E.BAD_ENCODING  # R2
    assert await rpc.send(good.encode() + b"\x00") == E.BAD_ENCODING
    huge = b"\x00" * (MAX_TX_BYTES + 1)
    assert await rpc.send(huge) == E.TOO_LARGE  # R1
    assert await rpc.send(_tx(net, head=h, chain_id="other").encode()) == E.WRONG_CHAIN  # R3
    # R4 before R8: a sender that is not a curve point is no admitted account either, and
    # used to be answered -31010.
    body = good.body
    not_a_key = TxBody(**{**_fields(body), "sender": b"\x04" + b"\x01" * 64})
    forged_key = SignedTx(body=not_a_key, signature=net.accounts[0].sign(not_a_key.compute_id()))
    assert await rpc.send(forged_key.encode()) == E.BAD_SIGNATURE
    assert await rpc.send(_tx(net, head=h, expiry=h).encode()) == E.EXPIRED  # R5
    assert await rpc.send(_tx(net, head=h, expiry=h + W + 1).encode()) == E.EXPIRY_TOO_FAR
    unknown = _tx(net, head=h, contract="nope")
    assert await rpc.send(unknown.encode()) == E.UNKNOWN_CONTRACT  # R6
    assert await rpc.send(_tx(net, head=h, method="nope").encode()) == E.UNKNOWN_CONTRACT
    query = _tx(net, head=h, method="get", args=["rec"])
    assert await rpc.send(query.encode()) == E.UNKNOWN_CONTRACT
    bad_args = _tx(net, head=h, args=["only-one-arg"])
    assert await rpc.send(bad_args.encode()) == E.BAD_ARGUMENTS
    stranger = sign_tx(net.outsider, expiry=h + 10)
    assert await rpc.send(stranger.encode()) == E.UNKNOWN_SENDER  # R8
    forged = _tx(net, head=h, bad_signature=True)
    assert await rpc.send(forged.encode()) == E.BAD_SIGNATURE  # R9
    assert (len(svc.mempool), svc.height()) == before  # nothing changed

    # The pool's own checks, each reached by a JSON-RPC batch admitted in one step.
    a1, a2 = _tx(net, 0, head=h), _tx(net, 0, head=h)
    b1 = _tx(net, 1, head=h)
    same = await rpc.send_all(a1.encode(), a1.encode(), a2.encode(), b1.encode())
    assert same == [hex0x(a1.tx_id), E.DUPLICATE, E.SENDER_QUOTA, hex0x(b1.tx_id)]
    assert await rpc.send(a1.encode()) == E.DUPLICATE  # pending, or committed by now
    await rpc.receipt(a1)
    assert await rpc.send(a1.encode()) == E.DUPLICATE  # committed


async def test_a_full_pool_is_its_own_code(tmp_path: Path) -> None:
    net = make_net(3, replay_window=W)
    async with running_service(tmp_path, net, mempool_max_txs=2) as svc:
        async for rpc in _serving(svc):
            h = svc.height()
            txs = [_tx(net, k, head=h) for k in range(3)]
            got = await rpc.send_all(*(t.encode() for t in txs))
            assert got == [hex0x(txs[0].tx_id), hex0x(txs[1].tx_id), E.POOL_FULL]


async def test_storage_unavailable_is_reachable(tmp_path: Path) -> None:
    net = make_net(1, replay_window=W)
    # More free space than any test machine has: the guard refuses every submission.
    async with running_service(tmp_path, net, min_free_disk_mb=1_048_576) as svc:
        async for rpc in _serving(svc):
            tx = _tx(net, head=svc.height())
            assert await rpc.send(tx.encode()) == E.STORAGE_UNAVAILABLE
            assert len(svc.mempool) == 0


def test_every_transaction_code_of_the_docs_is_some_rejection() -> None:
    """docs/rpc.md's admission codes are exactly REJECTION_CODES' values plus the node's own
    conditions (storage, not ready); every Rejection has a code (node/api.py checks at import)."""
    admission = {c for c in ErrorCode if -31100 < c <= -31000}
    assert set(REJECTION_CODES.values()) | {E.STORAGE_UNAVAILABLE} == admission
    assert set(REJECTION_CODES) == set(Rejection)
    assert REJECTION_CODES[Rejection.INVALID_KEY] is E.BAD_SIGNATURE  # docs/rpc.md -31004


def _fields(body: TxBody) -> dict[str, Any]:
    return {
        "chain_id": body.chain_id,
        "sender": body.sender,
        "nonce": body.nonce,
        "expiry": body.expiry,
        "contract": body.contract,
        "method": body.method,
        "args": body.args,
    }

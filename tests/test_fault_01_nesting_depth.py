"""Issue 10, fault 1: one admitted transaction must never make a block that a peer cannot decode.

On 0921e03 a SignedTx nesting 15 levels (inside the codec's flat `max_depth` of 16) was admitted,
but the Block carrying it nests 17 and the Proposal 18: every peer refused the proposal
("nesting deeper than 16"), banned the leader, and the chain
stopped at that height for good; on a dev node the tx committed and its receipt could no longer
be served (-32603). The rule (docs/protocol.md, "Nesting depth"): a free-form value nests at most
`MAX_VALUE_DEPTH` levels, each struct's decoder allows exactly the depth its layout can reach with
such values, so every container that can carry a transaction (block, proposal, block response,
sync response, stored block, receipt) accepts every transaction admission accepts; and a leader
never proposes a block the wire cannot carry (size included).

The tests find "the deepest admissible transaction" by asking the real decoder (`decode_tx`), so
they state the rule itself rather than a number, and they ran on the base commit unchanged:
- the container round trip failed there at `Block.decode` ("nesting deeper than 16");
- the leader's block of maximum-size transactions was 6.0 MB, over the 4 MiB wire frame;
- the dev node answered the deepest admissible tx's receipt with -32603 (and a 900-deep `gm_call`
  argument with -32603 and a RecursionError traceback);
- the 4-validator cluster stopped at the deep tx's height (no later tx committed in 90 s).

Since issue 11 (chain/txrules.py R6) admission also checks a call's arguments against the method's
schema, which no free-form value of that depth fits: the deepest *decodable* transaction is now
refused at admission (-31012), so only a faulty leader can put one in a block. The containers
(a), the in-process chain (b) and the receipts keep carrying it; the real-process tests check
that admission refuses it and that the chain goes on.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from gmchain.chain.core import Chain
from gmchain.chain.txrules import TxRules
from gmchain.consensus.messages import BlockResponse, CommitProof, SyncResponse
from gmchain.consensus.packing import PackingConfig, PackingPolicy
from gmchain.contracts import default_registry
from gmchain.contracts.framework import Arg, Context, Contract, Registry, method
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.codec import DecodeError, Value
from gmchain.ledger.store import Store
from gmchain.ledger.types import (
    Block,
    BlockHeader,
    Digest,
    Event,
    Height,
    NodeId,
    Proposal,
    QuorumCert,
    Receipt,
    ReceiptStatus,
    Round,
    SignedTx,
    TimeoutCert,
    TxBody,
    compute_signing_root,
)
from gmchain.node.chainpool import MempoolPool
from gmchain.node.config import ConfigError, NodeConfig
from gmchain.node.network import NetworkBridge, decode_wire
from gmchain.node.service import NodeService
from tests.cluster_helpers import rpc_call, running_cluster, wait_until
from tests.node_helpers import (
    ChainRig,
    NodeProcess,
    RpcFailure,
    RpcSession,
    evidence_args,
    make_net,
    sign_tx,
)

WIRE_FRAME = 4 * 1024 * 1024  # p2p.P2PConfig.max_frame: the largest payload a peer accepts


def _nest(levels: int) -> Value:
    """A value that nests `levels` arrays: 0 -> "x", 1 -> ["x"], 2 -> [["x"]], ..."""
    v: Value = "x"
    for _ in range(levels):
        v = [v]
    return v


def _depth(encoded: bytes) -> int:
    """How deep the arrays of an encoding nest (a scalar 0, `[1]` 1, `[[1]]` 2)."""

    def walk(v: Any) -> int:
        return 1 + max((walk(x) for x in v), default=0) if isinstance(v, list) else 0

    return walk(msgpack.unpackb(encoded, raw=False))


def _deep_args(levels: int) -> list[Value]:
    """Arguments of `evidence.submit` whose metadata argument nests `levels` arrays."""
    args = evidence_args(f"deep-{secrets.token_hex(4)}")
    args[6] = _nest(levels)
    return args


def _signed(
    key: PrivateKey, args: list[Value], *, chain_id: str = "c", expiry: int = 10
) -> SignedTx:
    body = TxBody(
        chain_id=chain_id,
        sender=key.public_key.to_bytes(),
        nonce=secrets.randbits(63),
        expiry=Height(expiry),
        contract="evidence",
        method="submit",
        args=tuple(args),
    )
    return SignedTx(body=body, signature=key.sign(body.compute_id()))


def _admissible(tx: SignedTx) -> bool:
    try:
        SignedTx.decode_tx(tx.encode())
    except DecodeError:
        return False
    return True


def deepest_admissible_levels(key: PrivateKey) -> int:
    """The largest metadata nesting whose transaction the admission decoder accepts."""
    levels = 0
    while True:
        try:
            tx = _signed(key, _deep_args(levels + 1))
        except ValueError:  # the struct itself refuses it (the depth rule at construction)
            return levels
        if not _admissible(tx):
            return levels
        levels += 1
        assert levels < 64, "no depth limit on transactions at all"


def _qc(height: int, round_: int, n: int = 4) -> QuorumCert:
    sigs = tuple((NodeId(bytes([i + 1]) * 20), bytes([i]) * 64) for i in range(n))
    return QuorumCert(
        block_id=Digest(bytes([height]) * 32),
        round=Round(round_),
        height=Height(height),
        signatures=sigs,
    )


def _block(txs: tuple[SignedTx, ...], height: int = 5) -> Block:
    header = BlockHeader(
        chain_id="c",
        epoch=0,
        height=Height(height),
        round=Round(height + 2),
        parent_id=Digest(b"\x01" * 32),
        timestamp_ms=1_700_000_000_000,
        proposer=NodeId(b"\x02" * 20),
        tx_root=Digest(b"\x03" * 32),
        tx_count=len(txs),
        receipt_root=Digest(b"\x04" * 32),
        acc_root=Digest(b"\x05" * 32),
        acc_size=100,
        state_hash=Digest(b"\x06" * 32),
        next_validators_hash=Digest(bytes(32)),
        justify=_qc(height - 1, height + 1),
    )
    return Block(header=header, txs=txs)


# --- (a) units: every container carries whatever admission accepts --------------------------------


def test_admission_refuses_one_level_more_than_the_deepest_admissible_tx() -> None:
    key = PrivateKey.generate()
    levels = deepest_admissible_levels(key)
    assert levels >= 8  # evidence metadata is [[key, value], ...]: the rule must leave room
    # One level more is refused as a whole transaction, with an error naming the depth rule,
    # whether it is built locally (SDK) or arrives as bytes (RPC, gossip).
    with pytest.raises(ValueError, match="nest"):
        _signed(key, _deep_args(levels + 1))


def test_a_block_of_deepest_admissible_txs_round_trips_through_every_container() -> None:
    key = PrivateKey.generate()
    levels = deepest_admissible_levels(key)
    txs = tuple(_signed(key, _deep_args(levels)) for _ in range(3))
    for tx in txs:
        assert SignedTx.decode_tx(tx.encode()) == tx
    block = _block(txs)
    assert Block.decode(block.encode()) == block  # the stored block (gm_getBlock*, receipts)
    tc = TimeoutCert(
        round=Round(6),
        high_qc=_qc(4, 5),
        entries=tuple((NodeId(bytes([i + 1]) * 20), 5, bytes([i]) * 64) for i in range(4)),
    )
    proof = CommitProof(header=_block((), height=6).header, qc=_qc(6, 8))
    for msg in (
        Proposal(block=block, tc=None, signature=b"\x07" * 64),
        Proposal(block=block, tc=tc, signature=b"\x07" * 64),
        BlockResponse(block_id=block.block_id, blocks=(block, block)),
        SyncResponse(items=((block, proof), (block, proof))),
    ):
        assert decode_wire(msg.encode()) == msg, type(msg).__name__
        assert type(msg).decode(msg.encode()) == msg, type(msg).__name__
        # The declared depth is exact: the deepest instance reaches it, and no deeper.
        assert _depth(msg.encode()) == type(msg).NESTING, type(msg).__name__
    assert _depth(block.encode()) == Block.NESTING
    assert _depth(txs[0].encode()) == SignedTx.NESTING


def test_a_receipt_echoing_the_deepest_admissible_args_round_trips() -> None:
    """A contract may return or announce its arguments: a receipt must carry them."""
    key = PrivateKey.generate()
    args = list(_signed(key, _deep_args(deepest_admissible_levels(key))).body.args)
    event = Event(contract="evidence", name="Echo", fields=(("args", args),))
    receipt = Receipt(
        tx_id=Digest(b"\x09" * 32), status=ReceiptStatus.OK, result=args, events=(event,)
    )
    assert Receipt.decode(receipt.encode()) == receipt
    assert _depth(receipt.encode()) == Receipt.NESTING
    assert _depth(event.encode()) == Event.NESTING


def test_the_leaders_block_always_fits_the_wire(tmp_path: Path) -> None:
    """Validate on build: a pool of maximum-size transactions never yields a proposal that is
    larger than a peer accepts (on base the block of 100 such txs was 6.0 MB > 4 MiB)."""
    net = make_net(n_accounts=1, replay_window=50)
    rig = ChainRig(tmp_path / "db", net)
    try:
        key = net.accounts[0]
        big = b"\xab" * (60 * 1024)
        txs = []
        for i in range(100):
            args = evidence_args(f"big-{i}")
            args[4] = big  # refused by the contract at execution: still carried in the block
            txs.append(sign_tx(key, expiry=20, args=args))
        rig.admit(*txs)
        block = rig.build()
        assert 0 < len(block.txs) < len(txs)
        proposal = Proposal(block=block, tc=None, signature=b"\x07" * 64)
        assert len(proposal.encode()) <= WIRE_FRAME
        assert decode_wire(proposal.encode()) == proposal
        # The rest stays in the pool for the next blocks (they are valid, just not all at once).
        assert len(rig.mempool) == len(txs)
    finally:
        rig.close()


def test_block_and_sync_answers_are_cut_to_what_one_message_carries() -> None:
    """A peer asking for many large blocks gets the ones that fit one message (it asks again for
    the rest); on base the oversize answer raised in the transport's send."""
    from gmchain.node.network import _cut_to_fit as cut_to_fit  # (new with the fix)

    key = PrivateKey.generate()
    args = evidence_args("big")
    args[4] = b"\xcd" * (60 * 1024)
    big = _signed(key, args)
    block = _block(tuple([big] * 30))  # ~1.8 MB
    proof = CommitProof(header=_block((), height=6).header, qc=_qc(6, 8))
    for msg in (
        BlockResponse(block_id=block.block_id, blocks=(block,) * 5),
        SyncResponse(items=((block, proof),) * 5),
    ):
        assert len(msg.encode()) > WIRE_FRAME
        cut = decode_wire(cut_to_fit(msg))
        assert isinstance(cut, type(msg))
        parts = cut.blocks if isinstance(cut, BlockResponse) else cut.items
        assert len(parts) == 2  # in order, as many as fit
        assert len(cut.encode()) <= WIRE_FRAME


async def test_gossip_batches_of_large_txs_fit_one_message(tmp_path: Path) -> None:
    """Gossip is cut by bytes too: on base queued txs of 60 KiB went out in batches of up to 512
    (31 MB), which the real transport refuses with ValueError (the flush task dies, and gossip
    with it); here 300 of them went out as one 18 MB batch."""
    from tests.test_node_regossip import RecordingNet

    net = make_net(1)
    store = Store.open(tmp_path / "db", chain_id=net.genesis.chain_id)
    cfg = NodeConfig(data_dir=str(tmp_path / "db"), genesis_file="-", key_file="-")
    holder: list[RecordingNet] = []

    def factory(on_message: Any) -> RecordingNet:
        holder.append(RecordingNet(on_message))
        return holder[0]

    bridge = NetworkBridge(factory, genesis=net.genesis, sync_status_interval_ms=1000)
    service = NodeService(
        config=cfg, genesis=net.genesis, key=net.node_key, store=store, transport=bridge
    )
    await service.start()
    raws = [bytes([i % 256]) * (60 * 1024) for i in range(300)]  # opaque to gossip: just bytes
    for raw in raws:
        bridge.gossip(raw)  # what admission does with a tx it admitted (the transport port)
    await bridge.start(service)
    try:
        rec = holder[0]
        for _ in range(500):  # up to 10 s on a loaded machine
            if len(rec.gossiped()) >= len(raws):
                break
            await asyncio.sleep(0.02)
        assert rec.gossiped() == raws  # all of them, in order
        assert len(rec.broadcasts) > 1
        assert all(len(p) <= WIRE_FRAME for p in rec.broadcasts)
    finally:
        await bridge.stop()
        await service.stop()
        store.close()


def test_a_block_size_no_peer_could_decode_is_refused_at_start() -> None:
    cfg = NodeConfig(data_dir="d", genesis_file="g", key_file="k", max_block_txs=20_001)
    with pytest.raises(ConfigError, match="max_block_txs"):
        cfg.validate()


class _Deep(Contract):
    """Returns, and announces, a value nesting `levels` arrays (a contract echoing deep data)."""

    NAME = "deep"

    @method(Arg("levels", int, min=0, max=64), returns="a nested value")
    def make(self, ctx: Context, levels: int) -> Value:
        value = _nest(levels)
        ctx.emit("Made", ("value", value))
        return value


def test_a_receipt_is_always_servable_whatever_a_contract_returns(tmp_path: Path) -> None:
    """The executor never stores a receipt that cannot be decoded: on base a contract's 14-level
    event value made the committed receipt undecodable (the receipt nests 5 levels around it)."""
    net = make_net(n_accounts=1)
    rig = ChainRig(tmp_path / "db", net)
    try:
        base = default_registry()
        registry = Registry([*(base.contract(n) for n in base.names), _Deep()])
        rig.chain = Chain(
            genesis=net.genesis,
            store=rig.store,
            rules=TxRules.with_new_caches(
                chain_id=net.genesis.chain_id,
                replay_window=net.genesis.replay_window,
                registry=registry,
            ),
            pool=MempoolPool(rig.mempool),
            packing=PackingPolicy(PackingConfig()),
        )
        key = net.accounts[0]
        deepest = 1 + deepest_admissible_levels(key)  # the deepest args list: echoed back
        fits = sign_tx(key, expiry=10, contract="deep", method="make", args=[deepest])
        too_deep = sign_tx(key, expiry=10, contract="deep", method="make", args=[deepest + 2])
        block = rig.build_and_commit(fits, too_deep)
        receipts = rig.receipts(block)  # decodes each stored receipt (Receipt.decode)
        assert receipts[0].status is ReceiptStatus.OK and receipts[0].result == _nest(deepest)
        assert receipts[0].events[0].fields[0][1] == _nest(deepest)
        assert receipts[1].status is ReceiptStatus.FAILED
    finally:
        rig.close()


# --- (b) a dev node: the deepest admissible tx commits and its receipt is served -----------------


@pytest.fixture
def dev_node(tmp_path: Path) -> Iterator[NodeProcess]:
    (tmp_path / "dev").mkdir()
    proc = NodeProcess(data_dir=tmp_path / "dev", home=tmp_path / "home")
    try:
        yield proc
    finally:
        proc.stop()


def test_dev_node_serves_the_receipt_of_the_deepest_admissible_tx(dev_node: NodeProcess) -> None:
    dev_node.start()
    st = dev_node.wait_ready(120)
    rpc = RpcSession(dev_node.port)
    try:
        key = dev_node.client_key()
        levels = deepest_admissible_levels(key)
        deep = _signed(key, _deep_args(levels), chain_id=st["chainId"], expiry=st["height"] + 50)
        tx_hex = "0x" + deep.tx_id.hex()
        # It decodes, but its metadata does not fit evidence.submit's schema (R6): refused.
        before = rpc.call("gm_status")["pendingTxs"]
        with pytest.raises(RpcFailure) as err:
            rpc.call("gm_sendRawTransaction", "0x" + deep.encode().hex())
        assert err.value.code == -31012 and "metadata" in str(err.value)
        assert rpc.call("gm_getTransactionByHash", tx_hex) is None
        # One level deeper never decodes: a clear refusal, and nothing changes.
        body = TxBody(
            chain_id=st["chainId"],
            sender=key.public_key.to_bytes(),
            nonce=1,
            expiry=Height(st["height"] + 50),
            contract="evidence",
            method="submit",
            args=tuple(_deep_args(levels)),
        )
        fields = SignedTx(body=body, signature=key.sign(body.compute_id())).to_fields()
        fields[1][7][6] = [fields[1][7][6]]  # one level more, re-signed below
        fields[2] = key.sign(compute_signing_root("tx", fields[1]))
        with pytest.raises(RpcFailure) as err:
            rpc.call("gm_sendRawTransaction", "0x" + msgpack.packb(fields, use_bin_type=True).hex())
        assert err.value.code == -31001 and "nest" in str(err.value)
        assert rpc.call("gm_status")["pendingTxs"] == before
        # The JSON layer holds values to the same rule: a deeply nested query argument is the
        # caller's error (-32602), not a RecursionError (-32603 and a traceback, on base).
        with pytest.raises(RpcFailure) as err:
            rpc.call("gm_call", "evidence", "get", [_nest(900)])
        assert err.value.code == -32602 and "nest" in str(err.value)
    finally:
        rpc.close()


# --- (c) a real 4-validator cluster keeps going ------------------------------------------------


def _receipt_on(port: int, tx_hex: str) -> dict[str, Any] | None:
    try:
        r = rpc_call(port, "gm_getTransactionReceipt", [tx_hex])
    except (OSError, RuntimeError):
        return None
    # (a pending transaction is answered {"txId": ..., "pending": true}: not committed yet)
    return r if isinstance(r, dict) and r.get("pending") is False else None


def _send(port: int, tx: SignedTx) -> str:
    tx_hex = "0x" + tx.tx_id.hex()
    assert rpc_call(port, "gm_sendRawTransaction", ["0x" + tx.encode().hex()]) == tx_hex
    return tx_hex


def test_cluster_commits_past_the_deepest_admissible_tx(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "c") as (c, _):
        names = c.validators
        ports = [c.rpc_port(n) for n in names]
        key = c.client_key()
        info = rpc_call(ports[0], "gm_nodeInfo")
        chain_id = info["chainId"]
        head = int(rpc_call(ports[0], "gm_status")["height"])
        levels = deepest_admissible_levels(key)
        deep = _signed(key, _deep_args(levels), chain_id=chain_id, expiry=head + 200)
        # Every validator refuses it at admission (R6: its metadata does not fit the schema);
        # on base it was admitted, every peer refused the proposal and banned the leader, and
        # the next leaders proposed the same tx again: the chain stopped here.
        for p in ports:
            with pytest.raises(RuntimeError, match="-31012"):
                _send(p, deep)
        t0 = time.monotonic()
        later = [
            _signed(key, evidence_args(f"later-{i}-{secrets.token_hex(3)}"), chain_id=chain_id,
                    expiry=head + 200)
            for i in range(4)
        ]  # fmt: skip
        later_hex = [_send(ports[i % len(ports)], tx) for i, tx in enumerate(later)]
        wait_until(
            lambda: all(_receipt_on(p, h) for p in ports for h in later_hex),
            90,
            "later transactions to commit on every validator",
        )
        assert time.monotonic() - t0 < 90
        for h in later_hex:
            assert _receipt_on(ports[0], h)["statusName"] == "OK"  # type: ignore[index]
        # No validator was banned for its proposal.
        for n in names:
            assert "undecodable payload" not in c.log(n), n

"""Fault 1, review finding: a Byzantine leader's block whose Proposal fits one peer message but
whose SyncResponse (the block plus its CommitProof) does not. `validate_block` bounded only the
transaction count, so such a block could be certified; once committed, every honest node asked
for it by a syncing peer failed an assertion while answering and — with fail-stop — exited 70,
again after every restart (a remote kill switch). Now (1) the byte bound honest leaders keep is a
validity rule, and (2) a reply that cannot be carried is dropped and counted, never fatal."""

from __future__ import annotations

from typing import Any

from gmchain.chain.blockrules import check_block_bytes
from gmchain.consensus.messages import (
    MAX_BLOCK_TX_BYTES,
    MAX_MESSAGE_BYTES,
    CommitProof,
    SyncResponse,
)
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.types import (
    Block,
    BlockHeader,
    Digest,
    Height,
    NodeId,
    Proposal,
    QuorumCert,
    Round,
    SignedTx,
    TxBody,
)
from gmchain.node.network import NetworkBridge, decode_wire

_SIG = b"\x01" * 64
_ZERO = Digest(b"\0" * 32)


def _ids() -> list[NodeId]:
    return sorted(NodeId(PrivateKey.generate().public_key.address) for _ in range(4))


def _qc(ids: list[NodeId], bid: bytes, r: int, h: int) -> QuorumCert:
    return QuorumCert(
        block_id=Digest(bid),
        round=Round(r),
        height=Height(h),
        signatures=tuple((n, _SIG) for n in ids[:3]),
    )


def _header(ids: list[NodeId], h: int, parent: bytes, just: QuorumCert, ntx: int) -> BlockHeader:
    return BlockHeader(
        chain_id="gmchain-dev",
        epoch=0,
        height=Height(h),
        round=Round(h),
        parent_id=Digest(parent),
        timestamp_ms=10**12,
        proposer=ids[0],
        tx_root=_ZERO,
        tx_count=ntx,
        receipt_root=_ZERO,
        acc_root=_ZERO,
        acc_size=0,
        state_hash=_ZERO,
        next_validators_hash=Digest(bytes(32)),
        justify=just,
    )


def _oversize_block() -> tuple[list[NodeId], Block]:
    """A block whose Proposal (no TC) just fits one message: more tx bytes than any honest
    leader packs, fewer than a wire frame — what only a Byzantine leader builds."""
    ids = _ids()
    client = PrivateKey.generate()

    def tx(i: int, pad: int) -> SignedTx:
        body = TxBody(
            chain_id="gmchain-dev",
            sender=client.public_key.to_bytes(),
            nonce=i,
            expiry=50,
            contract="evidence",
            method="submit",
            args=[b"x" * pad],
        )
        return SignedTx(body=body, signature=client.sign(body.compute_id()))

    parent = b"\x22" * 32
    txs = [tx(i, 60_000) for i in range(MAX_MESSAGE_BYTES // len(tx(0, 60_000).encode()))]

    def build(txs: list[SignedTx]) -> Block:
        return Block(
            header=_header(ids, 10, parent, _qc(ids, parent, 9, 9), len(txs)), txs=tuple(txs)
        )

    slack = MAX_MESSAGE_BYTES - len(Proposal(block=build(txs), tc=None, signature=_SIG).encode())
    txs.append(tx(len(txs), max(0, slack - 400)))
    return ids, build(txs)


def test_a_block_over_the_honest_byte_bound_is_invalid() -> None:
    _, block = _oversize_block()
    proposal = Proposal(block=block, tc=None, signature=_SIG).encode()
    assert len(proposal) <= MAX_MESSAGE_BYTES
    decode_wire(proposal)  # it does cross the wire as a proposal ...
    assert sum(len(t.encode()) for t in block.txs) > MAX_BLOCK_TX_BYTES
    reason = check_block_bytes(block.txs)  # ... but is not a valid block
    assert reason is not None and str(MAX_BLOCK_TX_BYTES) in reason
    assert check_block_bytes(block.txs[:1]) is None


def test_a_reply_no_message_can_carry_is_dropped_not_fatal() -> None:
    ids, block = _oversize_block()
    child = _header(ids, 11, block.block_id, _qc(ids, block.block_id, 10, 10), 0)
    reply = SyncResponse(
        items=((block, CommitProof(header=child, qc=_qc(ids, child.block_id, 11, 11))),)
    )
    assert len(reply.encode()) > MAX_MESSAGE_BYTES

    sent: list[int] = []

    class _Net:
        def send(self, to: Any, payload: bytes) -> None:
            sent.append(len(payload))

    class _Bridge:
        def __init__(self) -> None:
            self.net = _Net()
            self.stats = {"unservable_replies": 0}

    bridge = _Bridge()
    NetworkBridge._send(bridge, NodeId(b"p" * 20), reply)  # type: ignore[arg-type]
    assert sent == [] and bridge.stats["unservable_replies"] == 1

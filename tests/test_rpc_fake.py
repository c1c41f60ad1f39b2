"""A fake `NodeApi` for the RPC tests, built on real `ledger.types` objects and real SM2.

It checks what the real pool checks (canonical decoding, size, chain id, signature, expiry window,
duplicates, pool capacity), so fuzzing the server against it shows that bad input never reaches
the chain. `commit()` packs the pool into a block with real Merkle roots and accumulator, so the
proofs the RPC returns can be verified with `ledger.merkle`. Also collected by pytest: the few
tests at the bottom check the fake itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from gmchain.consensus.messages import CommitProof
from gmchain.contracts import default_registry
from gmchain.contracts.evidence import RECORD_SHAPE, compute_record_hash
from gmchain.crypto_sm import InvalidKey, PrivateKey, PublicKey
from gmchain.ledger.codec import DecodeError, Value
from gmchain.ledger.merkle import (
    compute_root,
    compute_root_from_leaf_hashes,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
)
from gmchain.ledger.types import (
    MAX_TX_BYTES,
    Block,
    BlockHeader,
    Digest,
    Event,
    Height,
    NodeId,
    QuorumCert,
    Receipt,
    ReceiptStatus,
    Round,
    SignedTx,
    TxBody,
)
from gmchain.node.api import ApiError, ErrorCode, NodeStatus, TxLookup

__all__ = ["CHAIN_ID", "FakeNode", "make_tx"]

CHAIN_ID = "gm-test"
_ZERO = Digest(bytes(32))


def _describe() -> dict[str, Any]:
    """The real registry's description (gm_contracts answers what a node answers), plus two
    queries only the fake has: `echo` (returns its list of byte strings) and `boom` (a bug)."""
    out = default_registry().describe()
    (evidence,) = (c for c in out["contracts"] if c["name"] == "evidence")
    item = {"name": "item", "type": "bytes", "min_len": 0, "max_len": 32}
    items = {"name": "items", "type": "list", "min_len": 0, "max_len": 8, "items": [item]}
    for name, args in (("echo", [items]), ("boom", [])):
        evidence["methods"].append(
            {"name": name, "kind": "query", "doc": "", "args": args, "returns": {"type": "any"}}
        )
    return out


DESCRIBE: dict[str, Any] = _describe()


def make_tx(
    key: PrivateKey,
    *,
    nonce: int,
    expiry: int,
    record_id: str = "r1",
    digest: bytes = b"\x11" * 32,
    chain_id: str = CHAIN_ID,
    contract: str = "evidence",
) -> SignedTx:
    """A signed evidence submission (the sender signs the tx id, ledger.types rule 4)."""
    body = TxBody(
        chain_id=chain_id,
        sender=key.public_key.to_bytes(),
        nonce=nonce,
        expiry=Height(expiry),
        contract=contract,
        method="submit",
        args=(record_id, digest),
    )
    return SignedTx(body=body, signature=key.sign(body.compute_id()))


class _Feed:
    """An eagerly registered subscriber queue (no commit is missed once it exists)."""

    def __init__(self, owner: list[_Feed]) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self._owner = owner
        owner.append(self)

    def __aiter__(self) -> _Feed:
        return self

    async def __anext__(self) -> Any:
        return await self.queue.get()

    async def aclose(self) -> None:
        if self in self._owner:
            self._owner.remove(self)


class FakeNode:
    """In-memory chain: genesis at height 0, blocks made by `commit()`."""

    def __init__(self, *, window: int = 100, pool_limit: int = 50) -> None:
        self.window = window
        self.pool_limit = pool_limit
        self.pool: dict[bytes, SignedTx] = {}
        self.blocks: list[Block] = []
        self.by_hash: dict[bytes, Block] = {}
        self.txs: dict[bytes, TxLookup] = {}
        self.acc: list[bytes] = []  # accumulator leaf hashes, commit order
        self.proof_clients: list[str] = []  # the `client` each proof method was called with
        self.records: dict[str, bytes] = {}  # record id -> digest
        self.head_feeds: list[_Feed] = []
        self.event_feeds: list[_Feed] = []
        self.waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self.submitted = 0
        self._append_block([])

    # --- building blocks ---

    def _append_block(self, txs: list[SignedTx]) -> Block:
        height = len(self.blocks)
        parent = self.blocks[-1].block_id if self.blocks else _ZERO
        receipts = [self._execute(t) for t in txs]
        self.acc.extend(leaf_hash(t.tx_id) for t in txs)
        header = BlockHeader(
            chain_id=CHAIN_ID,
            epoch=0,
            height=Height(height),
            round=Round(height),
            parent_id=Digest(parent),
            timestamp_ms=1_700_000_000_000 + height,
            proposer=NodeId(b"\x01" * 20),
            tx_root=compute_root([t.tx_id for t in txs]),
            tx_count=len(txs),
            receipt_root=compute_root([r.encode() for r in receipts]),
            acc_root=compute_root_from_leaf_hashes(self.acc),
            acc_size=len(self.acc),
            state_hash=_ZERO,
            next_validators_hash=_ZERO,
            justify=QuorumCert(
                block_id=Digest(parent),
                round=Round(max(height - 1, 0)),
                height=Height(max(height - 1, 0)),
            ),
        )
        block = Block(header=header, txs=tuple(txs))
        self.blocks.append(block)
        self.by_hash[block.block_id] = block
        for i, (t, r) in enumerate(zip(txs, receipts, strict=True)):
            self.txs[t.tx_id] = TxLookup(
                tx=t, height=height, index=i, block_id=block.block_id, receipt_bytes=r.encode()
            )
        return block

    def _execute(self, tx: SignedTx) -> Receipt:
        record_id, digest = tx.body.args
        if record_id in self.records:
            return Receipt(tx_id=tx.tx_id, status=ReceiptStatus.FAILED, error="record id exists")
        self.records[record_id] = digest
        event = Event(
            contract="evidence",
            name="EvidenceSubmitted",
            fields=(("record_id", record_id), ("digest", digest)),
        )
        return Receipt(
            tx_id=tx.tx_id, status=ReceiptStatus.OK, result=[record_id, digest], events=(event,)
        )

    def commit(self) -> Block:
        """Pack the whole pool into the next block and tell subscribers and waiters."""
        txs = list(self.pool.values())
        self.pool.clear()
        block = self._append_block(txs)
        for feed in list(self.head_feeds):
            feed.queue.put_nowait(block)
        for t in txs:
            look = self.txs[t.tx_id]
            for e in look.receipt.events:
                for feed in list(self.event_feeds):
                    feed.queue.put_nowait((look.height, t.tx_id, e))
            for fut in self.waiters.pop(t.tx_id, []):
                if not fut.done():
                    fut.set_result(None)
        return block

    def fingerprint(self) -> tuple[int, bytes, int, int]:
        """What must not change when only bad input arrives."""
        return (len(self.blocks), self.blocks[-1].block_id, len(self.pool), len(self.acc))

    # --- NodeApi ---

    def status(self) -> NodeStatus:
        return NodeStatus(
            chain_id=CHAIN_ID,
            node_id=b"\x01" * 20,
            role="validator",
            height=self.height(),
            head=self.blocks[-1].block_id,
            genesis=self.blocks[0].block_id,
            pending_txs=len(self.pool),
            peers=0,
            version="fake-0",
            round=self.height(),
            committed_txs=len(self.acc),
            replay_window=self.window,
        )

    async def submit_raw_tx(self, raw: bytes) -> bytes:
        self.submitted += 1
        if len(raw) > MAX_TX_BYTES:
            raise ApiError(ErrorCode.TOO_LARGE, "transaction too large")
        try:
            tx = SignedTx.decode_tx(raw)
        except DecodeError as exc:
            raise ApiError(ErrorCode.BAD_ENCODING, f"bad transaction encoding: {exc}") from None
        body = tx.body
        if body.chain_id != CHAIN_ID:
            raise ApiError(ErrorCode.WRONG_CHAIN, f"wrong chain id {body.chain_id!r}")
        try:
            ok = PublicKey.from_bytes(body.sender).verify(tx.tx_id, tx.signature)
        except InvalidKey:
            ok = False
        if not ok:
            raise ApiError(ErrorCode.BAD_SIGNATURE, "signature does not verify")
        head = self.height()
        if body.expiry <= head:
            raise ApiError(ErrorCode.EXPIRED, f"expired: expiry {body.expiry} <= head {head}")
        if body.expiry > head + self.window:
            raise ApiError(ErrorCode.EXPIRY_TOO_FAR, "expiry beyond the replay window")
        if body.contract != "evidence" or body.method != "submit" or len(body.args) != 2:
            raise ApiError(ErrorCode.UNKNOWN_CONTRACT, "unknown contract or method")
        if tx.tx_id in self.pool or tx.tx_id in self.txs:
            raise ApiError(ErrorCode.DUPLICATE, "duplicate transaction")
        if len(self.pool) >= self.pool_limit:
            raise ApiError(ErrorCode.POOL_FULL, "transaction pool is full")
        self.pool[tx.tx_id] = tx
        return tx.tx_id

    def get_tx(self, tx_id: bytes) -> TxLookup | None:
        return self.txs.get(tx_id)

    def get_receipt(self, tx_id: bytes) -> tuple[Receipt, int, int] | None:
        look = self.txs.get(tx_id)
        return None if look is None else (look.receipt, look.height, look.index)

    def is_pending(self, tx_id: bytes) -> bool:
        return tx_id in self.pool

    def dropped_reason(self, tx_id: bytes) -> ApiError | None:
        return None

    def get_block(self, height: int) -> Block | None:
        return self.blocks[height] if 0 <= height < len(self.blocks) else None

    def get_block_by_hash(self, block_id: bytes) -> Block | None:
        return self.by_hash.get(block_id)

    def get_block_id(self, height: int) -> bytes | None:
        block = self.get_block(height)
        return None if block is None else block.block_id

    def get_block_summary(self, height: int) -> tuple[BlockHeader, list[bytes]] | None:
        block = self.get_block(height)
        return None if block is None else (block.header, [t.tx_id for t in block.txs])

    def get_block_summary_by_hash(self, block_id: bytes) -> tuple[BlockHeader, list[bytes]] | None:
        block = self.by_hash.get(block_id)
        return None if block is None else (block.header, [t.tx_id for t in block.txs])

    def height(self) -> int:
        return len(self.blocks) - 1

    def call(self, contract: str, method: str, args: Sequence[Value]) -> Value:
        if contract != "evidence":
            raise ApiError(ErrorCode.UNKNOWN_CONTRACT, f"no contract {contract!r}")
        if method == "get" and len(args) == 1 and isinstance(args[0], str):
            digest = self.records.get(args[0])
            return None if digest is None else _record(args[0], digest)
        if method == "by_digest" and len(args) == 1 and isinstance(args[0], bytes):
            return [r for r, d in self.records.items() if d == args[0]]
        if method == "echo":
            return list(args)
        if method == "boom":
            raise RuntimeError("a bug in the node")
        raise ApiError(ErrorCode.QUERY_FAILED, f"bad query {method}({len(args)} args)")

    def _header_at(self, at_height: int | None) -> BlockHeader:
        h = self.height() if at_height is None else at_height
        if not 0 <= h <= self.height():
            raise ApiError(ErrorCode.BAD_RANGE, f"height {h} is above the head")
        return self.blocks[h].header

    async def tx_proof(
        self, tx_id: bytes, at_height: int | None = None, *, client: str = ""
    ) -> dict[str, Any]:
        self.proof_clients.append(client)
        look = self.txs.get(tx_id)
        if look is None:
            raise ApiError(ErrorCode.NOT_FOUND, "transaction not committed")
        header = self._header_at(at_height)
        if header.height < look.height:
            raise ApiError(ErrorCode.BAD_RANGE, "header is older than the transaction")
        block = self.blocks[look.height]
        acc_index = self.acc.index(leaf_hash(tx_id))
        receipts = [self.txs[t.tx_id].receipt.encode() for t in block.txs]
        return {
            "version": 2,
            "receipt": receipts[look.index],
            "receipt_inclusion_proof": inclusion_proof(
                [leaf_hash(r) for r in receipts], look.index
            ),
            "anchor_header": header.encode(),
            "commit": _certificate(block.header),
            "anchor_commit": None if header == block.header else _certificate(header),
            "tx_id": tx_id,
            "height": look.height,
            "index_in_block": look.index,
            "block_tx_root": block.header.tx_root,
            "block_inclusion_proof": inclusion_proof(
                [leaf_hash(t.tx_id) for t in block.txs], look.index
            ),
            "acc_index": acc_index,
            "acc_size": header.acc_size,
            "acc_root": header.acc_root,
            "acc_inclusion_proof": inclusion_proof(self.acc[: header.acc_size], acc_index),
            "header": header.encode(),
        }

    async def consistency_proof(
        self, old_height: int, new_height: int, *, client: str = ""
    ) -> dict[str, Any]:
        self.proof_clients.append(client)
        old, new = self._header_at(old_height), self._header_at(new_height)
        return {
            "old_height": old_height,
            "new_height": new_height,
            "old_header": old.encode(),
            "new_header": new.encode(),
            "old_size": old.acc_size,
            "new_size": new.acc_size,
            "old_root": old.acc_root,
            "new_root": new.acc_root,
            "proof": consistency_proof(self.acc[: new.acc_size], old.acc_size),
        }

    async def commit_proof(self, height: int, *, client: str = "") -> dict[str, Any]:
        self.proof_clients.append(client)
        if not 0 <= height < self.height():
            raise ApiError(ErrorCode.NOT_FOUND, f"no commit certificate for height {height} yet")
        cert = _certificate(self.blocks[height].header)
        validator = {"pubkey": b"\x04" + bytes(64), "power": 1, "org": "fake-org"}
        return {"height": height, **cert, "validators": [validator]}

    def subscribe_heads(self) -> AsyncIterator[Block]:
        return _Feed(self.head_feeds)

    def subscribe_events(self, contract: str | None, name: str | None) -> AsyncIterator[Any]:
        feed = _Feed(self.event_feeds)

        async def filtered() -> AsyncIterator[Any]:
            try:
                async for h, t, e in feed:
                    if (contract is None or e.contract == contract) and (
                        name is None or e.name == name
                    ):
                        yield h, t, e
            finally:
                await feed.aclose()

        gen = filtered()
        return gen

    async def wait_tx(self, tx_id: bytes, timeout_s: float) -> tuple[Receipt, int, int] | None:
        if (found := self.get_receipt(tx_id)) is not None:
            return found
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(tx_id, []).append(fut)
        try:
            await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            return None
        return self.get_receipt(tx_id)

    def metrics_text(self) -> bytes:
        return (
            f"# TYPE gmchain_height gauge\ngmchain_height {self.height()}\n"
            "# TYPE gmchain_committed_txs_total counter\n"
            f"gmchain_committed_txs_total {len(self.acc)}\n"
            f"# TYPE gmchain_pool_size gauge\ngmchain_pool_size {len(self.pool)}\n"
        ).encode()

    def describe_contracts(self) -> dict[str, Any]:
        return DESCRIBE


def _record(record_id: str, digest: bytes) -> Value:
    """An `evidence.get` answer of the real contract's shape (contracts/evidence.py)."""
    values: list[Value] = [
        record_id, CHAIN_ID, "fake-org", f"flow-{record_id}", 0, "fake", "fake", digest,
        None, [], 1, None, bytes(32), b"\x01" * 20, bytes(32), 1, 1_700_000_000_001,
    ]  # fmt: skip
    return RECORD_SHAPE.pairs(*values, compute_record_hash(values), [])


def _certificate(header: BlockHeader) -> dict[str, Any]:
    """`{headers, proof}` for one header, with a structurally valid (unsigned) CommitProof."""
    qc = QuorumCert(block_id=header.block_id, round=header.round, height=header.height)
    return {"headers": [header.encode()], "proof": CommitProof(header=header, qc=qc).encode()}


# --- tests of the fake itself ----------------------------------------------------------------


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return PrivateKey.generate()


async def test_fake_admits_and_commits(key: PrivateKey) -> None:
    node = FakeNode()
    tx = make_tx(key, nonce=1, expiry=10)
    assert await node.submit_raw_tx(tx.encode()) == tx.tx_id
    assert node.is_pending(tx.tx_id)
    block = node.commit()
    assert block.txs == (tx,)
    assert node.get_receipt(tx.tx_id) is not None


async def test_fake_rejects_tampered_signature(key: PrivateKey) -> None:
    node = FakeNode()
    tx = make_tx(key, nonce=2, expiry=10)
    bad = SignedTx(body=tx.body, signature=bytes(64 - 1) + b"\x01")
    with pytest.raises(ApiError) as err:
        await node.submit_raw_tx(bad.encode())
    assert err.value.code == ErrorCode.BAD_SIGNATURE

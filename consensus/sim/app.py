"""Simulator stand-ins for the node: a fake signer, its verifier, and a mempool + "executor" app.

Rules this module keeps:
1. The fake signature of node i over m is SM3(secret_i || m) twice (64 bytes): unforgeable by other
   sim nodes, which never learn secret_i, and ~100x cheaper than SM2. Never used outside the sim.
2. `SimApp.validate_block` accepts a block only if every transaction was really submitted, none
   appears in the block's ancestry (committed or not), roots and sizes match, and the timestamp
   grows: so validity violations can only come from a consensus bug.
3. The app's store (committed blocks with proofs) and the replica's persisted SafetyData are the
   only state that survives a simulated crash.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from gmchain.consensus.messages import CommitProof
from gmchain.consensus.packing import PackingConfig, PackingPolicy
from gmchain.crypto_sm import sm3_hash
from gmchain.ledger.types import (
    ZERO_DIGEST,
    Block,
    BlockHeader,
    Digest,
    Height,
    NodeId,
    QuorumCert,
    Round,
    SignedTx,
    TxBody,
)

__all__ = [
    "SIM_CHAIN_ID",
    "FakeSigner",
    "FakeVerifier",
    "SimApp",
    "compute_tx_root",
    "make_genesis_header",
    "make_tx",
]

SIM_CHAIN_ID = "gmchain-sim"
_SENDER = b"\x04" + bytes(64)


def make_tx(nonce: int) -> SignedTx:
    body = TxBody(
        chain_id=SIM_CHAIN_ID,
        sender=_SENDER,
        nonce=nonce,
        expiry=Height(10**9),
        contract="evidence",
        method="put",
        args=(nonce,),
    )
    return SignedTx(body=body, signature=bytes(64))


def compute_tx_root(txs: Sequence[SignedTx]) -> Digest:
    """Not RFC 6962 (the sim does not need proofs): SM3 over the concatenated ids."""
    return Digest(sm3_hash(b"".join(t.tx_id for t in txs))) if txs else ZERO_DIGEST


def make_genesis_header(chain_id: str = SIM_CHAIN_ID) -> BlockHeader:
    placeholder = QuorumCert(block_id=ZERO_DIGEST, round=Round(0), height=Height(0))
    return BlockHeader(
        chain_id=chain_id,
        height=Height(0),
        round=Round(0),
        parent_id=ZERO_DIGEST,
        timestamp_ms=0,
        proposer=NodeId(bytes(20)),
        tx_root=ZERO_DIGEST,
        tx_count=0,
        receipt_root=ZERO_DIGEST,
        acc_root=ZERO_DIGEST,
        acc_size=0,
        state_hash=ZERO_DIGEST,
        justify=placeholder,
    )


class FakeSigner:
    def __init__(self, node_id: NodeId, secret: bytes) -> None:
        self.node_id = node_id
        self._secret = secret

    def sign(self, msg: bytes) -> bytes:
        d = sm3_hash(self._secret + msg)
        return d + d


class FakeVerifier:
    def __init__(self, secrets: dict[NodeId, bytes]) -> None:
        self._secrets = dict(secrets)

    def verify(self, node_id: NodeId, msg: bytes, sig: bytes) -> bool:
        secret = self._secrets.get(node_id)
        if secret is None or len(sig) != 64:
            return False
        d = sm3_hash(secret + msg)
        return sig == d + d


class SimApp:
    """Mempool, speculative block store and committed store of one simulated node."""

    def __init__(self, *, submitted: dict[Digest, SignedTx], genesis: BlockHeader) -> None:
        self.submitted = submitted  # shared, read-only here: every tx a client ever sent
        self.mempool: OrderedDict[Digest, SignedTx] = OrderedDict()
        self.arrival_ms: dict[Digest, int] = {}
        self.committed_txs: set[Digest] = set()
        self.store: list[tuple[Block, CommitProof]] = []  # survives crashes (rule 3)
        self.genesis = genesis
        self.spec: dict[Digest, Block] = {}  # blocks built or validated, not yet committed
        self.disk_blocks: dict[Digest, Block] = {}  # PersistBlock'ed, survives crashes
        self.policy = PackingPolicy(
            PackingConfig(min_block_txs=1, max_block_txs=50, min_wait_ms=2, max_wait_ms=40)
        )
        self.pruned_count = 0

    # --- driven by the simulator ----------------------------------------------------------------

    def add_txs(self, txs: Sequence[SignedTx], now_ms: int) -> None:
        for t in txs:
            if t.tx_id not in self.committed_txs and t.tx_id not in self.mempool:
                self.mempool[t.tx_id] = t
                self.arrival_ms[t.tx_id] = now_ms

    def apply_commit(self, blocks: Sequence[Block], proof: CommitProof, now_ms: int) -> None:
        for b in blocks:
            self.store.append((b, proof))
            self.spec.pop(b.block_id, None)
            self.disk_blocks.pop(b.block_id, None)
            for t in b.txs:
                self.committed_txs.add(t.tx_id)
                self.mempool.pop(t.tx_id, None)
                arrived = self.arrival_ms.pop(t.tx_id, None)
                if arrived is not None:
                    self.policy.observe_commit_latency(max(0, now_ms - arrived))

    @property
    def committed_header(self) -> BlockHeader:
        return self.store[-1][0].header if self.store else self.genesis

    # --- App protocol ---------------------------------------------------------------------------

    def has_pending(self) -> bool:
        return bool(self.mempool)

    def ready_to_propose(self, now_ms: int) -> bool:
        # Transactions already in an uncommitted block we built or validated are in flight, not
        # pending (the core may commit and propose in one step, before we see the Commit).
        inflight = {t.tx_id for b in self.spec.values() for t in b.txs}
        waiting = [tid for tid in self.mempool if tid not in inflight]
        self.policy.observe_queue(
            pending=len(waiting),
            oldest_pending_ms=self.arrival_ms.get(waiting[0], now_ms) if waiting else None,
        )
        return self.policy.should_cut(now_ms)

    def _ancestry_txs(self, parent_id: Digest) -> set[Digest] | None:
        """Tx ids in uncommitted ancestors (None if the chain is unknown to us)."""
        out: set[Digest] = set()
        cur = parent_id
        tip = self.committed_header
        while cur != tip.block_id:
            b = self.spec.get(cur)
            if b is None:
                # An ancestor at or below our committed height must be committed already.
                return out if self._is_committed(cur) else None
            out.update(t.tx_id for t in b.txs)
            cur = b.header.parent_id
        return out

    def _is_committed(self, block_id: Digest) -> bool:
        return block_id == self.genesis.block_id or any(
            b.block_id == block_id for b, _ in self.store[-64:]
        )

    def build_block(
        self,
        *,
        parent: BlockHeader,
        round: Round,
        justify: QuorumCert,
        proposer: NodeId,
        now_ms: int,
    ) -> Block:
        seen = self._ancestry_txs(parent.block_id) or set()
        limit = self.policy.target_size
        txs = [
            t
            for tid, t in self.mempool.items()
            if tid not in seen and tid not in self.committed_txs
        ][:limit]
        header = BlockHeader(
            chain_id=parent.chain_id,
            height=Height(parent.height + 1),
            round=round,
            parent_id=parent.block_id,
            timestamp_ms=max(now_ms, parent.timestamp_ms + 1),
            proposer=proposer,
            tx_root=compute_tx_root(txs),
            tx_count=len(txs),
            receipt_root=ZERO_DIGEST,
            acc_root=ZERO_DIGEST,
            acc_size=parent.acc_size + len(txs),
            state_hash=ZERO_DIGEST,
            justify=justify,
        )
        block = Block(header=header, txs=tuple(txs))
        self.spec[block.block_id] = block
        return block

    def validate_block(self, block: Block, parent: BlockHeader, *, now_ms: int) -> bool:
        h = block.header
        if h.timestamp_ms <= parent.timestamp_ms or h.acc_size != parent.acc_size + h.tx_count:
            return False
        if h.tx_root != compute_tx_root(block.txs):
            return False
        seen = self._ancestry_txs(parent.block_id)
        if seen is None:
            seen = set()
        ids = [t.tx_id for t in block.txs]
        if len(set(ids)) != len(ids):
            return False
        for tid in ids:
            if tid not in self.submitted or tid in seen or tid in self.committed_txs:
                return False
        self.spec[block.block_id] = block
        return True

    def on_pruned(self, block_ids: Sequence[Digest]) -> None:
        for bid in block_ids:
            self.spec.pop(bid, None)
            self.disk_blocks.pop(bid, None)
        self.pruned_count += len(block_ids)

    def get_committed_blocks(
        self, from_height: int, max_count: int
    ) -> Sequence[tuple[Block, CommitProof]]:
        start = from_height - 1  # store[i] holds height i + 1
        if start < 0:
            return ()
        return tuple(self.store[start : start + max_count])

"""Simulator stand-ins for the node: a fake vote signer and its verifier, a pool, and `SimApp`,
the REAL chain library (chain/core.py: block building, validation, the executor and the system
contracts, commit) over an in-memory store (ledger/memstore.py).

Rules this module keeps:
1. The fake signature of node i over m is SM3(secret_i || m) twice (64 bytes): unforgeable by other
   sim nodes, which never learn secret_i, and ~100x cheaper than SM2. It signs consensus votes,
   timeouts and proposals only; never used outside the sim.
2. Transactions are real: SM2-signed `evidence.submit` calls by one account admitted at the sim's
   genesis, signed once per process (`sim_txs`) and reused by every seed (each seed is a fresh
   chain, so a tx id is new in every run). Expiry is the replay window W, so a tx stays valid for
   W - 1 heights, far beyond any run. A signature is verified once per process (the node's
   verified cache, shared by every simulated node because the signed pool is the same).
3. Validity comes from the chain library itself (chain/core.py rule 2); the world still checks
   that every committed tx was submitted and none twice, so a violation means a consensus bug (or
   a chain-library bug) rather than a lenient stand-in.
4. What survives a simulated crash is the `MemStore` (committed blocks, state, the persisted
   uncommitted blocks) and the replica's SafetyData; the pool, the chain object and its
   speculative results are memory and are rebuilt on restart (`SimApp.restarted`).
5. A Byzantine leader may ask to build on a parent the chain never executed (an old committed
   block): `build_any` then makes a valid empty block on it (empty blocks need no state).
6. Epochs (issue 12): the chain library hands over an epoch switch after the commit that ended
   an epoch (`take_epoch_switch`), and the switch that started the current epoch after a restart
   (`current_epoch_switch`); both are chain/epochs.py's, read from the store (the disk).
   Governance transactions are real (`make_sim_call`: the sim account, which is the admin of the
   sim's only committee organisation, signs them with SM2).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence

from gmchain.chain.core import Chain
from gmchain.chain.executor import InvalidBlock, compute_state_hash
from gmchain.chain.genesis import make_genesis_block, read_header
from gmchain.chain.txrules import Rejection, TxRules
from gmchain.consensus.messages import CommitProof
from gmchain.consensus.packing import PackingConfig, PackingPolicy
from gmchain.consensus.types import EpochStart
from gmchain.contracts import default_registry
from gmchain.crypto_sm import PrivateKey, sm3_hash
from gmchain.ledger.codec import Value
from gmchain.ledger.memstore import MemStore
from gmchain.ledger.merkle import EMPTY_ROOT
from gmchain.ledger.types import (
    Block,
    BlockHeader,
    Digest,
    Genesis,
    GenesisValidator,
    Height,
    NodeId,
    QuorumCert,
    Receipt,
    Round,
    SignedTx,
    TxBody,
)

__all__ = [
    "SIM_CHAIN_ID",
    "SIM_REPLAY_WINDOW",
    "FakeSigner",
    "FakeVerifier",
    "SimApp",
    "SimPool",
    "make_genesis_header",
    "make_sim_call",
    "make_sim_genesis",
    "make_sim_tx",
    "sim_txs",
]

SIM_CHAIN_ID = "gmchain-sim"
SIM_REPLAY_WINDOW = 1_000_000  # the largest W a genesis allows (rule 2)
SIM_TX_COUNT = 96  # >= the most a seed submits (16 batches of 5, and 3 probes)
_ORG = "org-sim"


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


@functools.cache
def _sender_key() -> PrivateKey:
    return PrivateKey(sm3_hash(b"gmchain-sim-sender"))


def _fake_pubkey(i: int) -> bytes:
    """A 65-byte stand-in for validator i's SM2 key: it only names the node (node id = its
    SM3 prefix); votes are signed by `FakeSigner`, never checked against it."""
    return b"\x04" + sm3_hash(b"sim-validator" + bytes([i])) * 2


def make_sim_genesis(nodes: int, chain_id: str = SIM_CHAIN_ID) -> Genesis:
    """The genesis of every seed with `nodes` validators: one admitted account (rule 2)."""
    return Genesis(
        chain_id=chain_id,
        timestamp_ms=0,
        validators=tuple(
            GenesisValidator(pubkey=_fake_pubkey(i), power=1, org=_ORG) for i in range(nodes)
        ),
        replay_window=SIM_REPLAY_WINDOW,
        accounts=((_sender_key().public_key.to_bytes(), _ORG, "admin"),),
    )


def make_genesis_header(chain_id: str = SIM_CHAIN_ID) -> BlockHeader:
    """The height-0 header of a 4-validator sim genesis (for tests that need a genesis)."""
    return make_genesis_block(make_sim_genesis(4, chain_id))[0].header


@functools.lru_cache(maxsize=4096)
def make_sim_tx(nonce: int) -> SignedTx:
    """Rule 2: the sim account's `evidence.submit` of record `sim-<nonce>`, SM2-signed."""
    key = _sender_key()
    body = TxBody(
        chain_id=SIM_CHAIN_ID,
        sender=key.public_key.to_bytes(),
        nonce=nonce,
        expiry=Height(SIM_REPLAY_WINDOW),
        contract="evidence",
        method="submit",
        args=(
            f"sim-{nonce}",
            f"flow-{nonce}",
            "private-fund-sale",
            "risk-disclosure",
            sm3_hash(b"sim data %d" % nonce),
            None,
            [["investor", "sim"]],
            2,
            None,
        ),
    )
    return SignedTx(body=body, signature=key.sign(body.compute_id()))


def make_sim_call(nonce: int, contract: str, method: str, args: Sequence[Value]) -> SignedTx:
    """Rule 6: a call by the sim account (admin of the sim's organisation), SM2-signed."""
    key = _sender_key()
    body = TxBody(
        chain_id=SIM_CHAIN_ID,
        sender=key.public_key.to_bytes(),
        nonce=nonce,
        expiry=Height(SIM_REPLAY_WINDOW),
        contract=contract,
        method=method,
        args=tuple(args),
    )
    return SignedTx(body=body, signature=key.sign(body.compute_id()))


@functools.cache
def sim_txs() -> tuple[SignedTx, ...]:
    """Rule 2: the process's signed transactions, the same for every seed."""
    return tuple(make_sim_tx(i) for i in range(SIM_TX_COUNT))


class SimPool:
    """A `chain.pool.TxPool` in memory: arrival order, what left and why."""

    def __init__(self) -> None:
        self._pending: OrderedDict[bytes, tuple[SignedTx, int, int]] = OrderedDict()  # id -> tx,
        # encoded size, arrival (virtual ms)
        self.evicted: dict[bytes, Rejection] = {}  # tx id -> reason, for a test's eyes

    def add(self, tx: SignedTx, now_ms: int) -> None:
        if tx.tx_id not in self._pending:
            self._pending[tx.tx_id] = (tx, len(tx.encode()), now_ms)

    def clear(self) -> None:
        self._pending.clear()

    def arrival_ms(self, tx_id: bytes) -> int | None:
        got = self._pending.get(tx_id)
        return None if got is None else got[2]

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self._pending

    def oldest_arrival_ms(self) -> int | None:
        for _, _, at in self._pending.values():
            return at
        return None

    def iter_fair(self) -> Iterator[tuple[SignedTx, int]]:
        for tx, size, _ in list(self._pending.values()):
            yield tx, size

    def remove(self, tx_ids: Iterable[bytes]) -> int:
        n = 0
        for t in tx_ids:
            n += self._pending.pop(t, None) is not None
        return n

    def evict(self, tx_ids: Iterable[bytes], reason: Rejection, message: str) -> int:
        gone = [t for t in tx_ids if t in self._pending]
        for t in gone:
            self.evicted[t] = reason
        return self.remove(gone)

    def evict_sender(self, sender: bytes, reason: Rejection, message: str) -> int:
        ids = [t for t, (tx, _, _) in self._pending.items() if tx.body.sender == sender]
        return self.evict(ids, reason, message)

    def evict_address(self, address: bytes, reason: Rejection, message: str) -> int:
        ids = [
            t for t, (tx, _, _) in self._pending.items() if sm3_hash(tx.body.sender)[:20] == address
        ]
        return self.evict(ids, reason, message)

    def evict_expired(self, head_height: int) -> int:
        ids = [t for t, (tx, _, _) in self._pending.items() if tx.body.expiry <= head_height]
        return self.evict(ids, Rejection.EXPIRED, "expired unpacked")


@functools.cache
def _rules(chain_id: str, replay_window: int) -> TxRules:
    """Rule 2: one TxRules per process, so its SignatureCache is shared by every simulated node
    and seed (the signed pool is the same): a signature is verified once per process."""
    return TxRules.with_new_caches(
        chain_id=chain_id, replay_window=replay_window, registry=default_registry()
    )


class SimApp:
    """One simulated node's application: the real `Chain` over its `MemStore` (its disk)."""

    def __init__(self, *, genesis: Genesis) -> None:
        self.genesis = genesis
        self.store = MemStore()  # survives crashes (rule 4)
        self.spec: dict[Digest, Block] = {}  # blocks built or validated, not yet committed
        self.pruned_count = 0
        self.restarted()
        self.genesis_header: BlockHeader = read_header(self.store, 0)

    def restarted(self) -> None:
        """Rule 4: what a restarted node rebuilds from its disk (the pool starts empty)."""
        self.pool = SimPool()
        self.policy = PackingPolicy(
            PackingConfig(min_block_txs=1, max_block_txs=50, min_wait_ms=2, max_wait_ms=40)
        )
        self.chain = Chain(
            genesis=self.genesis,
            store=self.store,
            rules=_rules(self.genesis.chain_id, self.genesis.replay_window),
            pool=self.pool,
            packing=self.policy,
        )
        self.spec.clear()

    # --- driven by the simulator ----------------------------------------------------------------

    def add_txs(self, txs: Sequence[SignedTx], now_ms: int) -> None:
        for t in txs:
            if not self.is_committed_tx(t.tx_id):
                self.pool.add(t, now_ms)

    def is_committed_tx(self, tx_id: bytes) -> bool:
        return self.store.get_tx_location(tx_id) is not None

    def persist_block(self, block: Block) -> None:
        self.chain.persist_block(block)

    def apply_commit(self, blocks: Sequence[Block], proof: CommitProof, now_ms: int) -> None:
        for b in blocks:
            for t in b.txs:
                arrived = self.pool.arrival_ms(t.tx_id)
                if arrived is not None:
                    self.policy.observe_commit_latency(max(0, now_ms - arrived))
        self.chain.commit(blocks, proof)
        for b in blocks:
            self.spec.pop(b.block_id, None)

    @property
    def committed_header(self) -> BlockHeader:
        return self.chain.head

    def receipt(self, tx_id: bytes) -> Receipt | None:
        raw = self.store.get_receipt(tx_id)
        return None if raw is None else Receipt.decode(raw)

    def take_epoch_switch(self) -> EpochStart | None:
        """Rule 6: the switch the last commit made, once (chain/epochs.py; issue 12)."""
        return self.chain.take_epoch_switch()

    def current_epoch_switch(self) -> EpochStart | None:
        """Rule 6: the switch that started the current epoch (None in epoch 0)."""
        return self.chain.current_epoch_switch()

    def committed_qc(self) -> QuorumCert:
        """The QC certifying the committed head (what a restarted node starts with)."""
        head = self.chain.head
        if head.height > 0:
            proof = self.chain.find_commit_proof(head.height)
            if proof is not None and proof.header.justify.block_id == head.block_id:
                return proof.header.justify
        return QuorumCert(
            epoch=head.epoch, block_id=head.block_id, round=head.round, height=head.height
        )

    def find_header(self, block_id: Digest) -> BlockHeader | None:
        """A header this node knows: uncommitted (built or validated) or recently committed."""
        b = self.spec.get(block_id)
        if b is not None:
            return b.header
        if block_id == self.genesis_header.block_id:
            return self.genesis_header
        head = self.chain.head.height
        for h in range(head, max(-1, head - 64), -1):
            if self.store.get_block_hash(h) == block_id:
                return read_header(self.store, h)
        return None

    def build_any(
        self,
        *,
        parent: BlockHeader,
        round: Round,
        justify: QuorumCert,
        proposer: NodeId,
        now_ms: int,
    ) -> Block:
        """Rule 5: a Byzantine leader's block on any known parent."""
        try:
            return self.build_block(
                parent=parent, round=round, justify=justify, proposer=proposer, now_ms=now_ms
            )
        except InvalidBlock:
            pass
        header = BlockHeader(
            chain_id=parent.chain_id,
            epoch=parent.epoch,
            height=Height(parent.height + 1),
            round=round,
            parent_id=parent.block_id,
            timestamp_ms=max(now_ms, parent.timestamp_ms + 1),
            proposer=proposer,
            tx_root=EMPTY_ROOT,
            tx_count=0,
            receipt_root=EMPTY_ROOT,
            acc_root=parent.acc_root,
            acc_size=parent.acc_size,
            state_hash=compute_state_hash(parent.state_hash, {}),
            next_validators_hash=parent.next_validators_hash,
            justify=justify,
        )
        block = Block(header=header, txs=())
        self.spec[block.block_id] = block
        return block

    # --- App protocol ---------------------------------------------------------------------------

    def has_pending(self) -> bool:
        return self.chain.has_pending()

    def ready_to_propose(self, now_ms: int) -> bool:
        return self.chain.ready_to_propose(now_ms)

    def build_block(
        self,
        *,
        parent: BlockHeader,
        round: Round,
        justify: QuorumCert,
        proposer: NodeId,
        now_ms: int,
    ) -> Block:
        block = self.chain.build_block(
            parent=parent, round=round, justify=justify, proposer=proposer, now_ms=now_ms
        )
        self.spec[block.block_id] = block
        return block

    def validate_block(self, block: Block, parent: BlockHeader, *, now_ms: int) -> bool:
        ok = self.chain.validate_block(block, parent, now_ms=now_ms)
        if ok:
            self.spec[block.block_id] = block
        return ok

    def on_pruned(self, block_ids: Sequence[Digest]) -> None:
        self.chain.on_pruned(block_ids)
        for bid in block_ids:
            self.spec.pop(bid, None)
        self.pruned_count += len(block_ids)

    def get_committed_blocks(
        self, from_height: int, max_count: int
    ) -> Sequence[tuple[Block, CommitProof]]:
        return self.chain.get_committed_blocks(from_height, max_count)

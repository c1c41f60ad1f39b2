"""A long chain for the query bench: real blocks, real certificates, written by the chain
library straight into a node's store before the node first starts (issue 15 item 3).

Rules this module keeps:
1. Every block is built and committed by `chain.core.Chain` over the node's own LevelDB store
   (each commit the real synced batch), so headers, tx locations, receipts, the accumulator and
   its stored nodes are exactly what a running node writes, and the node opens the store as its
   own (it re-checks the head and loads the frontier as on any restart).
2. Every commit certificate is real: block k is committed with `CommitProof(header_{k+1},
   QC(header_{k+1}))`, each QC signed by the one validator's SM2 key over
   `QuorumCert.signing_root` (docs/protocol.md §6), round(k) = k so the 2-chain rule
   `child.round == child.justify.round + 1` holds; a proof served from this chain verifies
   against the genesis like one from a live node.
3. Transactions are the bench workload (`bench.workload.presign`: evidence submissions of
   admitted bench keys, built and SM2-signed exactly as the SDK does, in worker processes,
   while the builder works); `txs_per_block` of them in every block. One signature in
   VERIFY_EVERY is verified before use (a check that the signing is right: verifying all of
   them would double the build time and proves nothing more about the chain the node reads).
4. Timestamps come from the builder's wall clock (each above its parent's), so no block claims a
   time after the moment it was built, and the node's next block follows on.
5. Nothing here is measured: the builder only makes the chain the query bench then reads.
"""

from __future__ import annotations

import random
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gmchain.bench.workload import BENCH_REPLAY_WINDOW, SignedBatch, presign_stream
from gmchain.chain.core import Chain
from gmchain.chain.txrules import TxRules
from gmchain.consensus.messages import CommitProof
from gmchain.consensus.packing import PackingConfig, PackingPolicy
from gmchain.contracts import default_registry
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.store import Store
from gmchain.ledger.types import Block, Genesis, NodeId, QuorumCert, Round, SignedTx
from gmchain.node.chainpool import MempoolPool
from gmchain.node.mempool import Mempool, MempoolConfig

__all__ = ["LongChain", "build_long_chain", "open_builder_chain", "signed_qc"]

VERIFY_EVERY = 50  # one signature in this many is verified before use (rule 3)
_SAMPLE = 50_000  # tx ids kept for the query workloads, spread over the whole chain


@dataclass(frozen=True, slots=True, kw_only=True)
class LongChain:
    head: int  # committed head height after building
    txs: int  # transactions committed
    tx_ids: list[str]  # 0x hex, a uniform sample over the chain (at most _SAMPLE)
    record_ids: list[str]  # their evidence record ids (first 2,000 of the sample)
    build_s: float  # wall seconds building took (signing included)
    sign_cpu_s: float  # CPU seconds the signing workers used


def signed_qc(genesis: Genesis, key: PrivateKey, block: Block) -> QuorumCert:
    """The one validator's certificate of `block` (rule 2)."""
    h = block.header
    root = QuorumCert.signing_root(genesis.chain_id, h.epoch, h.block_id, h.round, h.height)
    return QuorumCert(
        block_id=h.block_id,
        round=h.round,
        height=h.height,
        signatures=((NodeId(key.public_key.address), key.sign(root)),),
    )


def open_builder_chain(
    genesis: Genesis,
    store: Store,
    *,
    packing: PackingConfig,
    max_block_txs: int | None = None,
) -> tuple[Chain, Mempool, TxRules]:
    """The chain library over `store`, fed by a mempool, wired as a node wires them (rule 1);
    `max_block_txs` None keeps the library's own bound. Also used by tests/proof_chain.py."""
    rules = TxRules.with_new_caches(
        chain_id=genesis.chain_id,
        replay_window=genesis.replay_window,
        registry=default_registry(),
    )
    mempool = Mempool(config=MempoolConfig(), rules=rules)
    bound: dict[str, Any] = {} if max_block_txs is None else {"max_block_txs": max_block_txs}
    chain = Chain(
        genesis=genesis,
        store=store,
        rules=rules,
        pool=MempoolPool(mempool),
        packing=PackingPolicy(packing),
        **bound,
    )
    return chain, mempool, rules


def build_long_chain(
    db_path: Path,
    genesis: Genesis,
    validator_key: PrivateKey,
    sender_keys: list[PrivateKey],
    *,
    blocks: int,
    txs_per_block: int,
    progress: bool = True,
) -> LongChain:
    """Commit `blocks` blocks of `txs_per_block` evidence submissions each on top of the store
    at `db_path` (created with the genesis if new); the store is closed on return."""
    t0 = time.monotonic()
    store = Store.open(db_path, chain_id=genesis.chain_id)
    rng = random.Random(0)
    sample: list[tuple[bytes, str]] = []
    seen = 0
    sign_cpu = 0.0
    stream: Generator[SignedBatch, None, None] | None = None
    size = max(1, txs_per_block)  # every block takes exactly txs_per_block of the pool
    try:
        chain, mempool, rules = open_builder_chain(
            genesis,
            store,
            packing=PackingConfig(min_block_txs=size, max_block_txs=size),
            max_block_txs=size,
        )
        proposer = NodeId(validator_key.public_key.address)
        start = chain.head
        parent = start
        # The genesis block's QC is unsigned by definition (docs/protocol.md §6); a chain that
        # already has blocks is extended from its head's own certificate.
        justify = QuorumCert(block_id=start.block_id, round=start.round, height=start.height)
        if start.height > 0:
            raise ValueError("build_long_chain extends only a fresh store (genesis alone)")
        last = start.height + blocks
        expiry = min(last + 10, BENCH_REPLAY_WINDOW)
        if last + 10 > BENCH_REPLAY_WINDOW:
            raise ValueError(f"at most {BENCH_REPLAY_WINDOW - 10} blocks (the replay window)")
        total = blocks * txs_per_block
        stream = presign_stream(
            sender_keys, total, chain_id=genesis.chain_id, expiry=expiry, run_tag="lc"
        )
        queue: list[SignedTx] = []
        pending: Block | None = None
        last_note = time.monotonic()
        for k in range(start.height + 1, last + 2):
            while k <= last and len(queue) < txs_per_block:
                batch = next(stream)
                sign_cpu += batch.cpu_s
                txs = [SignedTx.decode_tx(r) for r in batch.raws]
                rules.check_signatures(txs[:: max(1, VERIFY_EVERY)])  # rule 3
                queue.extend(txs)
            now = max(int(time.time() * 1000), parent.timestamp_ms + 1)  # rule 4
            if k <= last:
                for tx in queue[:txs_per_block]:
                    mempool.add(tx, len(tx.encode()), parent.height, now)
                del queue[:txs_per_block]
            block = chain.build_block(
                parent=parent, round=Round(k), justify=justify, proposer=proposer, now_ms=now
            )
            if len(block.txs) != (txs_per_block if k <= last else 0):
                raise RuntimeError(f"block {k} took {len(block.txs)} transactions")
            qc = signed_qc(genesis, validator_key, block)
            if pending is not None:
                chain.commit([pending], CommitProof(header=block.header, qc=qc))
                for t in pending.txs:  # reservoir sample of the committed txs
                    seen += 1
                    j = seen - 1 if len(sample) < _SAMPLE else rng.randrange(seen)
                    if j < _SAMPLE:
                        item = (bytes(t.tx_id), str(t.body.args[0]))
                        if j == len(sample):
                            sample.append(item)
                        else:
                            sample[j] = item
            pending, parent, justify = block, block.header, qc
            if progress and time.monotonic() - last_note >= 10:
                last_note = time.monotonic()
                rate = (k - start.height) / (last_note - t0)
                print(
                    f"[bench] long chain: block {k:,} of {last:,} "
                    f"({rate:,.0f} blocks/s, ~{(last - k) / max(rate, 1e-9):,.0f} s left)",
                    flush=True,
                )
        assert chain.head.height == last, (chain.head.height, last)
        return LongChain(
            head=chain.head.height,
            txs=seen,
            tx_ids=["0x" + t.hex() for t, _ in sample],
            record_ids=[r for _, r in sample[:2000]],
            build_s=round(time.monotonic() - t0, 1),
            sign_cpu_s=round(sign_cpu, 1),
        )
    finally:
        if stream is not None:
            stream.close()  # stops the signing workers
        store.close()

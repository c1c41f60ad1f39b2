"""A long, properly certified chain written straight into a node's store, for the proof tests.

Rules this helper keeps:
1. Blocks are built and committed by the real `node.chain.Chain` over a real LevelDB store, so
   headers, receipts, the accumulator and its stored nodes are exactly what a node writes.
2. Every commit certificate is real: block k is committed with `CommitProof(header_{k+1},
   QC(header_{k+1}))`, each QC signed by the one validator's SM2 key over
   `QuorumCert.signing_root` (docs/protocol.md §6), and round(k) = k so the 2-chain rule
   `child.round == child.justify.round + 1` holds. A bundle built on it verifies against the
   genesis like one from a running node.
3. Nothing here decides a test's outcome: it only builds inputs.
4. The chain wiring and the certificates are bench/longchain.py's (`open_builder_chain`,
   `signed_qc`): one builder for both long chains.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from gmchain.bench.longchain import open_builder_chain, signed_qc
from gmchain.consensus.messages import CommitProof
from gmchain.consensus.packing import PackingConfig
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.store import Store
from gmchain.ledger.types import Block, Genesis, Height, NodeId, QuorumCert, Round, SignedTx, TxBody
from tests.node_helpers import evidence_args

__all__ = ["BuiltChain", "build_certified_chain", "signed_qc"]


@dataclass
class BuiltChain:
    head: int  # the committed head height
    tx_ids: list[tuple[int, bytes]]  # (height, tx id) of every committed transaction


def build_certified_chain(
    db_path: Path,
    genesis: Genesis,
    validator_key: PrivateKey,
    sender_key: PrivateKey,
    *,
    blocks: int,
    tx_every: int,
) -> BuiltChain:
    """Commit `blocks` blocks (a transaction in every `tx_every`-th, from height 1) into the
    store at `db_path`; the store is closed on return."""
    store = Store.open(db_path, chain_id=genesis.chain_id)
    try:
        chain, mempool, _ = open_builder_chain(genesis, store, packing=PackingConfig())
        now = [genesis.timestamp_ms + 1000]
        proposer = NodeId(validator_key.public_key.address)
        start = chain.head
        parent = start
        # The genesis block's QC is unsigned by definition (docs/protocol.md §6).
        justify = QuorumCert(block_id=start.block_id, round=start.round, height=start.height)
        pending: Block | None = None
        ids: list[tuple[int, bytes]] = []
        for k in range(start.height + 1, start.height + blocks + 2):
            now[0] += 10
            if (k - 1) % tx_every == 0 and k <= start.height + blocks:
                tx = _tx(genesis, sender_key, expiry=k + 5)
                mempool.add(tx, len(tx.encode()), parent.height, now[0])
            block = chain.build_block(
                parent=parent, round=Round(k), justify=justify, proposer=proposer, now_ms=now[0]
            )
            qc = signed_qc(genesis, validator_key, block)
            if pending is not None:
                chain.commit([pending], CommitProof(header=block.header, qc=qc))
                ids += [(pending.header.height, t.tx_id) for t in pending.txs]
            pending, parent, justify = block, block.header, qc
        return BuiltChain(head=chain.head.height, tx_ids=ids)
    finally:
        store.close()


def _tx(genesis: Genesis, key: PrivateKey, *, expiry: int) -> SignedTx:
    body = TxBody(
        chain_id=genesis.chain_id,
        sender=key.public_key.to_bytes(),
        nonce=secrets.randbits(63),
        expiry=Height(expiry),
        contract="evidence",
        method="submit",
        args=tuple(evidence_args(f"pc-{secrets.token_hex(6)}")),
    )
    return SignedTx(body=body, signature=key.sign(body.compute_id()))

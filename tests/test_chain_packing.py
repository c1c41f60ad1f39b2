"""Regression: after a stall the block size grows back while a backlog waits (cluster drill find).

The replica proposes as soon as the parent is certified while uncommitted non-empty blocks exist,
without asking `ready_to_propose`; the chain must still feed the queue depth to the packing policy
on every build, or a target shrunk by one slow period stays at its floor forever.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gmchain.chain.core import Chain
from gmchain.chain.txrules import TxRules
from gmchain.consensus.packing import PackingConfig, PackingPolicy
from gmchain.contracts import default_registry
from gmchain.crypto_sm import PrivateKey, sm3_hash
from gmchain.ledger.store import Store
from gmchain.ledger.types import Genesis, GenesisValidator, NodeId, Round, SignedTx, TxBody
from gmchain.node.chainpool import MempoolPool
from gmchain.node.mempool import Mempool, MempoolConfig


def _tx(key: PrivateKey, chain_id: str, i: int) -> SignedTx:
    body = TxBody(
        chain_id=chain_id,
        sender=key.public_key.to_bytes(),
        nonce=i,
        expiry=500,
        contract="evidence",
        method="submit",
        args=[f"r{i}", f"f{i}", "s", "kyc", sm3_hash(b"%d" % i), None, [], 2, None],
    )
    return SignedTx(body=body, signature=key.sign(body.compute_id()))


def _genesis(node: PrivateKey, client: PrivateKey) -> Genesis:
    return Genesis(
        chain_id="t",
        timestamp_ms=1,
        validators=(GenesisValidator(pubkey=node.public_key.to_bytes(), power=1, org="o"),),
        accounts=((client.public_key.to_bytes(), "o", "admin"),),
    )


def _chain(
    path: Path, genesis: Genesis, packing: PackingPolicy, timer: Callable[[], float] | None = None
) -> tuple[Chain, Mempool, Store]:
    """A chain over its own LevelDB store with a real pool and rules."""
    store = Store.open(path, chain_id="t")
    rules = TxRules.with_new_caches(chain_id="t", replay_window=1000, registry=default_registry())
    pool = Mempool(config=MempoolConfig(), rules=rules)
    chain = Chain(
        genesis=genesis,
        store=store,
        rules=rules,
        pool=MempoolPool(pool),
        packing=packing,
        timer=timer,
    )
    return chain, pool, store


def test_block_size_grows_back_under_backlog(tmp_path: Path) -> None:
    node, client = PrivateKey.generate(), PrivateKey.generate()
    packing = PackingPolicy(
        PackingConfig(min_block_txs=1, max_block_txs=2000, target_latency_ms=100)
    )
    chain, pool, store = _chain(tmp_path / "db", _genesis(node, client), packing)
    for _ in range(40):  # a slow period: the target shrinks to its floor
        packing.observe_commit_latency(5_000)
    assert packing.target_size == 1
    txs = [_tx(client, "t", i) for i in range(600)]
    for t in txs:
        pool.add(t, len(t.encode()), 0, 0)
    parent = chain.head
    sizes = []
    packed: list[bytes] = []
    for r in range(1, 8):  # a pipeline of certified-but-uncommitted blocks, as under load
        block = chain.build_block(
            parent=parent,
            round=Round(r),
            justify=parent.justify,
            proposer=NodeId(node.public_key.address),
            now_ms=10_000 + r,
        )
        sizes.append(len(block.txs))
        packed.extend(t.tx_id for t in block.txs)
        parent = block.header
    assert sizes[-1] > 10 * sizes[0], sizes
    assert len(packed) == len(set(packed)), "a tx was packed twice along one branch"
    store.close()


def test_build_and_validation_feed_the_time_cap(tmp_path: Path) -> None:
    """Packing K6 through the chain: a build and a follower's validation each report their
    execution's wall time, so a slow node caps its next blocks under the budget."""
    node, client = PrivateKey.generate(), PrivateKey.generate()
    genesis = _genesis(node, client)
    clock = [0.0]

    def slow_timer() -> float:  # every reading is 2 s after the last: 2 s per execution
        clock[0] += 2.0
        return clock[0]

    def budgeted() -> PackingPolicy:
        return PackingPolicy(
            PackingConfig(min_block_txs=1, max_block_txs=2000, block_time_budget_ms=400)
        )

    lp, fp = budgeted(), budgeted()
    leader, pool, s1 = _chain(tmp_path / "leader", genesis, lp, slow_timer)
    follower, _, s2 = _chain(tmp_path / "follower", genesis, fp, slow_timer)
    for t in [_tx(client, "t", i) for i in range(100)]:
        pool.add(t, len(t.encode()), 0, 0)
    parent = leader.head
    block = leader.build_block(
        parent=parent,
        round=Round(1),
        justify=parent.justify,
        proposer=NodeId(node.public_key.address),
        now_ms=10_000,
    )
    assert len(block.txs) == 100
    assert lp.exec_us_per_tx == 2_000_000 // 100
    assert lp.target_size == 400_000 // lp.exec_us_per_tx == 20  # the next blocks: 20 txs
    assert fp.exec_us_per_tx is None
    assert follower.validate_block(block, parent, now_ms=10_001)
    assert fp.exec_us_per_tx == 2_000_000 // 100  # a follower measures its validation too
    s1.close()
    s2.close()

"""The simulator runs the real chain library (issue 11, item 1): after a faulty run, every honest
node's in-memory store holds what the real executor wrote — a success receipt for each committed
transaction and its evidence record in contract state — and a node rebuilt over its store after a
crash resumes at the same head."""

from __future__ import annotations

from gmchain.consensus.sim.app import SimApp
from gmchain.consensus.sim.world import SimConfig, _World
from gmchain.ledger.types import Block, Receipt, ReceiptStatus


def _committed(app: SimApp) -> list[Block]:
    head = app.chain.head.height
    out = []
    for h in range(1, head + 1):
        raw = app.store.get_block_by_height(h)
        assert raw is not None
        out.append(Block.decode(raw))
    return out


def test_honest_nodes_execute_every_committed_tx_with_the_real_executor() -> None:
    world = _World(SimConfig(seed=7))
    result = world.run()
    assert not result.violations and not result.liveness_failure
    checked = 0
    for inst in world.instances:
        if not inst.honest:
            continue
        for block in _committed(inst.app):
            for tx in block.txs:
                raw = inst.app.store.get_receipt(tx.tx_id)
                assert raw is not None
                receipt = Receipt.decode(raw)
                assert receipt.status is ReceiptStatus.OK, receipt.error
                record_id = tx.body.args[0]
                assert inst.app.chain.executor.query("evidence", "get", [record_id]) is not None
                checked += 1
    assert checked >= 3  # at least the probes, at every honest node


def test_a_restarted_node_resumes_from_its_store() -> None:
    world = _World(SimConfig(seed=3, faults=frozenset()))
    world.run()
    app = world.instances[0].app
    head, state_hash = app.chain.head, app.chain.head.state_hash
    assert head.height > 0
    app.restarted()  # a crash: the pool, the chain object and its results are memory
    assert app.chain.head == head and app.chain.head.state_hash == state_hash
    assert len(app.pool) == 0

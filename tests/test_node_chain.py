"""Rule tests of chain/core.py + chain/executor.py over a real store in a tmp dir (no sockets).

Rules under test (chain/core.py rule 2; chain/executor.py rules 2-4; DESIGN.md "Replay
protection"): a replica refuses (validate_block -> False) a block with wrong commitments, a
duplicate, expired, unknown-sender or badly signed tx, a bad timestamp or the wrong parent; a
failed contract call is included with a failed receipt and its writes discarded; speculative
forks keep their state apart; a restart keeps the head and re-execution reproduces state_hash.

Blocks that break a block rule are forged with honest commitments (tests/node_helpers.py rule 2);
each such test first shows a lax replica (block rules off) accepting the same block, so the
refusal is the rule's doing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from gmchain.ledger.types import Block, Digest, Receipt, ReceiptStatus
from tests.node_helpers import (
    ChainRig,
    TestNet,
    evidence_args,
    forge_block,
    lax_check_tx,
    make_net,
    sign_tx,
)


@pytest.fixture(scope="module")
def net() -> TestNet:
    return make_net(3, replay_window=20)


@pytest.fixture
def rigs(net: TestNet, tmp_path: Path) -> Iterator[tuple[ChainRig, ChainRig]]:
    """A leader and a replica on the same genesis, each with its own store."""
    leader, replica = ChainRig(tmp_path / "leader", net), ChainRig(tmp_path / "replica", net)
    try:
        yield leader, replica
    finally:
        leader.close()
        replica.close()


def follow(replica: ChainRig, *blocks: Block) -> None:
    """The replica validates and commits blocks the leader made."""
    for b in blocks:
        assert replica.chain.validate_block(b, replica.chain.head, now_ms=replica.now_ms), (
            f"block {b.header.height}"
        )
        replica.commit(b)


def etx(net: TestNet, rig: ChainRig, i: int = 0, **kw: object) -> object:
    return sign_tx(net.accounts[i], expiry=rig.chain.head.height + 5, **kw)  # type: ignore[arg-type]


# --- honest blocks --------------------------------------------------------------------------------


def test_replica_accepts_and_reproduces_the_leaders_blocks(
    net: TestNet, rigs: tuple[ChainRig, ChainRig]
) -> None:
    leader, replica = rigs
    b1 = leader.build_and_commit(*(etx(net, leader, i) for i in range(3)))  # type: ignore[arg-type]
    b2 = leader.build_and_commit(etx(net, leader, 1))  # type: ignore[arg-type]
    assert (b1.header.height, b1.header.tx_count, b2.header.tx_count) == (1, 3, 1)
    assert b2.header.acc_size == 4
    replica.now_ms = leader.now_ms
    follow(replica, b1, b2)
    assert replica.chain.head == leader.chain.head
    assert all(r.status is ReceiptStatus.OK for r in replica.receipts(b1) + replica.receipts(b2))
    assert len(leader.mempool) == 0


# --- header commitments ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["tx_root", "receipt_root", "acc_root", "state_hash"])
def test_refuses_a_wrong_commitment(
    net: TestNet, rigs: tuple[ChainRig, ChainRig], field: str
) -> None:
    leader, replica = rigs
    leader.admit(etx(net, leader, 0), etx(net, leader, 1))  # type: ignore[arg-type]
    block = leader.build()
    replica.now_ms = leader.now_ms
    bad = Block(header=replace(block.header, **{field: Digest(os.urandom(32))}), txs=block.txs)
    assert not replica.chain.validate_block(bad, replica.chain.head, now_ms=replica.now_ms)
    assert replica.chain.validate_block(block, replica.chain.head, now_ms=replica.now_ms)  # control


def test_refuses_wrong_acc_size_and_tx_count(net: TestNet, rigs: tuple[ChainRig, ChainRig]) -> None:
    leader, replica = rigs
    txs = [etx(net, leader, i) for i in range(3)]
    leader.admit(*txs)  # type: ignore[arg-type]
    block = leader.build()
    replica.now_ms = leader.now_ms
    h = block.header
    assert not replica.chain.validate_block(
        Block(header=replace(h, acc_size=h.acc_size + 1), txs=block.txs),
        replica.chain.head,
        now_ms=replica.now_ms,
    )
    # a header claiming fewer txs (with a tx dropped) keeps the original tx_root: refused
    short = Block(header=replace(h, tx_count=h.tx_count - 1), txs=block.txs[:-1])
    assert not replica.chain.validate_block(short, replica.chain.head, now_ms=replica.now_ms)
    # a header whose tx_count disagrees with its txs cannot even be built or decoded
    with pytest.raises(ValueError):
        Block(header=replace(h, tx_count=h.tx_count + 1), txs=block.txs)
    assert replica.chain.validate_block(block, replica.chain.head, now_ms=replica.now_ms)


# --- block rules on transactions ------------------------------------------------------------------


def _forged_rule_case(net: TestNet, leader: ChainRig, case: str) -> tuple[list[object], int]:
    """(txs, height of the parent to build on) for a block breaking `case`."""
    head = leader.chain.head.height
    k = net.accounts[0]
    if case == "duplicate_in_block":
        t = sign_tx(k, expiry=head + 5)
        return [t, sign_tx(k, expiry=head + 5), t], head
    if case == "duplicate_committed":
        t = sign_tx(k, expiry=head + 5)
        leader.build_and_commit(t)
        return [sign_tx(k, expiry=head + 5), t], head + 1
    if case == "expired":
        return [sign_tx(k, expiry=head)], head
    if case == "expiry_too_far":
        return [sign_tx(k, expiry=head + net.genesis.replay_window + 1)], head
    if case == "unknown_sender":
        return [sign_tx(net.outsider, expiry=head + 5)], head
    if case == "wrong_chain":
        return [sign_tx(k, expiry=head + 5, chain_id="another-chain")], head
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "duplicate_in_block",
        "duplicate_committed",
        "expired",
        "expiry_too_far",
        "unknown_sender",
        "wrong_chain",
    ],
)
def test_refuses_a_block_breaking_a_tx_rule(
    net: TestNet, rigs: tuple[ChainRig, ChainRig], case: str
) -> None:
    leader, replica = rigs
    leader.build_and_commit()  # an empty block 1, so "expired" has a head to expire under
    txs, parent_height = _forged_rule_case(net, leader, case)
    replica.now_ms = leader.now_ms
    follow(
        replica, *[leader.chain.get_committed_blocks(1, 100)[i][0] for i in range(parent_height)]
    )
    parent = replica.chain.head
    assert parent.height == parent_height
    block = forge_block(replica, parent, txs, ts=parent.timestamp_ms + 10)  # type: ignore[arg-type]
    assert not replica.chain.validate_block(block, parent, now_ms=replica.now_ms), case
    # control: with the block rules switched off the same block is accepted
    lax_check_tx(replica.chain.executor)
    assert replica.chain.validate_block(block, parent, now_ms=replica.now_ms), case


def test_refuses_a_bad_signature(net: TestNet, rigs: tuple[ChainRig, ChainRig]) -> None:
    leader, replica = rigs
    good = etx(net, leader, 0)
    forged = etx(net, leader, 1, bad_signature=True)
    # the pool trusts its caller to have checked signatures: a Byzantine leader packs it
    leader.admit(good, forged)  # type: ignore[arg-type]
    block = leader.build()
    assert block.header.tx_count == 2
    replica.now_ms = leader.now_ms
    assert not replica.chain.validate_block(block, replica.chain.head, now_ms=replica.now_ms)
    # control: a replica that had (wrongly) cached the signature as verified accepts it
    replica.rules.verified.mark((forged.tx_id,))
    assert replica.chain.validate_block(block, replica.chain.head, now_ms=replica.now_ms)


def test_refuses_bad_timestamps(net: TestNet, rigs: tuple[ChainRig, ChainRig]) -> None:
    leader, replica = rigs
    follow(replica, leader.build_and_commit())
    parent = replica.chain.head
    replica.now_ms = parent.timestamp_ms + 5_000
    t = sign_tx(net.accounts[0], expiry=parent.height + 5)
    for ts, ok in (
        (parent.timestamp_ms, False),  # not increasing
        (parent.timestamp_ms - 1, False),
        (replica.now_ms + 60_000, False),  # too far ahead of our clock
        (replica.now_ms + 1_000, True),  # a little ahead is tolerated
        (parent.timestamp_ms + 1, True),
    ):
        block = forge_block(replica, parent, [t], ts=ts, lax=False)
        assert replica.chain.validate_block(block, parent, now_ms=replica.now_ms) is ok, ts


def test_refuses_the_wrong_parent(net: TestNet, rigs: tuple[ChainRig, ChainRig]) -> None:
    leader, replica = rigs
    b1 = leader.build_and_commit(etx(net, leader, 0))  # type: ignore[arg-type]
    leader.admit(etx(net, leader, 1))  # type: ignore[arg-type]
    b2 = leader.build()
    replica.now_ms = leader.now_ms
    genesis_header = replica.chain.head
    follow(replica, b1)
    # validated against another parent than the one it names
    assert not replica.chain.validate_block(b2, genesis_header, now_ms=replica.now_ms)
    # a header naming a parent we never saw, at the right height
    stray = Block(header=replace(b2.header, parent_id=Digest(os.urandom(32))), txs=b2.txs)
    assert not replica.chain.validate_block(stray, replica.chain.head, now_ms=replica.now_ms)
    assert replica.chain.validate_block(b2, replica.chain.head, now_ms=replica.now_ms)


# --- contract failures, forks, restart ------------------------------------------------------------


def test_failed_call_is_included_with_a_failed_receipt_and_no_writes(
    net: TestNet, rigs: tuple[ChainRig, ChainRig]
) -> None:
    leader, replica = rigs
    h = leader.chain.head.height
    k = net.accounts[0]
    ok = sign_tx(k, expiry=h + 5, args=evidence_args("rec-1", data=b"first"))
    again = sign_tx(k, expiry=h + 5, args=evidence_args("rec-1", data=b"second"))
    bad_method = sign_tx(k, expiry=h + 5, method="no_such_method")
    bad_args = sign_tx(k, expiry=h + 5, args=["only-one-arg"])
    leader.admit(ok, again, bad_method, bad_args)
    block = leader.build()
    assert [t.tx_id for t in block.txs] == [ok.tx_id, again.tx_id, bad_method.tx_id, bad_args.tx_id]
    res = leader.chain._results[block.block_id]
    # writes of the block == writes of `ok` alone: execute [ok] on the same parent and time
    alone = forge_block(leader, leader.chain.head, [ok], ts=block.header.timestamp_ms, lax=False)
    assert alone.header.state_hash == block.header.state_hash
    leader.commit(block)
    statuses = [r.status for r in leader.receipts(block)]
    assert statuses == [
        ReceiptStatus.OK,
        ReceiptStatus.FAILED,
        ReceiptStatus.UNKNOWN_METHOD,
        ReceiptStatus.BAD_ARGUMENTS,
    ]
    assert all(r.error for r in leader.receipts(block)[1:])
    assert all(not r.events for r in leader.receipts(block)[1:])
    assert res.tx_ids == [t.tx_id for t in block.txs]
    got = leader.chain.executor.query("evidence", "get", ["rec-1"])
    assert _digest_in(got) == _digest_of(b"first")
    # the replica agrees and the failed txs count as committed (acc_size 4)
    replica.now_ms = leader.now_ms
    follow(replica, block)
    assert replica.chain.head.acc_size == 4


def _digest_of(data: bytes) -> bytes:
    from gmchain.crypto_sm import sm3_hash

    return sm3_hash(data)


def _digest_in(value: object) -> bytes:
    """Find the data digest in an evidence.get result, whatever its container shape."""
    if isinstance(value, dict):
        return value["data_digest"]  # type: ignore[no-any-return]
    if isinstance(value, list):
        pairs = [v for v in value if isinstance(v, list) and len(v) == 2]
        if pairs and all(isinstance(p[0], str) for p in pairs):
            return _digest_in(dict(pairs))  # type: ignore[arg-type]
    raise AssertionError(f"no data_digest in {value!r}")


def test_forks_keep_speculative_state_apart(net: TestNet, rigs: tuple[ChainRig, ChainRig]) -> None:
    leader, replica = rigs
    h = leader.chain.head.height
    k = net.accounts[0]
    a = sign_tx(k, expiry=h + 8, args=evidence_args("fork-rec", data=b"branch A"))
    b = sign_tx(k, expiry=h + 8, args=evidence_args("fork-rec", data=b"branch B"))
    genesis = leader.chain.head
    leader.admit(a)
    child_a = leader.build(genesis)
    leader.mempool.remove([a.tx_id])
    leader.admit(b)
    child_b = leader.build(genesis)
    leader.admit(a)  # a is pending again: not in B's branch, so B's child may include it
    assert child_a.header.parent_id == child_b.header.parent_id == genesis.block_id
    assert child_a.header.state_hash != child_b.header.state_hash
    # on each branch "fork-rec" is new, so both submissions succeed
    res_a = leader.chain._results[child_a.block_id]
    res_b = leader.chain._results[child_b.block_id]
    assert [r.status for r in res_a.receipts] == [ReceiptStatus.OK]
    assert [r.status for r in res_b.receipts] == [ReceiptStatus.OK]
    # a grandchild on B includes a (exclusion sets are per branch) and a fails there, as
    # fork-rec exists on B's branch with B's digest
    grand_b = leader.build(child_b.header)
    assert [t.tx_id for t in grand_b.txs] == [a.tx_id]
    res_gb = leader.chain._results[grand_b.block_id]
    assert [r.status for r in res_gb.receipts] == [ReceiptStatus.FAILED]
    # a grandchild on A excludes a (already in A) and takes b, which fails there in turn
    grand_a = leader.build(child_a.header)
    assert [t.tx_id for t in grand_a.txs] == [b.tx_id]
    res_ga = leader.chain._results[grand_a.block_id]
    assert [r.status for r in res_ga.receipts] == [ReceiptStatus.FAILED]
    # the replica validates both branches independently, then commits B's
    replica.now_ms = leader.now_ms
    for blk, parent in ((child_a, genesis), (child_b, genesis), (grand_b, child_b.header)):
        assert replica.chain.validate_block(blk, parent, now_ms=replica.now_ms)
    for rig in (leader, replica):
        rig.commit(child_b, grand_b)
        assert _digest_in(rig.chain.executor.query("evidence", "get", ["fork-rec"])) == (
            _digest_of(b"branch B")
        )
        assert rig.store.get_tx_location(a.tx_id) == (2, 0)
        assert Receipt.decode(rig.store.get_receipt(a.tx_id) or b"").status is ReceiptStatus.FAILED
    assert leader.chain.head == replica.chain.head


def test_restart_keeps_the_head_and_reexecution_reproduces_state(
    net: TestNet, tmp_path: Path
) -> None:
    rig = ChainRig(tmp_path / "a", net)
    blocks = []
    for i in range(4):
        h = rig.chain.head.height
        txs = [sign_tx(net.accounts[j], expiry=h + 5) for j in range(i % 3 + 1)]
        blocks.append(rig.build_and_commit(*txs))
    head, frontier = rig.chain.head, rig.chain.frontier
    rig.close()
    again = ChainRig(tmp_path / "a", net)
    try:
        assert again.chain.head == head
        assert again.chain.frontier.root() == frontier.root() == head.acc_root
        # it carries on: a new block on top validates on a fresh replica too
        blocks.append(again.build_and_commit(sign_tx(net.accounts[0], expiry=head.height + 3)))
        last = again.chain.head
    finally:
        again.close()
    fresh = ChainRig(tmp_path / "b", net)
    try:
        fresh.now_ms = last.timestamp_ms + 1
        follow(fresh, *blocks)
        assert fresh.chain.head == last
    finally:
        fresh.close()


def test_commit_without_prior_execution_executes_on_the_head(
    net: TestNet, rigs: tuple[ChainRig, ChainRig]
) -> None:
    """Sync/restart path: Chain.commit of a block it never validated re-executes it."""
    leader, replica = rigs
    b1 = leader.build_and_commit(etx(net, leader, 0), etx(net, leader, 1))  # type: ignore[arg-type]
    replica.commit(b1)
    assert replica.chain.head == leader.chain.head
    assert replica.receipts(b1) == leader.receipts(b1)


def test_pending_blocks_survive_a_restart(net: TestNet, tmp_path: Path) -> None:
    rig = ChainRig(tmp_path / "p", net)
    rig.admit(sign_tx(net.accounts[0], expiry=5))
    b1 = rig.build()
    rig.chain.persist_block(b1)
    rig.close()
    again = ChainRig(tmp_path / "p", net)
    try:
        assert [b.block_id for b in again.chain.pending_blocks()] == [b1.block_id]
    finally:
        again.close()

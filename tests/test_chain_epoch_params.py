"""Chain parameters decided by governance take effect at the epoch boundary (EPOCHS.md E11;
chain/core.py rule 8): block_max_txs, block_max_bytes, tx_max_bytes and replay_window of epoch e's
configuration bound the blocks of epoch e — the leader's build, a follower's validation and the
pool's admission — from e's first block on, and never the block that decided the change nor its
suffix. Real governance transactions (`set_param`) on a real chain library over a real store."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest

from gmchain.chain.txrules import Rejection, TxRejected
from gmchain.ledger.memstore import MemStore
from gmchain.ledger.types import Block, SignedTx
from tests.epoch_chain import Rig, make_rig
from tests.node_helpers import evidence_args, sign_tx

WINDOW = 200  # the genesis replay_window of tests/epoch_chain.py's chain


def _evidence(rig: Rig, *, expiry_in: int = 50, big: bool = False) -> SignedTx:
    args: list[Any] = evidence_args(f"r{rig.now}-{expiry_in}-{big}-{len(rig.mempool)}")
    if big:  # about 1.9 KB: above the smallest tx_max_bytes (1024)
        args[6] = [[f"k{i}", "x" * 200] for i in range(8)]
    return sign_tx(rig.net.accounts[1], expiry=rig.chain.head.height + expiry_in, args=args)


def _change_and_end_epoch(rig: Rig, name: str, value: int, extra: list[SignedTx]) -> Block:
    """E carries the set_param decision and `extra`; its suffix child commits it (epoch 1)."""
    for tx in [*rig.governance_txs("set_param", [name, value]), *extra]:
        rig.submit(tx)
    end = rig.build()
    assert end.header.epoch == 0 and len(end.txs) == 2 + len(extra)
    rig.extend(end)
    suffix = rig.build()
    assert suffix.txs == ()
    rig.commit([end], suffix)
    (switch,) = rig.switches
    assert switch.config.epoch == 1 and switch.config.param(name) == value
    return end


def test_block_max_txs_applies_from_the_first_block_of_the_next_epoch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = make_rig(MemStore())
    other = make_rig(MemStore(), net=rig.net)  # a follower: validates what the leader builds
    # Not before: E itself (epoch 0, default 5000) carries the decision and three more txs.
    end = _change_and_end_epoch(rig, "block_max_txs", 2, [_evidence(rig) for _ in range(3)])
    assert len(end.txs) == 5
    assert other.chain.validate_block(end, other.chain.head, now_ms=rig.now)
    # From epoch 1's first block: at most two, though four wait and the packing target is 50.
    waiting = [_evidence(rig) for _ in range(4)]
    for tx in waiting:
        rig.submit(tx)
    first = rig.build()
    assert first.header.epoch == 1 and len(first.txs) == 2
    rig.extend(first)
    second = rig.build()
    assert len(second.txs) == 2
    # A block of epoch 1 with three transactions is refused before anything is executed.
    caplog.set_level(logging.WARNING, logger="gmchain.chain")
    stuffed = Block(
        header=dataclasses.replace(first.header, tx_count=3), txs=(*first.txs, waiting[2])
    )
    assert not rig.chain.validate_block(stuffed, end.header, now_ms=rig.now)
    assert "too many transactions" in caplog.text


def test_replay_window_applies_from_the_first_block_of_the_next_epoch() -> None:
    rig = make_rig(MemStore())
    far = _evidence(rig, expiry_in=WINDOW - 10)  # inside the genesis window, beyond 20
    # Not before: E (epoch 0) carries a tx with expiry head + 190.
    end = _change_and_end_epoch(rig, "replay_window", 20, [far])
    assert far in end.txs
    head = rig.chain.head.height
    assert rig.chain.rules.window_at(head) == WINDOW  # E's own epoch
    assert rig.chain.rules.window_at(head + 1) == 20
    # Admission now answers for epoch 1's first block: head + 190 is too far, head + 20 is not.
    later = _evidence(rig, expiry_in=WINDOW - 10)
    with pytest.raises(TxRejected) as refused:
        rig.mempool.precheck(later, len(later.encode()), head)
    assert refused.value.rejection is Rejection.EXPIRY_TOO_FAR
    assert "window 20" in refused.value.message
    near = _evidence(rig, expiry_in=20)
    rig.submit(near)
    # The block rule (R5) of epoch 1: a tx admitted under the old window is not packed (and a
    # block carrying it would be refused: the executor's check is the one validation runs).
    with pytest.raises(TxRejected, match="window 20"):
        rig.chain.executor.check_tx(later, head + 1, None)
    first = rig.build()
    assert first.header.epoch == 1 and [t.tx_id for t in first.txs] == [near.tx_id]


def test_tx_max_bytes_applies_from_the_first_block_of_the_next_epoch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = make_rig(MemStore())
    other = make_rig(MemStore(), net=rig.net)
    big_before = _evidence(rig, big=True)
    assert len(big_before.encode()) > 1024
    # Not before: E (epoch 0, 64 KiB) carries a 1.9 KB transaction, and a follower accepts it.
    end = _change_and_end_epoch(rig, "tx_max_bytes", 1024, [big_before])
    assert other.chain.validate_block(end, other.chain.head, now_ms=rig.now)
    head = rig.chain.head.height
    # Admission for epoch 1 refuses a big transaction.
    big_after = _evidence(rig, big=True)
    with pytest.raises(TxRejected) as refused:
        rig.mempool.precheck(big_after, len(big_after.encode()), head)
    assert refused.value.rejection is Rejection.TOO_LARGE
    assert "1024" in refused.value.message
    # One admitted before the switch (add re-checks only the window) is not packed: it leaves
    # the pool as too large, and the small one is packed.
    rig.mempool.add(big_after, len(big_after.encode()), head, rig.now)
    small = _evidence(rig)
    rig.submit(small)
    first = rig.build()
    assert first.header.epoch == 1 and [t.tx_id for t in first.txs] == [small.tx_id]
    assert big_after.tx_id not in rig.mempool
    # A block of epoch 1 carrying it is refused (block rule), before execution.
    caplog.set_level(logging.WARNING, logger="gmchain.chain")
    stuffed = Block(
        header=dataclasses.replace(first.header, tx_count=2), txs=(*first.txs, big_after)
    )
    assert not rig.chain.validate_block(stuffed, end.header, now_ms=rig.now)
    assert "exceeds this epoch's 1024" in caplog.text


def test_block_max_bytes_applies_from_the_first_block_of_the_next_epoch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = make_rig(MemStore())
    limit = 64 * 1024  # the smallest block_max_bytes
    end = _change_and_end_epoch(rig, "block_max_bytes", limit, [])
    assert rig.chain.validators.config(1).param("block_max_bytes") == limit
    # 40 transactions of about 1.9 KB (76 KB): epoch 1's blocks take what fits in 64 KiB.
    txs = [_evidence(rig, big=True) for _ in range(40)]
    for tx in txs:
        rig.submit(tx)
    first = rig.build()
    size = sum(len(t.encode()) for t in first.txs)
    assert first.header.epoch == 1 and 0 < len(first.txs) < 40 and size <= limit
    assert size + len(txs[len(first.txs)].encode()) > limit
    caplog.set_level(logging.WARNING, logger="gmchain.chain")
    stuffed = Block(
        header=dataclasses.replace(first.header, tx_count=len(first.txs) + 1),
        txs=(*first.txs, txs[len(first.txs)]),
    )
    assert not rig.chain.validate_block(stuffed, end.header, now_ms=rig.now)
    assert f"transactions exceed {limit} bytes" in caplog.text

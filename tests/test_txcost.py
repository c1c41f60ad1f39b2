"""Session 8's per-transaction CPU cuts keep every byte and every refusal (issue 15 item 1), and
the probe that measures them (bench/txcost.py) drives a real leader and follower."""

from __future__ import annotations

import dataclasses
import random
import re
from pathlib import Path

import pytest

from gmchain.bench.txcost import STAGES, Node, Probe, _per_tx_us
from gmchain.bench.workload import evidence_args
from gmchain.chain.executor import BlockContext
from gmchain.chain.txrules import Rejection, TxRejected, TxRules
from gmchain.consensus.messages import CommitProof
from gmchain.contracts import default_registry
from gmchain.contracts.argshape import shape_args
from gmchain.contracts.framework import Arg, BadArguments
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.codec import DecodeError, encode
from gmchain.ledger.jsonvalues import JsonFormatError, parse_hex
from gmchain.ledger.tx import Event
from gmchain.ledger.types import (
    Block,
    Height,
    QuorumCert,
    ReceiptStatus,
    SignedTx,
    TxBody,
    compute_signing_root,
)

_KEY = PrivateKey.generate()


def _tx(args: tuple[object, ...], nonce: int = 1) -> SignedTx:
    body = TxBody(
        chain_id="c",
        sender=_KEY.public_key.to_bytes(),
        nonce=nonce,
        expiry=Height(10),
        contract="evidence",
        method="submit",
        args=args,
    )
    return SignedTx(body=body, signature=_KEY.sign(body.compute_id()))


_ARGS: list[tuple[object, ...]] = [
    (),
    ("a",),
    ("ü€😀", b"\x00" * 300, -(2**63), 2**64 - 1, None, True, False),
    (["x", ["y", [b"z", [1, [2]]]]], [], [[]]),
    ("x" * 40_000,),  # a body above 16 bits of length: str 32 / bin 32 headers inside
    tuple(range(64)),
]


@pytest.mark.parametrize("args", _ARGS)
def test_decoded_tx_id_is_the_signing_root_of_the_body(args: tuple[object, ...]) -> None:
    """decode_tx hashes the body's bytes as they are in the raw tx: the same id as the
    signing root of the body (ledger/tx.py rule 1), for every shape of body."""
    tx = _tx(args)
    raw = tx.encode()
    decoded = SignedTx.decode_tx(raw)
    expected = compute_signing_root("tx", decoded.body.to_fields())
    assert decoded.tx_id == expected == tx.tx_id
    assert decoded == tx and decoded.encode() == raw


def test_tx_id_is_computed_from_the_current_body_after_replace() -> None:
    tx = _tx(("a",))
    assert tx.tx_id
    other = dataclasses.replace(tx, body=dataclasses.replace(tx.body, nonce=2))
    assert other.tx_id == other.body.compute_id() != tx.tx_id


def test_decode_tx_still_refuses_what_it_refused() -> None:
    raw = _tx(("a",)).encode()
    for bad in (raw + b"\x00", raw[:-1], b"\x92" + raw[1:], raw[:-66] + b"\xc4\x3f" + raw[-64:-1]):
        with pytest.raises(DecodeError):
            SignedTx.decode_tx(bad)


_HEX_RE = re.compile(r"0x(?:[0-9a-fA-F]{2})*")  # the regex parse_hex used before session 8


def _old_parse_hex(s: str) -> bytes:
    if not s.startswith("0x"):
        raise JsonFormatError("value: hex string must start with 0x")
    if _HEX_RE.fullmatch(s) is None:
        if len(s) % 2:
            raise JsonFormatError("value: hex string has an odd number of digits")
        raise JsonFormatError("value: not a hex string")
    return bytes.fromhex(s[2:])


def _outcome(fn: object, s: str) -> tuple[str, object]:
    try:
        return "ok", fn(s)  # type: ignore[operator]
    except JsonFormatError as exc:
        return "error", str(exc)


def test_parse_hex_answers_as_the_regex_did() -> None:
    rng = random.Random(8)
    cases = ["0x", "0x00", "0xAbCd", "0x0", "0x 00", "0x00 ", "0x0 0", "0x0g", "0x٠٠", "0X00"]
    cases += ["0x\u00a000", "0x0\t0", "0x00\n", "0x\n00", "00", "0x+1", "0x-1", "0x0x"]
    alphabet = "0123456789abcdefABCDEFgx \t\n٠"
    for _ in range(3000):
        cases.append("0x" + "".join(rng.choice(alphabet) for _ in range(rng.randrange(8))))
    for s in cases:
        assert _outcome(parse_hex, s) == _outcome(_old_parse_hex, s), s


def test_str_arguments_are_still_measured_in_utf8_bytes() -> None:
    arg = Arg("s", str, max_len=4)
    assert arg.check("abcd") == "abcd"
    assert arg.check("éé") == "éé"  # 4 bytes
    with pytest.raises(BadArguments, match="5 bytes of UTF-8"):
        arg.check("ééa")
    with pytest.raises(BadArguments, match="lone surrogate"):
        arg.check("\ud800")
    with pytest.raises(BadArguments, match="control character"):
        arg.check("a\x00")


def test_event_fields_are_still_checked() -> None:
    ok = Event(contract="c", name="n", fields=(("a", 1), ("b", b"x"), ("c", None), ("d", [1])))
    assert encode(ok.to_fields())
    for bad in (2**64, -(2**63) - 1, 1.5, {"k": 1}, [[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]):
        with pytest.raises((ValueError, TypeError)):
            Event(contract="c", name="n", fields=(("a", bad),))


def test_the_probe_runs_every_stage_on_a_leader_and_a_follower(tmp_path: Path) -> None:
    probe = Probe(tmp_path, keys=4, block_txs=20, blocks=2)
    try:
        r = probe.run_round()
        heads = (probe.leader.chain.head, probe.follower.chain.head)
        assert heads[0].height == 2 and heads[0].block_id == heads[1].block_id
        tx_id = next(iter(probe.leader.chain.recent[-1][1]))
        where = probe.leader.store.get_tx_location(tx_id)
        assert where == probe.follower.store.get_tx_location(tx_id) == (2, where[1])
        assert r.txs == 40 and len(probe.leader.mempool) == len(probe.follower.mempool) == 0
        us = _per_tx_us([r])
        assert set(us) == set(STAGES) and all(v > 0 for v in us.values())
    finally:
        probe.close()


# --- framework rule 2b: a call admitted here is shaped, not checked again, in execution ------


def _valid(arg: Arg, tuples: bool) -> object:
    """A value `arg` accepts (lists as tuples when `tuples`: check_args turns them into lists)."""
    if arg.kind is str:
        return arg.choices[0] if arg.choices else "a" * max(1, arg.min_len or 1)
    if arg.kind is bytes:
        return b"\x01" * (arg.size if arg.size is not None else (arg.min_len or 0))
    if arg.kind is int:
        return arg.min or 0
    if arg.kind is bool:
        return True
    assert arg.items is not None
    item = [_valid(sub, tuples) for sub in arg.items]
    items = [tuple(item) if tuples else item] * max(1, arg.min_len or 0)
    return tuple(items) if tuples else items


def test_shape_args_returns_what_check_args_returns_for_every_method() -> None:
    registry = default_registry()
    specs = [s for c in registry.names for s in type(registry.contract(c)).specs()]
    assert len(specs) > 10
    for spec in specs:
        for tuples in (False, True):
            for omit in (False, True):
                args = [_valid(a, tuples) for a in spec.args]
                while omit and args and spec.args[len(args) - 1].optional:
                    args.pop()  # trailing optional arguments left out
                checked = spec.check_args(args)
                shaped = shape_args(spec.args, args)
                assert shaped == checked, spec.name
                assert [type(v) for v in shaped] == [type(v) for v in checked]
                for s, c in zip(shaped, checked, strict=True):
                    if isinstance(c, list):
                        assert [type(i) for i in s] == [type(i) for i in c]


def test_only_a_call_that_passed_r6_is_remembered() -> None:
    rules = TxRules.with_new_caches(chain_id="c", replay_window=100, registry=default_registry())
    good = _tx(tuple(evidence_args(1, "t")))
    bad = _tx(("not enough",))
    rules.check_call(good)
    with pytest.raises(TxRejected) as exc:
        rules.check_call(bad)
    assert exc.value.rejection is Rejection.BAD_ARGUMENTS
    assert good.tx_id in rules.checked_calls and bad.tx_id not in rules.checked_calls


def test_a_node_that_admitted_nothing_computes_the_same_blocks(tmp_path: Path) -> None:
    """The leader and follower of the probe executed calls their admission had checked; a
    third node, whose admission saw none of them, checks every call in execution and must
    compute the same receipts and state (the same block ids)."""
    (tmp_path / "p").mkdir()
    probe = Probe(tmp_path / "p", keys=4, block_txs=10, blocks=2)
    third = Node.open(tmp_path / "third", probe.genesis, 10)
    try:
        probe.run_round()
        assert len(probe.leader.rules.checked_calls) == 20
        parent = third.chain.head
        for h in (1, 2):
            raw = probe.leader.store.get_block_by_height(h)
            assert raw is not None
            block = Block.decode(raw)
            assert third.chain.validate_block(block, parent, now_ms=block.header.timestamp_ms)
            assert len(third.rules.checked_calls) == 0
            proof = CommitProof(
                header=block.header,
                qc=QuorumCert(block_id=block.block_id, round=block.header.round, height=h),
            )
            third.chain.commit([block], proof)
            parent = block.header
        assert third.chain.head.block_id == probe.follower.chain.head.block_id
    finally:
        probe.close()
        third.store.close()


def test_a_call_this_node_never_admitted_is_checked_in_execution(tmp_path: Path) -> None:
    """A faulty leader's block may carry a call that breaks R6 (not a block rule): a node that
    never admitted it checks it in execution, and the receipt says BAD_ARGUMENTS."""
    probe = Probe(tmp_path, keys=2, block_txs=1, blocks=1)
    try:
        chain = probe.follower.chain
        key = probe.senders[0]
        args = evidence_args(1, "t")
        args[4] = b"\x00" * 31  # data_digest one byte short
        body = TxBody(
            chain_id=probe.genesis.chain_id,
            sender=key.public_key.to_bytes(),
            nonce=1,
            expiry=Height(100),
            contract="evidence",
            method="submit",
            args=tuple(args),
        )
        bad = SignedTx(body=body, signature=key.sign(body.compute_id()))
        good = SignedTx.decode_tx(probe.sign(1)[0])
        chain.rules.check_call(good)  # admitted here: the other one never was
        head = chain.head
        ctx = BlockContext(
            chain_id=chain.chain_id,
            height=head.height + 1,
            timestamp_ms=head.timestamp_ms + 1,
            parent_state_hash=head.state_hash,
            parent_frontier=chain.frontier,
        )
        result, _ = chain.executor.execute(ctx, [bad, good], None, strict=True)
        refused, accepted = result.receipts
        assert refused.status is ReceiptStatus.BAD_ARGUMENTS
        assert refused.error == "argument 'data_digest' must be 32 bytes, got 31"
        assert accepted.status is ReceiptStatus.OK
    finally:
        probe.close()

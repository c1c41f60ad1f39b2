"""Session 8's per-transaction CPU cuts keep every byte and every refusal (issue 15 item 1), and
the probe that measures them (bench/txcost.py) drives a real leader and follower."""

from __future__ import annotations

import dataclasses
import random
import re
from pathlib import Path

import pytest

from gmchain.bench.txcost import STAGES, Probe, _per_tx_us
from gmchain.contracts.framework import Arg, BadArguments
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.codec import DecodeError, encode
from gmchain.ledger.jsonvalues import JsonFormatError, parse_hex
from gmchain.ledger.tx import Event
from gmchain.ledger.types import Height, SignedTx, TxBody, compute_signing_root

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

"""What an independent implementer had to find out by probing a node, now stated in the docs
(docs/protocol.md, docs/rpc.md, docs/crypto.md), checked against the real node and code:

- an empty consistency proof between sizes 0 < m < n is refused (protocol.md section 7);
- a body that breaks a TxBody field rule is refused as malformed, -31001 (protocol.md section 5);
- trailing optional contract arguments may be omitted, which changes the tx id but not the effect;
  a missing required argument commits with BAD_ARGUMENTS (protocol.md section 5);
- which error each "not there" read returns (docs/rpc.md, "Absent things");
- a block's `raw` in JSON is its header's encoding (tag 5), not the Block's (docs/rpc.md);
- the validator-set fingerprint value docs/rpc.md quotes is the node's, over protocol.md's
  example genesis;
- the SM2 curve constants of docs/crypto.md are the code's.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gmchain.chain.lightclient import compute_validator_set_fingerprint
from gmchain.crypto_sm import PrivateKey, params
from gmchain.ledger.codec import decode, encode
from gmchain.ledger.jsonfmt import block_to_json
from gmchain.ledger.merkle import compute_root, leaf_hash, node_hash, verify_consistency
from gmchain.ledger.proofs import compute_consistency_proof
from gmchain.ledger.types import (
    BlockHeader,
    GenesisValidator,
    ReceiptStatus,
    compute_signing_root,
)
from gmchain.node.api import ApiError, ErrorCode
from gmchain.node.service import NodeService
from tests.node_helpers import CHAIN_ID, TestNet, evidence_args, make_net, running_service

ROOT = Path(__file__).resolve().parent.parent


def test_an_empty_consistency_proof_is_refused_between_distinct_sizes() -> None:
    """Section 7's first line (RFC 9162 §2.1.4.2 step 1), for powers of two and others alike."""
    entries = [b"e%d" % i for i in range(12)]
    nodes: dict[tuple[int, int], bytes] = {}
    for i, e in enumerate(entries):
        nodes[(0, i)] = leaf_hash(e)
        level, index = 0, i
        while index & 1:  # complete every perfect subtree this leaf closes
            nodes[(level + 1, index >> 1)] = node_hash(
                nodes[(level, index - 1)], nodes[(level, index)]
            )
            level, index = level + 1, index >> 1
    for m in range(1, 12):
        for n in range(m + 1, 13):
            r1, r2 = compute_root(entries[:m]), compute_root(entries[:n])
            proof = compute_consistency_proof(lambda lv, ix: nodes.get((lv, ix)), m, n).proof
            assert verify_consistency(m, n, r1, r2, proof)  # the control: a real proof holds
            assert not verify_consistency(m, n, r1, r2, [])
    root = compute_root(entries[:5])
    assert verify_consistency(0, 5, compute_root([]), root, [])
    assert not verify_consistency(0, 5, compute_root([]), root, [root])
    assert verify_consistency(5, 5, root, root, [])
    assert not verify_consistency(5, 5, root, root, [root])


def test_the_sm2_constants_of_crypto_md_are_the_codes() -> None:
    doc = (ROOT / "docs" / "crypto.md").read_text()
    table = dict(re.findall(r"^\| `(p|a|b|n|Gx|Gy)` \| `([0-9A-F]{64})` \|$", doc, re.M))
    code = {"p": params.P, "a": params.A, "b": params.B, "n": params.N}
    code |= {"Gx": params.GX, "Gy": params.GY}
    assert {k: int(v, 16) for k, v in table.items()} == code
    p, a, b, gx, gy = code["p"], code["a"], code["b"], code["Gx"], code["Gy"]
    assert a == p - 3 and (gy * gy - (gx**3 + a * gx + b)) % p == 0  # G is on the curve


def test_rpc_md_fingerprint_is_the_nodes_over_the_example_genesis() -> None:
    protocol = (ROOT / "docs" / "protocol.md").read_text()
    text = re.search(r"<!-- example: genesis_json -->\n```json\n(.*?)\n```", protocol, re.S)
    assert text is not None
    genesis = json.loads(text.group(1))
    validators = [
        GenesisValidator(pubkey=bytes.fromhex(v["pubkey"]), power=v["power"], org=v["org"])
        for v in genesis["validators"]
    ]
    value = compute_validator_set_fingerprint(validators).hex()
    rpc = (ROOT / "docs" / "rpc.md").read_text()
    section = rpc[rpc.index("`validator_set` is") :][:1200]
    assert f"fingerprint `{value}`" in section
    assert f"validator_set = {value}" in protocol
    assert "No `0x00` byte" in section


# --- against a running node (in-process service, real LevelDB, real signatures) ----------------


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[tuple[NodeService, TestNet]]:
    net = make_net(1, replay_window=50)
    async with running_service(tmp_path, net) as service:
        yield service, net


def _raw_tx(key: PrivateKey, body: list[Any]) -> bytes:
    """A SignedTx whose body fields are written as given (not through TxBody's checks), signed."""
    tx_id = compute_signing_root("tx", body)
    return encode([2, body, key.sign(tx_id)])


def _body(key: PrivateKey, exp: int, **change: Any) -> list[Any]:
    fields = {
        "chain_id": CHAIN_ID,
        "sender": key.public_key.to_bytes(),
        "nonce": int.from_bytes(os.urandom(7), "big"),
        "expiry": exp,
        "contract": "evidence",
        "method": "submit",
        "args": evidence_args("r" + os.urandom(6).hex()),
    } | change
    return [1, *fields.values()]


async def _code(service: NodeService, raw: bytes) -> ErrorCode:
    with pytest.raises(ApiError) as info:
        await service.submit_raw_tx(raw)
    return info.value.code


async def _commit(service: NodeService, raw: bytes) -> Any:
    tx_id = await service.submit_raw_tx(raw)
    got = await service.wait_tx(tx_id, 10)
    assert got is not None, "no receipt within 10 s"
    return tx_id, got[0]


async def test_txbody_field_rules_are_refused_as_malformed(
    svc: tuple[NodeService, TestNet],
) -> None:
    service, net = svc
    key, exp = net.accounts[0], service.height() + 10
    for change in (
        {"contract": ""},
        {"contract": "e" * 33},
        {"method": ""},
        {"method": "s" * 33},
        {"chain_id": ""},
        {"chain_id": "c" * 65},
        {"nonce": -1},
        {"expiry": 0},
        {"expiry": -1},
    ):
        code = await _code(service, _raw_tx(key, _body(key, exp, **change)))
        assert code is ErrorCode.BAD_ENCODING, change
    # the bounds themselves are admitted: nonce 0 and 2^64-1 commit
    for nonce in (0, 2**64 - 1):
        _, receipt = await _commit(service, _raw_tx(key, _body(key, exp, nonce=nonce)))
        assert receipt.status is ReceiptStatus.OK


async def test_trailing_optional_arguments_may_be_omitted(
    svc: tuple[NodeService, TestNet],
) -> None:
    service, net = svc
    key, exp = net.accounts[0], service.height() + 10
    nine = evidence_args("opt-1")
    assert len(nine) == 9 and nine[-1] is None  # prev_record_id, optional
    eight = _body(key, exp, args=nine[:8], nonce=7)
    assert compute_signing_root("tx", eight) != compute_signing_root(
        "tx", _body(key, exp, args=nine, nonce=7)
    )
    tx_id, receipt = await _commit(service, _raw_tx(key, eight))
    assert receipt.status is ReceiptStatus.OK and tx_id == compute_signing_root("tx", eight)
    # level (position 7) is not optional: omitting it, or sending a tenth argument, is refused at
    # admission (chain/txrules.py R6; a faulty leader's block would commit it as BAD_ARGUMENTS)
    short = _raw_tx(key, _body(key, exp, args=nine[:7]))
    assert await _code(service, short) is ErrorCode.BAD_ARGUMENTS
    long = _raw_tx(key, _body(key, exp, args=[*nine, None]))
    assert await _code(service, long) is ErrorCode.BAD_ARGUMENTS


async def _call(service: NodeService, contract: str, method: str, args: list[Any]) -> Any:
    return service.call(contract, method, args)


async def test_what_each_absent_thing_answers(svc: tuple[NodeService, TestNet]) -> None:
    """docs/rpc.md "Absent things": null for an unknown object, -31101 for a proof of something
    not committed, -31103 for a height outside [0, head]."""
    service, net = svc
    key = net.accounts[0]
    tx_id, _ = await _commit(service, _raw_tx(key, _body(key, service.height() + 10)))
    head = service.height()
    unknown = os.urandom(32)
    assert service.get_block(head + 1) is None
    assert service.get_block_summary(head + 1) is None
    assert service.get_block_by_hash(unknown) is None
    assert service.get_tx(unknown) is None and service.get_receipt(unknown) is None

    async def code(call: Any) -> ErrorCode:
        with pytest.raises(ApiError) as info:
            await call
        return info.value.code

    assert await code(service.tx_proof(unknown)) is ErrorCode.NOT_FOUND
    assert await code(service.tx_proof(tx_id, at_height=head + 1)) is ErrorCode.BAD_RANGE
    assert await code(service.commit_proof(head + 1)) is ErrorCode.BAD_RANGE
    assert await code(service.commit_proof(head + 1000)) is ErrorCode.BAD_RANGE
    assert await code(service.consistency_proof(0, head + 1)) is ErrorCode.BAD_RANGE
    assert await code(service.consistency_proof(1, 0)) is ErrorCode.BAD_RANGE
    assert await code(_call(service, "nope", "get", [])) is ErrorCode.QUERY_FAILED
    assert await code(_call(service, "evidence", "nope", [])) is ErrorCode.QUERY_FAILED
    assert service.call("evidence", "get", ["no-such-record"]) is None
    assert service.call("evidence", "flow", ["no-such-flow"]) is None  # start, limit left out
    # a block's raw is its header (tag 5); its hash is that header's id
    block = service.get_block(head)
    assert block is not None
    shown = block_to_json(block, True)
    raw = bytes.fromhex(shown["raw"][2:])
    assert decode(raw)[0] == 5 and BlockHeader.decode(raw) == block.header
    assert shown["hash"] == "0x" + compute_signing_root("header", decode(raw)).hex()
    # and the present ones answer
    assert (await service.commit_proof(head - 1))["height"] == head - 1
    assert (await service.tx_proof(tx_id))["tx_id"] == "0x" + tx_id.hex()

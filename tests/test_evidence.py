"""Rule tests for contracts/evidence.py (rules E1-E7), through the miniature executor.

Attestations use real SM2 signatures made with crypto_sm (OpenSSL) and, as an independent check,
with the pure-Python gmssl package.
"""

from __future__ import annotations

import itertools
import json
import secrets
from typing import Any

import pytest

from gmchain.contracts.evidence import (
    FLOW_SHAPE,
    MAX_ATTESTATIONS,
    RECORD_FIELDS,
    RECORD_SHAPE,
    VERIFY_SHAPE,
    EvidenceContract,
    attest_message,
    compute_record_hash,
)
from gmchain.contracts.framework import Registry
from gmchain.contracts.keys import address_of
from gmchain.contracts.membership import MembershipContract
from gmchain.contracts.testing import Harness, Outcome
from gmchain.crypto_sm import PrivateKey, sm3_hash
from gmchain.ledger.codec import decode, encode
from gmchain.ledger.jsonfmt import camel_case, view_to_json
from gmchain.ledger.types import Event, ReceiptStatus

CHAIN = "gmchain-test"
KEY_A, KEY_A2, KEY_B = (PrivateKey.generate() for _ in range(3))
ADMIN_A, MEMBER_A, ADMIN_B = (k.public_key.to_bytes() for k in (KEY_A, KEY_A2, KEY_B))
GENESIS = [
    (ADMIN_A, "firm-a", "admin"),
    (MEMBER_A, "firm-a", "member"),
    (ADMIN_B, "firm-b", "admin"),
]
INVESTOR = PrivateKey.generate()
FLOW = "PF-2024-0001"
STEPS = [
    ("qi-1", "qualified-investor-check", b"assets statement"),
    ("rd-1", "risk-disclosure", b"risk disclosure, signed"),
    ("cs-1", "contract-signing", b"fund contract"),
    ("or-1", "order", b"subscription order"),
]


def registry(verifier: Any = None) -> Registry:
    return Registry([MembershipContract(verifier), EvidenceContract(verifier)])


@pytest.fixture
def chain() -> Harness:
    return Harness(registry(), GENESIS, chain_id=CHAIN)


def ok(outcome: Outcome) -> Outcome:
    assert outcome.status is ReceiptStatus.OK, outcome.error
    return outcome


def failed(outcome: Outcome, message: str, status: ReceiptStatus = ReceiptStatus.FAILED) -> None:
    assert outcome.error == message
    assert outcome.status is status


def submit_args(
    record_id: str,
    flow_id: str = FLOW,
    prev: str | None = None,
    *,
    step: str = "qualified-investor-check",
    raw: bytes = b"raw",
    metadata: list[list[str]] | None = None,
    level: int = 3,
    storage_ref: str | None = None,
) -> list[Any]:
    return [
        record_id,
        flow_id,
        "private-fund-sale",
        step,
        sm3_hash(raw),
        storage_ref,
        [["investor", "inv-001"], ["product", "PF-X"]] if metadata is None else metadata,
        level,
        prev,
    ]


def submit_flow(chain: Harness, sender: bytes = ADMIN_A) -> list[Outcome]:
    outs = []
    prev = None
    for rid, step, raw in STEPS:
        outs.append(
            ok(
                chain.call(
                    sender, "evidence", "submit", submit_args(rid, prev=prev, step=step, raw=raw)
                )
            )
        )
        prev = rid
    return outs


def attest_args(
    record_id: str, key: PrivateKey, role: str = "investor", raw: bytes = b"assets statement"
) -> list[Any]:
    msg = attest_message(CHAIN, record_id, sm3_hash(raw))
    return [record_id, key.public_key.to_bytes(), role, key.sign(msg)]


# --- submit -----------------------------------------------------------------------------------


def test_submit_first_record(chain: Harness) -> None:
    args = submit_args("qi-1", storage_ref="oss://bucket/qi-1.sealed")
    out = ok(chain.call(MEMBER_A, "evidence", "submit", args))
    rec = dict(chain.query("evidence", "get", ["qi-1"]))
    assert [n for n, _ in chain.query("evidence", "get", ["qi-1"])] == [
        *RECORD_FIELDS,
        "record_hash",
        "attestations",
    ]
    assert rec["org"] == "firm-a" and rec["flow_id"] == FLOW and rec["seq"] == 0
    assert rec["data_digest"] == sm3_hash(b"raw") and rec["level"] == 3
    assert rec["storage_ref"] == "oss://bucket/qi-1.sealed"
    assert rec["metadata"] == [["investor", "inv-001"], ["product", "PF-X"]]
    assert rec["prev_record_id"] is None and rec["prev_hash"] == bytes(32)
    assert rec["submitter"] == address_of(MEMBER_A) and rec["chain_id"] == CHAIN
    assert rec["height"] == chain.height and rec["timestamp_ms"] == chain.timestamp_ms
    assert rec["tx_id"] == sm3_hash(b"tx" + chain.height.to_bytes(8, "big"))
    assert rec["attestations"] == []
    # the record hash is the documented construction over the fields, recomputed independently
    values = [rec[n] for n in RECORD_FIELDS]
    expected = sm3_hash(b"GMCHAIN/EVIDENCE-RECORD/v1\x00" + encode(values))
    assert rec["record_hash"] == expected == compute_record_hash(values)
    assert out.result == [["record_id", "qi-1"], ["seq", 0], ["record_hash", expected]]
    assert out.events == (
        Event(
            contract="evidence",
            name="EvidenceSubmitted",
            fields=(
                ("record_id", "qi-1"),
                ("flow_id", FLOW),
                ("org", "firm-a"),
                ("step", "qualified-investor-check"),
                ("record_hash", expected),
            ),
        ),
    )


def test_whole_flow_is_hash_linked(chain: Harness) -> None:
    outs = submit_flow(chain)
    flow = dict(chain.query("evidence", "flow", [FLOW]))
    assert flow["count"] == 4 and flow["org"] == "firm-a" and flow["start"] == 0
    assert flow["head_record_id"] == "or-1"
    records = [dict(r) for r in flow["records"]]
    assert [r["record_id"] for r in records] == [s[0] for s in STEPS]
    assert [r["seq"] for r in records] == [0, 1, 2, 3]
    assert records[0]["prev_hash"] == bytes(32)
    for prev, cur in itertools.pairwise(records):
        assert cur["prev_hash"] == prev["record_hash"]
        assert cur["prev_record_id"] == prev["record_id"]
    assert flow["head_hash"] == records[-1]["record_hash"] == dict(outs[-1].result)["record_hash"]
    # paging
    page = dict(chain.query("evidence", "flow", [FLOW, 1, 2]))
    assert [dict(r)["record_id"] for r in page["records"]] == ["rd-1", "cs-1"]
    assert dict(chain.query("evidence", "flow", [FLOW, 9]))["records"] == []
    assert chain.query("evidence", "flow", ["no-such-flow"]) is None
    # verification
    v = dict(chain.query("evidence", "verify_flow", [FLOW]))
    assert v == {
        "flow_id": FLOW,
        "intact": True,
        "count": 4,
        "start": 0,
        "checked": 4,
        "head_hash": flow["head_hash"],
        "problem": None,
    }
    assert dict(chain.query("evidence", "verify_flow", [FLOW, 2, 1]))["checked"] == 1
    assert dict(chain.query("evidence", "verify_flow", [FLOW, 2]))["intact"] is True
    assert chain.query("evidence", "verify_flow", ["no-such-flow"]) is None


def test_by_digest(chain: Harness) -> None:
    submit_flow(chain)
    ok(chain.call(ADMIN_B, "evidence", "submit", submit_args("b-1", "F-B", raw=b"fund contract")))
    assert chain.query("evidence", "by_digest", [sm3_hash(b"fund contract")]) == ["b-1", "cs-1"]
    assert chain.query("evidence", "by_digest", [sm3_hash(b"fund contract"), 1]) == ["b-1"]
    assert chain.query("evidence", "by_digest", [sm3_hash(b"nothing")]) == []


def test_sender_needs_an_org(chain: Harness) -> None:
    failed(
        chain.call(
            PrivateKey.generate().public_key.to_bytes(), "evidence", "submit", submit_args("x")
        ),
        "the sender has no account in any org; only an org's accounts can submit evidence",
    )


def test_record_id_is_used_once(chain: Harness) -> None:
    ok(chain.call(ADMIN_A, "evidence", "submit", submit_args("qi-1")))
    failed(
        chain.call(ADMIN_B, "evidence", "submit", submit_args("qi-1", "F-B")),
        f"record id 'qi-1' already exists (in flow '{FLOW}')",
    )


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ([["b", "1"], ["a", "2"]], "metadata keys must be in ascending order: 'a' comes after 'b'"),
        ([["a", "1"], ["a", "2"]], "metadata key 'a' appears twice; keys must be unique"),
    ],
)
def test_metadata_order(chain: Harness, metadata: list[list[str]], message: str) -> None:
    failed(chain.call(ADMIN_A, "evidence", "submit", submit_args("x", metadata=metadata)), message)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"level": 0}, "argument 'level' must be in [1, 5], got 0"),
        ({"level": 6}, "argument 'level' must be in [1, 5], got 6"),
        (
            {"metadata": [[f"k{i:02d}", ""] for i in range(17)]},
            "argument 'metadata' must have 0 to 16 items, got 17",
        ),
        (
            {"metadata": [["k", "v" * 257]]},
            "argument 'metadata' item 0: argument 'value' is 257 bytes of UTF-8, the limit is 256",
        ),
        (
            {"metadata": [["k y", "v"]]},
            "argument 'metadata' item 0: argument 'key' contains ' '; "
            "allowed: letters, digits and . _ - : / @",
        ),
        (
            {"storage_ref": "s" * 257},
            "argument 'storage_ref' is 257 bytes of UTF-8, the limit is 256",
        ),
        ({"step": ""}, "argument 'step' must not be empty"),
    ],
)
def test_field_limits(chain: Harness, change: dict[str, Any], message: str) -> None:
    failed(
        chain.call(ADMIN_A, "evidence", "submit", submit_args("x", **change)),
        message,
        ReceiptStatus.BAD_ARGUMENTS,
    )


def test_field_limits_positional(chain: Harness) -> None:
    args = submit_args("x")
    args[4] = b"\x00" * 31
    failed(
        chain.call(ADMIN_A, "evidence", "submit", args),
        "argument 'data_digest' must be 32 bytes, got 31",
        ReceiptStatus.BAD_ARGUMENTS,
    )
    args = submit_args("r" * 65)
    failed(
        chain.call(ADMIN_A, "evidence", "submit", args),
        "argument 'record_id' is 65 bytes of UTF-8, the limit is 64",
        ReceiptStatus.BAD_ARGUMENTS,
    )
    args = submit_args("x")[:7]
    failed(
        chain.call(ADMIN_A, "evidence", "submit", args),
        "submit needs argument 'level' (position 7); its arguments are: record_id, flow_id, "
        "scenario, step, data_digest, storage_ref, metadata, level, prev_record_id",
        ReceiptStatus.BAD_ARGUMENTS,
    )
    # level, metadata present; prev_record_id may be omitted (it is the trailing optional one)
    ok(chain.call(ADMIN_A, "evidence", "submit", submit_args("x")[:8]))


# --- links (rule E3) -----------------------------------------------------------------------------


def test_first_record_must_not_link(chain: Harness) -> None:
    failed(
        chain.call(ADMIN_A, "evidence", "submit", submit_args("qi-1", prev="zz")),
        f"flow '{FLOW}' has no records yet, so its first record must have prev_record_id None "
        "(got 'zz')",
    )


def test_fork_attempts_are_refused(chain: Harness) -> None:
    submit_flow(chain)
    failed(
        chain.call(ADMIN_A, "evidence", "submit", submit_args("x", prev=None)),
        f"flow '{FLOW}' already has 4 record(s); prev_record_id must name its last record 'or-1' "
        "(a flow has exactly one first record)",
    )
    failed(
        chain.call(ADMIN_A, "evidence", "submit", submit_args("x", prev="rd-1")),
        f"prev_record_id 'rd-1' is not the last record of flow '{FLOW}' (the last is 'or-1'); "
        "a flow is one linear chain, so forks are refused",
    )
    failed(
        chain.call(ADMIN_A, "evidence", "submit", submit_args("x", prev="ghost")),
        "prev_record_id 'ghost' does not exist",
    )
    ok(chain.call(ADMIN_A, "evidence", "submit", submit_args("o-1", "OTHER")))
    failed(
        chain.call(ADMIN_A, "evidence", "submit", submit_args("x", prev="o-1")),
        f"prev_record_id 'o-1' belongs to flow 'OTHER', not '{FLOW}'",
    )
    ok(chain.call(MEMBER_A, "evidence", "submit", submit_args("x", prev="or-1")))
    assert dict(chain.query("evidence", "verify_flow", [FLOW]))["intact"] is True


def test_other_orgs_flow_is_closed(chain: Harness) -> None:
    ok(chain.call(ADMIN_A, "evidence", "submit", submit_args("qi-1")))
    failed(
        chain.call(ADMIN_B, "evidence", "submit", submit_args("x", prev="qi-1")),
        f"flow '{FLOW}' belongs to org 'firm-a'; "
        "an account of org 'firm-b' cannot add records to it",
    )


# --- attestations (rule E6) ----------------------------------------------------------------------


def test_attest_with_real_signature(chain: Harness) -> None:
    submit_flow(chain)
    out = ok(chain.call(MEMBER_A, "evidence", "attest", attest_args("qi-1", INVESTOR)))
    assert out.result == 1
    inv = INVESTOR.public_key.to_bytes()
    assert out.events[0].name == "EvidenceAttested"
    assert dict(out.events[0].fields) == {
        "record_id": "qi-1",
        "attester": address_of(inv),
        "role": "investor",
        "attester_pubkey": inv,
        "count": 1,
    }
    (att,) = dict(chain.query("evidence", "get", ["qi-1"]))["attestations"]
    assert dict(att)["attester_pubkey"] == inv and dict(att)["role"] == "investor"
    assert dict(att)["height"] == chain.height
    second = PrivateKey.generate()
    out2 = ok(chain.call(ADMIN_A, "evidence", "attest", attest_args("qi-1", second, "depositor")))
    assert out2.result == 2
    # attestations do not change the record hash: the flow stays intact
    assert dict(chain.query("evidence", "verify_flow", [FLOW]))["intact"] is True


SIG_ERROR = (
    "signature does not verify: it must be the attester's SM2 signature over "
    "compute_signing_root('attest', [chain_id, record_id, data_digest]) for record 'qi-1' "
    "on chain 'gmchain-test'"
)


def test_attest_refusals(chain: Harness) -> None:
    submit_flow(chain)
    args = attest_args("qi-1", INVESTOR)
    tampered = bytearray(args[3])
    tampered[10] ^= 1
    failed(chain.call(ADMIN_A, "evidence", "attest", [*args[:3], bytes(tampered)]), SIG_ERROR)
    # a valid signature for another record
    other = attest_args("rd-1", INVESTOR, raw=b"risk disclosure, signed")
    failed(chain.call(ADMIN_A, "evidence", "attest", ["qi-1", *other[1:]]), SIG_ERROR)
    # a signature over the right record but the wrong digest or chain
    wrong_digest = INVESTOR.sign(attest_message(CHAIN, "qi-1", sm3_hash(b"other data")))
    failed(chain.call(ADMIN_A, "evidence", "attest", [*args[:3], wrong_digest]), SIG_ERROR)
    wrong_chain = INVESTOR.sign(
        attest_message("other-chain", "qi-1", sm3_hash(b"assets statement"))
    )
    failed(chain.call(ADMIN_A, "evidence", "attest", [*args[:3], wrong_chain]), SIG_ERROR)
    # signed by someone else
    failed(
        chain.call(ADMIN_A, "evidence", "attest", [args[0], ADMIN_B, args[2], args[3]]), SIG_ERROR
    )
    failed(
        chain.call(ADMIN_A, "evidence", "attest", [args[0], b"\x04" + bytes(64), *args[2:]]),
        "attester_pubkey is not a valid SM2 public key (not a point on the curve)",
    )
    failed(chain.call(ADMIN_A, "evidence", "attest", ["nope", *args[1:]]), "no record 'nope'")
    failed(
        chain.call(PrivateKey.generate().public_key.to_bytes(), "evidence", "attest", args),
        "the sender has no account; only admitted accounts may attest",
    )
    ok(chain.call(ADMIN_A, "evidence", "attest", args))
    failed(
        chain.call(ADMIN_A, "evidence", "attest", attest_args("qi-1", INVESTOR, "other-role")),
        f"attester 0x{address_of(INVESTOR.public_key.to_bytes()).hex()} has already attested "
        "record 'qi-1'",
    )
    failed(
        chain.call(ADMIN_A, "evidence", "attest", [*args[:3], args[3][:63]]),
        "argument 'signature' must be 64 bytes, got 63",
        ReceiptStatus.BAD_ARGUMENTS,
    )


def test_attestation_limit(chain: Harness) -> None:
    submit_flow(chain)
    for _ in range(MAX_ATTESTATIONS):
        ok(chain.call(ADMIN_A, "evidence", "attest", attest_args("qi-1", PrivateKey.generate())))
    failed(
        chain.call(ADMIN_A, "evidence", "attest", attest_args("qi-1", PrivateKey.generate())),
        f"record 'qi-1' already has {MAX_ATTESTATIONS} attestations, the maximum",
    )


# --- independent reference: gmssl --------------------------------------------------------------


class GmsslVerifier:
    """SM2 verification by the pure-Python gmssl package (tests only)."""

    def is_valid_public(self, pubkey: bytes) -> bool:
        from gmchain.crypto_sm.params import A, B, P

        x, y = int.from_bytes(pubkey[1:33], "big"), int.from_bytes(pubkey[33:], "big")
        return pubkey[0] == 4 and x < P and y < P and (y * y - x**3 - A * x - B) % P == 0

    def verify(self, pubkey: bytes, msg: bytes, sig: bytes) -> bool:
        from gmssl import sm2

        crypt = sm2.CryptSM2(private_key=None, public_key="00", mode=1)
        crypt.public_key = pubkey[1:].hex()  # gmssl's constructor mangles a leading "04"
        return bool(crypt.verify_with_sm3(sig.hex(), msg))


def gmssl_keypair() -> tuple[Any, bytes]:
    from gmssl import sm2

    from gmchain.crypto_sm.params import GX, GY, N

    d = secrets.randbelow(N - 2) + 1
    crypt = sm2.CryptSM2(private_key=f"{d:064x}", public_key="00", mode=1)
    xy = crypt._kg(d, f"{GX:064x}{GY:064x}")
    crypt.public_key = xy
    return crypt, bytes.fromhex("04" + xy)


def test_attestation_signed_by_gmssl_verified_by_crypto_sm(chain: Harness) -> None:
    from gmchain.crypto_sm.params import N

    submit_flow(chain)
    crypt, pub = gmssl_keypair()
    msg = attest_message(CHAIN, "qi-1", sm3_hash(b"assets statement"))
    sig = bytes.fromhex(crypt.sign_with_sm3(msg, f"{secrets.randbelow(N - 1) + 1:064x}"))
    # The same signature over another record's message, and a bit-flipped one, are refused:
    # the acceptance below is crypto_sm verifying gmssl's signature, not a verifier that says yes.
    other = bytes.fromhex(crypt.sign_with_sm3(attest_message(CHAIN, "qi-1", bytes(32)), "01" * 32))
    failed(chain.call(ADMIN_A, "evidence", "attest", ["qi-1", pub, "investor", other]), SIG_ERROR)
    flipped = bytes([sig[0] ^ 0x01]) + sig[1:]
    failed(chain.call(ADMIN_A, "evidence", "attest", ["qi-1", pub, "investor", flipped]), SIG_ERROR)
    ok(chain.call(ADMIN_A, "evidence", "attest", ["qi-1", pub, "investor", sig]))


def test_contract_with_gmssl_verifier_agrees() -> None:
    chain = Harness(registry(GmsslVerifier()), GENESIS, chain_id=CHAIN)
    submit_flow(chain)
    args = attest_args("qi-1", INVESTOR)
    bad = bytearray(args[3])
    bad[0] ^= 0x80
    failed(chain.call(ADMIN_A, "evidence", "attest", [*args[:3], bytes(bad)]), SIG_ERROR)
    ok(chain.call(ADMIN_A, "evidence", "attest", args))


# --- verification and JSON -----------------------------------------------------------------------


def _tamper(chain: Harness, record_id: str, index: int, value: Any) -> None:
    state = chain.store.state("evidence")
    stored = decode(state.get(b"r/" + record_id.encode()))
    stored[index] = value
    state.put(b"r/" + record_id.encode(), encode(stored))


def test_verify_flow_detects_a_changed_field(chain: Harness) -> None:
    submit_flow(chain)
    _tamper(chain, "rd-1", RECORD_FIELDS.index("step"), "something-else")
    v = dict(chain.query("evidence", "verify_flow", [FLOW]))
    assert v["intact"] is False and v["checked"] == 1
    assert v["problem"] == "record 'rd-1': stored hash does not match its fields"


def test_verify_flow_detects_a_rehashed_record(chain: Harness) -> None:
    submit_flow(chain)
    state = chain.store.state("evidence")
    stored = decode(state.get(b"r/rd-1"))
    stored[RECORD_FIELDS.index("step")] = "forged"
    stored[-1] = compute_record_hash(stored[:-1])  # a forger who recomputes the hash
    state.put(b"r/rd-1", encode(stored))
    v = dict(chain.query("evidence", "verify_flow", [FLOW]))
    assert v["intact"] is False and v["checked"] == 2
    assert v["problem"] == "record 'cs-1': link to the previous record is broken"


def test_verify_flow_detects_a_wrong_head(chain: Harness) -> None:
    submit_flow(chain)
    state = chain.store.state("evidence")
    org, count, last_id, _ = decode(state.get(b"h/" + FLOW.encode()))
    state.put(b"h/" + FLOW.encode(), encode([org, count, last_id, bytes(32)]))
    v = dict(chain.query("evidence", "verify_flow", [FLOW]))
    assert v["intact"] is False and v["problem"] == "the flow head does not match its last record"


def REGISTRY_DESCRIBE() -> list[dict[str, Any]]:  # noqa: N802 (reads as a constant)
    reg = Registry([MembershipContract(), EvidenceContract()])
    (evidence,) = (c for c in reg.describe()["contracts"] if c["name"] == "evidence")
    methods: list[dict[str, Any]] = evidence["methods"]
    return methods


def test_json_views(chain: Harness) -> None:
    """The JSON layer renders each query by its declared shape: objects with camelCase members
    in the documented order (docs/evidence.md), metadata an object, bytes 0x hex."""
    submit_flow(chain)
    ok(chain.call(ADMIN_A, "evidence", "attest", attest_args("qi-1", INVESTOR)))
    described = {m["name"]: m["returns"] for m in REGISTRY_DESCRIBE()}
    assert described["get"] == RECORD_SHAPE.or_none().describe()
    rec = view_to_json(chain.query("evidence", "get", ["qi-1"]), described["get"])
    assert rec is not None
    json.dumps(rec)
    assert rec["metadata"] == {"investor": "inv-001", "product": "PF-X"}
    assert rec["dataDigest"] == "0x" + sm3_hash(b"assets statement").hex()
    assert rec["prevHash"] == "0x" + "00" * 32 and rec["prevRecordId"] is None
    assert list(rec) == [camel_case(n) for n in (*RECORD_FIELDS, "record_hash", "attestations")]
    assert list(rec)[:3] == ["recordId", "chainId", "org"] and "timestampMs" in rec
    (att,) = rec["attestations"]
    assert list(att) == ["attester", "attesterPubkey", "role", "signature", "height", "txId"]
    assert att["attesterPubkey"] == "0x" + INVESTOR.public_key.to_bytes().hex()
    flow = view_to_json(chain.query("evidence", "flow", [FLOW]), FLOW_SHAPE.describe())
    assert flow is not None
    json.dumps(flow)
    assert list(flow) == ["flowId", "org", "count", "headRecordId", "headHash", "start", "records"]
    assert [r["recordId"] for r in flow["records"]] == [s[0] for s in STEPS]
    assert flow["headHash"] == flow["records"][-1]["recordHash"]
    v = view_to_json(chain.query("evidence", "verify_flow", [FLOW]), described["verify_flow"])
    assert v == {
        "flowId": FLOW,
        "intact": True,
        "count": len(STEPS),
        "start": 0,
        "checked": len(STEPS),
        "headHash": flow["headHash"],
        "problem": None,
    }
    assert (
        view_to_json(chain.query("evidence", "verify_flow", ["nope"]), VERIFY_SHAPE.describe())
        is None
    )
    assert view_to_json(None, described["flow"]) is None

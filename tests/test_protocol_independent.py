"""An independent implementation written from docs/protocol.md alone.

It imports nothing from this project: only the standard library, `msgpack`, and the pure-Python
`gmssl` (SM3, SM2 verification). It parses the domain and tag tables and the worked examples out
of the markdown and recomputes encodings, the transaction id, block ids, the genesis hash, Merkle
roots, the accumulator, checks the signatures, and verifies the inclusion and consistency proofs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgpack
from gmssl import func as gm_func
from gmssl import sm2 as gm_sm2
from gmssl import sm3 as gm_sm3

DOC = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()


def sm3(data: bytes) -> bytes:
    return bytes.fromhex(gm_sm3.sm3_hash(gm_func.bytes_to_list(data)))


def enc(v: Any) -> bytes:
    out = msgpack.packb(v, use_bin_type=True)
    assert isinstance(out, bytes)
    return out


def dec(b: bytes) -> Any:
    v = msgpack.unpackb(b, raw=False, strict_map_key=True)
    assert enc(v) == b, "not the canonical encoding"
    return v


DOMAINS = {
    k: bytes.fromhex(h)
    for k, h in re.findall(r"^\| (\w+) \| `[^`]*` \| `([0-9a-f]+)` \|$", DOC, re.M)
}
TAGS = {name: int(t) for t, name in re.findall(r"^\| (\d+) \| \[(\w+)\]\(", DOC, re.M)}
EXAMPLES = dict(re.findall(r"<!-- example: (\w+) -->\n```\w+\n(.*?)\n```", DOC, re.S))


def kv(name: str) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in EXAMPLES[name].splitlines())


def h(name: str, key: str) -> bytes:
    return bytes.fromhex(kv(name)[key])


def root_of(kind: str, v: Any) -> bytes:
    return sm3(DOMAINS[kind] + b"\x00" + enc(v))


def sm2_verify(pub: bytes, msg: bytes, sig: bytes) -> bool:
    assert len(pub) == 65 and pub[0] == 4 and len(sig) == 64
    c = gm_sm2.CryptSM2(private_key=None, public_key="00", mode=1)
    c.public_key = pub[1:].hex()  # X||Y; gmssl uses the default ID 1234567812345678
    return bool(c.verify_with_sm3(sig.hex(), msg))


# --- Merkle (section 7) -------------------------------------------------------------------------


def leaf(d: bytes) -> bytes:
    return sm3(b"\x00" + d)


def node(a: bytes, b: bytes) -> bytes:
    return sm3(b"\x01" + a + b)


def mth_hashes(hs: list[bytes]) -> bytes:
    if not hs:
        return sm3(b"")
    if len(hs) == 1:
        return hs[0]
    k = 1
    while k * 2 < len(hs):
        k *= 2
    return node(mth_hashes(hs[:k]), mth_hashes(hs[k:]))


def verify_inclusion(lh: bytes, i: int, n: int, path: list[bytes], root: bytes) -> bool:
    if i >= n:
        return False
    fn, sn, r = i, n - 1, lh
    for c in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = node(c, r)
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(m: int, n: int, r1: bytes, r2: bytes, p: list[bytes]) -> bool:
    if m == 0:
        return r1 == sm3(b"") and not p
    if m == n:
        return r1 == r2 and not p
    if not p:
        return False
    if m & (m - 1) == 0:
        p = [r1, *p]
    fn, sn = m - 1, n - 1
    while fn % 2 == 1:
        fn >>= 1
        sn >>= 1
    fr = sr = p[0]
    for c in p[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == r1 and sr == r2 and sn == 0


# --- tests --------------------------------------------------------------------------------------


def test_tables_parsed() -> None:
    assert {"tx", "header", "vote", "genesis"} <= set(DOMAINS)
    assert TAGS["TxBody"] == 1 and len(TAGS) >= 13


def test_struct_examples_are_canonical_and_tagged() -> None:
    for name, tag in TAGS.items():
        if name == "CommitProof":  # the doc gives its example inside the proof bundle (section 9)
            continue
        raw = h(f"struct_{name}", "encoding")
        v = dec(raw)
        assert isinstance(v, list) and v[0] == tag, name
        section = DOC.split(f"### {name} (tag {tag})")[1].split("<!-- example")[0]
        n_fields = len(re.findall(r"^\| \d+ \| `", section, re.M))
        assert len(v) == 1 + n_fields, name


def test_signing_root_example() -> None:
    e = kv("signing_root")
    body = bytes.fromhex(e["encoding"])
    assert bytes.fromhex(e["hash_input"]) == DOMAINS["tx"] + b"\x00" + body
    assert sm3(bytes.fromhex(e["hash_input"])).hex() == e["signing_root"]


def test_transaction_id_and_signature() -> None:
    e = kv("tx")
    tag, body, sig = dec(bytes.fromhex(e["signed_tx"]))
    assert tag == TAGS["SignedTx"] and body[0] == TAGS["TxBody"]
    tx_id = root_of("tx", body)
    assert tx_id.hex() == e["tx_id"]
    pub = body[2]
    assert pub.hex() == e["public_key"]
    assert sm3(pub)[:20].hex() == e["address"]
    assert sig.hex() == e["signature"]
    assert sm2_verify(pub, tx_id, sig)
    assert not sm2_verify(pub, tx_id, bytes([sig[0] ^ 1]) + sig[1:])


def test_vote_signature() -> None:
    e = kv("vote")
    tag, epoch, block_id, rnd, height, voter, sig = dec(bytes.fromhex(e["vote"]))
    assert tag == TAGS["Vote"]
    pub = bytes.fromhex(e["public_key"])
    assert sm3(pub)[:20] == voter
    msg = root_of("vote", [e["chain_id"], epoch, block_id, rnd, height])
    assert msg.hex() == e["signing_root"]
    assert sm2_verify(pub, msg, sig)


def _chain() -> tuple[bytes, list[list[Any]], list[list[bytes]]]:
    genesis = h("genesis", "genesis")
    blocks, receipts = [], []
    for i in range(3):
        e = kv(f"block{i}")
        blocks.append(dec(bytes.fromhex(e["block"])))
        receipts.append([bytes.fromhex(v) for k, v in sorted(e.items()) if k.startswith("receipt")])
    return genesis, blocks, receipts


def test_chain_ids_roots_and_accumulator() -> None:
    genesis, blocks, receipts = _chain()
    g_hash = root_of("genesis", dec(genesis))
    assert g_hash == h("genesis", "genesis_hash")
    acc: list[bytes] = []
    prev_id = None
    for i, (block, rcpts) in enumerate(zip(blocks, receipts, strict=True)):
        tag, header, txs = block
        assert tag == TAGS["Block"] and header[0] == TAGS["BlockHeader"]
        (_, _chain_id, _epoch, height, _rnd, parent_id, _ts, _prop, tx_root, tx_count,
         receipt_root, acc_root, acc_size, _state, _next_vhash, justify) = header  # fmt: skip
        block_id = root_of("header", header)
        assert block_id == h(f"block{i}", "block_id")
        assert height == i
        if i == 0:
            assert parent_id == g_hash
            assert tx_count == 0 and txs == []  # section 6: the genesis block holds none
        else:
            assert parent_id == prev_id and justify[2] == prev_id
        tx_ids = [root_of("tx", t[1]) for t in txs]
        assert tx_count == len(txs)
        assert mth_hashes([leaf(t) for t in tx_ids]) == tx_root
        assert mth_hashes([leaf(r) for r in rcpts]) == receipt_root
        assert [dec(r)[1] for r in rcpts] == tx_ids
        acc += [leaf(t) for t in tx_ids]
        assert acc_size == len(acc) and acc_root == mth_hashes(acc)
        prev_id = block_id
    # The frontier example folds to the same accumulator root.
    e = kv("frontier")
    size, peaks = dec(bytes.fromhex(e["frontier"]))
    assert size == len(acc) == int(e["size"]) and len(peaks) == bin(size).count("1")
    r = peaks[-1]
    for p in reversed(peaks[:-1]):
        r = node(p, r)
    assert r == mth_hashes(acc)


def test_merkle_example() -> None:
    """Every line is what the section's list says it hashes, and the list labels every line."""
    e = kv("merkle")
    assert sm3(b"").hex() == e["empty_root"]
    assert bytes.fromhex(e["entry"]) == b"abc"
    assert leaf(b"abc").hex() == e["leaf_hash"]
    la, lb, lc = leaf(b"a"), leaf(b"b"), leaf(b"c")
    assert [la.hex(), lb.hex(), lc.hex()] == [e["leaf_a"], e["leaf_b"], e["leaf_c"]]
    assert node(la, lb).hex() == e["node_a_b"] == mth_hashes([la, lb]).hex()
    assert node(node(la, lb), lc).hex() == e["root_of_3"] == mth_hashes([la, lb, lc]).hex()
    section = DOC[DOC.index("## 7. Merkle trees") : DOC.index("<!-- example: merkle -->")]
    for key in e:
        if not key.startswith("block1_"):
            assert f"`{key}`" in section, f"the Merkle example's {key} is not labelled"


def test_validator_set_fingerprint() -> None:
    """Section 3: SM3(prefix || key || u64be(power) ...), keys ascending, no 0x00 after it."""
    e = kv("validator_set")
    prefix = bytes.fromhex(e["prefix"])
    assert prefix == b"GMCHAIN/VALIDATOR-SET/v1"
    genesis = json.loads(EXAMPLES["genesis_json"])
    parts = sorted(
        bytes.fromhex(v["pubkey"]) + v["power"].to_bytes(8, "big") for v in genesis["validators"]
    )
    data = prefix + b"".join(parts)
    assert data.hex() == e["hash_input"] and data[len(prefix)] == 0x04
    assert sm3(data).hex() == e["validator_set"]
    assert sm3(prefix + b"\x00" + b"".join(parts)).hex() != e["validator_set"]


def test_next_validators_commitment() -> None:
    """Section 3: a header's next_validators_hash = SM3(prefix || u64be(epoch) || fingerprint),
    no 0x00 after the prefix; the genesis block (section 6) carries it for epoch 0."""
    e = kv("next_validators")
    prefix = bytes.fromhex(e["prefix"])
    assert prefix == b"GMCHAIN/NEXT-VALIDATORS/v1"
    fingerprint = bytes.fromhex(kv("validator_set")["validator_set"])
    assert e["validator_set"] == fingerprint.hex() and e["epoch"] == "0"
    data = prefix + (0).to_bytes(8, "big") + fingerprint
    assert data.hex() == e["hash_input"]
    assert sm3(data).hex() == e["next_validators_hash"]
    assert sm3(prefix + (1).to_bytes(8, "big") + fingerprint).hex() != e["next_validators_hash"]


def test_an_empty_consistency_proof_is_refused() -> None:
    """Section 7's consistency check, ported literally, refuses (not crashes on) an empty proof."""
    hs = [leaf(b"%d" % i) for i in range(9)]
    for m in range(1, 9):
        for n in range(m + 1, 10):
            assert not verify_consistency(m, n, mth_hashes(hs[:m]), mth_hashes(hs[:n]), [])


def _unhex(x: str) -> bytes:
    assert x.startswith("0x")
    return bytes.fromhex(x[2:])


def test_tx_proof_bundle() -> None:
    b = json.loads(EXAMPLES["tx_proof"])
    _, blocks, _ = _chain()
    header = dec(_unhex(b["header"]))
    assert root_of("header", header) == root_of("header", blocks[b["height"]][1])
    tx_root, tx_count, acc_size_h = header[8], header[9], header[12]
    lh = leaf(_unhex(b["tx_id"]))
    assert _unhex(b["block_tx_root"]) == tx_root
    path = [_unhex(x) for x in b["block_inclusion_proof"]]
    assert verify_inclusion(lh, b["index_in_block"], tx_count, path, tx_root)
    assert b["acc_index"] == acc_size_h - tx_count + b["index_in_block"]
    # The bundle proves against block 2's accumulator, which block 2's header carries.
    later = blocks[2][1]
    assert b["acc_size"] == later[12] and _unhex(b["acc_root"]) == later[11]
    acc_path = [_unhex(x) for x in b["acc_inclusion_proof"]]
    assert verify_inclusion(lh, b["acc_index"], b["acc_size"], acc_path, later[11])
    assert not verify_inclusion(lh, b["acc_index"] + 1, b["acc_size"], acc_path, later[11])


def test_consistency_proof() -> None:
    c = json.loads(EXAMPLES["consistency_proof"])
    _, blocks, _ = _chain()
    assert c["old_size"] == blocks[1][1][12] and c["new_size"] == blocks[2][1][12]
    assert _unhex(c["old_root"]) == blocks[1][1][11]
    assert _unhex(c["new_root"]) == blocks[2][1][11]
    proof = [_unhex(x) for x in c["proof"]]
    args = (c["old_size"], c["new_size"], _unhex(c["old_root"]), _unhex(c["new_root"]))
    assert verify_consistency(*args, proof)
    assert not verify_consistency(*args, proof[:-1])


# --- SM2 from the formula of section 4 (no SM2 library) -----------------------------------------

_P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
_A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
_B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
_N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
_G = (
    0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
    0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0,
)  # GB/T 32918.5-2017


def _ec_add(p: tuple[int, int] | None, q: tuple[int, int] | None) -> tuple[int, int] | None:
    if p is None or q is None:
        return q if p is None else p
    if p[0] == q[0] and (p[1] + q[1]) % _P == 0:
        return None
    if p == q:
        slope = (3 * p[0] * p[0] + _A) * pow(2 * p[1], -1, _P) % _P
    else:
        slope = (q[1] - p[1]) * pow(q[0] - p[0], -1, _P) % _P
    x = (slope * slope - p[0] - q[0]) % _P
    return x, (slope * (p[0] - x) - p[1]) % _P


def _ec_mul(k: int, p: tuple[int, int]) -> tuple[int, int] | None:
    out: tuple[int, int] | None = None
    acc: tuple[int, int] | None = p
    while k:
        if k & 1:
            out = _ec_add(out, acc)
        acc = _ec_add(acc, acc)
        k >>= 1
    return out


def sm2_verify_formula(pub: bytes, msg: bytes, sig: bytes) -> bool:
    """Section 4 exactly: Z, e = SM3(Z || M), then GB/T 32918.2 §7.1 verification."""
    sm2_id = b"1234567812345678"
    b32 = [v.to_bytes(32, "big") for v in (_A, _B, *_G)]
    z = sm3((len(sm2_id) * 8).to_bytes(2, "big") + sm2_id + b"".join(b32) + pub[1:])
    e = int.from_bytes(sm3(z + msg), "big")
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    t = (r + s) % _N
    if not (0 < r < _N and 0 < s < _N) or t == 0:
        return False
    point = _ec_add(
        _ec_mul(s, _G), _ec_mul(t, (int.from_bytes(pub[1:33]), int.from_bytes(pub[33:])))
    )
    return point is not None and (e + point[0]) % _N == r


def test_sm2_signature_from_the_formula_alone() -> None:
    e = kv("tx")
    _, body, sig = dec(bytes.fromhex(e["signed_tx"]))
    tx_id, pub = root_of("tx", body), body[2]
    assert sm2_verify_formula(pub, tx_id, sig)
    # M is the 32-byte root, not DOMAIN || bytes (what docs/crypto.md once said).
    assert not sm2_verify_formula(pub, DOMAINS["tx"] + b"\x00" + enc(body), sig)


# --- the state hash (section 6) -----------------------------------------------------------------


def _writes(block: str) -> list[list[Any]]:
    e = kv(block)
    out = []
    i = 0
    while f"write{i}_namespace" in e:
        value = e[f"write{i}_value"]
        out.append(
            [
                e[f"write{i}_namespace"],
                h(block, f"write{i}_key"),
                None if value == "nil" else bytes.fromhex(value),
            ]
        )
        i += 1
    return out


def test_state_hash_and_genesis_writes() -> None:
    genesis = dec(h("genesis", "genesis"))
    accounts = genesis[6]
    expected: list[list[Any]] = []
    for pubkey, org, role in accounts:
        address = sm3(pubkey)[:20]
        expected.append(["membership", b"a/" + address, enc([pubkey, org, role])])
        expected.append(["membership", b"o/" + org.encode() + b"\x00" + address, b"\x01"])
        if role == "regulator":
            expected.append(["membership", b"g/" + org.encode(), b"\x01"])
    # governance (section 6, "Genesis writes"): committee (default: each validator org, weight 1),
    # thresholds, next proposal id, the epoch record and epoch 0's configuration (checked below)
    validators, observers, committee, thresholds = genesis[3], genesis[4], genesis[7], genesis[8]
    seats = committee or [[org, 1] for org in sorted({v[3] for v in validators})]
    for org, weight in seats:
        expected.append(["governance", b"c/" + org.encode(), enc(weight)])
    expected.append(["governance", b"ep", enc([0, 0])])
    expected.append(["governance", b"n", enc(1)])
    expected.append(["governance", b"t", enc(thresholds)])
    writes0 = _writes("block0")
    (config,) = [w for w in writes0 if w[:2] == ["governance", b"ep/" + bytes(8)]]
    tag, epoch, config_validators, config_observers, params = dec(config[2])
    assert (tag, epoch) == (14, 0)
    assert config_validators == sorted(validators, key=lambda v: sm3(v[1])[:20])
    assert config_observers == sorted(observers)
    assert [n for n, _ in params] == sorted(n for n, _ in params)
    assert ["replay_window", genesis[5]] in params
    expected.append(config)
    expected.sort(key=lambda w: (w[0].encode(), w[1]))
    assert writes0 == expected
    parent = bytes(32)
    for i in range(4):
        writes = _writes(f"block{i}")
        assert writes == sorted(writes, key=lambda w: (w[0].encode(), w[1]))
        assert h(f"block{i}", "parent_state_hash") == parent
        state_hash = root_of("state", [parent, writes])
        assert state_hash == h(f"block{i}", "state_hash")
        header = dec(h(f"block{i}", "block"))[1]
        assert header[13] == state_hash
        parent = state_hash
    # every documented key prefix (section 6, "Every key a contract writes") covers the examples
    prefixes = {
        "membership": (b"a/", b"o/", b"x/", b"g/"),
        "evidence": (b"r/", b"h/", b"s/", b"d/", b"t/"),
        "governance": (b"ep", b"t", b"n", b"c/", b"p/", b"r/", b"k/", b"ob/", b"a/"),
    }
    for i in range(4):
        for ns, key, _ in _writes(f"block{i}"):
            assert key.startswith(prefixes[ns]), (ns, key)


# --- commit certificates (section 9, steps 1-9) --------------------------------------------------


def _check_qc(qc: list[Any], chain_id: str, keys: dict[bytes, tuple[bytes, int]]) -> bool:
    _, epoch, block_id, rnd, height, sigs = qc
    if epoch != 0:  # this checker trusts the genesis validators: epoch 0 only
        return False
    total = sum(p for _, p in keys.values())
    ids = [n for n, _ in sigs]
    if not sigs or ids != sorted(set(ids)) or any(n not in keys for n in ids):
        return False
    if sum(keys[n][1] for n in ids) < total * 2 // 3 + 1:
        return False
    msg = root_of("vote", [chain_id, epoch, block_id, rnd, height])
    return all(sm2_verify_formula(keys[n][0], msg, s) for n, s in sigs)


def _check_certificate(cert: dict[str, Any], first: bytes, chain_id: str, keys: Any) -> list[Any]:
    headers = [dec(_unhex(x)) for x in cert["headers"]]
    ids = [root_of("header", x) for x in headers]
    assert headers and ids[0] == first  # 1
    for i in range(1, len(headers)):
        assert headers[i][5] == ids[i - 1] and headers[i][3] == headers[i - 1][3] + 1  # 2
    assert all(x[1] == chain_id for x in headers)  # 3
    tag, child, qc = dec(_unhex(cert["proof"]))
    assert tag == TAGS["CommitProof"]
    tip, justify = headers[-1], child[15]
    assert child[5] == ids[-1] and justify[2] == ids[-1]  # 4
    assert (justify[3], justify[4]) == (tip[4], tip[3])  # 5
    assert child[1] == chain_id and qc[2:5] == [root_of("header", child), child[4], child[3]]  # 6
    assert child[4] == justify[3] + 1  # 7
    assert _check_qc(qc, chain_id, keys) and _check_qc(justify, chain_id, keys)  # 8, 9
    return headers


def test_bundle_certificates_by_the_step_list() -> None:
    genesis = dec(h("genesis", "genesis"))
    chain_id = genesis[1]
    keys = {sm3(v[1])[:20]: (v[1], v[2]) for v in genesis[3]}
    b = json.loads(EXAMPLES["tx_proof"])
    assert b["version"] == 2
    header = dec(_unhex(b["header"]))
    _check_certificate(b["commit"], root_of("header", header), chain_id, keys)
    anchor = dec(_unhex(b["anchor_header"]))
    assert (anchor[12], anchor[11]) == (b["acc_size"], _unhex(b["acc_root"]))
    _check_certificate(b["anchor_commit"], root_of("header", anchor), chain_id, keys)
    receipt = _unhex(b["receipt"])
    assert dec(receipt)[1] == _unhex(b["tx_id"])
    path = [_unhex(x) for x in b["receipt_inclusion_proof"]]
    assert verify_inclusion(leaf(receipt), b["index_in_block"], header[9], path, header[10])
    # the same check refuses a certificate whose QC lost a signature (2 of 4 < Q = 3)
    tag, child, qc = dec(_unhex(b["commit"]["proof"]))
    weak = {
        "headers": b["commit"]["headers"],
        "proof": "0x" + enc([tag, child, [*qc[:5], qc[5][:2]]]).hex(),
    }
    try:
        _check_certificate(weak, root_of("header", header), chain_id, keys)
    except AssertionError:
        pass
    else:
        raise AssertionError("a QC of 2 of 4 validators passed")

"""Issue 3's acceptance check: a client written only from the documents works against a node.

`tests/independent_client.py` knows gmchain only through docs/protocol.md, docs/openrpc.json,
docs/rpc.md and docs/evidence.md. Here it is first checked against the documents' own worked
examples, then run end to end against a real `gmchain dev` process: generate a gmssl key, have
the dev admin register it (setup only, through the project's SDK: the chain is permissioned),
sign and submit an evidence record, wait for the receipt, fetch the proof and verify every part
of it against the validators of the genesis file; then flip bytes and see each rejected.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gmssl import sm2 as gm_sm2

from tests import independent_client as ic
from tests.node_helpers import START_DEADLINE_S

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text()


def _example(name: str) -> dict[str, str]:
    """The `key = value` lines of one worked example block in protocol.md."""
    m = re.search(rf"<!-- example: {name} -->\n```text\n(.*?)```", PROTOCOL, re.S)
    assert m, f"protocol.md has no example {name}"
    return dict(ln.split(" = ", 1) for ln in m.group(1).strip().splitlines())


# ---------------------------------------------------------------- the documents' own examples


def test_tx_example_id_and_signature() -> None:
    ex = _example("tx")
    signed = ic.decode(bytes.fromhex(ex["signed_tx"]))
    assert signed[0] == 2 and signed[1][0] == 1
    body, sig = signed[1], signed[2]
    tx_id = ic.compute_tx_id(body)
    assert tx_id.hex() == ex["tx_id"]
    assert ic.verify(bytes.fromhex(ex["public_key"]), tx_id, sig)
    assert not ic.verify(bytes.fromhex(ex["public_key"]), tx_id[::-1], sig)
    assert ic.sm3(bytes.fromhex(ex["public_key"]))[:20].hex() == ex["address"]
    assert ic.encode_signed_tx(body, sig).hex() == ex["signed_tx"]


def test_block_ids_vote_root_and_genesis_hash() -> None:
    for name in ("block0", "block1", "block2"):
        ex = _example(name)
        block = ic.decode(bytes.fromhex(ex["block"]))
        header = ic.decode_header(ic.encode(block[1]))
        assert header.block_id.hex() == ex["block_id"]
    vote = _example("vote")
    v = ic.decode(bytes.fromhex(vote["vote"]))
    root = ic.compute_signing_root("vote", [vote["chain_id"], v[1], v[2], v[3], v[4]])
    assert root.hex() == vote["signing_root"]
    assert ic.verify(bytes.fromhex(vote["public_key"]), root, v[6])
    genesis = _example("genesis")
    value = ic.decode(bytes.fromhex(genesis["genesis"]))
    assert ic.compute_signing_root("genesis", value).hex() == genesis["genesis_hash"]


def test_tx_proof_example_paths() -> None:
    m = re.search(r"<!-- example: tx_proof -->\n```json\n(.*?)```", PROTOCOL, re.S)
    assert m
    p = json.loads(m.group(1))
    header = ic.decode_header(bytes.fromhex(p["header"][2:]))
    leaf = ic.leaf_hash(bytes.fromhex(p["tx_id"][2:]))
    path = [bytes.fromhex(h[2:]) for h in p["block_inclusion_proof"]]
    assert ic.verify_inclusion(leaf, p["index_in_block"], header.tx_count, path, header.tx_root)
    acc = [bytes.fromhex(h[2:]) for h in p["acc_inclusion_proof"]]
    root = bytes.fromhex(p["acc_root"][2:])
    assert ic.verify_inclusion(leaf, p["acc_index"], p["acc_size"], acc, root)
    assert not ic.verify_inclusion(leaf, p["acc_index"] + 1, p["acc_size"], acc, root)


def test_decoder_rejects_non_canonical_input() -> None:
    assert ic.decode(bytes.fromhex("05")) == 5
    for bad in ("cc05", "0500", "cb3ff0000000000000", "80", "d40100", "a2c328"):
        with pytest.raises(ic.EncodingError):
            ic.decode(bytes.fromhex(bad))


def test_sign_verify_and_the_sm2_user_id() -> None:
    key = ic.generate_keypair()
    msg = ic.sm3(b"independent")
    sig = ic.sign(key, msg)
    assert ic.verify(key.public, msg, sig)
    assert ic.sign(key, msg) != sig  # a fresh k every time
    assert not ic.verify(key.public, ic.sm3(b"other"), sig)
    assert not ic.verify(key.public, msg, sig[:32] + b"\x00" * 32)  # s = 0 is out of range
    # Our e = SM3(Z || M) with ID 1234567812345678 is what gmssl's sm3-with-sm2 computes too.
    ctx = gm_sm2.CryptSM2(private_key=f"{key.private:064x}", public_key="")
    ctx.public_key = key.public[1:].hex()
    assert ctx.verify_with_sm3(sig.hex(), msg)


# ---------------------------------------------------------------- against a real node


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True, kw_only=True)
class _Node:
    url: str
    home: Path


@pytest.fixture(scope="module")
def dev_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Node]:
    home = tmp_path_factory.mktemp("ichome")
    port = _free_port()
    env = dict(os.environ, GMCHAIN_HOME=str(home))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gmchain.node.cli", "dev", "--rpc-port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        end = time.monotonic() + START_DEADLINE_S
        while True:
            assert proc.poll() is None, "gmchain dev exited early"
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < end, "gmchain dev did not open its RPC port"
            time.sleep(0.1)
        yield _Node(url=f"http://127.0.0.1:{port}", home=home / "dev")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _admit(node: _Node, public: bytes) -> None:
    """Setup only: the dev admin registers the independent key (project SDK)."""
    from gmchain.crypto_sm import load_private_key
    from gmchain.node.sdk import SyncClient

    admin = load_private_key(node.home / "client.key", b"gmchain-dev")
    receipt = SyncClient(node.url, timeout_s=30).send(
        admin, "membership", "register", [public, "dev-org", "member"]
    )
    assert receipt["status"] == 0, receipt


@dataclass(frozen=True, slots=True, kw_only=True)
class _Journey:
    genesis: ic.GenesisInfo
    key: ic.KeyPair
    tx_id: bytes
    receipt: dict[str, Any]
    certified: ic.CertifiedTx
    bundle: dict[str, Any]


@pytest.fixture(scope="module")
def journey(dev_node: _Node) -> _Journey:
    genesis = ic.load_genesis(dev_node.home / "genesis.json")
    key = ic.generate_keypair()
    rpc = ic.RpcClient(dev_node.url)
    with pytest.raises(ic.RpcError) as unknown:  # before admission: the permissioned refusal
        ic.submit_evidence(rpc, key, genesis, _args("ic-0", "ic-flow-0"))
    assert unknown.value.code == -31010, unknown.value
    _admit(dev_node, key.public)
    tx_id, receipt, certified = ic.submit_evidence(rpc, key, genesis, _args("ic-1", "ic-flow"))
    bundle = rpc.call("gm_getTransactionProof", ["0x" + tx_id.hex(), receipt["blockNumber"]])
    return _Journey(
        genesis=genesis,
        key=key,
        tx_id=tx_id,
        receipt=receipt,
        certified=certified,
        bundle=bundle,
    )


def _args(record_id: str, flow_id: str) -> list[Any]:
    return ic.build_submit_args(
        record_id=record_id,
        flow_id=flow_id,
        scenario="private-fund-sale",
        step="qualified-investor-check",
        data_digest=ic.sm3(b"asset statement of INV-001"),
        storage_ref="oss://dev-org/" + record_id,
        metadata=[("investor", "INV-001"), ("product", "PF-X")],
        level=3,
    )


@pytest.mark.slow
def test_independent_client_submits_and_verifies(journey: _Journey, dev_node: _Node) -> None:
    receipt, certified = journey.receipt, journey.certified
    assert receipt["status"] == 0 and receipt["statusName"] == "OK", receipt
    assert receipt["txId"] == "0x" + journey.tx_id.hex()
    assert certified.receipt[1] == journey.tx_id and certified.receipt[2] == 0
    result = dict(certified.receipt[3])
    assert result["record_id"] == "ic-1" and result["seq"] == 0
    assert [e[2] for e in certified.receipt[4]] == ["EvidenceSubmitted"]
    assert certified.height == receipt["blockNumber"] >= 1
    # The node agrees: block id, the record's submitter and the genesis chain.
    rpc = ic.RpcClient(dev_node.url)
    assert rpc.call("gm_getBlockByNumber", [certified.height])["hash"] == (
        "0x" + certified.block_id.hex()
    )
    # gm_call answers the record as an object with camelCase members (evidence.md "The record").
    record = rpc.call("gm_call", ["evidence", "get", ["ic-1"]])
    assert record["submitter"] == "0x" + journey.key.address.hex()
    block0 = ic.decode_header(bytes.fromhex(rpc.call("gm_getBlockByNumber", [0])["raw"][2:]))
    assert block0.parent_id == journey.genesis.genesis_hash


def _flip(value: str) -> str:
    """Flip the lowest bit of the middle byte of a 0x hex string."""
    raw = bytearray(bytes.fromhex(value[2:]))
    raw[len(raw) // 2] ^= 0x01
    return "0x" + raw.hex()


def _hex_fields(bundle: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """One tampered copy per binary value the verifier depends on."""
    for name in ("tx_id", "block_tx_root", "acc_root", "header", "receipt", "anchor_header"):
        b = copy.deepcopy(bundle)
        b[name] = _flip(b[name])
        yield name, b
    for name in ("block_inclusion_proof", "acc_inclusion_proof", "receipt_inclusion_proof"):
        if bundle[name]:
            b = copy.deepcopy(bundle)
            b[name][0] = _flip(b[name][0])
            yield name, b
    b = copy.deepcopy(bundle)
    b["commit"]["headers"][0] = _flip(b["commit"]["headers"][0])
    yield "commit.headers[0]", b
    proof = bundle["commit"]["proof"]
    for where in (10, len(proof) // 2, len(proof) - 10):  # child header, middle, QC signature
        b = copy.deepcopy(bundle)
        digit = "0" if proof[where] != "0" else "1"
        b["commit"]["proof"] = proof[:where] + digit + proof[where + 1 :]
        yield f"commit.proof@{where}", b


@pytest.mark.slow
def test_tampered_proofs_are_rejected(journey: _Journey) -> None:
    bundle = journey.bundle
    ic.verify_tx_proof(bundle, genesis=journey.genesis, expected_tx_id=journey.tx_id)
    tried = 0
    for _name, tampered in _hex_fields(bundle):
        with pytest.raises(ic.ProofError):
            ic.verify_tx_proof(tampered, genesis=journey.genesis, expected_tx_id=journey.tx_id)
        tried += 1
    assert tried >= 10
    # The last flip lands in the QC's signature: rejected by the SM2 check itself.
    *_, (name, last) = _hex_fields(bundle)
    with pytest.raises(ic.ProofError, match="does not verify"):
        ic.verify_tx_proof(last, genesis=journey.genesis)
    for name in ("height", "index_in_block", "acc_index", "acc_size"):
        b = copy.deepcopy(bundle)
        b[name] += 1
        with pytest.raises(ic.ProofError):
            ic.verify_tx_proof(b, genesis=journey.genesis)


@pytest.mark.slow
def test_proof_rejected_under_another_validator_set(journey: _Journey) -> None:
    """The validator copy inside the bundle is never trusted: only the genesis file's set."""
    stranger = ic.generate_keypair()
    other = ic.GenesisInfo(
        chain_id=journey.genesis.chain_id,
        replay_window=journey.genesis.replay_window,
        validators={stranger.address: (stranger.public, 1)},
        genesis_hash=journey.genesis.genesis_hash,
    )
    with pytest.raises(ic.ProofError, match="not a validator"):
        ic.verify_tx_proof(journey.bundle, genesis=other)


@pytest.mark.slow
def test_second_record_and_proof_against_a_later_header(journey: _Journey, dev_node: _Node) -> None:
    """A second record links to the first; the first tx is then proven against the new head.

    A bundle anchored on a later header proves the tx in that header's accumulator; its receipt
    is proven against the tx's own header, which the bundle's `commit` certifies; the anchor is
    on that chain or certified by `anchor_commit` (protocol.md section 9). Dropping or altering a
    link, or either certificate, must be rejected.
    """
    rpc = ic.RpcClient(dev_node.url)
    args = ic.build_submit_args(
        record_id="ic-2",
        flow_id="ic-flow",
        scenario="private-fund-sale",
        step="risk-disclosure",
        data_digest=ic.sm3(b"signed risk disclosure"),
        metadata=[("product", "PF-X")],
        level=2,
        prev_record_id="ic-1",
    )
    _, receipt, second = ic.submit_evidence(rpc, journey.key, journey.genesis, args)
    assert receipt["status"] == 0, receipt
    assert dict(second.receipt[3])["seq"] == 1
    assert second.height > journey.certified.height
    first = "0x" + journey.tx_id.hex()
    bundle = rpc.call("gm_getTransactionProof", [first, second.height])
    assert bundle["acc_size"] > journey.certified.acc_size
    links = ic.fetch_link_headers(rpc, bundle)
    certified = ic.verify_tx_proof(bundle, genesis=journey.genesis, link_headers=links)
    assert certified.block_id == journey.certified.block_id
    assert certified.acc_size == bundle["acc_size"]
    # Without fetched link headers the bundle alone suffices: `commit` starts at the tx's own
    # header and the anchor is on it or certified by `anchor_commit`.
    assert ic.verify_tx_proof(bundle, genesis=journey.genesis).block_id == certified.block_id
    if links:
        with pytest.raises(ic.ProofError, match="links"):
            ic.verify_tx_proof(bundle, genesis=journey.genesis, link_headers=links + links[-1:])
    if bundle["anchor_commit"] is not None:
        proof = bundle["anchor_commit"]["proof"]
        for where in (10, len(proof) - 10):  # the child header, the QC's signature
            digit = "0" if proof[where] != "0" else "1"
            bad = copy.deepcopy(bundle)
            bad["anchor_commit"]["proof"] = proof[:where] + digit + proof[where + 1 :]
            with pytest.raises(ic.ProofError, match="anchor_commit"):
                ic.verify_tx_proof(bad, genesis=journey.genesis)
        dropped_anchor = {**bundle, "anchor_commit": None}
        with pytest.raises(ic.ProofError, match="anchor is not on the certified chain"):
            ic.verify_tx_proof(dropped_anchor, genesis=journey.genesis)
    headers = bundle["commit"]["headers"]
    if len(headers) > 1:
        dropped = {**bundle, "commit": {**bundle["commit"], "headers": headers[1:]}}
        with pytest.raises(ic.ProofError, match="first header"):
            ic.verify_tx_proof(dropped, genesis=journey.genesis)
    if len(headers) > 2:
        gap = {**bundle, "commit": {**bundle["commit"], "headers": [headers[0], *headers[2:]]}}
        with pytest.raises(ic.ProofError, match=r"linked|consecutive|anchor"):
            ic.verify_tx_proof(gap, genesis=journey.genesis)

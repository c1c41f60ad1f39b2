"""The client SDK: transaction building, error mapping, the wait fallback, and a real dev node.

Layers: pure functions (build_tx, hex); a stub JSON-RPC server that answers what a test needs
(error objects, no WebSocket); and a real one-validator node (node.daemon's `init_dev` +
`start_node`, RPC on 127.0.0.1:0) run in a background thread, driven by the async `Client`,
the `SyncClient` and the `gmchain` CLI.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gmchain.crypto_sm import PrivateKey, save_private_key, sm3_hash
from gmchain.crypto_sm.keyfile import MIN_ITERATIONS
from gmchain.ledger.types import SignedTx
from gmchain.node import cli
from gmchain.node.sdk import (
    Client,
    NodeUnreachable,
    RpcError,
    SdkError,
    SyncClient,
    from_hex,
    to_hex,
    verify_proof_bundle,
)

# --- pure functions ------------------------------------------------------------------------------


def test_build_tx_signs_the_receiver_computed_id() -> None:
    key = PrivateKey.generate()
    client = Client()
    tx = client.build_tx(key, "evidence", "get", ["r1", b"\x01"], chain_id="c", expiry=7)
    again = SignedTx.decode_tx(tx.encode())
    assert again == tx
    assert again.body.sender == key.public_key.to_bytes()
    assert (again.body.chain_id, again.body.expiry, again.body.args) == ("c", 7, ("r1", b"\x01"))
    assert key.public_key.verify(again.tx_id, again.signature)
    other = client.build_tx(key, "evidence", "get", ["r1", b"\x01"], chain_id="c", expiry=7)
    assert other.body.nonce != tx.body.nonce and other.tx_id != tx.tx_id
    fixed = client.build_tx(key, "e", "m", [], chain_id="c", expiry=7, nonce=5)
    assert fixed.body.nonce == 5


def test_hex_helpers() -> None:
    assert to_hex(b"\xab\x01") == "0xab01"
    assert from_hex("0xAB01") == b"\xab\x01" and from_hex("ab01") == b"\xab\x01"
    with pytest.raises(SdkError, match="tx: expected 2 bytes, got 1"):
        from_hex("0xab", 2, what="tx")
    with pytest.raises(SdkError, match="not valid hex"):
        from_hex("0xabc")


def _doc_example(name: str) -> str:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    return dict(re.findall(r"<!-- example: (\w+) -->\n```\w+\n(.*?)\n```", doc, re.S))[name]


def _flip_last(hex_text: str) -> str:
    return hex_text[:-1] + ("0" if hex_text[-1] != "0" else "1")


_GARBAGE: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "old version",
        lambda d: d.update(version=1),
        "unsupported bundle version 1 (this verifier "
        "reads version 2; fetch the proof again from an up-to-date node)",
    ),
    ("header not hex", lambda d: d.update(header="0xzz"), "malformed proof: header: bad hex"),
    (
        "another tx id",
        lambda d: d.update(tx_id=_flip_last(d["tx_id"])),
        "the Merkle proofs do not lead from the transaction to the roots",
    ),
    (
        "truncated receipt",
        lambda d: d.update(receipt=d["receipt"][:-2]),
        "malformed proof: malformed msgpack: Unpack failed: incomplete input",
    ),
    (
        "anchor off the chain",
        lambda d: d.update(anchor_commit=None),
        "the anchor header is not on the certified chain",
    ),
    (
        "QC bit flipped",
        lambda d: d["commit"].update(proof=_flip_last(d["commit"]["proof"])),
        "commit: the commit certificate does not verify against the trusted validator set",
    ),
    (
        "no headers",
        lambda d: d["commit"].update(headers=[]),
        "commit: the headers do not start at block 1",
    ),
]


@pytest.mark.parametrize("what,mutate,reason", _GARBAGE, ids=[g[0] for g in _GARBAGE])
def test_verify_proof_bundle_on_garbage(
    what: str, mutate: Callable[[dict[str, Any]], None], reason: str
) -> None:
    """docs/protocol.md's example bundle verifies against its genesis; each kind of garbage made
    from it is refused with the reason that names what is wrong (never another exception)."""
    from gmchain.ledger.types import Genesis

    kv = dict(line.split(" = ", 1) for line in _doc_example("genesis").splitlines())
    genesis = Genesis.decode(bytes.fromhex(kv["genesis"]))
    bundle = json.loads(_doc_example("tx_proof"))
    assert verify_proof_bundle(copy.deepcopy(bundle), genesis=genesis).height == 1
    mutate(bundle)
    with pytest.raises(SdkError) as info:
        verify_proof_bundle(bundle, genesis=genesis)
    assert str(info.value) == reason


def test_verify_proof_bundle_needs_an_object_and_an_anchor() -> None:
    from gmchain.ledger.types import GenesisValidator

    trusted = [
        GenesisValidator(pubkey=PrivateKey.generate().public_key.to_bytes(), power=1, org="o")
    ]
    for not_a_bundle in ({}, [], None, "0x00", {"header": 5}):
        with pytest.raises(SdkError) as info:
            verify_proof_bundle(not_a_bundle, validators=trusted)  # type: ignore[arg-type]
        assert str(info.value) == "malformed bundle: expected a JSON object with a hex `header`"
    with pytest.raises(SdkError) as info:
        verify_proof_bundle({})
    assert str(info.value) == (
        "a proof needs exactly one trust anchor: genesis= (the chain's genesis) or "
        "validators= (a validator set you trust)"
    )


# --- a stub server -------------------------------------------------------------------------------


class Stub:
    """Answers JSON-RPC by a table; has no WebSocket (so `send` must fall back to polling)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Any]]] = []
        self.head = 40
        self.raw_txs: list[bytes] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        method, params = body["method"], body["params"]
        self.calls.append((method, params))

        def ok(result: Any) -> web.Response:
            return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": result})

        if method == "gm_nodeInfo":
            return ok({"chainId": "stub-chain", "replayWindow": 100})
        if method == "gm_blockNumber":
            return ok(self.head)
        if method == "gm_sendRawTransaction":
            raw = from_hex(params[0])
            self.raw_txs.append(raw)
            return ok(to_hex(SignedTx.decode_tx(raw).tx_id))
        if method == "gm_waitForReceipt":
            return ok({"txId": params[0], "status": 0, "statusName": "OK", "blockNumber": 41})
        if method == "gm_status":
            return web.Response(text="<html>proxy error</html>", status=502)
        error = {"code": -31101, "message": f"{method}: not found", "data": {"why": "stub"}}
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "error": error})


@pytest.fixture
async def stub() -> Any:
    s = Stub()
    app = web.Application()
    app.router.add_post("/", s.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield s, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_rpc_errors_keep_code_message_and_data(stub: Any) -> None:
    _, url = stub
    async with Client(url) as client:
        with pytest.raises(RpcError) as info:
            await client.call_rpc("gm_getBlockByNumber", [5])
        assert info.value.code == -31101
        assert info.value.message == "gm_getBlockByNumber: not found"
        assert info.value.data == {"why": "stub"}
        assert str(info.value) == "gm_getBlockByNumber: not found (code -31101)"
        with pytest.raises(SdkError, match="HTTP 502 with a non-JSON body"):
            await client.status()


async def test_send_sets_expiry_from_the_head_and_falls_back_to_polling(stub: Any) -> None:
    s, url = stub
    key = PrivateKey.generate()
    async with Client(url) as client:
        receipt = await client.send(key, "evidence", "noop", [1], timeout_s=5)
        assert receipt["statusName"] == "OK"
        s.head = 90
        await client.send(key, "evidence", "noop", [2], timeout_s=5)
    first, second = (SignedTx.decode_tx(raw) for raw in s.raw_txs)
    # expiry = head + W // 2 with W = 100, from the head at each send (never cached)
    assert (first.body.expiry, second.body.expiry) == (90, 140)
    assert first.body.chain_id == "stub-chain"
    assert [m for m, _ in s.calls].count("gm_nodeInfo") == 1  # chain id and W are cached
    waits = [p for m, p in s.calls if m == "gm_waitForReceipt"]
    assert waits[0][0] == to_hex(first.tx_id)


async def test_unreachable_node() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with Client(f"http://127.0.0.1:{port}", timeout_s=2) as client:
        with pytest.raises(NodeUnreachable, match="cannot reach the node at"):
            await client.height()


# --- a real dev node -----------------------------------------------------------------------------


class NodeThread:
    """A one-validator dev node serving JSON-RPC from its own event loop in a thread."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.url = ""
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        assert self.url, "node did not start"

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        from gmchain.node.config import load_config
        from gmchain.node.daemon import init_dev, start_node

        try:
            handle = await start_node(load_config(init_dev(self.data_dir, rpc_port=0)), rpc_port=0)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            raise
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self.url = handle.rpc_url
        self._ready.set()
        await self._stop.wait()
        await handle.stop()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeThread, PrivateKey]]:
    pytest.importorskip(
        "gmchain.node.daemon", reason="node.daemon (init_dev, start_node) not written yet"
    )
    from gmchain.node.keys_cli import DEV_PASSPHRASE, load_key

    home = tmp_path_factory.mktemp("gmchain-home")
    n = NodeThread(home / "dev")
    n.start()
    try:
        yield n, load_key(home / "dev" / "client.key", DEV_PASSPHRASE)
    finally:
        n.stop()


def _proof_verifies(bundle: dict[str, Any], n: NodeThread) -> None:
    """The node's bundle verifies offline against the dev chain's genesis, including its
    receipt and commit certificate."""
    verified = verify_proof_bundle(bundle, genesis=n.data_dir / "genesis.json")
    assert "0x" + verified.tx_id.hex() == bundle["tx_id"]


async def test_evidence_flow_attest_and_proof(node: tuple[NodeThread, PrivateKey]) -> None:
    n, key = node
    attester = PrivateKey.generate()
    async with Client(n.url) as client:
        status = await client.status()
        chain_id = status["chainId"]
        r1 = await client.submit_evidence(
            key,
            record_id="sdk-r1",
            flow_id="sdk-flow",
            scenario="private-fund-sale",
            step="qualified-investor-check",
            data=b"investor questionnaire",
            metadata={"investor": "alice", "product": "fund-7"},
            level=3,
        )
        assert r1["statusName"] == "OK", r1
        r2 = await client.submit_evidence(
            key, record_id="sdk-r2", flow_id="sdk-flow", scenario="private-fund-sale",
            step="risk-disclosure", data=b"disclosure v2",
        )  # fmt: skip
        assert r2["statusName"] == "OK", r2
        record = await client.get_evidence("sdk-r2")
        assert record["prevRecordId"] == "sdk-r1"  # "auto" found the flow's last record
        assert record["dataDigest"] == to_hex(sm3_hash(b"disclosure v2"))
        assert record["chainId"] == chain_id
        flow = await client.get_flow("sdk-flow")
        assert [r["recordId"] for r in flow["records"]] == ["sdk-r1", "sdk-r2"]
        assert flow["records"][0]["metadata"] == {"investor": "alice", "product": "fund-7"}
        assert flow["records"][1]["prevHash"] == flow["records"][0]["recordHash"]
        assert (await client.verify_flow("sdk-flow"))["intact"] is True

        att = await client.attest(key, record_id="sdk-r1", attester_key=attester, role="investor")
        assert att["statusName"] == "OK", att
        atts = (await client.get_evidence("sdk-r1"))["attestations"]
        assert [a["attesterPubkey"] for a in atts] == [to_hex(attester.public_key.to_bytes())]

        # a stale link is refused by the contract: a failed receipt, with the reason
        fork = await client.submit_evidence(
            key, record_id="sdk-r3", flow_id="sdk-flow", scenario="private-fund-sale",
            step="contract-signing", data=b"x", prev_record_id="sdk-r1",
        )  # fmt: skip
        assert fork["status"] != 0 and fork["error"]

        with pytest.raises(SdkError, match="no evidence record"):
            await client.get_evidence("no-such-record")
        with pytest.raises(SdkError, match="no evidence flow"):
            await client.get_flow("no-such-flow")

        # the node refuses an expired transaction with a JSON-RPC error
        stale = client.build_tx(key, "evidence", "get", ["x"], chain_id=chain_id, expiry=1)
        with pytest.raises(RpcError) as info:
            await client.send_tx(stale)
        assert info.value.code == -31005

        bundle = await client.get_tx_proof(from_hex(r2["txId"]))
        _proof_verifies(bundle, n)


def test_cli_against_the_node(
    node: tuple[NodeThread, PrivateKey],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    n, _ = node
    monkeypatch.setenv("GMCHAIN_HOME", str(n.data_dir.parent))
    monkeypatch.delenv("GMCHAIN_PASSPHRASE", raising=False)
    rpc = ["--rpc", n.url]

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    data = tmp_path / "contract.pdf"
    data.write_bytes(b"%PDF signed contract")
    code, out, err = run(
        "evidence", "submit", "--id", "cli-r1", "--flow", "cli-flow", "--step", "contract-signing",
        "--file", str(data), "--meta", "investor=bob", "--level", "4", "--json", *rpc,
    )  # fmt: skip
    assert code == 0, err
    tx_id = json.loads(out)["txId"]
    code, out, err = run(
        "evidence", "submit", "--id", "cli-r2", "--flow", "cli-flow", "--step", "order",
        "--data", "order #1", *rpc,
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith("evidence cli-r2: committed in block ")

    code, out, err = run("evidence", "get", "cli-r1", "--json", *rpc)
    assert code == 0, err
    assert json.loads(out)["dataDigest"] == to_hex(sm3_hash(data.read_bytes()))
    code, out, err = run("evidence", "flow", "cli-flow", "--verify", *rpc)
    assert code == 0, err
    assert "hash chain intact (2 records)" in out

    # a rule the contract enforces: a reused record id is a failed command, in words
    code, out, err = run(
        "evidence",
        "submit",
        "--id",
        "cli-r1",
        "--flow",
        "other",
        "--step",
        "s",
        "--data",
        "x",
        *rpc,
    )
    assert code == 1
    assert "evidence cli-r1 failed:" in err and "Traceback" not in err

    attester_file = tmp_path / "investor.key"
    save_private_key(attester_file, PrivateKey.generate(), b"dev", iterations=MIN_ITERATIONS)
    monkeypatch.setenv("INVESTOR_PASS", "dev")
    code, out, err = run(
        "evidence", "attest", "--id", "cli-r1", "--attester-key", str(attester_file),
        "--attester-passphrase-env", "INVESTOR_PASS", "--role", "investor", *rpc,
    )  # fmt: skip
    assert code == 0, err

    code, out, err = run("tx", "get", tx_id, "--json", *rpc)
    assert code == 0, err
    assert json.loads(out)["receipt"]["txId"] == tx_id
    code, out, err = run("status", *rpc)
    assert code == 0 and "chainId" in out

    proof_file = tmp_path / "proof.json"
    code, out, err = run("proof", "get", tx_id, "--out", str(proof_file), *rpc)
    assert code == 0, err
    bundle = json.loads(proof_file.read_text())
    _proof_verifies(bundle, n)
    code, out, err = run("proof", "verify", str(proof_file))
    assert code == 1 and "no trust anchor" in err  # a bundle cannot certify itself
    genesis = str(n.data_dir / "genesis.json")
    code, out, err = run("proof", "verify", str(proof_file), "--genesis", genesis)
    assert code == 0 and out.startswith(f"VALID: tx {tx_id} in block ")


def test_sync_client(node: tuple[NodeThread, PrivateKey]) -> None:
    n, key = node
    client = SyncClient(n.url)
    before = client.height()
    receipt = client.send(key, "evidence", "submit", [
        "sync-r1", "sync-flow", "private-fund-sale", "kyc", sm3_hash(b"k"), None, [], 2, None,
    ])  # fmt: skip
    assert receipt["statusName"] == "OK", receipt
    assert receipt["blockNumber"] > before
    assert client.get_evidence("sync-r1")["step"] == "kyc"
    assert client.chain_id() == client.status()["chainId"]


def test_light_client_checks_a_commit_proof_answer(node: tuple[NodeThread, PrivateKey]) -> None:
    """chain/lightclient.py's header-chain check, on a real gm_getCommitProof answer."""
    from gmchain.chain.lightclient import ProofCheckError, TrustAnchor, verify_header_chain
    from gmchain.ledger.types import GenesisValidator
    from gmchain.node.config import load_genesis

    n, key = node
    client = SyncClient(n.url)
    client.send(key, "evidence", "submit", [
        "lc-r1", "lc-flow", "private-fund-sale", "kyc", sm3_hash(b"lc"), None, [], 2, None,
    ])  # fmt: skip
    genesis = load_genesis(n.data_dir / "genesis.json")
    answer = client.call_rpc("gm_getCommitProof", [1])
    trust = TrustAnchor.from_genesis(genesis)
    headers = verify_header_chain(answer, trust)
    assert headers[0].height == 1 and headers[0].chain_id == genesis.chain_id
    # a validator set the caller names as JSON objects (obtained out of band, never from the
    # answer); the answer's `validators` member is in the same shape and is the genesis's set
    named = TrustAnchor.from_validators(
        [{"pubkey": to_hex(v.pubkey), "power": v.power} for v in genesis.validators],
        genesis.chain_id,
    )
    assert named.fingerprint == trust.fingerprint
    copy = TrustAnchor.from_validators(answer["validators"], genesis.chain_id)
    assert copy.fingerprint == trust.fingerprint
    assert verify_header_chain(answer, named) == headers
    # a set that did not sign it, another chain id, a broken link, another genesis: refused
    stranger = GenesisValidator(
        pubkey=PrivateKey.generate().public_key.to_bytes(), power=1, org="x"
    )
    with pytest.raises(ProofCheckError, match="does not verify against the trusted validator set"):
        verify_header_chain(answer, TrustAnchor.from_validators([stranger], genesis.chain_id))
    with pytest.raises(ProofCheckError, match="another chain"):
        verify_header_chain(answer, TrustAnchor.from_validators(genesis.validators, "other"))
    broken = {**answer, "headers": answer["headers"][:1] * 2}  # block 1, then block 1 again
    with pytest.raises(ProofCheckError, match="the headers break at height 1"):
        verify_header_chain(broken, trust)
    assert trust.genesis is not None
    other = TrustAnchor(
        chain_id=trust.chain_id, validators=trust.validators, genesis=(trust.genesis[0], bytes(32))
    )
    with pytest.raises(ProofCheckError, match="does not start at the trusted genesis"):
        verify_header_chain(answer, other)
    with pytest.raises(ProofCheckError, match="malformed proof"):
        verify_header_chain({**answer, "proof": "0x00"}, trust)
    with pytest.raises(ProofCheckError, match="certificate: no headers"):
        verify_header_chain({**answer, "headers": []}, trust)

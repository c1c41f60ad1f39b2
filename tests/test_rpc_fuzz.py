"""Seeded fuzzing of node/rpc.py against the fake node over a real socket (tests/rpc_fuzz.py).

Every malformed request gets a JSON-RPC error; chain and pool stay unchanged; the server lives."""

from __future__ import annotations

from pathlib import Path

import pytest

from gmchain.crypto_sm import PrivateKey, load_private_key
from gmchain.ledger.types import Height, SignedTx, TxBody
from gmchain.node.rpc import RpcConfig, RpcServer
from tests.rpc_fuzz import fuzz_rpc_async
from tests.test_rpc_fake import FakeNode, make_tx


@pytest.mark.parametrize("seed", [1, 2])
async def test_fuzz_fake_node(seed: int) -> None:
    node = FakeNode()
    node.commit()
    valid = make_tx(PrivateKey.generate(), nonce=seed, expiry=node.height() + 5)
    server = RpcServer(node, host="127.0.0.1", port=0, config=RpcConfig.minimal())
    await server.start()
    try:
        before = node.fingerprint()
        url = f"http://127.0.0.1:{server.port}/"
        report = await fuzz_rpc_async(url, 1500, seed, valid_raw_tx=valid.encode())
    finally:
        await server.stop()
    assert report.sent == 1500 and not report.violations
    assert node.fingerprint() == before
    assert report.height_before == report.height_after
    assert report.pending_before == report.pending_after == 0
    kinds = {
        "malformed_json",
        "bad_envelope",
        "unknown_method",
        "wrong_params",
        "bad_hex",
        "garbage_tx",
        "mutated_tx",
        "bad_batch",
    }
    assert kinds <= set(report.by_kind), report.by_kind
    assert node.submitted > 200  # raw txs really reached the node's checks, and all failed
    # several distinct error codes, each an integer the server documents
    assert len(report.codes) >= 6, report.codes


class _CarelessNode(FakeNode):
    """Admits anything: the fuzzer must notice that bad transactions got results."""

    async def submit_raw_tx(self, raw: bytes) -> bytes:
        return b"\x00" * 32


async def test_fuzzer_detects_a_careless_node() -> None:
    server = RpcServer(_CarelessNode(), host="127.0.0.1", port=0, config=RpcConfig.minimal())
    await server.start()
    try:
        with pytest.raises(AssertionError, match="replies wrong"):
            await fuzz_rpc_async(f"http://127.0.0.1:{server.port}/", 300, 3)
    finally:
        await server.stop()


@pytest.mark.slow
async def test_fuzz_real_dev_node(tmp_path: Path) -> None:
    """The acceptance run: 10,000 malformed requests at a real one-validator dev node."""
    daemon = pytest.importorskip("gmchain.node.daemon")
    config = pytest.importorskip("gmchain.node.config")
    cfg = config.load_config(daemon.init_dev(tmp_path, rpc_port=0, p2p_port=0))
    handle = await daemon.start_node(cfg, rpc_port=0)
    try:
        key = load_private_key(tmp_path / "client.key", daemon.DEV_PASSPHRASE.encode())
        body = TxBody(
            chain_id=daemon.DEV_CHAIN_ID,
            sender=key.public_key.to_bytes(),
            nonce=1,
            expiry=Height(handle.service.status().height + 50),
            contract="evidence",
            method="submit",
            args=("rec-1", "flow-1", "scenario", "step", b"\x01" * 32, None, [], 2, None),
        )
        valid = SignedTx(body=body, signature=key.sign(body.compute_id()))
        report = await fuzz_rpc_async(handle.rpc_url + "/", 10_000, 5, valid_raw_tx=valid.encode())
        assert report.sent == 10_000 and not report.violations
        assert report.pending_before == report.pending_after == 0
        status = handle.service.status()
        assert status.committed_txs == 0 and status.pending_txs == 0
        # the node still admits the untouched transaction afterwards
        assert await handle.service.submit_raw_tx(valid.encode()) == valid.tx_id
    finally:
        await handle.stop()

"""The docs-only verifier (tests/independent_xc.py) over RPC only, against two real node
processes and the real relayer (`gmchain relay --once`): records relayed before and after an
epoch change of both chains verify back to the business genesis file; the same answers checked
against another genesis are refused. The chains are tests/test_relay.py's pair fixture (two
`gmchain dev` children, real LevelDB, sockets, SM2)."""

from __future__ import annotations

import json
import time

from gmchain.ledger.types import SignedTx
from tests.independent_xc import verify_relayed_record
from tests.independent_xc_rpc import gather
from tests.node_helpers import evidence_args, sign_tx
from tests.test_relay import _Chain, _decide, _Pair, _relay_once, _wait_epoch, pair  # noqa: F401


def _submit(chain: _Chain, prefix: str, n: int) -> list[str]:
    key = chain.node.client_key()
    head = chain.rpc.call("gm_status")["height"]
    window = chain.rpc.call("gm_nodeInfo")["replayWindow"]
    txs: list[SignedTx] = [
        sign_tx(key, chain_id=chain.chain_id, expiry=head + window // 2,
                args=evidence_args(f"{prefix}-{i}", data=f"{prefix} {i}".encode()))
        for i in range(n)
    ]  # fmt: skip
    for tx in txs:
        chain.rpc.call("gm_sendRawTransaction", "0x" + tx.encode().hex())
    for tx in txs:
        receipt, end = None, time.monotonic() + 120
        while receipt is None and time.monotonic() < end:
            receipt = chain.rpc.call("gm_waitForReceipt", "0x" + tx.tx_id.hex(), 5000)
        assert receipt is not None and receipt["status"] == 0, receipt
    return [f"{prefix}-{i}" for i in range(n)]


def test_records_relayed_by_real_processes_verify_over_rpc_only(pair: _Pair) -> None:  # noqa: F811
    biz, reg = pair.business, pair.regulator
    _decide(reg, "register-chain", "--genesis", str(biz.genesis_file))
    _decide(biz, "register-chain", "--genesis", str(reg.genesis_file))
    _decide(biz, "set-relay-rule", "--dest", reg.chain_id)
    _submit(biz, "early", 3)
    done = _relay_once(pair)
    assert done.returncode == 0, done.stderr[-3000:]
    _decide(biz, "set_param", "block_max_txs", "4000")  # both chains to epoch 1
    _decide(reg, "set_param", "block_max_txs", "4000")
    _wait_epoch(biz, 1)
    _wait_epoch(reg, 1)
    _submit(biz, "late", 2)
    done = _relay_once(pair)
    assert done.returncode == 0, done.stderr[-3000:]

    biz_genesis = json.loads(biz.genesis_file.read_text())
    reg_genesis = json.loads(reg.genesis_file.read_text())
    epochs = {}
    for record_id in ("early-1", "late-1"):
        served = gather(reg.url, biz.chain_id, record_id)  # RPC only
        verdict = verify_relayed_record(biz_genesis, reg_genesis, served)
        assert verdict.valid and verdict.header is not None, str(verdict)
        epochs[record_id] = verdict.header.epoch
        assert served["record"]["recordId"] == record_id
    assert epochs == {"early-1": 0, "late-1": 1}
    # The regulator's answers, checked against the wrong genesis files, are refused.
    verdict = verify_relayed_record(reg_genesis, reg_genesis, served)
    assert not verdict.valid and "genesisHash is not the business genesis" in str(verdict)
    verdict = verify_relayed_record(biz_genesis, biz_genesis, served)
    assert not verdict.valid and "the regulator's proof bundle" in str(verdict)

"""Against a real four-validator cluster: an epoch change made by governance (docs/governance.md's
worked example, `gmchain gov propose/vote`), then gm_getEpochProof and proof bundles fetched over
JSON-RPC and verified by tests/independent_epoch.py (written from docs/protocol.md alone) from
the cluster's genesis.json only.

Processes are started the way docs/ops.md says (`gmchain cluster init/up/down`); nothing of
gmchain is imported.
"""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.independent_client import ProofError, RpcClient, decode, encode
from tests.independent_epoch import (
    Genesis,
    load_genesis,
    set_from_json,
    verify_bundle,
    verify_epoch_proof,
)

GMCHAIN = str(Path(sys.executable).with_name("gmchain"))


def _cli(*args: str, timeout: float = 120) -> str:
    env = {k: v for k, v in os.environ.items() if k != "GMCHAIN_PASSPHRASE"}
    out = subprocess.run(
        [GMCHAIN, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    assert out.returncode == 0, f"gmchain {' '.join(args)}: {out.stdout}\n{out.stderr}"
    return out.stdout


def _free_base(n: int) -> int:
    for _ in range(200):
        base = random.randrange(20000, 60000 - n)
        socks = []
        try:
            for i in range(n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


def _has_gov_cli() -> bool:
    if not Path(GMCHAIN).exists():
        return False
    out = subprocess.run([GMCHAIN, "gov", "--help"], capture_output=True, check=False)
    return out.returncode == 0


pytestmark = pytest.mark.skipif(not _has_gov_cli(), reason="this build has no `gmchain gov`")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, RpcClient]]:
    d = tmp_path_factory.mktemp("epoch-cluster") / "D"
    rpc_base, p2p_base = _free_base(4), _free_base(4)
    _cli("cluster", "init", "--validators", "4", "--dir", str(d),
         "--base-rpc", str(rpc_base), "--base-p2p", str(p2p_base))  # fmt: skip
    try:
        _cli("cluster", "up", "--dir", str(d), timeout=180)
        yield d, RpcClient(f"http://127.0.0.1:{rpc_base}", timeout_s=60)
    finally:
        subprocess.run([GMCHAIN, "cluster", "down", "--dir", str(d)], capture_output=True,
                       timeout=120, check=False)  # fmt: skip
        shutil.rmtree(d, ignore_errors=True)


def _wait(cond: Any, what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _txs_by_height(rpc: RpcClient, low: int, high: int) -> dict[int, list[str]]:
    """Tx ids per committed height, from gm_getBlockByNumber(h, true) (rpc.md)."""
    out: dict[int, list[str]] = {}
    for h in range(low, high + 1):
        block = rpc.call("gm_getBlockByNumber", [h, True])
        assert block is not None, f"no block at {h}"
        ids = [t["txId"] if isinstance(t, dict) else t for t in block.get("transactions", [])]
        if ids:
            out[h] = ids
    return out


def test_real_epoch_change_verifies_from_genesis_alone(cluster: tuple[Path, RpcClient]) -> None:
    d, rpc = cluster
    genesis: Genesis = load_genesis(d / "genesis.json")
    doc = json.loads((d / "genesis.json").read_text())
    _wait(lambda: int(rpc.call("gm_status")["height"]) >= 2, "the cluster to commit")
    # governance.md section 7: one proposal, then three yes votes (the committee's orgs' admins).
    removed = doc["validators"][-1]["pubkey"]
    rpc_url = rpc.url
    out = _cli("gov", "propose", "remove_validator", "0x" + removed.removeprefix("0x"),
               "--key", str(d / "client.key"), "--rpc", rpc_url, "--json")  # fmt: skip
    proposal = json.loads(out)
    pid = str(proposal["id"] if isinstance(proposal, dict) else proposal)
    keys = [d / "client.key", *sorted((d / "admins").glob("*.key"))]
    for key in keys:
        shown = json.loads(_cli("gov", "show", pid, "--rpc", rpc_url, "--json"))
        if shown.get("status") != "open":
            break
        _cli("gov", "vote", pid, "yes", "--key", str(key), "--rpc", rpc_url)
    shown = json.loads(_cli("gov", "show", pid, "--rpc", rpc_url, "--json"))
    assert shown["status"] == "executed", shown
    _wait(lambda: rpc.call("gm_getEpoch")["epoch"] == 1, "epoch 1")
    _cli("evidence", "submit", "--rpc", rpc_url, "--key", str(d / "client.key"), "--id", "e1-rec",
         "--flow", "e1-flow", "--step", "kyc", "--data", "after the change")  # fmt: skip

    # The epoch-change proof, from the genesis set alone.
    proof = rpc.call("gm_getEpochProof", [0, 1])
    reached = verify_epoch_proof(proof, genesis.chain_id, genesis.validators)
    one = reached.sets[1]
    assert len(one.members) == 3
    assert all(pk.hex() != removed.removeprefix("0x") for pk, _ in one.members.values())
    assert "0x" + one.fingerprint.hex() == rpc.call("gm_getEpoch")["validatorsHash"]
    bad = copy.deepcopy(proof)
    raw = decode(bytes.fromhex(bad["entries"][0]["proof"][2:]), 5)
    sig = bytearray(raw[2][5][0][1])
    sig[5] ^= 1
    raw[2][5][0][1] = bytes(sig)
    bad["entries"][0]["proof"] = "0x" + encode(raw).hex()
    with pytest.raises(ProofError):
        verify_epoch_proof(bad, genesis.chain_id, genesis.validators)
    bad = copy.deepcopy(proof)
    bad["entries"][0]["next_validators"] = [
        {"pubkey": "0x" + v["pubkey"].removeprefix("0x"), "power": v["power"], "org": v["org"]}
        for v in doc["validators"]
    ]
    with pytest.raises(ProofError, match="fingerprint"):
        verify_epoch_proof(bad, genesis.chain_id, genesis.validators)

    # Bundles: the evidence tx of epoch 1; the deciding vote (epoch 0) against an epoch-1 anchor.
    end = reached.checked_headers[0].height  # E
    head = _wait(lambda: (h := int(rpc.call("gm_status")["height"])) > end + 2 and h, "blocks")
    txs = _txs_by_height(rpc, 1, head)
    later = [(h, t) for h, ids in txs.items() if h > end for t in ids]
    assert later, f"no transaction after the epoch end at {end}: {txs}"
    h1, tx1 = later[-1]
    b1 = rpc.call("gm_getTransactionProof", [tx1])
    c1 = verify_bundle(b1, genesis)
    assert c1.header.epoch == 1 and c1.epochs is not None and 1 in c1.epochs.sets
    assert c1.header.height == h1
    assert set_from_json(
        b1["epoch_proof"]["entries"][0]["next_validators"], 1, "x"
    ).fingerprint == (one.fingerprint)
    assert end in txs, f"the epoch-ending block {end} holds no transaction"
    vote = txs[end][-1]
    b0 = rpc.call("gm_getTransactionProof", [vote, head])
    c0 = verify_bundle(b0, genesis)
    assert (c0.header.epoch, c0.anchor.epoch) == (0, 1)
    # The same bundle without its epoch proof cannot reach the anchor's epoch.
    del b0["epoch_proof"]
    with pytest.raises(ProofError, match="not reached"):
        verify_bundle(b0, genesis)

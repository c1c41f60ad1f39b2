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
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.independent_client import ProofError, RpcClient, decode, encode
from tests.independent_epoch import Genesis, load_genesis, verify_bundle, verify_epoch_proof
from tests.ports import free_port_block

GMCHAIN = str(Path(sys.executable).with_name("gmchain"))


def _cli(*args: str, timeout: float = 120) -> str:
    env = {k: v for k, v in os.environ.items() if k != "GMCHAIN_PASSPHRASE"}
    out = subprocess.run(
        [GMCHAIN, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    assert out.returncode == 0, f"gmchain {' '.join(args)}: {out.stdout}\n{out.stderr}"
    return out.stdout


def _has_gov_cli() -> bool:
    if not Path(GMCHAIN).exists():
        return False
    out = subprocess.run([GMCHAIN, "gov", "--help"], capture_output=True, check=False)
    return out.returncode == 0


pytestmark = pytest.mark.skipif(not _has_gov_cli(), reason="this build has no `gmchain gov`")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, RpcClient]]:
    d = tmp_path_factory.mktemp("epoch-cluster") / "D"
    base = free_port_block(8)  # one block: two blocks drawn apart may overlap
    rpc_base, p2p_base = base, base + 4
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


@dataclass(frozen=True)
class Changed:
    d: Path
    rpc: RpcClient
    genesis: Genesis
    doc: dict[str, Any]
    removed: str  # hex without 0x
    end: int  # the height of the epoch-ending block (the one whose vote executed the change)
    evidence_tx: str  # a transaction committed in epoch 1


def _decide(d: Path, rpc: RpcClient, *proposal: str) -> int:
    """governance.md section 7: one proposal, then yes votes of the committee's orgs' admins
    until it is executed; returns the height that executed it (the epoch-ending block)."""
    url = rpc.url
    receipt = json.loads(_cli("gov", "propose", *proposal,
                              "--key", str(d / "client.key"), "--rpc", url, "--json"))  # fmt: skip
    assert receipt["status"] == 0, receipt
    pid = str(receipt["result"])  # the proposal id (governance.md: propose answers its id)
    for key in [d / "client.key", *sorted((d / "admins").glob("*.key"))]:
        if json.loads(_cli("gov", "show", pid, "--rpc", url, "--json"))["status"] != "open":
            break
        _cli("gov", "vote", pid, "yes", "--key", str(key), "--rpc", url)
    shown = json.loads(_cli("gov", "show", pid, "--rpc", url, "--json"))
    assert shown["status"] == "executed", shown
    return int(shown["decidedHeight"])


@pytest.fixture(scope="module")
def changed(cluster: tuple[Path, RpcClient]) -> Changed:
    """governance.md section 7: one proposal, then yes votes of the committee's orgs' admins
    until it is executed; then an evidence transaction in the new epoch."""
    d, rpc = cluster
    doc = json.loads((d / "genesis.json").read_text())
    removed = doc["validators"][-1]["pubkey"].removeprefix("0x")
    end = _decide(d, rpc, "remove_validator", "0x" + removed)
    _wait(lambda: rpc.call("gm_getEpoch")["epoch"] == 1, "epoch 1")
    out = _cli("evidence", "submit", "--rpc", rpc.url, "--key", str(d / "client.key"), "--id", "e1",
               "--flow", "e1-flow", "--step", "kyc", "--data", "after the change")  # fmt: skip
    evidence_tx = out.split(" tx ")[-1].split()[0]
    genesis = load_genesis(d / "genesis.json")
    return Changed(
        d=d, rpc=rpc, genesis=genesis, doc=doc, removed=removed, end=end, evidence_tx=evidence_tx
    )


def _tx_proof(c: Changed, tx: str, at: int | None = None) -> dict[str, Any]:
    return dict(c.rpc.call("gm_getTransactionProof", [tx] if at is None else [tx, at]))


def _check_tx_of_the_new_epoch(changed: Changed) -> None:
    c = changed
    b = _tx_proof(c, c.evidence_tx)
    certified = verify_bundle(b, c.genesis)
    assert certified.header.epoch == 1 and certified.header.height > c.end
    assert certified.epochs is not None and sorted(certified.epochs.sets) == [0, 1]
    one = certified.epochs.sets[1]
    assert sorted(pk.hex() for pk, _ in one.members.values()) == sorted(
        v["pubkey"].removeprefix("0x") for v in c.doc["validators"][:-1]
    )
    assert "0x" + one.fingerprint.hex() == c.rpc.call("gm_getEpoch")["validatorsHash"]
    assert certified.epochs.checked_headers[0].height == c.end
    # The same bundle without its epoch proof cannot reach epoch 1; with a forged next set,
    # the ending header's next_validators_hash refuses it.
    bad = copy.deepcopy(b)
    del bad["epoch_proof"]
    with pytest.raises(ProofError, match="not reached"):
        verify_bundle(bad, c.genesis)
    bad = copy.deepcopy(b)
    bad["epoch_proof"]["entries"][0]["next_validators"] = [
        {"pubkey": "0x" + v["pubkey"].removeprefix("0x"), "power": v["power"], "org": v["org"]}
        for v in c.doc["validators"]
    ]
    with pytest.raises(ProofError, match="commitment"):
        verify_bundle(bad, c.genesis)


def _check_deciding_vote_against_a_new_epoch_anchor(changed: Changed) -> None:
    """The vote that executed the change is in the epoch-ending block E (epoch 0); against the
    head (epoch 1) the bundle carries the epoch proof; by default its anchor is E (no proof)."""
    c = changed
    block = c.rpc.call("gm_getBlockByNumber", [c.end, True])
    vote = block["transactions"][-1]["txId"]
    head = int(c.rpc.call("gm_status")["height"])
    certified = verify_bundle(_tx_proof(c, vote, head), c.genesis)
    assert (certified.header.epoch, certified.anchor.epoch) == (0, 1)
    b = _tx_proof(c, vote)
    assert "epoch_proof" not in b
    assert verify_bundle(b, c.genesis).anchor.height == c.end


def _check_gm_get_epoch_proof(changed: Changed) -> None:
    c = changed
    proof = c.rpc.call("gm_getEpochProof", [0, 1])
    reached = verify_epoch_proof(proof, c.genesis.chain_id, c.genesis.validators)
    assert reached.checked_headers[0].height == c.end
    epoch1 = c.rpc.call("gm_getValidators", [c.end + 1])  # the set of the block's epoch (rpc.md)
    assert epoch1["epoch"] == 1
    assert "0x" + reached.sets[1].fingerprint.hex() == epoch1["validatorsHash"]
    whole = c.rpc.call("gm_getEpochProof", [0])  # toEpoch defaults to the current epoch (2)
    assert whole["entries"][0] == proof["entries"][0]
    upto2 = verify_epoch_proof(whole, c.genesis.chain_id, c.genesis.validators)
    assert "0x" + upto2.last.fingerprint.hex() == c.rpc.call("gm_getEpoch")["validatorsHash"]
    bad = copy.deepcopy(proof)
    raw = decode(bytes.fromhex(bad["entries"][0]["proof"][2:]), 5)
    sig = bytearray(raw[2][5][0][1])
    sig[5] ^= 1
    raw[2][5][0][1] = bytes(sig)
    bad["entries"][0]["proof"] = "0x" + encode(raw).hex()
    with pytest.raises(ProofError, match="does not verify"):
        verify_epoch_proof(bad, c.genesis.chain_id, c.genesis.validators)


def _check_second_change_intermediate_epoch(changed: Changed) -> None:
    """A second change (set_power, epoch 2): the vote that made it lies in epoch 1's ending block;
    against an epoch-2 anchor its `commit` is checked against epoch 1's set, which the bundle's
    epoch proof (0 -> 2) only passes through (report finding F3)."""
    c = changed
    first = c.doc["validators"][0]["pubkey"].removeprefix("0x")
    end2 = _decide(c.d, c.rpc, "set_power", "0x" + first, "2")
    _wait(lambda: c.rpc.call("gm_getEpoch")["epoch"] == 2, "epoch 2")
    _cli("evidence", "submit", "--rpc", c.rpc.url, "--key", str(c.d / "client.key"), "--id", "e2",
         "--flow", "e2-flow", "--step", "aml", "--data", "after the second change")  # fmt: skip
    head = int(c.rpc.call("gm_status")["height"])
    vote = c.rpc.call("gm_getBlockByNumber", [end2, True])["transactions"][-1]["txId"]
    certified = verify_bundle(_tx_proof(c, vote, head), c.genesis)
    assert (certified.header.epoch, certified.anchor.epoch) == (1, 2)
    assert certified.epochs is not None and sorted(certified.epochs.sets) == [0, 1, 2]
    assert [h.height for h in certified.epochs.checked_headers][:1] == [c.end]
    two = certified.epochs.sets[2]
    assert sorted(p for _, p in two.members.values()) == [1, 1, 2]
    assert "0x" + two.fingerprint.hex() == c.rpc.call("gm_getEpoch")["validatorsHash"]


def test_real_epoch_changes_verify_from_genesis_alone(changed: Changed) -> None:
    """One test (one cluster even under xdist), the checks in order; gm_getEpochProof last."""
    _check_tx_of_the_new_epoch(changed)
    _check_deciding_vote_against_a_new_epoch_anchor(changed)
    _check_second_change_intermediate_epoch(changed)
    _check_gm_get_epoch_proof(changed)

"""Governance and epoch interfaces (issue 12): the RPC methods, `gmchain gov ...`, the metrics.

Rule tests of node/rpcgov.py's bounds and node/metrics.py's epoch gauges, and one real
`gmchain dev` child process (real LevelDB, sockets, SM2 signatures) driven by the real CLI in
child processes: proposals made and voted with real governance transactions, then every new
RPC method read back and the bad arguments refused with their documented codes.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gmchain.contracts.governance import make_join_request
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.epoch import PARAMS, EpochConfig, validator_set_fingerprint
from gmchain.ledger.genesis import GenesisValidator
from gmchain.node.api import EpochInfo, ErrorCode
from gmchain.node.cli_client import CliError
from gmchain.node.cli_gov import proposal_values
from gmchain.node.metrics import NodeMetrics
from gmchain.node.rpcgov import MAX_PROOF_EPOCHS, GovMethods
from gmchain.node.rpcspec import RpcError
from tests.node_helpers import (
    NodeProcess,
    RpcFailure,
    RpcSession,
    run_gmchain,
    running_dev_node,
)

# --- rule tests ---------------------------------------------------------------------------------


class _EpochApi:
    """The two NodeApi methods gm_getEpochProof uses, at a chosen current epoch."""

    def __init__(self, epoch: int) -> None:
        key = PrivateKey.generate().public_key.to_bytes()
        v = GenesisValidator(pubkey=key, power=1, org="o")
        self.info = EpochInfo(
            config=EpochConfig(epoch=epoch, validators=(v,)), start_height=10, height=20
        )
        self.asked: list[tuple[int, int]] = []

    def current_epoch(self) -> EpochInfo:
        return self.info

    async def epoch_proof(self, first: int, last: int, *, client: str = "") -> Any:
        self.asked.append((first, last))
        return {"from_epoch": first, "to_epoch": last, "entries": []}


async def _proof(api: _EpochApi, first: int, last: int | None) -> Any:
    handler = GovMethods(api).handlers()["gm_getEpochProof"]  # type: ignore[arg-type]
    return await handler({"fromEpoch": first, "toEpoch": last}, None)


async def test_epoch_proof_range_is_bounded_and_never_past_the_current_epoch() -> None:
    api = _EpochApi(epoch=100)
    for first, last, why in (
        (5, 4, "must not exceed"),
        (99, 101, "after the current epoch"),
        (0, MAX_PROOF_EPOCHS + 1, f"at most {MAX_PROOF_EPOCHS}"),
        (3, None, f"at most {MAX_PROOF_EPOCHS}"),  # default toEpoch: the current one, 100
    ):
        with pytest.raises(RpcError) as err:
            await _proof(api, first, last)
        assert err.value.code == ErrorCode.BAD_RANGE and why in err.value.message
    assert api.asked == []  # refused before any proof work
    await _proof(api, 0, MAX_PROOF_EPOCHS)
    await _proof(api, 100 - MAX_PROOF_EPOCHS, None)  # default: up to the current epoch
    assert api.asked == [(0, MAX_PROOF_EPOCHS), (100 - MAX_PROOF_EPOCHS, 100)]


def test_epoch_behind_follows_the_peers_proven_epoch() -> None:
    m = NodeMetrics()

    def read(name: str) -> float | None:
        return m.registry.get_sample_value(name)

    m.set_epoch(3)
    assert read("gmchain_epoch") == 3 and read("gmchain_epoch_behind") == 0
    m.peer_epoch_seen(2)  # an older epoch: not behind
    assert read("gmchain_epoch_behind") == 0
    m.peer_epoch_seen(4)
    assert read("gmchain_epoch_behind") == 1
    m.set_epoch(4)  # caught up across the change
    assert read("gmchain_epoch_behind") == 0
    m.set_proposals({"open": 2, "executed": 0})
    assert m.registry.get_sample_value("gmchain_governance_proposals", {"status": "open"}) == 2


def _join_request(tmp_path: Path, chain_id: str, org: str) -> tuple[Path, bytes, bytes]:
    node_key = PrivateKey.generate()
    pubkey, org, pop = make_join_request(chain_id, node_key, org)
    path = tmp_path / f"join-{pubkey.hex()[:8]}.json"
    doc = {"chain_id": chain_id, "node_pubkey": "0x" + pubkey.hex(), "org": org}
    path.write_text(json.dumps({**doc, "pop_signature": "0x" + pop.hex()}))
    return path, pubkey, pop


def test_cli_values_follow_the_kind_schema(tmp_path: Path) -> None:
    assert proposal_values("set-param", ["round_timeout_ms", "2000"], None) == [
        "round_timeout_ms",
        2000,
    ]
    path, pubkey, pop = _join_request(tmp_path, "c", "org-b")
    from gmchain.node.cli_gov import _read_join_request

    request = _read_join_request(str(path))
    assert proposal_values("admit_observer", [], request) == [pubkey, "org-b", pop]
    assert proposal_values("add_validator", ["5"], request) == [pubkey, 5, "org-b", pop]
    old = "0x" + PrivateKey.generate().public_key.to_bytes().hex()
    assert proposal_values("rotate_node_key", [old], request)[1:] == [pubkey, pop]
    promote = proposal_values("add_validator", ["0x" + pubkey.hex(), "1", "org-b", "0x"], None)
    assert promote[3] == b""  # a current observer's promotion: no new proof
    for kind, values, req, why in (
        ("no_such_kind", [], None, "unknown proposal kind"),
        ("set_param", ["nope", "1"], None, "must be one of"),
        ("set_param", ["round_timeout_ms"], None, "missing value"),
        ("set_power", ["0x12", "1"], None, "expected 65 bytes"),
        ("set_power", ["0x" + pubkey.hex(), "x"], None, "decimal integer"),
        ("remove_org", ["a", "b"], None, "too many values"),
        ("remove_org", [], request, "--join-request applies to"),
    ):
        with pytest.raises(CliError, match=why):
            proposal_values(kind, values, req)


# --- a real node, the real CLI --------------------------------------------------------------------


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with running_dev_node(tmp_path_factory.mktemp("gov")) as proc:
        yield proc


def _gov(node: NodeProcess, *args: str) -> Any:
    """`gmchain gov ARGS --json` against `node`; the parsed output (fails on a non-zero exit)."""
    key = str(node.data_dir / "client.key")
    rpc = f"http://127.0.0.1:{node.port}"
    done = run_gmchain("gov", *args, "--json", "--rpc", rpc, "--key", key)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _gov_fails(node: NodeProcess, *args: str) -> str:
    key = str(node.data_dir / "client.key")
    done = run_gmchain("gov", *args, "--rpc", f"http://127.0.0.1:{node.port}", "--key", key)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.startswith("gmchain: ") and "Traceback" not in done.stderr
    return done.stderr


def _rpc(node: NodeProcess, method: str, *params: Any) -> Any:
    session = RpcSession(node.port)
    try:
        return session.call(method, *params)
    finally:
        session.close()


def _rpc_error(node: NodeProcess, method: str, *params: Any) -> int:
    with pytest.raises(RpcFailure) as err:
        _rpc(node, method, *params)
    code = err.value.code
    assert isinstance(code, int)
    return code


def test_genesis_epoch_and_validators(node: NodeProcess) -> None:
    genesis = json.loads((node.data_dir / "genesis.json").read_text())
    epoch = _rpc(node, "gm_getEpoch")
    if epoch["epoch"] != 0:
        pytest.skip("the module's node has already changed epoch (test order)")
    assert epoch["startHeight"] == 0
    (validator,) = epoch["validators"]
    assert validator["org"] == genesis["validators"][0]["org"]
    v = GenesisValidator(
        pubkey=bytes.fromhex(validator["pubkey"][2:]), power=validator["power"], org="x"
    )
    assert epoch["validatorsHash"] == "0x" + validator_set_fingerprint([v]).hex()
    assert epoch["params"]["round_timeout_ms"] == PARAMS["round_timeout_ms"][0]
    head = epoch["answeredAt"]
    nxt = _rpc(node, "gm_getValidators")
    assert nxt["height"] == head + 1 and nxt["validators"] == epoch["validators"]
    assert _rpc(node, "gm_getValidators", 0)["epoch"] == 0


def test_proposals_through_the_cli_change_the_epoch(node: NodeProcess, tmp_path: Path) -> None:
    chain_id = _rpc(node, "gm_nodeInfo")["chainId"]
    org = _rpc(node, "gm_getCommittee")["members"][0]["org"]
    before = _rpc(node, "gm_getEpoch")

    made = _gov(node, "propose", "set_param", "round_timeout_ms", "2000")
    pid = made["result"]
    assert _rpc(node, "gm_getProposal", pid)["status"] == "open"
    assert pid in [p["id"] for p in _gov(node, "list", "--status", "open")]
    voted = _gov(node, "vote", str(pid), "yes")
    assert voted["result"] == "executed"  # one committee org: its yes decides
    shown = _gov(node, "show", str(pid))
    assert shown["status"] == "executed" and shown["votes"] == [{"org": org, "yes": True}]
    assert shown["args"] == ["round_timeout_ms", 2000]

    epoch = _rpc(node, "gm_getEpoch")
    assert epoch["epoch"] == before["epoch"] + 1
    assert epoch["startHeight"] == shown["decidedHeight"] + 1
    assert epoch["params"]["round_timeout_ms"] == 2000

    path, pubkey, _ = _join_request(tmp_path, chain_id, org)
    pid2 = _gov(node, "propose", "admit_observer", "--join-request", str(path))["result"]
    assert _gov(node, "vote", str(pid2), "yes")["result"] == "executed"
    epoch2 = _gov(node, "epoch")
    assert epoch2["epoch"] == epoch["epoch"] + 1
    assert epoch2["observers"] == ["0x" + pubkey.hex()]
    assert epoch2["validatorsHash"] == epoch["validatorsHash"]  # observers do not sign

    committee = _gov(node, "committee")
    assert committee == _rpc(node, "gm_getCommittee") and committee["members"][0]["org"] == org
    at_genesis = _gov(node, "validators", "--height", "0")
    assert at_genesis["epoch"] == 0 and at_genesis["height"] == 0

    listed = _rpc(node, "gm_getProposals", "executed")
    assert [p["id"] for p in listed if p["id"] >= pid] == [pid, pid2]
    assert _rpc(node, "gm_getProposals", None, 1) == [_rpc(node, "gm_getProposal", 1)]

    # A vote on a decided proposal is a failed transaction: exit 1 with the contract's rule.
    assert "G3" in _gov_fails(node, "vote", str(pid), "no")
    assert "no proposal 999" in _gov_fails(node, "show", "999")

    metrics = urllib.request.urlopen(f"http://127.0.0.1:{node.port}/metrics").read().decode()
    assert f"gmchain_epoch {float(epoch2['epoch'])}" in metrics
    executed = len(_rpc(node, "gm_getProposals", "executed", 1000))
    assert f'gmchain_governance_proposals{{status="executed"}} {float(executed)}' in metrics
    assert "gmchain_epoch_behind 0.0" in metrics


def test_an_expired_proposal_is_closed(node: NodeProcess) -> None:
    pid = _gov(node, "propose", "set_param", "block_max_txs", "3000", "--expiry-blocks", "8")[
        "result"
    ]
    expiry = _rpc(node, "gm_getProposal", pid)["expiryHeight"]
    assert "G6" in _gov_fails(node, "close", str(pid))  # still open: closing is refused
    while _rpc(node, "gm_blockNumber") < expiry:  # later blocks: rejected votes on a new one
        other = _gov(node, "propose", "set_param", "block_max_txs", "2000")["result"]
        _gov(node, "vote", str(other), "no")
    assert _gov(node, "close", str(pid))["result"] == "expired"
    assert _gov(node, "show", str(pid))["status"] == "expired"
    assert pid in [p["id"] for p in _rpc(node, "gm_getProposals", "expired")]


def test_bad_arguments_are_refused_with_their_codes(node: NodeProcess) -> None:
    head = _rpc(node, "gm_blockNumber")
    current = _rpc(node, "gm_getEpoch")["epoch"]
    assert _rpc(node, "gm_getProposal", 10**6) is None
    assert _rpc_error(node, "gm_getProposal", 0) == ErrorCode.INVALID_PARAMS
    assert _rpc_error(node, "gm_getProposal", "1") == ErrorCode.INVALID_PARAMS
    assert _rpc_error(node, "gm_getProposals", "bogus") == ErrorCode.INVALID_PARAMS
    assert _rpc_error(node, "gm_getProposals", None, 0) == ErrorCode.INVALID_PARAMS
    assert _rpc_error(node, "gm_getProposals", None, 1001) == ErrorCode.INVALID_PARAMS
    assert _rpc_error(node, "gm_getValidators", head + 2) == ErrorCode.BAD_RANGE
    assert _rpc_error(node, "gm_getValidators", -1) == ErrorCode.INVALID_PARAMS
    assert _rpc_error(node, "gm_getEpochProof", 1, 0) == ErrorCode.BAD_RANGE
    assert _rpc_error(node, "gm_getEpochProof", 0, current + 1) == ErrorCode.BAD_RANGE
    assert _rpc_error(node, "gm_getEpochProof") == ErrorCode.INVALID_PARAMS
    assert _rpc_error(node, "gm_getCommittee", 1) == ErrorCode.INVALID_PARAMS
    empty = _rpc(node, "gm_getEpochProof", current, current)
    assert empty == {"from_epoch": current, "to_epoch": current, "entries": []}

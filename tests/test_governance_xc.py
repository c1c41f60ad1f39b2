"""The cross-chain governance kinds and the evidence outbox (issue 13 items 1 and 3;
contracts/gov_kinds.py G-K5, contracts/governance.py G8, contracts/evidence.py E8,
contracts/xc_layout.py rules 1-3), through the real governance and evidence contracts in the
miniature executor with real SM2 keys, and `gmchain gov propose register-chain` against a real
one-validator node."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gmchain.contracts.framework import CROSS_WRITES, ContractError, default_registry
from gmchain.contracts.governance import MAX_ARGS_BYTES, epoch_config, latest_epoch
from gmchain.contracts.testing import make_context
from gmchain.contracts.xc_layout import (
    ACTIVE,
    FROZEN,
    PACKET_QUEUED,
    RELAY_RULE_KEY,
    XCLIENT,
    ClientState,
    RelayRule,
    client_key,
    outbox_key,
)
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.codec import decode, encode
from gmchain.ledger.genesis import Genesis, GenesisValidator
from gmchain.ledger.scalars import MAX_VALIDATORS
from gmchain.ledger.types import ReceiptStatus
from tests.cluster_helpers import rpc_call, running_cluster
from tests.node_helpers import evidence_args, run_gmchain, running_dev_node
from tests.test_governance_contract import CHAIN, Net, ok, pub, refused

FOREIGN = "regulator-1"
GENESIS_HASH = bytes(range(32))
BLOCK_ID = bytes(range(32, 64))


def foreign_set(n: int = 3, org: str = "reg") -> list[list[Any]]:
    return [[pub(PrivateKey.generate()), i + 1, f"{org}{i}"] for i in range(n)]


def as_validators(items: list[list[Any]]) -> tuple[GenesisValidator, ...]:
    vals = (GenesisValidator(pubkey=k, power=p, org=o) for k, p, o in items)
    return tuple(sorted(vals, key=lambda v: v.node_id))


def xclient(net: Net) -> Any:
    return net.h.store.reader(XCLIENT)


def client(net: Net, chain_id: str = FOREIGN) -> ClientState | None:
    raw = xclient(net).get(client_key(chain_id))
    return None if raw is None else ClientState.decode(raw)


def rule(net: Net) -> RelayRule | None:
    raw = xclient(net).get(RELAY_RULE_KEY)
    return None if raw is None else RelayRule.decode(raw)


def register_values(chain_id: str = FOREIGN, epoch: int = 0, n: int = 3) -> list[Any]:
    return [chain_id, GENESIS_HASH, BLOCK_ID, epoch, foreign_set(n)]


def freeze(net: Net, chain_id: str = FOREIGN, latest: int = 17) -> ClientState:
    """What the xclient contract writes on misbehaviour (its own namespace; crosschain/xclient.py
    is another module's work): the stored client, frozen, with verified headers up to `latest`."""
    state = client(net, chain_id)
    assert state is not None
    frozen = ClientState(
        genesis_hash=state.genesis_hash,
        genesis_block_id=state.genesis_block_id,
        epoch=state.epoch,
        validators=state.validators,
        status=FROZEN,
        latest_height=latest,
        frozen_reason="two blocks at height 9",
    )
    net.h.store.state(XCLIENT).put(client_key(chain_id), frozen.encode())
    return frozen


# --- register_chain (G-K5) ------------------------------------------------------------------------


def test_register_chain_writes_a_fresh_active_client_and_no_epoch() -> None:
    net = Net()
    values = register_values(epoch=4)
    pid = net.decide("register_chain", values)
    p = net.proposal(pid)
    assert p["status"] == "executed", p["note"]
    assert "chain regulator-1 registered at epoch 4 with 3 validators" in p["note"]
    assert client(net) == ClientState(
        genesis_hash=GENESIS_HASH,
        genesis_block_id=BLOCK_ID,
        epoch=4,
        validators=as_validators(values[4]),
        status=ACTIVE,
        latest_height=0,
        frozen_reason=None,
    )
    # G8: no epoch configuration is written; the client key is the only xclient key written.
    assert latest_epoch(net.gov) == 0 and epoch_config(net.gov, 1) is None
    assert list(net.h.store.state(XCLIENT).data) == [client_key(FOREIGN)]


def test_register_chain_refusals_at_propose_time() -> None:
    net = Net()
    refused(net.propose("register_chain", register_values(CHAIN)), "this chain's own id")
    refused(net.propose("register_chain", register_values("a/b")), "may not contain '/'")
    bad_key = register_values()
    bad_key[4][1][0] = b"\x04" + bytes(64)  # 65 bytes, not a point on the curve
    refused(net.propose("register_chain", bad_key), "validator 1: 04000000")
    twice = register_values()
    twice[4].append([twice[4][0][0], 9, "other"])
    refused(net.propose("register_chain", twice), "validator 3: key")
    refused(
        net.propose("register_chain", [FOREIGN, GENESIS_HASH, BLOCK_ID, 0, []]),
        "'validators' must have 1 to",
        ReceiptStatus.BAD_ARGUMENTS,
    )
    zero_power = register_values()
    zero_power[4][0][1] = 0
    refused(net.propose("register_chain", zero_power), "power", ReceiptStatus.BAD_ARGUMENTS)
    refused(
        net.propose("register_chain", [FOREIGN, GENESIS_HASH[:31], BLOCK_ID, 0, foreign_set()]),
        "genesis_hash",
        ReceiptStatus.BAD_ARGUMENTS,
    )
    member = net.h.call(
        pub(net.member),
        "governance",
        "propose",
        ["register_chain", encode(register_values()), net.h.height + 10],
    )
    refused(member, "G1: only an admin of a committee org")
    net.decide("register_chain", register_values())
    refused(net.propose("register_chain", register_values()), "already registered")
    assert client(net) is not None and client(net, "other") is None


def test_register_chain_fails_at_approval_if_registered_meanwhile() -> None:
    """G5: two proposals for one chain; the second one approved fails, the first client stays."""
    net = Net()
    first = register_values()
    pid1 = ok(net.propose("register_chain", first)).result
    pid2 = ok(net.propose("register_chain", register_values())).result
    for org in ("csrc", "firm-a", "firm-b"):
        ok(net.vote(pid1, org))
    for org in ("csrc", "firm-a", "firm-b"):
        ok(net.vote(pid2, org))
    assert net.proposal(pid1)["status"] == "executed"
    p2 = net.proposal(pid2)
    assert p2["status"] == "failed" and "already registered" in p2["note"]
    state = client(net)
    assert state is not None and state.validators == as_validators(first[4])


def test_register_chain_takes_a_full_foreign_set() -> None:
    """MAX_ARGS_BYTES fits MAX_VALIDATORS foreign validators with 64-byte org names."""
    net = Net()
    items = [[pub(PrivateKey.generate()), 2**32, "o" * 64] for _ in range(MAX_VALIDATORS)]
    values = [FOREIGN, GENESIS_HASH, BLOCK_ID, 0, items]
    assert len(encode(values)) <= MAX_ARGS_BYTES
    net.decide("register_chain", values)
    state = client(net)
    assert state is not None and len(state.validators) == MAX_VALIDATORS


# --- unfreeze_chain (G-K5) ------------------------------------------------------------------------


def test_unfreeze_chain_resets_the_trusted_set_of_a_frozen_client_only() -> None:
    net = Net()
    new_set = foreign_set(4, org="new")
    values = [FOREIGN, 7, new_set, "fork investigated; set from the operators"]
    refused(net.propose("unfreeze_chain", values), "chain 'regulator-1' is not registered")
    net.decide("register_chain", register_values())
    refused(net.propose("unfreeze_chain", values), "is not frozen")
    frozen = freeze(net, latest=17)
    pid = net.decide("unfreeze_chain", values)
    p = net.proposal(pid)
    assert p["status"] == "executed", p["note"]
    assert "frozen for: two blocks at height 9" in p["note"]
    assert client(net) == ClientState(
        genesis_hash=frozen.genesis_hash,
        genesis_block_id=frozen.genesis_block_id,
        epoch=7,
        validators=as_validators(new_set),
        status=ACTIVE,
        latest_height=17,  # kept: verified headers stay
        frozen_reason=None,
    )
    refused(net.propose("unfreeze_chain", values), "is not frozen")


def test_unfreeze_chain_fails_at_approval_if_no_longer_frozen() -> None:
    net = Net()
    net.decide("register_chain", register_values())
    freeze(net)
    pid = ok(net.propose("unfreeze_chain", [FOREIGN, 1, foreign_set(), "x"])).result
    net.decide("unfreeze_chain", [FOREIGN, 2, foreign_set(), "the other proposal"])
    for org in ("csrc", "firm-a", "firm-b"):
        ok(net.vote(pid, org))
    p = net.proposal(pid)
    assert p["status"] == "failed" and "is not frozen" in p["note"]
    state = client(net)
    assert state is not None and state.epoch == 2


# --- set_relay_rule / clear_relay_rule (G-K5) -----------------------------------------------------


def test_relay_rule_set_replace_clear() -> None:
    net = Net()
    refused(net.propose("clear_relay_rule", []), "there is no relay rule")
    refused(net.propose("set_relay_rule", [CHAIN, []]), "is this chain")
    refused(net.propose("set_relay_rule", [FOREIGN, [["a"], ["a"]]]), "named twice")
    refused(
        net.propose("set_relay_rule", [FOREIGN, ["a"]]),
        "item 0 must be a list",
        ReceiptStatus.BAD_ARGUMENTS,
    )
    net.decide("set_relay_rule", [FOREIGN, [["private-fund-sale"], ["fund-custody"]]])
    assert rule(net) == RelayRule(
        dest_chain_id=FOREIGN, scenarios=("fund-custody", "private-fund-sale")
    )
    refused(
        net.propose("set_relay_rule", [FOREIGN, [["fund-custody"], ["private-fund-sale"]]]),
        "already this",
    )
    net.decide("set_relay_rule", ["regulator-2", []])
    assert rule(net) == RelayRule(dest_chain_id="regulator-2", scenarios=())
    assert list(net.h.store.state(XCLIENT).data) == [RELAY_RULE_KEY]
    pid = net.decide("clear_relay_rule", [])
    assert net.proposal(pid)["note"] == "relay rule cleared"
    assert rule(net) is None and net.h.store.snapshot().get(XCLIENT) is None


def test_only_governance_writes_the_xclient_namespace_of_others() -> None:
    """Framework rule 7: governance may write membership and xclient; evidence may not."""
    assert dict(CROSS_WRITES) == {"governance": ("membership", "xclient")}
    net = Net()
    ctx = make_context(
        net.h.store,
        "evidence",
        sender_pubkey=pub(net.member),
        sender_org="firm-a",
        sender_role="member",
    )
    ctx.contract = "evidence"
    with pytest.raises(ContractError, match="may not write 'xclient'"):
        ctx.writer_for(XCLIENT)
    assert "governance" in default_registry().names


# --- the evidence outbox (evidence E8) ------------------------------------------------------------


def submit(net: Net, record_id: str, scenario: str, **kw: Any) -> Any:
    args = evidence_args(record_id)
    args[2] = scenario
    return net.h.call(pub(net.member), "evidence", "submit", args, **kw)


def queued(outcome: Any) -> list[tuple[tuple[str, Any], ...]]:
    return [e.fields for e in outcome.events if e.name == PACKET_QUEUED]


def outbox(net: Net, *args: Any) -> list[dict[str, Any]]:
    return [dict(row) for row in net.h.query("evidence", "outbox", list(args))]


def test_nothing_is_queued_without_a_relay_rule() -> None:
    net = Net()
    out = ok(submit(net, "r1", "private-fund-sale"))
    assert [e.name for e in out.events] == ["EvidenceSubmitted"]
    assert net.h.query("evidence", "outbox_count", []) == 0 and outbox(net) == []
    assert not any(k.startswith(b"out") for k in net.h.store.state("evidence").data)


def test_the_outbox_queues_selected_scenarios_with_contiguous_seqs() -> None:
    net = Net()
    net.decide("set_relay_rule", [FOREIGN, [["private-fund-sale"]]])
    first = ok(submit(net, "r1", "private-fund-sale"))
    assert [e.name for e in first.events] == ["EvidenceSubmitted", PACKET_QUEUED]
    assert queued(first) == [(("seq", 1), ("dest", FOREIGN), ("record_id", "r1"))]
    assert queued(ok(submit(net, "r2", "fund-custody"))) == []  # not selected
    # Two in one block, then one more: 2, 3, 4 with no gap.
    assert queued(ok(submit(net, "r3", "private-fund-sale")))[0][0] == ("seq", 2)
    assert queued(ok(submit(net, "r4", "private-fund-sale", same_block=True)))[0][0] == ("seq", 3)
    refused(submit(net, "r4", "private-fund-sale"), "already exists")  # a failed submit: no seq
    assert queued(ok(submit(net, "r5", "private-fund-sale")))[0][0] == ("seq", 4)
    assert net.h.query("evidence", "outbox_count", []) == 4
    rows = outbox(net)
    assert [(r["seq"], r["record_id"]) for r in rows] == [
        (1, "r1"),
        (2, "r3"),
        (3, "r4"),
        (4, "r5"),
    ]
    r1 = dict(net.h.query("evidence", "get", ["r1"]))
    assert rows[0] == {
        "seq": 1,
        "tx_id": r1["tx_id"],
        "record_id": "r1",
        "flow_id": "flow-r1",
        "org": "firm-a",
    }
    assert decode(net.h.store.state("evidence").data[outbox_key(1)]) == [
        r1["tx_id"],
        "r1",
        "flow-r1",
        "firm-a",
    ]
    assert [r["seq"] for r in outbox(net, 2, 2)] == [2, 3]
    assert [r["seq"] for r in outbox(net, 4, 1000)] == [4]
    assert outbox(net, 5) == []
    with pytest.raises(ContractError, match="limit"):
        net.h.query("evidence", "outbox", [1, 1001])
    with pytest.raises(ContractError, match="start"):
        net.h.query("evidence", "outbox", [0])

    # Every scenario once the rule names none; nothing once it is cleared; the count stays.
    net.decide("set_relay_rule", ["regulator-2", []])
    assert queued(ok(submit(net, "r6", "fund-custody"))) == [
        (("seq", 5), ("dest", "regulator-2"), ("record_id", "r6"))
    ]
    net.decide("clear_relay_rule", [])
    assert queued(ok(submit(net, "r7", "private-fund-sale"))) == []
    assert net.h.query("evidence", "outbox_count", []) == 5


# --- `gmchain gov propose` for the cross-chain kinds (node/cli_govxc.py) --------------------------


def _propose_args(*argv: str) -> Any:
    from gmchain.node.cli import build_parser

    return build_parser().parse_args(["gov", "propose", *argv])


def _foreign_genesis(tmp_path: Path, chain_id: str = "business-7") -> tuple[Path, Genesis]:
    from gmchain.node.config import save_genesis

    vals = tuple(GenesisValidator(pubkey=k, power=p, org=o) for k, p, o in foreign_set(3))
    genesis = Genesis(chain_id=chain_id, timestamp_ms=5, validators=vals)
    path = tmp_path / f"{chain_id}.json"
    save_genesis(path, genesis)
    return path, genesis


def test_cli_values_of_the_cross_chain_kinds(tmp_path: Path) -> None:
    from gmchain.chain.genesis import make_genesis_block
    from gmchain.node.cli_client import CliError
    from gmchain.node.cli_govxc import xc_values

    path, genesis = _foreign_genesis(tmp_path)
    want_set = [
        [v.pubkey, v.power, v.org] for v in sorted(genesis.validators, key=lambda v: v.node_id)
    ]
    block0 = make_genesis_block(genesis)[0].header.block_id
    assert xc_values("register-chain", _propose_args("register-chain", "--genesis", str(path))) == [
        "business-7",
        genesis.compute_hash(),
        block0,
        0,
        want_set,
    ]
    assert xc_values(
        "unfreeze_chain", _propose_args("unfreeze_chain", "keys replaced", "--genesis", str(path))
    ) == ["business-7", 0, want_set, "keys replaced"]
    assert xc_values(
        "set-relay-rule",
        _propose_args("set-relay-rule", "--dest", "reg", "--scenario", "a", "--scenario", "b"),
    ) == ["reg", [["a"], ["b"]]]
    assert xc_values("set-relay-rule", _propose_args("set-relay-rule", "--dest", "reg")) == [
        "reg",
        [],
    ]
    assert xc_values("clear-relay-rule", _propose_args("clear-relay-rule")) == []
    assert xc_values("set_param", _propose_args("set_param", "a", "1")) is None
    for argv, why in (
        (["register-chain", "--genesis", str(path), "--epoch", "2"], "epoch 2: the genesis names"),
        (["register-chain"], "needs --genesis FILE"),
        (["register-chain", "x", "--genesis", str(path)], "takes no VALUE"),
        (["unfreeze-chain", "--genesis", str(path)], "takes REASON"),
        (["register-chain", "--genesis", str(tmp_path / "none.json")], "not found"),
        (["set-relay-rule"], "needs --dest"),
        (["set-relay-rule", "--dest", "r", "--genesis", str(path)], "does not take --genesis"),
        (["clear-relay-rule", "--scenario", "a"], "does not take --scenario"),
        (["set_param", "a", "1", "--dest", "r"], "--dest apply to"),
    ):
        with pytest.raises(CliError, match=why):
            xc_values(argv[0], _propose_args(*argv))


def _cli_json(rpc: str, key: Path, *argv: str) -> Any:
    done = run_gmchain("gov", *argv, "--json", "--rpc", rpc, "--key", str(key))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _cli_fails(rpc: str, key: Path, *argv: str) -> str:
    done = run_gmchain("gov", *argv, "--rpc", rpc, "--key", str(key))
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.startswith("gmchain: ") and "Traceback" not in done.stderr
    return done.stderr


def _decide(rpc: str, key: Path, *argv: str) -> int:
    """Propose with the CLI and vote yes: one committee org, so its vote executes it."""
    pid = _cli_json(rpc, key, "propose", *argv)["result"]
    assert _cli_json(rpc, key, "vote", str(pid), "yes")["result"] == "executed"
    return int(pid)


@pytest.mark.slow
def test_cli_register_chain_from_a_live_foreign_node_and_the_outbox_on_a_real_node(
    tmp_path: Path,
) -> None:
    """A one-validator foreign cluster moves to epoch 1; a dev node's committee registers it with
    `gov propose register-chain --validators-from-rpc` (the set verified from the genesis by the
    foreign node's epoch-change proof), sets and clears a relay rule with the CLI, and the real
    executor over LevelDB queues exactly the selected evidence with PacketQueued in the receipt."""
    from gmchain.chain.genesis import make_genesis_block
    from gmchain.crypto_sm import load_private_key
    from gmchain.node.config import load_genesis
    from gmchain.node.sdk import SyncClient

    with running_cluster(tmp_path / "foreign", validators=1) as (foreign, _):
        furl = f"http://127.0.0.1:{foreign.rpc_port('node0')}"
        fkey = foreign.d / "client.key"
        _decide(furl, fkey, "set_param", "round_timeout_ms", "1500")
        epoch = rpc_call(foreign.rpc_port("node0"), "gm_getEpoch")
        assert epoch["epoch"] == 1
        fgenesis = load_genesis(foreign.d / "genesis.json")
        (tmp_path / "host").mkdir()
        with running_dev_node(tmp_path / "host") as host:
            url, key = f"http://127.0.0.1:{host.port}", host.data_dir / "client.key"
            gfile = str(foreign.d / "genesis.json")
            pid = _decide(
                url, key, "register-chain", "--genesis", gfile, "--validators-from-rpc", furl
            )
            p = rpc_call(host.port, "gm_getProposal", [pid])
            (v,) = epoch["validators"]
            assert p["args"] == [
                fgenesis.chain_id,
                "0x" + fgenesis.compute_hash().hex(),
                "0x" + make_genesis_block(fgenesis)[0].header.block_id.hex(),
                1,
                [[v["pubkey"], v["power"], v["org"]]],
            ]
            assert f"chain {fgenesis.chain_id} registered at epoch 1" in p["note"]
            again = _cli_fails(url, key, "propose", "register-chain", "--genesis", gfile)
            assert "G-K5" in again and "already registered" in again
            wrong, _ = _foreign_genesis(tmp_path)  # another chain's genesis for that node
            assert "serves chain 'gmchain-local', not the genesis's 'business-7'" in _cli_fails(
                url,
                key,
                "propose",
                "register-chain",
                "--genesis",
                str(wrong),
                "--validators-from-rpc",
                furl,
            )
            assert "is not frozen" in _cli_fails(
                url, key, "propose", "unfreeze-chain", "why", "--genesis", gfile
            )

            dest = fgenesis.chain_id
            _decide(url, key, "set-relay-rule", "--dest", dest, "--scenario", "private-fund-sale")
            sdk = SyncClient(url)
            admin = load_private_key(key, b"gmchain-dev")
            picked = sdk.send(admin, "evidence", "submit", evidence_args("x1"))
            other = evidence_args("x2")
            other[2] = "fund-custody"
            skipped = sdk.send(admin, "evidence", "submit", other)
            assert [e["name"] for e in picked["events"]] == ["EvidenceSubmitted", PACKET_QUEUED]
            assert picked["events"][1]["fields"] == [
                ["seq", 1],
                ["dest", dest],
                ["record_id", "x1"],
            ]
            assert [e["name"] for e in skipped["events"]] == ["EvidenceSubmitted"]
            assert rpc_call(host.port, "gm_call", ["evidence", "outbox", []]) == [
                {
                    "seq": 1,
                    "txId": picked["txId"],
                    "recordId": "x1",
                    "flowId": "flow-x1",
                    "org": sdk.get_evidence("x1")["org"],
                }
            ]
            _decide(url, key, "clear-relay-rule")
            after = sdk.send(admin, "evidence", "submit", evidence_args("x3"))
            assert [e["name"] for e in after["events"]] == ["EvidenceSubmitted"]
            assert rpc_call(host.port, "gm_call", ["evidence", "outbox_count", []]) == 1

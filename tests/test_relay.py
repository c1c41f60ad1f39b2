"""`gmchain relay` as a real process between two real one-validator chains (issue 13 item 5).

Two `gmchain dev` children with chain ids `biz-1` (the business chain) and `reg-1` (the
regulator chain), real LevelDB, sockets and SM2 signatures; the relayer's key is an ordinary
account (role `member`) in both genesis files. One test in phases (one pair of chains):
1. `--once` before any registration exits 1 with a `relay cycle` line naming the error;
2. both chains register each other by governance vote (`gmchain gov propose register-chain`),
   the business chain sets its relay rule to `reg-1`, 70 records are submitted, and one
   `gmchain relay --once` delivers every record exactly once (the regulator's arrivals are
   contiguous to 70, each stored copy names the record and tx the outbox named, each seq is
   accepted by exactly one `recv_packets` receipt, at least two batches), with a handful of
   client updates (joined certificates), and brings every ack back; a second run sends nothing;
3. both chains move to epoch 1 (a parameter change by vote), ten more records are queued and
   two relayers run at once: together they deliver each new record once, both light clients
   follow epoch 1, every ack comes back;
4. the long-running relayer serves its metrics from its own registry (nothing missing, no lag)
   and stops cleanly (exit 0, `relay_stop`) on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from gmchain.crypto_sm import PrivateKey
from gmchain.crypto_sm.keyfile import save_private_key
from gmchain.ledger.types import GenesisValidator, SignedTx
from gmchain.node.config import load_genesis, save_genesis
from gmchain.node.daemon import init_dev
from tests.node_helpers import (
    DEV_PASSPHRASE,
    ROOT,
    NodeProcess,
    RpcSession,
    evidence_args,
    free_port,
    sign_tx,
)

GMCHAIN = str(ROOT / ".venv" / "bin" / "gmchain")
RECORDS = 70  # > 64: at least two recv_packets batches


@dataclass
class _Chain:
    chain_id: str
    node: NodeProcess
    rpc: RpcSession
    genesis_file: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.node.port}"

    @property
    def client_key_file(self) -> Path:
        return self.node.data_dir / "client.key"


@dataclass
class _Pair:
    business: _Chain
    regulator: _Chain
    relayer_key: Path
    dir: Path


def _make_chain(base: Path, name: str, chain_id: str, relayer: PrivateKey) -> _Chain:
    data = base / name
    init_dev(data, rpc_port=free_port(), p2p_port=free_port())
    genesis_file = data / "genesis.json"
    g = load_genesis(genesis_file)
    relayer_account = (relayer.public_key.to_bytes(), g.validators[0].org, "member")
    g = replace(g, chain_id=chain_id, accounts=(*g.accounts, relayer_account))
    assert all(isinstance(v, GenesisValidator) for v in g.validators)
    save_genesis(genesis_file, g)
    node = NodeProcess(data_dir=data, home=base / f"home-{name}")
    node.start()
    node.wait_ready(120)
    return _Chain(chain_id, node, RpcSession(node.port, timeout_s=60), genesis_file)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Pair]:
    base = tmp_path_factory.mktemp("relay")
    relayer = PrivateKey.generate()
    key_file = base / "relayer.key"
    save_private_key(key_file, relayer, DEV_PASSPHRASE.encode())
    chains: list[_Chain] = []
    try:
        chains.append(_make_chain(base, "biz", "biz-1", relayer))
        chains.append(_make_chain(base, "reg", "reg-1", relayer))
        yield _Pair(chains[0], chains[1], key_file, base)
    finally:
        for c in chains:
            c.rpc.close()
            c.node.stop()


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("GMCHAIN_PASSPHRASE", None)  # the dev passphrase
    return env


def _relay_once(pair: _Pair, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            GMCHAIN,
            "relay",
            "--business",
            pair.business.url,
            "--regulator",
            pair.regulator.url,
            "--key",
            str(pair.relayer_key),
            "--once",
        ],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=_env(),
        cwd=ROOT,
    )


def _cycle_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if "relay cycle" in ln]
    assert lines, stderr
    return lines[-1]


# --- the process contract ---------------------------------------------------------------------


def _once_reports_an_unregistered_pair_and_exits_1(pair: _Pair) -> None:
    done = _relay_once(pair)
    assert done.returncode == 1, (done.stdout, done.stderr)
    line = _cycle_line(done.stderr)
    assert "relay cycle biz-1" in line and "errors=" in line, line
    assert "Traceback" not in done.stderr


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def _metrics_and_a_clean_stop_on_sigterm(pair: _Pair) -> None:
    port = free_port()
    log_path = pair.dir / "relay-sigterm.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                GMCHAIN,
                "relay",
                "--business",
                pair.business.url,
                "--regulator",
                pair.regulator.url,
                "--key",
                str(pair.relayer_key),
                "--interval",
                "0.2",
                "--metrics-port",
                str(port),
                "--log-format",
                "json",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_env(),
            cwd=ROOT,
        )
    try:
        end = time.monotonic() + 120
        text = ""
        while time.monotonic() < end:
            try:
                text = _metrics(port)
            except OSError:
                text = ""
            if 'gmchain_relay_cycles_total{chain="biz-1"} 2.0' in text:
                break
            assert proc.poll() is None, log_path.read_text()
            time.sleep(0.2)
        for name in (
            'gmchain_relay_lag_blocks{chain="biz-1"}',
            'gmchain_relay_lag_seconds{chain="biz-1"}',
            'gmchain_relay_missing{chain="biz-1"}',
            'gmchain_relay_packets_delivered_total{chain="biz-1"}',
            'gmchain_relay_acks_delivered_total{chain="biz-1"}',
            "# TYPE gmchain_relay_packets_refused_total counter",
        ):
            assert name in text, (name, text)
        assert "process_cpu_seconds_total" not in text  # its own registry, not the default one
        # Everything was delivered by the phases before: nothing missing, no lag.
        assert 'gmchain_relay_missing{chain="biz-1"} 0.0' in text, text
        assert 'gmchain_relay_lag_blocks{chain="biz-1"} 0.0' in text, text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    lines = [json.loads(x) for x in log_path.read_text().splitlines() if x.startswith("{")]
    events = [x.get("event") for x in lines]
    assert events[0] == "relay_start" and events[-1] == "relay_stop", events
    cycle = next(x for x in lines if x.get("event") == "relay_cycle")
    assert cycle["node"] == "relay" and "missing" in cycle and "delivered" in cycle, cycle


# --- the relay --------------------------------------------------------------------------------


def _gov(chain: _Chain, *argv: str) -> Any:
    done = subprocess.run(
        [GMCHAIN, "gov", *argv, "--json", "--rpc", chain.url, "--key", str(chain.client_key_file)],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        cwd=ROOT,
    )
    assert done.returncode == 0, (argv, done.stdout, done.stderr)
    return json.loads(done.stdout)


def _decide(chain: _Chain, *argv: str) -> None:
    """Propose and vote yes: the dev chain's committee is its one org, so the vote executes."""
    pid = _gov(chain, "propose", *argv)["result"]
    assert _gov(chain, "vote", str(pid), "yes")["result"] == "executed"


def _submit_records(chain: _Chain, n: int) -> list[str]:
    key = chain.node.client_key()
    head = chain.rpc.call("gm_status")["height"]
    window = chain.rpc.call("gm_nodeInfo")["replayWindow"]
    txs: list[SignedTx] = []
    for i in range(n):
        txs.append(
            sign_tx(
                key,
                chain_id=chain.chain_id,
                expiry=head + window // 2,
                args=evidence_args(f"rec-{i}", data=f"record {i}".encode()),
            )
        )
    for tx in txs:
        chain.rpc.call("gm_sendRawTransaction", "0x" + tx.encode().hex())
    for tx in txs:
        receipt = None
        end = time.monotonic() + 120
        while receipt is None and time.monotonic() < end:
            receipt = chain.rpc.call("gm_waitForReceipt", "0x" + tx.tx_id.hex(), 5000)
        assert receipt is not None and receipt["status"] == 0, receipt
    return [f"rec-{i}" for i in range(n)]


def _one_cycle_delivers_every_record_once_and_acks_come_back(pair: _Pair) -> None:
    biz, reg = pair.business, pair.regulator
    _decide(reg, "register-chain", "--genesis", str(biz.genesis_file))
    _decide(biz, "register-chain", "--genesis", str(reg.genesis_file))
    _decide(biz, "set-relay-rule", "--dest", reg.chain_id)
    records = _submit_records(biz, RECORDS)
    outbox = biz.rpc.call("gm_getOutbox", 1, 1000)
    assert outbox["count"] == RECORDS
    assert [r["recordId"] for r in outbox["packets"]] == records

    done = _relay_once(pair)
    line = _cycle_line(done.stderr)
    print(line)  # shown with -s: the docs' example line
    assert done.returncode == 0, (line, done.stderr[-3000:])
    assert f"delivered={RECORDS} " in line and "duplicate=0" in line and "refused=0" in line, line
    # The records' blocks are covered by joined certificates, not one client update per block.
    assert _count(line, "updates") <= 8, line

    arrivals = reg.rpc.call("gm_getArrivals", biz.chain_id)
    assert (arrivals["contiguous"], arrivals["maxSeq"], arrivals["count"], arrivals["missing"]) == (
        RECORDS,
        RECORDS,
        RECORDS,
        [],
    )
    recv_txs = set()
    for row in outbox["packets"]:
        copy = reg.rpc.call("gm_getRelayedRecord", biz.chain_id, row["seq"])
        assert copy["recordId"] == row["recordId"] and copy["txId"] == row["txId"]
        assert copy["header"] is not None and copy["header"]["height"] == copy["height"]
        assert (
            reg.rpc.call("gm_getRelayedRecord", biz.chain_id, row["recordId"])["seq"] == row["seq"]
        )
        recv_txs.add(copy["recvTxId"])
    assert len(recv_txs) >= 2  # 70 packets do not fit one recv_packets transaction
    accepted = []
    for tx_id in recv_txs:
        receipt = reg.rpc.call("gm_getTransactionReceipt", tx_id)
        for event in receipt["events"]:
            fields = dict(event["fields"])
            if event["name"] == "PacketReceived" and fields["status"] == "accepted":
                accepted.append(fields["seq"])
    assert sorted(accepted) == list(range(1, RECORDS + 1))  # each exactly once

    for row in outbox["packets"]:
        ack = biz.rpc.call("gm_getAck", row["recordId"])
        assert ack is not None and ack["regulator"] == reg.chain_id, (row, ack)
        assert ack["regulatorTxId"] in recv_txs

    again = _relay_once(pair)
    line = _cycle_line(again.stderr)
    assert again.returncode == 0, (line, again.stderr[-3000:])
    assert "selected=0" in line and "sent=0" in line and "acks=0" in line, line
    assert reg.rpc.call("gm_getArrivals", biz.chain_id)["count"] == RECORDS


def _wait_epoch(chain: _Chain, epoch: int) -> None:
    end = time.monotonic() + 120
    while chain.rpc.call("gm_getEpoch")["epoch"] < epoch:
        assert time.monotonic() < end, f"{chain.chain_id} did not reach epoch {epoch}"
        time.sleep(0.2)


def _relay_once_async(pair: _Pair) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            GMCHAIN,
            "relay",
            "--business",
            pair.business.url,
            "--regulator",
            pair.regulator.url,
            "--key",
            str(pair.relayer_key),
            "--once",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=ROOT,
    )


def _count(line: str, name: str) -> int:
    return int(line.split(f" {name}=")[1].split()[0])


def _epoch_changes_on_both_chains_and_two_relayers_at_once(pair: _Pair) -> None:
    """After the first test: both chains move to epoch 1 (a governance parameter change), ten
    more records are queued, and two relayers run at once. Together they deliver each new
    record exactly once (the second sees `duplicate`, never a second copy), move the
    regulator's client of the business chain and the business chain's client of the regulator
    to epoch 1 (the epoch changes come from gm_getEpochProof), and every ack comes back."""
    biz, reg = pair.business, pair.regulator
    assert reg.rpc.call("gm_getArrivals", biz.chain_id)["count"] == RECORDS
    _decide(biz, "set_param", "block_max_txs", "4000")
    _decide(reg, "set_param", "block_max_txs", "4000")
    _wait_epoch(biz, 1)
    _wait_epoch(reg, 1)
    assert reg.rpc.call("gm_getCrossChainClient", biz.chain_id)["epoch"] == 0
    key = biz.node.client_key()
    head = biz.rpc.call("gm_status")["height"]
    ids = []
    for i in range(10):
        tx = sign_tx(
            key,
            chain_id=biz.chain_id,
            expiry=head + 20,
            args=evidence_args(f"late-{i}", data=f"late {i}".encode()),
        )
        ids.append(biz.rpc.call("gm_sendRawTransaction", "0x" + tx.encode().hex()))
    for tx_id in ids:
        receipt = None
        end = time.monotonic() + 120
        while receipt is None and time.monotonic() < end:
            receipt = biz.rpc.call("gm_waitForReceipt", tx_id, 5000)
        assert receipt is not None and receipt["status"] == 0, receipt
    total = RECORDS + 10
    assert biz.rpc.call("gm_getOutbox", total, 1)["count"] == total

    procs = [_relay_once_async(pair), _relay_once_async(pair)]
    lines = []
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        line = _cycle_line(err)
        assert proc.returncode == 0, (line, err[-3000:])
        lines.append(line)
    print("\n".join(lines))
    assert sum(_count(ln, "delivered") for ln in lines) == 10, lines
    arrivals = reg.rpc.call("gm_getArrivals", biz.chain_id)
    assert (arrivals["contiguous"], arrivals["count"]) == (total, total)
    assert reg.rpc.call("gm_getCrossChainClient", biz.chain_id)["epoch"] == 1
    # Acks of the new records: the business chain's client of the regulator followed epoch 1
    # (one more cycle if the racing relayers each acknowledged only what they had seen).
    missing = [i for i in range(10) if biz.rpc.call("gm_getAck", f"late-{i}") is None]
    if missing:
        done = _relay_once(pair)
        assert done.returncode == 0, _cycle_line(done.stderr)
    for i in range(10):
        ack = biz.rpc.call("gm_getAck", f"late-{i}")
        assert ack is not None and ack["regulator"] == reg.chain_id, (i, ack)
    assert biz.rpc.call("gm_getCrossChainClient", reg.chain_id)["epoch"] == 1


def test_relay_between_two_real_chains(pair: _Pair) -> None:
    """One test (one pair of chains under xdist), in phases that build on each other."""
    _once_reports_an_unregistered_pair_and_exits_1(pair)
    _one_cycle_delivers_every_record_once_and_acks_come_back(pair)
    _epoch_changes_on_both_chains_and_two_relayers_at_once(pair)
    _metrics_and_a_clean_stop_on_sigterm(pair)

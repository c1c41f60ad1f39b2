"""Relay drills on a real platform (issue 13 item 7; docs/crosschain.md, "Drills").

Each drill starts `gmchain platform up` (node/platform.py) in a temporary folder: a regulator
chain and two business chains, one validator each, real processes, real SM2 signatures, the real
`gmchain relay` processes. What a drill does to it, and what it then checks:

1. Forged packets over RPC, each refused with a clear receipt: a proof against a header the
   regulator never verified; a certificate whose QC is signed by keys that are not validators; an
   altered transaction; an altered receipt; a packet from an unregistered chain; a replayed
   packet (answered `duplicate`, stored once); one forged packet in a batch of good ones (the good
   ones are accepted). The stale epoch's set is drill 5's, the frozen chain drill 6's.
2. The relayer SIGKILLed and restarted (`gmchain platform up` restarts it) three times while the
   firm records: every record on the regulator exactly once, nothing missing
   (tests/platform_rig.py rule 3).
3. Two relayers for one firm at once: exactly once; the second one's work is wasted, not doubled.
4. The regulator chain down while the firm keeps recording (many business blocks), then back:
   everything delivered, exactly once, and acknowledged back.
5. An epoch change on the business chain while relaying (governance set_power): the regulator's
   client follows (its epoch advances), records of both epochs are delivered; (a second test) a
   certificate of a new height signed as the stale epoch verifies nothing: no header is stored
   there and the packet proven at that height is refused.
6. Misbehaviour: a second certified block at a verified height, signed with the business
   validator's own key: `submit_misbehaviour` freezes the client and names the signer; packets
   are then refused ("frozen"); `unfreeze_chain` by a governance vote of the regulator resumes
   delivery; then a conflicting certificate sent as an ordinary `update_client` succeeds but
   only freezes the client again (the stored header is unchanged).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from gmchain.chain.lightclient import Certificate
from gmchain.consensus.messages import CommitProof
from gmchain.contracts.governance import propose_args, vote_args
from gmchain.crosschain.packets import Misbehaviour, Packet, TxProof
from gmchain.crypto_sm import PrivateKey
from gmchain.node.cluster import start_nodes, stop_nodes
from gmchain.node.platform import platform_up
from gmchain.node.platform_setup import register_values
from tests.cluster_helpers import wait_until
from tests.platform_rig import Platform, start_platform, stop_platform_relayers
from tests.relay_drill_rig import (
    commit_certificate,
    events,
    proven,
    recv,
    send_xc,
    update_of,
)
from tests.xc_forge import conflicting_certificate, signed_qc, with_epoch

pytestmark = pytest.mark.slow
FIRM = "firm-a"
REG = "regulator"


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    p = start_platform(tmp_path / "platform")
    try:
        yield p
    finally:
        p.close()


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def _seq_of(p: Platform, firm: str, record_id: str) -> int:
    for item in p.outbox(firm):
        if item["recordId"] == record_id:
            return int(item["seq"])
    raise AssertionError(f"{record_id} is not in {firm}'s outbox")


class Load:
    """Records submitted to a firm at a steady rate from a thread, until stopped."""

    def __init__(self, p: Platform, firm: str, prefix: str, rate: float = 4.0) -> None:
        self.p, self.firm, self.prefix, self.rate = p, firm, prefix, rate
        self.sent = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        while not self._stop.is_set():
            rid = f"{self.prefix}-{self.sent:04d}"
            try:
                self.p.submit_records(self.firm, [rid], wait=False)
                self.sent += 1
            except Exception as exc:  # a busy node: noted, the drill judges the outcome
                self.errors.append(f"{rid}: {exc}")
            self._stop.wait(1.0 / self.rate)


def _wait_all_committed(p: Platform, firm: str, count: int, timeout_s: float = 90) -> None:
    wait_until(lambda: p.queued(firm) >= count, timeout_s, f"{count} records queued on {firm}")


# --- drill 1 --------------------------------------------------------------------------------------


def test_forged_packets_are_refused_each_with_a_clear_receipt(platform: Platform) -> None:
    p = platform
    stop_platform_relayers(p)  # the drill is the only relayer
    key = p.relayer_key(FIRM)
    tx_ids = p.submit_records(FIRM, ["forge-1", "forge-2", "forge-3"])
    good = [proven(p, FIRM, t) for t in tx_ids]
    seqs = [_seq_of(p, FIRM, r) for r in ("forge-1", "forge-2", "forge-3")]
    packets = [g.packet(REG, s) for g, s in zip(good, seqs, strict=True)]

    # A proof against a header the regulator never verified.
    # (A FAILED receipt keeps no events: its error names the first refused packet's reason.)
    r = recv(p, [packets[0]], key)
    assert r["statusName"] == "FAILED" and "verified" in r["error"], r

    # A certificate whose QC is signed by keys that are not the chain's validators.
    strangers = [PrivateKey.generate() for _ in range(4)]
    real = good[-1].commit
    tip = real.headers[-1]
    child = real.proof.header
    forged_child = replace(child, justify=signed_qc(tip, strangers))
    forged = Certificate(
        headers=real.headers,
        proof=CommitProof(header=forged_child, qc=signed_qc(forged_child, strangers)),
    )
    r = send_xc(p, REG, "update_client", [update_of(FIRM, forged)], key)
    assert r["statusName"] == "FAILED" and "validator" in r["error"], r
    assert p.call(REG, "xclient", "header", [FIRM, tip.height]) is None

    # The real certificates verify the headers; then the packets are judged on their own.
    for g in good:
        r = send_xc(p, REG, "update_client", [update_of(FIRM, g.commit)], key)
        assert r["statusName"] == "OK", r

    pk = packets[0]
    altered_tx = Packet(
        source_chain_id=FIRM,
        dest_chain_id=REG,
        seq=pk.seq,
        proof=TxProof(**{**_fields(pk.proof), "tx": _flip(pk.proof.tx, len(pk.proof.tx) - 70)}),
    )
    altered_receipt = Packet(
        source_chain_id=FIRM,
        dest_chain_id=REG,
        seq=pk.seq,
        proof=TxProof(**{**_fields(pk.proof), "receipt": _flip(pk.proof.receipt, 40)}),
    )
    unregistered = Packet(source_chain_id="firm-z", dest_chain_id=REG, seq=pk.seq, proof=pk.proof)
    reasons = {}
    for name, forgery in (
        ("altered tx", altered_tx),
        ("altered receipt", altered_receipt),
        ("unregistered chain", unregistered),
    ):
        r = recv(p, [forgery], key)
        assert r["statusName"] == "FAILED" and r["error"], (name, r)
        reasons[name] = r["error"]
        print(f"{name}: refused: {r['error']}")
    assert "registered" in reasons["unregistered chain"], reasons

    # One forged packet in a batch of good ones: the good ones are accepted (hermes 3540).
    r = recv(p, [packets[0], altered_receipt, packets[1]], key)
    assert r["statusName"] == "OK", r
    got = {int(e["seq"]): e["status"] for e in events(r, "PacketReceived")}
    assert got == {seqs[0]: "accepted", seqs[1]: "accepted"}, r
    (refused,) = events(r, "PacketRefused")
    assert int(refused["seq"]) == seqs[0] and refused["reason"], r

    # A replayed packet: answered duplicate, stored once.
    r = recv(p, [packets[0]], key)
    assert [e["status"] for e in events(r, "PacketReceived")] == ["duplicate"], r
    a = p.arrivals(FIRM)
    assert int(a["count"]) == 2 and a["missing"] == [], a
    copy = p.call(REG, "xclient", "record", [FIRM, "forge-1"])
    assert copy is not None and copy["txId"] == tx_ids[0], copy


def _fields(proof: TxProof) -> dict[str, object]:
    return {
        "height": proof.height,
        "index": proof.index,
        "tx": proof.tx,
        "tx_path": proof.tx_path,
        "receipt": proof.receipt,
        "receipt_path": proof.receipt_path,
    }


# --- drills 2 and 3 -------------------------------------------------------------------------------


def test_relayer_sigkill_and_restart_under_load_delivers_exactly_once(platform: Platform) -> None:
    p = platform
    t0 = time.monotonic()
    with Load(p, FIRM, "kill", rate=4.0) as load:
        for k in range(3):
            wait_until(lambda k=k: load.sent >= 8 * (k + 1), 90, f"{8 * (k + 1)} records sent")
            pid = int((p.d / "relayers" / f"{FIRM}.pid").read_text())
            os.kill(pid, signal.SIGKILL)
            time.sleep(2)
            platform_up(p.d)  # restarts what is not running: the relayer
        wait_until(lambda: load.sent >= 32, 90, "32 records sent")
    _wait_all_committed(p, FIRM, load.sent)
    p.wait_delivered(FIRM, timeout_s=120)
    n = p.check_exactly_once(FIRM)
    assert n >= 32 and n == load.sent, (n, load.sent, load.errors)
    print(
        f"drill 2: {n} records, 3 SIGKILLs, delivered exactly once in {time.monotonic() - t0:.0f} s"
    )


def test_two_relayers_at_once_deliver_exactly_once(platform: Platform) -> None:
    p = platform
    second = p.start_relayer(FIRM, "firm-a-second")
    with Load(p, FIRM, "two", rate=5.0) as load:
        wait_until(lambda: load.sent >= 40, 120, "40 records sent")
    _wait_all_committed(p, FIRM, load.sent)
    p.wait_delivered(FIRM, timeout_s=120)
    n = p.check_exactly_once(FIRM)
    assert n == load.sent and n >= 40, (n, load.errors)
    assert second.proc.poll() is None, second.text()[-2000:]


# --- drill 4 ----------------------------------------------------------------------------------


def test_regulator_outage_then_back_delivers_everything(platform: Platform) -> None:
    p = platform
    p.submit_records(FIRM, ["before-outage"])
    p.wait_delivered(FIRM)
    assert stop_nodes(p.d / REG) == ["node0"]
    h0 = p.height(FIRM)
    ids = [f"outage-{i:03d}" for i in range(40)]
    for chunk in range(0, 40, 8):  # separate submissions: many business blocks
        p.submit_records(FIRM, ids[chunk : chunk + 8])
    assert p.height(FIRM) - h0 >= 5, "the firm's chain did not move during the outage"
    time.sleep(5)  # the relayer keeps failing against a dead regulator meanwhile
    start_nodes(p.d / REG, wait_s=60)
    p.wait_delivered(FIRM, timeout_s=120)
    assert p.check_exactly_once(FIRM) == 41
    wait_until(
        lambda: p.rpc(FIRM, "gm_getAck", ["outage-039"]) is not None,
        90,
        "the acknowledgement of the last record back on firm-a",
    )


# --- drill 5 ----------------------------------------------------------------------------------


def test_epoch_change_on_the_business_chain_while_relaying(platform: Platform) -> None:
    p = platform
    with Load(p, FIRM, "epoch", rate=3.0) as load:
        time.sleep(3)
        node0 = p.validator_keys(FIRM)[0]
        sdk = p.sdk(FIRM)
        admin = p.admin_key(FIRM)
        r = sdk.send(
            admin,
            "governance",
            "propose",
            propose_args("set_power", [node0.public_key.to_bytes(), 2], sdk.height() + 1000),
        )
        assert r["status"] == 0, r
        r = sdk.send(admin, "governance", "vote", vote_args(r["result"], True))
        assert r["result"] == "executed", r
        wait_until(lambda: int(p.rpc(FIRM, "gm_getEpoch")["epoch"]) >= 1, 60, "epoch 1 on firm-a")
        time.sleep(6)
    _wait_all_committed(p, FIRM, load.sent)
    p.wait_delivered(FIRM, timeout_s=120)
    assert p.check_exactly_once(FIRM) == load.sent
    client = p.call(REG, "xclient", "client", [FIRM])
    assert int(client["epoch"]) == 1, client


def test_a_stale_epochs_set_cannot_certify_heights_after_its_epoch(platform: Platform) -> None:
    p = platform
    node0 = p.validator_keys(FIRM)[0]
    sdk = p.sdk(FIRM)
    admin = p.admin_key(FIRM)
    args = propose_args("set_power", [node0.public_key.to_bytes(), 2], sdk.height() + 1000)
    r = sdk.send(admin, "governance", "propose", args)
    r = sdk.send(admin, "governance", "vote", vote_args(r["result"], True))
    assert r["result"] == "executed", r
    wait_until(lambda: int(p.rpc(FIRM, "gm_getEpoch")["epoch"]) >= 1, 60, "epoch 1 on firm-a")
    p.submit_records(FIRM, ["in-epoch-1"])
    p.wait_delivered(FIRM)
    assert int(p.call(REG, "xclient", "client", [FIRM])["epoch"]) == 1
    stale_epoch_certificate_is_refused(p, node0)


def stale_epoch_certificate_is_refused(p: Platform, node0: PrivateKey) -> None:
    """A certificate of a new height (after epoch 1 began) whose headers claim epoch 0, signed
    by epoch 0's set, verifies nothing: no header is stored at that height (xclient U4: a header
    above its epoch's known end is not stored), so a packet proven there is refused."""
    stop_platform_relayers(p)
    (tx,) = p.submit_records(FIRM, ["after-epoch"])
    fresh = proven(p, FIRM, tx)
    assert fresh.epoch == 1
    stale = with_epoch(fresh.commit, [node0], 0)
    key = p.relayer_key(FIRM)
    r = send_xc(p, REG, "update_client", [update_of(FIRM, stale)], key)
    print(f"stale epoch certificate: {r['statusName']} {r['error'] or r['result']}")
    assert p.call(REG, "xclient", "header", [FIRM, fresh.height]) is None, r
    r = recv(p, [fresh.packet(REG, _seq_of(p, FIRM, "after-epoch"))], key)
    assert r["statusName"] == "FAILED" and "verified" in r["error"], r


# --- drill 6 ----------------------------------------------------------------------------------


def test_misbehaviour_freezes_names_signers_and_governance_unfreezes(platform: Platform) -> None:
    p = platform
    p.submit_records(FIRM, ["mb-1"])
    p.wait_delivered(FIRM)
    stop_platform_relayers(p)
    copy = p.call(REG, "xclient", "record", [FIRM, "mb-1"])
    height = int(copy["height"])
    real = commit_certificate(p, FIRM, height)
    keys = p.validator_keys(FIRM)
    forged = conflicting_certificate(real, keys)
    assert forged.headers[0].block_id != real.headers[0].block_id
    evidence = Misbehaviour(chain_id=FIRM, first=real, second=forged).encode()
    r = send_xc(p, REG, "submit_misbehaviour", [evidence], p.relayer_key(FIRM))
    assert r["statusName"] == "OK", r
    client = p.call(REG, "xclient", "client", [FIRM])
    assert client["status"] == "frozen", client
    mb = p.call(REG, "xclient", "misbehaviour", [FIRM])
    signers = {s.lower() for s in _signers(mb)}
    assert "0x" + keys[0].public_key.address.hex() in signers, mb

    # Frozen: a good packet is refused.
    (tx2,) = p.submit_records(FIRM, ["mb-2"])
    g = proven(p, FIRM, tx2)
    r = recv(p, [g.packet(REG, _seq_of(p, FIRM, "mb-2"))], p.relayer_key(FIRM))
    assert r["statusName"] == "FAILED" and "frozen" in r["error"], r

    # Unfreeze by a governance vote of the regulator; the relayer resumes.
    values = register_values(p.d / FIRM / "genesis.json")
    epoch, validators = 0, values[4]
    sdk = p.sdk(REG)
    admin = p.admin_key(REG)
    args = [FIRM, epoch, validators, "drill: the forged block was made by the test"]
    r = sdk.send(
        admin, "governance", "propose", propose_args("unfreeze_chain", args, sdk.height() + 1000)
    )
    assert r["status"] == 0, r
    r = sdk.send(admin, "governance", "vote", vote_args(r["result"], True))
    assert r["result"] == "executed", r
    platform_up(p.d)
    p.wait_delivered(FIRM)
    assert p.check_exactly_once(FIRM) == 2

    # Misbehaviour found by an update: a conflicting certificate of a verified height, sent as an
    # ordinary update_client, succeeds but only freezes (nothing of it is stored).
    stop_platform_relayers(p)
    h2 = int(p.call(REG, "xclient", "record", [FIRM, "mb-2"])["height"])
    stored = p.call(REG, "xclient", "header", [FIRM, h2])
    forged2 = conflicting_certificate(commit_certificate(p, FIRM, h2), keys)
    r = send_xc(p, REG, "update_client", [update_of(FIRM, forged2)], p.relayer_key(FIRM))
    assert r["statusName"] == "OK", r
    client = p.call(REG, "xclient", "client", [FIRM])
    assert client["status"] == "frozen" and client["frozenReason"], client
    assert p.call(REG, "xclient", "header", [FIRM, h2]) == stored


def _signers(mb: object) -> list[str]:
    """The signer ids of the misbehaviour query's answer, wherever its evidence lists them."""
    out: list[str] = []

    def walk(x: object) -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "signers" and isinstance(v, list):
                    out.extend(str(s) for s in v)
                else:
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(mb)
    return out

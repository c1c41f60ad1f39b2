"""Snapshot, restore and fast join (ledger/snapshot.py, chain/fastjoin.py, node/snapshot_ops.py).

A real single-validator node (in-process, real LevelDB, real SM2 certificates) makes a chain; a
snapshot taken while it runs is restored into a new data directory by checking it against the
genesis. Tampered snapshots are rebuilt with a correct manifest (what an untrusted site can do),
so each is refused by the chain check named in its test, not by the file checksum.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import stat
import struct
from pathlib import Path

import pytest

from gmchain.chain.executor import compute_state_hash
from gmchain.chain.fastjoin import FastJoinError
from gmchain.consensus.messages import CommitProof
from gmchain.crypto_sm import sm3_hash
from gmchain.ledger import snapshot_crypt
from gmchain.ledger import store_keys as k
from gmchain.ledger.snapshot import MAGIC, TRAILER, SnapshotError, read_manifest, write_snapshot
from gmchain.ledger.store import Store, StoreError
from gmchain.ledger.types import Block, GenesisValidator, Height, QuorumCert, Round
from gmchain.ledger.wire import HASH_PREFIXES
from gmchain.node.config import NodeConfig, save_genesis
from gmchain.node.safetystore import reset_safety
from gmchain.node.service import NodeService
from gmchain.node.snapshot_ops import (
    AdminSocket,
    admin_socket_path,
    restore_snapshot,
    take_snapshot,
)
from tests.node_helpers import (
    TestNet,
    evidence_args,
    make_net,
    run_gmchain,
    running_service,
    sign_tx,
)

# --- the write set record ---------------------------------------------------------------------


def test_write_set_round_trips_and_has_one_encoding() -> None:
    rng = random.Random(7)
    for _ in range(200):
        writes: dict[tuple[str, bytes], bytes | None] = {}
        for _ in range(rng.randrange(0, 12)):
            ns = rng.choice(["membership", "evidence", "gov", "é"])
            key = rng.randbytes(rng.randrange(0, 6))
            writes[(ns, key)] = None if rng.random() < 0.3 else rng.randbytes(rng.randrange(9))
        raw = k.encode_write_set(writes)
        assert k.decode_write_set(raw) == writes
        assert k.encode_write_set(k.decode_write_set(raw)) == raw


def _write_set_by_the_doc(writes: dict[tuple[str, bytes], bytes | None]) -> bytes:
    """store_keys' format written from its docstring alone: sorted by (UTF-8 namespace, key)."""
    out = [b"\x01", struct.pack(">I", len(writes))]
    for nsb, key, value in sorted((ns.encode(), key, v) for (ns, key), v in writes.items()):
        out += [bytes((len(nsb),)), nsb, struct.pack(">I", len(key)), key]
        out.append(b"\x00" if value is None else b"\x01" + struct.pack(">I", len(value)) + value)
    return b"".join(out)


def test_write_set_orders_by_utf8_bytes_for_any_namespace() -> None:
    # the encoder sorts the str namespaces as they are; UTF-8 keeps code point order, so this
    # must equal a sort by the encoded bytes for namespaces beyond ASCII and of any length
    rng = random.Random(11)
    names = ["a", "ab", "b", "é", "中", "中文", "\U0001f600", "z" * 200, "\u00ff", "\uffff"]
    for _ in range(300):
        writes: dict[tuple[str, bytes], bytes | None] = {}
        for _ in range(rng.randrange(0, 20)):
            key = rng.randbytes(rng.randrange(0, 4))
            writes[(rng.choice(names), key)] = None if rng.random() < 0.3 else rng.randbytes(3)
        assert k.encode_write_set(writes) == _write_set_by_the_doc(writes)
    with pytest.raises(ValueError, match=r"1\.\.255"):
        k.encode_write_set({("é" * 128, b"k"): b"v"})
    with pytest.raises(ValueError):
        k.encode_write_set({("\ud800", b"k"): b"v"})  # a lone surrogate is not UTF-8


def test_write_set_decode_refuses_other_bytes() -> None:
    raw = k.encode_write_set({("a", b"1"): b"x", ("a", b"2"): None})
    for bad in (raw + b"\x00", raw[:-1], b"\x02" + raw[1:]):
        with pytest.raises(ValueError):
            k.decode_write_set(bad)
    # the same two entries in descending order: not the one encoding
    one = k.encode_write_set({("a", b"2"): None})[5:]
    two = k.encode_write_set({("a", b"1"): b"x"})[5:]
    with pytest.raises(ValueError, match="ascending"):
        k.decode_write_set(b"\x01" + struct.pack(">I", 2) + one + two)


# --- a chain to snapshot ----------------------------------------------------------------------


async def _make_chain(tmp_path: Path, net: TestNet, out: Path, batches: int = 4) -> int:
    """Commit a few blocks of evidence txs; snapshot the RUNNING node's store; return height."""
    (tmp_path / "src").mkdir()
    async with running_service(tmp_path / "src", net) as svc:
        for b in range(batches):
            h = svc.height()
            txs = [
                sign_tx(net.accounts[i % 3], expiry=h + 40, args=evidence_args(f"s{b}-{i}"))
                for i in range(6)
            ]
            ids = await asyncio.gather(*(svc.submit_raw_tx(t.encode()) for t in txs))
            for tx_id in ids:
                assert await svc.wait_tx(tx_id, 60) is not None
        write_snapshot(svc.store, out, created_ms=1)
        return int(svc.height())


def _records(path: Path) -> tuple[list[tuple[bytes, bytes]], dict[str, object]]:
    """The records and manifest of a snapshot, read as docs/ops.md describes the format."""
    data = path.read_bytes()
    assert data.startswith(MAGIC) and data.endswith(TRAILER)
    n = struct.unpack(">I", data[-len(TRAILER) - 4 : -len(TRAILER)])[0]
    manifest = json.loads(data[-len(TRAILER) - 4 - n : -len(TRAILER) - 4])
    body = data[len(MAGIC) : len(MAGIC) + manifest["contentBytes"]]
    out, pos = [], 0
    while pos < len(body):
        kl = struct.unpack(">I", body[pos : pos + 4])[0]
        key = body[pos + 4 : pos + 4 + kl]
        pos += 4 + kl
        vl = struct.unpack(">I", body[pos : pos + 4])[0]
        out.append((key, body[pos + 4 : pos + 4 + vl]))
        pos += 4 + vl
    return out, manifest


def _rewrite(path: Path, records: dict[bytes, bytes], manifest: dict[str, object]) -> None:
    """Write `records` as a well-formed snapshot whose manifest matches them (an attacker's)."""
    digest = sm3_hash(HASH_PREFIXES["snapshot-content"])
    body = b""
    for key in sorted(records):
        rec = struct.pack(">I", len(key)) + key + struct.pack(">I", len(records[key]))
        rec += records[key]
        digest = sm3_hash(digest + rec)
        body += rec
    manifest = {**manifest, "entries": len(records), "contentBytes": len(body)}
    manifest["contentSm3"] = digest.hex()
    if k.META_HEAD in records:
        h, bh = k.decode_head(records[k.META_HEAD])
        manifest.update(height=h, headHash=bh.hex())
    blob = json.dumps(manifest, sort_keys=True).encode()
    path.write_bytes(MAGIC + body + blob + struct.pack(">I", len(blob)) + TRAILER)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestNet, Path, int, Path]:
    tmp = tmp_path_factory.mktemp("snap")
    net = make_net(3, replay_window=50)
    snap = tmp / "a.gmsnap"
    height = asyncio.run(_make_chain(tmp, net, snap))
    return net, snap, height, tmp / "src" / "db"


def _all(path: Path) -> dict[bytes, bytes]:
    with Store.open(path, create=False) as s, s.snapshot() as v:
        return {key: val for key, val in v.iter_records() if key[:1] not in (b"u", b"v")}


def test_restore_rebuilds_the_same_store(made: tuple[TestNet, Path, int, Path], tmp_path: Path):
    net, snap, height, src = made
    assert height >= 3
    m = read_manifest(snap)
    assert (m.height, m.chain_id) == (height, net.genesis.chain_id)
    assert m.genesis_hash == net.genesis.compute_hash().hex()
    _, report = restore_snapshot(snap, tmp_path / "new", net.genesis)
    assert report.height == height and report.transactions == 24
    assert report.certificates_checked >= 1
    ours, theirs = _all(src), _all(tmp_path / "new")
    assert ours == theirs  # every record but caller metadata, byte for byte
    with Store.open(tmp_path / "new", create=False) as s:
        s.check_consistency(deep=True)
        assert s.get_write_set(height) is not None
        assert (
            s.get_meta("consensus_safety") is None and s.get_sealed_meta("consensus_safety") is None
        )


def _tampered(made: tuple[TestNet, Path, int, Path], tmp_path: Path, change) -> Path:  # type: ignore[no-untyped-def]
    _, snap, height, _ = made
    recs, manifest = _records(snap)
    records = dict(recs)
    change(records, height)
    out = tmp_path / "bad.gmsnap"
    _rewrite(out, records, manifest)
    return out


def _refused(made, tmp_path: Path, change, match: str) -> None:  # type: ignore[no-untyped-def]
    net = made[0]
    bad = _tampered(made, tmp_path, change)
    with pytest.raises((FastJoinError, SnapshotError, StoreError), match=match):
        restore_snapshot(bad, tmp_path / "target", net.genesis)
    assert not (tmp_path / "target").exists()  # nothing written
    assert [p.name for p in tmp_path.iterdir()] == ["bad.gmsnap"]  # no scratch left


def test_flipped_state_value_is_refused(made, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def change(r: dict[bytes, bytes], _: int) -> None:
        key = next(key for key in sorted(r) if key.startswith(b"S\x08evidence"))
        r[key] = r[key][:-1] + bytes([r[key][-1] ^ 1])

    _refused(made, tmp_path, change, "state differs from what its blocks' write sets give")


def test_flipped_write_set_is_refused(made, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def change(r: dict[bytes, bytes], h: int) -> None:
        at = next(i for i in range(1, h + 1) if k.decode_write_set(r[k.k_writes(i)]))
        ws = k.decode_write_set(r[k.k_writes(at)])
        key = next(iter(ws))
        ws[key] = (ws[key] or b"") + b"!"
        r[k.k_writes(at)] = k.encode_write_set(ws)

    _refused(made, tmp_path, change, r"block \d+: its write set does not give the header's state")


def test_dropped_block_is_refused(made, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _refused(made, tmp_path, lambda r, h: r.pop(k.k_block(2)), "block 2 is missing")


def test_head_without_certificate_is_refused(made, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _refused(made, tmp_path, lambda r, h: r.pop(k.k_proof(h)), "no commit certificate for the head")


def test_forged_head_is_refused(made, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    net = made[0]

    def change(r: dict[bytes, bytes], h: int) -> None:
        head = Block.decode(r[k.k_block(h)]).header
        qc = QuorumCert(epoch=0, block_id=head.block_id, round=head.round, height=head.height)
        forged = dataclasses.replace(
            head,
            height=Height(h + 1),
            round=Round(head.round + 1),
            parent_id=head.block_id,
            tx_count=0,
            tx_root=k.sm3_hash(b""),
            receipt_root=k.sm3_hash(b""),
            state_hash=compute_state_hash(head.state_hash, {}),
            justify=qc,
        )
        # a child and a QC signed by a key that is not a validator (an attacker's)
        child = dataclasses.replace(
            forged,
            height=Height(h + 2),
            round=Round(forged.round + 1),
            parent_id=forged.block_id,
            justify=QuorumCert(
                epoch=0, block_id=forged.block_id, round=forged.round, height=forged.height
            ),
        )
        me = GenesisValidator(pubkey=net.outsider.public_key.to_bytes(), power=1, org="x")
        root = QuorumCert.signing_root(net.genesis.chain_id, 0, child.block_id, child.round, h + 2)
        sig = net.outsider.sign(root)
        proof = CommitProof(
            header=child,
            qc=QuorumCert(
                epoch=0,
                block_id=child.block_id,
                round=child.round,
                height=child.height,
                signatures=((me.node_id, sig),),
            ),
        )
        r[k.k_block(h + 1)] = Block(header=forged, txs=()).encode()
        r[k.k_writes(h + 1)] = k.encode_write_set({})
        r[k.k_proof(h + 1)] = proof.encode()
        r[k.META_HEAD] = k.encode_head(h + 1, forged.block_id)

    _refused(made, tmp_path, change, "does not verify against the trusted validator set")


def test_damaged_file_is_refused(made, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    net, snap, _, _ = made
    data = bytearray(snap.read_bytes())
    data[len(MAGIC) + 100] ^= 0x40
    bad = tmp_path / "bad.gmsnap"
    bad.write_bytes(bytes(data))
    with pytest.raises(SnapshotError):
        restore_snapshot(bad, tmp_path / "target", net.genesis)
    bad.write_bytes(snap.read_bytes()[:-3])
    with pytest.raises(SnapshotError, match="truncated or damaged"):
        restore_snapshot(bad, tmp_path / "target", net.genesis)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.gmsnap"]


def test_other_chain_and_non_empty_target_are_refused(made, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    net, snap, _, _ = made
    other = make_net(1)
    with pytest.raises(StoreError, match="another genesis"):
        restore_snapshot(snap, tmp_path / "t", other.genesis)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    with pytest.raises(StoreError, match="not an empty directory"):
        restore_snapshot(snap, tmp_path / "full", net.genesis)
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["x"]


async def test_restored_validator_refuses_to_sign_until_safety_reset(
    made,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    net, snap, height, _ = made
    restore_snapshot(snap, tmp_path / "db", net.genesis)
    cfg = NodeConfig(data_dir=str(tmp_path / "db"), genesis_file="-", key_file="-")
    with Store.open(tmp_path / "db", chain_id=net.genesis.chain_id) as store:
        with pytest.raises(StoreError, match="restored from a snapshot"):
            NodeService(config=cfg, genesis=net.genesis, key=net.node_key, store=store)
        # (A lone validator: no other one can hand it the block it certified above the head,
        # so the reset names the head's round; with peers, the highest round they report.)
        head_round = Block.decode(store.get_block_by_height(height) or b"").header.round
        reset_safety(store, head_round)
        svc = NodeService(config=cfg, genesis=net.genesis, key=net.node_key, store=store)
        await svc.start()
        try:
            h = svc.height()
            tx = sign_tx(net.accounts[0], expiry=h + 40, args=evidence_args("after-restore"))
            tx_id = await svc.submit_raw_tx(tx.encode())
            assert await svc.wait_tx(tx_id, 60) is not None
            assert svc.height() > height
        finally:
            await svc.stop()


async def test_admin_socket_snapshot_of_a_running_node(tmp_path: Path) -> None:
    """The running node answers `db snapshot` on a 0600 Unix socket and keeps committing; a
    stopped node's store is read directly (node/snapshot_ops.py rule 1)."""
    net = make_net(2, replay_window=50)
    (tmp_path / "n").mkdir()
    async with running_service(tmp_path / "n", net) as svc:
        sock = admin_socket_path(svc.store.path)
        admin = AdminSocket(svc.store, sock)
        await admin.start()
        try:
            assert stat.S_IMODE(sock.stat().st_mode) == 0o600
            h = svc.height()
            tx = sign_tx(net.accounts[0], expiry=h + 40, args=evidence_args("sock-1"))
            assert await svc.wait_tx(await svc.submit_raw_tx(tx.encode()), 30) is not None
            m = await asyncio.to_thread(take_snapshot, svc.store.path, tmp_path)
            assert m["height"] >= 1 and m["chainId"] == net.genesis.chain_id
            out = tmp_path / f"snapshot-{net.genesis.chain_id}-{m['height']}.gmsnap"
            assert read_manifest(out).content_sm3 == m["contentSm3"]
            # a relative path is refused by the node (it would resolve against its own cwd)
            with pytest.raises(StoreError, match="absolute"):
                request_raw = {"op": "snapshot", "out": "rel.gmsnap"}
                await _ask(sock, request_raw)
            tx = sign_tx(net.accounts[1], expiry=h + 40, args=evidence_args("sock-2"))
            assert await svc.wait_tx(await svc.submit_raw_tx(tx.encode()), 30) is not None
        finally:
            await admin.stop()
        assert not sock.exists()
    m2 = take_snapshot(str(tmp_path / "n" / "db"), tmp_path / "stopped.gmsnap")
    assert m2["height"] > m["height"]
    _, report = restore_snapshot(tmp_path / "stopped.gmsnap", tmp_path / "r", net.genesis)
    assert report.height == m2["height"]


async def _ask(sock: Path, req: dict[str, object]) -> None:
    reader, writer = await asyncio.open_unix_connection(str(sock))
    writer.write(json.dumps(req).encode() + b"\n")
    await writer.drain()
    answer = json.loads(await reader.readline())
    writer.close()
    if not answer["ok"]:
        raise StoreError(answer["error"])


def test_intermediate_proof_with_a_bad_signature_is_refused(made, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A proof the chain does not vouch for (its QC differs from the next-but-one block's
    justify) is checked with its SM2 signatures (chain/fastjoin.py rule 4)."""

    def change(r: dict[bytes, bytes], h: int) -> None:
        p = next(i for i in range(1, h - 2) if k.k_proof(i) in r)
        proof = CommitProof.decode(r[k.k_proof(p)])
        (signer, sig), *rest = proof.qc.signatures
        bad = bytes([sig[0], sig[1] ^ 1]) + sig[2:]
        qc = dataclasses.replace(proof.qc, signatures=((signer, bad), *rest))
        r[k.k_proof(p)] = CommitProof(header=proof.header, qc=qc).encode()

    _refused(made, tmp_path, change, "does not verify against the trusted validator set")


async def test_admin_socket_with_a_too_long_path_does_not_stop_the_node(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    deep.mkdir()
    admin = AdminSocket(None, deep / "db.admin.sock")  # type: ignore[arg-type]
    await admin.start()  # logs a warning, raises nothing
    assert not (deep / "db.admin.sock").exists()
    await admin.stop()


# --- encryption at rest (ledger/snapshot_crypt.py) ----------------------------------------------


def test_encrypted_snapshot_restores_and_refuses_tampering(
    made,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    net, snap, height, src = made
    monkeypatch.setattr(snapshot_crypt, "CHUNK", 4096)  # several chunks
    monkeypatch.setattr(snapshot_crypt, "ITERATIONS", 10_000)  # the KDF's floor: fast
    enc = tmp_path / "a.gmsnap.sm4"
    snapshot_crypt.encrypt_snapshot(snap, enc, b"correct horse")
    assert stat.S_IMODE(enc.stat().st_mode) == 0o600
    data = enc.read_bytes()
    assert snapshot_crypt.is_encrypted(enc) and b"evidence" not in data
    with pytest.raises(SnapshotError, match="passphrase is needed"):
        restore_snapshot(enc, tmp_path / "t", net.genesis)
    with pytest.raises(SnapshotError, match="wrong passphrase"):
        restore_snapshot(enc, tmp_path / "t", net.genesis, passphrase=b"wrong")
    chunk = 4 + 4096 + 16
    head = len(snapshot_crypt.MAGIC) + 21
    for bad in (
        data[:-1] + bytes([data[-1] ^ 1]),  # a changed byte
        data[: head + chunk],  # chunks dropped at the end
        data[:head] + data[head + chunk : head + 2 * chunk] + data[head + chunk :],  # reordered
        data + data[head : head + chunk],  # a chunk appended
    ):
        (tmp_path / "bad.sm4").write_bytes(bad)
        with pytest.raises(SnapshotError):
            restore_snapshot(tmp_path / "bad.sm4", tmp_path / "t", net.genesis, passphrase=b"x")
        with pytest.raises(SnapshotError):
            restore_snapshot(
                tmp_path / "bad.sm4", tmp_path / "t", net.genesis, passphrase=b"correct horse"
            )
    assert not (tmp_path / "t").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gmsnap.sm4", "bad.sm4"]
    # the CLI, passphrase from the environment
    save_genesis(tmp_path / "genesis.json", net.genesis)
    monkeypatch.setenv("GMCHAIN_SNAPSHOT_PASSPHRASE", "correct horse")
    r = run_gmchain(
        "db", "restore", "--snapshot", str(enc), "--data-dir", str(tmp_path / "t"),
        "--genesis", str(tmp_path / "genesis.json"),
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"height {height}" in r.stdout
    assert _all(tmp_path / "t") == _all(src)

"""Fault 12: consensus SafetyData is stored with its own checksum and refused if damaged.

On 0921e03 SafetyData was stored as its bare msgpack encoding: one flipped bit raised
`last_voted_round` (1031 -> 1287) and the node and `gmchain db check` accepted it; the opposite
flip lowers it, and an honest validator could vote twice in a round. Now the record is sealed
(SM3 checksum), the previous copy is kept, a damaged newest copy stops the node with a message
naming the recovery, `db check` reports it, and a store written by the base version still starts.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import plyvel
import pytest

from gmchain.consensus.safety import SafetyData
from gmchain.crypto_sm import PrivateKey, load_private_key, sm3_hash
from gmchain.ledger import store_keys as k
from gmchain.ledger.codec import encode
from gmchain.ledger.store import Store, StoreCorrupt
from gmchain.ledger.store_tool import check_db
from gmchain.ledger.types import Round, SignedTx, TxBody
from gmchain.node.config import NodeConfig, load_config, load_genesis
from gmchain.node.daemon import DEV_PASSPHRASE, init_dev
from gmchain.node.service import NodeService


def _dev_chain(tmp_path: Path) -> tuple[NodeConfig, PrivateKey, PrivateKey]:
    cfg = load_config(init_dev(tmp_path / "dev", rpc_port=0))
    node_key = load_private_key(cfg.key_file, DEV_PASSPHRASE.encode())
    client = load_private_key(tmp_path / "dev" / "client.key", DEV_PASSPHRASE.encode())
    return cfg, node_key, client


def _service(cfg: NodeConfig, key: PrivateKey) -> NodeService:
    genesis = load_genesis(cfg.genesis_file)
    store = Store.open(cfg.data_dir, chain_id=genesis.chain_id)
    try:
        return NodeService(config=cfg, genesis=genesis, key=key, store=store)
    except BaseException:
        store.close()
        raise


async def _run_a_little(cfg: NodeConfig, key: PrivateKey, client: PrivateKey, n: int) -> None:
    """Start the real service, commit `n` transactions (so it votes and persists), stop."""
    svc = _service(cfg, key)
    await svc.start()
    try:
        for i in range(n):
            body = TxBody(
                chain_id=svc.genesis.chain_id,
                sender=client.public_key.to_bytes(),
                nonce=i,
                expiry=svc.height() + 100,
                contract="evidence",
                method="submit",
                args=[f"s{i}", f"sf{i}", "s", "kyc", sm3_hash(b"%d" % i), None, [], 2, None],
            )
            tx = SignedTx(body=body, signature=client.sign(body.compute_id()))
            await svc.submit_raw_tx(tx.encode())
            assert await svc.wait_tx(tx.tx_id, 60) is not None
    finally:
        await svc.stop()
        svc.store.close()


def _raw_meta(path: str | Path, key: str) -> bytes | None:
    """The stored bytes of sealed record `key`, read past the store (as a disk fault sees them)."""
    db = plyvel.DB(str(path))
    try:
        return db.get(k.k_sealed_meta(key))  # type: ignore[no-any-return]
    finally:
        db.close()


def _put_raw_meta(path: str | Path, key: str, value: bytes) -> None:
    """Overwrite sealed record `key` with `value`, past the store: a damaged disk."""
    db = plyvel.DB(str(path))
    try:
        db.put(k.k_sealed_meta(key), value, sync=True)
    finally:
        db.close()


@pytest.fixture(scope="module")
def voted_chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[NodeConfig, PrivateKey, bytes]:
    """A dev chain whose node voted a few times; returns its config, key and safety record."""
    tmp = tmp_path_factory.mktemp("voted")
    cfg, key, client = _dev_chain(tmp)
    asyncio.run(_run_a_little(cfg, key, client, 3))
    raw = _raw_meta(cfg.data_dir, META_SAFETY)
    assert raw is not None
    return cfg, key, raw


META_SAFETY = "consensus_safety"


def test_every_flipped_byte_of_the_safety_record_stops_the_node(
    voted_chain: tuple[NodeConfig, PrivateKey, bytes],
) -> None:
    cfg, key, raw = voted_chain
    try:
        # Every byte position, with a one-bit and an all-bit flip: the node must refuse to start.
        for at in range(len(raw)):
            for mask in (0x01, 0xFF):
                bad = bytearray(raw)
                bad[at] ^= mask
                _put_raw_meta(cfg.data_dir, META_SAFETY, bytes(bad))
                with pytest.raises(StoreCorrupt) as info:
                    _service(cfg, key)
                msg = str(info.value)
                assert "safety data" in msg, msg
                assert "gmchain db safety-reset" in msg, msg  # names the recovery
    finally:
        _put_raw_meta(cfg.data_dir, META_SAFETY, raw)
    svc = _service(cfg, key)  # and the intact record is accepted again
    svc.store.close()


def test_db_check_reports_damaged_safety_data(
    voted_chain: tuple[NodeConfig, PrivateKey, bytes],
) -> None:
    cfg, _, raw = voted_chain
    sound = check_db(cfg.data_dir)
    assert sound.ok, sound.problem
    try:
        for at in (0, len(raw) // 2, len(raw) - 1):
            bad = bytearray(raw)
            bad[at] ^= 0x10
            _put_raw_meta(cfg.data_dir, META_SAFETY, bytes(bad))
            report = check_db(cfg.data_dir)
            assert not report.ok, f"flip at {at} passed db check"
            assert "safety" in report.problem
    finally:
        _put_raw_meta(cfg.data_dir, META_SAFETY, raw)
    assert check_db(cfg.data_dir).ok


def test_previous_copy_is_kept_and_never_used_silently(tmp_path: Path) -> None:
    from gmchain.node.safetystore import META_SAFETY, META_SAFETY_PREVIOUS, load_safety, save_safety

    db = tmp_path / "db"
    with Store.open(db, chain_id="c") as s:
        save_safety(s, SafetyData(last_voted_round=Round(1031)))
        save_safety(s, SafetyData(last_voted_round=Round(1032)))
        got = load_safety(s)
        assert got is not None and got.last_voted_round == 1032
    prev, newest = _raw_meta(db, META_SAFETY_PREVIOUS), _raw_meta(db, META_SAFETY)
    assert prev is not None and newest is not None and prev != newest
    assert k.unseal_record(prev) == SafetyData(last_voted_round=Round(1031)).encode()
    _put_raw_meta(db, META_SAFETY, newest[:-1] + bytes([newest[-1] ^ 0x01]))
    # The previous copy (round 1031) is intact, but falling back to it could lower the round
    # this validator already voted in: refuse instead.
    with Store.open(db, chain_id="c") as s, pytest.raises(StoreCorrupt, match="safety data"):
        load_safety(s)
    # The newest copy gone while a previous one exists is refused the same way.
    pdb = plyvel.DB(str(db))
    pdb.delete(k.k_sealed_meta(META_SAFETY), sync=True)
    pdb.close()
    with Store.open(db, chain_id="c") as s, pytest.raises(StoreCorrupt, match="safety data"):
        load_safety(s)


def test_store_written_by_the_base_version_still_starts(tmp_path: Path) -> None:
    """Upgrade path: the unsealed layouts of 0921e03 (and its first 7-field layout) load once and
    are rewritten sealed at the next save."""
    from gmchain.node.safetystore import META_SAFETY, is_sealed_safety_record, load_safety

    base = SafetyData(last_voted_round=Round(1031), last_proposed_round=Round(1030))
    first_layout = encode(base.to_fields()[:8])  # TAG + the seven fields before P2
    for raw, want_proposed in ((base.encode(), 1030), (first_layout, 1032)):
        db = tmp_path / f"db{len(raw)}"
        with Store.open(db, chain_id="c") as s:
            s.put_meta(META_SAFETY, raw)  # exactly what the base version wrote
        pdb = plyvel.DB(str(db))  # ... in a store of format 1
        pdb.put(k.META_VERSION, k.encode_height(1), sync=True)
        pdb.close()
        with Store.open(db, chain_id="c") as s:
            got = load_safety(s)
            assert got is not None and got.last_voted_round == 1031
            assert got.last_proposed_round == want_proposed
            assert s.get_meta(META_SAFETY) is None  # sealed now, the unsealed record gone
        assert is_sealed_safety_record(_raw_meta(db, META_SAFETY) or b"")
        with Store.open(db, chain_id="c") as s:
            assert load_safety(s) == got
        pdb = plyvel.DB(str(db))  # the store is format 2 (or later) now: the base build refuses it
        assert k.decode_height(pdb.get(k.META_VERSION)) >= 2
        pdb.close()


def test_safety_reset_is_the_documented_recovery(
    voted_chain: tuple[NodeConfig, PrivateKey, bytes], tmp_path: Path
) -> None:
    """The operator procedure: with the node stopped, `gmchain db safety-reset PATH --round R`
    (R = the highest round any validator reports) writes safety data that forbids signing in
    any round <= R; the node then starts."""
    from gmchain.node.safetystore import META_SAFETY, load_safety, main

    cfg, key, raw = voted_chain
    try:
        bad = bytearray(raw)
        bad[len(bad) // 2] ^= 0x04
        _put_raw_meta(cfg.data_dir, META_SAFETY, bytes(bad))
        # A round below one the kept previous copy already holds is refused.
        assert main(["safety-reset", cfg.data_dir, "--round", "0"]) == 1
        assert main(["safety-reset", cfg.data_dir, "--round", "100000"]) == 0
        with Store.open(cfg.data_dir) as s:
            got = load_safety(s)
        assert got is not None
        assert got.last_voted_round == got.last_proposed_round == 100000
        assert got.highest_timeout_round == got.preferred_round == 100000
        svc = _service(cfg, key)
        svc.store.close()
    finally:
        _put_raw_meta(cfg.data_dir, META_SAFETY, raw)


def test_safety_reset_never_goes_below_an_unsealed_format_1_record(tmp_path: Path) -> None:
    """Review finding: on a store written before sealing (format 1) and not yet started on this
    version, `safety-reset --round 5` ignored the intact unsealed record at round 1000, wrote
    round 5 and deleted the old record — a double vote waiting to happen. The unsealed record
    counts towards the floor like the sealed copies."""
    from gmchain.node.safetystore import META_SAFETY, load_safety, main

    path = tmp_path / "legacy"
    r = Round(1000)
    with Store.open(str(path), create=True) as s:
        s.put_meta(
            META_SAFETY,
            SafetyData(
                last_voted_round=r,
                preferred_round=Round(999),
                highest_timeout_round=r,
                last_proposed_round=r,
            ).encode(),
        )
    assert main(["safety-reset", str(path), "--round", "5"]) == 1
    with Store.open(str(path)) as s:
        got = load_safety(s)
    assert got is not None and got.last_voted_round == 1000
    assert main(["safety-reset", str(path), "--round", "1000"]) == 0

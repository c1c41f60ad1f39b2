"""Fault 11: a flipped byte in the ledger store is found, never served.

On 0921e03 a flipped byte in an .ldb file let the node start 5 times out of 5, `gmchain db check`
caught 3 of 5, and once the node served a block whose hash no longer matched its child's
`parent_id`. Rules under test:
1. `db check` finds a single flipped byte in every position class of every file of a small store
   (ledger/store_files.py names the classes: table data blocks and their trailers, the filter,
   metaindex and index blocks, the footer's handles, padding and magic; each log and MANIFEST
   record's header and payload; CURRENT) — including a record length made longer than the file,
   which LevelDB itself takes for a torn write and drops silently with every record after it.
2. The node (its real start path, `node.daemon.start_node`) never serves a block or header whose
   hash differs from the one committed: each read either returns the committed bytes or fails
   with an error (StoreCorrupt), for a flipped byte anywhere in the table's data blocks.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from gmchain.ledger.store import Store, StoreCorrupt, StoreError
from gmchain.ledger.store_files import describe_log, describe_table
from gmchain.ledger.store_tool import check_db
from tests.crash_child import CHAIN_ID, make_block

SEED = 11


def _small_store(path: Path) -> None:
    """Six blocks in a table file (with the node's Bloom filter), three more in the log, and a
    sealed metadata record."""
    with Store.open(path, chain_id=CHAIN_ID) as s:
        for h in range(6):
            s.commit_block(make_block(SEED, h))
    with Store.open(path, chain_id=CHAIN_ID) as s:  # recovery turns that log into a table
        for h in range(6, 9):
            s.commit_block(make_block(SEED, h))
        put_sealed = getattr(s, "put_sealed_meta", s.put_meta)
        put_sealed("consensus_safety", b"safety-bytes" * 4)


def _positions(path: Path) -> list[tuple[str, str, int]]:
    """(file, class, offset) of the byte positions to flip: every position class of each file."""
    out: list[tuple[str, str, int]] = []
    for f in sorted(path.iterdir()):
        data = f.read_bytes()
        if f.suffix == ".ldb":
            for kind, off, size in describe_table(data):
                if kind == "footer":
                    out += [(f.name, "footer", off + i) for i in range(size)]
                    continue
                inner = sorted({off, off + size // 2, off + size - 1}) if size else []
                if kind in ("metaindex", "index", "filter"):
                    inner = list(range(off, off + size, max(1, size // 24)))
                out += [(f.name, f"{kind} contents", at) for at in inner]
                out.append((f.name, f"{kind} compression type", off + size))
                out += [(f.name, f"{kind} crc", off + size + 1 + i) for i in range(4)]
        elif f.suffix == ".log" or f.name.startswith("MANIFEST-"):
            for off, length in describe_log(data):
                for i, part in enumerate(("crc",) * 4 + ("length",) * 2 + ("type",)):
                    out.append((f.name, f"record {part}", off + i))
                if length:
                    out += [(f.name, "record payload", off + 7 + j) for j in {0, length - 1}]
        elif f.name == "CURRENT":
            out += [(f.name, "CURRENT", i) for i in range(len(data))]
    return out


def _flip(p: Path, at: int, mask: int) -> None:
    with p.open("r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ mask]))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pristine") / "db"
    _small_store(path)
    # Checked on a copy: opening the store itself would turn its log into a table and may start
    # a background compaction whose input files can outlive the close (unreferenced, so damage
    # in them is harmless and unseen) — the flips must hit the files the store really uses.
    probe = path.with_name("probe")
    shutil.copytree(path, probe)
    sound = check_db(str(probe))
    assert sound.ok, sound.problem
    kinds = {n for n in os.listdir(path)}
    assert [n for n in kinds if n.endswith(".ldb")] and [n for n in kinds if n.endswith(".log")]
    return path


def test_db_check_finds_every_single_flipped_byte(pristine: Path, tmp_path: Path) -> None:
    positions = _positions(pristine)
    classes = {c for _, c, _ in positions}
    assert {"footer", "data contents", "data crc", "filter contents", "index contents"} <= classes
    assert {"metaindex contents", "record payload", "record crc", "CURRENT"} <= classes
    missed: list[str] = []
    tries = 0
    for name, cls, at in positions:
        # Both an all-bits and a one-bit flip where a field's value (not only a checksum) decides
        # what LevelDB does; one flip elsewhere.
        structural = cls in ("footer", "CURRENT", "record length", "record type") or "type" in cls
        for mask in (0xFF, 0x01) if structural else (0xFF,):
            tries += 1
            work = tmp_path / "work"
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(pristine, work)
            _flip(work / name, at, mask)
            try:
                found = not check_db(str(work), chain_id=CHAIN_ID).ok
            except StoreError:  # "cannot check" (exit 2) also tells the operator: not sound
                found = True
            if not found:
                missed.append(f"{name} {cls} @{at} ^{mask:#x}")
    assert not missed, f"db check missed {len(missed)} of {tries}: {missed[:12]}"


def test_node_never_serves_a_block_that_differs_from_the_committed_one(
    pristine: Path, tmp_path: Path
) -> None:
    """Through the node's own open (`start_node`'s Store.open) and read path (NodeService reads
    raw blocks the same way): every flip in a table data block either is reported or leaves
    every served block byte-identical to the committed one."""
    from gmchain.node import daemon

    table = next(f for f in pristine.iterdir() if f.suffix == ".ldb")
    data_blocks = [(o, s) for kind, o, s in describe_table(table.read_bytes()) if kind == "data"]
    committed = {h: make_block(SEED, h) for h in range(9)}
    served_wrong: list[str] = []
    for off, size in data_blocks:
        for at in (off, off + size // 2, off + size - 1):
            work = tmp_path / "node-db"
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(pristine, work)
            _flip(work / table.name, at, 0x20)
            try:
                store = daemon.open_store(str(work), CHAIN_ID)
            except StoreCorrupt:
                continue  # refused at start: fine
            try:
                for h, w in committed.items():
                    try:
                        block, header, bh = (
                            store.get_block_by_height(h),
                            store.get_header_by_height(h),
                            store.get_block_hash(h),
                        )
                    except StoreCorrupt:
                        continue
                    if (block, header, bh) != (w.block_bytes, w.header_bytes, w.block_hash):
                        served_wrong.append(f"flip @{at}: block {h} served altered")
            finally:
                store.close()
    assert not served_wrong, served_wrong[:10]


def test_a_damaged_log_length_is_refused_at_start_not_read_as_a_torn_tail(
    pristine: Path, tmp_path: Path
) -> None:
    """LevelDB takes a log record whose length field reaches past the end of the file for a torn
    write and drops it and every record behind it, silently: committed blocks 6..8 vanished and
    the store opened at head 5. The node's open refuses it instead."""
    from gmchain.node import daemon

    log = next(f for f in pristine.iterdir() if f.suffix == ".log")
    first_length_high_byte = 5  # the first record: crc (4), length (2, little-endian), type
    work = tmp_path / "db"
    shutil.copytree(pristine, work)
    _flip(work / log.name, first_length_high_byte, 0x40)
    with pytest.raises(StoreCorrupt, match="length field"):
        daemon.open_store(str(work), CHAIN_ID).close()
    assert not check_db(str(work), chain_id=CHAIN_ID).ok


def test_served_headers_and_blocks_are_rehashed(tmp_path: Path) -> None:
    """A header or block rewritten past LevelDB's checksum (valid CRC, other bytes: e.g. written
    wrongly) is refused by the node's re-hash instead of being served."""
    from dataclasses import replace

    import plyvel

    from gmchain.crypto_sm import load_private_key
    from gmchain.ledger import store_keys as k
    from gmchain.ledger.types import Block, BlockHeader
    from gmchain.node.config import load_config, load_genesis
    from gmchain.node.daemon import DEV_PASSPHRASE, init_dev
    from gmchain.node.service import NodeService

    cfg = load_config(init_dev(tmp_path / "dev", rpc_port=0))
    genesis = load_genesis(cfg.genesis_file)
    key = load_private_key(cfg.key_file, DEV_PASSPHRASE.encode())
    Store.open(cfg.data_dir, chain_id=genesis.chain_id).close()

    async def build() -> None:  # writes the genesis block
        store = Store.open(cfg.data_dir, chain_id=genesis.chain_id)
        svc = NodeService(config=cfg, genesis=genesis, key=key, store=store)
        await svc.start()
        await svc.stop()
        store.close()

    asyncio.run(build())
    db = plyvel.DB(cfg.data_dir)
    header = BlockHeader.decode(db.get(k.k_header(0)))
    block = Block.decode(db.get(k.k_block(0)))
    other = replace(header, timestamp_ms=header.timestamp_ms + 1)
    db.put(k.k_header(0), other.encode(), sync=True)
    db.put(k.k_block(0), replace(block, header=other).encode(), sync=True)
    db.close()

    store = Store.open(cfg.data_dir, chain_id=genesis.chain_id)
    try:
        svc = NodeService(config=cfg, genesis=genesis, key=key, store=store)
        with pytest.raises(StoreCorrupt, match="block 0"):
            svc.get_block_summary(0)  # gm_getBlockByNumber without transactions
        with pytest.raises(StoreCorrupt, match="block 0"):
            svc.get_block(0)
        # A node whose own store fails a re-hash stops (exit 70 in the daemon) instead of going
        # on with a store it cannot trust.
        assert svc.fatal.is_set() and isinstance(svc.fatal_error, StoreCorrupt)
        try:  # what a syncing peer would be sent: never the altered block
            sent = svc.chain.get_committed_blocks(0, 1)
        except StoreCorrupt:
            sent = []
        assert all(b.header == header for b, _ in sent)
    finally:
        store.close()

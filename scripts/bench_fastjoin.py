"""Fast join against replay, on one machine (docs/benchmarks.md, "Fast join").

Usage: python scripts/bench_fastjoin.py [--blocks 3000] [--txs-per-block 4] [--dir D]

1. A one-validator node (in process, real LevelDB, SM2-signed transactions and certificates)
   commits --blocks blocks of evidence transactions.
2. `write_snapshot` of its running store (what `gmchain db snapshot` does through the admin
   socket); timed, with its size.
3. Fast join: `restore_snapshot` into a new data directory (what `gmchain db restore` does):
   stage and check the file, check every header, body, write set and certificate, rebuild.
4. Replay, what a node syncing from genesis does per block minus the network: the transaction
   signatures (chain/txrules.py R4, R9) and execution (`Chain.commit` of a block it did not
   execute), into another new data directory.
Both rebuilt stores must end at the source's head hash. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from gmchain.chain.core import Chain
from gmchain.chain.txrules import TxRules
from gmchain.consensus.messages import CommitProof
from gmchain.consensus.packing import PackingConfig, PackingPolicy
from gmchain.contracts import default_registry
from gmchain.crypto_sm import PrivateKey, sm3_hash
from gmchain.ledger.snapshot import write_snapshot
from gmchain.ledger.store import Store
from gmchain.ledger.types import Block, Genesis, GenesisValidator, Height, SignedTx, TxBody
from gmchain.node.chainpool import MempoolPool
from gmchain.node.config import NodeConfig
from gmchain.node.mempool import Mempool, MempoolConfig
from gmchain.node.service import NodeService
from gmchain.node.snapshot_ops import restore_snapshot


def _tx(key: PrivateKey, chain_id: str, expiry: int, n: int) -> SignedTx:
    body = TxBody(
        chain_id=chain_id,
        sender=key.public_key.to_bytes(),
        nonce=n,
        expiry=Height(expiry),
        contract="evidence",
        method="submit",
        args=(
            f"r{n}",
            f"f{n}",
            "private-fund-sale",
            "risk-disclosure",
            sm3_hash(b"%d" % n),
            None,
            [["investor", "alice"]],
            2,
            None,
        ),
    )
    return SignedTx(body=body, signature=key.sign(body.compute_id()))


async def _make_chain(
    d: Path, genesis: Genesis, key: PrivateKey, acct: PrivateKey, blocks: int, per: int, snap: Path
) -> tuple[int, float, float]:
    store = Store.open(d / "src", chain_id=genesis.chain_id)
    cfg = NodeConfig(data_dir=str(d / "src"), genesis_file="-", key_file="-")
    svc = NodeService(config=cfg, genesis=genesis, key=key, store=store)
    await svc.start()
    n = 0
    t0 = time.perf_counter()
    try:
        while svc.height() < blocks:
            h = svc.height()
            txs = [_tx(acct, genesis.chain_id, h + 50, n + i) for i in range(per)]
            n += per
            ids = await asyncio.gather(*(svc.submit_raw_tx(t.encode()) for t in txs))
            for i in ids:
                assert await svc.wait_tx(i, 60) is not None
        made = time.perf_counter() - t0
        t1 = time.perf_counter()
        write_snapshot(store, snap, created_ms=int(time.time() * 1000))
        snap_s = time.perf_counter() - t1
        return svc.height(), made, snap_s
    finally:
        await svc.stop()
        store.close()


def _replay(src: Path, dst: Path, genesis: Genesis) -> tuple[float, bytes]:
    rules = TxRules.with_new_caches(
        chain_id=genesis.chain_id, replay_window=genesis.replay_window, registry=default_registry()
    )
    t0 = time.perf_counter()
    with Store.open(src, create=False) as s, Store.open(dst, chain_id=genesis.chain_id) as out:
        chain = Chain(
            genesis=genesis,
            store=out,
            rules=rules,
            pool=MempoolPool(Mempool(config=MempoolConfig(), rules=rules)),
            packing=PackingPolicy(PackingConfig()),
        )
        head = s.head_height() or 0
        pending: list[Block] = []
        for h in range(1, head + 1):
            block = Block.decode(s.get_block_by_height(h) or b"")
            rules.check_signatures(block.txs)  # R4, R9 as a syncing node checks them
            pending.append(block)
            raw = s.get_commit_proof(h)
            if raw:
                chain.commit(pending, CommitProof.decode(raw))
                pending = []
        return time.perf_counter() - t0, chain.head.block_id


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=3000, help="chain length (default 3000)")
    ap.add_argument("--txs-per-block", type=int, default=4, help="evidence txs per block (4)")
    ap.add_argument("--dir", default=None, help="work directory (default: a new temporary one)")
    args = ap.parse_args()
    d = Path(args.dir or tempfile.mkdtemp(prefix="fastjoin-"))
    d.mkdir(parents=True, exist_ok=True)
    key, acct = PrivateKey.generate(), PrivateKey.generate()
    genesis = Genesis(
        chain_id="bench-fastjoin",
        timestamp_ms=int(time.time() * 1000),
        validators=(GenesisValidator(pubkey=key.public_key.to_bytes(), power=1, org="o"),),
        accounts=((acct.public_key.to_bytes(), "o", "admin"),),
        replay_window=100,
    )
    snap = d / "chain.gmsnap"
    height, made_s, snap_s = asyncio.run(
        _make_chain(d, genesis, key, acct, args.blocks, args.txs_per_block, snap)
    )
    t0 = time.perf_counter()
    _, report = restore_snapshot(snap, d / "joined", genesis)
    join_s = time.perf_counter() - t0
    replay_s, replay_head = _replay(d / "src", d / "replayed", genesis)
    with Store.open(d / "src", create=False) as s, s.snapshot() as view:
        sizes = [(key[:1], len(key) + len(v)) for key, v in view.iter_records()]
    ws_share = sum(n for p, n in sizes if p == b"W") / sum(n for _, n in sizes)
    assert report.head_hash == replay_head, "replay and fast join disagree"
    print(
        json.dumps(
            {
                "blocks": height,
                "transactions": report.transactions,
                "chain_built_s": round(made_s, 1),
                "snapshot_s": round(snap_s, 2),
                "snapshot_mib": round(snap.stat().st_size / 2**20, 2),
                "fast_join_s": round(join_s, 2),
                "replay_s": round(replay_s, 2),
                "speedup": round(replay_s / join_s, 2),
                "certificates_checked": report.certificates_checked,
                "write_sets_share_of_store": round(ws_share, 3),
                "loadavg_1m": os.getloadavg()[0],
                "cpus": os.cpu_count(),
            }
        )
    )
    if args.dir is None:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()

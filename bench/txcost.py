"""`python -m gmchain.bench.txcost`: the CPU one transaction costs a node, stage by stage
(issue 15 item 1: everything but the SM2 verify must get cheaper).

    python -m gmchain.bench.txcost [--block-txs 400] [--blocks 5] [--rounds 3] [--keys 200]
        [--profile] [--top 6] [--json FILE]

Rules this module keeps:
1. Everything is real and in process: a leader and a follower `chain.core.Chain`, each over its
   own LevelDB store in a temporary directory, with the real executor, contracts, TxRules, pool
   (node/mempool.py) and admission checks; transactions are the bench workload's
   `evidence.submit` (bench/workload.py), built and SM2-signed as the SDK does, before any
   measuring. No network, no event loop, no threads: each stage is the same function calls a
   node makes for it, in the order a transaction meets them.
2. The figure is CPU time (`time.process_time`) per transaction for each stage, the minimum
   over `--rounds` rounds (a round: `--blocks` blocks of `--block-txs` fresh transactions), after
   one warm-up round that is not counted. CPU time is what a loaded machine hardly distorts; no
   wall rate is reported (the lead measures rates on the quiet machine with `gmchain bench`).
3. With `--profile`, one more round runs under cProfile, one profile per stage, and for each
   stage the calls per transaction and the functions with the most own time are printed (call
   counts are exact; profiled times are inflated and only rank the functions).
4. The stages (a node is either the leader, which takes the RPC path and builds, or a
   follower, which takes the gossip path and validates; admission, verify and commit are the
   same on both):
     decode_rpc    the RPC parameter (0x hex) to a SignedTx: parse_hex + TxRules.decode (R1, R2)
     decode_gossip a TxBatch payload of a block's raw txs: decode_wire, then each tx decoded
     static        Mempool.precheck: R1, R3-R6 and the pool's own checks (admission on the loop)
     stateful      TxRules.check_state on committed state read from the store (R7, R8, R8b;
                   admission's worker threads)
     verify        TxRules.check_signature with an empty signature cache (R4, R9: SM2)
     pool_insert   Mempool.add (R5 again, pool checks, the insert)
     build         Chain.build_block on the leader: pick from the pool (R3-R8 on the parent),
                   execute, header commitments
     block_encode  Block.encode on the leader (the proposal's block; the wire layer adds little)
     block_decode  Block.decode on the follower (each transaction decoded a second time)
     validate      Chain.validate_block on the follower: header and block checks, signatures (all
                   already verified, as gossip admitted them), execute again, compare
     commit        Chain.commit on each node: the block's synced write batch, caches, pool removal
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gmchain.bench.longchain import open_builder_chain
from gmchain.bench.workload import BENCH_ORG_ROLE, BENCH_REPLAY_WINDOW, _sign_chunk, make_keys
from gmchain.chain.core import Chain
from gmchain.chain.txrules import TxRules
from gmchain.consensus.messages import CommitProof
from gmchain.consensus.packing import PackingConfig
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.genesis import Genesis, GenesisValidator
from gmchain.ledger.jsonvalues import hex0x, parse_hex
from gmchain.ledger.store import Store
from gmchain.ledger.types import Block, NodeId, QuorumCert, Round, SignedTx
from gmchain.node.admission import CommittedView
from gmchain.node.mempool import Mempool
from gmchain.node.network import TxBatch, decode_wire

__all__ = ["STAGES", "Node", "Probe", "main"]

STAGES = (
    "decode_rpc",
    "decode_gossip",
    "static",
    "stateful",
    "verify",
    "pool_insert",
    "build",
    "block_encode",
    "block_decode",
    "validate",
    "commit",
)
_CHAIN_ID = "txcost"
_ORG = "bench-org"
_T0_MS = 1_700_000_000_000


@dataclass(slots=True)
class Node:
    """One node's chain, store, rules and pool."""

    store: Store
    rules: TxRules
    mempool: Mempool
    chain: Chain
    view: CommittedView

    @classmethod
    def open(cls, path: Path, genesis: Genesis, block_txs: int) -> Node:
        store = Store.open(path, chain_id=genesis.chain_id)
        chain, mempool, rules = open_builder_chain(
            genesis,
            store,
            packing=PackingConfig(min_block_txs=block_txs, max_block_txs=block_txs),
            max_block_txs=block_txs,
        )
        ex = chain.executor
        view = CommittedView(
            tx_location=store.get_tx_location,
            account_of=ex.lookup_sender_uncached,
            org_removal_of=ex.lookup_org_removal_uncached,
        )
        return cls(store=store, rules=rules, mempool=mempool, chain=chain, view=view)


@dataclass(slots=True)
class _Round:
    cpu: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    txs: int = 0


class Probe:
    """A leader and a follower on two LevelDB stores under `root` (rule 1)."""

    def __init__(self, root: Path, *, keys: int, block_txs: int, blocks: int) -> None:
        self.block_txs = block_txs
        self.blocks = blocks
        validator = PrivateKey.generate()
        self.senders = make_keys(keys)
        self.genesis = Genesis(
            chain_id=_CHAIN_ID,
            timestamp_ms=_T0_MS,
            validators=(
                GenesisValidator(pubkey=validator.public_key.to_bytes(), power=1, org=_ORG),
            ),
            replay_window=BENCH_REPLAY_WINDOW,
            accounts=tuple((k.public_key.to_bytes(), _ORG, BENCH_ORG_ROLE) for k in self.senders),
        )
        self.proposer = NodeId(validator.public_key.address)
        self.leader = Node.open(root / "leader", self.genesis, block_txs)
        self.follower = Node.open(root / "follower", self.genesis, block_txs)
        self._next = 0  # workload index of the next transaction to sign
        self._now = _T0_MS

    def close(self) -> None:
        self.leader.store.close()
        self.follower.store.close()

    def sign(self, count: int) -> list[bytes]:
        """`count` fresh raw transactions (not measured)."""
        key_bytes = [k.to_bytes() for k in self.senders]
        job = (_CHAIN_ID, BENCH_REPLAY_WINDOW - 1, key_bytes, self._next, count, "txcost")
        raws, _, _ = _sign_chunk(job)
        self._next += count
        return raws

    def run_round(self, profiles: dict[str, cProfile.Profile] | None = None) -> _Round:
        """`blocks` blocks of `block_txs` fresh transactions through every stage (rule 4)."""
        out = _Round()
        for _ in range(self.blocks):
            raws = self.sign(self.block_txs)
            self._block(raws, out, profiles)
            out.txs += len(raws)
        return out

    def _block(
        self, raws: list[bytes], out: _Round, profiles: dict[str, cProfile.Profile] | None
    ) -> None:
        leader, follower = self.leader, self.follower
        lr = leader.rules

        def stage(name: str, fn: Callable[[], Any]) -> Any:
            prof = profiles[name] if profiles is not None else None
            t0 = time.process_time()
            if prof is not None:
                prof.enable()
            try:
                return fn()
            finally:
                if prof is not None:
                    prof.disable()
                out.cpu[name] += time.process_time() - t0

        hexes = [hex0x(r) for r in raws]
        txs: list[SignedTx] = stage(
            "decode_rpc", lambda: [lr.decode(parse_hex(h, name="rawTx")) for h in hexes]
        )
        payload = TxBatch(txs=tuple(raws)).encode()

        def gossip() -> list[SignedTx]:
            batch = decode_wire(payload)
            assert isinstance(batch, TxBatch)
            return [SignedTx.decode_tx(r) for r in batch.txs]

        ftxs: list[SignedTx] = stage("decode_gossip", gossip)
        head = leader.chain.head.height
        sizes = [len(r) for r in raws]
        items = list(zip(txs, sizes, strict=True))

        def static() -> None:
            for t, n in items:
                leader.mempool.precheck(t, n, head)

        def stateful() -> None:
            for t in txs:
                lr.check_state(t, leader.view)

        def verify() -> None:
            for t in txs:
                lr.check_signature(t)

        self._now += 1000
        now = self._now

        def insert() -> None:
            for t, n in items:
                leader.mempool.add(t, n, head, now)

        stage("static", static)
        stage("stateful", stateful)
        stage("verify", verify)
        stage("pool_insert", insert)
        # The follower admits the same transactions from gossip, not measured (the same stages).
        for t, n in zip(ftxs, sizes, strict=True):
            follower.mempool.precheck(t, n, head)
            follower.rules.check_state(t, follower.view)
            follower.mempool.add(t, n, head, now)
        follower.rules.verified.mark(t.tx_id for t in ftxs)
        parent = leader.chain.head
        justify = QuorumCert(block_id=parent.block_id, round=parent.round, height=parent.height)
        block: Block = stage(
            "build",
            lambda: leader.chain.build_block(
                parent=parent,
                round=Round(parent.round + 1),
                justify=justify,
                proposer=self.proposer,
                now_ms=now,
            ),
        )
        if len(block.txs) != len(raws):
            raise RuntimeError(f"the block took {len(block.txs)} of {len(raws)} transactions")
        # The follower validates the block as the wire carries it (a proposal): decoded from its
        # bytes, every transaction again (it decoded each from gossip already).
        block_bytes: bytes = stage("block_encode", block.encode)
        wire_block: Block = stage("block_decode", lambda: Block.decode(block_bytes))
        ok = stage(
            "validate", lambda: follower.chain.validate_block(wire_block, parent, now_ms=now)
        )
        if not ok:
            raise RuntimeError("the follower refused the leader's block")
        h = block.header
        proof = CommitProof(
            header=h, qc=QuorumCert(block_id=h.block_id, round=h.round, height=h.height)
        )
        # (commit stores the proof's bytes and does not check it: a consensus matter)
        # Both nodes commit: the figure is their sum, halved in _per_tx_us (per node).
        stage("commit", lambda: leader.chain.commit([block], proof))
        stage("commit", lambda: follower.chain.commit([wire_block], proof))


def _per_tx_us(rounds: list[_Round]) -> dict[str, float]:
    """Rule 2: the minimum over rounds of CPU µs per transaction, per stage."""
    best: dict[str, float] = {}
    for name in STAGES:
        best[name] = min(r.cpu[name] / r.txs * 1e6 for r in rounds)
        if name == "commit":
            best[name] /= 2  # both nodes commit: per node
    return best


def _node_totals(us: dict[str, float]) -> dict[str, float]:
    admission = us["static"] + us["stateful"] + us["pool_insert"] + us["commit"]
    return {
        "leader_no_verify": us["decode_rpc"] + admission + us["build"] + us["block_encode"],
        "follower_no_verify": us["decode_gossip"] + admission + us["block_decode"] + us["validate"],
        "verify": us["verify"],
    }


def _profile_rows(prof: cProfile.Profile, txs: int, top: int) -> dict[str, Any]:
    st = pstats.Stats(prof)
    stats: dict[Any, Any] = st.stats  # type: ignore[attr-defined]
    calls = sum(v[1] for v in stats.values())
    rows = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    return {
        "calls_per_tx": round(calls / txs, 1),
        "top": [
            {
                "function": f"{Path(fn).name}:{line}:{name}",
                "calls_per_tx": round(v[1] / txs, 2),
                "own_share": round(v[2] / max(st.total_tt, 1e-12), 3),  # type: ignore[attr-defined]
            }
            for (fn, line, name), v in rows
        ],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gmchain.bench.txcost", description=__doc__)
    p.add_argument("--block-txs", type=int, default=400)
    p.add_argument("--blocks", type=int, default=5, help="blocks per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--keys", type=int, default=200, help="admitted sender keys")
    p.add_argument("--profile", action="store_true", help="one more round under cProfile")
    p.add_argument("--top", type=int, default=6, help="functions listed per profiled stage")
    p.add_argument("--json", type=Path, help="write the figures here too")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gmchain-txcost-") as tmp:
        probe = Probe(Path(tmp), keys=a.keys, block_txs=a.block_txs, blocks=a.blocks)
        try:
            probe.run_round()  # warm-up (rule 2)
            rounds = [probe.run_round() for _ in range(a.rounds)]
            profiled: dict[str, Any] = {}
            if a.profile:
                profiles = {s: cProfile.Profile(time.process_time) for s in STAGES}
                r = probe.run_round(profiles)
                for s in STAGES:
                    n = r.txs * (2 if s == "commit" else 1)
                    profiled[s] = _profile_rows(profiles[s], n, a.top)
        finally:
            probe.close()
    us = _per_tx_us(rounds)
    totals = _node_totals(us)
    doc = {
        "block_txs": a.block_txs,
        "blocks_per_round": a.blocks,
        "rounds": a.rounds,
        "keys": a.keys,
        "cpu_us_per_tx": {k: round(v, 1) for k, v in us.items()},
        "totals_us_per_tx": {k: round(v, 1) for k, v in totals.items()},
        "profile": profiled,
    }
    print(f"CPU per transaction (min of {a.rounds} rounds of {a.blocks} × {a.block_txs} txs):")
    for s in STAGES:
        print(f"  {s:<14}{us[s]:>9.1f} µs")
    for k, v in totals.items():
        print(f"  = {k:<20}{v:>9.1f} µs")
    for s, d in profiled.items():
        print(f"\n[{s}] {d['calls_per_tx']} calls/tx")
        for row in d["top"]:
            print(
                f"    {row['calls_per_tx']:>8} calls/tx {row['own_share']:>6.1%}  {row['function']}"
            )
    if a.json is not None:
        a.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

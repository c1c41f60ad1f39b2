"""Bench workload: many admitted keys, realistic evidence submissions, signed before the run.

Rules this module keeps:
1. Keys are admitted at genesis (`ledger.types.Genesis.accounts`, role "member" in one org), so
   no setup transaction competes with the measured load; the genesis is rewritten with
   `node.config.save_genesis`, which recomputes its hash, before any node first opens its store.
2. Every transaction is built exactly as the SDK builds it (`node.sdk.Client.build_tx`: TxBody,
   id = compute_signing_root("tx", body), SM2 signature of the id through `crypto_sm`) and signed
   before the measured window, in worker processes; their CPU time is reported.
3. An evidence record has the size of a real one (DESIGN.md "Evidence model"): UUID-like record
   id, flow id, scenario and step names, SM3 digest of ~4 KB of raw data, a storage reference, four
   metadata pairs, level 3. Each record opens its own flow (prev_record_id None), so acceptance
   does not depend on commit order between records.
4. Expiry is fixed at `expiry_height`: the bench genesis widens the replay window W so that every
   pre-signed transaction stays valid for the whole run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

from gmchain.crypto_sm import PrivateKey, sm3_hash
from gmchain.ledger.codec import Value
from gmchain.ledger.types import Genesis, Height, SignedTx, TxBody
from gmchain.node.config import load_genesis, save_genesis

__all__ = [
    "BENCH_ORG_ROLE",
    "BENCH_REPLAY_WINDOW",
    "SignedBatch",
    "admit_keys",
    "evidence_args",
    "make_keys",
    "presign",
    "presign_stream",
]

BENCH_REPLAY_WINDOW = 1_000_000  # the largest W the Genesis type allows (rule 4)
BENCH_ORG_ROLE = "member"
_SCENARIOS = ("private-fund-sale", "account-opening", "margin-trading", "bond-issue")
_STEPS = ("qualified-investor-check", "risk-disclosure", "contract-signing", "order")


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedBatch:
    """Pre-signed raw transactions and their ids, in send order."""

    raws: list[bytes]
    ids: list[bytes]
    cpu_s: float  # CPU seconds the signing workers used
    wall_s: float


def make_keys(n: int, seed: int = 0) -> list[PrivateKey]:
    """`n` fresh SM2 keys (`seed` is unused by OpenSSL's generator; kept for the manifest)."""
    del seed
    return [PrivateKey.generate() for _ in range(n)]


def admit_keys(genesis_file: Path, keys: list[PrivateKey], org: str) -> Genesis:
    """Rewrite `genesis_file` with `keys` as accounts of `org` and W = BENCH_REPLAY_WINDOW."""
    g = load_genesis(genesis_file)
    extra = tuple((k.public_key.to_bytes(), org, BENCH_ORG_ROLE) for k in keys)
    new = Genesis(
        chain_id=g.chain_id,
        timestamp_ms=g.timestamp_ms,
        validators=g.validators,
        observers=g.observers,
        replay_window=BENCH_REPLAY_WINDOW,
        accounts=tuple(g.accounts) + extra,
    )
    save_genesis(genesis_file, new)
    return new


def evidence_args(i: int, run_tag: str) -> list[Value]:
    """The `submit` argument list of contracts/evidence.py for record number `i` (rule 3)."""
    rid = f"{run_tag}-{i:08d}-{os.urandom(6).hex()}"
    raw = os.urandom(64) * 64  # stands for ~4 KB of raw data kept off chain
    return [
        f"rec-{rid}",
        f"flow-{rid}",
        _SCENARIOS[i % len(_SCENARIOS)],
        _STEPS[i % len(_STEPS)],
        sm3_hash(raw),
        f"oss://evidence-bucket/{run_tag}/{rid}.sm4",
        [
            ["channel", "online"],
            ["customer", f"C{i % 100000:06d}"],
            ["product", f"PF{i % 997:04d}"],
            ["trade_date", "2026-11-26"],
        ],
        3,
        None,
    ]


def _sign_chunk(
    job: tuple[str, int, list[bytes], int, int, str],
) -> tuple[list[bytes], list[bytes], float]:
    chain_id, expiry, key_bytes, start, count, run_tag = job
    t0 = resource.getrusage(resource.RUSAGE_SELF)
    keys = [PrivateKey.from_bytes(k) for k in key_bytes]
    pubs = [k.public_key.to_bytes() for k in keys]
    raws, ids = [], []
    for i in range(start, start + count):
        k = i % len(keys)
        body = TxBody(
            chain_id=chain_id,
            sender=pubs[k],
            nonce=i,
            expiry=Height(expiry),
            contract="evidence",
            method="submit",
            args=tuple(evidence_args(i, run_tag)),
        )
        tx = SignedTx(body=body, signature=keys[k].sign(body.compute_id()))
        raws.append(tx.encode())
        ids.append(bytes(tx.tx_id))
    t1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (t1.ru_utime - t0.ru_utime) + (t1.ru_stime - t0.ru_stime)
    return raws, ids, cpu


def presign(
    keys: list[PrivateKey],
    count: int,
    *,
    chain_id: str,
    expiry: int,
    run_tag: str,
    workers: int | None = None,
) -> SignedBatch:
    """Sign `count` evidence submissions round-robin over `keys` in worker processes (rule 2)."""
    workers = workers or os.cpu_count() or 1
    key_bytes = [k.to_bytes() for k in keys]
    chunk = max(1, min(5000, -(-count // workers)))
    jobs = [
        (chain_id, expiry, key_bytes, s, min(chunk, count - s), run_tag)
        for s in range(0, count, chunk)
    ]
    t0 = time.perf_counter()
    raws: list[bytes] = []
    ids: list[bytes] = []
    cpu = 0.0
    if count <= 200 or workers == 1:
        results = [_sign_chunk(j) for j in jobs]
    else:
        with mp.get_context("spawn").Pool(workers) as pool:
            results = pool.map(_sign_chunk, jobs)
    for r, i, c in results:
        raws.extend(r)
        ids.extend(i)
        cpu += c
    return SignedBatch(raws=raws, ids=ids, cpu_s=cpu, wall_s=time.perf_counter() - t0)


def presign_stream(
    keys: list[PrivateKey],
    count: int,
    *,
    chain_id: str,
    expiry: int,
    run_tag: str,
    chunk: int = 2000,
    workers: int | None = None,
) -> Generator[SignedBatch, None, None]:
    """`presign` in chunks of `chunk`, in order, signed by worker processes while the caller
    consumes the earlier chunks (bench/longchain.py builds blocks meanwhile)."""
    workers = workers or os.cpu_count() or 1
    key_bytes = [k.to_bytes() for k in keys]
    jobs = [
        (chain_id, expiry, key_bytes, s, min(chunk, count - s), run_tag)
        for s in range(0, count, chunk)
    ]
    with mp.get_context("spawn").Pool(workers) as pool:
        t0 = time.perf_counter()
        for raws, ids, cpu in pool.imap(_sign_chunk, jobs):
            yield SignedBatch(raws=raws, ids=ids, cpu_s=cpu, wall_s=time.perf_counter() - t0)
            t0 = time.perf_counter()

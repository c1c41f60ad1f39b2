"""Generate docs/protocol.md, the byte-exact protocol specification, from the code.

Rules this script keeps:
1. Every table (type tags, fields, domains, limits) is read from the code: the structs and their
   tags from the wire registry (`ledger.wire`: every registered struct gets a section unless it is
   specified in another document, `_ELSEWHERE`), fields from `ledger.types`, limits from
   `ledger.codec`; and every worked example is computed by `ledger.*` at generation time, so the
   document cannot drift from the code: `--check` regenerates and fails if docs/protocol.md
   differs (tests/test_protocol_doc.py runs it).
2. Examples use fixed private keys. SM2 signatures are randomised (GB/T 32918.2 draws a fresh k),
   so one signature per example is stored in tests/vectors/protocol_examples.json, created with
   `--new-signatures`; ordinary runs reuse and verify them, so regeneration is byte-identical.
3. Worked examples are fenced blocks preceded by `<!-- example: NAME -->`; `text` blocks hold
   `key = value` lines (hex without 0x), `json` blocks hold proof objects. An implementation
   written from the document alone (tests/test_protocol_independent.py) parses them.

Usage: python scripts/gen_protocol_doc.py [--check] [--new-signatures]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import tempfile
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import field_rules  # noqa: E402 (scripts/field_rules.py: each struct's field rules)
import gen_protocol_xc  # noqa: E402 (scripts/gen_protocol_xc.py: the cross-chain examples)

from gmchain.chain.core import compute_block_header, make_genesis_block  # noqa: E402
from gmchain.chain.executor import BlockContext, Executor  # noqa: E402
from gmchain.chain.lightclient import (  # noqa: E402
    Certificate,
    TrustAnchor,
    build_full_proof,
    compute_validator_set_fingerprint,
    validators_to_json,
    verify_epoch_proof,
)
from gmchain.chain.txrules import TxRules  # noqa: E402
from gmchain.consensus import Validator, ValidatorSet  # noqa: E402
from gmchain.consensus import messages as cm  # noqa: E402
from gmchain.consensus import safety as _safety  # noqa: E402, F401 (registers SafetyData)
from gmchain.consensus.certs import make_genesis_qc  # noqa: E402
from gmchain.contracts import evidence_data as _evidence_data  # noqa: E402, F401 (SealedData)
from gmchain.contracts.framework import default_registry  # noqa: E402
from gmchain.crypto_sm import DEFAULT_SM2_ID, PrivateKey, PublicKey, sm3_hash  # noqa: E402
from gmchain.ledger import types as lt  # noqa: E402
from gmchain.ledger import wire  # noqa: E402
from gmchain.ledger.codec import DEFAULT_LIMITS, encode  # noqa: E402
from gmchain.ledger.epoch import (  # noqa: E402
    EpochConfig,
    next_validators_commitment,
)
from gmchain.ledger.merkle import (  # noqa: E402
    EMPTY_ROOT,
    Frontier,
    compute_root,
    leaf_hash,
    node_hash,
)
from gmchain.ledger.proofs import compute_consistency_proof, compute_tx_proof  # noqa: E402
from gmchain.node.config import save_genesis  # noqa: E402
from gmchain.node.network import WIRE_LIMITS, TxBatch  # noqa: E402

DOC = ROOT / "docs" / "protocol.md"
VECTORS = ROOT / "tests" / "vectors" / "protocol_examples.json"
TEMPLATE = ROOT / "docs" / "protocol.md.in"

SENDER_KEY = sm3_hash(b"gmchain protocol.md example key: sender")
VALIDATOR_KEYS = [
    sm3_hash(b"gmchain protocol.md example key: validator"),
    *(sm3_hash(b"gmchain protocol.md example key: validator %d" % i) for i in (1, 2, 3)),
]
VALIDATOR_ORGS = ("regulator", "firm-a", "firm-b", "exchange")
MEMBER_KEY = sm3_hash(b"gmchain protocol.md example key: member")
REGULATOR_KEY = sm3_hash(b"gmchain protocol.md example key: regulator")
OBSERVER_KEY = sm3_hash(b"gmchain protocol.md example key: observer")
CHAIN_ID = "gmchain-example"


# Registered structs specified elsewhere, with where: every other registered struct gets a section.
_ELSEWHERE = {
    "SafetyData": "docs/consensus.md, the `PersistSafety` effect (a replica's own state: stored, "
    "never sent)",
    "SealedData": "docs/evidence.md, `SealedData.encode()` (off-chain evidence data, never on "
    "chain)",
}


def _all_structs() -> list[type[Any]]:
    """Every registered struct but those of _ELSEWHERE, by tag: the registry is the list."""
    structs = wire.registered_structs()
    missing = [t for t in wire.Tag if wire.struct_for_tag(t) is None]
    assert not missing, f"tags whose struct this script does not import: {missing}"
    return [c for c in structs if c.__name__ not in _ELSEWHERE]


STRUCTS: list[type[Any]] = _all_structs()
_WIRE_DEPTH = WIRE_LIMITS.max_depth
_NO_EXAMPLE: dict[str, str] = {}  # struct name -> where its example is instead


# --- building the examples ----------------------------------------------------------------------


class _Signatures:
    """Stored example signatures; new ones only with --new-signatures."""

    def __init__(self, fresh: bool, add: bool = False) -> None:
        self.fresh = fresh
        self.add = add  # sign only what is missing or no longer verifies (--add-signatures)
        self.sigs: dict[str, str] = {}
        if not fresh and VECTORS.exists():
            self.sigs = json.loads(VECTORS.read_text())["signatures"]

    def get(self, name: str, key: PrivateKey, msg: bytes) -> bytes:
        stale = self.add and name in self.sigs
        if stale and key.public_key.verify(msg, bytes.fromhex(self.sigs[name])):
            stale = False
        if self.fresh or name not in self.sigs or stale:
            if not (self.fresh or self.add):
                raise SystemExit(f"no stored signature {name!r}; run with --new-signatures")
            self.sigs[name] = key.sign(msg).hex()
        sig = bytes.fromhex(self.sigs[name])
        if not key.public_key.verify(msg, sig):
            raise SystemExit(f"stored signature {name!r} does not verify")
        return sig

    def save(self) -> None:
        VECTORS.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "comment": "SM2 signatures of docs/protocol.md's worked examples "
            "(scripts/gen_protocol_doc.py --new-signatures)",
            "signatures": dict(sorted(self.sigs.items())),
        }
        VECTORS.write_text(json.dumps(data, indent=2) + "\n")


class _MemState:
    """Committed state in memory (the `CommittedState` the executor reads): the examples run the
    real executor and contracts, so every receipt, event and state_hash in them is the node's."""

    def __init__(self) -> None:
        self.state: dict[tuple[str, bytes], bytes] = {}
        self.tx_locations: dict[bytes, tuple[int, int]] = {}

    def get_state(self, namespace: str, key: bytes) -> bytes | None:
        return self.state.get((namespace, key))

    def iter_state(self, namespace: str, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        for (ns, key), value in sorted(self.state.items()):
            if ns == namespace and key.startswith(prefix):
                yield key, value

    def get_tx_location(self, tx_id: bytes) -> tuple[int, int] | None:
        return self.tx_locations.get(tx_id)

    def apply(self, height: int, writes: dict[tuple[str, bytes], bytes | None], ids: list[bytes]):
        for k, v in writes.items():
            if v is None:
                self.state.pop(k, None)
            else:
                self.state[k] = v
        for i, t in enumerate(ids):
            self.tx_locations[t] = (height, i)


def _evidence_args(n: int, prev: str | None) -> tuple[Any, ...]:
    """evidence.submit arguments (contracts/evidence.py): record n of flow "flow-1"."""
    steps = ("risk-disclosure", "suitability-check", "contract-signing")
    return (
        f"rec-{n:03d}",  # record_id
        "flow-1",  # flow_id
        "private-fund-sale",  # scenario
        steps[n % 3],  # step
        sm3_hash(b"raw data %d" % n),  # data_digest: SM3 of the (off-chain) raw data
        None if n else "oss://firm-a/evidence/rec-000",  # storage_ref (optional)
        [["channel", "branch-12"]] if n == 0 else [],  # metadata [key, value] pairs
        3,  # level
        prev,  # prev_record_id: None for a flow's first record
    )


def build_examples(sigs: _Signatures) -> dict[str, Any]:
    """A tiny chain run by the real executor and contracts, certified by 4 validators:
    genesis, block 0, block 1 (3 evidence.submit), block 2 (membership.register and a failing
    evidence.submit), block 3 (empty; its QC commits block 2); a timeout in round 4, a TC, and the
    proposal of block 4 in round 5; a vote; and the proofs of section 9."""
    sender = PrivateKey.from_bytes(SENDER_KEY)
    vkeys = [PrivateKey.from_bytes(k) for k in VALIDATOR_KEYS]
    spub = sender.public_key.to_bytes()
    member_pub = PrivateKey.from_bytes(MEMBER_KEY).public_key.to_bytes()
    regulator_pub = PrivateKey.from_bytes(REGULATOR_KEY).public_key.to_bytes()
    observer_pub = PrivateKey.from_bytes(OBSERVER_KEY).public_key.to_bytes()
    genesis = lt.Genesis(
        chain_id=CHAIN_ID,
        timestamp_ms=1_767_225_600_000,
        validators=tuple(
            lt.GenesisValidator(pubkey=k.public_key.to_bytes(), power=1, org=org)
            for k, org in zip(vkeys, VALIDATOR_ORGS, strict=True)
        ),
        observers=(observer_pub,),
        replay_window=1000,
        accounts=((spub, "firm-a", "admin"), (regulator_pub, "regulator", "regulator")),
    )
    vset = ValidatorSet(Validator(node_id=v.node_id, power=v.power) for v in genesis.validators)
    key_of = {lt.NodeId(k.public_key.address): k for k in vkeys}
    block0, genesis_writes = make_genesis_block(genesis)
    state = _MemState()
    state.apply(0, genesis_writes, [])
    rules = TxRules.with_new_caches(
        chain_id=CHAIN_ID, replay_window=genesis.replay_window, registry=default_registry()
    )
    executor = Executor(rules=rules, committed=state)

    def qc_for(h: lt.BlockHeader, absent: int) -> lt.QuorumCert:
        """QC of `h` signed by every validator but the one at `absent` (node-id order): 3 of
        4 votes of power 1, the least power above 2/3 of 4."""
        ids = vset.node_ids
        return gen_protocol_xc.header_qc(
            h,
            [n for i, n in enumerate(ids) if i != absent],
            lambda n, root: sigs.get(f"qc{h.height}_{ids.index(n)}", key_of[n], root),
        )

    headers, blocks = [block0.header], [block0]
    receipts_of: list[list[lt.Receipt]] = [[]]
    writes_of: list[dict[tuple[str, bytes], bytes | None]] = [genesis_writes]
    frontier = Frontier.empty()
    nodes: dict[tuple[int, int], bytes] = {}
    qcs: dict[int, lt.QuorumCert] = {0: make_genesis_qc(block0.block_id)}

    def run_block(round_: int, txs: list[lt.SignedTx], justify: lt.QuorumCert) -> lt.Block:
        nonlocal frontier
        parent = headers[-1]
        height = parent.height + 1
        ctx = BlockContext(
            chain_id=CHAIN_ID,
            height=height,
            timestamp_ms=genesis.timestamp_ms + 1000 * round_,
            parent_state_hash=parent.state_hash,
            parent_frontier=frontier,
        )
        result, _ = executor.execute(ctx, txs, None, strict=True)
        header = compute_block_header(
            parent,
            result,
            chain_id=CHAIN_ID,
            epoch=0,
            round=lt.Round(round_),
            proposer=vset.leader(round_),
            timestamp_ms=ctx.timestamp_ms,
            next_validators_hash=next_validators_commitment(0, genesis.validators),
            justify=justify,
        )
        frontier = result.frontier
        nodes.update(result.acc_nodes)
        state.apply(height, result.writes, result.tx_ids)
        # chain/executor.py rule 5: whoever commits tells the executor's read cache (as
        # Chain.commit does), or the next block reads what this one replaced.
        executor.read_cache.on_committed_writes(result.writes)
        block = lt.Block(header=header, txs=tuple(txs))
        headers.append(header)
        blocks.append(block)
        receipts_of.append(list(result.receipts))
        writes_of.append(dict(result.writes))
        return block

    nonce = 0

    def tx(contract: str, method_: str, args: tuple[Any, ...]) -> lt.SignedTx:
        nonlocal nonce
        body = lt.TxBody(
            chain_id=CHAIN_ID,
            sender=spub,
            nonce=1000 + nonce,
            expiry=lt.Height(100),
            contract=contract,
            method=method_,
            args=args,
        )
        signed = lt.SignedTx(body=body, signature=sigs.get(f"tx{nonce}", sender, body.compute_id()))
        nonce += 1
        return signed

    run_block(
        1,
        [
            tx("evidence", "submit", _evidence_args(0, None)),
            tx("evidence", "submit", _evidence_args(1, "rec-000")),
            tx("evidence", "submit", _evidence_args(2, "rec-001")),
        ],
        qcs[0],
    )
    qcs[1] = qc_for(headers[1], absent=3)
    run_block(
        2,
        [
            tx("membership", "register", (member_pub, "firm-a", "member")),
            tx("evidence", "submit", _evidence_args(0, None)),  # rec-000 again: refused
        ],
        qcs[1],
    )
    qcs[2] = qc_for(headers[2], absent=0)
    run_block(3, [], qcs[2])
    qcs[3] = qc_for(headers[3], absent=1)
    h1, h2, h3 = headers[1], headers[2], headers[3]

    # Round 4 times out (its leader sent nothing): three validators time out with high QC qc3.
    troot = lt.TimeoutVote.signing_root(CHAIN_ID, 0, lt.Round(4), h3.round)
    tsigs = {n: sigs.get(f"timeout4_{i}", key_of[n], troot) for i, n in enumerate(vset.node_ids)}
    timeout_voter = vset.node_ids[0]
    timeout = lt.TimeoutVote(
        round=lt.Round(4), high_qc=qcs[3], voter=timeout_voter, signature=tsigs[timeout_voter]
    )
    tc = lt.TimeoutCert(
        round=lt.Round(4),
        high_qc=qcs[3],
        entries=tuple((n, h3.round, tsigs[n]) for n in vset.node_ids[:3]),
    )
    b4 = run_block(5, [], qcs[3])
    proposal = lt.Proposal(
        block=b4,
        tc=tc,
        signature=sigs.get(
            "proposal5",
            key_of[b4.header.proposer],
            lt.Proposal.signing_root(CHAIN_ID, b4.block_id),
        ),
    )
    # The vote example is one of qc2's votes.
    voter, vsig = qcs[2].signatures[0]
    vote = lt.Vote(
        block_id=h2.block_id, round=h2.round, height=h2.height, voter=voter, signature=vsig
    )

    def get_node(level: int, index: int) -> bytes | None:
        return nodes.get((level, index))

    tx_ids_1 = [t.tx_id for t in blocks[1].txs]
    bundle = compute_tx_proof(h1, tx_ids_1, 1, get_node, h2.acc_size)
    commit_proofs = {
        h.height: cm.CommitProof(header=headers[h.height + 1], qc=qcs[h.height + 1])
        for h in (h1, h2)
    }  # QC(child) with child.round = parent.round + 1 commits the parent (2-chain rule)
    full_bundle = build_full_proof(
        header=h1,
        tx_ids=tx_ids_1,
        receipts=[r.encode() for r in receipts_of[1]],
        index=1,
        get_node=get_node,
        anchor=h2,
        commit=Certificate(headers=(h1,), proof=commit_proofs[1]),
        anchor_commit=Certificate(headers=(h2,), proof=commit_proofs[2]),
    )
    consistency = compute_consistency_proof(get_node, h1.acc_size, h2.acc_size)
    epoch_proof = _epoch_example(sigs, genesis, vset, key_of, b4, run_block)
    return {
        "genesis": genesis,
        "headers": headers[:4],  # the committed chain; block 4 travels in the proposal
        "blocks": blocks[:4],
        "receipts": receipts_of,
        "writes": writes_of,
        "qcs": qcs,
        "vote": vote,
        "timeout": timeout,
        "tc": tc,
        "proposal": proposal,
        "vote_root": lt.QuorumCert.signing_root(
            CHAIN_ID, h2.epoch, h2.block_id, h2.round, h2.height
        ),
        "sender_pub": sender.public_key,
        "bundle": bundle,
        "full_bundle": full_bundle,
        "commit_proof": commit_proofs[1],
        "consistency": consistency,
        "epoch_proof": epoch_proof,
        "xc": gen_protocol_xc.build_xc_examples(
            sigs,
            _MemState,
            sender_key=SENDER_KEY,
            validator_keys=VALIDATOR_KEYS,
            orgs=VALIDATOR_ORGS,
            evidence_args=_evidence_args,
        ),
    }


def _epoch_example(
    sigs: _Signatures,
    genesis: lt.Genesis,
    vset: ValidatorSet,
    key_of: dict[lt.NodeId, PrivateKey],
    b4: lt.Block,
    run_block: Any,
) -> dict[str, Any]:
    """An epoch-change proof from epoch 0 to 1: block 4 certified, then an (empty) block E at
    height 5 whose next_validators_hash commits to epoch 1 and the genesis set without its last
    validator (by node id), committed by its child C (consecutive round) and C's QC; checked
    from the genesis."""

    def qc(h: lt.BlockHeader) -> lt.QuorumCert:
        ids = vset.node_ids
        return gen_protocol_xc.header_qc(
            h,
            ids[:3],
            lambda n, root: sigs.get(f"epoch_qc{h.height}_{ids.index(n)}", key_of[n], root),
        )

    kept = {vset.node_ids[i] for i in range(3)}
    nxt = tuple(v for v in genesis.validators if v.node_id in kept)
    ending = run_block(6, [], qc(b4.header))
    ending = lt.Block(
        header=dataclasses.replace(
            ending.header, next_validators_hash=next_validators_commitment(1, nxt)
        ),
        txs=(),
    )
    child = run_block(7, [], qc(ending.header)).header
    child = dataclasses.replace(
        child, parent_id=ending.block_id, next_validators_hash=next_validators_commitment(1, nxt)
    )
    child = dataclasses.replace(child, justify=qc(ending.header))
    proof = cm.CommitProof(header=child, qc=qc(child))
    doc = {
        "from_epoch": 0,
        "to_epoch": 1,
        "entries": [
            {
                "epoch": 0,
                **Certificate(headers=(ending.header,), proof=proof).to_json(),
                "next_validators": validators_to_json(nxt),
            }
        ],
    }
    reached = verify_epoch_proof(doc, TrustAnchor.from_genesis(genesis))
    assert reached.epoch == 1 and reached.validators == nxt
    return doc


# --- rendering ----------------------------------------------------------------------------------


def _example(name: str, pairs: list[tuple[str, Any]]) -> str:
    lines = [f"<!-- example: {name} -->", "```text"]
    for k, v in pairs:
        lines.append(f"{k} = {v.hex() if isinstance(v, bytes) else v}")
    lines.append("```")
    return "\n".join(lines)


def _json_example(name: str, obj: Any) -> str:
    return f"<!-- example: {name} -->\n```json\n{json.dumps(obj, indent=2)}\n```"


def _type_name(cls: type, name: str) -> str:
    hint = typing.get_type_hints(cls)[name]
    generic = typing.get_origin(hint) is not None
    text = str(hint) if generic else getattr(hint, "__name__", None) or str(hint)
    return re.sub(r"\b(?:[a-z_][a-z0-9_]*\.)+(?=[A-Za-z_])", "", text)  # module paths


_ENCODINGS = {
    "str": "str (UTF-8)",
    "bytes": "bin",
    "int": "int",
    "Height": "int (u64)",
    "Round": "int (u64)",
    "Digest": "bin (32)",
    "NodeId": "bin (20)",
    "ReceiptStatus": "int",
}


def _field_table(cls: type) -> str:
    rows = ["| # | field | Python type | msgpack |", "|---|---|---|---|"]
    rows.append(f"| 0 | (type tag) | | int = {cls.TAG} |")  # type: ignore[attr-defined]
    fields = [f for f in dataclasses.fields(cls) if not f.name.startswith("_")]
    for i, f in enumerate(fields, start=1):
        t = _type_name(cls, f.name)
        enc = _ENCODINGS.get(t, "array" if "tuple" in t or t in _STRUCT_NAMES else "any value")
        if t in _STRUCT_NAMES:
            enc = f"{t} array"
        if "None" in t:
            enc = "nil or " + t.split("|")[0].strip() + " array"
        cell = t.replace("|", "\\|")  # a pipe would end the table cell
        rows.append(f"| {i} | `{f.name}` | `{cell}` | {enc} |")
    return "\n".join(rows)


_STRUCT_NAMES = {c.__name__ for c in STRUCTS}


def struct_samples(ex: dict[str, Any]) -> dict[type, Any]:
    """One example of every struct with a section, from the example chain `ex`."""
    h1 = ex["headers"][1]
    b1 = ex["blocks"][1]
    return {
        lt.TxBody: b1.txs[0].body,
        lt.SignedTx: b1.txs[0],
        lt.Event: ex["receipts"][1][0].events[0],
        lt.Receipt: ex["receipts"][1][0],
        lt.BlockHeader: h1,
        lt.Block: ex["blocks"][2],
        lt.Vote: ex["vote"],
        lt.QuorumCert: ex["qcs"][1],
        lt.TimeoutVote: ex["timeout"],
        lt.TimeoutCert: ex["tc"],
        lt.Proposal: ex["proposal"],
        lt.GenesisValidator: ex["genesis"].validators[0],
        lt.Genesis: ex["genesis"],
        EpochConfig: EpochConfig.from_genesis(ex["genesis"]),
        # peer messages (docs/consensus.md L8, L9; docs/p2p.md frames them)
        cm.BlockRequest: cm.BlockRequest(block_id=h1.block_id, count=8),
        cm.BlockResponse: cm.BlockResponse(
            block_id=ex["blocks"][2].block_id, blocks=(ex["blocks"][2],)
        ),
        cm.SyncRequest: cm.SyncRequest(from_height=lt.Height(1), count=64),
        cm.SyncResponse: cm.SyncResponse(items=((b1, ex["commit_proof"]),)),
        cm.SyncInfo: cm.SyncInfo(high_qc=ex["tc"].high_qc, tc=ex["tc"], commit_qc=ex["qcs"][3]),
        cm.CommitProof: ex["commit_proof"],
        TxBatch: TxBatch(txs=(b1.txs[0].encode(),)),
    }


def _struct_sections(ex: dict[str, Any]) -> str:
    samples = struct_samples(ex)
    out = []
    for cls in STRUCTS:
        doc = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
        part = [f"### {cls.__name__} (tag {cls.TAG})", "", doc, "", _field_table(cls)]
        part += ["", field_rules.render(cls)]
        x = samples.get(cls)
        if x is None:
            assert cls.__name__ in _NO_EXAMPLE, f"no worked example for {cls.__name__}"
            part += ["", _NO_EXAMPLE[cls.__name__]]
        else:
            assert len(x.to_fields()) == 1 + len(
                [f for f in dataclasses.fields(cls) if not f.name.startswith("_")]
            ), f"{cls.__name__}: to_fields does not follow the declared fields"
            part += ["", _example(f"struct_{cls.__name__}", [("encoding", x.encode())])]
        out.append("\n".join(part))
    stale = field_rules.unused_descriptions()
    assert not stale, f"scripts/field_rules.py describes checks the code no longer makes: {stale}"
    return "\n\n".join(out)


def _tag_table() -> str:
    """Every registered tag (ledger.wire.Tag), its struct and where it is specified."""
    rows = ["| tag | struct | specified in |", "|---|---|---|"]
    for c in wire.registered_structs():
        name = c.__name__
        if name in _ELSEWHERE:
            rows.append(f"| {c.TAG} | {name} | {_ELSEWHERE[name]} |")
        else:
            rows.append(f"| {c.TAG} | [{name}](#{name.lower()}-tag-{c.TAG}) | this section |")
    return "\n".join(rows)


# What each hash prefix (ledger.wire.HASH_PREFIXES) starts; every one must be described.
_PREFIX_USE = {
    "validator-set": "the validator-set fingerprint: SM3(string \u2016 for each validator in "
    "ascending public-key order, its 65-byte public key \u2016 its power as a u64 big-endian), "
    "docs/rpc.md",
    "next-validators": "a header's `next_validators_hash`: SM3(string \u2016 the next block's "
    "epoch as a u64 big-endian \u2016 the validator-set fingerprint of the set that certifies it)",
    "sealed-record": "the checksum of a sealed store record: SM3(string \u2016 payload); on disk "
    "only, never on the wire",
    "snapshot-content": "the SM3 chain over a snapshot file's records: d0 = SM3(string), "
    'd_i = SM3(d_i-1 \u2016 record i), docs/ops.md "Backup, restore and fast join"; in files '
    "only, never on the wire",
}


def _domain_tables() -> str:
    assert set(_PREFIX_USE) == set(wire.HASH_PREFIXES), "describe every hash prefix"
    signing = ["| kind | domain string (ASCII) | hex |", "|---|---|---|"] + [
        f"| {k} | `{v.decode()}` | `{v.hex()}` |" for k, v in wire.SIGNING_DOMAINS.items()
    ]
    prefixes = ["| name | string (ASCII) | hex | starts |", "|---|---|---|---|"] + [
        f"| {k} | `{v.decode()}` | `{v.hex()}` | {_PREFIX_USE[k]} |"
        for k, v in wire.HASH_PREFIXES.items()
    ]
    return "\n".join(
        [
            *signing,
            "",
            "Registered with them, and so distinct from them and from each other (no string is a "
            "prefix of another), are the strings that start other SM3 inputs, with no `0x00` "
            "after them; they are not signing roots:",
            "",
            *prefixes,
            "",
            "The transport's handshake strings (docs/p2p.md) are checked against all of these too.",
        ]
    )


_LIMIT_NOTES = {"max_depth": " (a bare value; a struct uses its own `NESTING`, section 2)"}


def render(ex: dict[str, Any]) -> str:
    genesis, headers, blocks = ex["genesis"], ex["headers"], ex["blocks"]
    tx0 = blocks[1].txs[0]
    body_bytes = tx0.body.encode()
    spub: PublicKey = ex["sender_pub"]
    lim = DEFAULT_LIMITS
    voter = next(v for v in genesis.validators if v.node_id == ex["vote"].voter)
    tmpl = TEMPLATE.read_text()
    values = {
        "LIMITS": "\n".join(
            [
                "| limit | value |",
                "|---|---|",
                *(
                    f"| `{f.name}` | {getattr(lim, f.name)}{_LIMIT_NOTES.get(f.name, '')} |"
                    for f in dataclasses.fields(lim)
                ),
                f"| `MAX_TX_BYTES` (one encoded SignedTx) | {lt.MAX_TX_BYTES} |",
            ]
        ),
        "DEPTH": "\n".join(
            [
                "| struct | `NESTING` |",
                "|---|---|",
                f"| (free-form value: `MAX_VALUE_DEPTH`) | {lt.MAX_VALUE_DEPTH} |",
                *(f"| {c.__name__} | {c.NESTING} |" for c in STRUCTS),
                f"| (any peer message: the largest of the above a peer may send) | {_WIRE_DEPTH} |",
            ]
        ),
        "MAX_VALIDATORS": str(lt.MAX_VALIDATORS),
        "SIZE": "\n".join(
            [
                "| limit | value |",
                "|---|---|",
                f"| `MAX_MESSAGE_BYTES` (bytes) | {cm.MAX_MESSAGE_BYTES} |",
                f"| `MAX_MESSAGE_ARRAY` (items) | {cm.MAX_MESSAGE_ARRAY} |",
                f"| `MAX_BLOCK_TX_BYTES` (bytes) | {cm.MAX_BLOCK_TX_BYTES} |",
            ]
        ),
        "TAGS": _tag_table(),
        "STRUCTS": _struct_sections(ex),
        "DOMAINS": _domain_tables(),
        "SM2_ID": DEFAULT_SM2_ID.decode(),
        "TXBODY_RULES": "\n".join(field_rules.render(lt.TxBody).split("\n")[2:]),
        "EX_VALIDATOR_SET": _example("validator_set", _validator_set_lines(genesis)),
        "EX_NEXT_VALIDATORS": _example("next_validators", _next_validators_lines(genesis)),
        "EX_SIGNING_ROOT": _example(
            "signing_root",
            [
                ("domain", lt.DOMAIN["tx"]),
                ("encoding", body_bytes),
                ("hash_input", lt.DOMAIN["tx"] + b"\x00" + body_bytes),
                ("signing_root", lt.compute_signing_root("tx", tx0.body.to_fields())),
            ],
        ),
        "EX_TX": _example(
            "tx",
            [
                ("private_key", SENDER_KEY),
                ("public_key", spub.to_bytes()),
                ("address", spub.address),
                ("signed_tx", tx0.encode()),
                ("tx_id", tx0.tx_id),
                ("signature", tx0.signature),
            ],
        ),
        "EX_VOTE": _example(
            "vote",
            [
                ("public_key", voter.pubkey),
                ("node_id", voter.node_id),
                ("vote", ex["vote"].encode()),
                ("signing_input", encode([CHAIN_ID, *ex["vote"].to_fields()[1:4]])),
                ("signing_root", ex["vote_root"]),
                ("chain_id", CHAIN_ID),
            ],
        ),
        "EX_GENESIS_JSON": _genesis_json(genesis),
        "EX_CHAIN": "\n\n".join(
            [
                _example(
                    "genesis",
                    [("genesis", genesis.encode()), ("genesis_hash", genesis.compute_hash())],
                ),
                *(
                    _example(
                        f"block{h.height}",
                        [
                            ("block", b.encode()),
                            ("block_id", h.block_id),
                            *(
                                (f"receipt{i}", r.encode())
                                for i, r in enumerate(ex["receipts"][h.height])
                            ),
                            ("parent_state_hash", parent_state),
                            *_write_lines(ex["writes"][h.height]),
                            ("state_hash", h.state_hash),
                        ],
                    )
                    for h, b, parent_state in zip(
                        headers,
                        blocks,
                        [lt.ZERO_DIGEST, *(x.state_hash for x in headers[:-1])],
                        strict=True,
                    )
                ),
            ]
        ),
        "EX_MERKLE": _example(
            "merkle",
            [
                ("empty_root", EMPTY_ROOT),
                ("entry", b"abc"),
                ("leaf_hash", leaf_hash(b"abc")),
                ("leaf_a", leaf_hash(b"a")),
                ("leaf_b", leaf_hash(b"b")),
                ("leaf_c", leaf_hash(b"c")),
                ("node_a_b", node_hash(leaf_hash(b"a"), leaf_hash(b"b"))),
                ("root_of_3", _root_of_3()),
                *_tx_root_lines(blocks[1]),
            ],
        ),
        "EX_FRONTIER": _example("frontier", _frontier_lines(blocks)),
        "EX_BUNDLE": _json_example("tx_proof", ex["full_bundle"]),
        "EX_EPOCH_PROOF": _json_example("epoch_proof", ex["epoch_proof"]),
        "EX_CONSISTENCY": _json_example(
            "consistency_proof",
            {
                "old_height": 1,
                "new_height": 2,
                **ex["consistency"].to_json(),
                "old_header": "0x" + headers[1].encode().hex(),
                "new_header": "0x" + headers[2].encode().hex(),
            },
        ),
    }
    values.update(gen_protocol_xc.render_xc(ex["xc"], _example))
    for key, val in values.items():
        marker = "{{" + key + "}}"
        assert marker in tmpl, f"template lacks {marker}"
        tmpl = tmpl.replace(marker, str(val))
    assert "{{" not in tmpl, "unfilled marker in the template"
    return tmpl


def _root_of_3() -> bytes:
    """MTH(a, b, c) by the formula the example states, checked against ledger.merkle."""
    root = node_hash(node_hash(leaf_hash(b"a"), leaf_hash(b"b")), leaf_hash(b"c"))
    assert root == compute_root([b"a", b"b", b"c"])
    return root


def _validator_set_lines(genesis: lt.Genesis) -> list[tuple[str, Any]]:
    """The example genesis's validator-set fingerprint: its SM3 input (no 0x00 after the prefix)
    and the digest, as chain/lightclient.py computes it."""
    prefix = wire.HASH_PREFIXES["validator-set"]
    parts = sorted(v.pubkey + v.power.to_bytes(8, "big") for v in genesis.validators)
    data = prefix + b"".join(parts)
    fingerprint = compute_validator_set_fingerprint(genesis.validators)
    assert sm3_hash(data) == fingerprint
    return [("prefix", prefix), ("hash_input", data), ("validator_set", fingerprint)]


def _next_validators_lines(genesis: lt.Genesis) -> list[tuple[str, Any]]:
    """The genesis block's next_validators_hash: the commitment to epoch 0 and the genesis set
    (no 0x00 after the prefix), as ledger/epoch.py computes it."""
    prefix = wire.HASH_PREFIXES["next-validators"]
    fingerprint = compute_validator_set_fingerprint(genesis.validators)
    data = prefix + (0).to_bytes(8, "big") + fingerprint
    commitment = next_validators_commitment(0, genesis.validators)
    assert sm3_hash(data) == commitment
    return [
        ("prefix", prefix),
        ("epoch", 0),
        ("validator_set", fingerprint),
        ("hash_input", data),
        ("next_validators_hash", commitment),
    ]


def _write_lines(writes: dict[tuple[str, bytes], bytes | None]) -> list[tuple[str, Any]]:
    """A block's state writes in state_hash order: namespace, key, value (nil: deleted)."""
    out: list[tuple[str, Any]] = []
    for i, ((ns, key), value) in enumerate(sorted(writes.items())):
        out += [(f"write{i}_namespace", ns), (f"write{i}_key", key)]
        out.append((f"write{i}_value", "nil" if value is None else value))
    return out


def _genesis_json(genesis: lt.Genesis) -> str:
    """genesis.json exactly as `gmchain dev` / `cluster init` write it (node.config)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "genesis.json"
        save_genesis(path, genesis)
        text = path.read_text().rstrip("\n")
    return f"<!-- example: genesis_json -->\n```json\n{text}\n```"


def _tx_root_lines(block: lt.Block) -> list[tuple[str, Any]]:
    """Block 1's tx_root from its three tx ids: the leaves, the one inner node, the root."""
    ids = [t.tx_id for t in block.txs]
    assert len(ids) == 3
    leaves = [leaf_hash(t) for t in ids]
    inner = node_hash(leaves[0], leaves[1])
    root = node_hash(inner, leaves[2])
    assert root == block.header.tx_root
    return [
        *((f"block1_tx_id{i}", t) for i, t in enumerate(ids)),
        *((f"block1_leaf{i}", h) for i, h in enumerate(leaves)),
        ("block1_node_0_1", inner),
        ("block1_tx_root", root),
    ]


def _frontier_lines(blocks: list[lt.Block]) -> list[tuple[str, Any]]:
    """The accumulator after block 2 (5 leaves): its leaves, peaks, stored form and root."""
    f = _frontier(blocks)
    leaves = [leaf_hash(t.tx_id) for b in blocks for t in b.txs]
    assert f.size == len(leaves) == 5 and len(f.peaks) == 2
    assert f.peaks == (compute_root_of_leaves(leaves[:4]), leaves[4])
    root = node_hash(f.peaks[0], f.peaks[1])
    assert root == f.root() == blocks[2].header.acc_root
    return [
        ("size", f.size),
        *((f"leaf{i}", h) for i, h in enumerate(leaves)),
        ("peak_level2", f.peaks[0]),
        ("peak_level0", f.peaks[1]),
        ("frontier", f.encode()),
        ("acc_root", root),
    ]


def compute_root_of_leaves(leaves: list[bytes]) -> bytes:
    """MTH over leaf hashes already computed (a power-of-two count here)."""
    while len(leaves) > 1:
        leaves = [node_hash(leaves[i], leaves[i + 1]) for i in range(0, len(leaves), 2)]
    return leaves[0]


def _frontier(blocks: list[lt.Block]) -> Frontier:
    f = Frontier.empty()
    for b in blocks:
        f, _ = f.append([leaf_hash(t.tx_id) for t in b.txs])
    return f


def generate(new_signatures: bool = False, add_signatures: bool = False) -> str:
    sigs = _Signatures(new_signatures, add_signatures)
    text = render(build_examples(sigs))
    if new_signatures or add_signatures:
        sigs.save()
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="fail if docs/protocol.md is stale")
    ap.add_argument("--new-signatures", action="store_true", help="re-sign the examples")
    ap.add_argument(
        "--add-signatures",
        action="store_true",
        help="sign only the examples whose stored signature is missing or no longer verifies",
    )
    args = ap.parse_args()
    text = generate(args.new_signatures, args.add_signatures)
    if args.check:
        if not DOC.exists() or DOC.read_text() != text:
            print("docs/protocol.md is stale: run python scripts/gen_protocol_doc.py")
            return 1
        print("docs/protocol.md is up to date")
        return 0
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

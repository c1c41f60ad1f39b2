"""Generate docs/protocol.md, the byte-exact protocol specification, from the code.

Rules this script keeps:
1. Every table (type tags, fields, domains, limits) is read from `ledger.types` / `ledger.codec`,
   and every worked example is computed by `ledger.*` at generation time, so the document cannot
   drift from the code: `--check` regenerates and fails if docs/protocol.md differs
   (tests/test_protocol_doc.py runs it).
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
import sys
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gmchain.consensus import messages as cm  # noqa: E402
from gmchain.crypto_sm import DEFAULT_SM2_ID, PrivateKey, PublicKey, sm3_hash  # noqa: E402
from gmchain.ledger import types as lt  # noqa: E402
from gmchain.ledger.codec import DEFAULT_LIMITS, encode  # noqa: E402
from gmchain.ledger.merkle import (  # noqa: E402
    EMPTY_ROOT,
    Frontier,
    compute_root,
    leaf_hash,
    node_hash,
)
from gmchain.ledger.proofs import compute_consistency_proof, compute_tx_proof  # noqa: E402
from gmchain.node.network import WIRE_LIMITS, TxBatch  # noqa: E402

DOC = ROOT / "docs" / "protocol.md"
VECTORS = ROOT / "tests" / "vectors" / "protocol_examples.json"
TEMPLATE = ROOT / "docs" / "protocol.md.in"

SENDER_KEY = sm3_hash(b"gmchain protocol.md example key: sender")
VALIDATOR_KEY = sm3_hash(b"gmchain protocol.md example key: validator")
CHAIN_ID = "gmchain-example"


def _all_structs() -> list[type[Any]]:
    found = [
        getattr(lt, n)
        for n in lt.__all__
        if isinstance(getattr(lt, n), type) and hasattr(getattr(lt, n), "TAG")
    ]
    # The commit certificate travels in proof bundles (section 9); the block-retrieval and sync
    # messages and transaction gossip travel between peers (docs/p2p.md frames them), so an
    # independent implementation needs their encodings too.
    wire = [
        cm.CommitProof,
        cm.BlockRequest,
        cm.BlockResponse,
        cm.SyncRequest,
        cm.SyncResponse,
        cm.SyncInfo,
        TxBatch,
    ]
    return sorted([*found, *wire], key=lambda c: c.TAG)


STRUCTS: list[type[Any]] = _all_structs()
_WIRE_DEPTH = WIRE_LIMITS.max_depth
_NO_EXAMPLE = {"CommitProof": "A worked commit certificate is in the proof bundle of section 9."}


# --- building the examples ----------------------------------------------------------------------


class _Signatures:
    """Stored example signatures; new ones only with --new-signatures."""

    def __init__(self, fresh: bool) -> None:
        self.fresh = fresh
        self.sigs: dict[str, str] = {}
        if not fresh and VECTORS.exists():
            self.sigs = json.loads(VECTORS.read_text())["signatures"]

    def get(self, name: str, key: PrivateKey, msg: bytes) -> bytes:
        if self.fresh or name not in self.sigs:
            if not self.fresh:
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


def build_examples(sigs: _Signatures) -> dict[str, Any]:
    """A tiny chain: genesis, block 0, block 1 (3 txs), block 2 (2 txs), a vote; and proofs."""
    sender = PrivateKey.from_bytes(SENDER_KEY)
    validator = PrivateKey.from_bytes(VALIDATOR_KEY)
    spub, vpub = sender.public_key.to_bytes(), validator.public_key.to_bytes()
    genesis = lt.Genesis(
        chain_id=CHAIN_ID,
        timestamp_ms=1_767_225_600_000,
        validators=(lt.GenesisValidator(pubkey=vpub, power=1, org="regulator"),),
        accounts=((spub, "firm-a", "admin"),),
    )
    gval = genesis.validators[0]
    zero = lt.ZERO_DIGEST
    header0 = lt.BlockHeader(
        chain_id=CHAIN_ID,
        height=lt.Height(0),
        round=lt.Round(0),
        parent_id=genesis.compute_hash(),
        timestamp_ms=genesis.timestamp_ms,
        proposer=lt.NodeId(bytes(20)),
        tx_root=EMPTY_ROOT,
        tx_count=0,
        receipt_root=EMPTY_ROOT,
        acc_root=EMPTY_ROOT,
        acc_size=0,
        state_hash=zero,
        justify=lt.QuorumCert(block_id=zero, round=lt.Round(0), height=lt.Height(0)),
    )
    frontier = Frontier.empty()
    nodes: dict[tuple[int, int], bytes] = {}
    headers, blocks, receipts_of = [header0], [lt.Block(header=header0)], [list[lt.Receipt]()]
    nonce = 0
    for height, count in ((1, 3), (2, 2)):
        txs = []
        for _ in range(count):
            body = lt.TxBody(
                chain_id=CHAIN_ID,
                sender=spub,
                nonce=nonce,
                expiry=lt.Height(100),
                contract="evidence",
                method="record",
                args=(sm3_hash(b"raw data %d" % nonce), "flow-1", nonce),
            )
            sig = sigs.get(f"tx{nonce}", sender, body.compute_id())
            txs.append(lt.SignedTx(body=body, signature=sig))
            nonce += 1
        receipts = [
            lt.Receipt(
                tx_id=t.tx_id,
                status=lt.ReceiptStatus.OK,
                events=(lt.Event(contract="evidence", name="Recorded", fields=(("n", i),)),),
            )
            for i, t in enumerate(txs)
        ]
        frontier, new = frontier.append([leaf_hash(t.tx_id) for t in txs])
        nodes.update(new)
        parent = headers[-1]
        header = lt.BlockHeader(
            chain_id=CHAIN_ID,
            height=lt.Height(height),
            round=lt.Round(height),
            parent_id=parent.block_id,
            timestamp_ms=genesis.timestamp_ms + 1000 * height,
            proposer=gval.node_id,
            tx_root=compute_root([t.tx_id for t in txs]),
            tx_count=len(txs),
            receipt_root=compute_root([r.encode() for r in receipts]),
            acc_root=frontier.root(),
            acc_size=frontier.size,
            state_hash=zero,
            justify=lt.QuorumCert(
                block_id=parent.block_id, round=parent.round, height=parent.height
            ),
        )
        headers.append(header)
        blocks.append(lt.Block(header=header, txs=tuple(txs)))
        receipts_of.append(receipts)
    h2 = headers[2]
    vote_root = lt.QuorumCert.signing_root(CHAIN_ID, h2.block_id, h2.round, h2.height)
    vote = lt.Vote(
        block_id=h2.block_id,
        round=h2.round,
        height=h2.height,
        voter=gval.node_id,
        signature=sigs.get("vote", validator, vote_root),
    )

    tq = lt.TimeoutVote.signing_root(CHAIN_ID, lt.Round(3), h2.round)
    qc2 = lt.QuorumCert(
        block_id=h2.block_id,
        round=h2.round,
        height=h2.height,
        signatures=((gval.node_id, vote.signature),),
    )
    tsig = sigs.get("timeout", validator, tq)
    timeout = lt.TimeoutVote(round=lt.Round(3), high_qc=qc2, voter=gval.node_id, signature=tsig)
    tc = lt.TimeoutCert(round=lt.Round(3), high_qc=qc2, entries=((gval.node_id, h2.round, tsig),))
    b3 = lt.Block(
        header=dataclasses.replace(
            h2,
            height=lt.Height(3),
            round=lt.Round(4),
            parent_id=h2.block_id,
            tx_count=0,
            tx_root=EMPTY_ROOT,
            receipt_root=EMPTY_ROOT,
            justify=qc2,
        )
    )
    proposal = lt.Proposal(
        block=b3,
        tc=tc,
        signature=sigs.get("proposal", validator, lt.Proposal.signing_root(CHAIN_ID, b3.block_id)),
    )

    def get_node(level: int, index: int) -> bytes | None:
        return nodes.get((level, index))

    tx_ids_1 = [t.tx_id for t in blocks[1].txs]
    bundle = compute_tx_proof(headers[1], tx_ids_1, 1, get_node, headers[2].acc_size)
    consistency = compute_consistency_proof(get_node, headers[1].acc_size, headers[2].acc_size)
    return {
        "genesis": genesis,
        "headers": headers,
        "blocks": blocks,
        "receipts": receipts_of,
        "vote": vote,
        "timeout": timeout,
        "tc": tc,
        "proposal": proposal,
        "vote_root": vote_root,
        "sender_pub": sender.public_key,
        "bundle": bundle,
        "commit_proof": cm.CommitProof(header=h2, qc=qc2),  # QC(h2) commits h1
        "consistency": consistency,
    }


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
    hint = typing.get_type_hints(cls, {**vars(lt), **vars(sys.modules[cls.__module__])})[name]
    generic = typing.get_origin(hint) is not None
    text = str(hint) if generic else getattr(hint, "__name__", None) or str(hint)
    return text.replace("typing.", "").replace("gmchain.ledger.types.", "").replace("gmchain.", "")


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


def _struct_sections(ex: dict[str, Any]) -> str:
    h1 = ex["headers"][1]
    b1 = ex["blocks"][1]
    samples: dict[type, Any] = {
        lt.TxBody: b1.txs[0].body,
        lt.SignedTx: b1.txs[0],
        lt.Event: ex["receipts"][1][0].events[0],
        lt.Receipt: ex["receipts"][1][0],
        lt.BlockHeader: h1,
        lt.Block: ex["blocks"][2],
        lt.Vote: ex["vote"],
        lt.QuorumCert: ex["tc"].high_qc,
        lt.TimeoutVote: ex["timeout"],
        lt.TimeoutCert: ex["tc"],
        lt.Proposal: ex["proposal"],
        lt.GenesisValidator: ex["genesis"].validators[0],
        lt.Genesis: ex["genesis"],
        # peer messages (docs/consensus.md L8, L9; docs/p2p.md frames them)
        cm.BlockRequest: cm.BlockRequest(block_id=h1.block_id, count=8),
        cm.BlockResponse: cm.BlockResponse(
            block_id=ex["blocks"][2].block_id, blocks=(ex["blocks"][2],)
        ),
        cm.SyncRequest: cm.SyncRequest(from_height=lt.Height(1), count=64),
        cm.SyncResponse: cm.SyncResponse(items=((b1, ex["commit_proof"]),)),
        cm.SyncInfo: cm.SyncInfo(high_qc=ex["tc"].high_qc, tc=ex["tc"], commit_qc=None),
        TxBatch: TxBatch(txs=(b1.txs[0].encode(),)),
    }
    out = []
    for cls in STRUCTS:
        doc = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
        part = [f"### {cls.__name__} (tag {cls.TAG})", "", doc, "", _field_table(cls)]
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
    return "\n\n".join(out)


_LIMIT_NOTES = {"max_depth": " (a bare value; a struct uses its own `NESTING`, section 2)"}


def render(ex: dict[str, Any]) -> str:
    genesis, headers, blocks = ex["genesis"], ex["headers"], ex["blocks"]
    tx0 = blocks[1].txs[0]
    body_bytes = tx0.body.encode()
    spub: PublicKey = ex["sender_pub"]
    lim = DEFAULT_LIMITS
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
        "TAGS": "\n".join(
            ["| tag | struct |", "|---|---|"]
            + [f"| {c.TAG} | [{c.__name__}](#{c.__name__.lower()}-tag-{c.TAG}) |" for c in STRUCTS]
        ),
        "STRUCTS": _struct_sections(ex),
        "DOMAINS": "\n".join(
            ["| kind | domain string (ASCII) | hex |", "|---|---|---|"]
            + [f"| {k} | `{v.decode()}` | `{v.hex()}` |" for k, v in lt.DOMAIN.items()]
        ),
        "SM2_ID": DEFAULT_SM2_ID.decode(),
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
                ("public_key", genesis.validators[0].pubkey),
                ("node_id", genesis.validators[0].node_id),
                ("vote", ex["vote"].encode()),
                ("signing_input", encode([CHAIN_ID, *ex["vote"].to_fields()[1:4]])),
                ("signing_root", ex["vote_root"]),
                ("chain_id", CHAIN_ID),
            ],
        ),
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
                        ],
                    )
                    for h, b in zip(headers, blocks, strict=True)
                ),
            ]
        ),
        "EX_MERKLE": _example(
            "merkle",
            [
                ("empty_root", EMPTY_ROOT),
                ("entry", b"abc"),
                ("leaf_hash", leaf_hash(b"abc")),
                ("node_hash_of_leaf_and_leaf", node_hash(leaf_hash(b"abc"), leaf_hash(b"abc"))),
                ("root_of_3", compute_root([b"a", b"b", b"c"])),
            ],
        ),
        "EX_FRONTIER": _example(
            "frontier",
            [("size", headers[2].acc_size), ("frontier", _frontier(blocks).encode())],
        ),
        "EX_BUNDLE": _json_example("tx_proof", ex["bundle"].to_json()),
        "EX_CONSISTENCY": _json_example("consistency_proof", ex["consistency"].to_json()),
    }
    for key, val in values.items():
        marker = "{{" + key + "}}"
        assert marker in tmpl, f"template lacks {marker}"
        tmpl = tmpl.replace(marker, str(val))
    assert "{{" not in tmpl, "unfilled marker in the template"
    return tmpl


def _frontier(blocks: list[lt.Block]) -> Frontier:
    f = Frontier.empty()
    for b in blocks:
        f, _ = f.append([leaf_hash(t.tx_id) for t in b.txs])
    return f


def generate(new_signatures: bool = False) -> str:
    sigs = _Signatures(new_signatures)
    text = render(build_examples(sigs))
    if new_signatures:
        sigs.save()
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="fail if docs/protocol.md is stale")
    ap.add_argument("--new-signatures", action="store_true", help="re-sign the examples")
    args = ap.parse_args()
    text = generate(args.new_signatures)
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

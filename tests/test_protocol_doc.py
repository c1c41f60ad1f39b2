"""docs/protocol.md is generated from the code: regenerate and compare; check every example."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

from gmchain.crypto_sm import PublicKey
from gmchain.ledger import types as lt
from gmchain.ledger.proofs import ConsistencyProof, TxProofBundle, verify_tx_proof

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "protocol.md"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_protocol_doc", ROOT / "scripts/gen_protocol_doc.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _examples() -> dict[str, str]:
    text = DOC.read_text()
    return dict(re.findall(r"<!-- example: (\w+) -->\n```\w+\n(.*?)\n```", text, re.S))


def test_doc_is_up_to_date() -> None:
    assert DOC.read_text() == _generator().generate(), (
        "docs/protocol.md is stale: run python scripts/gen_protocol_doc.py"
    )


def test_every_struct_example_decodes_and_reencodes() -> None:
    ex = _examples()
    gen = _generator()
    for cls in gen.STRUCTS:
        if cls.__name__ in gen._NO_EXAMPLE:  # its example is the bundle's (section 9)
            continue
        raw = bytes.fromhex(ex[f"struct_{cls.__name__}"].split(" = ")[1])
        assert cls.decode(raw).encode() == raw


def test_example_signatures_verify() -> None:
    kv = dict(line.split(" = ") for line in _examples()["tx"].splitlines())
    tx = lt.SignedTx.decode(bytes.fromhex(kv["signed_tx"]))
    assert tx.tx_id.hex() == kv["tx_id"]
    assert PublicKey.from_bytes(tx.body.sender).verify(tx.tx_id, tx.signature)
    kv = dict(line.split(" = ") for line in _examples()["vote"].splitlines())
    vote = lt.Vote.decode(bytes.fromhex(kv["vote"]))
    root = lt.QuorumCert.signing_root(
        kv["chain_id"], vote.epoch, vote.block_id, vote.round, vote.height
    )
    assert PublicKey.from_bytes(bytes.fromhex(kv["public_key"])).verify(root, vote.signature)
    tampered = bytes([vote.signature[0] ^ 1]) + vote.signature[1:]
    assert not PublicKey.from_bytes(bytes.fromhex(kv["public_key"])).verify(root, tampered)


def test_example_proofs_verify() -> None:
    ex = _examples()
    assert verify_tx_proof(TxProofBundle.from_json(json.loads(ex["tx_proof"])))
    assert ConsistencyProof.from_json(json.loads(ex["consistency_proof"])).verify()

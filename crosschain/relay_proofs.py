"""From the RPC's JSON proofs to the cross-chain byte formats (issue 13; docs/crosschain.md).

The relayer (crosschain/relayer.py) reads proofs from a source chain's JSON-RPC and hands the
destination chain `crosschain.packets` objects. This module is that conversion, and nothing else:

- `gm_getTransactionProof` (bundle version 2, chain/lightclient.py's docstring, docs/rpc.md) plus
  the transaction's raw bytes (`gm_getTransactionByHash` member `raw`: the bundle carries only
  the tx id, which is the Merkle leaf) -> `ProvenTx`: a `TxProof` (height, index, tx, tx path,
  receipt, receipt path) and the bundle's `commit` certificate;
- `ProvenTx` -> `Packet` (the seq comes from the source's outbox; the receipt's `PacketQueued`
  event names it) or `Ack`;
- `gm_getEpochProof` entries -> `EpochChange`s.

Rules this module keeps:
1. The relayer is untrusted and so is the node it reads: a conversion checks what it can check
   cheaply from the bytes (hashes only, no signature): the tx decodes and its id is the bundle's;
   the receipt names that tx; both inclusion paths lead to the roots of the bundle's header; the
   bundle's `commit` certificate starts at that header and is of one chain. A bundle that fails
   raises `RelayProofError` naming why, so a lying node costs the relayer a log line, not a
   transaction the destination would refuse. The quorum signatures are the destination's check
   (crosschain/xclient.py with chain/lightclient.py), not repeated here.
2. Nothing here touches the network or a clock: JSON in, frozen objects out.
3. `packet_seqs(receipt, dest)` reads the `PacketQueued` events of the evidence contract
   (contracts/xc_layout.py rule 3) — the seqs a transaction queued for `dest`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

from gmchain.chain.lightclient import Certificate
from gmchain.consensus.messages import CommitProof
from gmchain.contracts.xc_layout import PACKET_QUEUED
from gmchain.crosschain.packets import Ack, EpochChange, Packet, TxProof
from gmchain.ledger.codec import DecodeError
from gmchain.ledger.genesis import GenesisValidator
from gmchain.ledger.jsonvalues import parse_hex
from gmchain.ledger.merkle import leaf_hash, verify_inclusion
from gmchain.ledger.types import BlockHeader, Receipt, SignedTx

__all__ = [
    "ProvenTx",
    "RelayProofError",
    "certificate_from_json",
    "epoch_changes_from_json",
    "packet_seqs",
    "proven_tx_from_bundle",
]

EVIDENCE = "evidence"


class RelayProofError(ValueError):
    """Rule 1: the source's answer does not prove what the relayer needs; the message says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvenTx:
    """One committed transaction of a source chain, with what proves it (rule 1 checked)."""

    chain_id: str  # the source chain (its headers name it)
    header: BlockHeader  # the tx's block
    proof: TxProof
    commit: Certificate  # starts at `header`; certifies it (bundle member `commit`)
    receipt: Receipt
    tx: SignedTx

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def epoch(self) -> int:
        return self.header.epoch

    @property
    def tx_id(self) -> bytes:
        return self.tx.tx_id

    def packet(self, dest_chain_id: str, seq: int) -> Packet:
        return Packet(
            source_chain_id=self.chain_id, dest_chain_id=dest_chain_id, seq=seq, proof=self.proof
        )

    def ack(self, dest_chain_id: str) -> Ack:
        return Ack(source_chain_id=self.chain_id, dest_chain_id=dest_chain_id, proof=self.proof)


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise RelayProofError(what)


def _hex(value: object, name: str) -> bytes:
    try:
        return parse_hex(value, name=name)
    except (ValueError, TypeError) as exc:
        raise RelayProofError(f"{name}: {exc}") from None


def certificate_from_json(obj: object, what: str = "commit") -> Certificate:
    """`{"headers": [hex, ...], "proof": hex}` (a bundle's `commit`, an epoch proof entry, a
    gm_getCommitProof answer) as a `Certificate`; shape only (rule 1)."""
    _need(isinstance(obj, Mapping), f"{what}: expected {{headers, proof}}")
    assert isinstance(obj, Mapping)
    raw = obj.get("headers")
    _need(isinstance(raw, list) and len(raw) >= 1, f"{what}: expected a non-empty header list")
    assert isinstance(raw, list)
    try:
        headers = tuple(BlockHeader.decode(_hex(h, f"{what} header")) for h in raw)
        proof = CommitProof.decode(_hex(obj.get("proof"), f"{what} proof"))
    except (DecodeError, ValueError, TypeError) as exc:
        raise RelayProofError(f"{what}: {exc}") from None
    for parent, child in itertools.pairwise(headers):
        _need(
            child.parent_id == parent.block_id and child.height == parent.height + 1,
            f"{what}: the headers break at height {child.height}",
        )
    _need(proof.committed_id == headers[-1].block_id, f"{what}: the proof certifies another block")
    return Certificate(headers=headers, proof=proof)


def proven_tx_from_bundle(bundle: object, raw_tx_hex: object) -> ProvenTx:
    """A version-2 bundle and the tx's raw bytes (hex) as a `ProvenTx`, rule 1 checked."""
    _need(isinstance(bundle, Mapping), "bundle: expected a JSON object")
    assert isinstance(bundle, Mapping)
    _need(bundle.get("version") == 2, f"bundle: version {bundle.get('version')!r}, expected 2")
    try:
        header = BlockHeader.decode(_hex(bundle.get("header"), "header"))
        tx = SignedTx.decode_tx(_hex(raw_tx_hex, "raw tx"))
        receipt_bytes = _hex(bundle.get("receipt"), "receipt")
        receipt = Receipt.decode(receipt_bytes)
    except (DecodeError, ValueError, TypeError) as exc:
        raise RelayProofError(f"bundle: {exc}") from None
    tx_id = _hex(bundle.get("tx_id"), "tx_id")
    index, height = bundle.get("index_in_block"), bundle.get("height")
    _need(isinstance(index, int) and isinstance(height, int), "bundle: index_in_block, height")
    assert isinstance(index, int) and isinstance(height, int)
    _need(tx.tx_id == tx_id, "the raw transaction is not the bundle's (tx ids differ)")
    _need(receipt.tx_id == tx_id, "the receipt belongs to another transaction")
    _need(height == header.height, "the bundle's height is not its header's")
    tx_path = _path(bundle.get("block_inclusion_proof"), "block_inclusion_proof")
    receipt_path = _path(bundle.get("receipt_inclusion_proof"), "receipt_inclusion_proof")
    size = header.tx_count
    _need(
        verify_inclusion(leaf_hash(tx_id), index, size, tx_path, header.tx_root),
        "the tx id is not under the header's tx_root",
    )
    _need(
        verify_inclusion(leaf_hash(receipt_bytes), index, size, receipt_path, header.receipt_root),
        "the receipt is not under the header's receipt_root",
    )
    commit = certificate_from_json(bundle.get("commit"), "commit")
    _need(commit.headers[0].block_id == header.block_id, "commit: does not start at the tx block")
    _need(
        all(h.chain_id == header.chain_id for h in commit.headers),
        "commit: a header of another chain",
    )
    proof = TxProof(
        height=height,
        index=index,
        tx=tx.encode(),
        tx_path=tuple(tx_path),
        receipt=receipt_bytes,
        receipt_path=tuple(receipt_path),
    )
    return ProvenTx(
        chain_id=header.chain_id,
        header=header,
        proof=proof,
        commit=commit,
        receipt=receipt,
        tx=tx,
    )


def _path(value: object, name: str) -> list[bytes]:
    _need(isinstance(value, list), f"{name}: expected a list of hashes")
    assert isinstance(value, list)
    return [_hex(h, name) for h in value]


def packet_seqs(receipt: Receipt, dest_chain_id: str) -> list[int]:
    """Rule 3: the seqs this receipt's `PacketQueued` events queued for `dest_chain_id`."""
    out = []
    for event in receipt.events:
        if event.contract != EVIDENCE or event.name != PACKET_QUEUED:
            continue
        fields = dict(event.fields)
        seq = fields.get("seq")
        if fields.get("dest") == dest_chain_id and isinstance(seq, int):
            out.append(seq)
    return out


def epoch_changes_from_json(doc: object) -> list[EpochChange]:
    """A gm_getEpochProof answer `{from_epoch, to_epoch, entries: [...]}` as `EpochChange`s
    (shape only: the destination's light client checks each against its trusted set)."""
    _need(isinstance(doc, Mapping), "epoch proof: expected a JSON object")
    assert isinstance(doc, Mapping)
    entries = doc.get("entries")
    _need(isinstance(entries, list), "epoch proof: expected entries")
    assert isinstance(entries, list)
    out = []
    for entry in entries:
        _need(isinstance(entry, Mapping), "epoch proof: an entry is not an object")
        epoch = entry.get("epoch")
        _need(isinstance(epoch, int) and epoch >= 0, "epoch proof: entry epoch")
        assert isinstance(epoch, int)
        out.append(
            EpochChange(
                epoch=epoch,
                certificate=certificate_from_json(entry, f"epoch proof entry {epoch}"),
                next_validators=_validators(entry.get("next_validators"), epoch),
            )
        )
    return out


def _validators(value: object, epoch: int) -> tuple[GenesisValidator, ...]:
    _need(isinstance(value, list) and len(value) >= 1, f"epoch {epoch}: next_validators")
    assert isinstance(value, list)
    out = []
    for v in value:
        _need(isinstance(v, Mapping), f"epoch {epoch}: a validator is not an object")
        try:
            out.append(
                GenesisValidator(
                    pubkey=_hex(v.get("pubkey"), "pubkey"),
                    power=v.get("power"),
                    org=str(v.get("org") or "(unnamed)"),
                )
            )
        except (TypeError, ValueError) as exc:
            raise RelayProofError(f"epoch {epoch}: next_validators: {exc}") from None
    return tuple(out)

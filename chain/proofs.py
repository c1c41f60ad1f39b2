"""Proof assembly: transaction, commit and consistency proofs built from a committed store.

Rules this module keeps (docs/protocol.md §9):
1. A proof's work is O(log n) in the chain's length plus the tx's own block: the tx and its
   receipt are proven in their block, the block is certified by its own commit certificate, and
   a later anchor header is reached by an accumulator inclusion path and the anchor's own
   certificate (RFC 9162 §2.1.3) — never by the header chain between the two blocks.
2. A certificate's header chain (a block up to the tip its stored CommitProof certifies) is at
   most `max_span` headers, and at most that many heights are searched for it; beyond it the
   request is refused with `ProofOutOfRange` naming the limit, before any header is read.
3. Only committed data at or below the `head` the caller names is read; committed data never
   changes, so an assembler may run in any thread, concurrently with commits, without a lock.
4. Every header served is re-checked by the injected `check_header` (a damaged store is an
   error, never an answer); the assembler raises `ProofNotFound` / `ProofOutOfRange` for what
   the caller asked wrong, and lets the check's error through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gmchain.chain.lightclient import Certificate, build_full_proof
from gmchain.consensus.messages import CommitProof
from gmchain.ledger.merkle import acc_consistency_proof
from gmchain.ledger.store import Store
from gmchain.ledger.types import BlockHeader, GenesisValidator

__all__ = ["ProofAssembler", "ProofNotFound", "ProofOutOfRange", "ProofUnavailable"]


class ProofUnavailable(Exception):
    """The caller asked for a proof this store cannot give; the message says why."""


class ProofNotFound(ProofUnavailable):
    """No such committed transaction or block (yet), or no certificate covers it yet."""


class ProofOutOfRange(ProofUnavailable):
    """Heights outside the committed range, or beyond the span limit (rule 2)."""


class ProofAssembler:
    """The builders behind gm_getTransactionProof / gm_getCommitProof / gm_getConsistencyProof."""

    def __init__(
        self,
        *,
        store: Store,
        validators: tuple[GenesisValidator, ...],
        max_span: int,
        check_header: Callable[[Store, int, BlockHeader], None],
    ) -> None:
        self._store = store
        self._validators = validators
        self._max_span = max_span
        self._check_header = check_header

    def tx_proof(self, tx_id: bytes, at_height: int | None, head: int) -> dict[str, Any]:
        """The version-2 bundle (chain/lightclient.py) of `tx_id`, anchored at `at_height`
        (default: the tip its own certificate reaches, capped at `head`)."""
        loc = self._store.get_tx_location(tx_id)
        if loc is None or loc[0] > head:
            raise ProofNotFound("transaction is not committed on this node")
        height, index = loc
        commit = self._certificate(height, head)
        tip = commit.headers[-1].height
        at = min(tip, head) if at_height is None else at_height
        if not height <= at <= head:
            raise ProofOutOfRange(f"atHeight must be between {height} and {head}, got {at}")
        header = commit.headers[0]
        tx_ids = self._store.get_tx_ids(height)
        if tx_ids is None:
            raise ProofNotFound(f"no block at height {height}")
        receipts = [self._store.get_receipt(t) or b"" for t in tx_ids]
        anchor_commit = None if at <= tip else self._certificate(at, head)
        anchor = commit.headers[at - height] if anchor_commit is None else anchor_commit.headers[0]
        return build_full_proof(
            header=header,
            tx_ids=tx_ids,
            receipts=receipts,
            index=index,
            get_node=self._store.get_acc_node,
            anchor=anchor,
            commit=commit,
            anchor_commit=anchor_commit,
        )

    def commit_proof(self, height: int, head: int) -> dict[str, Any]:
        """The certificate that the block at `height` is committed, with the validator set."""
        if not 0 <= height <= head:
            raise ProofOutOfRange(f"no committed block at height {height}")
        cert = self._certificate(height, head)
        return {
            "height": height,
            "headers": cert.to_json()["headers"],  # height .. the certified tip
            "proof": "0x" + cert.proof.encode().hex(),
            "validators": [
                {"pubkey": "0x" + v.pubkey.hex(), "power": v.power, "org": v.org}
                for v in self._validators
            ],
        }

    def consistency_proof(self, old_height: int, new_height: int, head: int) -> dict[str, Any]:
        """RFC 9162 §2.1.4 consistency between the accumulators of two committed headers."""
        if not 0 <= old_height <= new_height <= head:
            raise ProofOutOfRange(
                f"need 0 <= oldHeight <= newHeight <= {head}, got {old_height}, {new_height}"
            )
        old, new = self.header(old_height), self.header(new_height)
        proof = acc_consistency_proof(self._store.get_acc_node, old.acc_size, new.acc_size)
        return {
            "old_height": old_height,
            "new_height": new_height,
            "old_size": old.acc_size,
            "new_size": new.acc_size,
            "old_root": "0x" + old.acc_root.hex(),
            "new_root": "0x" + new.acc_root.hex(),
            "proof": ["0x" + h.hex() for h in proof],
            "old_header": "0x" + old.encode().hex(),
            "new_header": "0x" + new.encode().hex(),
        }

    def header(self, height: int) -> BlockHeader:
        """The committed header at `height`, re-checked (rule 4)."""
        raw = self._store.get_header_by_height(height)
        if raw is None:
            raise ProofNotFound(f"no block at height {height}")
        header = BlockHeader.decode(raw)
        self._check_header(self._store, height, header)
        return header

    def _certificate(self, height: int, head: int) -> Certificate:
        """Rule 2: the first stored CommitProof at or above `height` within the span, and the
        headers from `height` to the tip it certifies."""
        span = self._max_span
        proof = None
        for h in range(height, min(head, height + span - 1) + 1):
            raw = self._store.get_commit_proof(h)
            if raw:
                proof = CommitProof.decode(raw)
                break
        if proof is None:
            if height + span - 1 < head:
                raise self._span_error(height)
            raise ProofNotFound(f"no commit proof covers height {height} yet")
        tip = proof.header.height - 1
        if tip < height:  # a stored proof certifies the block it is stored with, or a later one
            raise ProofNotFound(f"no commit proof covers height {height}")
        if tip - height + 1 > span:
            raise self._span_error(height)
        return Certificate(
            headers=tuple(self.header(h) for h in range(height, tip + 1)), proof=proof
        )

    def _span_error(self, height: int) -> ProofOutOfRange:
        return ProofOutOfRange(
            f"the commit certificate of height {height} lies more than proof_max_span = "
            f"{self._max_span} blocks above it; prove against another height"
        )

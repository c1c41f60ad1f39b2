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
5. Epochs (issue 12, EPOCHS.md E4, E8): a certificate never crosses an epoch end. For a block of
   an epoch that ended at E, the search for a stored proof stops at E; E committed through a
   later block B is certified by its epoch record (headers E..B, B's proof: chain/epochs.py
   rule 2). The suffix headers E+1..B are certified but were never committed, so a bundle's
   default anchor is at most E. A bundle whose transaction or anchor is in an epoch above 0
   carries `epoch_proof`, the epoch-change proof from epoch 0 to the highest of the two.
6. An epoch-change proof from epoch f to epoch t (0 <= f <= t <= the latest epoch) lists, for
   each epoch e in [f, t), the epoch-ending certificate of e and the validators of e + 1.
7. Kept, bounded, in memory (issue 15: decoding with full checks was a third of a proof): a
   header after it passed `check_header` (as node/queries.py keeps checked blocks), a height's
   certificate once assembled, and a finished transaction bundle, keyed by (tx id, atHeight),
   each with its reach (the highest height whose stored data it read). One is kept, and served,
   only to a caller whose `head` is at or above its reach: then it is what the caller would build
   afresh, because it is a function of committed data at or below the reach alone — a block's
   commit proof is written in its own batch, epoch records only append, so the first stored proof
   at or above a height is the same under any head that reaches it, and a default anchor (the
   tip of the tx's own certificate, capped by its epoch's end, rule 5) lies at or below the
   reach. Only answers are kept, never refusals (ProofNotFound turns into an answer as the chain
   grows). Bundles are shared between callers: read them, never change them.
8. Also kept (issue 15: each store read in a worker hands the GIL to the loop and back, which
   cost more than the read): a block's transaction ids and receipts by height, within a byte
   budget, and stored accumulator nodes by (level, index). Neither depends on the head: a
   committed block never changes, and a stored accumulator node is the hash of a complete
   subtree, a function of its leaves alone (a subtree not yet complete is not stored, reads as
   None and is never kept). What they feed is still checked on every use: the ids against the
   header's tx_root and the receipts against its receipt_root (chain/lightclient.py), the
   accumulator path by the bundle's verifier against the anchor's acc_root, as before.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from gmchain.chain.epochs import EpochRecord
from gmchain.chain.lightclient import Certificate, build_full_proof, validators_to_json
from gmchain.consensus.messages import CommitProof
from gmchain.ledger.merkle import acc_consistency_proof
from gmchain.ledger.store import Store
from gmchain.ledger.types import BlockHeader, GenesisValidator

__all__ = ["ProofAssembler", "ProofNotFound", "ProofOutOfRange", "ProofUnavailable"]

# Rule 7's bounds. Measured (tracemalloc, one-validator chain without epoch changes): a height's
# checked header and certificate ~3.2 KB together, a finished bundle ~6.6 KB: ~27 MB in all
# (since session 16 a header also keeps its encoding: ~0.4 KB with one validator's QC, ~90
# bytes more per QC signature; ~31 MB with one validator, ~33 MB with four).
KEPT_HEADERS = 4096
KEPT_CERTIFICATES = 4096  # a certificate holds 1..max_span headers (usually 1)
KEPT_BUNDLES = 2048
# Rule 8's bounds: ~230 bytes an accumulator node in memory (~7.5 MB); blocks' ids and receipts
# weighed by their bytes, ~80 per object and ~400 per entry (tracemalloc: 11-12 MB in memory at
# the full budget for blocks of 1, 4 or 100 transactions).
KEPT_NODES = 32768
KEPT_BLOCK_BYTES = 16 * 2**20
_OBJECT_BYTES = 80
_ENTRY_BYTES = 400

_V = TypeVar("_V")


class ProofUnavailable(Exception):
    """The caller asked for a proof this store cannot give; the message says why."""


class ProofNotFound(ProofUnavailable):
    """No such committed transaction or block (yet), or no certificate covers it yet."""


class ProofOutOfRange(ProofUnavailable):
    """Heights outside the committed range, or beyond the span limit (rule 2)."""


class _Kept(Generic[_V]):
    """Rules 7 and 8: a least-recently-used map shared by worker threads, of at most `limit`
    entries, or of at most `limit` in weight when `weigh` is given (an entry heavier than
    `limit` is not kept)."""

    __slots__ = ("_entries", "_limit", "_lock", "_weigh", "_weight", "hits", "misses")

    def __init__(self, limit: int, weigh: Callable[[_V], int] | None = None) -> None:
        self._entries: OrderedDict[Hashable, tuple[_V, int]] = OrderedDict()
        self._limit = limit
        self._weigh = weigh
        self._weight = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> _V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key: Hashable, value: _V) -> _V:
        weight = 1 if self._weigh is None else self._weigh(value)
        if weight > self._limit:
            return value
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._weight -= old[1]
            self._entries[key] = (value, weight)
            self._weight += weight
            while self._weight > self._limit:
                _, (_, w) = self._entries.popitem(last=False)
                self._weight -= w
        return value

    @property
    def weight(self) -> int:
        return self._weight

    def __len__(self) -> int:
        return len(self._entries)


def _block_weight(block: tuple[tuple[bytes, ...], tuple[bytes, ...]]) -> int:
    ids, receipts = block
    objects = _OBJECT_BYTES * (len(ids) + 1) * 2
    return sum(map(len, ids)) + sum(map(len, receipts)) + objects + _ENTRY_BYTES


class ProofAssembler:
    """The builders behind gm_getTransactionProof / gm_getCommitProof / gm_getConsistencyProof."""

    def __init__(
        self,
        *,
        store: Store,
        validators: tuple[GenesisValidator, ...],
        max_span: int,
        check_header: Callable[[Store, int, BlockHeader], None],
        keep: bool = True,
    ) -> None:
        """`keep=False` keeps nothing (rule 7; tests compare the two)."""
        self._store = store
        self._validators = validators
        self._max_span = max_span
        self._check_header = check_header
        # Rule 5: the stored epoch records (index n - 1: epoch n), and by the height of the block
        # E that ended the epoch before each. Append-only, like the records.
        self._records: list[EpochRecord] = []
        self._ends: dict[int, EpochRecord] = {}
        self._records_lock = threading.Lock()  # the worker threads load them (rule 3)
        # Rule 7: checked headers by height, (certificate, reach) by height, (bundle, reach) by
        # (tx id, atHeight).
        on = int(keep)
        self.kept_headers: _Kept[BlockHeader] = _Kept(on * KEPT_HEADERS)
        self.kept_certificates: _Kept[tuple[Certificate, int]] = _Kept(on * KEPT_CERTIFICATES)
        self.kept_bundles: _Kept[tuple[dict[str, Any], int]] = _Kept(on * KEPT_BUNDLES)
        # Rule 8: (tx ids, receipts) by height; accumulator nodes by index << 6 | level.
        self.kept_blocks: _Kept[tuple[tuple[bytes, ...], tuple[bytes, ...]]] = _Kept(
            on * KEPT_BLOCK_BYTES, _block_weight
        )
        self.kept_nodes: _Kept[bytes] = _Kept(on * KEPT_NODES)

    def tx_proof(self, tx_id: bytes, at_height: int | None, head: int) -> dict[str, Any]:
        """The version-2 bundle (chain/lightclient.py) of `tx_id`, anchored at `at_height`
        (default: the tip its own certificate reaches, capped at `head`). Kept (rule 7)."""
        kept = self.kept_tx_proof(tx_id, at_height, head)
        if kept is not None:
            return kept
        bundle, reach = self._build_tx_proof(tx_id, at_height, head)
        if reach <= head:
            self.kept_bundles.put((tx_id, at_height), (bundle, reach))
        return bundle

    def kept_tx_proof(
        self, tx_id: bytes, at_height: int | None, head: int
    ) -> dict[str, Any] | None:
        """The kept bundle `tx_proof` would answer with, or None (rule 7): a lookup, no read."""
        kept = self.kept_bundles.get((tx_id, at_height))
        return kept[0] if kept is not None and kept[1] <= head else None

    def _build_tx_proof(
        self, tx_id: bytes, at_height: int | None, head: int
    ) -> tuple[dict[str, Any], int]:
        """The bundle and its reach (rule 7)."""
        loc = self._store.get_tx_location(tx_id)
        if loc is None or loc[0] > head:
            raise ProofNotFound("transaction is not committed on this node")
        height, index = loc
        commit, reach = self._certificate_and_reach(height, head)
        tip = min(commit.headers[-1].height, self._epoch_end(commit.headers[0].epoch))
        at = min(tip, head) if at_height is None else at_height
        if not height <= at <= head:
            raise ProofOutOfRange(f"atHeight must be between {height} and {head}, got {at}")
        header = commit.headers[0]
        tx_ids, receipts = self._block_ids_and_receipts(height)
        anchor_commit = None
        if at > tip:
            anchor_commit, anchor_reach = self._certificate_and_reach(at, head)
            reach = max(reach, anchor_reach)
        anchor = commit.headers[at - height] if anchor_commit is None else anchor_commit.headers[0]
        top = max(header.epoch, anchor.epoch)
        bundle = build_full_proof(
            epoch_proof=self.epoch_proof(0, top) if top > 0 else None,
            header=header,
            tx_ids=tx_ids,
            receipts=receipts,
            index=index,
            get_node=self._acc_node,
            anchor=anchor,
            commit=commit,
            anchor_commit=anchor_commit,
        )
        return bundle, max(reach, at)

    def commit_proof(self, height: int, head: int) -> dict[str, Any]:
        """The certificate that the block at `height` is committed, with the validator set."""
        if not 0 <= height <= head:
            raise ProofOutOfRange(f"no committed block at height {height}")
        cert = self._certificate(height, head)
        return {
            "height": height,
            "headers": cert.to_json()["headers"],  # height .. the certified tip
            "proof": "0x" + cert.proof.encode().hex(),
            "validators": validators_to_json(self._epoch_validators(cert.headers[0].epoch)),
        }

    def epoch_proof(self, from_epoch: int, to_epoch: int) -> dict[str, Any]:
        """Rule 6 (docs/protocol.md, "Epoch-change proofs")."""
        self._load_records()
        latest = len(self._records)
        if not 0 <= from_epoch <= to_epoch <= latest:
            raise ProofOutOfRange(
                f"need 0 <= fromEpoch <= toEpoch <= {latest} (the latest epoch), "
                f"got {from_epoch}, {to_epoch}"
            )
        entries = []
        for record in self._records[from_epoch:to_epoch]:
            ending = self.header(record.ending.height)  # re-checked (rule 4)
            if ending.block_id != record.ending.block_id:
                raise ProofNotFound(f"the epoch record {record.epoch} names another block")
            entries.append(
                {
                    "epoch": record.epoch - 1,
                    **Certificate(headers=record.headers, proof=record.proof).to_json(),
                    "next_validators": validators_to_json(record.config.validators),
                }
            )
        return {"from_epoch": from_epoch, "to_epoch": to_epoch, "entries": entries}

    def consistency_proof(self, old_height: int, new_height: int, head: int) -> dict[str, Any]:
        """RFC 9162 §2.1.4 consistency between the accumulators of two committed headers."""
        if not 0 <= old_height <= new_height <= head:
            raise ProofOutOfRange(
                f"need 0 <= oldHeight <= newHeight <= {head}, got {old_height}, {new_height}"
            )
        old, new = self.header(old_height), self.header(new_height)
        proof = acc_consistency_proof(self._acc_node, old.acc_size, new.acc_size)
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

    def _block_ids_and_receipts(self, height: int) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        """A committed block's tx ids and their receipts, in block order (rule 8)."""
        kept = self.kept_blocks.get(height)
        if kept is not None:
            return kept
        ids = self._store.get_tx_ids(height)
        if ids is None:
            raise ProofNotFound(f"no block at height {height}")
        receipts = tuple(self._store.get_receipt(t) or b"" for t in ids)
        block = (tuple(ids), receipts)
        if all(receipts):  # a missing receipt (a damaged store) fails the root check, unkept
            self.kept_blocks.put(height, block)
        return block

    def _acc_node(self, level: int, index: int) -> bytes | None:
        """A stored accumulator node (ledger/store.py `get_acc_node`), kept (rule 8)."""
        if not 0 <= level < 64 or index < 0:  # no such node is stored (nor kept under the key)
            return self._store.get_acc_node(level, index)
        key = index << 6 | level
        node = self.kept_nodes.get(key)
        if node is None:
            node = self._store.get_acc_node(level, index)
            if node is not None:  # not stored: the subtree is not complete yet
                self.kept_nodes.put(key, node)
        return node

    def header(self, height: int) -> BlockHeader:
        """The committed header at `height`, re-checked (rule 4) when it is read (rule 7)."""
        header = self.kept_headers.get(height)
        if header is not None:
            return header
        raw = self._store.get_header_by_height(height)
        if raw is None:
            raise ProofNotFound(f"no block at height {height}")
        header = BlockHeader.decode(raw)
        self._check_header(self._store, height, header)
        return self.kept_headers.put(height, header)

    def _certificate(self, height: int, head: int) -> Certificate:
        return self._certificate_and_reach(height, head)[0]

    def _certificate_and_reach(self, height: int, head: int) -> tuple[Certificate, int]:
        """Rule 2: the first stored CommitProof at or above `height` within the span, and the
        headers from `height` to the tip it certifies; with its reach, kept (rule 7)."""
        kept = self.kept_certificates.get(height)
        if kept is not None and kept[1] <= head:
            return kept
        found = self._find_certificate(height, head)
        if found[1] <= head:
            self.kept_certificates.put(height, found)
        return found

    def _find_certificate(self, height: int, head: int) -> tuple[Certificate, int]:
        span = self._max_span
        proof = None
        self._load_records()
        for h in range(height, min(head, height + span - 1) + 1):
            raw = self._store.get_commit_proof(h)
            if raw:
                proof = CommitProof.decode(raw)
                break
            record = self._ends.get(h)
            if record is not None:  # rule 5: E, committed through a later block
                if h - height + len(record.headers) > span:
                    raise self._span_error(height)
                stored = tuple(self.header(x) for x in range(height, h + 1))
                if stored[-1].block_id != record.ending.block_id:
                    raise ProofNotFound(f"the epoch record {record.epoch} names another block")
                cert = Certificate(headers=stored + record.headers[1:], proof=record.proof)
                return cert, h  # the suffix comes from the record, not from heights above h
        if proof is None:
            if height + span - 1 < head:
                raise self._span_error(height)
            raise ProofNotFound(f"no commit proof covers height {height} yet")
        tip = proof.header.height - 1
        if tip < height:  # a stored proof certifies the block it is stored with, or a later one
            raise ProofNotFound(f"no commit proof covers height {height}")
        if tip - height + 1 > span:
            raise self._span_error(height)
        headers = tuple(self.header(x) for x in range(height, tip + 1))
        return Certificate(headers=headers, proof=proof), max(h, tip)

    def _load_records(self) -> None:
        """Rule 5: read the epoch records committed since the last call."""
        last = self._store.last_epoch()
        if last == len(self._records):
            return
        with self._records_lock:
            for n in range(len(self._records) + 1, last + 1):
                raw = self._store.get_epoch_record(n)
                if raw is None:
                    break
                record = EpochRecord.decode(raw)
                self._ends[record.ending.height] = record
                self._records.append(record)

    def _epoch_end(self, epoch: int) -> int:
        """The height of the block that ended `epoch` (unbounded while it runs)."""
        self._load_records()
        return self._records[epoch].ending.height if epoch < len(self._records) else 2**64

    def _epoch_validators(self, epoch: int) -> tuple[GenesisValidator, ...]:
        self._load_records()
        return self._validators if epoch == 0 else self._records[epoch - 1].config.validators

    def _span_error(self, height: int) -> ProofOutOfRange:
        return ProofOutOfRange(
            f"the commit certificate of height {height} lies more than proof_max_span = "
            f"{self._max_span} blocks above it; prove against another height"
        )

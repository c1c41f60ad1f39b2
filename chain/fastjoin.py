"""Fast join: rebuild a node's store from a snapshot it does not trust, checked against the chain.

A new node (or a site restoring a backup) gets a snapshot file from anywhere (ledger/snapshot.py)
and its own genesis document. It does not replay the chain (no contract execution, no
transaction signature checks); it checks that the snapshot's blocks are the chain that the
genesis' validators certified, and rebuilds every derived record from them (docs/ops.md,
"Backup, restore and fast join"). Like a light client, it trusts that a committed block was
executed correctly by the validators that certified it (more than 2/3 of the voting power).

Rules this module keeps:
1. Trust comes only from the caller's genesis (`TrustAnchor.from_genesis`): the chain id, the
   genesis block (block 0 is rebuilt from the genesis document, never read from the snapshot)
   and epoch 0's validator set. Nothing in the snapshot's manifest is trusted.
2. Every block h = 1 .. head: its header has height h, names block h - 1 as its parent and this
   chain id, and is of the epoch reached so far; its transactions give the header's tx_root and
   tx_count; the snapshot's receipts of those transactions give its receipt_root; the
   accumulator after it gives its acc_root and acc_size; its stored write set (b"W", store
   format 3) chained onto the parent's state_hash gives its state_hash
   (`executor.compute_state_hash`, the one implementation).
3. Epochs are followed from genesis: a block whose write set ends its epoch
   (`epochs.compute_epoch_change`, rule 1 there) must come with the epoch record of the next
   epoch, whose certificate is checked with the current set and whose ending header must commit
   to the next set (`lightclient.check_epoch_change`, the one copy of that check); the next
   blocks are checked with that set.
4. Certificates: the head must be certified (a stored proof, or the epoch record that ends at
   it), checked completely against its epoch's set (`lightclient.check_certificate`: the
   structure and both QCs' signatures), so a forged head, or blocks added after the last
   certificate, are refused; headers below the head are bound to it by their parent links.
   Every other commit proof the snapshot holds is kept (the node serves them to peers and in
   proof bundles), so it is checked too: completely, unless the chain itself vouches for it —
   the proof of block p whose child is the chain's block p + 1 and whose QC is, byte for byte,
   the justify of the chain's block p + 2 (the usual case: the leader that committed p put that
   QC in p + 2). Both QCs are then inside certified headers, which the honest validators among
   the head's signers checked before voting (each validates a proposal's justify QC and its
   ancestors), so their signatures need not be verified again; only the proof's structure is
   (`check_certificate` with the signatures taken as vouched). Measured: this leaves 2 full
   checks per chain instead of one per block (docs/benchmarks.md, "Fast join").
5. The state: every block's write set is applied in its own store batch (`Store.commit_block`,
   which also recomputes the accumulator nodes, tx locations and summaries); at the end the
   snapshot's state records must equal, record for record, the state so derived: a snapshot
   whose state differs from what its history says is refused.
6. Any failure raises `FastJoinError` with the height and the check that failed; the caller
   builds into a scratch directory and publishes it only when this returned (nothing written to
   the target otherwise). Blocks are written unsynced (one fsync per block would dominate the
   time); the caller's next synced write makes them durable, LevelDB's log being sequential.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gmchain.chain.epochs import EpochRecord, compute_epoch_change
from gmchain.chain.executor import compute_state_hash
from gmchain.chain.genesis import ensure_genesis, make_genesis_block
from gmchain.chain.lightclient import (
    Certificate,
    ProofCheckError,
    TrustAnchor,
    check_certificate,
    check_epoch_change,
)
from gmchain.consensus.messages import CommitProof
from gmchain.ledger import store_keys as k
from gmchain.ledger.merkle import EMPTY_ROOT, Frontier, compute_root, leaf_hash
from gmchain.ledger.snapshot import SnapshotReader
from gmchain.ledger.store import Store
from gmchain.ledger.store_api import BlockWrite
from gmchain.ledger.types import Block, BlockHeader, Genesis

__all__ = ["FastJoinError", "JoinReport", "fast_join"]


class FastJoinError(ValueError):
    """The snapshot is not the certified chain of the caller's genesis; the message says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinReport:
    height: int
    head_hash: bytes
    epoch: int
    transactions: int
    certificates_checked: int
    state_records: int


def fast_join(
    reader: SnapshotReader,
    genesis: Genesis,
    store: Store,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> JoinReport:
    """Rules 1-6: check the staged snapshot `reader` against `genesis` while committing its
    blocks into the empty `store`; return what was joined. Raises FastJoinError."""
    try:
        return _Joiner(reader, genesis, store, progress).run()
    except FastJoinError:
        raise
    except ProofCheckError as e:
        raise FastJoinError(f"certificate check failed: {e}") from None
    except (ValueError, TypeError, KeyError, AssertionError) as e:  # malformed records
        raise FastJoinError(f"malformed snapshot record: {type(e).__name__}: {e}") from None


class _Joiner:
    def __init__(
        self,
        reader: SnapshotReader,
        genesis: Genesis,
        store: Store,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.reader = reader
        self.genesis = genesis
        self.store = store
        self.progress = progress
        self.anchor = TrustAnchor.from_genesis(genesis)  # rule 1; advanced by rule 3
        self.certified_head = False
        self.certificates = 0  # certificates whose signatures were verified
        self.pending: list[tuple[BlockHeader, CommitProof, TrustAnchor]] = []  # rule 4
        self.recent: tuple[BlockHeader, ...] = ()  # the last two blocks joined
        self.head_height = 0

    def run(self) -> JoinReport:
        if self.store.head_height() is not None:
            raise FastJoinError("the target store is not empty")
        found = self.reader.head()
        if found is None:
            raise FastJoinError("the snapshot records no head block")
        head, head_hash = found
        self.head_height = head
        block0 = make_genesis_block(self.genesis)[0]
        if self.reader.block(0) != block0.encode():
            raise FastJoinError(
                "the snapshot's block 0 is not the genesis block of this genesis document "
                "(another chain, or another genesis of the same chain id)"
            )
        ensure_genesis(self.store, self.genesis)  # rule 1: rebuilt, never copied
        parent = block0.header
        frontier = Frontier.empty()
        txs = 0
        for h in range(1, head + 1):
            parent, frontier, n = self._join_block(h, parent, frontier, last=h == head)
            txs += n
            if self.progress is not None:
                self.progress(h, head)
        self._finish_proofs()
        if parent.block_id != head_hash:
            raise FastJoinError(
                f"the snapshot's head record names block {head_hash.hex()[:16]} at {head}, "
                f"but its block {head} is {parent.block_id.hex()[:16]}"
            )
        if head > 0 and not self.certified_head:
            raise FastJoinError(f"no commit certificate for the head block {head} (rule 4)")
        states = self._compare_state()
        return JoinReport(
            height=head,
            head_hash=head_hash,
            epoch=self.anchor.epoch,
            transactions=txs,
            certificates_checked=self.certificates,
            state_records=states,
        )

    def _join_block(
        self, h: int, parent: BlockHeader, frontier: Frontier, *, last: bool
    ) -> tuple[BlockHeader, Frontier, int]:
        raw = self.reader.block(h)
        if raw is None:
            raise FastJoinError(f"block {h} is missing from the snapshot")
        block = Block.decode(raw)
        hdr = block.header
        # Rule 2: the header's place in the chain.
        if hdr.height != h or hdr.parent_id != parent.block_id:
            raise FastJoinError(f"block {h} does not extend block {h - 1} (parent link broken)")
        if hdr.chain_id != self.genesis.chain_id:
            raise FastJoinError(f"block {h} is of chain {hdr.chain_id!r}")
        if hdr.epoch != self.anchor.epoch:
            raise FastJoinError(f"block {h} is of epoch {hdr.epoch}, expected {self.anchor.epoch}")
        # Rule 2: the body against the header.
        tx_ids = [t.tx_id for t in block.txs]
        if (compute_root(tx_ids) if tx_ids else EMPTY_ROOT) != hdr.tx_root:
            raise FastJoinError(f"block {h}: its transactions do not give the header's tx_root")
        receipts = []
        for t in tx_ids:
            r = self.reader.receipt(t)
            if r is None:
                raise FastJoinError(f"block {h}: the receipt of tx {t.hex()[:16]} is missing")
            receipts.append(r)
        if (compute_root(receipts) if receipts else EMPTY_ROOT) != hdr.receipt_root:
            raise FastJoinError(f"block {h}: its receipts do not give the header's receipt_root")
        leaves = [leaf_hash(t) for t in tx_ids]
        frontier, nodes = frontier.append(leaves)
        if frontier.size != hdr.acc_size or frontier.root() != hdr.acc_root:
            raise FastJoinError(f"block {h}: the accumulator differs from the header's")
        raw_writes = self.reader.write_set(h)
        if raw_writes is None:
            raise FastJoinError(
                f"block {h} has no write set in the snapshot (written before store format 3): "
                "this snapshot cannot be fast-joined; sync this node from its peers instead"
            )
        writes = k.decode_write_set(raw_writes)
        if compute_state_hash(parent.state_hash, writes) != hdr.state_hash:
            raise FastJoinError(
                f"block {h}: its write set does not give the header's state_hash "
                "(a state write was altered, added or dropped)"
            )
        proof = self._queue_proof(h, hdr)
        self._settle_proofs(hdr)
        record = self._check_epoch_end(h, hdr, writes)
        if last and record is not None:  # its certificate covers E = hdr and its suffix
            self.certified_head = True
        self.store.commit_block(
            BlockWrite(
                height=h,
                block_hash=hdr.block_id,
                header_bytes=hdr.encode(),
                block_bytes=raw,
                tx_ids=tx_ids,
                receipts=receipts,
                state_writes=writes,
                acc_leaves=leaves,
                acc_nodes={key: v for key, v in nodes.items() if key[0] > 0},
                commit_proof=proof,
                epoch_record=None if record is None else (record[1].epoch, record[0]),
            ),
            sync=False,  # rule 6: a scratch store; the caller's last write is synced
        )
        return hdr, frontier, len(tx_ids)

    def _queue_proof(self, h: int, hdr: BlockHeader) -> bytes:
        """Rule 4: the proof stored with block h (b"" if none), decoded and queued until blocks
        h + 1 and h + 2 show whether the chain vouches for it."""
        raw = self.reader.commit_proof(h) or b""
        if raw:
            self.pending.append((hdr, CommitProof.decode(raw), self.anchor))
        return raw

    def _settle_proofs(self, newest: BlockHeader) -> None:
        """Rule 4 for queued proofs of blocks at least two below `newest` (just joined): the
        chain's block p + 1 (held in `self.recent`) and p + 2 = `newest` decide."""
        self.recent = (*self.recent[-1:], newest)
        while self.pending and self.pending[0][0].height + 2 <= newest.height:
            hdr, proof, anchor = self.pending.pop(0)
            child = self.recent[0]
            vouched = (
                child.height == hdr.height + 1
                and proof.header.block_id == child.block_id
                and newest.parent_id == child.block_id
                and proof.qc.encode() == newest.justify.encode()
            )
            self._check_one(hdr, proof, anchor, vouched=vouched)

    def _check_one(
        self, hdr: BlockHeader, proof: CommitProof, anchor: TrustAnchor, *, vouched: bool
    ) -> None:
        cert = Certificate(headers=(hdr,), proof=proof)
        what = f"commit proof of block {hdr.height}"
        if vouched:
            check_certificate(cert, anchor, what=what, signatures=False)
        else:
            check_certificate(cert, anchor, what=what)
            self.certificates += 1

    def _finish_proofs(self) -> None:
        """Rule 4: the proofs nothing above vouches for (the head's, and its parent's)."""
        for hdr, proof, anchor in self.pending:
            self._check_one(hdr, proof, anchor, vouched=False)
            if hdr.height == self.head_height:
                self.certified_head = True
        self.pending.clear()

    def _check_epoch_end(
        self, h: int, hdr: BlockHeader, writes: dict[tuple[str, bytes], bytes | None]
    ) -> tuple[bytes, EpochRecord] | None:
        """Rule 3: if block h ends its epoch, check the next epoch's record and move on."""
        config = compute_epoch_change(writes, h)
        if config is None:
            return None
        raw = self.reader.epoch_record(config.epoch)
        if raw is None:
            raise FastJoinError(f"block {h} ends epoch {hdr.epoch} but the epoch record is missing")
        record = EpochRecord.decode(raw)
        if record.config.encode() != config.encode() or record.start_height != h + 1:
            raise FastJoinError(f"the record of epoch {config.epoch} is not what block {h} decided")
        if record.headers[0].block_id != hdr.block_id:
            raise FastJoinError(f"the record of epoch {config.epoch} does not start at block {h}")
        cert = Certificate(headers=record.headers, proof=record.proof)
        self.anchor = check_epoch_change(
            hdr.epoch, cert, config.validators, self.anchor, what=f"epoch record {config.epoch}"
        )
        self.certificates += 1
        return raw, record

    def _compare_state(self) -> int:
        """Rule 5: the snapshot's state records equal the state the write sets derived; and its
        secondary index records (b"X") equal the rebuilt store's: fast join derives none, so a
        snapshot that holds some is refused rather than joined without them."""
        n = 0
        for prefix, what in ((k.P_STATE, "state"), (k.P_INDEX, "secondary index")):
            theirs = self.reader.iter_prefix(prefix)
            with self.store.snapshot() as view:
                ours = view.iter_records(prefix)
                while True:
                    a, b = next(ours, None), next(theirs, None)
                    if a is None and b is None:
                        break
                    if a != b:
                        where = (b or a or (b"", b""))[0]
                        raise FastJoinError(
                            f"the snapshot's {what} differs from what its blocks' write sets "
                            f"give, at key {where[:48]!r}"
                        )
                    n += 1
        return n

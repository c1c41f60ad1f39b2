"""Reads of committed data for the RPC: blocks, transactions, receipts, contract queries.

Rules this module keeps (node/api.py rules 1, 2):
1. Reads run on the event loop while the consensus thread commits (node/driver.py). They stay
   consistent because a commit is one synced LevelDB batch (ledger/store.py) and the chain
   publishes its head only after the batch is written: every key of a block at or below the
   published head is there, and committed data never changes afterwards. A contract query reads
   several state keys, so it reads them through one store snapshot: it sees a block's writes
   entirely or not at all.
2. What is served is re-checked (chain/readcheck.py); a record that fails its re-hash means the
   node's own store is damaged: the caller gets the error and `on_corrupt` stops the node
   (node/service.py rule 5).
3. Decoded blocks are kept in a small LRU (a committed block never changes).
4. Epochs are read from the governance contract's state (EPOCHS.md E2: `ep` = [latest epoch,
   height it was written at], `ep/<epoch u64 BE>` = EpochConfig) through one snapshot.
5. The contracts' description is built once: the registry is fixed when the node starts
   (contracts/framework.py), and rebuilding it cost half of every `gm_call` (issue 15). Callers
   only read it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import msgpack

from gmchain.chain.executor import Executor
from gmchain.chain.readcheck import check_served_block, check_served_header, check_served_tx
from gmchain.contracts.framework import ContractError, Registry
from gmchain.contracts.gov_state import GOV_NAMESPACE, STATUSES, Proposal, epoch_key
from gmchain.ledger.codec import Value, decode
from gmchain.ledger.epoch import EpochConfig
from gmchain.ledger.store import Store, StoreCorrupt
from gmchain.ledger.types import Block, BlockHeader, Receipt, SignedTx
from gmchain.node.api import ApiError, EpochInfo, ErrorCode, TxLookup

__all__ = ["Queries", "extract_tx_bytes"]

BLOCK_CACHE = 256  # decoded blocks kept (rule 3)
# contracts/gov_state.py G-S1: ep -> [latest epoch, written height]; p/<id u64 BE> -> proposal
_EPOCH_KEY = b"ep"
_PROPOSAL_PREFIX = b"p/"


class Queries:
    """The read half of NodeApi over the committed store."""

    def __init__(
        self,
        *,
        store: Store,
        registry: Registry,
        executor: Executor,
        on_corrupt: Callable[[StoreCorrupt], None],
        head_height: Callable[[], int],
    ) -> None:
        self._store = store
        self._head_height = head_height
        self._registry = registry
        self._executor = executor
        self._on_corrupt = on_corrupt
        self._block_cache: OrderedDict[int, Block] = OrderedDict()
        self._described: dict[str, Any] | None = None  # rule 5

    def clear_cache(self) -> None:
        self._block_cache.clear()

    def get_block(self, height: int) -> Block | None:
        block = self._block_cache.get(height)
        if block is not None:
            self._block_cache.move_to_end(height)
            return block
        raw = self._store.get_block_by_height(height)
        if not raw:
            return None
        block = Block.decode(raw)
        self._checked(check_served_block, self._store, height, block)
        self._block_cache[height] = block
        if len(self._block_cache) > BLOCK_CACHE:
            self._block_cache.popitem(last=False)
        return block

    def get_block_by_hash(self, block_id: bytes) -> Block | None:
        height = self._store.get_height_by_hash(block_id)
        return None if height is None else self.get_block(height)

    def get_block_id(self, height: int) -> bytes | None:
        """A committed block's id by height: one store read, nothing decoded."""
        return self._store.get_block_hash(height)

    def get_block_summary(self, height: int) -> tuple[BlockHeader, list[bytes]] | None:
        """A committed block's header and tx ids, without decoding its transactions."""
        raw = self._store.get_header_by_height(height)
        ids = self._store.get_tx_ids(height)
        if raw is None or ids is None:
            return None
        header = BlockHeader.decode(raw)
        self._checked(check_served_header, self._store, height, header)
        return header, ids

    def get_block_summary_by_hash(self, block_id: bytes) -> tuple[BlockHeader, list[bytes]] | None:
        height = self._store.get_height_by_hash(block_id)
        return None if height is None else self.get_block_summary(height)

    def get_tx(self, tx_id: bytes) -> TxLookup | None:
        loc = self._store.get_tx_location(tx_id)
        if loc is None:
            return None
        height, index = loc
        cached = self._block_cache.get(height)
        raw = b""
        if cached is not None:
            tx = cached.txs[index]
        else:
            raw_block = self._store.get_block_by_height(height)
            assert raw_block is not None  # rule 1: the location and the block are one batch
            raw = extract_tx_bytes(raw_block, index)
            tx = SignedTx.decode_tx(raw)  # its id hashed from `raw`, not from a re-encoding
            self._checked(check_served_tx, height, tx_id, tx)
        rraw = self._store.get_receipt(tx_id)
        block_id = self.get_block_id(height)
        assert rraw is not None and block_id is not None
        return TxLookup(
            tx=tx, height=height, index=index, block_id=block_id, receipt_bytes=rraw, tx_bytes=raw
        )

    def get_receipt(self, tx_id: bytes) -> tuple[Receipt, int, int] | None:
        loc = self._store.get_tx_location(tx_id)
        rraw = self._store.get_receipt(tx_id)
        if loc is None or rraw is None:
            return None
        return Receipt.decode(rraw), loc[0], loc[1]

    def call(self, contract: str, method: str, args: Sequence[Value]) -> Value:
        """A read-only contract query on one snapshot of committed state (rule 1)."""
        with self._store.snapshot() as snap:
            try:
                result: Value = self._executor.query(contract, method, args, committed=snap)
            except ContractError as exc:
                raise ApiError(ErrorCode.QUERY_FAILED, str(exc)) from None
            return result

    def account_of(self, pubkey: bytes) -> tuple[str, str] | None:
        """(org, role) of `pubkey`'s live account in committed state, or None: never
        registered, revoked, or its org removed by governance (R8b: such an account may not
        send transactions either)."""
        account = self._executor.lookup_sender_uncached(pubkey)
        if account is None or self._executor.lookup_org_removal_uncached(account[1]) is not None:
            return None
        return account[1], account[2]

    def org_of(self, pubkey: bytes) -> str | None:
        """The org of `pubkey`'s account, live or revoked (its tombstone), or None."""
        return self._executor.lookup_org_of_uncached(pubkey)

    def describe_contracts(self) -> dict[str, Any]:
        """Rule 5: the registry's description, built once (callers only read it)."""
        if self._described is None:
            self._described = self._registry.describe()
        return self._described

    def current_epoch(self) -> EpochInfo:
        """Rule 4: the latest epoch in committed state, with the head read in the same loop turn
        (a commit publishes its head only after its batch is written)."""
        head_height = self._head_height()
        with self._store.snapshot() as snap:
            raw = snap.get_state(GOV_NAMESPACE, _EPOCH_KEY)
            if raw is None:  # genesis writes it (contracts/gov_state.py G-S2): a damaged store
                raise ApiError(ErrorCode.NOT_FOUND, "no epoch configuration in committed state")
            latest, written_at = decode(raw)
            config = self._read_config(snap.get_state(GOV_NAMESPACE, epoch_key(latest)))
        assert config is not None and config.epoch == latest, latest  # E2: written together
        start = 0 if latest == 0 else written_at + 1
        return EpochInfo(config=config, start_height=start, height=head_height)

    def latest_epoch(self) -> int:
        """Rule 4: the current epoch's number alone (one read: for the metrics at each commit)."""
        raw = self._store.get_state(GOV_NAMESPACE, _EPOCH_KEY)
        return 0 if raw is None else int(decode(raw)[0])

    def epoch_config(self, epoch: int) -> EpochConfig | None:
        """Rule 4: the configuration of `epoch`, or None if governance never wrote it."""
        return self._read_config(self._store.get_state(GOV_NAMESPACE, epoch_key(epoch)))

    def proposal_counts(self) -> dict[str, int]:
        """Governance proposals per status (every status named, zeros included), from one scan
        of the contract's proposals in one snapshot (for /metrics; proposals are few)."""
        counts = dict.fromkeys(STATUSES, 0)
        with self._store.snapshot() as snap:
            for key, raw in snap.iter_state(GOV_NAMESPACE, _PROPOSAL_PREFIX):
                status = Proposal.from_value(int.from_bytes(key[2:], "big"), decode(raw)).status
                counts[status] = counts.get(status, 0) + 1
        return counts

    @staticmethod
    def _read_config(raw: bytes | None) -> EpochConfig | None:
        return None if raw is None else EpochConfig.decode(raw)

    def _checked(self, check: Callable[..., None], *args: Any) -> None:
        """Rule 2."""
        try:
            check(*args)
        except StoreCorrupt as exc:
            self._on_corrupt(exc)
            raise


def extract_tx_bytes(block_bytes: bytes, index: int) -> bytes:
    """The canonical bytes of transaction `index` inside an encoded Block `[6, header, [txs]]`,
    found by skipping (in msgpack's C code) instead of decoding the whole block."""
    u = msgpack.Unpacker(raw=False, max_buffer_size=len(block_bytes) + 1)
    u.feed(block_bytes)
    if u.read_array_header() != 3:
        raise ValueError("not an encoded block")
    u.skip()  # tag
    u.skip()  # header
    n = u.read_array_header()
    if not 0 <= index < n:
        raise IndexError(f"block has {n} transactions, no index {index}")
    for _ in range(index):
        u.skip()
    start = u.tell()
    u.skip()
    return block_bytes[start : u.tell()]

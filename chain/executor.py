"""Deterministic block execution on top of committed or speculative state.

Rules this module keeps:
1. Execution is a pure function of (parent state, header context, transactions): no clock, no
   randomness, no IO except reads of committed state through `CommittedState`.
2. A block is executed on top of its parent's result (`ExecResult`), which may itself be
   speculative (certified or only proposed, not yet committed). Results are overlays: a dict of
   writes over the parent's overlays over the committed store. Nothing touches the store until
   the block commits (then `ExecResult.writes` go into the block's one synced batch).
3. A transaction that breaks a *block rule* (chain/txrules.py R3, R5, R7, R8; the caller checks
   R4 and R9, the signatures) makes the whole block invalid (`InvalidBlock`): honest leaders
   never include one (they filter with `check_tx`), and replicas refuse to vote for it. A
   transaction that a *contract* refuses is included with a failed receipt (status != 0), and
   its writes are discarded: that is an executor refusal, not a Rejection.
4. The header commitments are computed here and only here: tx_root and receipt_root (RFC 6962 over
   tx ids and encoded receipts), the accumulator frontier after the block, and
   state_hash = SM3(DOMAIN["state"] || 0x00 || encode([parent_state_hash, sorted writes])).
5. Block execution reads committed state through `CommittedReadCache`: a dict that holds what
   the store holds for every key execution read (None for an absent key), as of the committed
   head. It is filled on a miss and brought up to date by `on_committed_writes` (from
   `Chain.commit`, right after the block's store write), both on the one thread that executes
   and commits (node/driver.py rule 1), so no read can fill it with a value a commit already
   replaced. Speculative writes never enter it (they stay in the overlays), so a pruned branch
   leaves nothing behind. Why: a block re-proposed after a timeout (same transactions, new
   round) is executed again, and each LevelDB read releases the GIL, which the consensus thread
   may then have to wait for; a hit is a dict lookup that keeps it. (docs/benchmarks.md,
   session 6: it takes a replica's LevelDB reads per re-executed block from ~2,000 to ~0; on
   an overloaded machine the wait was for a CPU, not the GIL, and no wall-time gain showed.)
   Queries and the `*_uncached` lookups (other threads) read the store itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gmchain.chain.txrules import Account, TxRejected, TxRules
from gmchain.contracts.framework import (
    Context,
    ContractError,
    Registry,
    StateAccess,
    StateReader,
    error_text,
)
from gmchain.contracts.gov_state import GOV_NAMESPACE, org_removal
from gmchain.contracts.keys import address_of
from gmchain.contracts.membership import lookup_account, revoked_org
from gmchain.ledger.codec import check_value
from gmchain.ledger.epoch import EpochConfig
from gmchain.ledger.merkle import EMPTY_ROOT, Frontier, compute_root, leaf_hash
from gmchain.ledger.types import (
    MAX_VALUE_DEPTH,
    BlockHeader,
    Digest,
    Height,
    NodeId,
    QuorumCert,
    Receipt,
    ReceiptStatus,
    Round,
    SignedTx,
    compute_signing_root,
)

__all__ = [
    "CommittedReadCache",
    "CommittedState",
    "ExecResult",
    "Executor",
    "InvalidBlock",
    "compute_block_header",
    "compute_state_hash",
]

StateKey = tuple[str, bytes]
log = logging.getLogger("gmchain.executor")


# Namespaces the sender rules R8 and R8b read (chain/txrules.py).
_SENDER_NAMESPACES = frozenset({"membership", GOV_NAMESPACE})


class InvalidBlock(Exception):
    """The block breaks a block rule; replicas must not vote for it."""


class CommittedState(Protocol):
    """Read access to committed state and the committed tx index (ledger.store.Store has it)."""

    def get_state(self, namespace: str, key: bytes) -> bytes | None: ...

    def iter_state(self, namespace: str, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]: ...

    def get_tx_location(self, tx_id: bytes) -> tuple[int, int] | None: ...


@dataclass(slots=True, kw_only=True)
class ExecResult:
    """The outcome of executing one block; an overlay over its parent's result."""

    block_id: bytes  # filled in once the header exists (b"" while building)
    height: int
    parent: ExecResult | None  # None: the parent is the committed head
    writes: dict[StateKey, bytes | None]
    tx_ids: list[bytes]
    tx_id_set: frozenset[bytes]
    receipts: list[Receipt]
    receipt_bytes: list[bytes]
    frontier: Frontier  # accumulator after this block
    acc_nodes: dict[tuple[int, int], bytes]
    leaf_hashes: list[bytes]
    tx_root: Digest
    receipt_root: Digest
    state_hash: Digest
    index_writes: dict[bytes, bytes | None] = field(default_factory=dict)
    # some write is in a namespace R8/R8b read (membership, governance): cached lookups are stale
    touches_membership: bool = False
    # The configuration this branch switches to (chain/epochs.py rule 1), set by the chain: on
    # an epoch-ending block (then `ends_epoch`) and on every block of its suffix; else None.
    next_epoch: EpochConfig | None = None
    ends_epoch: bool = False

    def iter_chain(self) -> Iterator[ExecResult]:
        """This result and its speculative ancestors, newest first."""
        r: ExecResult | None = self
        while r is not None:
            yield r
            r = r.parent


def compute_state_hash(parent_state_hash: bytes, writes: Mapping[StateKey, bytes | None]) -> Digest:
    items = [[ns, key, value] for (ns, key), value in sorted(writes.items())]
    return compute_signing_root("state", [parent_state_hash, items])


class CommittedReadCache:
    """Rule 5: committed state as of the committed head, kept in memory for block execution.

    Invariant: for every (namespace, key) in `_values`, the value equals what the store holds
    (None: absent). Holds at most `max_entries` keys; when full it is emptied (a miss only costs
    a store read).
    """

    def __init__(self, committed: CommittedState, *, max_entries: int = 200_000) -> None:
        self._committed = committed
        self._values: dict[StateKey, bytes | None] = {}
        self._max = max_entries
        self.hits = 0  # reads answered from memory (for tests and metrics)
        self.misses = 0  # reads that went to the store

    def get_state(self, namespace: str, key: bytes) -> bytes | None:
        k = (namespace, key)
        values = self._values
        if k in values:
            self.hits += 1
            return values[k]
        self.misses += 1
        value = self._committed.get_state(namespace, key)
        if len(values) >= self._max:
            values.clear()
        values[k] = value
        return value

    def iter_state(self, namespace: str, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        return self._committed.iter_state(namespace, prefix)

    def get_tx_location(self, tx_id: bytes) -> tuple[int, int] | None:
        return self._committed.get_tx_location(tx_id)

    def on_committed_writes(self, writes: Mapping[StateKey, bytes | None]) -> None:
        """A block's state writes are in the store: keys we hold take their new values."""
        values = self._values
        for k, v in writes.items():
            if k in values:
                values[k] = v

    def clear(self) -> None:
        self._values.clear()

    def __len__(self) -> int:
        return len(self._values)


class _Layered:
    """Reads through: this tx's writes, this block's writes, speculative ancestors, the store."""

    def __init__(
        self,
        committed: CommittedState,
        layers: Sequence[Mapping[StateKey, bytes | None]],  # newest first
    ) -> None:
        self._committed = committed
        self._layers = layers

    def get(self, ns: str, key: bytes) -> bytes | None:
        k = (ns, key)
        for layer in self._layers:
            if k in layer:
                return layer[k]
        return self._committed.get_state(ns, key)

    def scan(self, ns: str, prefix: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        merged: dict[bytes, bytes | None] = {}
        for layer in reversed(self._layers):  # oldest first, so newer layers win
            for (lns, key), value in layer.items():
                if lns == ns and key.startswith(prefix):
                    merged[key] = value
        out: list[tuple[bytes, bytes]] = []
        store_iter = self._committed.iter_state(ns, prefix)
        # Merge the store's ordered iteration with the overlay keys.
        overlay_keys = sorted(merged)
        oi = 0
        for skey, svalue in store_iter:
            while oi < len(overlay_keys) and overlay_keys[oi] < skey:
                v = merged[overlay_keys[oi]]
                if v is not None:
                    out.append((overlay_keys[oi], v))
                oi += 1
                if len(out) >= limit:
                    return out
            if oi < len(overlay_keys) and overlay_keys[oi] == skey:
                v = merged[skey]
                oi += 1
                if v is not None:
                    out.append((skey, v))
            else:
                out.append((skey, svalue))
            if len(out) >= limit:
                return out
        while oi < len(overlay_keys) and len(out) < limit:
            v = merged[overlay_keys[oi]]
            if v is not None:
                out.append((overlay_keys[oi], v))
            oi += 1
        return out


class _NsReader:
    """StateReader for one contract namespace."""

    def __init__(self, layered: _Layered, ns: str) -> None:
        self._l = layered
        self._ns = ns

    def get(self, key: bytes) -> bytes | None:
        return self._l.get(self._ns, key)

    def scan(self, prefix: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        return self._l.scan(self._ns, prefix, limit)


class _TxState(_NsReader):
    """StateAccess for one contract during one tx: writes buffer in `pending`."""

    def __init__(self, layered: _Layered, ns: str, pending: dict[StateKey, bytes | None]) -> None:
        super().__init__(layered, ns)
        self._pending = pending

    def put(self, key: bytes, value: bytes) -> None:
        if not isinstance(key, bytes) or not isinstance(value, bytes):
            raise TypeError("state keys and values are bytes")
        self._pending[(self._ns, key)] = value

    def delete(self, key: bytes) -> None:
        self._pending[(self._ns, key)] = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockContext:
    chain_id: str
    height: int
    timestamp_ms: int
    parent_state_hash: bytes
    parent_frontier: Frontier


class Executor:
    """Runs transactions through the contract registry; see the module rules."""

    def __init__(self, *, rules: TxRules, committed: CommittedState) -> None:
        self.rules = rules
        self.chain_id = rules.chain_id
        self.registry: Registry = rules.registry
        self.committed = committed
        # Rule 5: what block execution reads of committed state (this thread's only).
        self.read_cache = CommittedReadCache(committed)
        # Tx ids the caller knows are not committed (its pool: committed txs leave it in the
        # same step as their commit), so the committed-duplicate lookup can be skipped for them.
        self.known_uncommitted: Callable[[bytes], bool] = lambda _tx_id: False
        # Sender accounts as of committed state; `forget_accounts` whenever a committed block
        # writes membership state. Speculative membership writes bypass it (see lookup_sender).
        self._accounts: dict[bytes, tuple[bytes, str, str] | None] = {}
        # Orgs' removals by governance (R8b) as of committed state; forgotten with the accounts.
        self._removals: dict[str, int | None] = {}
        self._addresses: dict[bytes, bytes] = {}  # sender key -> its address (_address_of)

    # --- checks shared by the pool, the leader and the replicas -----------------------------------

    def check_tx(
        self, tx: SignedTx, height: int, parent: ExecResult | None, seen: set[bytes] | None = None
    ) -> Account:
        """The block rules R3, R5, R7, R8 (chain/txrules.py) for `tx` in a block at `height` on
        top of `parent`; returns the sender's account. Raises TxRejected.

        Signatures (R4, R9) are checked by the caller (verified once per node).
        """
        rules = self.rules
        rules.check_chain(tx)
        rules.check_window(tx, height - 1)
        return rules.check_state(tx, _ParentView(self, parent), seen)

    def lookup_sender(self, pubkey: bytes, parent: ExecResult | None) -> Account | None:
        if parent is None or not any(r.touches_membership for r in parent.iter_chain()):
            if pubkey in self._accounts:
                return self._accounts[pubkey]
            account = self._lookup(pubkey, [], self.read_cache)
            if len(self._accounts) > 100_000:
                self._accounts.clear()
            self._accounts[pubkey] = account
            return account
        return self._lookup(pubkey, _layers_of(parent), self.read_cache)

    def _lookup(
        self,
        pubkey: bytes,
        layers: list[Mapping[StateKey, bytes | None]],
        committed: CommittedState,
    ) -> Account | None:
        layered = _Layered(committed, layers)
        account = lookup_account(_NsReader(layered, "membership"), self._address_of(pubkey))
        if account is None or account[0] != pubkey:
            return None
        return account

    def lookup_sender_uncached(self, pubkey: bytes) -> Account | None:
        """The committed account of `pubkey`, read from the store (safe from any thread)."""
        return self._lookup(pubkey, [], self.committed)

    def lookup_org_of_uncached(self, pubkey: bytes) -> str | None:
        """The org of `pubkey`'s committed account, live or revoked (its tombstone keeps the
        org, contracts/membership.py M4), or None if it never had one (safe from any thread)."""
        account = self.lookup_sender_uncached(pubkey)
        if account is not None:
            return account[1]
        reader = _NsReader(_Layered(self.committed, []), "membership")
        return revoked_org(reader, self._address_of(pubkey))

    def lookup_org_removal(self, org: str, parent: ExecResult | None) -> int | None:
        """R8b: the proposal that removed `org` as of `parent` (None: committed state)."""
        if parent is None or not any(r.touches_membership for r in parent.iter_chain()):
            if org not in self._removals:
                if len(self._removals) > 100_000:
                    self._removals.clear()
                self._removals[org] = self._org_removal(org, [], self.read_cache)
            return self._removals[org]
        return self._org_removal(org, _layers_of(parent), self.read_cache)

    def lookup_org_removal_uncached(self, org: str) -> int | None:
        """R8b on committed state, read from the store (safe from any thread)."""
        return self._org_removal(org, [], self.committed)

    def _org_removal(
        self,
        org: str,
        layers: list[Mapping[StateKey, bytes | None]],
        committed: CommittedState,
    ) -> int | None:
        return org_removal(_NsReader(_Layered(committed, layers), GOV_NAMESPACE), org)

    def _address_of(self, pubkey: bytes) -> bytes:
        """`address_of(pubkey)`, remembered (an address never changes; at most 100,000 kept;
        dict reads and writes are atomic, so any thread may call it)."""
        address = self._addresses.get(pubkey)
        if address is None:
            if len(self._addresses) > 100_000:
                self._addresses.clear()
            address = self._addresses[pubkey] = address_of(pubkey)
        return address

    def forget_accounts(self) -> None:
        """Committed membership or governance state changed: drop the cached committed lookups."""
        self._accounts.clear()
        self._removals.clear()

    # --- execution ------------------------------------------------------------------------------

    def execute(
        self,
        ctx: BlockContext,
        txs: Sequence[SignedTx],
        parent: ExecResult | None,
        *,
        strict: bool = True,
    ) -> tuple[ExecResult, list[tuple[SignedTx, TxRejected]]]:
        """Execute `txs` in order on top of `parent`.

        strict=True (validating a proposal): any block-rule violation raises InvalidBlock.
        strict=False (building a block): violating txs are skipped and returned as rejected.
        Returns the result and the txs that were skipped, each with why (empty when strict).
        """
        block_writes: dict[StateKey, bytes | None] = {}
        layers_below = _layers_of(parent)
        seen: set[bytes] = set()
        included: list[SignedTx] = []
        rejected: list[tuple[SignedTx, TxRejected]] = []
        receipts: list[Receipt] = []
        for tx in txs:
            try:
                account = self.check_tx(tx, ctx.height, parent, seen)
            except TxRejected as exc:
                if strict:
                    raise InvalidBlock(f"tx {tx.tx_id.hex()}: {exc}") from exc
                rejected.append((tx, exc))
                continue
            seen.add(tx.tx_id)
            included.append(tx)
            receipts.append(self._run(ctx, tx, account, block_writes, layers_below))
        return self._finish(ctx, parent, included, receipts, block_writes), rejected

    def _run(
        self,
        ctx: BlockContext,
        tx: SignedTx,
        account: Account,
        block_writes: dict[StateKey, bytes | None],
        layers_below: list[Mapping[StateKey, bytes | None]],
    ) -> Receipt:
        pending: dict[StateKey, bytes | None] = {}
        layered = _Layered(self.read_cache, [pending, block_writes, *layers_below])
        body = tx.body

        def reader_for(ns: str) -> StateReader:
            return _NsReader(layered, ns)

        def writer_for(ns: str) -> StateAccess:  # contracts/framework.py rule 7
            return _TxState(layered, ns, pending)

        context = Context(
            chain_id=self.chain_id,
            tx_id=tx.tx_id,
            sender_pubkey=body.sender,
            sender=self._address_of(body.sender),
            sender_org=account[1],
            sender_role=account[2],
            height=ctx.height,
            timestamp_ms=ctx.timestamp_ms,
            state=_TxState(layered, body.contract, pending),
            events=[],
            reader_factory=reader_for,
            writer_factory=writer_for,
        )
        status = ReceiptStatus.OK
        error = ""
        result: Any = None
        try:
            # (a call this node's admission checked is not checked again: framework rule 2b)
            result = self.registry.invoke(
                context,
                body.contract,
                body.method,
                list(body.args),
                args_checked=tx.tx_id in self.rules.checked_calls,
            )
            # A contract must return a canonical value that a Receipt can carry (ledger.types
            # rule 6); otherwise the receipt would be built here but could never be served.
            check_value(result, MAX_VALUE_DEPTH)
        except ContractError as exc:
            status, error = exc.status, error_text(exc)
        except Exception as exc:
            # Our bug in a contract (it raised something other than ContractError, or returned a
            # non-canonical value). Python raises the same exception on every node for the same
            # inputs, so failing the tx keeps execution deterministic and keeps the chain alive
            # (one bad call must not crash-loop every validator, cf. FISCO BCOS #4417).
            log.error("contract %s.%s raised %r", body.contract, body.method, exc)
            status, error = ReceiptStatus.FAILED, f"internal contract error: {type(exc).__name__}"
        if status is not ReceiptStatus.OK:
            return Receipt(tx_id=tx.tx_id, status=status, error=error)
        block_writes.update(pending)
        return Receipt(
            tx_id=tx.tx_id, status=status, result=result, events=tuple(context.events), error=""
        )

    def _finish(
        self,
        ctx: BlockContext,
        parent: ExecResult | None,
        txs: list[SignedTx],
        receipts: list[Receipt],
        writes: dict[StateKey, bytes | None],
    ) -> ExecResult:
        tx_ids = [t.tx_id for t in txs]
        receipt_bytes = [r.encode() for r in receipts]
        leaves: list[bytes] = [leaf_hash(t) for t in tx_ids]
        frontier, acc_nodes = ctx.parent_frontier.append(leaves)
        return ExecResult(
            block_id=b"",
            height=ctx.height,
            parent=parent,
            writes=writes,
            tx_ids=list(tx_ids),
            tx_id_set=frozenset(tx_ids),
            receipts=receipts,
            receipt_bytes=receipt_bytes,
            frontier=frontier,
            acc_nodes=dict(acc_nodes),
            leaf_hashes=leaves,
            tx_root=compute_root(tx_ids) if tx_ids else EMPTY_ROOT,
            receipt_root=compute_root(receipt_bytes) if receipt_bytes else EMPTY_ROOT,
            state_hash=compute_state_hash(ctx.parent_state_hash, writes),
            touches_membership=any(ns in _SENDER_NAMESPACES for ns, _ in writes),
        )

    # --- read-only queries on committed state ---------------------------------------------------

    def query(
        self,
        contract: str,
        method: str,
        args: Sequence[Any],
        *,
        committed: CommittedState | None = None,
    ) -> Any:
        """A read-only contract query on committed state (or on `committed`, e.g. a snapshot of
        it, so that a query reading several keys never sees half of a commit)."""
        layered = _Layered(self.committed if committed is None else committed, [])

        def reader_for(ns: str) -> StateReader:
            return _NsReader(layered, ns)

        return self.registry.query(reader_for, contract, method, list(args))


class _ParentView:
    """R7 and R8 read a block's parent: its speculative ancestors, then committed state."""

    __slots__ = ("_executor", "_parent")

    def __init__(self, executor: Executor, parent: ExecResult | None) -> None:
        self._executor = executor
        self._parent = parent

    def in_uncommitted(self, tx_id: bytes) -> bool:
        parent = self._parent
        return parent is not None and any(tx_id in r.tx_id_set for r in parent.iter_chain())

    def is_committed(self, tx_id: bytes) -> bool:
        ex = self._executor
        # (a pool transaction is known uncommitted: the pool drops committed ones as they commit)
        return not ex.known_uncommitted(tx_id) and ex.committed.get_tx_location(tx_id) is not None

    def sender_account(self, pubkey: bytes) -> Account | None:
        return self._executor.lookup_sender(pubkey, self._parent)

    def org_removal(self, org: str) -> int | None:
        return self._executor.lookup_org_removal(org, self._parent)


def _layers_of(parent: ExecResult | None) -> list[Mapping[StateKey, bytes | None]]:
    return [r.writes for r in parent.iter_chain()] if parent is not None else []


def compute_block_header(
    parent: BlockHeader,
    result: ExecResult,
    *,
    chain_id: str,
    epoch: int,
    round: Round,
    proposer: NodeId,
    timestamp_ms: int,
    next_validators_hash: Digest,
    justify: QuorumCert,
) -> BlockHeader:
    """The header of the block `result` executed on `parent`: its commitments (tx_root, tx_count,
    receipt_root, acc_root, acc_size, state_hash: chain/core.py rule 2) are the execution's.
    What `Chain` builds and checks headers with, and what the protocol-doc generators and test
    builders use to make a header outside a `Chain` (chain/core.py re-exports it)."""
    return BlockHeader(
        chain_id=chain_id,
        epoch=epoch,
        height=Height(parent.height + 1),
        round=round,
        parent_id=parent.block_id,
        timestamp_ms=timestamp_ms,
        proposer=proposer,
        tx_root=result.tx_root,
        tx_count=len(result.tx_ids),
        receipt_root=result.receipt_root,
        acc_root=result.frontier.root(),
        acc_size=result.frontier.size,
        state_hash=result.state_hash,
        next_validators_hash=next_validators_hash,
        justify=justify,
    )

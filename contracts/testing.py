"""Test helpers: an in-memory contract state and a context builder.

Rules this module keeps:
1. `MemoryState` implements both `StateAccess` and `StateReader` over a dict; `scan` returns keys
   in ascending byte order, like LevelDB, and copies, so callers may write while iterating.
2. `MemoryStore` holds one `MemoryState` per contract name (the executor's namespacing) and gives
   a reader factory, so queries and `Context.reader_for` work as in a node.
3. `Harness` is a miniature executor: it runs calls the way `chain/executor.py` does and checks
   that a refused call wrote nothing.
4. Nothing here is used on a node's execution path; it exists for tests, examples and docs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gmchain.contracts.framework import (
    Context,
    ContractError,
    ReaderFactory,
    Registry,
    StateReader,
    error_text,
)
from gmchain.contracts.keys import address_of
from gmchain.contracts.membership import genesis_writes, lookup_account
from gmchain.crypto_sm import sm3_hash
from gmchain.ledger.codec import Value, encode
from gmchain.ledger.types import Event, ReceiptStatus

__all__ = ["Harness", "MemoryState", "MemoryStore", "Outcome", "make_context"]


@dataclass(slots=True)
class MemoryState:
    """A dict-backed state of one contract."""

    data: dict[bytes, bytes] = field(default_factory=dict)

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        assert isinstance(key, bytes) and isinstance(value, bytes)
        self.data[key] = value

    def delete(self, key: bytes) -> None:
        self.data.pop(key, None)

    def scan(self, prefix: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        keys = sorted(k for k in self.data if k.startswith(prefix))
        return [(k, self.data[k]) for k in keys[:limit]]

    def snapshot(self) -> dict[bytes, bytes]:
        return dict(self.data)


@dataclass(slots=True)
class MemoryStore:
    """Per-contract states, keyed by contract name."""

    states: dict[str, MemoryState] = field(default_factory=dict)

    def state(self, contract: str) -> MemoryState:
        if contract not in self.states:
            self.states[contract] = MemoryState()
        return self.states[contract]

    def reader(self, contract: str) -> StateReader:
        return self.state(contract)

    @property
    def reader_factory(self) -> ReaderFactory:
        return self.reader

    def snapshot(self) -> dict[str, dict[bytes, bytes]]:
        return {name: s.snapshot() for name, s in self.states.items() if s.data}


def make_context(
    store: MemoryStore,
    contract: str,
    *,
    sender_pubkey: bytes,
    sender_org: str | None,
    sender_role: str | None,
    chain_id: str = "gmchain-test",
    tx_id: bytes = bytes(32),
    height: int = 1,
    timestamp_ms: int = 1_700_000_000_000,
) -> Context:
    """A Context for `contract` over `store`, as the executor would build it."""
    return Context(
        chain_id=chain_id,
        tx_id=tx_id,
        sender_pubkey=sender_pubkey,
        sender=address_of(sender_pubkey),
        sender_org=sender_org,
        sender_role=sender_role,
        height=height,
        timestamp_ms=timestamp_ms,
        state=store.state(contract),
        reader_factory=store.reader_factory,
        writer_factory=store.state,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What the executor would put in a receipt."""

    status: ReceiptStatus
    result: Value = None
    events: tuple[Event, ...] = ()
    error: str = ""


class Harness:
    """A miniature executor for tests: accounts from genesis, one call per 'block'.

    Like `chain/executor.py` it fills sender_org/sender_role from the membership contract and
    turns a ContractError into a failed outcome; unlike it, it *checks* that a failed call left
    the state untouched (rule 4 of `contracts.framework`) instead of discarding the writes.
    """

    def __init__(
        self,
        registry: Registry,
        accounts: Sequence[tuple[bytes, str, str]] = (),
        chain_id: str = "gmchain-test",
        state: Mapping[str, Mapping[bytes, bytes]] | None = None,
    ) -> None:
        """`state`: more genesis state, contract name -> relative key -> value (e.g. the
        governance contract's `gov_state.genesis_writes`)."""
        self.registry = registry
        self.store = MemoryStore()
        self.chain_id = chain_id
        self.height = 0
        self.calls = 0  # calls made (each gets its own tx id)
        self.timestamp_ms = 1_700_000_000_000
        for key, value in genesis_writes(accounts).items():
            self.store.state("membership").put(key, value)
        for name, writes in (state or {}).items():
            for key, value in writes.items():
                self.store.state(name).put(key, value)

    def call(
        self,
        sender_pubkey: bytes,
        contract: str,
        method: str,
        args: Sequence[Value],
        *,
        same_block: bool = False,
    ) -> Outcome:
        """Run one call in a new block, or (`same_block`) in the block of the previous call."""
        self.calls += 1
        if not same_block:
            self.height += 1
            self.timestamp_ms += 1000
        account = lookup_account(self.store.reader("membership"), address_of(sender_pubkey))
        before = self.store.snapshot()
        ctx = make_context(
            self.store,
            contract if contract in self.registry.names else "unknown",
            sender_pubkey=sender_pubkey,
            sender_org=None if account is None else account[1],
            sender_role=None if account is None else account[2],
            chain_id=self.chain_id,
            tx_id=sm3_hash(b"tx" + self.calls.to_bytes(8, "big")),
            height=self.height,
            timestamp_ms=self.timestamp_ms,
        )
        try:
            result = self.registry.invoke(ctx, contract, method, args)
        except ContractError as exc:
            after = self.store.snapshot()
            assert after == before, f"{contract}.{method} wrote state before failing: {exc}"
            return Outcome(status=exc.status, error=error_text(exc))
        encode(result)  # results must be canonical values
        return Outcome(status=ReceiptStatus.OK, result=result, events=tuple(ctx.events))

    def query(self, contract: str, method: str, args: Sequence[Value]) -> Value:
        result = self.registry.query(self.store.reader_factory, contract, method, args)
        encode(result)
        return result

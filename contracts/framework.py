"""The system-contract framework: contexts, argument schemas, methods, queries and the registry.

Rules this module keeps:
1. Contract execution is deterministic. A contract sees only its `Context`: the sender (key,
   address, org, role), the chain id, the transaction id, the block height and the block's
   timestamp from the header (never a wall clock), a state view namespaced to the contract, and
   an event list. No clock, randomness, IO, threads or floats anywhere on the execution path; the
   test `tests/test_contracts_determinism.py` scans the source and rejects them.
2. Arguments are positional lists of canonical values (`ledger.codec`). Every method declares a
   schema (`Arg`) with a type and a bound for every argument, and the registry checks the whole
   list *before* the method runs, so a method only ever sees well-shaped input. Missing trailing
   arguments declared `optional=True` are passed as None.
2b. A node checks one call's arguments once: for a transaction its admission accepted (R6,
   remembered by tx id, which commits to the call), execution runs the method on what the check
   returned (contracts/argshape.py). A call this node never admitted is checked here, in full.
3. Errors are exceptions, never result codes: `BadArguments` (the schema refused the call),
   `UnknownContract`, `UnknownMethod`, and `ContractError` for any rule a method enforces. Each
   carries the `ReceiptStatus` the executor writes and a readable message (bounded by
   `error_text` to what a `Receipt` may hold). Anything else escaping a method is our bug.
4. Methods check everything, then change state (consensus-specs: "invalid calls must not modify
   store"). The executor also discards writes of a failed call, so this is defence in depth.
5. Queries (`@query`) get a read-only view and can never be invoked inside a transaction.
6. Return values are canonical values; record-like results are lists of `[name, value]` pairs in
   a documented fixed order (no maps in the canonical model). Every method declares the shape of
   what it returns (`contracts.results.Shape`), so the JSON layer renders it exactly.

7. A contract writes only its own namespace, with the exceptions listed in `CROSS_WRITES`: the
   governance contract executes committee decisions on accounts (admit an org's first admin,
   revoke an account), so it may write the membership namespace, and on cross-chain light
   clients (register, unfreeze, relay rule: contracts/xc_layout.py), so it may write the
   xclient namespace, through `Context.writer_for`.
   Those writes belong to the same transaction (kept or discarded with it).

Sources: DESIGN.md ("The way a transaction travels", step 6), STYLE.md habits 3, 9, 15,
ledger/types.py (`Event`, `Receipt`, `ReceiptStatus`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Protocol, TypeVar

from gmchain.contracts.argshape import shape_args
from gmchain.contracts.results import Shape
from gmchain.ledger.codec import Value
from gmchain.ledger.types import Event, ReceiptStatus

__all__ = [
    "CROSS_WRITES",
    "IDENT_CHARS",
    "MAX_ERROR_BYTES",
    "Arg",
    "BadArguments",
    "Context",
    "Contract",
    "ContractError",
    "MethodSpec",
    "QueryContext",
    "ReaderFactory",
    "Registry",
    "StateAccess",
    "StateReader",
    "UnknownContract",
    "UnknownMethod",
    "WriterFactory",
    "default_registry",
    "error_text",
    "method",
    "query",
]

# Characters allowed in identifiers (record ids, flow ids, org names, roles). They become part of
# state keys, so NUL (our key separator) and every control character are excluded, and the set is
# ASCII so no Unicode normalisation question can ever arise between nodes.
IDENT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-:/@")
# The same sets as regular expressions (ASCII classes only: no Unicode database is consulted, so
# the answer cannot differ between Python versions).
_IDENT_RE = re.compile(r"[A-Za-z0-9._:/@-]*")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
MAX_ERROR_BYTES = 512  # `Receipt.error` holds at most this many bytes of UTF-8
_U64_MAX = 2**64 - 1
# Rule 7: contract -> the other namespaces it may write.
CROSS_WRITES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"governance": ("membership", "xclient")}
)


# --- state views -----------------------------------------------------------------------------


class StateReader(Protocol):
    """Read-only state of one contract (keys are relative to the contract's namespace)."""

    def get(self, key: bytes) -> bytes | None: ...

    def scan(self, prefix: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        """Up to `limit` (key, value) pairs whose key starts with `prefix`, ascending by key."""
        ...


class StateAccess(Protocol):
    """Read-write state of one contract, given by the executor; sees this block's earlier writes."""

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def scan(self, prefix: bytes, limit: int) -> list[tuple[bytes, bytes]]: ...


ReaderFactory = Callable[[str], StateReader]
WriterFactory = Callable[[str], StateAccess]


# --- errors ------------------------------------------------------------------------------------


class ContractError(Exception):
    """A contract refused the call; the message says which rule failed (-> FAILED receipt)."""

    status: ClassVar[ReceiptStatus] = ReceiptStatus.FAILED


class BadArguments(ContractError):
    """The arguments do not match the method's schema (-> BAD_ARGUMENTS receipt)."""

    status: ClassVar[ReceiptStatus] = ReceiptStatus.BAD_ARGUMENTS


class UnknownContract(ContractError):
    """No contract of that name (-> UNKNOWN_CONTRACT receipt)."""

    status: ClassVar[ReceiptStatus] = ReceiptStatus.UNKNOWN_CONTRACT


class UnknownMethod(ContractError):
    """The contract has no such method, or it is a query called in a transaction."""

    status: ClassVar[ReceiptStatus] = ReceiptStatus.UNKNOWN_METHOD


def error_text(exc: BaseException) -> str:
    """`str(exc)` cut to MAX_ERROR_BYTES of UTF-8 on a character boundary (fits a Receipt)."""
    text = str(exc) or type(exc).__name__
    raw = text.encode()
    if len(raw) <= MAX_ERROR_BYTES:
        return text
    return raw[: MAX_ERROR_BYTES - 3].decode(errors="ignore") + "..."


# --- contexts ----------------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class Context:
    """Everything a transaction's method may see. Built by the executor, one per transaction.

    `timestamp_ms` and `height` come from the block header, never from a clock. `contract` is set
    by the registry before the call so that `emit` can label events.
    """

    chain_id: str
    tx_id: bytes  # 32-byte transaction id
    sender_pubkey: bytes  # 65-byte SM2 public key that signed the transaction
    sender: bytes  # 20-byte address = sm3(sender_pubkey)[:20]
    sender_org: str | None  # from the membership contract; None if the sender has no account
    sender_role: str | None
    height: int
    timestamp_ms: int
    state: StateAccess
    events: list[Event] = field(default_factory=list)
    reader_factory: ReaderFactory | None = None
    writer_factory: WriterFactory | None = None  # rule 7 (the executor gives one to every tx)
    contract: str = ""

    def emit(self, name: str, *fields: tuple[str, Value]) -> None:
        """Record an event of the running contract; fields keep the order given."""
        self.events.append(Event(contract=self.contract, name=name, fields=tuple(fields)))

    def reader_for(self, contract: str) -> StateReader:
        """Read-only view of another contract's state (supplied by the executor)."""
        if self.reader_factory is None:
            raise ContractError(f"no state reader available for contract {contract!r}")
        return self.reader_factory(contract)

    def writer_for(self, contract: str) -> StateAccess:
        """Rule 7: write access to another contract's namespace, for the pairs in CROSS_WRITES."""
        if contract not in CROSS_WRITES.get(self.contract, ()):
            raise ContractError(f"contract {self.contract!r} may not write {contract!r} state")
        if self.writer_factory is None:
            raise ContractError(f"no state writer available for contract {contract!r}")
        return self.writer_factory(contract)


@dataclass(slots=True, kw_only=True)
class QueryContext:
    """What a query sees: its own contract's state, read-only, and readers for the others."""

    state: StateReader
    reader_factory: ReaderFactory

    def reader_for(self, contract: str) -> StateReader:
        return self.reader_factory(contract)


# --- argument schemas --------------------------------------------------------------------------


_KIND_NAMES: dict[type, str] = {str: "str", bytes: "bytes", int: "int", bool: "bool", list: "list"}


@dataclass(frozen=True, slots=True)
class Arg:
    """One positional argument: a name, a type and its bounds.

    - str: `max_len` (UTF-8 bytes, required), `min_len` (default 1), `charset` "text" (no control
      characters) or "ident" (IDENT_CHARS only).
    - bytes: `size` (exact length) or `max_len` (required one of them), `min_len`.
    - int: `min` and `max` (default the u64 range); bools are not ints here.
    - bool: no bounds.
    - list: `max_len` items (required), `min_len`; `items` is the schema of each item, which is
      itself a list of exactly `len(items)` values (e.g. a [key, value] pair).
    - `choices`: for str, the only values accepted.
    """

    name: str
    kind: type
    _: KW_ONLY
    optional: bool = False
    min_len: int | None = None
    max_len: int | None = None
    size: int | None = None
    min: int | None = None
    max: int | None = None
    charset: str = "text"
    items: tuple[Arg, ...] | None = None
    choices: tuple[str, ...] | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        # A schema error is a programming error in a contract: fail at import time.
        assert self.kind in _KIND_NAMES, f"{self.name}: unsupported type {self.kind}"
        assert self.charset in ("text", "ident"), f"{self.name}: unknown charset"
        if self.kind in (str, list):
            assert self.max_len is not None, f"{self.name}: a {self.kind.__name__} needs max_len"
        if self.kind is bytes:
            assert (self.size is None) != (self.max_len is None), f"{self.name}: size or max_len"
        if self.kind is list:
            assert self.items is not None, f"{self.name}: a list needs an item schema"

    def check(self, value: Value) -> Value:
        """Return the value (lists as lists) or raise BadArguments naming this argument."""
        if value is None:
            if self.optional:
                return None
            raise BadArguments(f"argument {self.name!r} is required")
        kind = self.kind
        if kind is str:  # (the most common kind first)
            return self._check_str(value)
        if kind is int:
            return self._check_int(value)
        if kind is bool:
            if not isinstance(value, bool):
                raise self._type_error(value)
            return value
        if kind is bytes:
            return self._check_bytes(value)
        return self._check_list(value)

    def _type_error(self, value: Value) -> BadArguments:
        want = _KIND_NAMES[self.kind]
        return BadArguments(f"argument {self.name!r} must be {want}, got {type(value).__name__}")

    def _check_int(self, value: Value) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._type_error(value)
        lo = 0 if self.min is None else self.min
        hi = _U64_MAX if self.max is None else self.max
        if not lo <= value <= hi:
            raise BadArguments(f"argument {self.name!r} must be in [{lo}, {hi}], got {value}")
        return value

    def _check_str(self, value: Value) -> str:
        if not isinstance(value, str):
            raise self._type_error(value)
        try:
            # (ASCII text is one byte a character; only other text is encoded to count its bytes)
            n = len(value) if value.isascii() else len(value.encode())
        except UnicodeEncodeError as exc:  # a lone surrogate (JSON "\ud800"): no UTF-8 form
            raise BadArguments(
                f"argument {self.name!r} is not valid UTF-8 text (a lone surrogate "
                f"at character {exc.start})"
            ) from None
        lo = 1 if self.min_len is None else self.min_len
        assert self.max_len is not None
        if n < lo:
            raise BadArguments(
                f"argument {self.name!r} must not be empty"
                if lo == 1
                else f"argument {self.name!r} is shorter than {lo} bytes"
            )
        if n > self.max_len:
            raise BadArguments(
                f"argument {self.name!r} is {n} bytes of UTF-8, the limit is {self.max_len}"
            )
        if self.choices is not None and value not in self.choices:
            raise BadArguments(
                f"argument {self.name!r} must be one of {', '.join(self.choices)}; got {value!r}"
            )
        if self.charset == "ident":
            if _IDENT_RE.fullmatch(value) is None:
                bad = next(c for c in value if c not in IDENT_CHARS)
                raise BadArguments(
                    f"argument {self.name!r} contains {bad!r}; allowed: letters, digits "
                    "and . _ - : / @"
                )
        elif _CONTROL_RE.search(value) is not None:
            raise BadArguments(f"argument {self.name!r} contains a control character")
        return value

    def _check_bytes(self, value: Value) -> bytes:
        if not isinstance(value, bytes):
            raise self._type_error(value)
        if self.size is not None:
            if len(value) != self.size:
                raise BadArguments(
                    f"argument {self.name!r} must be {self.size} bytes, got {len(value)}"
                )
            return value
        assert self.max_len is not None
        lo = 0 if self.min_len is None else self.min_len
        if not lo <= len(value) <= self.max_len:
            raise BadArguments(
                f"argument {self.name!r} must be {lo} to {self.max_len} bytes, got {len(value)}"
            )
        return value

    def _check_list(self, value: Value) -> list[Value]:
        if not isinstance(value, list | tuple):
            raise self._type_error(value)
        assert self.max_len is not None and self.items is not None
        lo = 0 if self.min_len is None else self.min_len
        if not lo <= len(value) <= self.max_len:
            raise BadArguments(
                f"argument {self.name!r} must have {lo} to {self.max_len} items, got {len(value)}"
            )
        out: list[Value] = []
        for i, item in enumerate(value):
            if not isinstance(item, list | tuple) or len(item) != len(self.items):
                raise BadArguments(
                    f"argument {self.name!r} item {i} must be a list of {len(self.items)} values"
                )
            checked = []
            for sub, v in zip(self.items, item, strict=True):
                try:
                    checked.append(sub.check(v))
                except BadArguments as exc:
                    raise BadArguments(f"argument {self.name!r} item {i}: {exc}") from None
            out.append(checked)
        return out

    def describe(self) -> dict[str, Any]:
        """JSON-able description of this argument (for rpc.discover, docs and CLI help)."""
        d: dict[str, Any] = {"name": self.name, "type": _KIND_NAMES[self.kind]}
        if self.optional:
            d["optional"] = True
        if self.kind is str:
            d["min_len"] = 1 if self.min_len is None else self.min_len
            d["max_len"] = self.max_len
            d["charset"] = self.charset
            if self.choices is not None:
                d["choices"] = list(self.choices)
        elif self.kind is bytes:
            if self.size is not None:
                d["size"] = self.size
            else:
                d["min_len"] = 0 if self.min_len is None else self.min_len
                d["max_len"] = self.max_len
        elif self.kind is int:
            d["min"] = 0 if self.min is None else self.min
            d["max"] = _U64_MAX if self.max is None else self.max
        elif self.kind is list:
            d["min_len"] = 0 if self.min_len is None else self.min_len
            d["max_len"] = self.max_len
            assert self.items is not None
            d["items"] = [a.describe() for a in self.items]
        if self.doc:
            d["doc"] = self.doc
        return d


# --- method declarations -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class MethodSpec:
    """A declared method or query: its public name, argument schema and documentation."""

    name: str
    args: tuple[Arg, ...]
    readonly: bool
    attr: str  # the Python attribute implementing it
    doc: str = ""
    returns: Shape = field(default_factory=lambda: Shape.of("any"))

    def check_args(self, args: Sequence[Value]) -> list[Value]:
        """Check a positional argument list against the schema (rule 2)."""
        if not isinstance(args, list | tuple):
            raise BadArguments("arguments must be a list")
        if len(args) > len(self.args):
            raise BadArguments(
                f"{self.name} takes at most {len(self.args)} arguments, got {len(args)}"
            )
        values = list(args) + [None] * (len(self.args) - len(args))
        for i in range(len(args), len(self.args)):
            if not self.args[i].optional:
                names = ", ".join(a.name for a in self.args)
                raise BadArguments(
                    f"{self.name} needs argument {self.args[i].name!r} "
                    f"(position {i}); its arguments are: {names}"
                )
        return [a.check(v) for a, v in zip(self.args, values, strict=True)]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "query" if self.readonly else "method",
            "doc": self.doc,
            "args": [a.describe() for a in self.args],
            "returns": self.returns.describe(),
        }


_F = TypeVar("_F", bound=Callable[..., Any])
_SPEC_ATTR = "__gmchain_method__"


def _declare(args: tuple[Arg, ...], readonly: bool, name: str | None, returns: Shape | str) -> Any:
    names = [a.name for a in args]
    assert len(set(names)) == len(names), f"duplicate argument names {names}"

    def wrap(fn: _F) -> _F:
        doc = (fn.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        spec = MethodSpec(
            name=name or fn.__name__,
            args=args,
            readonly=readonly,
            attr=fn.__name__,
            doc=" ".join(doc.split()),
            returns=returns if isinstance(returns, Shape) else Shape.of("any", doc=returns),
        )
        setattr(fn, _SPEC_ATTR, spec)
        return fn

    return wrap


def method(*args: Arg, name: str | None = None, returns: Shape | str = "") -> Callable[[_F], _F]:
    """Declare a transaction method `fn(self, ctx: Context, *values) -> Value`; `returns` is its
    result's shape (a bare string: a free-form value, the string its description)."""
    return _declare(args, False, name, returns)  # type: ignore[no-any-return]


def query(*args: Arg, name: str | None = None, returns: Shape | str = "") -> Callable[[_F], _F]:
    """Declare a read-only query `fn(self, q: QueryContext, *values) -> Value`."""
    return _declare(args, True, name, returns)  # type: ignore[no-any-return]


class Contract:
    """Base for system contracts: a NAME and methods declared with @method / @query."""

    NAME: ClassVar[str]

    @classmethod
    def specs(cls) -> list[MethodSpec]:
        """Declared methods and queries, in source order."""
        out = []
        for attr in cls.__dict__.values():
            spec = getattr(attr, _SPEC_ATTR, None)
            if isinstance(spec, MethodSpec):
                out.append(spec)
        return out


# --- the registry ------------------------------------------------------------------------------


class Registry:
    """The contracts a chain runs, by name; dispatches transactions and queries to them."""

    def __init__(self, contracts: Sequence[Contract]) -> None:
        self._contracts: dict[str, Contract] = {}
        self._specs: dict[str, dict[str, MethodSpec]] = {}
        for c in contracts:
            name = type(c).NAME
            assert name not in self._contracts, f"duplicate contract {name!r}"
            assert 0 < len(name.encode()) <= 32, f"contract name {name!r} must be 1..32 bytes"
            specs: dict[str, MethodSpec] = {}
            for spec in type(c).specs():
                assert spec.name not in specs, f"{name}: duplicate method {spec.name!r}"
                specs[spec.name] = spec
            self._contracts[name] = c
            self._specs[name] = specs

    @property
    def names(self) -> list[str]:
        return list(self._contracts)

    def contract(self, name: str) -> Contract:
        """Return the contract object called `name`, or raise UnknownContract."""
        c = self._contracts.get(name)
        if c is None:
            known = ", ".join(self._contracts)
            raise UnknownContract(f"unknown contract {name!r}; known contracts: {known}")
        return c

    def spec(self, contract: str, method: str) -> MethodSpec:
        """Return the declaration of `contract.method`, or raise UnknownContract/UnknownMethod."""
        self.contract(contract)
        spec = self._specs[contract].get(method)
        if spec is None:
            known = ", ".join(self._specs[contract])
            raise UnknownMethod(
                f"contract {contract!r} has no method {method!r}; its methods are: {known}"
            )
        return spec

    def is_query(self, contract: str, method: str) -> bool:
        """True if `contract.method` is a read-only query; raises if it does not exist."""
        return self.spec(contract, method).readonly

    def invoke(
        self,
        ctx: Context,
        contract: str,
        method: str,
        args: Sequence[Value],
        *,
        args_checked: bool = False,
    ) -> Value:
        """Run a transaction's call. Raises a ContractError subclass on any refusal.
        `args_checked`: this node already checked this very call's `args` (rule 2b)."""
        spec = self.spec(contract, method)
        if spec.readonly:
            raise UnknownMethod(
                f"{contract}.{method} is a query; call it through a query, not a transaction"
            )
        values = shape_args(spec.args, args) if args_checked else spec.check_args(args)
        ctx.contract = contract
        fn = getattr(self._contracts[contract], spec.attr)
        return fn(ctx, *values)

    def query(
        self,
        reader_factory: ReaderFactory,
        contract: str,
        method: str,
        args: Sequence[Value],
    ) -> Value:
        """Run a read-only query against committed state."""
        spec = self.spec(contract, method)
        if not spec.readonly:
            raise UnknownMethod(
                f"{contract}.{method} changes state; submit it as a transaction, not a query"
            )
        values = spec.check_args(args)
        q = QueryContext(state=reader_factory(contract), reader_factory=reader_factory)
        fn = getattr(self._contracts[contract], spec.attr)
        return fn(q, *values)

    def describe(self) -> dict[str, Any]:
        """JSON-able list of contracts, their methods and argument schemas."""
        return {
            "contracts": [
                {
                    "name": name,
                    "doc": " ".join((type(c).__doc__ or "").strip().split("\n\n")[0].split()),
                    "methods": [s.describe() for s in self._specs[name].values()],
                }
                for name, c in self._contracts.items()
            ]
        }


def default_registry(extra: Sequence[Contract] = ()) -> Registry:
    """The system contracts: membership, evidence and governance, then `extra` (a node adds
    crosschain's xclient: `gmchain.crosschain.node_registry`)."""
    # Imported here: those modules import this one.
    from gmchain.contracts.evidence import EvidenceContract
    from gmchain.contracts.governance import GovernanceContract
    from gmchain.contracts.membership import MembershipContract

    return Registry([MembershipContract(), EvidenceContract(), GovernanceContract(), *extra])

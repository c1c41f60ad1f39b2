"""The node's internal query/submit surface, as the RPC layer sees it.

`node/rpc.py` depends only on this Protocol, so it can be tested against a fake and wired to the
real daemon (`node/daemon.py`) without either knowing the other's insides.

Rules:
1. Every method either returns a value or raises `ApiError(code, message)`; no other exception is
   part of the contract (anything else is our bug and becomes an internal error).
2. Reads never block the event loop for long: they are LevelDB gets and small computations.
3. `submit_raw_tx` returns only after the transaction is in the pool (verified once, admitted);
   it never silently drops: a full pool is an `ApiError(POOL_FULL, ...)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import Any, Protocol

from gmchain.chain.txrules import Rejection
from gmchain.ledger.codec import Value
from gmchain.ledger.epoch import EpochConfig
from gmchain.ledger.types import Block, BlockHeader, Receipt, SignedTx

__all__ = [
    "REJECTION_CODES",
    "ApiError",
    "EpochInfo",
    "ErrorCode",
    "NodeApi",
    "NodeStatus",
    "TxLookup",
    "rejected",
]


class ErrorCode(IntEnum):
    """JSON-RPC error codes. -32768..-32000 are reserved by JSON-RPC 2.0; ours are -31999 up."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    # transaction admission
    BAD_ENCODING = -31001  # raw tx does not decode canonically
    TOO_LARGE = -31002
    WRONG_CHAIN = -31003
    BAD_SIGNATURE = -31004
    EXPIRED = -31005  # expiry <= head
    EXPIRY_TOO_FAR = -31006  # expiry > head + W
    DUPLICATE = -31007  # already pending or committed within the window
    POOL_FULL = -31008
    SENDER_QUOTA = -31009
    UNKNOWN_SENDER = -31010  # not an admitted account
    UNKNOWN_CONTRACT = -31011  # also an unknown method, or a query sent as a transaction
    BAD_ARGUMENTS = -31012  # the args do not fit the method's schema (gm_contracts)
    STORAGE_UNAVAILABLE = -31020  # disk nearly full or the pool log write failed: retry later
    # reads
    NOT_FOUND = -31101
    QUERY_FAILED = -31102  # a read-only contract query refused (its message says why)
    BAD_RANGE = -31103
    # read authentication (node/rpcauth.py; docs/rpc.md "Read authentication"): in JSON-RPC
    # 2.0's -32000..-32099 range, reserved for implementation-defined server errors
    LOGIN_REQUIRED = -32010  # also: a login refused (the message says why)
    TOKEN_INVALID = -32011  # the bearer token is unknown or expired: log in again
    FORBIDDEN = -32012  # the data belongs to another org (or needs the regulator's readAll)
    # service
    RATE_LIMITED = -31201
    TOO_MANY_SUBSCRIPTIONS = -31202
    NOT_READY = -31203


class ApiError(Exception):
    """A caller-facing error with a JSON-RPC code and a readable message."""

    def __init__(self, code: ErrorCode, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


# The one place a transaction's Rejection (chain/txrules.py) becomes a JSON-RPC code.
REJECTION_CODES: Mapping[Rejection, ErrorCode] = MappingProxyType(
    {
        Rejection.TOO_LARGE: ErrorCode.TOO_LARGE,
        Rejection.BAD_ENCODING: ErrorCode.BAD_ENCODING,
        Rejection.WRONG_CHAIN: ErrorCode.WRONG_CHAIN,
        Rejection.INVALID_KEY: ErrorCode.BAD_SIGNATURE,
        Rejection.EXPIRED: ErrorCode.EXPIRED,
        Rejection.EXPIRY_TOO_FAR: ErrorCode.EXPIRY_TOO_FAR,
        Rejection.UNKNOWN_CONTRACT: ErrorCode.UNKNOWN_CONTRACT,
        Rejection.UNKNOWN_METHOD: ErrorCode.UNKNOWN_CONTRACT,
        Rejection.QUERY_METHOD: ErrorCode.UNKNOWN_CONTRACT,
        Rejection.BAD_ARGUMENTS: ErrorCode.BAD_ARGUMENTS,
        Rejection.DUPLICATE: ErrorCode.DUPLICATE,
        Rejection.POOL_FULL: ErrorCode.POOL_FULL,
        Rejection.SENDER_QUOTA: ErrorCode.SENDER_QUOTA,
        Rejection.UNKNOWN_SENDER: ErrorCode.UNKNOWN_SENDER,
        Rejection.ORG_REMOVED: ErrorCode.UNKNOWN_SENDER,  # the message names the org and proposal
        Rejection.BAD_SIGNATURE: ErrorCode.BAD_SIGNATURE,
    }
)
if set(REJECTION_CODES) != set(Rejection):  # a new Rejection must be given its code here
    raise AssertionError(f"no RPC code for {set(Rejection) - set(REJECTION_CODES)}")


def rejected(rejection: Rejection, message: str) -> ApiError:
    """The caller-facing error for a refused transaction (REJECTION_CODES)."""
    return ApiError(REJECTION_CODES[rejection], message)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStatus:
    chain_id: str
    node_id: bytes
    role: str  # "validator" | "observer"
    height: int
    head: bytes  # block id at `height`
    genesis: bytes  # genesis block id
    pending_txs: int
    peers: int
    version: str
    round: int
    committed_txs: int  # accumulator size
    replay_window: int = 0  # W: a tx is valid while head < expiry <= head + W
    # Catching up (consensus L10): the highest committed height verified certificates show, how far
    # `height` trails it, whether the node is still catching up (it has not heard from any peer
    # yet, or trails by more than one block) and whether /health may call it healthy.
    peer_height: int = 0
    lag: int = 0
    catching_up: bool = False
    healthy: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class TxLookup:
    tx: SignedTx
    height: int
    index: int
    block_id: bytes
    receipt_bytes: bytes  # the stored receipt: decoded only when asked (`receipt`), since
    # gm_getTransactionByHash serves none of it (a fifth of its cost was this decode)
    tx_bytes: bytes = b""  # the tx's stored canonical bytes when read from them (else encode)

    @property
    def receipt(self) -> Receipt:
        return Receipt.decode(self.receipt_bytes)


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochInfo:
    """The epoch of the next block to commit (docs/governance.md, "Epochs"): the latest epoch
    configuration the governance contract wrote (EPOCHS.md E2) in committed state, and the
    height its first block has (0 for epoch 0, else the epoch-ending block's height + 1)."""

    config: EpochConfig
    start_height: int
    height: int  # the committed head these were read at


class NodeApi(Protocol):
    """What the JSON-RPC layer may ask of a node."""

    def status(self) -> NodeStatus: ...

    async def submit_raw_tx(self, raw: bytes) -> bytes:
        """Admit a raw transaction into the pool; return its id. Raises ApiError."""
        ...

    def get_tx(self, tx_id: bytes) -> TxLookup | None: ...

    def get_receipt(self, tx_id: bytes) -> tuple[Receipt, int, int] | None:
        """(receipt, height, index) of a committed tx, or None if unknown/pending."""
        ...

    def is_pending(self, tx_id: bytes) -> bool: ...

    def dropped_reason(self, tx_id: bytes) -> ApiError | None:
        """Why the tx left the pool without committing (it never will), if it did."""
        ...

    def get_block(self, height: int) -> Block | None: ...

    def get_block_by_hash(self, block_id: bytes) -> Block | None: ...

    def get_block_id(self, height: int) -> bytes | None:
        """A committed block's id (no block decoded), or None."""
        ...

    def get_block_summary(self, height: int) -> tuple[BlockHeader, list[bytes]] | None:
        """A committed block's header and tx ids (no transaction decoded), or None."""
        ...

    def get_block_summary_by_hash(self, block_id: bytes) -> tuple[BlockHeader, list[bytes]] | None:
        """As `get_block_summary`, by block id."""
        ...

    def height(self) -> int: ...

    def call(self, contract: str, method: str, args: Sequence[Value]) -> Value:
        """Run a read-only contract query against committed state. Raises ApiError."""
        ...

    async def tx_proof(
        self, tx_id: bytes, at_height: int | None = None, *, client: str = ""
    ) -> dict[str, Any]:
        """A JSON proof bundle (docs/protocol.md §9, version 2) proving the tx and its receipt
        in its block, and in the accumulator of the header at `at_height` (default: its own
        certified tip). Built off the event loop; `client` (the caller's address) bounds one
        caller's share of the proof workers. Raises ApiError."""
        ...

    async def consistency_proof(
        self, old_height: int, new_height: int, *, client: str = ""
    ) -> dict[str, Any]:
        """A JSON consistency proof between the accumulators of two headers. Raises ApiError."""
        ...

    async def commit_proof(self, height: int, *, client: str = "") -> dict[str, Any]:
        """The certificate that the block at `height` is committed, as JSON. Raises ApiError."""
        ...

    def subscribe_heads(self) -> AsyncIterator[Block]:
        """Every block committed from now on, in order."""
        ...

    def subscribe_events(self, contract: str | None, name: str | None) -> AsyncIterator[Any]:
        """(height, tx_id, Event) for committed events matching the filter."""
        ...

    async def wait_tx(self, tx_id: bytes, timeout_s: float) -> tuple[Receipt, int, int] | None:
        """Wait until the tx commits (or the timeout passes: None). Raises ApiError with the
        recorded reason if the tx left the pool without committing."""
        ...

    def account_of(self, pubkey: bytes) -> tuple[str, str] | None:
        """(org, role) of `pubkey`'s live account in committed membership state, or None
        (revoked, or its org removed by governance)."""
        ...

    def org_of(self, pubkey: bytes) -> str | None:
        """The org of `pubkey`'s account, live or revoked, or None if it never had one."""
        ...

    async def verify_signature(self, pubkey: bytes, root: bytes, signature: bytes) -> bool:
        """An SM2 signature check off the event loop (the pools transaction admission uses)."""
        ...

    def metrics_text(self) -> bytes:
        """Prometheus exposition of this node's metrics."""
        ...

    def describe_contracts(self) -> dict[str, Any]: ...

    def current_epoch(self) -> EpochInfo:
        """The current epoch (EpochInfo), read from one snapshot of committed state."""
        ...

    def epoch_config(self, epoch: int) -> EpochConfig | None:
        """The configuration of `epoch` from committed state, or None if none was written."""
        ...

    async def epoch_proof(self, from_epoch: int, to_epoch: int, *, client: str = "") -> Any:
        """The epoch-change proof from `from_epoch` to `to_epoch` (EPOCHS.md E8) as JSON; the
        caller has checked 0 <= from_epoch <= to_epoch <= the current epoch. Raises ApiError."""
        ...

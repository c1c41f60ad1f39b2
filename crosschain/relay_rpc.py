"""The relayer's view of a chain: the JSON-RPC calls it makes and the transactions it signs.

crosschain may not import node (tests/test_architecture.py), so the relayer names what it needs
as Protocols and node/cli_relay.py adapts the SDK client and a key file to them.

Rules this module keeps:
1. `ChainRpc.call(method, params)` is one JSON-RPC call (docs/rpc.md): it returns the `result`
   or raises `RelayRpcError` (the node answered with an error object: `code`, `message`) or
   `RelayUnreachable` (no answer). Nothing else is asked of a node. TLS and the read login
   (docs/rpc.md) are the adapter's: node/cli_relay.py rule 5 (`--ca-file`, `--auth-key`).
2. The relayer's transactions are ordinary ones (docs/protocol.md section 5): chain id of the
   node, the signer's key as sender, 64 random bits of nonce, expiry = the node's head plus half
   its replay window. The signer only signs a transaction id (`Signer.sign`).
3. At most `max_inflight` transactions of one `TxSender` are submitted and not yet committed
   at any time (backpressure): a caller past the bound waits for a slot. A transaction whose
   receipt does not come within `timeout_s` is reported as lost (its slot is freed): the next
   cycle re-reads progress, so a lost transaction costs a retry, never a duplicate
   (the destination refuses duplicates idempotently).
4. Contract results arrive as the JSON `gm_call` renders (objects with camelCase members, or
   `[name, value]` pairs); `record(value)` reads either as a dict keyed by snake_case names.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gmchain.ledger.codec import Value
from gmchain.ledger.jsonvalues import hex0x
from gmchain.ledger.types import Height, SignedTx, TxBody

__all__ = [
    "ChainRpc",
    "ChainView",
    "RelayRpcError",
    "RelayUnreachable",
    "Signer",
    "TxOutcome",
    "TxSender",
    "jsonable_args",
    "record",
]

NOT_FOUND = -31101  # docs/rpc.md, error table
BUSY = -31201


class RelayRpcError(Exception):
    """Rule 1: the node answered with a JSON-RPC error object."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message


class RelayUnreachable(Exception):
    """Rule 1: the node did not answer."""


class ChainRpc(Protocol):
    """Rule 1."""

    async def call(self, method: str, params: list[Any]) -> Any: ...


class Signer(Protocol):
    """Rule 2: the relayer's account key (an ordinary admitted account on both chains)."""

    @property
    def public_key(self) -> bytes: ...

    def sign(self, tx_id: bytes) -> bytes: ...


def jsonable_args(value: Value) -> Any:
    """A canonical value as `gm_call` arguments (bytes as 0x hex)."""
    if isinstance(value, bytes):
        return hex0x(value)
    if isinstance(value, list | tuple):
        return [jsonable_args(v) for v in value]
    return value


_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


def record(value: Any) -> dict[str, Any] | None:
    """Rule 4: a record result (object or `[name, value]` pairs) as a dict of snake_case names;
    None stays None; anything else is not a record (ValueError)."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {_snake(str(k)): v for k, v in value.items()}
    if isinstance(value, list) and all(
        isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in value
    ):
        return {_snake(p[0]): p[1] for p in value}
    raise ValueError(f"expected a record, got {type(value).__name__}")


class ChainView:
    """One chain as the relayer sees it: its id, head, epoch, and contract queries."""

    def __init__(self, rpc: ChainRpc, name: str) -> None:
        self.rpc = rpc
        self.name = name  # for log lines ("business", "regulator")
        self._info: tuple[str, int] | None = None  # (chain id, replay window): never change

    async def info(self) -> tuple[str, int]:
        if self._info is None:
            info = await self.rpc.call("gm_nodeInfo", [])
            window = info.get("replayWindow")
            self._info = (str(info["chainId"]), int(window) if isinstance(window, int) else 40)
        return self._info

    async def chain_id(self) -> str:
        return (await self.info())[0]

    async def head(self) -> int:
        return int(await self.rpc.call("gm_blockNumber", []))

    async def epoch(self) -> int:
        return int((await self.rpc.call("gm_getEpoch", []))["epoch"])

    async def query(self, contract: str, method: str, args: Sequence[Value]) -> Any:
        return await self.rpc.call("gm_call", [contract, method, jsonable_args(list(args))])

    async def tx_raw(self, tx_id: bytes) -> str:
        tx = await self.rpc.call("gm_getTransactionByHash", [hex0x(tx_id)])
        if not isinstance(tx, Mapping) or tx.get("pending") is not False:
            raise RelayRpcError(NOT_FOUND, f"transaction {hex0x(tx_id)} is not committed")
        return str(tx["raw"])

    async def tx_proof(self, tx_id: bytes) -> Any:
        """gm_getTransactionProof, retried while the node says it is busy (-31201)."""
        for attempt in range(20):
            try:
                return await self.rpc.call("gm_getTransactionProof", [hex0x(tx_id)])
            except RelayRpcError as exc:
                if exc.code != BUSY:
                    raise
                await asyncio.sleep(min(2.0, 0.05 * 2**attempt))
        raise RelayRpcError(BUSY, "the node stayed busy with proofs")


@dataclass(frozen=True, slots=True)
class TxOutcome:
    """A submitted transaction: its receipt JSON, or None when it was lost (rule 3)."""

    tx_id: bytes
    receipt: Mapping[str, Any] | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.receipt is not None and self.receipt.get("status") == 0


class TxSender:
    """Rules 2 and 3: sign, submit and wait, never more than `max_inflight` at once."""

    def __init__(
        self, chain: ChainView, signer: Signer, *, max_inflight: int = 4, timeout_s: float = 60
    ) -> None:
        if max_inflight < 1:
            raise ValueError("max_inflight must be >= 1")
        self.chain = chain
        self.signer = signer
        self.max_inflight = max_inflight
        self.timeout_s = timeout_s
        self._slots = asyncio.Semaphore(max_inflight)
        self.inflight = 0  # submitted, receipt not yet seen (<= max_inflight)
        self.peak_inflight = 0

    async def build(self, contract: str, method: str, args: Sequence[Value]) -> SignedTx:
        chain_id, window = await self.chain.info()
        head = await self.chain.head()
        body = TxBody(
            chain_id=chain_id,
            sender=self.signer.public_key,
            nonce=secrets.randbits(64),
            expiry=Height(head + max(1, window // 2)),
            contract=contract,
            method=method,
            args=tuple(args),
        )
        return SignedTx(body=body, signature=self.signer.sign(body.compute_id()))

    async def send(self, contract: str, method: str, args: Sequence[Value]) -> TxOutcome:
        async with self._slots:
            tx = await self.build(contract, method, args)
            self.inflight += 1
            self.peak_inflight = max(self.peak_inflight, self.inflight)
            try:
                return await self._submit_and_wait(tx)
            finally:
                self.inflight -= 1

    async def _submit_and_wait(self, tx: SignedTx) -> TxOutcome:
        rpc = self.chain.rpc
        try:
            await rpc.call("gm_sendRawTransaction", [hex0x(tx.encode())])
        except RelayRpcError as exc:
            return TxOutcome(tx.tx_id, None, f"refused by the node: {exc}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while (left := deadline - loop.time()) > 0:
            chunk_ms = int(min(left, 10.0) * 1000)
            try:
                receipt = await rpc.call("gm_waitForReceipt", [hex0x(tx.tx_id), chunk_ms])
            except RelayRpcError as exc:  # dropped from the pool (expired, revoked)
                return TxOutcome(tx.tx_id, None, f"dropped: {exc}")
            if isinstance(receipt, Mapping) and not receipt.get("pending", False):
                return TxOutcome(tx.tx_id, receipt)
        return TxOutcome(tx.tx_id, None, f"no receipt within {self.timeout_s:g} s")

"""`SyncClient`: the asyncio `Client` for scripts and the CLI, one `asyncio.run` per call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.codec import Value
from gmchain.ledger.types import SignedTx
from gmchain.node.sdk.client import DEFAULT_URL, Client

__all__ = ["SyncClient"]

_T = TypeVar("_T")


class SyncClient:
    """`Client` for scripts and the CLI: every method runs to completion (`asyncio.run` per call).

    Each call opens and closes its own connection; the chain id and window stay cached.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout_s: float = 10,
        ca_file: str | None = None,
        auth_key: PrivateKey | None = None,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.ca_file = ca_file
        self.auth_key = auth_key
        self._chain: tuple[str, int] | None = None
        self._token: str | None = None  # kept between calls: one login per token lifetime

    def _run(self, fn: Callable[[Client], Awaitable[_T]]) -> _T:
        async def go() -> _T:
            async with Client(
                self.url, timeout_s=self.timeout_s, ca_file=self.ca_file, auth_key=self.auth_key
            ) as client:
                client._chain, client._token = self._chain, self._token
                try:
                    return await fn(client)
                finally:
                    self._chain, self._token = client._chain, client._token

        return asyncio.run(go())

    def login(self) -> dict[str, Any]:
        return self._run(lambda c: c.login())

    def call_rpc(self, method: str, params: list[Any] | None = None) -> Any:
        return self._run(lambda c: c.call_rpc(method, params))

    def node_info(self) -> dict[str, Any]:
        return self._run(lambda c: c.node_info())

    def status(self) -> dict[str, Any]:
        return self._run(lambda c: c.status())

    def height(self) -> int:
        return self._run(lambda c: c.height())

    def chain_id(self) -> str:
        return self._run(lambda c: c.chain_id())

    def get_tx(self, tx_id: bytes) -> dict[str, Any] | None:
        return self._run(lambda c: c.get_tx(tx_id))

    def get_receipt(self, tx_id: bytes) -> dict[str, Any] | None:
        return self._run(lambda c: c.get_receipt(tx_id))

    def query(self, contract: str, method: str, args: Sequence[Value]) -> Any:
        return self._run(lambda c: c.query(contract, method, args))

    def get_evidence(self, record_id: str) -> dict[str, Any]:
        return self._run(lambda c: c.get_evidence(record_id))

    def get_flow(self, flow_id: str) -> dict[str, Any]:
        return self._run(lambda c: c.get_flow(flow_id))

    def verify_flow(self, flow_id: str) -> dict[str, Any]:
        return self._run(lambda c: c.verify_flow(flow_id))

    def get_tx_proof(self, tx_id: bytes, at_height: int | None = None) -> dict[str, Any]:
        return self._run(lambda c: c.get_tx_proof(tx_id, at_height))

    def build_tx(
        self,
        key: PrivateKey,
        contract: str,
        method: str,
        args: Sequence[Value],
        *,
        chain_id: str,
        expiry: int,
        nonce: int | None = None,
    ) -> SignedTx:
        return Client(self.url).build_tx(
            key, contract, method, args, chain_id=chain_id, expiry=expiry, nonce=nonce
        )

    def send(
        self,
        key: PrivateKey,
        contract: str,
        method: str,
        args: Sequence[Value],
        *,
        wait: bool = True,
        timeout_s: float = 30,
    ) -> dict[str, Any]:
        return self._run(
            lambda c: c.send(key, contract, method, args, wait=wait, timeout_s=timeout_s)
        )

    def submit_evidence(self, key: PrivateKey, **kwargs: Any) -> dict[str, Any]:
        return self._run(lambda c: c.submit_evidence(key, **kwargs))

    def attest(self, key: PrivateKey, **kwargs: Any) -> dict[str, Any]:
        return self._run(lambda c: c.attest(key, **kwargs))

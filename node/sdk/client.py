"""The asyncio client of one gmchain node: JSON-RPC over HTTP, receipts over WebSocket.

Rules 1-3, 5, 7 and 8 of gmchain.node.sdk (the package docstring) are kept here. aiohttp's client
is the only network dependency; nothing here imports aiohttp's server, LevelDB or the node.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import ssl
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import aiohttp

from gmchain.crypto_sm import PrivateKey, sm3_hash
from gmchain.ledger.codec import Value
from gmchain.ledger.types import Height, SignedTx, TxBody
from gmchain.ledger.wire import compute_signing_root
from gmchain.node.sdk.errors import NodeUnreachable, RpcError, SdkError, TxTimeout, from_hex, to_hex

__all__ = ["DEFAULT_URL", "Client"]

DEFAULT_URL = "http://127.0.0.1:8545"
# -32010 login required, -32011 token expired or unknown (docs/rpc.md, Errors): log in again
_LOGIN_CODES = (-32010, -32011)
# Expiry distance when the node does not say its replay window W (rule 2): valid for any W >= 20.
_FALLBACK_EXPIRY_DELTA = 20


def _field(obj: Mapping[str, Any], *names: str) -> Any:
    """The first of `names` present in a reply object (snake_case or camelCase spelling)."""
    for name in names:
        if name in obj:
            return obj[name]
    raise SdkError(f"the node's reply lacks the field {names[0]!r}")


def _jsonable(value: Value) -> Any:
    """A canonical value as JSON for `gm_call`: bytes become `0x` hex (the RPC converts back by
    the contract's argument schema)."""
    if isinstance(value, bytes):
        return to_hex(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


class Client:
    """An asyncio JSON-RPC client of one gmchain node (HTTP POST + WebSocket subscriptions).

    `ca_file`: a PEM file of the certificates to trust for an https:// node (e.g. the node's
    self-signed rpc.crt); None trusts the system's CAs. `auth_key`: the account key to log in
    with when the node has rpc_auth = "reads" (rule 8)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout_s: float = 10,
        ca_file: str | None = None,
        auth_key: PrivateKey | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)
        # Cached per node: (chain id, expiry distance W // 2). Never the head (rule 2).
        self._chain: tuple[str, int] | None = None
        self._ssl: ssl.SSLContext | bool = (
            True if ca_file is None else ssl.create_default_context(cafile=ca_file)
        )
        self.auth_key = auth_key
        self._token: str | None = None  # the bearer token of the last login (rule 8)

    # --- plumbing ---------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    @property
    def ws_url(self) -> str:
        base = self.url
        for rpc_path in ("/rpc",):
            if base.endswith(rpc_path):
                base = base[: -len(rpc_path)]
        return "ws" + base[len("http") :] + "/ws" if base.startswith("http") else base + "/ws"

    def _headers(self) -> dict[str, str]:
        return {} if self._token is None else {"Authorization": f"Bearer {self._token}"}

    async def login(self) -> dict[str, Any]:
        """Log in with `auth_key` (docs/rpc.md "Read authentication"); the SDK does this by
        itself when a read needs it (rule 8). Returns {token, org, role, readAll, expiresMs}."""
        if self.auth_key is None:
            raise SdkError("this read needs a login: give the client an auth_key")
        info = await self._post("gm_nodeInfo", [], None)
        chain_id = str(_field(info, "chainId"))
        node_id = from_hex(_field(info, "nodeId"), 20, what="nodeId")
        ch = await self._post("gm_authChallenge", [], None)
        challenge = from_hex(_field(ch, "challenge"), 32, what="challenge")
        root = compute_signing_root("rpc-login", [chain_id, node_id, challenge])
        pub = self.auth_key.public_key.to_bytes()
        params = [to_hex(pub), to_hex(challenge), to_hex(self.auth_key.sign(root))]
        session: dict[str, Any] = await self._post("gm_authLogin", params, None)
        self._token = str(_field(session, "token"))
        return session

    async def call_rpc(
        self, method: str, params: list[Any] | None = None, *, timeout_s: float | None = None
    ) -> Any:
        """One JSON-RPC 2.0 call over HTTP POST; return `result` or raise RpcError. With an
        `auth_key`, a call refused for want of a login (-32010, -32011) logs in and is sent
        once more (rule 8)."""
        try:
            return await self._post(method, params, timeout_s)
        except RpcError as exc:
            if self.auth_key is None or exc.code not in _LOGIN_CODES:
                raise
        await self.login()
        return await self._post(method, params, timeout_s)

    async def _post(self, method: str, params: list[Any] | None, timeout_s: float | None) -> Any:
        request = {
            "jsonrpc": "2.0",
            "id": next(self._ids),
            "method": method,
            "params": params or [],
        }
        session = self._get_session()
        total = timeout_s if timeout_s is not None else self.timeout_s
        try:
            async with session.post(
                self.url,
                json=request,
                timeout=aiohttp.ClientTimeout(total=total),
                headers=self._headers(),
                ssl=self._ssl,
            ) as resp:
                text = await resp.text()
                status = resp.status
        except aiohttp.ClientSSLError as exc:
            raise NodeUnreachable(self.url, f"TLS: {exc}") from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise NodeUnreachable(self.url, str(exc)) from None
        except TimeoutError:
            raise NodeUnreachable(self.url, f"no answer within {total:g} s") from None
        try:
            reply = json.loads(text)
        except ValueError:
            raise SdkError(f"the node answered HTTP {status} with a non-JSON body") from None
        return _unwrap(reply, status)

    async def _cached_chain(self) -> tuple[str, int]:
        if self._chain is None:
            info = await self.call_rpc("gm_nodeInfo")
            if not isinstance(info, dict):
                raise SdkError("the node's gm_nodeInfo reply is not an object")
            chain_id = _field(info, "chainId", "chain_id")
            window = info.get("replayWindow", info.get("replay_window"))
            delta = max(1, window // 2) if isinstance(window, int) else _FALLBACK_EXPIRY_DELTA
            self._chain = (str(chain_id), delta)
        return self._chain

    async def chain_id(self) -> str:
        return (await self._cached_chain())[0]

    # --- reads --------------------------------------------------------------------------------

    async def node_info(self) -> dict[str, Any]:
        info: dict[str, Any] = await self.call_rpc("gm_nodeInfo")
        return info

    async def status(self) -> dict[str, Any]:
        status: dict[str, Any] = await self.call_rpc("gm_status")
        return status

    async def height(self) -> int:
        return int(await self.call_rpc("gm_blockNumber"))

    async def get_tx(self, tx_id: bytes) -> dict[str, Any] | None:
        tx: dict[str, Any] | None = await self.call_rpc("gm_getTransactionByHash", [to_hex(tx_id)])
        return tx

    async def get_receipt(self, tx_id: bytes) -> dict[str, Any] | None:
        r: dict[str, Any] | None = await self.call_rpc("gm_getTransactionReceipt", [to_hex(tx_id)])
        return r

    async def query(self, contract: str, method: str, args: Sequence[Value]) -> Any:
        """A read-only contract query (`gm_call`) against committed state."""
        return await self.call_rpc("gm_call", [contract, method, _jsonable(list(args))])

    async def get_evidence(self, record_id: str) -> dict[str, Any]:
        """One record with its attestations (`evidence.get`): the object `gm_call` renders
        (docs/evidence.md, The record; camelCase members)."""
        record = _evidence_json(await self.query("evidence", "get", [record_id]))
        if record is None:
            raise SdkError(f"no evidence record {record_id!r}")
        return record

    async def get_flow(self, flow_id: str) -> dict[str, Any]:
        """A whole flow in order (`evidence.flow`, paged under the hood), as `gm_call` renders
        it: {"flowId", "org", "count", "headRecordId", "headHash", "records"}."""
        from gmchain.contracts.evidence import MAX_FLOW_PAGE

        flow: dict[str, Any] | None = None
        records: list[dict[str, Any]] = []
        while flow is None or len(records) < int(flow["count"]):
            page = _evidence_json(
                await self.query("evidence", "flow", [flow_id, len(records), MAX_FLOW_PAGE])
            )
            if page is None:
                raise SdkError(f"no evidence flow {flow_id!r}")
            if flow is not None and not page["records"]:
                raise SdkError(f"flow {flow_id!r} has fewer records than its count says")
            flow = page
            records.extend(page["records"])
        flow["records"] = records
        flow.pop("start", None)
        return flow

    async def verify_flow(self, flow_id: str) -> dict[str, Any]:
        """The contract's recomputation of a flow's hashes and links (`evidence.verify_flow`)."""
        out = _evidence_json(await self.query("evidence", "verify_flow", [flow_id]))
        if out is None:
            raise SdkError(f"no evidence flow {flow_id!r}")
        return out

    async def last_record_id(self, flow_id: str) -> str | None:
        """The flow's current last record, or None for a new flow."""
        page = _evidence_json(await self.query("evidence", "flow", [flow_id, 0, 1]))
        return None if page is None else str(page["headRecordId"])

    async def get_tx_proof(self, tx_id: bytes, at_height: int | None = None) -> dict[str, Any]:
        params: list[Any] = [to_hex(tx_id)]
        if at_height is not None:
            params.append(at_height)
        bundle: dict[str, Any] = await self.call_rpc("gm_getTransactionProof", params)
        return bundle

    # --- writes -------------------------------------------------------------------------------

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
        """A signed transaction (rule 1). `nonce` defaults to 64 random bits from `secrets`."""
        body = TxBody(
            chain_id=chain_id,
            sender=key.public_key.to_bytes(),
            nonce=secrets.randbits(64) if nonce is None else nonce,
            expiry=Height(expiry),
            contract=contract,
            method=method,
            args=tuple(args),
        )
        return SignedTx(body=body, signature=key.sign(body.compute_id()))

    async def send(
        self,
        key: PrivateKey,
        contract: str,
        method: str,
        args: Sequence[Value],
        *,
        wait: bool = True,
        timeout_s: float = 30,
    ) -> dict[str, Any]:
        """Build, sign, submit; with `wait`, return the receipt JSON once the tx commits."""
        chain_id, delta = await self._cached_chain()
        head = await self.height()
        tx = self.build_tx(key, contract, method, args, chain_id=chain_id, expiry=head + delta)
        return await self.send_tx(tx, wait=wait, timeout_s=timeout_s)

    async def send_tx(
        self, tx: SignedTx, *, wait: bool = True, timeout_s: float = 30
    ) -> dict[str, Any]:
        """Submit an already signed transaction (rule 3 for the wait)."""
        raw = to_hex(tx.encode())
        if not wait:
            return {"txId": await self._submit(raw, tx.tx_id), "pending": True}
        if self.auth_key is not None and self._token is None:
            await self.login()  # the txCommit subscription is a read of the sender's org
        try:
            ws = await self._get_session().ws_connect(
                self.ws_url, headers=self._headers(), ssl=self._ssl
            )
        except (aiohttp.ClientError, OSError, TimeoutError):
            ws = None  # no WebSocket: poll with gm_waitForReceipt instead
        if ws is None:
            await self._submit(raw, tx.tx_id)
            return await self._wait_by_rpc(tx.tx_id, timeout_s)
        async with ws:
            try:
                sub = await _ws_call(
                    ws, next(self._ids), "gm_subscribe", ["txCommit", to_hex(tx.tx_id)]
                )
            except RpcError as exc:
                if exc.code not in _LOGIN_CODES:
                    raise
                sub = None  # refused (login needed or expired): poll instead
            if sub is None:
                await self._submit(raw, tx.tx_id)
                return await self._wait_by_rpc(tx.tx_id, timeout_s)
            await self._submit(raw, tx.tx_id)
            try:
                result = await asyncio.wait_for(_ws_notification(ws, sub), timeout_s)
            except TimeoutError:
                raise TxTimeout(tx.tx_id, timeout_s) from None
            except SdkError:
                return await self._wait_by_rpc(tx.tx_id, timeout_s)
        if isinstance(result, dict) and "status" in result:
            return result
        if isinstance(result, dict) and result.get("dropped"):  # it can never commit
            raise SdkError(
                f"transaction {to_hex(tx.tx_id)} left the node's pool without committing: "
                f"{result.get('message')} (code {result.get('code')})"
            )
        receipt = await self.get_receipt(tx.tx_id)
        if receipt is None:
            raise SdkError(f"committed transaction {to_hex(tx.tx_id)} has no receipt")
        return receipt

    async def _submit(self, raw_hex: str, tx_id: bytes) -> str:
        returned = await self.call_rpc("gm_sendRawTransaction", [raw_hex])
        if isinstance(returned, str) and from_hex(returned, what="tx id") != tx_id:
            raise SdkError(f"the node computed tx id {returned}, expected {to_hex(tx_id)}")
        return to_hex(tx_id)

    async def _wait_by_rpc(self, tx_id: bytes, timeout_s: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (left := deadline - loop.time()) > 0:
            chunk_ms = int(min(left, 30.0) * 1000)
            receipt = await self.call_rpc(
                "gm_waitForReceipt", [to_hex(tx_id), chunk_ms], timeout_s=chunk_ms / 1000 + 10
            )
            if receipt is not None and not receipt.get("pending", False):
                return dict(receipt)
        raise TxTimeout(tx_id, timeout_s)

    async def submit_evidence(
        self,
        key: PrivateKey,
        *,
        record_id: str,
        flow_id: str,
        scenario: str,
        step: str,
        data: bytes,
        storage_ref: str | None = None,
        metadata: Mapping[str, str] | None = None,
        level: int = 2,
        prev_record_id: str | Literal["auto"] | None = "auto",
        wait: bool = True,
        timeout_s: float = 30,
    ) -> dict[str, Any]:
        """Submit one evidence record (contracts/evidence.py `submit`); digest = SM3(data).

        `prev_record_id="auto"` links the record to the flow's current last record (None if the
        flow is new); the contract re-checks the link, so a race loses with a clear error.
        """
        if prev_record_id == "auto":
            prev_record_id = await self.last_record_id(flow_id)
        meta = sorted((metadata or {}).items())
        args: list[Value] = [
            record_id,
            flow_id,
            scenario,
            step,
            sm3_hash(data),
            storage_ref,
            [[k, v] for k, v in meta],
            level,
            prev_record_id,
        ]
        return await self.send(key, "evidence", "submit", args, wait=wait, timeout_s=timeout_s)

    async def attest(
        self,
        key: PrivateKey,
        *,
        record_id: str,
        attester_key: PrivateKey,
        role: str,
        wait: bool = True,
        timeout_s: float = 30,
    ) -> dict[str, Any]:
        """Add `attester_key`'s SM2 signature over the record's digest; `key` sends the tx.

        The attester signs compute_signing_root("attest", [chain_id, record_id, data_digest]).
        """
        from gmchain.contracts.evidence import attest_message

        record = await self.get_evidence(record_id)
        digest = from_hex(record["dataDigest"], 32, what="dataDigest")
        msg = attest_message(await self.chain_id(), record_id, digest)
        args: list[Value] = [
            record_id,
            attester_key.public_key.to_bytes(),
            role,
            attester_key.sign(msg),
        ]
        return await self.send(key, "evidence", "attest", args, wait=wait, timeout_s=timeout_s)


def _unwrap(reply: Any, http_status: int) -> Any:
    if not isinstance(reply, dict):
        raise SdkError(f"the node answered HTTP {http_status} with something not a JSON-RPC reply")
    error = reply.get("error")
    if error is not None:
        if not isinstance(error, dict):
            raise SdkError("the node answered with a malformed error object")
        raise RpcError(int(error.get("code", 0)), str(error.get("message", "")), error.get("data"))
    if "result" not in reply:
        raise SdkError("the node's reply has neither result nor error")
    return reply["result"]


def _evidence_json(value: Any) -> dict[str, Any] | None:
    """A `gm_call` result of the evidence contract: an object (the node renders the contract's
    declared result shape, ledger/jsonfmt.py) or null."""
    if value is None or isinstance(value, dict):
        return value
    raise SdkError("the node's evidence reply is neither an object nor null")


async def _ws_call(
    ws: aiohttp.ClientWebSocketResponse, req_id: int, method: str, params: list[Any]
) -> Any:
    await ws.send_json({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params})
    while True:
        msg = await ws.receive_json()
        if isinstance(msg, dict) and msg.get("id") == req_id:
            return _unwrap(msg, 101)


async def _ws_notification(ws: aiohttp.ClientWebSocketResponse, sub: Any) -> Any:
    """The result of the first `gm_subscription` notification for `sub`."""
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        data = json.loads(msg.data)
        params = data.get("params") if isinstance(data, dict) else None
        if (
            isinstance(params, dict)
            and data.get("method") == "gm_subscription"
            and params.get("subscription") == sub
        ):
            return params.get("result")
    raise SdkError("the WebSocket closed before the transaction committed")

"""Read authentication of the JSON-RPC: the login methods, the policy table, the owner checks.

Rules this module keeps (docs/rpc.md "Read authentication" is the user's statement of them):
1. With `rpc_auth = "off"` (the default) no read is checked: the server calls every handler
   directly, as before. The login methods answer in both modes.
2. `POLICY` classes every method of node/openrpc.json (a test checks none is missing):
   PUBLIC (no login), ACCOUNT (any logged-in account), ORG (the caller's org must own the data,
   or the caller reads all), READ_ALL (only an account whose on-chain role is "regulator").
   Three methods are classed by their params: gm_getBlockBy* is PUBLIC without full
   transactions and READ_ALL with them; gm_call by its contract and method (`CALL_POLICY`; a
   view not listed is READ_ALL); gm_subscribe by its kind (newHeads PUBLIC, events and txCommit
   ORG: an org's account receives only events of its org's transactions).
3. The caller is the session of the request's `Authorization: Bearer 0x<token>` header (for
   /ws: the header of the upgrade request; two Authorization headers are a malformed token),
   looked up at every request, so an expired token stops working at once. Needed and missing:
   -32010; unknown, malformed or expired: -32011; another org's data: -32012. Messages are
   fixed strings: nothing about the data refused.
4. Owners: a transaction, its receipt, its proof and a wait for it belong to the org of its
   sender's account (live or revoked: the tombstone keeps the org); an evidence record or flow,
   a relayed record and an outbox packet to their `org`; an ack to its record's org. A
   transaction not committed yet has no owner: the answers about it carry no data (pending or
   null), and the check runs again on the answer, so data that reaches a caller was checked.
5. A refused read changes nothing: the check runs before the work when the params name the
   owner, else on the answer, which is then dropped. Every refusal is counted by code in the
   server's error metric (gmchain_rpc_errors_total), which the periodic refusal summary sums.
6. Login: gm_authChallenge / gm_authLogin (node/rpcsession.py rules 1-4); challenges are
   counted per client address as the connection limits count it (an IPv6 address's /64). The
   signature is checked off the event loop (NodeApi.verify_signature: admission's verify pool
   and key cache); the account, org and role are read from committed membership state (a
   revoked account, or one of an org removed by governance, is not live), before the
   signature, so a key that is no account costs no verification. A refused login answers
   -32010 naming the step that failed: the challenge, or else the account-or-signature step
   (one message for both: a refusal does not tell which keys are accounts).
7. An address's org never changes (contracts/membership.py M4: registered once; a revoked
   address keeps its org in its tombstone), so owner lookups are cached (bounded LRU).
8. A session reads only while its account is live in committed state with the org and role of
   its login: revoked, its org removed by governance (R8b), or its role changed, every token of
   it answers -32011 from the next committed block on (and its subscriptions end). The check is
   made again at most once per committed height per account (bounded cache).
"""

from __future__ import annotations

import contextvars
import enum
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from multidict import CIMultiDictProxy

from gmchain.contracts.keys import address_of
from gmchain.ledger.jsonfmt import hex0x
from gmchain.node.api import ErrorCode, NodeApi
from gmchain.node.rpclimits import address_key
from gmchain.node.rpcmethods import CLIENT_ADDRESS, MethodHandler
from gmchain.node.rpcsend import WsConn
from gmchain.node.rpcsession import Session, Sessions, compute_login_root
from gmchain.node.rpcspec import RpcError

__all__ = [
    "AUTH_TOKEN",
    "CALL_POLICY",
    "POLICY",
    "Access",
    "AuthMethods",
    "ReadGuard",
    "bearer_token",
    "now_ms",
    "request_token",
]

#: The bearer token of the request being handled (None: no header), set by node/rpc.py per
#: HTTP request and per WebSocket connection; tasks copy it.
AUTH_TOKEN: contextvars.ContextVar[bytes | None] = contextvars.ContextVar(
    "gmchain_rpc_token", default=None
)

_LOGIN_REQUIRED = "login required"
_TOKEN_INVALID = "token expired or unknown"
_FORBIDDEN = "forbidden: this data belongs to another org"
_LOGIN_REFUSED = (
    "login refused: no live account has this public key, or the signature does not verify "
    "over [chainId, node id, challenge] of this node (docs/rpc.md)"
)
_ORG_CACHE = 65_536


class Access(enum.Enum):
    PUBLIC = "public"  # no login, even with rpc_auth = "reads"
    ACCOUNT = "account"  # any logged-in account
    ORG = "org"  # the caller's org owns the data, or the caller reads all
    READ_ALL = "readAll"  # the regulator's role only
    BY_PARAMS = "byParams"  # classed by the request's params (rule 2)


_P, _A, _O, _R, _X = (
    Access.PUBLIC,
    Access.ACCOUNT,
    Access.ORG,
    Access.READ_ALL,
    Access.BY_PARAMS,
)
POLICY: dict[str, Access] = {
    "rpc.discover": _P,
    "gm_nodeInfo": _P,
    "gm_status": _P,
    "gm_blockNumber": _P,
    "gm_getTotalTransactionCount": _P,
    "gm_contracts": _P,
    "gm_sendRawTransaction": _P,  # writes are SM2-signed transactions
    "gm_authChallenge": _P,
    "gm_authLogin": _P,
    "gm_getCommittee": _P,
    "gm_getValidators": _P,
    "gm_getEpoch": _P,
    "gm_getEpochProof": _P,
    "gm_getCommitProof": _P,
    "gm_getConsistencyProof": _P,
    "gm_getCrossChainClient": _P,
    "gm_unsubscribe": _P,  # only the connection's own subscriptions
    "gm_getBlockByNumber": _X,  # headers public, full blocks READ_ALL
    "gm_getBlockByHash": _X,
    "gm_call": _X,  # CALL_POLICY
    "gm_subscribe": _X,  # newHeads public; events, txCommit ORG
    "gm_getProposal": _A,
    "gm_getProposals": _A,
    "gm_getTransactionByHash": _O,
    "gm_getTransactionReceipt": _O,
    "gm_waitForReceipt": _O,
    "gm_getTransactionProof": _O,
    "gm_getRelayedRecord": _O,
    "gm_getOutbox": _O,  # packets of other orgs are left out
    "gm_getAck": _O,
    "gm_getArrivals": _R,  # a summary over every org's records
}
CALL_POLICY: dict[str, Access] = {
    "membership.get": _A,
    "membership.list": _A,
    "governance.proposal": _A,
    "governance.proposals": _A,
    "governance.committee": _A,
    "governance.epoch_config": _A,
    "governance.current_epoch": _A,
    "evidence.get": _O,
    "evidence.flow": _O,
    "evidence.verify_flow": _O,
    "evidence.by_digest": _O,  # record ids of other orgs are left out
    "evidence.outbox_count": _A,  # a count, like a height
    "evidence.outbox": _R,
    # the light client's state: what gm_getCrossChainClient shows anyway
    "xclient.client": _A,
    "xclient.clients": _A,
    "xclient.header": _A,
    "xclient.update_proof": _A,
    "xclient.update_tx": _A,
    "xclient.epoch_end": _A,
    "xclient.misbehaviour": _A,
    # relayed records: owner = the record's org, as gm_getRelayedRecord
    "xclient.packet": _O,
    "xclient.record": _O,
    # lists over every org's relayed records and acks: the regulator's (others: READ_ALL)
}
del _P, _A, _O, _R, _X

_TX_METHODS = frozenset(
    {
        "gm_getTransactionByHash",
        "gm_getTransactionReceipt",
        "gm_waitForReceipt",
        "gm_getTransactionProof",
    }
)


def now_ms() -> int:
    return int(time.time() * 1000)


def bearer_token(header: str | None) -> bytes | None:
    """The token of an `Authorization: Bearer 0x<64 hex>` header; b"" if malformed; None if
    there is no header."""
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value.startswith("0x") or len(value) != 66:
        return b""
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        return b""


def request_token(headers: CIMultiDictProxy[str]) -> bytes | None:
    """Rule 3 for a request's headers: None without an Authorization header, b"" (malformed)
    with more than one, so no proxy in front and this server can disagree on which counts."""
    values = headers.getall("Authorization", [])
    if len(values) > 1:
        return b""
    return bearer_token(values[0] if values else None)


def _forbidden() -> RpcError:
    return RpcError(ErrorCode.FORBIDDEN, _FORBIDDEN)


def _org_field(value: Any) -> Any:
    """The `org` of a JSON record answer (None if the answer is not a record)."""
    return value.get("org") if isinstance(value, dict) else None


def _pairs_org(value: Any) -> Any:
    """The `org` of a contract's raw record value (a list of [name, value] pairs)."""
    if isinstance(value, list | tuple):
        for pair in value:
            if isinstance(pair, list | tuple) and len(pair) == 2 and pair[0] == "org":
                return pair[1]
    return None


class ReadGuard:
    """Rules 2-5, 7: who may read what, checked around each handler when rpc_auth = reads."""

    def __init__(
        self, api: NodeApi, sessions: Sessions, clock_ms: Callable[[], int] = now_ms
    ) -> None:
        self._api = api
        self._sessions = sessions
        self._clock_ms = clock_ms
        self._orgs: OrderedDict[bytes, str | None] = OrderedDict()  # sender key -> org (rule 7)
        # address -> (committed height, (org, role) of its live account or None) (rule 8)
        self._live: OrderedDict[bytes, tuple[int, tuple[str, str] | None]] = OrderedDict()

    # --- the caller (rule 3) ---

    def caller(self) -> Session:
        """The session of the request's token; RpcError -32010 / -32011 if there is none."""
        token = AUTH_TOKEN.get()
        if token is None:
            raise RpcError(ErrorCode.LOGIN_REQUIRED, _LOGIN_REQUIRED)
        session = self._live_session(token) if token else None
        if session is None:
            raise RpcError(ErrorCode.TOKEN_INVALID, _TOKEN_INVALID)
        return session

    def _live_session(self, token: bytes) -> Session | None:
        """The session of `token` if it is unexpired and its account still live (rule 8)."""
        session = self._sessions.session_of(token, self._clock_ms())
        if session is None or self._account_now(session.address) != (session.org, session.role):
            return None
        return session

    def _account_now(self, address: bytes) -> tuple[str, str] | None:
        """(org, role) of the live account at `address` in committed state (rule 8's cache)."""
        height = self._api.height()
        seen = self._live.get(address)
        if seen is not None and seen[0] == height:
            self._live.move_to_end(address)
            return seen[1]
        value = self._api.call("membership", "get", [address])
        fields = dict(value) if isinstance(value, list | tuple) else {}
        pubkey = fields.get("pubkey")
        account = self._api.account_of(pubkey) if isinstance(pubkey, bytes) else None
        self._live[address] = (height, account)
        self._live.move_to_end(address)
        if len(self._live) > _ORG_CACHE:
            self._live.popitem(last=False)
        return account

    def access_of(self, name: str, args: dict[str, Any]) -> Access:
        """Rule 2: the class of one request."""
        access = POLICY[name]
        if access is not Access.BY_PARAMS:
            return access
        if name == "gm_call":
            return CALL_POLICY.get(f"{args['contract']}.{args['method']}", Access.READ_ALL)
        if name == "gm_subscribe":
            return Access.PUBLIC if args["kind"] == "newHeads" else Access.ORG
        return Access.READ_ALL if args["fullTxs"] else Access.PUBLIC  # gm_getBlockBy*

    # --- around a handler (rule 5) ---

    async def run(
        self, name: str, args: dict[str, Any], conn: WsConn | None, handler: MethodHandler
    ) -> Any:
        access = self.access_of(name, args)
        if access is Access.PUBLIC:
            return await handler(args, conn)
        session = self.caller()
        if session.read_all or access is Access.ACCOUNT:
            return await handler(args, conn)
        if access is Access.READ_ALL:
            raise _forbidden()
        self._check_before(name, args, session)
        result = await handler(args, conn)
        return self._check_answer(name, args, session, result)

    def _check_before(self, name: str, args: dict[str, Any], session: Session) -> None:
        if name in _TX_METHODS:
            self._check_tx(args["txId"], session)
        elif name == "gm_getAck":
            record = self._api.call("evidence", "get", [args["recordId"]])
            self._check_org(_pairs_org(record), session)
        elif (name, args.get("contract"), args.get("method")) == (
            "gm_call",
            "evidence",
            "verify_flow",
        ):
            flow_id = args["args"][0] if args["args"] else None
            if isinstance(flow_id, str) and flow_id:  # (else the view refuses its args)
                flow = self._api.call("evidence", "flow", [flow_id, 0, 1])
                self._check_org(_pairs_org(flow), session)

    def _check_answer(self, name: str, args: dict[str, Any], session: Session, result: Any) -> Any:
        if name in _TX_METHODS:
            self._check_tx(args["txId"], session)
        elif name == "gm_getRelayedRecord":
            self._check_org(_org_field(result), session)
        elif name == "gm_getOutbox" and isinstance(result, dict):
            packets = result.get("packets") or []
            result["packets"] = [p for p in packets if _org_field(p) == session.org]
        elif name == "gm_call":
            return self._check_call_answer(args, session, result)
        return result

    def _check_call_answer(self, args: dict[str, Any], session: Session, result: Any) -> Any:
        wrapped = bool(args["withHeight"]) and isinstance(result, dict)
        value = result["value"] if wrapped else result
        view = f"{args['contract']}.{args['method']}"
        if view in ("evidence.get", "evidence.flow", "xclient.packet", "xclient.record"):
            self._check_org(_org_field(value), session)
        elif view == "evidence.by_digest" and isinstance(value, list):
            value = [rid for rid in value if self._record_org(rid) == session.org]
            if wrapped:
                result["value"] = value
            else:
                result = value
        return result

    # --- owners (rules 4, 7) ---

    def _check_org(self, owner: Any, session: Session) -> None:
        """An answer with no owner (None: not found) is no data; any other owner must match."""
        if owner is not None and owner != session.org:
            raise _forbidden()

    def _check_tx(self, tx_id: bytes, session: Session) -> None:
        found = self._api.get_tx(tx_id)
        if found is None:
            return  # not committed: the answer carries no data (rule 4)
        if self.sender_org(found.tx.body.sender) != session.org:
            raise _forbidden()

    def _record_org(self, record_id: Any) -> Any:
        if not isinstance(record_id, str):
            return None
        return _pairs_org(self._api.call("evidence", "get", [record_id]))

    def sender_org(self, pubkey: bytes) -> str | None:
        """The org of a sender key's account, live or revoked (rule 7's cache)."""
        if pubkey in self._orgs:
            self._orgs.move_to_end(pubkey)
            return self._orgs[pubkey]
        org = self._api.org_of(pubkey)
        if org is not None:  # (None may become an org when the key is registered)
            self._orgs[pubkey] = org
            if len(self._orgs) > _ORG_CACHE:
                self._orgs.popitem(last=False)
        return org

    # --- subscriptions (rule 2) ---

    def tx_visibility(self) -> Callable[[bytes], bool | None] | None:
        """For a subscription made now: a test of one committed tx id (True: the caller may
        see it, its org's or the caller reads all; False: another org's; None: the login has
        expired or its account is no longer live, the subscription ends) — for a readAll
        caller too, whose login ends as any other's."""
        session = self.caller()
        token = AUTH_TOKEN.get()
        assert token is not None  # caller() found its session

        def visible(tx_id: bytes) -> bool | None:
            if self._live_session(token) is None:
                return None
            if session.read_all:
                return True
            found = self._api.get_tx(tx_id)
            return found is not None and self.sender_org(found.tx.body.sender) == session.org

        return visible


class AuthMethods:
    """gm_authChallenge and gm_authLogin (rule 6; node/rpcsession.py)."""

    def __init__(
        self, api: NodeApi, sessions: Sessions, clock_ms: Callable[[], int] = now_ms
    ) -> None:
        self._api = api
        self._sessions = sessions
        self._clock_ms = clock_ms

    def handlers(self) -> dict[str, MethodHandler]:
        return {"gm_authChallenge": self._m_challenge, "gm_authLogin": self._m_login}

    async def _m_challenge(self, a: dict[str, Any], c: WsConn | None) -> Any:
        # bounded per address as the connection limits count them: an IPv6 host's whole /64
        client = address_key(CLIENT_ADDRESS.get())
        issued = self._sessions.issue_challenge(client, self._clock_ms())
        if issued is None:
            raise RpcError(ErrorCode.RATE_LIMITED, "busy: too many outstanding login challenges")
        challenge, expires = issued
        return {"challenge": hex0x(challenge), "expiresMs": expires}

    async def _m_login(self, a: dict[str, Any], c: WsConn | None) -> Any:
        pubkey, challenge, signature = a["publicKey"], a["challenge"], a["signature"]
        if not self._sessions.take_challenge(challenge, self._clock_ms()):
            raise RpcError(
                ErrorCode.LOGIN_REQUIRED,
                "login refused: challenge unknown, used or expired (ask gm_authChallenge)",
            )
        # The account first, as admission checks R8 before R9: a key that is no account costs
        # no SM2 verification. One message for both, so a refusal does not tell which keys
        # are accounts.
        account = self._api.account_of(pubkey)
        st = self._api.status()
        root = compute_login_root(st.chain_id, st.node_id, challenge)
        if account is None or not await self._api.verify_signature(pubkey, root, signature):
            raise RpcError(ErrorCode.LOGIN_REQUIRED, _LOGIN_REFUSED)
        org, role = account
        now = self._clock_ms()
        token = self._sessions.open_session(
            address=address_of(pubkey), org=org, role=role, now_ms=now
        )
        session = self._sessions.session_of(token, now)
        assert session is not None
        return {
            "token": hex0x(token),
            "org": org,
            "role": role,
            "readAll": session.read_all,
            "expiresMs": session.expires_ms,
        }

"""JSON shapes of the protocol types, as the JSON-RPC server sends them and the SDK parses them.

Rules this module keeps (docs/rpc.md, "Value formats"):
1. Every binary value is a `0x`-prefixed lowercase hex string; heights, rounds, sizes and counts are
   JSON integers. Nothing is ever a JSON float.
2. Canonical values (`ledger.codec`: int, bytes, str, bool, None, lists) map one to one onto JSON
   except for bytes, which become hex strings. Turning JSON back into a value therefore needs a
   schema that says which strings are bytes (`value_from_json`): JSON alone cannot tell "0xab" the
   text from 0xab the bytes.
3. Every object that has an identity carries it (`txId`, `hash`), computed by the node from the
   canonical bytes, and the canonical bytes themselves (`raw`), so a client can recompute the
   identity instead of trusting it (DESIGN.md, "Hashing and signing").
4. Parsing never raises anything but `JsonFormatError` (a ValueError) with a message that names the
   offending field.
5. Member names are camelCase (`txId`, `blockNumber`, `recordHash`). A contract's result is
   rendered from the shape its method declares (`contracts.results.Shape.describe()`, served by
   `gm_contracts`): a record's `[name, value]` pairs become an object whose members are the
   camelCase field names, a map's pairs an object keyed verbatim, scalars as in rule 2. A value
   that does not fit its declared shape is rendered as the plain canonical value (rule 2) rather
   than refused: the shape describes, it never hides data.
6. This module imports only `ledger` and `crypto_sm`: the node, the chain library and the SDK
   all use it, so it may not pull in a server or a database.

It is the one import point of the layer. For size it is written in three modules: this one (the
protocol objects and the node's answers), `ledger.jsonvalues` (hex and canonical values, rules 1,
2 and 4) and `ledger.jsonshapes` (contract results by declared shape, rule 5); every name of
both is re-exported here.

Sources: JSON-RPC 2.0; Ethereum's execution-API hex conventions (`0x` prefix, lowercase).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from gmchain.crypto_sm import sm3_hash
from gmchain.ledger.epoch import EpochConfig
from gmchain.ledger.jsonshapes import (
    args_schema,
    camel_case,
    contracts_to_json,
    returns_schema,
    shape_json_schema,
    view_to_json,
)
from gmchain.ledger.jsonvalues import (
    JsonFormatError,
    check_text,
    hex0x,
    jsonable,
    parse_hex,
    value_from_json,
    value_to_json,
)
from gmchain.ledger.types import (
    NODE_ID_SIZE,
    Block,
    BlockHeader,
    Event,
    GenesisValidator,
    QuorumCert,
    Receipt,
    ReceiptStatus,
    SignedTx,
)

__all__ = [
    "JsonFormatError",
    "StatusLike",
    "args_schema",
    "block_summary_to_json",
    "block_to_json",
    "camel_case",
    "check_text",
    "contracts_to_json",
    "count_to_json",
    "dropped_to_json",
    "epoch_config_to_json",
    "event_note_to_json",
    "event_to_json",
    "header_to_json",
    "hex0x",
    "jsonable",
    "node_info_to_json",
    "parse_hex",
    "pending_to_json",
    "qc_to_json",
    "receipt_to_json",
    "returns_schema",
    "shape_json_schema",
    "status_to_json",
    "tx_to_json",
    "validators_to_json",
    "value_from_json",
    "value_to_json",
    "view_to_json",
]


# --- protocol types -> JSON ----------------------------------------------------------------------


def _with_position(
    out: dict[str, Any], height: int | None, index: int | None, block_id: bytes | None
) -> dict[str, Any]:
    """A committed transaction's or receipt's position (and `pending: false`), when known."""
    if height is not None:
        out["blockNumber"] = height
        out["transactionIndex"] = index
        out["blockHash"] = None if block_id is None else hex0x(block_id)
        out["pending"] = False
    return out


def tx_to_json(
    tx: SignedTx,
    *,
    height: int | None = None,
    index: int | None = None,
    block_id: bytes | None = None,
    raw: bytes = b"",
) -> dict[str, Any]:
    """A signed transaction; with its position (and `pending: false`) when it is committed.
    `raw`, if given, is the canonical encoding it was decoded from (not encoded again)."""
    body = tx.body
    out: dict[str, Any] = {
        "txId": hex0x(tx.tx_id),
        "chainId": body.chain_id,
        "sender": hex0x(body.sender),
        "senderAddress": hex0x(sm3_hash(body.sender)[:NODE_ID_SIZE]),
        "nonce": body.nonce,
        "expiry": int(body.expiry),
        "contract": body.contract,
        "method": body.method,
        "args": value_to_json(list(body.args)),
        "signature": hex0x(tx.signature),
        "raw": hex0x(raw or tx.encode()),
    }
    return _with_position(out, height, index, block_id)


def event_to_json(event: Event) -> dict[str, Any]:
    """An event; `fields` keeps the emitted order as `[name, value]` pairs (names may repeat)."""
    return {
        "contract": event.contract,
        "name": event.name,
        "fields": [[k, value_to_json(v)] for k, v in event.fields],
    }


def receipt_to_json(
    receipt: Receipt,
    *,
    height: int | None = None,
    index: int | None = None,
    block_id: bytes | None = None,
) -> dict[str, Any]:
    """A receipt: `status` is the integer code, `statusName` its name (`OK`, `FAILED`, ...);
    with its position (and `pending: false`) when committed. `result` is the canonical value
    (rule 2), not rendered by a shape: it is what `raw` and the receipt root commit to."""
    status = ReceiptStatus(receipt.status)
    out: dict[str, Any] = {
        "txId": hex0x(receipt.tx_id),
        "status": int(status),
        "statusName": status.name,
        "result": value_to_json(receipt.result),
        "events": [event_to_json(e) for e in receipt.events],
        "error": receipt.error,
        "raw": hex0x(receipt.encode()),
    }
    return _with_position(out, height, index, block_id)


def qc_to_json(qc: QuorumCert) -> dict[str, Any]:
    """A quorum certificate; `signatures` ascending by signer node id."""
    return {
        "epoch": int(qc.epoch),
        "blockId": hex0x(qc.block_id),
        "round": int(qc.round),
        "height": int(qc.height),
        "signatures": [{"signer": hex0x(n), "signature": hex0x(s)} for n, s in qc.signatures],
    }


def header_to_json(header: BlockHeader) -> dict[str, Any]:
    """A header; `hash` is the block id, `raw` the canonical header bytes it is computed from."""
    return {
        "hash": hex0x(header.block_id),
        "number": int(header.height),
        "chainId": header.chain_id,
        "epoch": int(header.epoch),
        "round": int(header.round),
        "parentHash": hex0x(header.parent_id),
        "timestampMs": header.timestamp_ms,
        "proposer": hex0x(header.proposer),
        "txRoot": hex0x(header.tx_root),
        "txCount": header.tx_count,
        "receiptRoot": hex0x(header.receipt_root),
        "accRoot": hex0x(header.acc_root),
        "accSize": header.acc_size,
        "stateHash": hex0x(header.state_hash),
        "nextValidatorsHash": hex0x(header.next_validators_hash),
        "justify": qc_to_json(header.justify),
        "raw": hex0x(header.encode()),
    }


def block_summary_to_json(header: BlockHeader, tx_ids: Sequence[bytes]) -> dict[str, Any]:
    """`block_to_json(block, full_txs=False)` from the header and the tx ids alone."""
    out = header_to_json(header)
    out["transactions"] = [hex0x(t) for t in tx_ids]
    return out


def block_to_json(block: Block, full_txs: bool) -> dict[str, Any]:
    """A block: the header's fields plus `transactions` (ids, or full objects if `full_txs`)."""
    out = header_to_json(block.header)
    h, bid = int(block.header.height), block.block_id
    if full_txs:
        out["transactions"] = [
            tx_to_json(t, height=h, index=i, block_id=bid) for i, t in enumerate(block.txs)
        ]
    else:
        out["transactions"] = [hex0x(t.tx_id) for t in block.txs]
    return out


# --- node answers ---------------------------------------------------------------------------------


class StatusLike(Protocol):
    """What the node answers read from its status (node.api.NodeStatus; this layer cannot import
    node)."""

    @property
    def chain_id(self) -> str: ...

    @property
    def node_id(self) -> bytes: ...

    @property
    def role(self) -> str: ...

    @property
    def height(self) -> int: ...

    @property
    def head(self) -> bytes: ...

    @property
    def genesis(self) -> bytes: ...

    @property
    def pending_txs(self) -> int: ...

    @property
    def peers(self) -> int: ...

    @property
    def version(self) -> str: ...

    @property
    def round(self) -> int: ...

    @property
    def committed_txs(self) -> int: ...

    @property
    def replay_window(self) -> int: ...

    @property
    def peer_height(self) -> int: ...

    @property
    def lag(self) -> int: ...

    @property
    def catching_up(self) -> bool: ...


def status_to_json(st: StatusLike) -> dict[str, Any]:
    """`gm_status` (and the body of `GET /health`): the head and how far it trails the peers."""
    return {
        "chainId": st.chain_id,
        "nodeId": hex0x(st.node_id),
        "role": st.role,
        "height": st.height,
        "head": hex0x(st.head),
        "genesisHash": hex0x(st.genesis),
        "pendingTxs": st.pending_txs,
        "peers": st.peers,
        "round": st.round,
        "committedTxs": st.committed_txs,
        "version": st.version,
        "catchingUp": st.catching_up,
        "lag": st.lag,
        "peerHeight": max(st.peer_height, st.height),
    }


def node_info_to_json(st: StatusLike, limits: Mapping[str, int]) -> dict[str, Any]:
    """`gm_nodeInfo`: static facts and the server's `limits` (already camelCase-named).
    `replayWindow` is null when the node does not know it (0)."""
    return {
        "chainId": st.chain_id,
        "nodeId": hex0x(st.node_id),
        "role": st.role,
        "version": st.version,
        "genesisHash": hex0x(st.genesis),
        "replayWindow": st.replay_window or None,
        "limits": dict(limits),
    }


def count_to_json(st: StatusLike) -> dict[str, Any]:
    """`gm_getTotalTransactionCount`."""
    return {"transactionCount": st.committed_txs, "blockNumber": st.height}


def pending_to_json(tx_id: bytes) -> dict[str, Any]:
    """A transaction waiting in the pool (its body is not served)."""
    return {"txId": hex0x(tx_id), "pending": True}


def dropped_to_json(tx_id: bytes, code: int, message: str) -> dict[str, Any]:
    """A transaction that left the pool without committing: the error that says why."""
    return {
        "txId": hex0x(tx_id),
        "pending": False,
        "dropped": True,
        "code": code,
        "message": message,
    }


def event_note_to_json(height: int, tx_id: bytes, event: Event) -> dict[str, Any]:
    """An `events` subscription's notification: the event with its block and transaction."""
    return {"blockNumber": height, "txId": hex0x(tx_id), **event_to_json(event)}


# --- epochs (issue 12; docs/governance.md) -----------------------------------------------------


def validators_to_json(validators: Sequence[GenesisValidator]) -> list[dict[str, Any]]:
    """A validator set as served: each validator's key, node id, voting power and organisation,
    in the order given (an EpochConfig's: ascending by node id)."""
    return [
        {"pubkey": hex0x(v.pubkey), "nodeId": hex0x(v.node_id), "power": v.power, "org": v.org}
        for v in validators
    ]


def epoch_config_to_json(config: EpochConfig, start_height: int) -> dict[str, Any]:
    """`gm_getEpoch`: an epoch's number, first height, validator-set fingerprint (what headers
    carry as `nextValidatorsHash`), validators, observers' node keys and chain parameters."""
    return {
        "epoch": config.epoch,
        "startHeight": start_height,
        "validatorsHash": hex0x(config.validators_hash),
        "validators": validators_to_json(config.validators),
        "totalPower": sum(v.power for v in config.validators),
        "observers": [hex0x(o) for o in config.observers],
        "params": {name: value for name, value in config.params},
    }

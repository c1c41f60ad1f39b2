"""The platform's on-chain set-up and its progress reads (issue 13 item 6; docs/crosschain.md,
"The platform"). node/platform.py runs the processes; this module only talks JSON-RPC.

Rules this module keeps:
1. Every change is an ordinary signed transaction sent through the SDK (`node.sdk.Client`):
   relayer accounts are admitted by their org's admin (`membership.register`, role "member"), and
   every cross-chain decision is a governance proposal voted by the chain's committee
   (contracts/governance.py G1-G5; kinds of contracts/gov_kinds.py G-K5): on the regulator
   `register_chain` of each business chain; on each business chain `register_chain` of the
   regulator and `set_relay_rule(regulator, [])` (every scenario).
2. A foreign chain is registered from its genesis file alone: chain id, genesis hash, the id of
   its block 0 (chain/genesis.py) and its genesis validators, epoch 0. The platform registers
   each chain before it has changed its set, so epoch 0 is its current epoch.
3. A step whose effect is already there is skipped: an admitted account is read first
   (`membership.get`); a registration or relay rule already in place is refused at proposal time
   by the contract itself (G-K5: "already registered", "already this"), which counts as done. So
   `up` may run again after any failure; a step that fails otherwise raises PlatformSetupError
   naming the chain, the step and the receipt's error.
4. Progress reads (`read_progress`) never write: per business chain its head, the regulator's
   verified height of it, its outbox count, the regulator's arrivals and the acks back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gmchain.contracts.governance import propose_args, vote_args
from gmchain.contracts.keys import address_of
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.codec import Value
from gmchain.node.cli_govxc import foreign_chain
from gmchain.node.sdk import Client

__all__ = [
    "ChainAccess",
    "PlatformSetupError",
    "read_progress",
    "register_values",
    "set_up_chains",
]

EXPIRY_BLOCKS = 1000  # a platform proposal is decided within a few blocks
WAIT_S = 60.0  # per transaction (a loaded two-core machine)
MAX_ACK_PAGES = 20  # status counts at most 20,000 acks


class PlatformSetupError(Exception):
    """Rule 3: one set-up step failed; the message names the chain, the step and why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainAccess:
    """What the set-up needs of one chain: its id, an RPC URL, its genesis file, and the admin
    key of each committee org (in vote order; the first also proposes and admits accounts)."""

    chain_id: str
    rpc: str
    genesis_file: Path
    admins: tuple[tuple[str, PrivateKey], ...]


def register_values(genesis_file: Path) -> list[Value]:
    """Rule 2: the `register_chain` values of the chain whose genesis file this is (the same
    values `gmchain gov propose register-chain --genesis FILE` proposes)."""
    chain_id, genesis_hash, block_id, epoch, validators = foreign_chain(str(genesis_file), 0, None)
    return [chain_id, genesis_hash, block_id, epoch, validators]


async def _send(
    client: Client, chain: str, what: str, key: PrivateKey, contract: str, method: str, args: Any
) -> dict[str, Any]:
    receipt = await client.send(key, contract, method, args, timeout_s=WAIT_S)
    if receipt.get("status") != 0:
        raise PlatformSetupError(
            f"{chain}: {what}: {contract}.{method} failed: {receipt.get('error')} "
            f"(tx {receipt.get('txId')}, block {receipt.get('blockNumber')})"
        )
    return receipt


_ALREADY = ("is already registered", "relay rule is already this")


async def _decide(client: Client, chain: ChainAccess, kind: str, values: Sequence[Value]) -> bool:
    """Rule 1: propose `kind` and vote yes with just enough committee orgs (G4: more than 2/3
    of the weight, one seat per org by default); the last vote must execute it. False when the
    contract refused the proposal because its effect is already there (rule 3)."""
    what = f"governance {kind}"
    head = await client.height()
    args = propose_args(kind, values, head + EXPIRY_BLOCKS)
    r = await client.send(chain.admins[0][1], "governance", "propose", args, timeout_s=WAIT_S)
    if r.get("status") != 0:
        if any(a in str(r.get("error")) for a in _ALREADY):
            return False
        raise PlatformSetupError(
            f"{chain.chain_id}: {what}: the proposal was refused: {r.get('error')} "
            f"(tx {r.get('txId')}, block {r.get('blockNumber')})"
        )
    pid = r["result"]
    need = len(chain.admins) * 2 // 3 + 1
    votes = await asyncio.gather(  # exactly `need` votes: none comes after the deciding one
        *(
            _send(client, chain.chain_id, what, key, "governance", "vote", vote_args(pid, True))
            for _, key in chain.admins[:need]
        )
    )
    outcomes = [v["result"] for v in votes]
    outcome = "executed" if "executed" in outcomes else outcomes[-1]
    if outcome != "executed":
        p = await client.call_rpc("gm_getProposal", [pid])
        note = p.get("note") if isinstance(p, dict) else None
        raise PlatformSetupError(
            f"{chain.chain_id}: {what}: proposal {pid} ended {outcome!r}"
            + (f" ({note})" if note else "")
        )
    return True


async def _admit(client: Client, chain: ChainAccess, key: PrivateKey) -> list[str]:
    org, admin = chain.admins[0]
    address = address_of(key.public_key.to_bytes())
    if await client.query("membership", "get", [address]) is not None:
        return []
    await _send(
        client,
        chain.chain_id,
        "admit the relayer account",
        admin,
        "membership",
        "register",
        [key.public_key.to_bytes(), org, "member"],
    )
    return [f"{chain.chain_id}: relayer account 0x{address.hex()} admitted in {org}"]


async def _register(client: Client, chain: ChainAccess, other: ChainAccess) -> list[str]:
    values = register_values(other.genesis_file)
    if not await _decide(client, chain, "register_chain", values):
        return []
    return [f"{chain.chain_id}: registered {other.chain_id} by governance vote"]


async def _relay_rule(client: Client, chain: ChainAccess, dest: str) -> list[str]:
    if not await _decide(client, chain, "set_relay_rule", [dest, []]):
        return []
    return [f"{chain.chain_id}: relay rule set by governance vote: every record to {dest}"]


async def _set_up_one(
    chain: ChainAccess,
    foreign: Sequence[ChainAccess],
    relayers: Sequence[PrivateKey],
    relay_to: str | None,
) -> list[str]:
    """Rule 1 on one chain: admit `relayers`, register every chain of `foreign`, and (a business
    chain) set the relay rule to `relay_to`, all at once (the steps are independent; each
    decision's votes wait for its proposal). What it did, one line each."""
    async with Client(chain.rpc, timeout_s=WAIT_S) as client:
        jobs = [_admit(client, chain, k) for k in relayers]
        jobs += [_register(client, chain, other) for other in foreign]
        if relay_to is not None:
            jobs.append(_relay_rule(client, chain, relay_to))
        results = await asyncio.gather(*jobs)
    return [line for lines in results for line in lines]


async def set_up_chains(
    regulator: ChainAccess,
    business: Sequence[ChainAccess],
    relayer_keys: Sequence[PrivateKey],
) -> list[str]:
    """Rules 1-3 on every chain at once (each chain's steps in order); what was done.

    `relayer_keys[i]` relays for `business[i]`: admitted on that chain and on the regulator."""
    jobs = [_set_up_one(regulator, business, relayer_keys, None)]
    jobs += [
        _set_up_one(b, [regulator], [k], regulator.chain_id)
        for b, k in zip(business, relayer_keys, strict=True)
    ]
    results = await asyncio.gather(*jobs, return_exceptions=True)
    lines: list[str] = []
    for r in results:
        if isinstance(r, BaseException):
            if isinstance(r, PlatformSetupError):
                raise r
            raise PlatformSetupError(f"set-up failed: {type(r).__name__}: {r}") from r
        lines += r
    return lines


async def _height(client: Client) -> int | None:
    try:
        return int((await client.status())["height"])
    except Exception:  # a chain that does not answer shows as down
        return None


async def _oldest_missing_height(b: Client, arrivals: dict[str, Any], queued: int) -> int | None:
    """The business block of the oldest record not on the regulator (None: nothing missing)."""
    gaps = [int(x) for x in arrivals["missing"]]  # the first missing seqs below maxSeq
    if gaps:
        seq = gaps[0]
    elif int(arrivals["count"]) < queued:  # none below maxSeq: the next one is missing
        seq = int(arrivals["maxSeq"]) + 1
    else:
        return None
    (row,) = await b.query("evidence", "outbox", [seq, 1])
    receipt = await b.get_receipt(bytes.fromhex(str(row["txId"])[2:]))
    return None if receipt is None else int(receipt["blockNumber"])


async def _acked(b: Client) -> int:
    """How many acks the business chain recorded (paged; bounded at MAX_ACK_PAGES pages)."""
    total = 0
    for _ in range(MAX_ACK_PAGES):
        page = await b.query("xclient", "acks", [total + 1, 1000])
        total += len(page)
        if len(page) < 1000:
            break
    return total


async def _progress_one(regulator_rpc: str, chain_id: str, rpc: str) -> dict[str, Any]:
    """Rule 4 for one business chain: lag in blocks = its head minus the block of the oldest
    record not yet on the regulator (0 when none is missing)."""
    out: dict[str, Any] = {"chain": chain_id, "height": None}
    async with Client(rpc, timeout_s=5) as b, Client(regulator_rpc, timeout_s=5) as r:
        out["height"] = await _height(b)
        try:
            queued = int(await b.query("evidence", "outbox_count", []))
            client = await r.query("xclient", "client", [chain_id])
            arrivals = await r.query("xclient", "arrivals", [chain_id, 10])
            acked = await _acked(b)
            oldest = await _oldest_missing_height(b, arrivals, queued)
        except Exception as exc:  # reported, not raised: status must answer
            out["error"] = f"{type(exc).__name__}: {exc}"
            return out
    head = out["height"]
    out.update(
        queued=queued,
        delivered=int(arrivals["count"]),
        missing=queued - int(arrivals["count"]),
        gaps=list(arrivals["missing"]),
        verified_height=int(client["latestHeight"]),
        lag_blocks=0 if oldest is None else (None if head is None else max(0, head - oldest)),
        acked=acked,
        client_status=client["status"],
    )
    return out


async def read_progress(regulator_rpc: str, business: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Rule 4: {"regulator": height, "business": [per chain: height, queued, delivered,
    missing, gaps, verified_height, lag_blocks, acked, client_status]}."""
    async with Client(regulator_rpc, timeout_s=5) as r:
        reg_height = await _height(r)
    per = await asyncio.gather(*(_progress_one(regulator_rpc, c, u) for c, u in business))
    return {"regulator": reg_height, "business": list(per)}

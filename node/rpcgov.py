"""The governance and epoch JSON-RPC methods (issue 12; docs/governance.md "RPC methods").

Rules this module keeps (with node/rpcmethods.py's rules 1, 2 and 4):
1. Proposals and the committee are the governance contract's own queries (`proposal`,
   `proposals`, `committee`), rendered by the shapes the contract declares, exactly as `gm_call`
   renders them: one source of truth for what a proposal looks like.
2. Epochs are read from committed state (node/queries.py rule 4): the current epoch is the epoch
   of the next block to commit. `gm_getValidators(height)` answers for any committed height (the
   set of that block's epoch, named by its header) and for the next block (head + 1); a later
   height is not known yet (BAD_RANGE).
3. `gm_getEpochProof` is bounded: at most MAX_PROOF_EPOCHS epoch changes per call, and never
   past the current epoch (BAD_RANGE naming the bound); a client walks a longer range in calls.
4. Every answer that depends on the head states the committed height it was read at
   (`answeredAt`).
5. Params the contract would refuse are refused here first, as INVALID_PARAMS naming the param:
   a proposal id below 1, a status that is not one of the contract's STATUSES.
"""

from __future__ import annotations

from typing import Any

from gmchain.contracts.gov_state import STATUSES
from gmchain.ledger.jsonfmt import (
    epoch_config_to_json,
    hex0x,
    returns_schema,
    validators_to_json,
    view_to_json,
)
from gmchain.node.api import ApiError, ErrorCode, NodeApi
from gmchain.node.rpcmethods import CLIENT_ADDRESS, MethodHandler
from gmchain.node.rpcsend import WsConn
from gmchain.node.rpcspec import METHODS, RpcError, handler_name

__all__ = ["GOV_CONTRACT", "GOV_METHODS", "MAX_PROOF_EPOCHS", "GovMethods"]

GOV_CONTRACT = "governance"  # the contract's name in the registry
MAX_PROOF_EPOCHS = 32  # rule 3
GOV_METHODS = frozenset(
    {
        "gm_getProposal",
        "gm_getProposals",
        "gm_getCommittee",
        "gm_getValidators",
        "gm_getEpoch",
        "gm_getEpochProof",
    }
)


class GovMethods:
    """The handlers of GOV_METHODS, over a `NodeApi`."""

    def __init__(self, api: NodeApi) -> None:
        self._api = api

    def handlers(self) -> dict[str, MethodHandler]:
        assert METHODS.keys() >= GOV_METHODS
        return {name: getattr(self, "_m_" + handler_name(name)) for name in GOV_METHODS}

    def _query(self, method: str, args: list[Any]) -> Any:
        """Rule 1: a governance query rendered by its declared shape."""
        value = self._api.call(GOV_CONTRACT, method, args)
        shape = returns_schema(self._api.describe_contracts(), GOV_CONTRACT, method)
        return view_to_json(value, shape)

    # --- proposals and the committee (rule 1) ---

    async def _m_get_proposal(self, a: dict[str, Any], c: WsConn | None) -> Any:
        if a["id"] < 1:
            raise RpcError(ErrorCode.INVALID_PARAMS, "id: proposal ids start at 1")
        return self._query("proposal", [a["id"]])

    async def _m_get_proposals(self, a: dict[str, Any], c: WsConn | None) -> Any:
        if a["status"] is not None and a["status"] not in STATUSES:
            raise RpcError(
                ErrorCode.INVALID_PARAMS, f"status: expected one of {', '.join(STATUSES)} or null"
            )
        return self._query("proposals", [a["status"], a["limit"]])

    async def _m_get_committee(self, a: dict[str, Any], c: WsConn | None) -> Any:
        return self._query("committee", [])

    # --- epochs (rules 2-4) ---

    async def _m_get_epoch(self, a: dict[str, Any], c: WsConn | None) -> Any:
        info = self._api.current_epoch()
        out = epoch_config_to_json(info.config, info.start_height)
        out["answeredAt"] = info.height
        return out

    async def _m_get_validators(self, a: dict[str, Any], c: WsConn | None) -> Any:
        info = self._api.current_epoch()
        head = info.height
        height = head + 1 if a["height"] is None else a["height"]
        if height > head + 1:
            raise RpcError(
                ErrorCode.BAD_RANGE,
                f"height {height} is not known yet: the validator set is known up to the next "
                f"block, height {head + 1}",
            )
        config = info.config
        if height <= head:
            found = self._api.get_block_summary(height)
            if found is None:  # committed heights are never missing (node/queries.py rule 1)
                raise ApiError(ErrorCode.NOT_FOUND, f"no committed block at height {height}")
            epoch = found[0].epoch
            if epoch != config.epoch:
                older = self._api.epoch_config(epoch)
                if older is None:
                    raise ApiError(ErrorCode.NOT_FOUND, f"no configuration of epoch {epoch}")
                config = older
        return {
            "height": height,
            "epoch": config.epoch,
            "validatorsHash": hex0x(config.validators_hash),
            "totalPower": sum(v.power for v in config.validators),
            "validators": validators_to_json(config.validators),
            "answeredAt": head,
        }

    async def _m_get_epoch_proof(self, a: dict[str, Any], c: WsConn | None) -> Any:
        current = self._api.current_epoch().config.epoch
        first = a["fromEpoch"]
        last = current if a["toEpoch"] is None else a["toEpoch"]
        if first > last:
            raise RpcError(ErrorCode.BAD_RANGE, "fromEpoch must not exceed toEpoch")
        if last > current:
            raise RpcError(
                ErrorCode.BAD_RANGE, f"toEpoch {last} is after the current epoch, {current}"
            )
        if last - first > MAX_PROOF_EPOCHS:
            raise RpcError(
                ErrorCode.BAD_RANGE,
                f"at most {MAX_PROOF_EPOCHS} epoch changes per call: ask for [{first}, "
                f"{first + MAX_PROOF_EPOCHS}] and continue from there",
            )
        return await self._api.epoch_proof(first, last, client=CLIENT_ADDRESS.get())

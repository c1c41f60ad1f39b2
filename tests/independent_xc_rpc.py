"""What tests/independent_xc.py verifies, gathered over JSON-RPC only (docs/rpc.md
"Cross-chain", docs/crosschain.md "Verifying a relayed record back to the business chain's
genesis"). Written from the documents alone; imports nothing of gmchain.

From the regulator: the record (`gm_getRelayedRecord`), its `recv_packets` transaction
(`recvTxId`) and the `update_client` transactions the record names (`epochUpdateTxIds`, then
`updateTxId`), each as `gm_getTransactionByHash` + `gm_getTransactionProof`; the client
(`gm_getCrossChainClient`). From the business chain (only when given and needed): its epoch
proof 0..N (`gm_getEpochProof`), N the epoch the regulator's client was registered at: the
lowest epoch with an `xclient.epoch_end` entry (`gm_call`), or the header's epoch if none is
below it.
"""

from __future__ import annotations

from typing import Any

from tests.independent_client import RpcClient


def gather(
    regulator_url: str, business_chain: str, key: int | str, business_url: str | None = None
) -> dict[str, Any]:
    rpc = RpcClient(regulator_url)
    record = rpc.call("gm_getRelayedRecord", [business_chain, key])
    out: dict[str, Any] = {"record": record, "updates": []}
    out["client"] = rpc.call("gm_getCrossChainClient", [business_chain])
    if not isinstance(record, dict):
        return out

    def item(tx_id: str) -> dict[str, Any]:
        return {
            "tx": rpc.call("gm_getTransactionByHash", [tx_id]),
            "proof": rpc.call("gm_getTransactionProof", [tx_id]),
        }

    out["recv"] = item(record["recvTxId"])
    names = [*record.get("epochUpdateTxIds", []), record.get("updateTxId")]
    out["updates"] = [item(t) for t in names if isinstance(t, str)]
    n = (record.get("header") or {}).get("epoch", 0)
    for e in range(n):  # N: the lowest epoch whose end the client verified, else the header's
        if rpc.call("gm_call", ["xclient", "epoch_end", [business_chain, e]]) is not None:
            n = e
            break
    if business_url is not None and n > 0:
        out["business_epoch_proof"] = RpcClient(business_url).call("gm_getEpochProof", [0, n])
    return out


__all__ = ["gather"]

"""Cross-chain transactions and packets for the relay drills (tests/test_drill_relay.py).

Rules this helper keeps:
1. Every packet, update and misbehaviour report is built from what the chains serve over RPC
   (gm_getTransactionProof, gm_getTransactionByHash, gm_getCommitProof) with the relayer's own
   converters (crosschain/relay_proofs.py), then, for a forgery, changed in exactly one way.
2. Every submission is an ordinary transaction of the relayer account (`xclient.*`), SM2-signed
   and sent with gm_sendRawTransaction; `send_xc` returns the committed receipt (JSON) whatever
   its status, so the drill judges it.
3. `events(receipt, name)` reads a receipt's events as dicts of their fields.
"""

from __future__ import annotations

from typing import Any

from gmchain.chain.lightclient import Certificate
from gmchain.crosschain.packets import ClientUpdate, Packet
from gmchain.crosschain.relay_proofs import ProvenTx, proven_tx_from_bundle
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.codec import Value
from tests.platform_rig import Platform
from tests.xc_forge import certificate_of

__all__ = ["commit_certificate", "events", "proven", "send_xc", "update_of"]


def proven(p: Platform, chain: str, tx_id: str) -> ProvenTx:
    """Rule 1: a committed transaction of `chain` with its proof (bundle v2)."""
    bundle = p.rpc(chain, "gm_getTransactionProof", [tx_id], t=30)
    raw = p.rpc(chain, "gm_getTransactionByHash", [tx_id])["raw"]
    return proven_tx_from_bundle(bundle, raw)


def commit_certificate(p: Platform, chain: str, height: int) -> Certificate:
    return certificate_of(p.rpc(chain, "gm_getCommitProof", [height], t=30))


def update_of(chain_id: str, cert: Certificate) -> bytes:
    return ClientUpdate(chain_id=chain_id, epoch_changes=(), certificate=cert).encode()


def send_xc(
    p: Platform,
    chain: str,
    method: str,
    args: list[Value],
    key: PrivateKey,
    *,
    timeout_s: float = 60,
) -> dict[str, Any]:
    """Rule 2."""
    sdk = p.sdk(chain)
    info = sdk.node_info()
    tx = sdk.build_tx(
        key,
        "xclient",
        method,
        args,
        chain_id=info["chainId"],
        expiry=sdk.height() + max(1, int(info["replayWindow"]) // 2),
    )
    tx_id = p.rpc(chain, "gm_sendRawTransaction", ["0x" + tx.encode().hex()])
    return p.receipt(chain, tx_id, timeout_s)


def recv(p: Platform, packets: list[Packet], key: PrivateKey) -> dict[str, Any]:
    return send_xc(p, "regulator", "recv_packets", [[[pk.encode()] for pk in packets]], key)


def events(receipt: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Rule 3."""
    return [dict(e["fields"]) for e in receipt["events"] if e["name"] == name]

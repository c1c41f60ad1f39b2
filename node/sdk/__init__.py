"""The gmchain client SDK: build and sign transactions, submit, wait, query, fetch, verify proofs.

Installs and imports without the node's server dependencies (LevelDB, uvloop, prometheus-client,
aiohttp's server): `pip install gmchain` gives the SDK, `pip install 'gmchain[node]'` the node
(docs/sdk.md, "Install"). The parts: `errors` (exceptions, hex), `client` (the asyncio `Client`),
`sync` (`SyncClient`), `proof` (`verify_proof_bundle`, over chain/lightclient.py).

Rules this package keeps (DESIGN.md "The way a transaction travels"; docs/protocol.md; docs/rpc.md):
1. Transactions are built and signed here, never by the node: the body is a `ledger.types.TxBody`,
   its id is `compute_signing_root("tx", body)` and the SM2 signature is over that id
   (GB/T 32918.2 through `crypto_sm`, which wraps OpenSSL; nothing cryptographic is done here).
2. Replay window (FISCO BCOS #2156 is the bug not to repeat: the SDK's blockLimit drifted): the
   expiry of every transaction is computed from the node's *current* head at send time,
   `expiry = head + max(1, W // 2)` with W from `gm_nodeInfo`, so `head < expiry <= head + W` holds
   at the node with half a window of slack. Only the chain id and W are cached.
3. Waiting for a receipt subscribes to `txCommit` on the WebSocket *before* submitting, so a fast
   commit cannot be missed; if the WebSocket is unavailable it falls back to
   `gm_waitForReceipt`. A timeout raises `TxTimeout` (the tx may still commit; its id is given).
4. Every failure is one of three exceptions with a readable message: `NodeUnreachable` (no
   connection), `RpcError` (the node answered with a JSON-RPC error: code, message, data),
   `SdkError` (anything else the caller should read: bad reply, failed transaction, bad proof).
5. Binary values on the wire are `0x` lowercase hex (JSON-RPC 2.0 + docs/rpc.md); heights are ints.
6. Proofs are verified offline by one entry point, `verify_proof_bundle`, and only against a trust
   anchor the caller gives (the genesis or a validator set): a bundle cannot certify itself.
   No RPC call is needed or made.
7. Evidence replies are the JSON objects the node renders (camelCase members, docs/evidence.md);
   the SDK passes them on as they are and only checks that each is an object or null.
8. TLS and read authentication (docs/rpc.md): `ca_file` names the certificates trusted for an
   https:// node; with `auth_key` the client logs in lazily — a call refused with -32010 (login
   required) or -32011 (token expired or unknown) makes it log in (gm_authChallenge, SM2 over
   compute_signing_root("rpc-login", [chainId, nodeId, challenge]), gm_authLogin) and send the
   call once more; the token is sent as `Authorization: Bearer` on HTTP and WebSocket requests.
"""

from gmchain.chain.lightclient import VerifiedProof, compute_validator_set_fingerprint
from gmchain.node.sdk.client import DEFAULT_URL, Client
from gmchain.node.sdk.errors import NodeUnreachable, RpcError, SdkError, TxTimeout, from_hex, to_hex
from gmchain.node.sdk.proof import load_trust_anchor, verify_proof_bundle
from gmchain.node.sdk.sync import SyncClient

__all__ = [
    "DEFAULT_URL",
    "Client",
    "NodeUnreachable",
    "RpcError",
    "SdkError",
    "SyncClient",
    "TxTimeout",
    "VerifiedProof",
    "compute_validator_set_fingerprint",
    "from_hex",
    "load_trust_anchor",
    "to_hex",
    "verify_proof_bundle",
]

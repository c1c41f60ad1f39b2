"""The node's SM2 identity as consensus sees it: a Signer over its key, a Verifier over the
validators' public keys (consensus/types.py `Signer`, `Verifier`)."""

from __future__ import annotations

from collections.abc import Sequence

from gmchain.crypto_sm import PrivateKey, PublicKey
from gmchain.ledger.types import NodeId

__all__ = ["KeySigner", "KeyVerifier"]


class KeySigner:
    """consensus.Signer over an SM2 identity key."""

    def __init__(self, key: PrivateKey) -> None:
        self._key = key
        self.node_id = NodeId(key.public_key.address)

    def sign(self, msg: bytes) -> bytes:
        return self._key.sign(msg)


class KeyVerifier:
    """consensus.Verifier over the validators' SM2 public keys."""

    def __init__(self, keys: Sequence[PublicKey]) -> None:
        self._keys = {NodeId(k.address): k for k in keys}

    def verify(self, node_id: NodeId, msg: bytes, sig: bytes) -> bool:
        key = self._keys.get(node_id)
        return key is not None and key.verify(msg, sig)

"""`verify_proof_bundle`: the SDK's entry to the light client (rule 6 of gmchain.node.sdk).

All checking is done by chain/lightclient.py (the one light client); this module only turns the
caller's trust anchor (a genesis, its file, or a validator set with its chain id) into a
`TrustAnchor` and the light client's errors into `SdkError`. No RPC call is made.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from gmchain.chain.lightclient import (
    ProofCheckError,
    TrustAnchor,
    TrustAnchorError,
    VerifiedProof,
    verify_full_proof,
)
from gmchain.ledger.types import Genesis, GenesisValidator
from gmchain.node.sdk.errors import SdkError

__all__ = ["load_trust_anchor", "verify_proof_bundle"]


def load_trust_anchor(
    *,
    genesis: Genesis | str | os.PathLike[str] | None = None,
    validators: Sequence[GenesisValidator | Mapping[str, Any]] | None = None,
    chain_id: str | None = None,
) -> TrustAnchor:
    """The trust anchor of `verify_proof_bundle` (its docstring says which arguments)."""
    _require_one_anchor(genesis, validators)
    try:
        if genesis is not None:
            if not isinstance(genesis, Genesis):
                from gmchain.node.config import ConfigError, load_genesis

                try:
                    genesis = load_genesis(genesis)
                except (ConfigError, OSError) as exc:
                    raise SdkError(f"cannot read the genesis: {exc}") from None
            if chain_id is not None and chain_id != genesis.chain_id:
                raise SdkError(
                    f"chain_id {chain_id!r} differs from the genesis's {genesis.chain_id!r}"
                )
            return TrustAnchor.from_genesis(genesis)
        assert validators is not None
        return TrustAnchor.from_validators(validators, chain_id or "")
    except TrustAnchorError as exc:
        raise SdkError(str(exc)) from None


def verify_proof_bundle(
    bundle: Mapping[str, Any],
    *,
    genesis: Genesis | str | os.PathLike[str] | None = None,
    validators: Sequence[GenesisValidator | Mapping[str, Any]] | None = None,
    chain_id: str | None = None,
) -> VerifiedProof:
    """Verify a `gm_getTransactionProof` bundle offline against a trust anchor (rule 6).

    The anchor is required: the chain's `genesis` (a `Genesis` or the path of its genesis.json),
    or a `validators` set you trust (`GenesisValidator`s, or mappings with `pubkey` and `power`)
    with its `chain_id` (required: votes sign the chain id, and it must come from the anchor,
    never from the bundle). Everything is checked (docs/protocol.md §9): the transaction's
    Merkle paths to its block's tx_root and to the anchor header's accumulator, the receipt's
    path to receipt_root, the header links, and every commit certificate's QC signatures and
    quorum (more than 2/3 of the trusted voting power); with a genesis, headers at height 1
    must descend from its genesis block. Nothing inside the bundle is trusted. Returns what
    was proven (naming the chain id, the validator set's fingerprint and, if bound, the
    genesis); raises `SdkError` saying why otherwise.
    """
    _require_one_anchor(genesis, validators)
    if not isinstance(bundle, Mapping) or not isinstance(bundle.get("header"), str):
        raise SdkError("malformed bundle: expected a JSON object with a hex `header`")
    trust = load_trust_anchor(genesis=genesis, validators=validators, chain_id=chain_id)
    try:
        return verify_full_proof(bundle, trust)
    except ProofCheckError as exc:
        raise SdkError(str(exc)) from None


def _require_one_anchor(genesis: object, validators: object) -> None:
    if (genesis is None) == (validators is None):
        raise SdkError(
            "a proof needs exactly one trust anchor: genesis= (the chain's genesis) or "
            "validators= (a validator set you trust)"
        )

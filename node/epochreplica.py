"""The replica a node runs in its current epoch (node/driver.py rule 6; docs/consensus.md "Epochs").

Rules this module keeps:
1. Epoch 0 (no switch): the genesis set signs, the node's configured timeouts apply; the replica
   starts from the committed head, its QC, the stored SafetyData and the stored uncommitted
   blocks.
2. A later epoch (a switch): the epoch's set and keys sign, its parameters apply (E11), the root
   is E with QC(E); SafetyData restarts (consensus/safety.py E1) unless the node is restarting
   inside that epoch, when the stored copy, head and blocks are used as in rule 1.
3. A validator of the epoch it restarts in does not start signing on a store restored from a
   snapshot without safety data (node/safetystore.py rule 5): start-up fails with the recovery.
"""

from __future__ import annotations

from collections.abc import Callable

from gmchain.chain.core import Chain
from gmchain.consensus import ConsensusConfig, Replica
from gmchain.consensus.types import EpochStart, ValidatorSet, make_validator_set
from gmchain.crypto_sm import PrivateKey, PublicKey
from gmchain.ledger.store import Store
from gmchain.ledger.types import NodeId, QuorumCert
from gmchain.node.driver import compute_epoch_consensus_config
from gmchain.node.safetystore import check_signing_start, load_safety
from gmchain.node.signing import KeySigner, KeyVerifier

__all__ = ["build_replica"]


def build_replica(
    *,
    chain: Chain,
    store: Store,
    key: PrivateKey,
    node_id: NodeId,
    chain_id: str,
    base_config: ConsensusConfig,
    genesis_validators: tuple[ValidatorSet, KeyVerifier],
    committed_qc: Callable[[], QuorumCert],
    now_ms: int,
    switch: EpochStart | None,
    restarting: bool,
) -> Replica:
    if switch is None:  # rule 1
        validators, verifier = genesis_validators
        safety = load_safety(store)  # sealed; a damaged copy stops the node (safetystore.py)
        if node_id in validators:
            check_signing_start(store, safety)  # rule 3
        return Replica(
            config=base_config,
            validators=validators,
            chain_id=chain_id,
            signer=KeySigner(key) if node_id in validators else None,
            verifier=verifier,
            app=chain,
            committed=chain.head,
            high_qc=committed_qc(),
            safety=safety,
            now_ms=now_ms,
            # Always known, so block 1's genesis QC verifies in a BlockResponse after a restart
            # too (without it a restarted node dropped every response reaching down to block 1).
            genesis_id=chain.genesis_id,
            blocks=chain.pending_blocks(),
        )
    config = switch.config  # rule 2
    head = chain.head if restarting else switch.ending
    at_root = head.block_id == switch.ending.block_id
    validators = make_validator_set(config)
    safety = load_safety(store) if restarting else None
    if restarting and node_id in validators:
        check_signing_start(store, safety)  # rule 3
    return Replica(
        config=compute_epoch_consensus_config(base_config, config),
        validators=validators,
        chain_id=chain_id,
        signer=KeySigner(key) if node_id in validators else None,
        verifier=KeyVerifier([PublicKey.from_bytes(v.pubkey) for v in config.validators]),
        app=chain,
        committed=head,
        high_qc=switch.root_qc if at_root else committed_qc(),
        safety=safety,
        now_ms=now_ms,
        genesis_id=chain.genesis_id,
        blocks=chain.pending_blocks() if restarting else (),
        epoch=config.epoch,
        root_qc=switch.root_qc,
    )

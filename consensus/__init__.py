"""consensus: a sans-IO Jolteon (DiemBFT v4, 2-chain) core, packing policy and simulator.

Importing this package pulls in no asyncio, aiohttp, plyvel, `time` or global `random`
(tests/test_consensus_imports.py checks it). See docs/consensus.md.
"""

from gmchain.consensus.certs import CertChecker, make_genesis_qc
from gmchain.consensus.messages import (
    BlockRequest,
    BlockResponse,
    CommitProof,
    ConsensusMessage,
    SyncInfo,
    SyncRequest,
    SyncResponse,
)
from gmchain.consensus.replica import Replica
from gmchain.consensus.safety import SafetyData, SafetyRules
from gmchain.consensus.types import (
    App,
    Broadcast,
    Commit,
    ConsensusConfig,
    Effect,
    Event,
    MessageReceived,
    PersistBlock,
    PersistSafety,
    Send,
    Signer,
    Start,
    Tick,
    Validator,
    ValidatorSet,
    Verifier,
)

__all__ = [
    "App",
    "BlockRequest",
    "BlockResponse",
    "Broadcast",
    "CertChecker",
    "Commit",
    "CommitProof",
    "ConsensusConfig",
    "ConsensusMessage",
    "Effect",
    "Event",
    "MessageReceived",
    "PersistBlock",
    "PersistSafety",
    "Replica",
    "SafetyData",
    "SafetyRules",
    "Send",
    "Signer",
    "Start",
    "SyncInfo",
    "SyncRequest",
    "SyncResponse",
    "Tick",
    "Validator",
    "ValidatorSet",
    "Verifier",
    "make_genesis_qc",
]

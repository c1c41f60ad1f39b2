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
    Bug,
    Commit,
    CommittedBlocksFetched,
    ConsensusConfig,
    Effect,
    Event,
    MessageReceived,
    PersistBlock,
    PersistSafety,
    ProposalReceived,
    Send,
    Signer,
    Start,
    Tick,
    TimeoutReceived,
    Validator,
    ValidatorSet,
    Verifier,
    VoteReceived,
)

__all__ = [
    "App",
    "BlockRequest",
    "BlockResponse",
    "Broadcast",
    "Bug",
    "CertChecker",
    "Commit",
    "CommitProof",
    "CommittedBlocksFetched",
    "ConsensusConfig",
    "ConsensusMessage",
    "Effect",
    "Event",
    "MessageReceived",
    "PersistBlock",
    "PersistSafety",
    "ProposalReceived",
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
    "TimeoutReceived",
    "Validator",
    "ValidatorSet",
    "Verifier",
    "VoteReceived",
    "make_genesis_qc",
]

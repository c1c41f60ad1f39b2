"""A chain that changes its validator set, driven by hand with real SM2 QCs, for the epoch tests.

Rules this helper keeps:
1. Blocks are built, validated and committed by the real `chain.core.Chain` over a real store
   (LevelDB or MemStore); every QC is signed by the keys of its header's epoch over
   `QuorumCert.signing_root(chain_id, epoch, block_id, round, height)`.
2. An epoch change comes from real governance transactions (contracts/governance.py): the
   genesis committee is the validators' org, `org-a`, whose admin proposes a change and votes for
   it in the same block; the approved proposal executes there and writes the next EpochConfig.
3. Nothing here decides a test's outcome: it only builds inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gmchain.chain.core import Chain
from gmchain.chain.epochs import EpochSwitch
from gmchain.chain.txrules import TxRules
from gmchain.consensus.messages import CommitProof
from gmchain.consensus.packing import PackingConfig, PackingPolicy
from gmchain.contracts import default_registry
from gmchain.contracts.framework import Registry
from gmchain.contracts.governance import make_join_request, propose_args, vote_args
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.store_api import ChainStore
from gmchain.ledger.types import (
    Block,
    BlockHeader,
    Genesis,
    GenesisValidator,
    NodeId,
    QuorumCert,
    Round,
    SignedTx,
)
from gmchain.node.chainpool import MempoolPool
from gmchain.node.mempool import Mempool, MempoolConfig
from tests.node_helpers import TestNet, make_net, sign_tx

__all__ = ["Rig", "make_rig", "validator_of"]


def validator_of(key: PrivateKey) -> GenesisValidator:
    return GenesisValidator(pubkey=key.public_key.to_bytes(), power=1, org="org-a")


@dataclass
class Rig:
    net: TestNet
    store: ChainStore
    chain: Chain
    mempool: Mempool
    keys: list[PrivateKey]  # every validator key any epoch uses; keys[0] is the genesis one
    now: int = 0
    # The branch the next block extends: its parent and the QC that certifies it.
    parent: BlockHeader | None = None
    justify: QuorumCert | None = None
    switches: list[EpochSwitch] = field(default_factory=list)
    pending: Block | None = None  # certified on the branch, not committed yet (`run`)
    proposals: int = 0  # governance proposals made so far (the next id is this + 1)
    registry: Registry | None = None  # the contracts the chain runs (default_registry if None)

    @property
    def genesis(self) -> Genesis:
        return self.net.genesis

    def reopen(self, store: ChainStore) -> None:
        """A restart: a new Chain (and pool) over `store`."""
        self.store = store
        self.chain, self.mempool = _make_chain(self.genesis, store, self.registry)
        head = self.chain.head
        switch = self.chain.current_epoch_switch()
        self.parent, self.pending = head, None
        at_end = switch is not None and switch.ending == head
        self.justify = switch.root_qc if switch is not None and at_end else self.qc(head)

    def keys_of(self, epoch: int) -> list[PrivateKey]:
        members = {v.pubkey for v in self.chain.validators.config(epoch).validators}
        return [k for k in self.keys if k.public_key.to_bytes() in members]

    def qc(self, header: BlockHeader, keys: list[PrivateKey] | None = None) -> QuorumCert:
        """Rule 1 (`keys`: sign with other keys than the epoch's, to forge one)."""
        root = QuorumCert.signing_root(
            self.genesis.chain_id, header.epoch, header.block_id, header.round, header.height
        )
        signers = self.keys_of(header.epoch) if keys is None else keys
        sigs = sorted((NodeId(k.public_key.address), k.sign(root)) for k in signers)
        return QuorumCert(
            epoch=header.epoch,
            block_id=header.block_id,
            round=header.round,
            height=header.height,
            signatures=tuple(sigs),
        )

    def submit(self, tx: SignedTx) -> None:
        self.mempool.add(tx, len(tx.encode()), self.chain.head.height, self.now)

    def evidence_tx(self) -> SignedTx:
        return sign_tx(self.net.accounts[1], expiry=self.chain.head.height + 50)

    def governance_txs(self, kind: str, values: list[Any]) -> list[SignedTx]:
        """Rule 2: org-a's admin proposes `kind(values)` and votes yes (one block holds both)."""
        self.proposals += 1
        expiry = self.chain.head.height + 50
        admin = self.net.accounts[0]
        return [
            sign_tx(
                admin,
                expiry=expiry,
                contract="governance",
                method="propose",
                args=propose_args(kind, values, expiry),
            ),
            sign_tx(
                admin,
                expiry=expiry,
                contract="governance",
                method="vote",
                args=vote_args(self.proposals, True),
            ),
        ]

    def add_validator_txs(self, key: PrivateKey) -> list[SignedTx]:
        pubkey, org, pop = make_join_request(self.genesis.chain_id, key, "org-a")
        return self.governance_txs("add_validator", [pubkey, 1, org, pop])

    def remove_validator_txs(self, key: PrivateKey) -> list[SignedTx]:
        return self.governance_txs("remove_validator", [key.public_key.to_bytes()])

    def build(self, *, round_: int | None = None) -> Block:
        """A block on the current branch (round: the justify's + 1 unless given)."""
        assert self.parent is not None and self.justify is not None
        self.now += 10
        return self.chain.build_block(
            parent=self.parent,
            round=Round(self.justify.round + 1 if round_ is None else round_),
            justify=self.justify,
            proposer=NodeId(self.keys[0].public_key.address),
            now_ms=self.now,
        )

    def extend(self, block: Block) -> QuorumCert:
        """Certify `block` and make it the branch's tip."""
        qc = self.qc(block.header)
        self.parent, self.justify = block.header, qc
        return qc

    def commit(self, blocks: list[Block], child: Block) -> list[Any]:
        """Commit `blocks` with CommitProof(child, QC(child)); follow an epoch switch."""
        done = self.chain.commit(blocks, CommitProof(header=child.header, qc=self.qc(child.header)))
        switch = self.chain.take_epoch_switch()
        if switch is not None:
            self.switches.append(switch)
            self.parent, self.justify = switch.ending, switch.root_qc
        return done

    def run(self, steps: int, *, txs: dict[int, list[SignedTx]] | None = None) -> None:
        """`steps` blocks on the branch, each committing its parent directly (2-chain); the
        txs of step i enter the pool before block i is built. The last block stays pending."""
        for i in range(steps):
            for tx in (txs or {}).get(i, []):
                self.submit(tx)
            block = self.build()
            if self.pending is not None:
                before = len(self.switches)
                self.commit([self.pending], block)
                self.pending = None
                if len(self.switches) > before:
                    continue  # `block` was the suffix of the epoch end: dropped; build on E
            self.pending = block
            self.extend(block)


def _make_chain(
    genesis: Genesis, store: ChainStore, registry: Registry | None = None
) -> tuple[Chain, Mempool]:
    rules = TxRules.with_new_caches(
        chain_id=genesis.chain_id,
        replay_window=genesis.replay_window,
        registry=registry or default_registry(),
    )
    mempool = Mempool(config=MempoolConfig(), rules=rules)
    chain = Chain(
        genesis=genesis,
        store=store,
        rules=rules,
        pool=MempoolPool(mempool),
        packing=PackingPolicy(PackingConfig(min_block_txs=1, max_block_txs=50)),
    )
    return chain, mempool


def make_rig(
    store: ChainStore,
    *,
    n_keys: int = 3,
    net: TestNet | None = None,
    registry: Registry | None = None,
) -> Rig:
    """A chain over `store` whose genesis has one validator (keys[0]); keys[1:] join later."""
    net = net or make_net(replay_window=200)
    keys = [net.node_key] + [PrivateKey.generate() for _ in range(n_keys - 1)]
    chain, mempool = _make_chain(net.genesis, store, registry)
    head = chain.head
    rig = Rig(net=net, store=store, chain=chain, mempool=mempool, keys=keys, registry=registry)
    rig.now = net.genesis.timestamp_ms + 1000
    rig.parent = head
    rig.justify = QuorumCert(block_id=head.block_id, round=head.round, height=head.height)
    return rig

"""Epochs in the chain library: which block ends an epoch, the epoch record, the switch (issue 12).

Model: DiemBFT v4 / Aptos reconfiguration — an epoch changes only at a committed epoch-ending
block, and the proof of the change is that block's commit certificate, signed by the old set
(Aptos `EpochChangeProof`). Design: /work/wt/EPOCHS.md E2-E4; docs/consensus.md "Epochs".

Rules this module keeps:
1. A block ENDS its epoch iff executing it wrote the governance contract's `ep` key as
   [latest, h] with h = the block's own height (E2); the next epoch's configuration is the one
   the same execution wrote at `ep/<latest>` (`compute_epoch_change`, which reads the block's own
   writes through contracts/gov_state.py's `pending_epoch_change`: the layout lives there only).
   Nothing else ends an epoch.
2. The epoch record of epoch n (n >= 1) is stored with the block E that ended epoch n - 1, in the
   same store write (ledger/store_api.py rule 5). Its bytes are
   `encode([n, start_height, config, [header, ...], proof])` (canonical msgpack, ledger.codec):
   `config` = EpochConfig(n).encode(), `start_height` = E.height + 1, `headers` = the encoded
   headers from E up to the block B the commit certificate certifies (E alone when E was
   committed directly), `proof` = CommitProof(child of B, QC(child)).encode(). Everything in it
   is of epoch n - 1: the headers, the child and both QCs (`EpochRecord.check`).
3. QC(E), the root certificate of epoch n (its first block's justify), is the justify of the
   header after E in the record, or the proof's child's justify when E is the record's only
   header (`EpochRecord.root_qc`).
4. `EpochSwitch` is what the node and the simulator need to start epoch n's replica: the new
   configuration, E's header and QC(E). The chain sets one when a commit ends an epoch and hands
   it over once (`Chain.take_epoch_switch`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

from gmchain.consensus.messages import CommitProof
from gmchain.contracts.gov_state import GOV_NAMESPACE, K_EPOCH, epoch_key, pending_epoch_change
from gmchain.ledger.codec import decode, encode
from gmchain.ledger.epoch import EpochConfig
from gmchain.ledger.types import BlockHeader, Height, QuorumCert

__all__ = [
    "EpochRecord",
    "EpochSwitch",
    "compute_epoch_change",
    "epoch_config_key",
]

StateWrites = Mapping[tuple[str, bytes], bytes | None]


def epoch_config_key(epoch: int) -> bytes:
    """The governance state key of epoch `epoch`'s configuration (EPOCHS.md E2)."""
    return epoch_key(epoch)


class _BlockWrites:
    """The governance namespace as one block's own writes (a StateReader)."""

    __slots__ = ("_writes",)

    def __init__(self, writes: StateWrites) -> None:
        self._writes = writes

    def get(self, key: bytes) -> bytes | None:
        return self._writes.get((GOV_NAMESPACE, key))

    def scan(self, prefix: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        found = sorted(
            (k, v)
            for (ns, k), v in self._writes.items()
            if ns == GOV_NAMESPACE and k.startswith(prefix) and v is not None
        )
        return found[:limit]


def compute_epoch_change(writes: StateWrites, height: int) -> EpochConfig | None:
    """Rule 1: the configuration a block at `height` with state writes `writes` starts, or None
    when the block does not end its epoch."""
    if (GOV_NAMESPACE, K_EPOCH) not in writes:
        return None  # (the ep key read from elsewhere would name an earlier block's change)
    config = pending_epoch_change(_BlockWrites(writes), height)
    # The contract writes both keys in one decision (E2): one without the other is its bug.
    latest, written = decode(writes[(GOV_NAMESPACE, K_EPOCH)] or b"")
    assert (config is not None) == (written == height and latest > 0), (latest, written, height)
    assert config is None or config.epoch == latest, (config.epoch, latest)
    return config


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochSwitch:
    """Rule 4: what starts epoch `config.epoch`."""

    config: EpochConfig
    ending: BlockHeader  # E: the committed block that ended the previous epoch
    root_qc: QuorumCert  # QC(E), of the previous epoch: the new epoch's first justify


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochRecord:
    """Rule 2: epoch `config.epoch`'s configuration, where it starts and the certificate of the
    block that ended the epoch before it."""

    config: EpochConfig
    start_height: int
    headers: tuple[BlockHeader, ...]  # E .. B, each the parent of the next
    proof: CommitProof  # certifies B = headers[-1]

    @property
    def epoch(self) -> int:
        return self.config.epoch

    @property
    def ending(self) -> BlockHeader:
        return self.headers[0]

    @property
    def root_qc(self) -> QuorumCert:
        """Rule 3."""
        return self.headers[1].justify if len(self.headers) > 1 else self.proof.header.justify

    def switch(self) -> EpochSwitch:
        return EpochSwitch(config=self.config, ending=self.ending, root_qc=self.root_qc)

    def check(self) -> None:
        """Rule 2's shape (signatures are the light client's and the replica's to check); an
        AssertionError is our bug: the chain builds records from blocks it committed."""
        prev = self.epoch - 1
        assert self.epoch >= 1 and self.headers, self
        assert self.ending.height + 1 == self.start_height
        for parent, child in itertools.pairwise(self.headers):
            assert child.parent_id == parent.block_id and child.height == parent.height + 1
        assert self.proof.committed_id == self.headers[-1].block_id
        assert all(h.epoch == prev for h in self.headers)
        assert self.proof.header.epoch == prev and self.proof.qc.epoch == prev
        assert self.root_qc.block_id == self.ending.block_id and self.root_qc.epoch == prev

    def encode(self) -> bytes:
        return encode(
            [
                self.epoch,
                self.start_height,
                self.config.encode(),
                [h.encode() for h in self.headers],
                self.proof.encode(),
            ]
        )

    @classmethod
    def decode(cls, raw: bytes) -> EpochRecord:
        epoch, start, config, headers, proof = decode(raw)
        record = cls(
            config=EpochConfig.decode(config),
            start_height=Height(start),
            headers=tuple(BlockHeader.decode(h) for h in headers),
            proof=CommitProof.decode(proof),
        )
        if record.epoch != epoch:
            raise ValueError(f"epoch record {epoch} holds the configuration of {record.epoch}")
        return record

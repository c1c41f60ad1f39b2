"""Forged cross-chain inputs for the relay drills (tests/test_drill_relay.py; issue 13 item 7).

Rules this helper keeps:
1. Certificates are forged the way a coalition of validators (or a thief of their keys) would:
   real SM2 signatures of the given keys over `QuorumCert.signing_root` (docs/protocol.md §6);
   nothing here bypasses a check, so what a drill shows is the light client's answer.
2. `conflicting_certificate` starts from a real certificate of the chain and makes a second block
   at the same height (another timestamp: another block id), its child one round later with a QC
   over it, and a QC over the child: a certificate that passes every check of
   chain/lightclient.py rule 3 when the keys hold more than 2/3 of the power.
3. Nothing here decides a test's outcome: it only builds inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from gmchain.chain.lightclient import Certificate
from gmchain.consensus.messages import CommitProof
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.jsonfmt import parse_hex
from gmchain.ledger.types import BlockHeader, NodeId, QuorumCert, Round

__all__ = ["certificate_of", "conflicting_certificate", "signed_qc", "with_epoch"]


def certificate_of(commit: dict[str, Any]) -> Certificate:
    """The Certificate of a gm_getCommitProof answer ({headers, proof})."""
    return Certificate(
        headers=tuple(BlockHeader.decode(parse_hex(h, name="header")) for h in commit["headers"]),
        proof=CommitProof.decode(parse_hex(commit["proof"], name="proof")),
    )


def signed_qc(header: BlockHeader, keys: Sequence[PrivateKey]) -> QuorumCert:
    """Rule 1: a QC over `header` signed by every key of `keys`."""
    root = QuorumCert.signing_root(
        header.chain_id, header.epoch, header.block_id, header.round, header.height
    )
    sigs = sorted((NodeId(k.public_key.address), k.sign(root)) for k in keys)
    return QuorumCert(
        epoch=header.epoch,
        block_id=header.block_id,
        round=header.round,
        height=header.height,
        signatures=tuple(sigs),
    )


def conflicting_certificate(
    real: Certificate, keys: Sequence[PrivateKey], *, epoch: int | None = None
) -> Certificate:
    """Rule 2: a certificate of another block at the height of `real`'s first header.

    With `epoch`, the forged header and its child claim that epoch instead (a stale epoch's set
    signing a header of today's heights)."""
    first = real.headers[0]
    alt = replace(first, timestamp_ms=first.timestamp_ms + 1)
    if epoch is not None:
        alt = replace(alt, epoch=epoch)
    alt = replace(alt, justify=first.justify if epoch is None else _requalify(first.justify, epoch))
    child = replace(
        real.proof.header,
        epoch=alt.epoch,
        height=alt.height + 1,
        round=Round(alt.round + 1),
        parent_id=alt.block_id,
        timestamp_ms=alt.timestamp_ms + 1,
        justify=signed_qc(alt, keys),
    )
    return Certificate(headers=(alt,), proof=CommitProof(header=child, qc=signed_qc(child, keys)))


def _requalify(qc: QuorumCert, epoch: int) -> QuorumCert:
    return replace(qc, epoch=epoch)


def with_epoch(cert: Certificate, keys: Sequence[PrivateKey], epoch: int) -> Certificate:
    """A certificate of `cert`'s first height whose headers claim `epoch`, signed by `keys`."""
    return conflicting_certificate(cert, keys, epoch=epoch)

"""Checking signatures and certificates: votes, timeouts, QCs, TCs, proposals, commit proofs.

Rules this module keeps:
1. A QC is valid iff its signers are distinct validators whose power reaches the quorum and every
   signature verifies over `QuorumCert.signing_root(chain_id, block_id, round, height)` — or it is
   exactly the genesis QC (no signatures, height 0, round 0, the genesis block id).
2. A TC is valid iff its entries' signers reach the quorum, each entry's signature verifies over
   `TimeoutVote.signing_root(chain_id, tc.round, entry_hqc_round)`, every entry's hqc round is
   below tc.round, `tc.high_qc.round` equals the largest entry hqc round, and `tc.high_qc` is valid
   (Jolteon, FC 2022, section 3, "Pacemaker": the TC carries the highest QC of its signers).
3. A commit proof is valid iff its QC is valid and certifies its header, and the header's round is
   its justify's round + 1 (the 2-chain commit rule).
4. Verified QCs are cached by value (bounded), so a QC seen in many messages is checked once.
5. So are verified (signer, signing root, signature) triples: a QC or TC whose signer set differs
   from the one this node assembled re-uses the votes and timeouts it already checked, so each
   signature is verified once per node (bounded; clearing the cache only costs re-verification).
6. Epochs (docs/consensus.md "Epochs", E5): every vote, timeout, QC and TC must name this
   checker's epoch, with one exception, the epoch root. A checker for epoch e+1 built with
   `root_qc` = QC(E) (E the committed block that ended epoch e) accepts a QC of epoch e iff it
   certifies exactly E: same epoch, block id, round and height as `root_qc`. Its signatures are
   not checked again: the previous epoch's replica verified them before E committed, and two
   nodes may hold different signer subsets of QC(E) (each assembles its own), so matching on what
   the QC certifies keeps them agreeing on the root (as Aptos derives its epoch-start QC from the
   ledger info of the ending block). Any other QC of epoch e, and every other certificate of
   another epoch, is refused.
7. What this replica signs itself goes into rule 5's cache as it is signed (`trusting` wraps its
   signer): its own vote, proposal and timeout come back to it through the same checks as a
   peer's (consensus/replica.py L3), and verifying a signature it has just made with its own key
   proves nothing a peer relies on — each peer verifies it with our public key. Only signatures
   made in this process count: a vote re-sent from persisted safety data is verified as before.
   (With four validators and broadcast votes this was one of the five SM2 verifications a
   replica made per round; docs/benchmarks.md, session 15.)
"""

from __future__ import annotations

from collections.abc import Callable

from gmchain.consensus.messages import CommitProof
from gmchain.consensus.mutations import NO_BUGS, Bug, weak_2f_power
from gmchain.consensus.types import Signer, ValidatorSet, Verifier
from gmchain.ledger.types import (
    Digest,
    NodeId,
    Proposal,
    QuorumCert,
    TimeoutCert,
    TimeoutVote,
    Vote,
)

__all__ = ["CertChecker", "make_genesis_qc"]

_CACHE_LIMIT = 4096
_SIG_CACHE_LIMIT = 16_384


def make_genesis_qc(genesis_id: Digest) -> QuorumCert:
    """The QC that certifies the genesis block by definition (no signatures)."""
    from gmchain.ledger.types import Height, Round

    return QuorumCert(block_id=genesis_id, round=Round(0), height=Height(0), signatures=())


class CertChecker:
    """Pure checks against one validator set; never mutates protocol state."""

    def __init__(
        self,
        *,
        chain_id: str,
        validators: ValidatorSet,
        verifier: Verifier,
        genesis_id: Digest | None,
        epoch: int = 0,
        root_qc: QuorumCert | None = None,
        bugs: frozenset[Bug] = NO_BUGS,
    ) -> None:
        self.chain_id = chain_id
        # The epoch this checker's validator set certifies: a vote, timeout or certificate of
        # any other epoch is refused (ledger/certs.py rule 1), except the epoch root (rule 6).
        self.epoch = epoch
        # Rule 6: QC(E) of the block that ended the previous epoch; None in epoch 0 (the root is
        # the genesis QC) or when the replica starts on a block of its own epoch.
        self.root_qc = root_qc
        self.validators = validators
        self.verifier = verifier
        self.genesis_id = genesis_id
        self.bugs = bugs
        # Invariant: threshold is the quorum power (or the planted 2f bug's weaker one).
        self.threshold = (
            weak_2f_power(validators) if Bug.QUORUM_2F in bugs else validators.quorum_power
        )
        self._good_qcs: set[QuorumCert] = set()
        # (signer, signing root, signature) triples already verified (rule 5).
        self._good_sigs: set[tuple[bytes, bytes, bytes]] = set()

    def _verify_sig(self, node_id: NodeId, root: bytes, sig: bytes) -> bool:
        key = (node_id, root, sig)
        if key in self._good_sigs:
            return True
        if not self.verifier.verify(node_id, root, sig):
            return False
        self._remember(key)
        return True

    def _remember(self, key: tuple[bytes, bytes, bytes]) -> None:
        """Rule 5's cache (bounded: cleared when full, which only costs re-verification)."""
        if len(self._good_sigs) >= _SIG_CACHE_LIMIT:
            self._good_sigs.clear()
        self._good_sigs.add(key)

    def trusting(self, signer: Signer | None) -> Signer | None:
        """Rule 7: `signer`, with every signature it makes entered in this checker's cache."""
        return None if signer is None else _Trusted(signer, self._remember)

    def is_quorum_power(self, power: int) -> bool:
        return power >= self.threshold

    def is_genesis_qc(self, qc: QuorumCert) -> bool:
        return (
            not qc.signatures
            and self.genesis_id is not None
            and qc.block_id == self.genesis_id
            and qc.round == 0
            and qc.height == 0
        )

    def is_root_qc(self, qc: QuorumCert) -> bool:
        """Rule 6: `qc` certifies the epoch root E (whatever subset of epoch e signed it)."""
        r = self.root_qc
        return (
            r is not None
            and qc.epoch == r.epoch
            and qc.block_id == r.block_id
            and qc.round == r.round
            and qc.height == r.height
        )

    def verify_qc(self, qc: QuorumCert) -> bool:
        if qc in self._good_qcs:
            return True
        if self.is_genesis_qc(qc) or self.is_root_qc(qc):
            return True
        previous = Bug.PREVIOUS_EPOCH_QC in self.bugs and qc.epoch + 1 == self.epoch
        if not qc.signatures or (qc.epoch != self.epoch and not previous):
            return False
        vs = self.validators
        power = 0
        for node_id, _ in qc.signatures:
            p = vs.power_of(node_id)
            if p == 0:
                return False
            power += p
        if not self.is_quorum_power(power):
            return False
        root = QuorumCert.signing_root(self.chain_id, qc.epoch, qc.block_id, qc.round, qc.height)
        for node_id, sig in qc.signatures:
            if not self._verify_sig(node_id, root, sig):
                return False
        if len(self._good_qcs) >= _CACHE_LIMIT:
            self._good_qcs.clear()
        self._good_qcs.add(qc)
        return True

    def verify_tc(self, tc: TimeoutCert) -> bool:
        if Bug.UNVERIFIED_TC in self.bugs:
            return True
        if not tc.entries or tc.epoch != self.epoch:
            return False
        vs = self.validators
        power = 0
        max_hqc = -1
        for node_id, hqc_round, _ in tc.entries:
            p = vs.power_of(node_id)
            if p == 0 or hqc_round >= tc.round:
                return False
            power += p
            max_hqc = max(max_hqc, hqc_round)
        if not self.is_quorum_power(power) or tc.high_qc.round != max_hqc:
            return False
        for node_id, hqc_round, sig in tc.entries:
            root = TimeoutVote.signing_root(self.chain_id, tc.epoch, tc.round, hqc_round)
            if not self._verify_sig(node_id, root, sig):
                return False
        return self.verify_qc(tc.high_qc)

    def verify_vote(self, vote: Vote) -> bool:
        if vote.voter not in self.validators or vote.epoch != self.epoch:
            return False
        root = QuorumCert.signing_root(
            self.chain_id, vote.epoch, vote.block_id, vote.round, vote.height
        )
        return self._verify_sig(vote.voter, root, vote.signature)

    def verify_timeout_sig(self, tv: TimeoutVote) -> bool:
        """The signature and membership only; the carried high QC is checked by verify_qc."""
        if (
            tv.voter not in self.validators
            or tv.high_qc.round >= tv.round
            or tv.epoch != self.epoch
        ):
            return False
        root = TimeoutVote.signing_root(self.chain_id, tv.epoch, tv.round, tv.high_qc.round)
        return self._verify_sig(tv.voter, root, tv.signature)

    def verify_proposal_sig(self, p: Proposal) -> bool:
        h = p.block.header
        if h.chain_id != self.chain_id or h.proposer != self.validators.leader(h.round):
            return False
        return self._verify_sig(
            h.proposer, Proposal.signing_root(self.chain_id, h.block_id), p.signature
        )

    def verify_commit_proof(self, proof: CommitProof) -> bool:
        h = proof.header
        return (
            h.chain_id == self.chain_id
            and proof.qc.block_id == h.block_id
            and proof.qc.round == h.round
            and proof.qc.height == h.height
            and h.round == h.justify.round + 1
            and h.parent_id == h.justify.block_id
            and self.verify_qc(proof.qc)
        )


class _Trusted:
    """Rule 7: a Signer whose signatures its CertChecker does not verify again."""

    __slots__ = ("_remember", "_signer", "node_id")

    def __init__(
        self, signer: Signer, remember: Callable[[tuple[bytes, bytes, bytes]], None]
    ) -> None:
        self._signer = signer
        self._remember = remember
        self.node_id = signer.node_id

    def sign(self, msg: bytes) -> bytes:
        sig = self._signer.sign(msg)
        self._remember((self.node_id, msg, sig))
        return sig

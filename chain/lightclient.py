"""The light client: certified header chains and self-contained transaction proofs (bundle v2).

A court or auditor must be able to check a record without trusting any node (DESIGN.md, "Who uses
it"). The bundle `gm_getTransactionProof` hands out (docs/protocol.md §9) is the `ledger.proofs`
bundle plus:

- `version`: 2;
- `receipt` and `receipt_inclusion_proof`: the receipt, proven against the tx block's receipt_root;
- `anchor_header`: the header whose accumulator (acc_size, acc_root) the bundle uses;
- `commit`: `{"headers": [...], "proof": hex}` — the headers from the transaction's own block up
  to a block certified by a commit proof (`consensus.messages.CommitProof`: a child header and a
  quorum certificate, Jolteon's 2-chain rule), each header the parent of the next. Starting at
  the tx's own header is what binds its receipt (proven against that header's receipt_root) to a
  certificate.
- `anchor_commit`: null when the anchor is one of `commit.headers`; otherwise the same object for
  the anchor: headers from the anchor up to its certified tip. A transaction is proven against a
  later header by the accumulator inclusion path (O(log n) hashes), never by the header chain
  between the two blocks, so a bundle's size does not grow with the chain.
- `epoch_proof` (issue 12; absent while the transaction and the anchor are in epoch 0, so such a
  bundle is byte for byte what it was): the epoch-change proof (`verify_epoch_proof`) from epoch
  0 to the higher of the two headers' epochs. The version stays 2: a verifier that predates it
  refuses such a bundle (its certificates name an epoch above 0), it never accepts it wrongly.

The one light client: the CLI (`gmchain proof verify`), the SDK (`verify_proof_bundle`), the
RPC's proof assembly (`build_full_proof`, node/proofserve.py) and, later, crosschain/ use this
module and no other copy of these checks. It needs no node, no store and no network: it imports
only crypto_sm, ledger, consensus' certificate checker and the chain's genesis derivation.

Rules `verify_full_proof` and `verify_header_chain` keep:
1. Everything is checked from bytes: decode, recompute, compare — never trust a field's claim.
2. Trust comes only from the caller's `TrustAnchor` (the genesis, or a set and chain id the
   caller names): no default; nothing inside the bundle is used as a validator set or chain id.
3. Every certificate is checked completely: headers link by parent id and consecutive heights,
   the child names the tip and follows it by one round, the QC names the child, and both QCs carry
   valid signatures of > 2/3 of the voting power (SM2 skipped only by `signatures=False`).
4. Any malformed input raises `ProofCheckError` with a reason in words, never another exception;
   a malformed trust anchor raises `TrustAnchorError`. Both are ValueErrors.
5. A vote's signing root names the chain id, not the genesis (docs/protocol.md §6), so a
   certificate binds a block to a chain id and a validator set only. Given the genesis block's
   id, every header of the bundle at height 1 (or 0) must descend from it; a bundle reaching
   height 1 is thereby bound to that genesis, and `VerifiedProof.genesis_hash` says so. Later
   bundles are bound to (chain id, validator set), which the result names: a chain id must be
   unique per genesis (docs/rpc.md, "Verifying a proof").
6. Epochs (EPOCHS.md E8): a certificate is checked against the set of its headers' epoch, and all
   its headers, its child and both QCs must be of that one epoch. The trust anchor names the
   epoch of its set (genesis: 0). An epoch-change proof entry for epoch e is checked with e's set
   (rule 3), its first header E must carry `next_validators_hash` = the commitment to epoch e + 1
   and the entry's `next_validators` (ledger/epoch.py rule 3: a header inside epoch e commits to
   epoch e, so only e's last block and its suffix pass), which then become epoch e + 1's set;
   entries start at or below the trusted epoch, are consecutive, and their E heights ascend.
   Entries below the trusted epoch are skipped. A transaction in an epoch below the trust
   anchor's cannot be verified.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard, TypeVar

from gmchain.chain.genesis import make_genesis_block
from gmchain.chain.validators import GenesisValidators
from gmchain.consensus.certs import CertChecker
from gmchain.consensus.messages import CommitProof
from gmchain.consensus.types import Validator, ValidatorSet
from gmchain.crypto_sm import CryptoError, PublicKey
from gmchain.ledger.codec import DecodeError
from gmchain.ledger.epoch import next_validators_commitment, validator_set_fingerprint
from gmchain.ledger.jsonfmt import hex0x, parse_hex
from gmchain.ledger.merkle import NodeGetter, leaf_hash, root_and_inclusion_proof, verify_inclusion
from gmchain.ledger.proofs import ProofFormatError, TxProofBundle, compute_tx_proof, verify_tx_proof
from gmchain.ledger.types import BlockHeader, Digest, Genesis, GenesisValidator, NodeId, Receipt

__all__ = [
    "BUNDLE_VERSION",
    "Certificate",
    "ProofCheckError",
    "TrustAnchor",
    "TrustAnchorError",
    "VerifiedProof",
    "build_full_proof",
    "check_certificate",
    "check_epoch_change",
    "compute_validator_set_fingerprint",
    "validators_to_json",
    "verify_epoch_proof",
    "verify_full_proof",
    "verify_header_chain",
]

BUNDLE_VERSION = 2
_T = TypeVar("_T")


def compute_validator_set_fingerprint(validators: Sequence[GenesisValidator]) -> Digest:
    """The validator-set fingerprint, ledger/epoch.py rule 3 (the one implementation): SM3 of the
    "validator-set" prefix || each validator's 65-byte key || u64 big-endian power, ascending by
    key. A header's `next_validators_hash` commits to it with the next block's epoch
    (`ledger.epoch.next_validators_commitment`)."""
    return validator_set_fingerprint(validators)


class ProofCheckError(ValueError):
    """The bundle does not prove what it claims (or is malformed); the message says why."""


class TrustAnchorError(ValueError):
    """The trust anchor the caller gave is unusable (empty set, bad key, no chain id)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustAnchor:
    """What a light client trusts (rule 2): a chain id, its validator set and, if known, the
    genesis (its document hash and its block's id, rule 5). Build it with `from_genesis` or
    `from_validators`; nothing here ever comes from the bundle being checked."""

    chain_id: str
    validators: tuple[GenesisValidator, ...]
    genesis: tuple[Digest, Digest] | None = None  # (genesis document hash, genesis block id)
    epoch: int = 0  # the epoch whose set `validators` is (rule 6)

    def __post_init__(self) -> None:
        if not isinstance(self.chain_id, str) or not self.chain_id:
            raise TrustAnchorError(
                "a validator set needs its chain_id: the votes sign it, and it must come from "
                "the trust anchor, not from the bundle"
            )
        if not isinstance(self.epoch, int) or isinstance(self.epoch, bool) or self.epoch < 0:
            raise TrustAnchorError(f"the trusted epoch must be an integer >= 0, got {self.epoch!r}")
        if not self.validators:
            raise TrustAnchorError("the trusted validator set is empty")
        if len({v.pubkey for v in self.validators}) != len(self.validators):
            raise TrustAnchorError("the trusted validator set names a key twice")
        for i, v in enumerate(self.validators):
            try:
                PublicKey.from_bytes(v.pubkey)
            except (CryptoError, ValueError) as exc:
                raise TrustAnchorError(f"validators[{i}]: not an SM2 public key: {exc}") from None

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> TrustAnchor:
        """The chain's own genesis: its chain id and validators, and the genesis binding."""
        block0 = make_genesis_block(genesis)[0].header.block_id
        return cls(
            chain_id=genesis.chain_id,
            validators=GenesisValidators(genesis).validators_at(0),  # the set the genesis names
            genesis=(genesis.compute_hash(), block0),
        )

    @classmethod
    def from_validators(
        cls,
        validators: Sequence[GenesisValidator | Mapping[str, Any]],
        chain_id: str,
        *,
        epoch: int = 0,
    ) -> TrustAnchor:
        """A validator set the caller trusts: `GenesisValidator`s or JSON objects
        `{"pubkey": hex, "power": int, "org"?: str}` (the `validators` member of a
        gm_getCommitProof answer has this shape), with the chain id they sign for."""
        out = []
        for i, v in enumerate(validators):
            if isinstance(v, GenesisValidator):
                out.append(v)
                continue
            try:
                pub = v["pubkey"]
                out.append(
                    GenesisValidator(
                        pubkey=bytes.fromhex(pub.removeprefix("0x").removeprefix("0X")),
                        power=v["power"],
                        org=str(v.get("org") or "(unnamed)"),  # not checked: only keys and power
                    )
                )
            except (KeyError, TypeError, AttributeError, ValueError) as exc:
                raise TrustAnchorError(
                    f"validators[{i}]: expected {{pubkey, power, org}}: {exc}"
                ) from None
        return cls(chain_id=chain_id, validators=tuple(out), epoch=epoch)

    @property
    def fingerprint(self) -> Digest:
        return compute_validator_set_fingerprint(self.validators)


@dataclass(frozen=True, slots=True, kw_only=True)
class Certificate:
    """Headers `[block .. tip]` (each the parent of the next) and the CommitProof of the tip."""

    headers: tuple[BlockHeader, ...]
    proof: CommitProof

    def to_json(self) -> dict[str, Any]:
        return {
            "headers": [hex0x(h.encode()) for h in self.headers],
            "proof": hex0x(self.proof.encode()),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedProof:
    """What a verified bundle proves (every field checked against the caller's validator set)."""

    tx_id: Digest
    height: int  # the tx's block
    block_id: Digest
    index_in_block: int
    receipt: Receipt
    acc_size: int
    acc_root: Digest
    anchor_height: int
    anchor_block_id: Digest
    chain_id: str  # the trust anchor's chain id, which every header and vote names
    validator_set: Digest  # compute_validator_set_fingerprint of the trusted set
    # The genesis document's hash when the bundle reaches height 1 and was checked against a
    # genesis (rule 5); None: bound to (chain_id, validator_set) only.
    genesis_hash: Digest | None
    # The tx block's epoch; above the trusted epoch, its set came from the bundle's epoch-change
    # proof, checked from the trusted set (rule 6).
    epoch: int = 0

    def describe(self) -> str:
        bound = (
            f"descends from genesis {hex0x(self.genesis_hash)}"
            if self.genesis_hash is not None
            else "not bound to a genesis (no header at height 1)"
        )
        return (
            f"VALID: tx {hex0x(self.tx_id)} in block {self.height}, receipt status "
            f"{self.receipt.status.name}; chain {self.chain_id!r}; accumulator size "
            f"{self.acc_size} at height {self.anchor_height}; committed under a quorum "
            f"certificate checked against validator set {self.validator_set.hex()[:16]}"
            + (f" and the epoch changes to epoch {self.epoch}" if self.epoch else "")
            + f"; {bound}"
        )


def validators_to_json(validators: Sequence[GenesisValidator]) -> list[dict[str, Any]]:
    """`{"pubkey": hex, "power": int, "org": str}` per validator (`from_validators` reads it)."""
    return [{"pubkey": hex0x(v.pubkey), "power": v.power, "org": v.org} for v in validators]


def build_full_proof(
    *,
    epoch_proof: Mapping[str, Any] | None = None,
    header: BlockHeader,
    tx_ids: Sequence[bytes],
    receipts: Sequence[bytes],
    index: int,
    get_node: NodeGetter,
    anchor: BlockHeader,
    commit: Certificate,
    anchor_commit: Certificate | None,
) -> dict[str, Any]:
    """The version-2 bundle (module docstring). `commit` starts at `header`; `anchor_commit` is
    None iff `anchor` is one of `commit.headers`, else it starts at `anchor`."""
    bundle = compute_tx_proof(header, tx_ids, index, get_node, acc_size=anchor.acc_size)
    receipt_root, receipt_path = root_and_inclusion_proof([leaf_hash(r) for r in receipts], index)
    if receipt_root != header.receipt_root:
        raise ValueError("stored receipts do not match the header's receipt_root")
    out = bundle.to_json()
    out["version"] = BUNDLE_VERSION
    out["receipt"] = hex0x(receipts[index])
    out["receipt_inclusion_proof"] = [hex0x(h) for h in receipt_path]
    out["anchor_header"] = hex0x(anchor.encode())
    out["commit"] = commit.to_json()
    out["anchor_commit"] = None if anchor_commit is None else anchor_commit.to_json()
    if epoch_proof is not None:
        out["epoch_proof"] = dict(epoch_proof)
    return out


def verify_full_proof(doc: Mapping[str, Any], trust: TrustAnchor) -> VerifiedProof:
    """Check a version-2 bundle (module docstring) against `trust`; raise ProofCheckError."""
    return _guarded(lambda: _verify(doc, trust))


def verify_epoch_proof(doc: Mapping[str, Any], trust: TrustAnchor) -> TrustAnchor:
    """Check an epoch-change proof `{"from_epoch", "to_epoch", "entries": [...]}` (a bundle's
    `epoch_proof`, or a gm_getEpochProof answer) from `trust` (rule 6); return the trust anchor
    of `to_epoch` (its set, with `trust`'s chain id and genesis). Raises ProofCheckError."""

    def check() -> TrustAnchor:
        reached = _walk_epochs(doc, trust)[0][-1]
        if reached.epoch != doc["to_epoch"]:
            raise ProofCheckError(
                f"epoch_proof: ends at epoch {doc['to_epoch']}, below the trusted epoch "
                f"{trust.epoch} (a proof only leads forward)"
            )
        return reached

    return _guarded(check)


def verify_header_chain(
    certificate: Mapping[str, Any], trust: TrustAnchor, *, first: BlockHeader | None = None
) -> list[BlockHeader]:
    """Check a certified header chain `{"headers": [hex, ...], "proof": hex}` (a bundle's
    `commit`, or the `headers` and `proof` of a gm_getCommitProof answer) against `trust`
    (rules 3 and 5); return its headers, each now known to be committed. `first`, if given, is
    the header the chain must start at. Raises ProofCheckError."""
    cert = _guarded(lambda: _parse_certificate(certificate, "certificate"))
    return check_certificate(cert, trust, first=first)


def check_certificate(
    cert: Certificate,
    trust: TrustAnchor,
    *,
    first: BlockHeader | None = None,
    what: str = "certificate",
    signatures: bool = True,
) -> list[BlockHeader]:
    """The object-level check behind `verify_header_chain` (rules 3, 5 and 6): `cert` against
    `trust`'s set, of the headers' epoch; return its headers, or raise ProofCheckError (also
    for crosschain/xclient.py). `signatures=False` (chain/fastjoin.py rule 4 only) checks all
    but the SM2 signatures (signers of the set, a quorum): for QCs inside certified headers."""

    def check() -> list[BlockHeader]:
        headers = _check_cert(cert, first, _checker(trust, signatures), what)
        _check_genesis(headers, trust.genesis)
        return headers

    return _guarded(check)


def check_epoch_change(
    change_epoch: int,
    cert: Certificate,
    next_validators: Sequence[GenesisValidator | Mapping[str, Any]],
    trust: TrustAnchor,
    *,
    what: str | None = None,
) -> TrustAnchor:
    """Rule 6 for one epoch change (an `epoch_proof` entry, or an `EpochChange` of a client
    update): `cert` is checked with `trust`'s set, which must be of `change_epoch`; its first
    header E must carry `next_validators_hash` = the commitment to epoch `change_epoch + 1` and
    `next_validators` (ledger/epoch.py rule 3); return the trust anchor of epoch
    `change_epoch + 1` (that set, `trust`'s chain id and genesis). Raises ProofCheckError."""
    return _guarded(
        lambda: _check_epoch_change(
            change_epoch, cert, next_validators, trust, what or f"epoch change {change_epoch}"
        )
    )


def _check_epoch_change(
    e: int,
    cert: Certificate,
    next_validators: Sequence[GenesisValidator | Mapping[str, Any]],
    current: TrustAnchor,
    what: str,
) -> TrustAnchor:
    if e != current.epoch:
        raise ProofCheckError(
            f"{what}: ends epoch {e}, but the trusted set is of epoch {current.epoch}"
        )
    ending = _check_cert(cert, None, _checker(current), what)[0]
    nxt = TrustAnchor.from_validators(next_validators or [], current.chain_id, epoch=e + 1)
    if ending.next_validators_hash != next_validators_commitment(e + 1, nxt.validators):
        raise ProofCheckError(
            f"{what}: the ending block's next_validators_hash is not the commitment to "
            f"epoch {e + 1} and next_validators (another set, or E does not end epoch {e})"
        )
    return TrustAnchor(
        chain_id=current.chain_id,
        validators=nxt.validators,
        genesis=current.genesis,
        epoch=e + 1,
    )


def _guarded(check: Callable[[], _T]) -> _T:
    """Rule 4: every failure of `check` as a ProofCheckError."""
    try:
        return check()
    except ProofCheckError:
        raise
    except (ValueError, KeyError, TypeError, DecodeError, ProofFormatError) as exc:
        raise ProofCheckError(f"malformed proof: {exc}") from None


def _verify(doc: Mapping[str, Any], trust: TrustAnchor) -> VerifiedProof:
    if not isinstance(doc, Mapping):
        raise ProofCheckError("malformed proof: expected a JSON object")
    version = doc.get("version")
    if version != BUNDLE_VERSION:
        raise ProofCheckError(
            f"unsupported bundle version {version!r} (this verifier reads version "
            f"{BUNDLE_VERSION}; fetch the proof again from an up-to-date node)"
        )
    bundle = TxProofBundle.from_json(doc)
    header = BlockHeader.decode(bundle.header)  # a DecodeError names what is wrong with it
    if not verify_tx_proof(bundle):
        raise ProofCheckError("the Merkle proofs do not lead from the transaction to the roots")
    if header.chain_id != trust.chain_id:
        raise ProofCheckError(
            f"the bundle is for chain {header.chain_id!r}, not {trust.chain_id!r}"
        )
    # Receipt: decodes, names this tx, and is leaf index_in_block of the block's receipt_root.
    receipt_bytes = parse_hex(doc.get("receipt"), name="receipt")
    receipt = Receipt.decode(receipt_bytes)
    if receipt.tx_id != bundle.tx_id:
        raise ProofCheckError("the receipt belongs to another transaction")
    rpath = [parse_hex(x, name="receipt_inclusion_proof") for x in doc["receipt_inclusion_proof"]]
    if not verify_inclusion(
        leaf_hash(receipt_bytes), bundle.index_in_block, header.tx_count, rpath, header.receipt_root
    ):
        raise ProofCheckError("the receipt is not under the block's receipt_root")
    anchor = BlockHeader.decode(parse_hex(doc.get("anchor_header"), name="anchor_header"))
    if anchor.acc_size != bundle.acc_size or anchor.acc_root != bundle.acc_root:
        raise ProofCheckError("the anchor header does not carry the accumulator the proof uses")
    if anchor.height < header.height or anchor.chain_id != header.chain_id:
        raise ProofCheckError("the anchor header is not a later header of the same chain")
    if anchor.height == header.height and anchor.block_id != header.block_id:
        raise ProofCheckError("the anchor header differs from the transaction's block header")
    anchors: list[TrustAnchor] = [trust]
    epoch_headers: list[BlockHeader] = []
    if doc.get("epoch_proof") is not None:
        anchors, epoch_headers = _walk_epochs(doc["epoch_proof"], trust)
    tx_chain = _check_certificate(
        doc["commit"],
        header,
        _checker(_anchor_of(anchors, header.epoch, "the transaction")),
        "commit",
    )
    headers = [header, anchor, *tx_chain, *epoch_headers]
    if doc.get("anchor_commit") is None:
        if all(h.block_id != anchor.block_id for h in tx_chain):
            raise ProofCheckError("the anchor header is not on the certified chain")
    else:
        checker = _checker(_anchor_of(anchors, anchor.epoch, "the anchor header"))
        headers += _check_certificate(doc["anchor_commit"], anchor, checker, "anchor_commit")
    bound = _check_genesis(headers, trust.genesis)
    return VerifiedProof(
        tx_id=bundle.tx_id,
        height=header.height,
        block_id=header.block_id,
        index_in_block=bundle.index_in_block,
        receipt=receipt,
        acc_size=bundle.acc_size,
        acc_root=bundle.acc_root,
        anchor_height=anchor.height,
        anchor_block_id=anchor.block_id,
        chain_id=trust.chain_id,
        validator_set=trust.fingerprint,
        genesis_hash=bound,
        epoch=header.epoch,
    )


def _anchor_of(anchors: Sequence[TrustAnchor], epoch: int, what: str) -> TrustAnchor:
    """Rule 6: the set of `epoch`, from the trusted one through the checked epoch changes."""
    first = anchors[0].epoch
    if not first <= epoch < first + len(anchors):
        raise ProofCheckError(
            f"{what} is in epoch {epoch}; the trusted set is of epoch {first} and the bundle's "
            f"epoch-change proof reaches epoch {first + len(anchors) - 1}"
        )
    return anchors[epoch - first]


def _walk_epochs(doc: Any, trust: TrustAnchor) -> tuple[list[TrustAnchor], list[BlockHeader]]:
    """Rule 6: the anchors of epochs trust.epoch .. to_epoch, and every header checked."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("entries"), list):
        raise ProofCheckError("epoch_proof: expected {from_epoch, to_epoch, entries: [...]}")
    first, last, entries = doc.get("from_epoch"), doc.get("to_epoch"), doc["entries"]
    if not (_is_count(first) and _is_count(last) and first <= last):
        raise ProofCheckError("epoch_proof: from_epoch and to_epoch must be 0 <= from <= to")
    if len(entries) != last - first:
        raise ProofCheckError(f"epoch_proof: {len(entries)} entries for epochs {first}..{last}")
    if first > trust.epoch:
        raise ProofCheckError(
            f"epoch_proof: starts at epoch {first}, after the trusted epoch {trust.epoch}"
        )
    anchors: list[TrustAnchor] = [trust]
    headers: list[BlockHeader] = []
    end = -1
    for e, entry in enumerate(entries, start=first):
        what = f"epoch_proof entry {e}"
        if not isinstance(entry, Mapping) or entry.get("epoch") != e:
            raise ProofCheckError(f"{what}: expected an object with epoch {e}")
        if e < trust.epoch:
            continue  # before the trusted set: nothing to learn from it
        cert = _parse_certificate(entry, what)
        anchors.append(
            _check_epoch_change(e, cert, entry.get("next_validators") or [], anchors[-1], what)
        )
        ending = cert.headers[0]
        if ending.height <= end:
            raise ProofCheckError(
                f"{what}: the epoch ends at height {ending.height}, not above "
                f"the previous end {end}"
            )
        headers += cert.headers
        end = ending.height
    return anchors, headers


def _is_count(x: object) -> TypeGuard[int]:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _check_genesis(
    headers: Sequence[BlockHeader], genesis: tuple[Digest, Digest] | None
) -> Digest | None:
    """Rule 5: the genesis hash the headers are bound to, or None if none reaches height 1."""
    if genesis is None:
        return None
    genesis_hash, block0 = genesis
    low = [h for h in headers if h.height <= 1]
    for h in low:
        if (h.height == 0 and h.block_id != block0) or (
            h.height == 1 and (h.parent_id != block0 or h.justify.block_id != block0)
        ):
            raise ProofCheckError(
                "the bundle's chain does not start at the trusted genesis (it was certified "
                "under the same chain id and validators for another genesis)"
            )
    return genesis_hash if low else None


def _checker(trust: TrustAnchor, signatures: bool = True) -> CertChecker:
    vset = ValidatorSet(Validator(node_id=v.node_id, power=v.power) for v in trust.validators)
    keys = {NodeId(v.node_id): PublicKey.from_bytes(v.pubkey) for v in trust.validators}

    class _Verifier:
        def verify(self, node_id: NodeId, msg: bytes, sig: bytes) -> bool:
            key = keys.get(node_id)
            return key is not None and (not signatures or key.verify(msg, sig))

    return CertChecker(
        chain_id=trust.chain_id,
        validators=vset,
        verifier=_Verifier(),
        genesis_id=None,
        epoch=trust.epoch,
    )


def _parse_certificate(obj: Any, what: str, first: BlockHeader | None = None) -> Certificate:
    """`{headers: [hex, ...], proof: hex}` decoded (shape; `first` checked before the proof)."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get("headers"), list):
        raise ProofCheckError(f"{what}: expected {{headers: [...], proof: hex}}")
    try:
        headers = [BlockHeader.decode(parse_hex(h, name=f"{what} header")) for h in obj["headers"]]
        if first is not None and (not headers or headers[0].block_id != first.block_id):
            raise ProofCheckError(f"{what}: the headers do not start at block {first.height}")
        proof = CommitProof.decode(parse_hex(obj.get("proof"), name=f"{what} proof"))
    except ProofCheckError:
        raise
    except (ValueError, TypeError, DecodeError) as exc:
        raise ProofCheckError(f"{what}: malformed proof: {exc}") from None
    return Certificate(headers=tuple(headers), proof=proof)  # emptiness: _check_cert


def _check_certificate(
    obj: Any, first: BlockHeader | None, checker: CertChecker, what: str
) -> list[BlockHeader]:
    """Rule 3 for one certificate object whose headers must start at `first` (if given)."""
    return _check_cert(_parse_certificate(obj, what, first), first, checker, what)


def _check_cert(
    cert: Certificate, first: BlockHeader | None, checker: CertChecker, what: str
) -> list[BlockHeader]:
    """Rule 3 for one decoded certificate whose headers must start at `first` (if given)."""
    headers = list(cert.headers)
    if first is not None and (not headers or headers[0].block_id != first.block_id):
        raise ProofCheckError(f"{what}: the headers do not start at block {first.height}")
    if not headers:
        raise ProofCheckError(f"{what}: no headers")
    for parent, child in itertools.pairwise(headers):
        if child.parent_id != parent.block_id or child.height != parent.height + 1:
            raise ProofCheckError(f"{what}: the headers break at height {child.height}")
    if any(h.chain_id != checker.chain_id for h in headers):
        raise ProofCheckError(f"{what}: a header belongs to another chain")
    if any(h.epoch != checker.epoch for h in headers):  # rule 6
        raise ProofCheckError(
            f"{what}: a header is not of epoch {checker.epoch}, whose set checks this certificate"
        )
    tip = headers[-1]
    proof = cert.proof
    child = proof.header
    if child.epoch != checker.epoch:
        raise ProofCheckError(f"{what}: the certificate's child header is of another epoch")
    if proof.committed_id != tip.block_id or child.parent_id != tip.block_id:
        raise ProofCheckError(f"{what}: the commit certificate certifies another block")
    if (child.justify.round, child.justify.height) != (tip.round, tip.height):
        raise ProofCheckError(f"{what}: the certificate's justify round/height differ from the tip")
    if not checker.verify_commit_proof(proof):
        raise ProofCheckError(
            f"{what}: the commit certificate does not verify against the trusted validator set"
        )
    if not checker.verify_qc(child.justify):  # the 2-chain's first link: the tip's own QC
        raise ProofCheckError(
            f"{what}: the tip's own QC does not verify against the trusted validator set"
        )
    return headers

"""Light-client updates and misbehaviour for the xclient contract (crosschain/xclient.py X1, X2).

Rules this module keeps (docs/crosschain.md, "The light client contract", "Misbehaviour"):
U1. Every certificate is checked by chain/lightclient.py (`check_certificate`,
    `check_epoch_change`): the same code as proof bundles, never a copy.
U2. Epoch changes are applied in order from the client's trusted epoch. A change of an epoch
    below it is compared with the stored `e/` entry: the same next set is a repeat (skipped);
    another next set, certified by that epoch's stored set, is misbehaviour; no stored entry
    (an epoch before registration) is skipped. A change above the trusted epoch is refused.
U3. The certificate is checked with the set of its headers' epoch: the trusted set, a set this
    update's epoch changes reached, or a past epoch's stored set `s/` (a backlog of an earlier
    epoch stays provable); a later epoch is refused (send its epoch changes first).
U4. Headers to store, one height at a time: none stored -> new; same block id -> repeat (no-op);
    another block id of the SAME epoch -> misbehaviour (two certificates of one set commit
    different blocks at one height); another id of a HIGHER epoch -> it replaces the stored one
    (the stored header was the uncommitted suffix of an ended epoch, chain/proofs.py rule 5);
    another id of a LOWER epoch -> ignored for that reason. Of an epoch change only its ending
    header E is stored (the rest of its certificate is the suffix). A header of epoch e at or
    below the known end of epoch e - 1, or above the known end of e, is not stored: no block of
    e lies there (the ended epoch's suffix, or what a set that has left signed afterwards).
U5. Everything is checked before anything is written; a misbehaviour writes only the evidence,
    the counters and the frozen status (`Freeze`), nothing else of the update.
U7. Certificates are numbered from 1 in the order they are applied: within one update, each
    epoch change of the trusted epoch (in the order given), then the certificate if it stored
    a new header; `u/<n>` = [CommitProof bytes, id of the update_client transaction].
U6. Misbehaviour evidence names the signers present in both conflicting certificates (node ids
    of the QCs of each CommitProof: the child's QC and the tip's own QC).
U8. Submitted misbehaviour counts only a fork inside its epoch's known heights (rule U4's
    window: above the end of epoch e - 1 and at or below the end of e, where known): a set that
    has left cannot freeze the client with blocks it signed after its epoch ended.
U9. Evidence is judged once. Every stored evidence `x/` was judged by the governance
    `unfreeze_chain` that reopened the client (none is stored while frozen), so the highest
    height among them is a floor: a conflict at or below it (on update, an epoch change ended
    twice, or submitted misbehaviour, the stored evidence itself replayed included) freezes
    nothing; on update such a header is not stored.
U10. An epoch change proves that its ending block E is the FIRST block committing to epoch e + 1:
    its certificate starts at E's parent P, which commits to (e, set_e) (ledger/epoch.py rule
    3), then E, which commits to (e + 1, next set); E and what follows are checked by
    `check_epoch_change`, P is bound by E's parent_id. Only when E is block 1 of epoch 0 (its
    parent the registered genesis block) does the certificate start at E. A suffix block after E
    (it carries E's commitment too) can therefore never pose as the end of epoch e.
U11. Org labels are not certified (neither the fingerprint nor the commitment covers them), so
    an epoch change's `next_validators` orgs are never stored: a next validator whose key is in
    the set being left keeps that set's label (from governance, or carried over this way);
    any other key is stored with org UNVERIFIED_ORG.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from gmchain.chain.lightclient import (
    Certificate,
    ProofCheckError,
    TrustAnchor,
    TrustAnchorError,
    check_certificate,
    check_epoch_change,
    compute_validator_set_fingerprint,
)
from gmchain.consensus.messages import CommitProof
from gmchain.contracts.framework import Context, ContractError, StateAccess, StateReader
from gmchain.contracts.xc_layout import FROZEN, ClientState, client_key, validators_to_value
from gmchain.crosschain.packets import ClientUpdate, Misbehaviour
from gmchain.crosschain.xclient_state import (
    Keys,
    StoredHeader,
    get_value,
    load_client,
    load_meta,
    load_set,
    put_value,
)
from gmchain.ledger.codec import Value, encode
from gmchain.ledger.epoch import next_validators_commitment
from gmchain.ledger.genesis import GenesisValidator
from gmchain.ledger.types import BlockHeader, Digest

UNVERIFIED_ORG = "(unverified)"  # rule U11

__all__ = [
    "UNVERIFIED_ORG",
    "Freeze",
    "UpdatePlan",
    "apply_freeze",
    "apply_plan",
    "plan_misbehaviour",
    "plan_update",
]


@dataclass(frozen=True, slots=True)
class Freeze:
    """Rule U5/U6: what a misbehaviour writes (the x/ value and the reason)."""

    height: int
    block_ids: tuple[bytes, bytes]
    proofs: tuple[bytes, bytes]
    signers: tuple[bytes, ...]
    reason: str


@dataclass(slots=True)
class UpdatePlan:
    """What an update that passed every check writes (rule U5)."""

    state: ClientState
    certificates: list[bytes] = field(default_factory=list)  # CommitProof bytes, numbered in order
    headers: dict[int, StoredHeader] = field(default_factory=dict)
    epoch_ends: dict[int, list[Value]] = field(default_factory=dict)
    epoch_sets: dict[int, tuple[GenesisValidator, ...]] = field(default_factory=dict)
    freeze: Freeze | None = None
    floor: int | None = None  # rule U9


def judged_floor(state: StateReader, chain: str) -> int | None:
    """Rule U9: the highest height of the stored evidence (each stored evidence costs a
    governance unfreeze, so the scan is short), or None."""
    heights = []
    for n in range(1, load_meta(state, chain)[1] + 1):
        v = get_value(state, Keys.evidence(chain, n))
        if v is not None:
            heights.append(int(v[0]))
    return max(heights, default=None)


def _judged(plan: UpdatePlan, height: int) -> bool:
    return plan.floor is not None and height <= plan.floor


def signers_of(proof: CommitProof) -> set[bytes]:
    """Rule U6: the node ids of both QCs of a CommitProof."""
    return {bytes(n) for n, _ in proof.qc.signatures} | {
        bytes(n) for n, _ in proof.header.justify.signatures
    }


def _anchor(
    chain: str, cs: ClientState, validators: tuple[GenesisValidator, ...], epoch: int
) -> TrustAnchor:
    try:
        return TrustAnchor(
            chain_id=chain,
            validators=validators,
            genesis=(Digest(cs.genesis_hash), Digest(cs.genesis_block_id)),
            epoch=epoch,
        )
    except TrustAnchorError as exc:
        raise ContractError(
            f"the stored validator set of {chain} epoch {epoch} is unusable: {exc}"
        ) from None


def anchor_of(state: StateReader, chain: str, cs: ClientState, epoch: int) -> TrustAnchor:
    """Rule U3: the trusted set of `epoch` (the current one, or a stored past one)."""
    if epoch == cs.epoch:
        return _anchor(chain, cs, cs.validators, epoch)
    past = load_set(state, chain, epoch) if epoch < cs.epoch else None
    if past is None:
        raise ContractError(
            f"a certificate of epoch {epoch} of {chain}: the client trusts epoch {cs.epoch}"
            + (" (send the epoch changes first)" if epoch > cs.epoch else " and has no set of it")
        )
    return _anchor(chain, cs, past, epoch)


def _set_of(
    state: StateReader, plan: UpdatePlan, chain: str, cs: ClientState, epoch: int
) -> TrustAnchor:
    """Rule U3, including the sets this update's epoch changes reached."""
    if epoch in plan.epoch_sets:
        return _anchor(chain, cs, plan.epoch_sets[epoch], epoch)
    return anchor_of(state, chain, cs, epoch)


def _check(fn: object, *args: object, **kw: object) -> object:
    try:
        return fn(*args, **kw)  # type: ignore[operator]
    except ProofCheckError as exc:
        raise ContractError(f"update refused: {exc}") from None


def check_change(
    e: int,
    cert: Certificate,
    next_validators: tuple[GenesisValidator, ...],
    trust: TrustAnchor,
    what: str,
) -> tuple[TrustAnchor, BlockHeader]:
    """Rule U10: (the anchor of epoch e + 1, the ending block E)."""
    hs = cert.headers
    parent: BlockHeader | None = None
    if len(hs) >= 2 and hs[0].next_validators_hash == next_validators_commitment(
        e, trust.validators
    ):
        parent, cert = hs[0], Certificate(headers=hs[1:], proof=cert.proof)
    elif not (e == 0 and hs[0].height == 1):
        raise ContractError(
            f"update refused: {what}: the certificate must start at the parent of the ending "
            f"block, committing to epoch {e} and its set (rule U10)"
        )
    nxt = _check(check_epoch_change, e, cert, next_validators, trust, what=what)
    assert isinstance(nxt, TrustAnchor)
    labels = {v.pubkey: v.org for v in trust.validators}  # rule U11
    nxt = replace(
        nxt,
        validators=tuple(
            replace(v, org=labels.get(v.pubkey, UNVERIFIED_ORG)) for v in nxt.validators
        ),
    )
    ending = cert.headers[0]
    if parent is None:
        if trust.genesis is None or ending.parent_id != trust.genesis[1]:
            raise ContractError(f"update refused: {what}: block 1's parent is not the genesis")
    elif (
        ending.parent_id != parent.block_id
        or ending.height != parent.height + 1
        or parent.chain_id != trust.chain_id
    ):
        raise ContractError(f"update refused: {what}: the first header is not E's parent")
    return nxt, ending


def _proof_of(state: StateReader, plan: UpdatePlan, chain: str, update_no: int) -> bytes:
    base = load_meta(state, chain)[0]
    if update_no > base:
        return plan.certificates[update_no - base - 1]
    v = get_value(state, Keys.update(chain, update_no))
    return b"" if v is None else bytes(v[0])


def _conflict(
    state: StateReader,
    plan: UpdatePlan,
    chain: str,
    old: StoredHeader,
    new: BlockHeader,
    new_proof: bytes,
) -> Freeze:
    old_proof = _proof_of(state, plan, chain, old.update_no)
    both = signers_of(CommitProof.decode(old_proof)) & signers_of(CommitProof.decode(new_proof))
    return Freeze(
        height=new.height,
        block_ids=(old.block_id, new.block_id),
        proofs=(old_proof, new_proof),
        signers=tuple(sorted(both)),
        reason=(
            f"two certified blocks at height {new.height} of {chain} (epoch {new.epoch}): "
            f"0x{old.block_id.hex()[:16]} and 0x{new.block_id.hex()[:16]}; "
            f"{len(both)} validators signed both certificates"
        ),
    )


def _epoch_end(state: StateReader, plan: UpdatePlan, chain: str, epoch: int) -> int | None:
    """The height of the block that ended `epoch`, if a verified epoch change says so."""
    v = plan.epoch_ends.get(epoch) or get_value(state, Keys.epoch_end(chain, epoch))
    return None if v is None else int(v[0])


def _add_certificate(
    state: StateReader,
    plan: UpdatePlan,
    chain: str,
    cert: Certificate,
    headers: list[BlockHeader],
    *,
    keep: bool = False,
) -> None:
    """Rule U4 for the `headers` of one checked certificate (sets plan.freeze on a conflict);
    `keep`: number and store the certificate even if no header is new (an epoch change's)."""
    proof = cert.proof.encode()
    update_no = load_meta(state, chain)[0] + len(plan.certificates) + 1
    new: list[StoredHeader] = []
    epoch = headers[0].epoch
    prev_end = _epoch_end(state, plan, chain, epoch - 1) if epoch >= 1 else None
    end = _epoch_end(state, plan, chain, epoch)
    for h in headers:
        if (prev_end is not None and h.height <= prev_end) or (end is not None and h.height > end):
            continue  # rule U4: outside its epoch's known heights (an ended epoch's suffix)
        old = plan.headers.get(h.height) or StoredHeader.load(state, chain, h.height)
        if old is not None and old.block_id == h.block_id:
            continue
        if old is not None and old.epoch == h.epoch:
            if _judged(plan, h.height):
                continue  # rule U9: governance judged this height already
            plan.certificates.append(proof)  # numbered, so the evidence can name it
            plan.freeze = _conflict(state, plan, chain, old, h, proof)
            return
        if old is not None and old.epoch > h.epoch:
            continue
        new.append(
            StoredHeader(
                h.height,
                h.block_id,
                h.tx_root,
                h.tx_count,
                h.receipt_root,
                h.epoch,
                h.timestamp_ms,
                update_no,
            )
        )
    if new or keep:
        plan.certificates.append(proof)
        plan.headers.update({s.height: s for s in new})


def plan_update(state: StateReader, chain: str, update: ClientUpdate) -> UpdatePlan:
    """Rules U1-U5: check the whole update; raise ContractError, or return what to write."""
    cs = _active(state, chain)
    plan = UpdatePlan(state=cs, floor=judged_floor(state, chain))
    trust = _anchor(chain, cs, cs.validators, cs.epoch)
    for ch in update.epoch_changes:
        if ch.epoch < trust.epoch:  # rule U2
            _past_change(state, plan, chain, cs, ch.epoch, ch.certificate, ch.next_validators)
        elif ch.epoch == trust.epoch:
            what = f"epoch change {ch.epoch} of {chain}"
            nxt, ending = check_change(ch.epoch, ch.certificate, ch.next_validators, trust, what)
            prev = plan.epoch_ends.get(ch.epoch - 1)
            if prev is None and ch.epoch >= 1:
                prev = get_value(state, Keys.epoch_end(chain, ch.epoch - 1))
            if prev is not None and ending.height <= prev[0]:
                raise ContractError(
                    f"update refused: {what} ends at height {ending.height}, not above the end "
                    f"of epoch {ch.epoch - 1} at {prev[0]}"
                )
            _add_certificate(state, plan, chain, ch.certificate, [ending], keep=True)
            if plan.freeze is not None:
                return plan
            update_no = load_meta(state, chain)[0] + len(plan.certificates)
            plan.epoch_ends[ch.epoch] = [ending.height, ending.block_id, nxt.fingerprint, update_no]
            plan.epoch_sets.setdefault(ch.epoch, trust.validators)
            plan.epoch_sets[ch.epoch + 1] = nxt.validators
            trust = nxt
        else:
            raise ContractError(
                f"update refused: an epoch change of epoch {ch.epoch}, but the client of {chain} "
                f"trusts epoch {trust.epoch}: changes must follow each other from it"
            )
        if plan.freeze is not None:
            return plan
    plan.state = replace(cs, epoch=trust.epoch, validators=trust.validators)
    if update.certificate is not None:
        cert = update.certificate
        epoch = cert.headers[0].epoch
        anchor = trust if epoch == trust.epoch else _set_of(state, plan, chain, cs, epoch)
        headers = _check(check_certificate, cert, anchor, what=f"certificate of {chain}")
        assert isinstance(headers, list)
        _add_certificate(state, plan, chain, cert, headers)
    return plan


def _past_change(
    state: StateReader, plan: UpdatePlan, chain: str, cs: ClientState, epoch: int,
    cert: Certificate, next_validators: tuple[GenesisValidator, ...],
) -> None:  # fmt: skip
    """Rule U2 for a change below the trusted epoch (known from the state or this update)."""
    stored = plan.epoch_ends.get(epoch) or get_value(state, Keys.epoch_end(chain, epoch))
    if stored is None or stored[2] == compute_validator_set_fingerprint(next_validators):
        return
    anchor = _set_of(state, plan, chain, cs, epoch)
    _, ending = check_change(epoch, cert, next_validators, anchor, f"epoch change {epoch}")
    if _judged(plan, ending.height):
        return  # rule U9
    old_proof = _proof_of(state, plan, chain, int(stored[3]))
    new_proof = cert.proof.encode()
    both = signers_of(CommitProof.decode(old_proof)) & signers_of(cert.proof)
    plan.certificates.append(new_proof)
    plan.freeze = Freeze(
        height=ending.height,
        block_ids=(stored[1], ending.block_id),
        proofs=(old_proof, new_proof),
        signers=tuple(sorted(both)),
        reason=(
            f"epoch {epoch} of {chain} ended twice with different next validator sets; "
            f"{len(both)} validators signed both certificates"
        ),
    )


def plan_misbehaviour(state: StateReader, chain: str, m: Misbehaviour) -> UpdatePlan:
    """X2: both certificates verify with their epoch's set and commit different blocks at one
    height of one epoch; raise ContractError otherwise."""
    cs = _active(state, chain)
    if m.chain_id != chain:
        raise ContractError(f"misbehaviour of chain {m.chain_id!r} submitted for {chain!r}")
    ea, eb = m.first.headers[0].epoch, m.second.headers[0].epoch
    if ea != eb:
        raise ContractError(
            f"misbehaviour refused: certificates of epochs {ea} and {eb} (blocks of two epochs "
            "at one height are an ended epoch's suffix and the next epoch, not a fork)"
        )
    anchor = anchor_of(state, chain, cs, ea)
    ha = _check(check_certificate, m.first, anchor, what="first certificate")
    hb = _check(check_certificate, m.second, anchor, what="second certificate")
    assert isinstance(ha, list) and isinstance(hb, list)
    ids = {h.height: h.block_id for h in ha}
    forks = [h for h in hb if h.height in ids and ids[h.height] != h.block_id]
    if not forks:
        raise ContractError(
            "misbehaviour refused: the two certificates name no different blocks at one height"
        )
    plan = UpdatePlan(state=cs, floor=judged_floor(state, chain))
    # rule U8: the window of rule U4 (no block of epoch ea lies outside its known heights)
    prev_end = _epoch_end(state, plan, chain, ea - 1) if ea >= 1 else None
    end = _epoch_end(state, plan, chain, ea)
    fork = next(
        (
            h
            for h in forks
            if (prev_end is None or h.height > prev_end) and (end is None or h.height <= end)
        ),
        None,
    )
    if fork is None:
        raise ContractError(
            f"misbehaviour refused: the different blocks lie outside epoch {ea}'s known heights "
            f"(after {prev_end}, up to {end}): what a set signs after its epoch ended is no fork "
            "of a live chain"
        )
    if _judged(plan, fork.height):
        raise ContractError(
            f"misbehaviour refused: height {fork.height} is at or below height {plan.floor}, "
            "whose evidence governance already judged (unfreeze_chain)"
        )
    pa, pb = m.first.proof.encode(), m.second.proof.encode()
    both = signers_of(m.first.proof) & signers_of(m.second.proof)
    plan.freeze = Freeze(
        height=fork.height,
        block_ids=(ids[fork.height], fork.block_id),
        proofs=(pa, pb),
        signers=tuple(sorted(both)),
        reason=(
            f"two certified blocks at height {fork.height} of {chain} (epoch {ea}), submitted as "
            f"misbehaviour; {len(both)} validators signed both certificates"
        ),
    )
    return plan


def _active(state: StateReader, chain: str) -> ClientState:
    cs = load_client(state, chain)
    if cs is None:
        raise ContractError(f"chain {chain!r} is not registered (governance: register_chain)")
    if cs.status == FROZEN:
        raise ContractError(
            f"the client of {chain!r} is frozen ({cs.frozen_reason}); only governance "
            "unfreeze_chain reopens it"
        )
    return cs


def apply_plan(ctx: Context, chain: str, plan: UpdatePlan) -> None:
    """Rule U5: write an update that passed (plan.freeze is None)."""
    assert plan.freeze is None
    st: StateAccess = ctx.state
    certs, misb = load_meta(st, chain)
    for i, proof in enumerate(plan.certificates, start=certs + 1):
        put_value(st, Keys.update(chain, i), [proof, ctx.tx_id])
    for s in plan.headers.values():
        put_value(st, Keys.header(chain, s.height), s.value())
    for e, value in plan.epoch_ends.items():
        put_value(st, Keys.epoch_end(chain, e), value)
    for e, vals in plan.epoch_sets.items():
        st.put(Keys.epoch_set(chain, e), encode(validators_to_value(vals)))
    latest = max([plan.state.latest_height, *plan.headers])
    plan.state = replace(plan.state, latest_height=latest)
    st.put(client_key(chain), plan.state.encode())
    put_value(st, Keys.meta(chain), [certs + len(plan.certificates), misb])


def apply_freeze(ctx: Context, chain: str, plan: UpdatePlan) -> None:
    """Rules U5, U6: store the evidence, freeze, emit ClientFrozen."""
    f = plan.freeze
    assert f is not None
    st = ctx.state
    certs, misb = load_meta(st, chain)
    put_value(
        st,
        Keys.evidence(chain, misb + 1),
        [f.height, list(f.block_ids), list(f.proofs), list(f.signers), f.reason],
    )
    cs = ClientState.decode(st.get(client_key(chain)) or b"")
    st.put(client_key(chain), replace(cs, status=FROZEN, frozen_reason=f.reason).encode())
    put_value(st, Keys.meta(chain), [certs, misb + 1])
    ctx.emit(
        "ClientFrozen",
        ("chain", chain),
        ("height", f.height),
        ("signers", list(f.signers)),
        ("reason", f.reason),
    )

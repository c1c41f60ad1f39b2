"""Where a validator's consensus SafetyData lives on disk, and how it is checked.

Rules this module keeps (consensus/safety.py P1; docs/consensus.md, "What is persisted, when"):
1. SafetyData is stored sealed (`ledger.store_keys.seal_record`: an SM3 checksum of its bytes) in
   one synced batch that also keeps the copy it replaces (`<key>.previous`). One flipped bit
   anywhere in the record is found when it is read: a raised `last_voted_round` would only stall
   this validator, a lowered one could make it vote twice in a round.
2. A damaged newest copy stops the node (StoreCorrupt) with a message naming the recovery; it
   never falls back to the previous copy on its own — that copy may hold lower rounds than this
   validator already signed in. A previous copy without a newest one is refused the same way.
3. Upgrade path: a store written before sealing (the unsealed `put_meta` record, both of its
   layouts, `consensus.safety.load_safety_data`) is read as it is and sealed at the next save.
5. A store restored from a snapshot (node/snapshot_ops.py rule 3: sealed marker
   `restored_from_snapshot`) holds no safety data, yet its key may have voted before the
   backup was lost: `check_signing_start` refuses to let a validator start signing on it until
   safety data exists (rule 4's reset, with R at least the highest round any validator reports:
   the key signs nothing at or below it). A store that was never restored keeps the old
   behaviour (no safety data = a validator that never signed).
4. Recovery (`gmchain db safety-reset PATH --round R`, node stopped): writes SafetyData whose
   rounds are all R, of the store's current epoch, so the validator signs nothing in a round
   <= R of that epoch. The operator takes R from the
   highest round any other validator reports; it is refused if below a round an intact copy holds.
"""

from __future__ import annotations

import argparse
import contextlib
import logging

from gmchain.consensus.safety import SafetyData, load_safety_data
from gmchain.ledger import store_keys as k
from gmchain.ledger.codec import DecodeError
from gmchain.ledger.store import Store, StoreCorrupt, StoreError
from gmchain.ledger.types import Round

__all__ = [
    "META_RESTORED",
    "META_SAFETY",
    "META_SAFETY_PREVIOUS",
    "check_signing_start",
    "is_sealed_safety_record",
    "load_safety",
    "main",
    "reset_safety",
    "save_safety",
]

log = logging.getLogger("gmchain.node")

META_SAFETY = "consensus_safety"
META_SAFETY_PREVIOUS = META_SAFETY + ".previous"
META_RESTORED = "restored_from_snapshot"  # rule 5; node/snapshot_ops.py writes it


def check_signing_start(store: Store, safety: SafetyData | None) -> None:
    """Rule 5: raise StoreError if this store was restored from a snapshot and holds no safety
    data, for a node about to sign with a validator key."""
    if safety is not None or store.get_sealed_meta(META_RESTORED) is None:
        return
    raise StoreError(
        f"{store.path} was restored from a snapshot and holds no consensus safety data, and "
        "this node's key is a validator: it may have voted in rounds this store does not "
        "know, and voting again could sign two blocks in one round. Keep it stopped, take the "
        "highest `round` any other validator reports (`gmchain status`), then run "
        f"`gmchain db safety-reset {store.path} --round R` with R at least that round "
        '(docs/ops.md, "Backup, restore and fast join")'
    )


def _recovery(path: str) -> str:
    return (
        "refusing to start: a validator that lost its last vote could vote twice in one round. "
        'Recovery (docs/ops.md, "Damaged consensus safety data"): keep this node stopped, take '
        "the highest `round` any other validator reports (`gmchain status`), then run "
        f"`gmchain db safety-reset {path} --round R` with R at least that round"
    )


def is_sealed_safety_record(raw: bytes) -> bool:
    return k.is_sealed_intact(raw)


def save_safety(store: Store, data: object) -> None:
    """Persist `data` (a SafetyData: `PersistSafety.data` is typed loosely) sealed, keeping the
    previous copy; synced before it returns (P1)."""
    if not isinstance(data, SafetyData):
        raise TypeError(f"save_safety takes a SafetyData, got {type(data).__name__}")
    store.put_sealed_meta(META_SAFETY, data.encode())


def _decode(payload: bytes, what: str, path: str) -> SafetyData:
    try:
        return load_safety_data(payload)
    except (DecodeError, ValueError, TypeError) as e:
        raise StoreCorrupt(
            f"consensus safety data ({what}) does not decode: {e}; {_recovery(path)}"
        ) from e


def load_safety(store: Store) -> SafetyData | None:
    """The newest SafetyData, checked; None for a validator that never signed anything.

    Raises StoreCorrupt (with the recovery) if the newest copy is damaged or missing while a
    previous copy exists."""
    path = store.path
    try:
        payload = store.get_sealed_meta(META_SAFETY)
    except StoreCorrupt as e:
        raise StoreCorrupt(f"consensus safety data is damaged ({e}); {_recovery(path)}") from e
    if payload is not None:
        return _decode(payload, "sealed", path)
    legacy = store.get_meta(META_SAFETY)
    if legacy is not None:  # rule 3: written before sealing; sealed at the next save
        data = _decode(legacy, "unsealed layout of store format 1", path)
        log.info("consensus safety data: read the unsealed format-1 record; sealing it")
        save_safety(store, data)
        return data
    try:
        previous = store.get_sealed_meta(META_SAFETY_PREVIOUS)
    except StoreCorrupt:
        previous = b""
    if previous is not None:
        raise StoreCorrupt(
            f"consensus safety data is missing but its previous copy exists; {_recovery(path)}"
        )
    return None


def _rounds(d: SafetyData) -> int:
    return max(
        d.last_voted_round, d.highest_timeout_round, d.last_proposed_round, d.preferred_round
    )


def _stored_copies(store: Store) -> list[bytes]:
    """Every safety record payload the store holds that is intact: the sealed copy, its previous
    copy and an unsealed format-1 record (rule 3) not yet sealed. A damaged copy is left out:
    it is what a reset replaces."""
    copies: list[bytes] = []
    for key in (META_SAFETY, META_SAFETY_PREVIOUS):
        with contextlib.suppress(StoreCorrupt):
            payload = store.get_sealed_meta(key)
            if payload is not None:
                copies.append(payload)
    legacy = store.get_meta(META_SAFETY)
    if legacy is not None:
        copies.append(legacy)
    return copies


def reset_safety(store: Store, round_: int) -> SafetyData:
    """Rule 4: write SafetyData that forbids signing in any round <= `round_`; never below a
    round an intact stored copy (of either layout) already holds."""
    floor = 0
    for payload in _stored_copies(store):
        with contextlib.suppress(DecodeError, ValueError, TypeError):
            floor = max(floor, _rounds(load_safety_data(payload)))
    if round_ < floor:
        raise StoreError(
            f"--round {round_} is below round {floor}, which an intact stored copy already holds"
        )
    r = Round(round_)
    # consensus/safety.py E1: the record must name the store's current epoch, or the replica of
    # that epoch would replace it by a fresh one (issue 12; chain/epochs.py numbers the records).
    epoch = store.last_epoch()
    data = SafetyData(
        last_voted_round=r,
        preferred_round=r,
        highest_timeout_round=r,
        last_proposed_round=r,
        epoch=epoch,
    )
    save_safety(store, data)
    return data


def main(argv: list[str] | None = None) -> int:
    """`gmchain db safety-reset PATH --round R` (node stopped); exit 0 done, 1 refused."""
    ap = argparse.ArgumentParser(prog="gmchain db", description="consensus safety data recovery")
    sub = ap.add_subparsers(dest="cmd", required=True)
    rs = sub.add_parser("safety-reset", help="replace damaged safety data (node stopped)")
    rs.add_argument("path")
    rs.add_argument("--round", type=int, required=True, dest="round_")
    args = ap.parse_args(argv)
    if not 0 <= args.round_ < 2**64:
        print("--round must be 0..2**64-1")
        return 1
    try:
        with Store.open(args.path, create=False) as store:
            reset_safety(store, args.round_)
    except StoreError as e:
        print(f"safety-reset refused: {e}")
        return 1
    print(f"ok: safety data reset; this validator signs nothing in rounds <= {args.round_}")
    return 0

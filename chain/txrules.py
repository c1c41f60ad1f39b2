"""Transaction rules: which transactions a node accepts, and the one reason it gives for refusing.

The rules are written here once and used by the pool's admission (node/admission.py,
node/mempool.py), by the leader building a block and by a replica validating one (chain/core.py,
chain/executor.py). A refusal is a `TxRejected` carrying one `Rejection`; node/api.py maps each
Rejection to its JSON-RPC error code in one table.

The rules, in the order admission checks them (cheapest first; no check hides a later one, so every
Rejection is reachable):

  R1 size    the raw transaction is at most T (T = MAX_TX_BYTES, and   TOO_LARGE        block rule
             at most the epoch's tx_max_bytes: chain/blockrules.py rule 2 in a block)
  R2 shape   it decodes canonically, its args nest at most 14 deep    BAD_ENCODING
  R3 chain   body.chain_id is this chain's                            WRONG_CHAIN      block rule
  R4 key     body.sender is an SM2 public key (a point on the curve)  INVALID_KEY      block rule
  R5 window  head < expiry <= head + W (W = the replay_window of the   EXPIRED, EXPIRY_TOO_FAR
             epoch of the block at head + 1; genesis' in epoch 0)                      block rule
  R6 call    the contract exists, has the method, the method is not a query, and the args fit
             its schema             UNKNOWN_CONTRACT, UNKNOWN_METHOD, QUERY_METHOD, BAD_ARGUMENTS
  P  pool    not already pending; room in the pool; the sender's quota (node/mempool.py)
                                                          DUPLICATE, POOL_FULL, SENDER_QUOTA
  R7 replay  not in the same block, not in an uncommitted ancestor, not committed
                                                                      DUPLICATE        block rule
  R8 sender  an admitted account (membership) in the parent state     UNKNOWN_SENDER   block rule
  R8b org    the account's org was not removed by governance (E10)  ORG_REMOVED      block rule
  R9 sig     the SM2 signature over the tx id verifies                BAD_SIGNATURE    block rule

Scope. A *block rule* makes a block that breaks it invalid: a replica does not vote for it, and an
honest leader never packs such a transaction. R6 and the pool checks are *admission rules* only:
a block carrying a transaction that breaks R6 (only a faulty leader builds one) is still valid,
and executing it gives a receipt with a non-zero status, exactly as before these rules existed —
making R6 a block rule would change which blocks are valid, i.e. the protocol.

Rejections are not executor refusals. A transaction that passes R1-R9 is included in a block and
executed; its contract may still refuse it, which needs state (the record already exists, the
sender's role may not do that, ...). That is a receipt with status != 0 (ledger/types.py
ReceiptStatus), committed like any other transaction: it is not a Rejection, and admission cannot
predict it.

The nonce is not a rule: it only makes otherwise equal bodies distinct transactions (replay
protection is R5 + R7: an id is remembered for as long as the transaction could be valid).

Epoch parameters (EPOCHS.md E11). `tx_max_bytes` and `replay_window` are chain parameters of an
epoch's configuration: the limits for a block at height h are those of the epoch of h, so a
governance change takes effect from the first block of the next epoch, never before.
`use_epoch_params(config_at)` (the chain calls it with its validator-set provider) says where they
come from; without it (a chain that never changes epoch) they are MAX_TX_BYTES and the genesis
replay_window. Admission checks a transaction for the block at head + 1.

Caches. A signature is verified at most once per node: `SignatureCache` remembers verified tx ids
and is shared by admission and block validation; `KeyCache` parses (and curve-checks) each sender
key once. Both are objects given to `TxRules`; neither is a module global. Likewise a call's
arguments are checked against its method's schema once per node: `TxRules.checked_calls` (a
`SignatureCache` of its own) remembers the ids of transactions that passed R6 here, and execution
runs those on the arguments as the check returned them (contracts/framework.py rule 2b): an id is
the signing root of the body, so it names one contract, method and argument list, and the
registry does not change while the node runs.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from enum import Enum
from typing import Protocol

from gmchain.contracts.framework import BadArguments, Registry, UnknownContract, UnknownMethod
from gmchain.crypto_sm import PublicKey, verify_many
from gmchain.ledger.codec import DecodeError
from gmchain.ledger.epoch import EpochConfig
from gmchain.ledger.types import MAX_TX_BYTES, SignedTx

__all__ = [
    "NEVER_VALID",
    "Account",
    "KeyCache",
    "Rejection",
    "SignatureCache",
    "TxRejected",
    "TxRules",
    "TxStateView",
]

Account = tuple[bytes, str, str]  # (public key, org, role) of an admitted sender


class Rejection(Enum):
    """Why a transaction is refused; the value is its stable name (logs, metrics, docs)."""

    TOO_LARGE = "too_large"  # R1
    BAD_ENCODING = "bad_encoding"  # R2
    WRONG_CHAIN = "wrong_chain"  # R3
    INVALID_KEY = "invalid_key"  # R4
    EXPIRED = "expired"  # R5: expiry <= head
    EXPIRY_TOO_FAR = "expiry_too_far"  # R5: expiry > head + W
    UNKNOWN_CONTRACT = "unknown_contract"  # R6
    UNKNOWN_METHOD = "unknown_method"  # R6
    QUERY_METHOD = "query_method"  # R6: a read-only query sent as a transaction
    BAD_ARGUMENTS = "bad_arguments"  # R6
    DUPLICATE = "duplicate"  # P (pending) and R7 (in a block, or committed)
    POOL_FULL = "pool_full"  # P
    SENDER_QUOTA = "sender_quota"  # P
    UNKNOWN_SENDER = "unknown_sender"  # R8
    ORG_REMOVED = "org_removed"  # R8b: the sender's org was removed by governance (for good)
    BAD_SIGNATURE = "bad_signature"  # R9


# Block rules that, broken on top of the committed head, are broken on top of every block that
# can still be built: such a pool transaction can never commit (chain/core.py evicts it).
NEVER_VALID = frozenset(
    {
        Rejection.WRONG_CHAIN,
        Rejection.EXPIRED,
        Rejection.DUPLICATE,
        Rejection.UNKNOWN_SENDER,
        Rejection.ORG_REMOVED,
    }
)


class TxRejected(Exception):
    """A transaction breaks a rule: `rejection` says which, `message` says how, for a person."""

    def __init__(self, rejection: Rejection, message: str) -> None:
        super().__init__(message)
        self.rejection = rejection
        self.message = message


class KeyCache:
    """Sender public keys parsed and curve-checked once (None: not a valid key). Thread-safe."""

    def __init__(self, maxsize: int = 4096) -> None:
        self.get: Callable[[bytes], PublicKey | None] = functools.lru_cache(maxsize=maxsize)(
            _parse_key
        )


def _parse_key(raw: bytes) -> PublicKey | None:
    try:
        return PublicKey.from_bytes(raw)
    except Exception:  # any invalid key: the caller refuses it (R4)
        return None


class SignatureCache:
    """Ids of transactions whose signature verified here (R9 once per node); an LRU of `maxsize`.
    (`TxRules.checked_calls` is one too, of the transactions whose call passed R6 here.)

    Thread-safe: admission (the event loop) and block validation may run on different threads."""

    def __init__(self, maxsize: int = 400_000) -> None:
        if maxsize <= 0:
            raise ValueError("the signature cache size must be positive")
        self.maxsize = maxsize
        self._ids: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def mark(self, tx_ids: Iterable[bytes]) -> None:
        with self._lock:
            ids = self._ids
            for tx_id in tx_ids:
                ids[tx_id] = None
                ids.move_to_end(tx_id)
            while len(ids) > self.maxsize:
                ids.popitem(last=False)


class TxStateView(Protocol):
    """The state R7 and R8 read: a block's parent (executor), or committed state (admission)."""

    def in_uncommitted(self, tx_id: bytes) -> bool:
        """Whether `tx_id` is in an uncommitted ancestor of the block being checked."""
        ...

    def is_committed(self, tx_id: bytes) -> bool: ...

    def sender_account(self, pubkey: bytes) -> Account | None:
        """The admitted account of `pubkey`, or None."""
        ...

    def org_removal(self, org: str) -> int | None:
        """The governance proposal that removed `org` (R8b), or None."""
        ...


class TxRules:
    """The rules R1-R9 (see the module docstring) for one chain."""

    def __init__(
        self,
        *,
        chain_id: str,
        replay_window: int,
        registry: Registry,
        keys: KeyCache,
        verified: SignatureCache,
    ) -> None:
        self.chain_id = chain_id
        self.replay_window = replay_window  # epoch 0's, until use_epoch_params
        self.registry = registry
        self.keys = keys
        self.verified = verified
        self.checked_calls = SignatureCache(verified.maxsize)  # passed R6 here (module docstring)
        self._config_at: Callable[[int], EpochConfig] | None = None

    # --- epoch parameters (E11) -----------------------------------------------------------------

    def use_epoch_params(self, config_at: Callable[[int], EpochConfig]) -> None:
        """Take `tx_max_bytes` and `replay_window` from `config_at(height)`: the configuration
        of the epoch of the block at `height` (see the module docstring)."""
        self._config_at = config_at

    def window_at(self, height: int) -> int:
        """W for a transaction in a block at `height`."""
        if self._config_at is None:
            return self.replay_window
        return self._config_at(height).param("replay_window")

    def tx_max_bytes_at(self, height: int) -> int:
        """T for a transaction in a block at `height` (never above MAX_TX_BYTES, the wire's)."""
        if self._config_at is None:
            return MAX_TX_BYTES
        return min(MAX_TX_BYTES, self._config_at(height).param("tx_max_bytes"))

    @classmethod
    def with_new_caches(cls, *, chain_id: str, replay_window: int, registry: Registry) -> TxRules:
        """Rules with caches of their own (a node shares one TxRules between its pool, admission
        and chain, so that a signature verified by one is known to the others)."""
        return cls(
            chain_id=chain_id,
            replay_window=replay_window,
            registry=registry,
            keys=KeyCache(),
            verified=SignatureCache(),
        )

    # --- R1-R2: bytes ---------------------------------------------------------------------------

    @staticmethod
    def decode(raw: bytes) -> SignedTx:
        if len(raw) > MAX_TX_BYTES:
            raise TxRejected(
                Rejection.TOO_LARGE, f"transaction of {len(raw)} bytes exceeds {MAX_TX_BYTES}"
            )
        try:
            return SignedTx.decode_tx(raw)
        except DecodeError as exc:
            raise TxRejected(
                Rejection.BAD_ENCODING, f"transaction does not decode: {exc}"
            ) from None

    # --- R3-R6: no state but the head height ----------------------------------------------------

    def check_static(self, tx: SignedTx, size: int, head: int) -> None:
        """R1 (by its encoded `size`), R3, R4, R5 against `head`, R6."""
        limit = self.tx_max_bytes_at(head + 1)
        if size > limit:
            raise TxRejected(Rejection.TOO_LARGE, f"transaction exceeds {limit} bytes")
        self.check_chain(tx)
        self.check_key(tx)
        self.check_window(tx, head)
        self.check_call(tx)

    def check_chain(self, tx: SignedTx) -> None:
        """R3."""
        if tx.body.chain_id != self.chain_id:
            raise TxRejected(
                Rejection.WRONG_CHAIN,
                f"transaction is for chain {tx.body.chain_id!r}, this node runs {self.chain_id!r}",
            )

    def check_key(self, tx: SignedTx) -> PublicKey:
        """R4: the sender's parsed key."""
        key = self.keys.get(tx.body.sender)
        if key is None:
            raise TxRejected(
                Rejection.INVALID_KEY, "sender is not a valid SM2 public key (0x04 || X || Y)"
            )
        return key

    def check_window(self, tx: SignedTx, head: int) -> None:
        """R5 for a block at height head + 1."""
        expiry = tx.body.expiry
        if expiry <= head:
            raise TxRejected(Rejection.EXPIRED, f"expired: expiry {expiry} <= head {head}")
        window = self.window_at(head + 1)
        if expiry > head + window:
            raise TxRejected(
                Rejection.EXPIRY_TOO_FAR,
                f"expiry {expiry} is beyond head {head} + window {window}",
            )

    def check_call(self, tx: SignedTx) -> None:
        """R6: what execution would refuse without reading any state."""
        body = tx.body
        try:
            spec = self.registry.spec(body.contract, body.method)
        except UnknownContract as exc:
            raise TxRejected(Rejection.UNKNOWN_CONTRACT, str(exc)) from None
        except UnknownMethod:
            specs = type(self.registry.contract(body.contract)).specs()
            known = ", ".join(s.name for s in specs if not s.readonly)
            raise TxRejected(
                Rejection.UNKNOWN_METHOD,
                f"contract {body.contract!r} has no method {body.method!r}; "
                f"its transaction methods are: {known}",
            ) from None
        if spec.readonly:
            raise TxRejected(
                Rejection.QUERY_METHOD,
                f"{body.contract}.{body.method} is a query; call it through gm_call, "
                "not a transaction",
            )
        try:
            spec.check_args(body.args)
        except BadArguments as exc:
            raise TxRejected(
                Rejection.BAD_ARGUMENTS, f"{body.contract}.{body.method}: {exc}"
            ) from None
        self.checked_calls.mark((tx.tx_id,))

    # --- R7-R8: state ---------------------------------------------------------------------------

    @staticmethod
    def check_state(tx: SignedTx, view: TxStateView, seen: set[bytes] | None = None) -> Account:
        """R7 (`seen`: ids already in the block being built or checked), R8 and R8b; returns the
        sender's account."""
        tx_id = tx.tx_id
        if seen is not None and tx_id in seen:
            raise TxRejected(Rejection.DUPLICATE, "duplicate transaction in the block")
        if view.in_uncommitted(tx_id):
            raise TxRejected(Rejection.DUPLICATE, "transaction is already in an uncommitted block")
        if view.is_committed(tx_id):
            raise TxRejected(Rejection.DUPLICATE, "transaction is already committed")
        account = view.sender_account(tx.body.sender)
        if account is None:
            raise TxRejected(Rejection.UNKNOWN_SENDER, "sender is not an admitted account")
        removal = view.org_removal(account[1])
        if removal is not None:  # R8b (EPOCHS.md E10)
            raise TxRejected(
                Rejection.ORG_REMOVED,
                f"account's organisation {account[1]!r} was removed by governance "
                f"(proposal {removal})",
            )
        return account

    # --- R4 + R9: signatures --------------------------------------------------------------------

    def is_verified(self, tx_id: bytes) -> bool:
        return tx_id in self.verified

    def check_signature(self, tx: SignedTx) -> None:
        """R4 and R9 for one transaction, in the calling thread; remembers a good one."""
        if tx.tx_id in self.verified:
            return
        if not self.check_key(tx).verify(tx.tx_id, tx.signature):
            raise TxRejected(Rejection.BAD_SIGNATURE, "signature does not verify")
        self.verified.mark((tx.tx_id,))

    def check_signatures(self, txs: Sequence[SignedTx]) -> None:
        """R4 and R9 for a block's transactions, verified in parallel (crypto_sm.verify_many);
        raises for the first that fails. Remembers the good ones."""
        todo = [t for t in txs if t.tx_id not in self.verified]
        if not todo:
            return
        items = []
        for t in todo:
            try:
                key = self.check_key(t)
            except TxRejected as exc:
                raise TxRejected(exc.rejection, f"tx {t.tx_id.hex()[:16]}: {exc.message}") from None
            items.append((key, t.tx_id, t.signature))
        good: list[bytes] = []
        try:
            for t, ok in zip(todo, verify_many(items), strict=True):
                if not ok:
                    raise TxRejected(
                        Rejection.BAD_SIGNATURE, f"tx {t.tx_id.hex()[:16]}: bad signature"
                    )
                good.append(t.tx_id)
        finally:
            self.verified.mark(good)

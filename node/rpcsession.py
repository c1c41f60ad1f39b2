"""Login challenges and session tokens of the JSON-RPC read authentication (issue 14 item 2).

Rules this module keeps (docs/rpc.md "Read authentication" states them for users):
1. A challenge is 32 random bytes, valid for CHALLENGE_TTL_MS (60 s) from its issue and used at
   most once: `take_challenge` removes it before the login's signature is checked, whether the
   login then succeeds or not, so a replayed or concurrent second use finds nothing. At most
   CHALLENGES_PER_CLIENT challenges are outstanding per client address and MAX_CHALLENGES in all
   (expired ones are dropped first); beyond that a request for one is refused with -31201.
2. A token is 32 random bytes, handed to the client once; the node keeps only SM3(token), so its
   memory (or a core dump) holds nothing a client could present. A session lives `ttl_ms` from
   the login; at most TOKENS_PER_ACCOUNT sessions per account (a new login ends the account's
   oldest) and MAX_SESSIONS in all (the one closest to expiry ends).
3. The signed message is compute_signing_root("rpc-login", [chain_id, node_id, challenge])
   (ledger/wire.py): chain_id a text string, node_id the answering node's 20-byte key address,
   challenge 32 bytes. Naming the node and the chain keeps a login from being replayed to another
   node or chain even if a challenge repeated.
4. What a session grants (org, role, readAll) is fixed at login from the account's entry in
   committed membership state; a governance change takes effect at the account's next login.
5. Time comes in (`now_ms` arguments); randomness from `secrets` unless a test passes
   `random_bytes`. Nothing here does IO.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from gmchain.crypto_sm import sm3_hash
from gmchain.ledger.scalars import Digest
from gmchain.ledger.wire import compute_signing_root

__all__ = [
    "CHALLENGES_PER_CLIENT",
    "CHALLENGE_TTL_MS",
    "MAX_CHALLENGES",
    "MAX_SESSIONS",
    "READ_ALL_ROLE",
    "TOKENS_PER_ACCOUNT",
    "Session",
    "Sessions",
    "compute_login_root",
]

CHALLENGE_TTL_MS = 60_000
CHALLENGES_PER_CLIENT = 16
MAX_CHALLENGES = 65_536
TOKENS_PER_ACCOUNT = 8
MAX_SESSIONS = 65_536
READ_ALL_ROLE = "regulator"  # the on-chain role that reads every org's data (SITES.md I2)
_SIZE = 32


def compute_login_root(chain_id: str, node_id: bytes, challenge: bytes) -> Digest:
    """Rule 3: what an account signs with SM2 to log in to node `node_id` of chain `chain_id`."""
    return compute_signing_root("rpc-login", [chain_id, node_id, challenge])


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """One login (rule 4)."""

    address: bytes  # the account's 20-byte address
    org: str
    role: str
    expires_ms: int  # the node's wall clock, ms

    @property
    def read_all(self) -> bool:
        return self.role == READ_ALL_ROLE


@dataclass(slots=True)
class _Challenge:
    client: str
    expires_ms: int


class Sessions:
    """Outstanding challenges and live sessions (rules 1, 2)."""

    def __init__(
        self, *, ttl_ms: int, random_bytes: Callable[[int], bytes] = secrets.token_bytes
    ) -> None:
        self.ttl_ms = ttl_ms
        self._random = random_bytes
        # challenge -> who asked and until when; insertion order = expiry order (one TTL)
        self._challenges: OrderedDict[bytes, _Challenge] = OrderedDict()
        self._per_client: dict[str, int] = {}  # outstanding challenges per client address
        # SM3(token) -> session; insertion order = expiry order (one TTL)
        self._sessions: OrderedDict[bytes, Session] = OrderedDict()
        self._per_account: dict[bytes, list[bytes]] = {}  # address -> its token digests, oldest 1st

    # --- challenges (rule 1) ---

    def issue_challenge(self, client: str, now_ms: int) -> tuple[bytes, int] | None:
        """A new challenge and its expiry, or None if `client` (or everyone) has too many."""
        self._drop_expired_challenges(now_ms)
        if (
            self._per_client.get(client, 0) >= CHALLENGES_PER_CLIENT
            or len(self._challenges) >= MAX_CHALLENGES
        ):
            return None
        challenge = self._random(_SIZE)
        expires = now_ms + CHALLENGE_TTL_MS
        self._challenges[challenge] = _Challenge(client, expires)
        self._per_client[client] = self._per_client.get(client, 0) + 1
        return challenge, expires

    def take_challenge(self, challenge: bytes, now_ms: int) -> bool:
        """Whether `challenge` was issued and is unexpired; it is used up either way."""
        entry = self._challenges.pop(challenge, None)
        if entry is None:
            return False
        self._release(entry.client)
        return now_ms < entry.expires_ms

    def _drop_expired_challenges(self, now_ms: int) -> None:
        while self._challenges:
            challenge, entry = next(iter(self._challenges.items()))
            if entry.expires_ms > now_ms:
                break
            del self._challenges[challenge]
            self._release(entry.client)

    def _release(self, client: str) -> None:
        left = self._per_client[client] - 1
        if left:
            self._per_client[client] = left
        else:
            del self._per_client[client]

    # --- sessions (rule 2) ---

    def open_session(self, *, address: bytes, org: str, role: str, now_ms: int) -> bytes:
        """A new token for the account (its oldest session ends beyond TOKENS_PER_ACCOUNT)."""
        self._drop_expired_sessions(now_ms)
        mine = self._per_account.setdefault(address, [])
        while len(mine) >= TOKENS_PER_ACCOUNT:
            self._sessions.pop(mine.pop(0), None)
        if len(self._sessions) >= MAX_SESSIONS:
            self._end(next(iter(self._sessions)))
            mine = self._per_account.setdefault(address, [])
        token = self._random(_SIZE)
        digest = sm3_hash(token)
        self._sessions[digest] = Session(
            address=address, org=org, role=role, expires_ms=now_ms + self.ttl_ms
        )
        mine.append(digest)
        return token

    def session_of(self, token: bytes, now_ms: int) -> Session | None:
        """The live session of `token`, or None (unknown, ended or expired)."""
        digest = sm3_hash(token)
        session = self._sessions.get(digest)
        if session is None:
            return None
        if session.expires_ms <= now_ms:
            self._end(digest)
            return None
        return session

    def _drop_expired_sessions(self, now_ms: int) -> None:
        while self._sessions:
            digest, session = next(iter(self._sessions.items()))
            if session.expires_ms > now_ms:
                break
            self._end(digest)

    def _end(self, digest: bytes) -> None:
        session = self._sessions.pop(digest, None)
        if session is None:
            return
        mine = self._per_account.get(session.address, [])
        if digest in mine:
            mine.remove(digest)
        if not mine:
            self._per_account.pop(session.address, None)

    def __len__(self) -> int:
        return len(self._sessions)

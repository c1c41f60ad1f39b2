"""The p2p handshake: SIGMA-style mutual authentication with an SM2 KEM (sans-IO).

Construction (specified byte-exactly in docs/p2p.md, with a worked example):
  M1 I->R  [1, version, chain_id, eph_I, nonce_I, proof]
           proof = HMAC-SM3(genesis_hash,
                            D_HELLO || msgpack([version, chain_id, eph_I, nonce_I, id_R]))
  M2 R->I  [2, version, chain_id, eph_R, nonce_R, ct_R = SM2Enc(eph_I, s_R)]
  M3 I->R  [3, ct_I = SM2Enc(eph_R, s_I), id_I, sig_I, mac_I]
  M4 R->I  [4, id_R, sig_R, mac_R]
  th_n = SM3(D_TRANSCRIPT || u32(len M1) || M1 || ... || u32(len Mn))
  PRK  = HKDF-Extract_SM3(salt = th_2, IKM = s_I || s_R)                        (RFC 5869)
  auth keys from HKDF-Expand(PRK, label || th_2); traffic keys from HKDF-Expand(PRK, label || th_4)
  a_I = SM3(D_AUTH_I || msgpack([th_2, ct_I, id_I])); sig_I = SM2Sign(id_I, a_I)
  mac_I = HMAC-SM3(k_auth_I, D_FIN_I || a_I || sig_I); likewise for R over th_3 and id_R.

Sources: H. Krawczyk, "SIGMA: the 'SIGn-and-MAc' approach to authenticated Diffie-Hellman",
CRYPTO 2003 (each side signs the exchanged ephemeral values and MACs its own identity under a
key derived from the shared secret); the Diffie-Hellman value is replaced by two SM2 public-key
encryptions (GB/T 32918.4) to ephemeral keys, a KEM-based exchange as in KEMTLS (Schwabe,
Stebila, Wiggers, CCS 2020); key schedule after TLS 1.3 (RFC 8446 §7.1: Extract with the
transcript, Expand with labels); HKDF from RFC 5869 instantiated with HMAC-SM3.

Rules kept here:
- Sans-IO: the classes turn received bytes into bytes to send; no sockets, no clock.
- Every field is checked (type, exact size, canonical encoding) before any expensive operation;
  the cheap MAC is checked before the SM2 signature; `authorize` runs before any decryption.
- The responder does no SM2 work at all (not even generating its ephemeral key) until M1 has
  shown that its sender knows the chain: the right version and chain id, and a proof keyed by
  the genesis hash and bound to this responder's identity, not seen before (`ReplayGuard`).
  The genesis hash is no secret at all (genesis.json; block 0's parent_id over RPC); the proof
  keeps scanners, other chains and replayed hellos from costing SM2 work, while `p2p.network`
  keeps them from holding slots and rate-limits the valid hellos that do reach SM2 work. Each
  step is split into a cheap `check_*` and an SM2 `answer_*` so the network can run the latter
  on a worker thread.
- The ephemeral private key is dropped as soon as the peer's KEM ciphertext is decrypted
  (forward secrecy: later compromise of an identity key reveals no session key).
- Chain id and protocol version travel in M1/M2 and hence in every transcript hash; a handshake
  for another chain or version is refused ("wrong_chain", "version").
- Failures raise RemoteProtocolError with a stable reason; misuse (wrong call order) is an
  AssertionError-free RuntimeError.
"""

from __future__ import annotations

import hmac as _hmac
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from gmchain.crypto_sm import (
    CryptoError,
    InvalidKey,
    PrivateKey,
    PublicKey,
    sm2_decrypt,
    sm2_encrypt,
    sm3_hash,
    sm3_hmac,
)
from gmchain.p2p.config import RemoteProtocolError
from gmchain.p2p.framing import decode_message, encode_message
from gmchain.p2p.limits import ReplayGuard

__all__ = [
    "D_AUTH_I",
    "D_AUTH_R",
    "D_FIN_I",
    "D_FIN_R",
    "D_HELLO",
    "D_TRANSCRIPT",
    "GENESIS_HASH_SIZE",
    "HANDSHAKE_MAX_FRAME",
    "KDF_LABEL",
    "PROTOCOL_VERSION",
    "HandshakeResult",
    "Initiator",
    "InitiatorAuth",
    "InitiatorHello",
    "KeySchedule",
    "Responder",
    "ResponderAuth",
    "ResponderHello",
    "compute_auth_digest",
    "compute_hello_proof",
    "compute_hkdf_expand",
    "compute_hkdf_extract",
    "compute_key_schedule",
    "compute_transcript_hash",
]

# 2: SyncInfo gained `commit_qc` and SafetyData `last_proposed_round` (consensus L9, P2). Peers of
# different versions refuse each other at the handshake ("version") instead of decoding each
# other's messages as garbage and banning; upgrading from 1 is stop-all (docs/ops.md).
# 3: M1 gained `proof` (issue 10, fault 8): no SM2 work for a hello that does not know the chain.
PROTOCOL_VERSION = 3
HANDSHAKE_MAX_FRAME = 4096  # every handshake message is far smaller; caps pre-auth buffering

D_TRANSCRIPT = b"GMCHAIN/P2P/HANDSHAKE/TRANSCRIPT/v1"
D_HELLO = b"GMCHAIN/P2P/HANDSHAKE/HELLO/v1"
D_AUTH_I = b"GMCHAIN/P2P/HANDSHAKE/AUTH-I/v1"
D_AUTH_R = b"GMCHAIN/P2P/HANDSHAKE/AUTH-R/v1"
D_FIN_I = b"GMCHAIN/P2P/HANDSHAKE/FIN-I/v1"
D_FIN_R = b"GMCHAIN/P2P/HANDSHAKE/FIN-R/v1"
KDF_LABEL = b"GMCHAIN/P2P/KDF/v1/"

TAG_INITIATOR_HELLO = 1
TAG_RESPONDER_HELLO = 2
TAG_INITIATOR_AUTH = 3
TAG_RESPONDER_AUTH = 4

PUBKEY_SIZE = 65
NONCE_SIZE = 32
SECRET_SIZE = 32
SIG_SIZE = 64
MAC_SIZE = 32
GENESIS_HASH_SIZE = 32
MAX_KEM_CT = 256  # SM2 ciphertext of 32 bytes is ~97..140 bytes depending on encoding
MAX_CHAIN_ID = 64
SM4_KEY_SIZE = 16
GCM_IV_SIZE = 12


# ---------------------------------------------------------------------------- field checks


def _check_bytes(value: Any, name: str, *, size: int | None = None, max_size: int = 0) -> bytes:
    if type(value) is not bytes:
        raise RemoteProtocolError("malformed", f"{name} is not bin")
    if size is not None and len(value) != size:
        raise RemoteProtocolError("malformed", f"{name} is {len(value)} bytes, want {size}")
    if max_size and not 0 < len(value) <= max_size:
        raise RemoteProtocolError("malformed", f"{name} length {len(value)}")
    return value


def _check_version_chain(version: Any, chain_id: Any) -> tuple[int, str]:
    if type(version) is not int:
        raise RemoteProtocolError("malformed", "version is not an int")
    if type(chain_id) is not str or not 0 < len(chain_id) <= MAX_CHAIN_ID:
        raise RemoteProtocolError("malformed", "chain_id")
    return version, chain_id


# ---------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True, kw_only=True)
class InitiatorHello:
    """M1: the initiator's ephemeral SM2 public key and nonce, and its proof of the chain."""

    version: int
    chain_id: str
    ephemeral: bytes  # 65 bytes, 0x04 || X || Y
    nonce: bytes  # 32 bytes
    proof: bytes  # 32 bytes, compute_hello_proof(...)

    def encode(self) -> bytes:
        return encode_message(
            [
                TAG_INITIATOR_HELLO,
                self.version,
                self.chain_id,
                self.ephemeral,
                self.nonce,
                self.proof,
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> InitiatorHello:
        try:
            _, version, chain_id, eph, nonce, proof = decode_message(data, TAG_INITIATOR_HELLO, 6)
        except RemoteProtocolError as e:
            # A peer of another version may lay M1 out differently: say "version", not "malformed"
            other = _peek_version(data)
            if e.reason == "malformed" and other is not None and other != PROTOCOL_VERSION:
                raise RemoteProtocolError("version", f"peer speaks v{other}") from None
            raise
        version, chain_id = _check_version_chain(version, chain_id)
        return cls(
            version=version,
            chain_id=chain_id,
            ephemeral=_check_bytes(eph, "ephemeral", size=PUBKEY_SIZE),
            nonce=_check_bytes(nonce, "nonce", size=NONCE_SIZE),
            proof=_check_bytes(proof, "proof", size=MAC_SIZE),
        )


def _peek_version(data: bytes) -> int | None:
    """The version field of a `[tag, version, ...]` array of any arity (None if there is none)."""
    try:
        obj = msgpack.unpackb(data, raw=False, max_map_len=0, max_ext_len=0)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    if isinstance(obj, list) and len(obj) >= 2 and type(obj[1]) is int:
        return int(obj[1])
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponderHello:
    """M2: the responder's ephemeral key, nonce, and its secret encrypted to eph_I."""

    version: int
    chain_id: str
    ephemeral: bytes
    nonce: bytes
    kem_ct: bytes  # SM2Enc(eph_I, s_R)

    def encode(self) -> bytes:
        return encode_message(
            [
                TAG_RESPONDER_HELLO,
                self.version,
                self.chain_id,
                self.ephemeral,
                self.nonce,
                self.kem_ct,
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> ResponderHello:
        _, version, chain_id, eph, nonce, ct = decode_message(data, TAG_RESPONDER_HELLO, 6)
        version, chain_id = _check_version_chain(version, chain_id)
        return cls(
            version=version,
            chain_id=chain_id,
            ephemeral=_check_bytes(eph, "ephemeral", size=PUBKEY_SIZE),
            nonce=_check_bytes(nonce, "nonce", size=NONCE_SIZE),
            kem_ct=_check_bytes(ct, "kem_ct", max_size=MAX_KEM_CT),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class InitiatorAuth:
    """M3: the initiator's secret encrypted to eph_R, its identity, signature and MAC."""

    kem_ct: bytes
    identity: bytes  # 65-byte SM2 identity public key
    signature: bytes  # 64-byte r || s over a_I
    mac: bytes  # 32 bytes

    def encode(self) -> bytes:
        return encode_message(
            [TAG_INITIATOR_AUTH, self.kem_ct, self.identity, self.signature, self.mac]
        )

    @classmethod
    def decode(cls, data: bytes) -> InitiatorAuth:
        _, ct, identity, sig, mac = decode_message(data, TAG_INITIATOR_AUTH, 5)
        return cls(
            kem_ct=_check_bytes(ct, "kem_ct", max_size=MAX_KEM_CT),
            identity=_check_bytes(identity, "identity", size=PUBKEY_SIZE),
            signature=_check_bytes(sig, "signature", size=SIG_SIZE),
            mac=_check_bytes(mac, "mac", size=MAC_SIZE),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponderAuth:
    """M4: the responder's identity, signature over th_3, and MAC."""

    identity: bytes
    signature: bytes
    mac: bytes

    def encode(self) -> bytes:
        return encode_message([TAG_RESPONDER_AUTH, self.identity, self.signature, self.mac])

    @classmethod
    def decode(cls, data: bytes) -> ResponderAuth:
        _, identity, sig, mac = decode_message(data, TAG_RESPONDER_AUTH, 4)
        return cls(
            identity=_check_bytes(identity, "identity", size=PUBKEY_SIZE),
            signature=_check_bytes(sig, "signature", size=SIG_SIZE),
            mac=_check_bytes(mac, "mac", size=MAC_SIZE),
        )


# ---------------------------------------------------------------------------- key schedule


def compute_hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract (RFC 5869 §2.2) with HMAC-SM3."""
    return sm3_hmac(salt, ikm)


def compute_hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand (RFC 5869 §2.3) with HMAC-SM3."""
    if not 0 < length <= 255 * 32:
        raise ValueError("HKDF-Expand length out of range")
    out, block = b"", b""
    counter = 1
    while len(out) < length:
        block = sm3_hmac(prk, block + info + bytes([counter]))
        out += block
        counter += 1
    return out[:length]


def compute_transcript_hash(messages: Sequence[bytes]) -> bytes:
    """th_n = SM3(D_TRANSCRIPT || u32(len M1) || M1 || ... || u32(len Mn) || Mn)."""
    parts = [D_TRANSCRIPT]
    for m in messages:
        parts.append(len(m).to_bytes(4, "big"))
        parts.append(m)
    return sm3_hash(b"".join(parts))


def compute_auth_digest(domain: bytes, fields: list[bytes]) -> bytes:
    """a = SM3(domain || msgpack(fields)): what a side signs (DESIGN.md "Hashing and signing")."""
    return sm3_hash(domain + encode_message(list(fields)))


def compute_hello_proof(
    *,
    genesis_hash: bytes,
    version: int,
    chain_id: str,
    ephemeral: bytes,
    nonce: bytes,
    responder: bytes,
) -> bytes:
    """M1's proof: HMAC-SM3(genesis_hash, D_HELLO || msgpack([version, chain_id, eph_I,
    nonce_I, id_R])). Keyed by the genesis document's hash (Genesis.compute_hash(), block 0's
    parent_id: public, so this proves knowledge of the chain, not membership), bound to the one
    responder it is meant for (so a hello seen on one link cannot be replayed to another node)."""
    fields = [version, chain_id, ephemeral, nonce, responder]
    return sm3_hmac(genesis_hash, D_HELLO + encode_message(fields))


@dataclass(frozen=True, slots=True, kw_only=True)
class KeySchedule:
    """Everything derived from the two KEM secrets; I = initiator, R = responder."""

    prk: bytes
    auth_key_i: bytes
    auth_key_r: bytes
    key_i2r: bytes | None  # traffic keys exist only once th_4 is known
    iv_i2r: bytes | None
    key_r2i: bytes | None
    iv_r2i: bytes | None


def _expand(prk: bytes, label: bytes, th: bytes, length: int) -> bytes:
    return compute_hkdf_expand(prk, KDF_LABEL + label + th, length)


def compute_key_schedule(
    *, secret_i: bytes, secret_r: bytes, th2: bytes, th4: bytes | None = None
) -> KeySchedule:
    """Derive the auth keys (from th_2) and, given th_4, the directional SM4-GCM keys and IVs."""
    prk = compute_hkdf_extract(th2, secret_i + secret_r)
    traffic: list[bytes | None] = [None, None, None, None]
    if th4 is not None:
        traffic = [
            _expand(prk, b"key-i2r", th4, SM4_KEY_SIZE),
            _expand(prk, b"iv-i2r", th4, GCM_IV_SIZE),
            _expand(prk, b"key-r2i", th4, SM4_KEY_SIZE),
            _expand(prk, b"iv-r2i", th4, GCM_IV_SIZE),
        ]
    return KeySchedule(
        prk=prk,
        auth_key_i=_expand(prk, b"auth-i", th2, MAC_SIZE),
        auth_key_r=_expand(prk, b"auth-r", th2, MAC_SIZE),
        key_i2r=traffic[0],
        iv_i2r=traffic[1],
        key_r2i=traffic[2],
        iv_r2i=traffic[3],
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeResult:
    """An authenticated peer and this side's directional session keys."""

    peer: PublicKey
    node_id: bytes  # peer.address
    send_key: bytes
    send_iv: bytes
    recv_key: bytes
    recv_iv: bytes
    transcript_hash: bytes  # th_4, identical on both sides


# ---------------------------------------------------------------------------- state machines


def _load_ephemeral(data: bytes) -> PublicKey:
    try:
        return PublicKey.from_bytes(data)
    except InvalidKey:
        raise RemoteProtocolError("bad_key", "ephemeral key not on the curve") from None


def _kem_decrypt(eph: PrivateKey, ct: bytes) -> bytes:
    try:
        secret = sm2_decrypt(eph, ct)
    except CryptoError:
        raise RemoteProtocolError("kem", "cannot decrypt KEM ciphertext") from None
    if len(secret) != SECRET_SIZE:
        raise RemoteProtocolError("kem", "KEM secret has the wrong size")
    return secret


def _check_hello(version: int, chain_id: str, own_chain_id: str) -> None:
    if version != PROTOCOL_VERSION:
        raise RemoteProtocolError("version", f"peer speaks v{version}")
    if chain_id != own_chain_id:
        raise RemoteProtocolError("wrong_chain", chain_id[:MAX_CHAIN_ID])


def _check_genesis_hash(genesis_hash: bytes) -> bytes:
    if type(genesis_hash) is not bytes or len(genesis_hash) != GENESIS_HASH_SIZE:
        raise ValueError(f"genesis_hash must be {GENESIS_HASH_SIZE} bytes")
    return genesis_hash


def _fin_mac(key: bytes, domain: bytes, digest: bytes, sig: bytes) -> bytes:
    return sm3_hmac(key, domain + digest + sig)


def _check_auth(
    *, key: PublicKey, mac_key: bytes, domain_fin: bytes, digest: bytes, sig: bytes, mac: bytes
) -> None:
    # The MAC is cheap and proves knowledge of the KEM secrets; check it before the SM2 verify.
    if not _hmac.compare_digest(mac, _fin_mac(mac_key, domain_fin, digest, sig)):
        raise RemoteProtocolError("bad_mac")
    if not key.verify(digest, sig):
        raise RemoteProtocolError("bad_signature")


class Initiator:
    """The dialing side. Call `start()`, then `on_responder_hello()`, then `on_responder_auth()`."""

    def __init__(
        self,
        *,
        chain_id: str,
        genesis_hash: bytes,
        identity: PrivateKey,
        expected_peer: PublicKey,
        ephemeral: PrivateKey | None = None,  # injectable for test vectors only
        nonce: bytes | None = None,
        kem_secret: bytes | None = None,
    ) -> None:
        self._chain_id = chain_id
        self._genesis_hash = _check_genesis_hash(genesis_hash)
        self._identity = identity
        self._expected = expected_peer
        self._eph: PrivateKey | None = ephemeral or PrivateKey.generate()
        self._eph_pub = self._eph.public_key.to_bytes()
        self._nonce = nonce or os.urandom(NONCE_SIZE)
        self._secret_i = kem_secret or os.urandom(SECRET_SIZE)
        self._transcript: list[bytes] = []  # M1.. as sent/received
        self._keys: KeySchedule | None = None
        self._secret_r = b""

    def start(self) -> bytes:
        """Return M1."""
        if self._transcript:
            raise RuntimeError("start() called twice")
        m1 = InitiatorHello(
            version=PROTOCOL_VERSION,
            chain_id=self._chain_id,
            ephemeral=self._eph_pub,
            nonce=self._nonce,
            proof=compute_hello_proof(
                genesis_hash=self._genesis_hash,
                version=PROTOCOL_VERSION,
                chain_id=self._chain_id,
                ephemeral=self._eph_pub,
                nonce=self._nonce,
                responder=self._expected.to_bytes(),
            ),
        ).encode()
        self._transcript.append(m1)
        return m1

    def on_responder_hello(self, data: bytes) -> bytes:
        """Process M2, return M3."""
        if len(self._transcript) != 1 or self._eph is None:
            raise RuntimeError("on_responder_hello out of order")
        m2 = ResponderHello.decode(data)
        _check_hello(m2.version, m2.chain_id, self._chain_id)
        if m2.ephemeral == self._eph_pub:
            raise RemoteProtocolError("reflection")
        eph_r = _load_ephemeral(m2.ephemeral)
        self._secret_r = _kem_decrypt(self._eph, m2.kem_ct)
        self._eph = None  # forward secrecy: the ephemeral key is no longer needed
        self._transcript.append(data)
        th2 = compute_transcript_hash(self._transcript)
        ct_i = sm2_encrypt(eph_r, self._secret_i)
        self._keys = compute_key_schedule(secret_i=self._secret_i, secret_r=self._secret_r, th2=th2)
        identity = self._identity.public_key.to_bytes()
        digest = compute_auth_digest(D_AUTH_I, [th2, ct_i, identity])
        sig = self._identity.sign(digest)
        m3 = InitiatorAuth(
            kem_ct=ct_i,
            identity=identity,
            signature=sig,
            mac=_fin_mac(self._keys.auth_key_i, D_FIN_I, digest, sig),
        ).encode()
        self._transcript.append(m3)
        return m3

    def on_responder_auth(self, data: bytes) -> HandshakeResult:
        """Process M4, return the session."""
        if len(self._transcript) != 3 or self._keys is None:
            raise RuntimeError("on_responder_auth out of order")
        m4 = ResponderAuth.decode(data)
        if m4.identity != self._expected.to_bytes():
            raise RemoteProtocolError("wrong_peer")
        th3 = compute_transcript_hash(self._transcript)
        digest = compute_auth_digest(D_AUTH_R, [th3, m4.identity])
        _check_auth(
            key=self._expected,
            mac_key=self._keys.auth_key_r,
            domain_fin=D_FIN_R,
            digest=digest,
            sig=m4.signature,
            mac=m4.mac,
        )
        self._transcript.append(data)
        th2 = compute_transcript_hash(self._transcript[:2])
        th4 = compute_transcript_hash(self._transcript)
        ks = compute_key_schedule(
            secret_i=self._secret_i, secret_r=self._secret_r, th2=th2, th4=th4
        )
        self._secret_i = self._secret_r = b""
        assert ks.key_i2r and ks.iv_i2r and ks.key_r2i and ks.iv_r2i
        return HandshakeResult(
            peer=self._expected,
            node_id=self._expected.address,
            send_key=ks.key_i2r,
            send_iv=ks.iv_i2r,
            recv_key=ks.key_r2i,
            recv_iv=ks.iv_r2i,
            transcript_hash=th4,
        )


class Responder:
    """The accepting side. Call `on_initiator_hello()`, then `on_initiator_auth()`.

    `authorize(pub)` returns None to accept the claimed identity, or a refusal reason
    ("unknown_node", "banned", ...); it runs before any decryption or signature check.
    `replay_guard`, shared by the responders of one node, refuses an M1 seen before.
    """

    def __init__(
        self,
        *,
        chain_id: str,
        genesis_hash: bytes,
        identity: PrivateKey,
        authorize: Callable[[PublicKey], str | None],
        replay_guard: ReplayGuard | None = None,
        ephemeral: PrivateKey | None = None,  # injectable for test vectors only
        nonce: bytes | None = None,
        kem_secret: bytes | None = None,
    ) -> None:
        self._chain_id = chain_id
        self._genesis_hash = _check_genesis_hash(genesis_hash)
        self._identity = identity
        self._authorize = authorize
        self._replay_guard = replay_guard
        # Generated only once M1 has proved the chain (no SM2 work for strangers).
        self._eph: PrivateKey | None = ephemeral
        self._eph_pub = b""
        self._nonce = nonce or os.urandom(NONCE_SIZE)
        self._secret_r = kem_secret or os.urandom(SECRET_SIZE)
        self._transcript: list[bytes] = []
        self._m1 = b""  # M1 once check_initiator_hello accepted it
        self._m1_ephemeral = b""
        self._m3: InitiatorAuth | None = None  # M3 once check_initiator_auth accepted it
        self._peer: PublicKey | None = None

    def on_initiator_hello(self, data: bytes) -> bytes:
        """Process M1, return M2 (`check_initiator_hello` then `answer_initiator_hello`)."""
        self.check_initiator_hello(data)
        return self.answer_initiator_hello()

    def check_initiator_hello(self, data: bytes) -> None:
        """The cheap half of M1 (no SM2 work, nothing costlier than an HMAC): decode, version,
        chain, the genesis-keyed proof and the replay guard. Raises RemoteProtocolError."""
        if self._transcript or self._m1:
            raise RuntimeError("check_initiator_hello out of order")
        m1 = InitiatorHello.decode(data)
        _check_hello(m1.version, m1.chain_id, self._chain_id)
        proof = compute_hello_proof(
            genesis_hash=self._genesis_hash,
            version=m1.version,
            chain_id=m1.chain_id,
            ephemeral=m1.ephemeral,
            nonce=m1.nonce,
            responder=self._identity.public_key.to_bytes(),
        )
        if not _hmac.compare_digest(proof, m1.proof):
            raise RemoteProtocolError("bad_hello", "proof does not match this chain and node")
        if self._replay_guard is not None and not self._replay_guard.maybe_add(m1.nonce):
            raise RemoteProtocolError("replayed_hello")
        self._m1, self._m1_ephemeral = data, m1.ephemeral

    def answer_initiator_hello(self) -> bytes:
        """The SM2 half of M1 (key generation, encryption; ~4 ms): return M2. Touches only
        this object, so it may run on a worker thread."""
        if self._transcript or not self._m1:
            raise RuntimeError("answer_initiator_hello before check_initiator_hello")
        if self._eph is None:
            self._eph = PrivateKey.generate()
        self._eph_pub = self._eph.public_key.to_bytes()
        if self._m1_ephemeral == self._eph_pub:
            raise RemoteProtocolError("reflection")
        eph_i = _load_ephemeral(self._m1_ephemeral)
        m2 = ResponderHello(
            version=PROTOCOL_VERSION,
            chain_id=self._chain_id,
            ephemeral=self._eph_pub,
            nonce=self._nonce,
            kem_ct=sm2_encrypt(eph_i, self._secret_r),
        ).encode()
        self._transcript += [self._m1, m2]
        return m2

    def on_initiator_auth(self, data: bytes) -> tuple[bytes, HandshakeResult]:
        """Process M3, return M4 and the session (`check_initiator_auth`, then
        `answer_initiator_auth`)."""
        self.check_initiator_auth(data)
        return self.answer_initiator_auth()

    def check_initiator_auth(self, data: bytes) -> None:
        """The cheap half of M3: decode, the identity key, `authorize`. Raises
        RemoteProtocolError."""
        if len(self._transcript) != 2 or self._eph is None or self._m3 is not None:
            raise RuntimeError("check_initiator_auth out of order")
        m3 = InitiatorAuth.decode(data)
        try:
            peer = PublicKey.from_bytes(m3.identity)
        except InvalidKey:
            raise RemoteProtocolError("bad_key", "identity key not on the curve") from None
        refusal = self._authorize(peer)
        if refusal is not None:
            raise RemoteProtocolError(refusal)
        self._m3, self._peer = m3, peer
        self._transcript.append(data)

    def answer_initiator_auth(self) -> tuple[bytes, HandshakeResult]:
        """The SM2 half of M3 (decryption, verification, signature): return M4 and the
        session. Touches only this object, so it may run on a worker thread."""
        m3, peer = self._m3, self._peer
        if len(self._transcript) != 3 or self._eph is None or m3 is None or peer is None:
            raise RuntimeError("answer_initiator_auth before check_initiator_auth")
        secret_i = _kem_decrypt(self._eph, m3.kem_ct)
        self._eph = None  # forward secrecy
        th2 = compute_transcript_hash(self._transcript[:2])
        keys = compute_key_schedule(secret_i=secret_i, secret_r=self._secret_r, th2=th2)
        _check_auth(
            key=peer,
            mac_key=keys.auth_key_i,
            domain_fin=D_FIN_I,
            digest=compute_auth_digest(D_AUTH_I, [th2, m3.kem_ct, m3.identity]),
            sig=m3.signature,
            mac=m3.mac,
        )
        th3 = compute_transcript_hash(self._transcript)
        identity = self._identity.public_key.to_bytes()
        digest = compute_auth_digest(D_AUTH_R, [th3, identity])
        sig = self._identity.sign(digest)
        m4 = ResponderAuth(
            identity=identity,
            signature=sig,
            mac=_fin_mac(keys.auth_key_r, D_FIN_R, digest, sig),
        ).encode()
        self._transcript.append(m4)
        th4 = compute_transcript_hash(self._transcript)
        ks = compute_key_schedule(secret_i=secret_i, secret_r=self._secret_r, th2=th2, th4=th4)
        self._secret_r = b""
        assert ks.key_i2r and ks.iv_i2r and ks.key_r2i and ks.iv_r2i
        return m4, HandshakeResult(
            peer=peer,
            node_id=peer.address,
            send_key=ks.key_r2i,
            send_iv=ks.iv_r2i,
            recv_key=ks.key_i2r,
            recv_iv=ks.iv_i2r,
            transcript_hash=th4,
        )

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

The messages and their checks are in p2p/handshake_messages.py, the key schedule in
p2p/handshake_keys.py; this module holds the two state machines and re-exports both modules'
public names (callers import everything from here).

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
from collections.abc import Callable
from dataclasses import dataclass

from gmchain.crypto_sm import (
    CryptoError,
    InvalidKey,
    PrivateKey,
    PublicKey,
    sm2_decrypt,
    sm2_encrypt,
    sm3_hmac,
)
from gmchain.p2p.config import RemoteProtocolError
from gmchain.p2p.handshake_keys import (
    D_AUTH_I,
    D_AUTH_R,
    D_FIN_I,
    D_FIN_R,
    D_HELLO,
    D_TRANSCRIPT,
    KDF_LABEL,
    KeySchedule,
    compute_auth_digest,
    compute_hello_proof,
    compute_hkdf_expand,
    compute_hkdf_extract,
    compute_key_schedule,
    compute_transcript_hash,
)
from gmchain.p2p.handshake_messages import (
    GENESIS_HASH_SIZE,
    HANDSHAKE_MAX_FRAME,
    MAX_CHAIN_ID,
    NONCE_SIZE,
    PROTOCOL_VERSION,
    SECRET_SIZE,
    InitiatorAuth,
    InitiatorHello,
    ResponderAuth,
    ResponderHello,
)
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

"""Unit tests for p2p: framing, limits, sealed frames, and the handshake (sans-IO, no sockets).

Includes the checked-in key-schedule vector (p2p/testdata/handshake_vector.json) and bit-flip
tampering of every handshake message.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import msgpack
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from gmchain.crypto_sm import PrivateKey, PublicKey, sm2_decrypt, sm3_hmac
from gmchain.p2p import handshake
from gmchain.p2p.config import ConfigError, P2PConfig, PeerInfo, RemoteProtocolError
from gmchain.p2p.framing import FrameDecoder, decode_message, encode_frame, encode_message
from gmchain.p2p.handshake import (
    D_AUTH_I,
    D_AUTH_R,
    D_FIN_I,
    D_FIN_R,
    PROTOCOL_VERSION,
    HandshakeResult,
    Initiator,
    InitiatorAuth,
    Responder,
    ResponderAuth,
    compute_auth_digest,
    compute_hello_proof,
    compute_hkdf_expand,
    compute_hkdf_extract,
    compute_key_schedule,
    compute_transcript_hash,
)
from gmchain.p2p.limits import BanList, TokenBucket, compute_backoff
from gmchain.p2p.session import (
    PING_MESSAGE,
    Close,
    Data,
    FrameOpener,
    FrameSealer,
    Ping,
    compute_nonce,
    decode_transport,
    encode_close,
    encode_data,
)

GENESIS = bytes(range(32))
VECTOR = json.loads(
    (Path(__file__).parent.parent / "p2p" / "testdata" / "handshake_vector.json").read_text()
)


# ---------------------------------------------------------------------------- helpers


def _handshake(
    a: PrivateKey,
    b: PrivateKey,
    *,
    chain_i: str = "c",
    chain_r: str = "c",
    expected: PublicKey | None = None,
    authorize=lambda pub: None,
    tamper=None,
) -> tuple[HandshakeResult, HandshakeResult]:
    """Run I=a against R=b in memory; `tamper(index, bytes) -> bytes` may alter message index."""
    t = tamper or (lambda i, m: m)
    ini = Initiator(
        chain_id=chain_i, genesis_hash=GENESIS, identity=a, expected_peer=expected or b.public_key
    )
    res = Responder(chain_id=chain_r, genesis_hash=GENESIS, identity=b, authorize=authorize)
    m2 = res.on_initiator_hello(t(0, ini.start()))
    m3 = ini.on_responder_hello(t(1, m2))
    m4, rr = res.on_initiator_auth(t(2, m3))
    ri = ini.on_responder_auth(t(3, m4))
    return ri, rr


@pytest.fixture(scope="module")
def keys() -> list[PrivateKey]:
    return [PrivateKey.generate() for _ in range(3)]


# ---------------------------------------------------------------------------- framing


def test_decoder_reassembles_any_chunking() -> None:
    rng = random.Random(7)
    bodies = [rng.randbytes(rng.randint(1, 300)) for _ in range(50)]
    wire = b"".join(encode_frame(b) for b in bodies)
    for _ in range(20):
        dec = FrameDecoder(max_body=300)
        out: list[bytes] = []
        pos = 0
        while pos < len(wire):
            step = rng.randint(1, 97)
            dec.feed(wire[pos : pos + step])
            pos += step
            while (f := dec.next_frame()) is not None:
                out.append(f[1])
        assert out == bodies
        assert dec.buffered() == 0


def test_decoder_refuses_oversize_on_the_prefix_alone() -> None:
    dec = FrameDecoder(max_body=100)
    dec.feed((101).to_bytes(4, "big"))  # no body bytes at all
    with pytest.raises(RemoteProtocolError) as e:
        dec.next_frame()
    assert e.value.reason == "oversize"


def test_decoder_refuses_empty_frame() -> None:
    dec = FrameDecoder(max_body=100)
    dec.feed(b"\x00\x00\x00\x00")
    with pytest.raises(RemoteProtocolError) as e:
        dec.next_frame()
    assert e.value.reason == "empty_frame"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (encode_message([1, b"x"]) + b"\x00", "malformed"),  # trailing byte
        (encode_message([2, b"x"]), "bad_tag"),
        (encode_message([1, b"x", b"y"]), "malformed"),  # arity
        (b"\x92\xcc\x01\xc4\x01x", "non_canonical"),  # tag 1 as uint8 instead of fixint
        (msgpack.packb({1: 2}), "malformed"),  # map
        (b"\xc1", "malformed"),  # never-used byte
        (msgpack.packb([1.0, b"x"]), "bad_tag"),  # float tag
    ],
)
def test_decode_message_is_strict(data: bytes, reason: str) -> None:
    with pytest.raises(RemoteProtocolError) as e:
        decode_message(data, 1, 2)
    assert e.value.reason == reason


# ---------------------------------------------------------------------------- limits and config


def test_token_bucket_allows_burst_then_asks_to_wait() -> None:
    b = TokenBucket(rate=10.0, burst=3, now=0.0)
    assert [b.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take(0.0) == pytest.approx(0.1)  # one token in debt at 10/s
    assert b.take(0.2) == 0.0  # refilled 2 tokens, spent 1 -> balance 0


def test_ban_list_expires() -> None:
    bans = BanList()
    bans.ban(b"n", now=10.0, seconds=5.0)
    assert bans.is_banned(b"n", 14.9)
    assert not bans.is_banned(b"n", 15.0)
    assert bans.total == 1


def test_backoff_grows_caps_and_jitters() -> None:
    rng = random.Random(1)
    kw = {"min_s": 0.2, "max_s": 10.0, "factor": 2.0, "jitter": 0.5, "rng": rng}
    for attempt in range(12):
        d = compute_backoff(attempt, **kw)  # type: ignore[arg-type]
        base = min(10.0, 0.2 * 2**attempt)
        assert base * 0.5 <= d <= base
    assert compute_backoff(10_000, **kw) <= 10.0  # type: ignore[arg-type]


def test_config_validate_names_the_field() -> None:
    P2PConfig().validate()
    with pytest.raises(ConfigError, match="max_frame"):
        P2PConfig(max_frame=0).validate()
    with pytest.raises(ConfigError, match="reconnect"):
        P2PConfig(reconnect_min_s=20.0).validate()


def test_peer_info_checks_node_id(keys: list[PrivateKey]) -> None:
    with pytest.raises(ValueError):
        PeerInfo(node_id=b"\x00" * 20, pubkey=keys[0].public_key, host="h", port=1)


# ---------------------------------------------------------------------------- sealed frames


def _opener_for(frame: bytes) -> tuple[bytes, bytes]:
    return frame[:4], frame[4:]


def test_seal_open_round_trip_in_order() -> None:
    key, iv = bytes(range(16)), bytes(range(12))
    s, o = FrameSealer(key, iv), FrameOpener(key, iv)
    for i in range(5):
        msg = encode_data(b"m%d" % i)
        assert decode_transport(o.open(*_opener_for(s.seal(msg)))) == Data(payload=b"m%d" % i)
    assert decode_transport(o.open(*_opener_for(s.seal(PING_MESSAGE)))) == Ping()
    assert decode_transport(o.open(*_opener_for(s.seal(encode_close("bye"))))) == Close(
        reason="bye"
    )


def test_nonces_never_repeat_within_a_direction() -> None:
    iv = bytes.fromhex("00112233445566778899aabb")
    nonces = {compute_nonce(iv, seq) for seq in range(10_000)}
    assert len(nonces) == 10_000
    assert compute_nonce(iv, 0) == iv


@pytest.mark.parametrize(("order", "reason"), [([0, 0], "replay"), ([1], "reorder")])
def test_replayed_and_reordered_frames_are_refused(order: list[int], reason: str) -> None:
    key, iv = bytes(16), bytes(12)
    s = FrameSealer(key, iv)
    frames = [s.seal(encode_data(b"a")), s.seal(encode_data(b"b"))]
    o = FrameOpener(key, iv)
    with pytest.raises(RemoteProtocolError) as e:
        for i in order:
            o.open(*_opener_for(frames[i]))
    assert e.value.reason == reason


def test_every_tampered_byte_is_refused() -> None:
    key, iv = bytes(16), bytes(12)
    frame = FrameSealer(key, iv).seal(encode_data(b"payload"))
    for pos in range(4, len(frame)):  # the length prefix is the framing layer's job
        bad = bytearray(frame)
        bad[pos] ^= 0x01
        with pytest.raises(RemoteProtocolError) as e:
            FrameOpener(key, iv).open(bytes(bad[:4]), bytes(bad[4:]))
        assert e.value.reason in ("decrypt", "reorder")


def test_frame_under_the_wrong_key_or_direction_is_refused() -> None:
    frame = FrameSealer(bytes(16), bytes(12)).seal(encode_data(b"x"))
    with pytest.raises(RemoteProtocolError, match="decrypt"):
        FrameOpener(b"\x01" * 16, bytes(12)).open(*_opener_for(frame))
    with pytest.raises(RemoteProtocolError, match="decrypt"):
        FrameOpener(bytes(16), b"\x01" * 12).open(*_opener_for(frame))


def test_bad_transport_tag_is_refused() -> None:
    with pytest.raises(RemoteProtocolError, match="bad_tag"):
        decode_transport(encode_message([1, b"x"]))


# ---------------------------------------------------------------------------- handshake


def test_handshake_agrees_on_keys_and_identities(keys: list[PrivateKey]) -> None:
    a, b = keys[0], keys[1]
    ri, rr = _handshake(a, b)
    assert ri.node_id == b.public_key.address and rr.node_id == a.public_key.address
    assert (ri.send_key, ri.send_iv) == (rr.recv_key, rr.recv_iv)
    assert (ri.recv_key, ri.recv_iv) == (rr.send_key, rr.send_iv)
    assert ri.send_key != ri.recv_key and ri.send_iv != ri.recv_iv
    assert ri.transcript_hash == rr.transcript_hash


def test_handshakes_give_fresh_keys(keys: list[PrivateKey]) -> None:
    k1, _ = _handshake(keys[0], keys[1])
    k2, _ = _handshake(keys[0], keys[1])
    assert k1.send_key != k2.send_key and k1.transcript_hash != k2.transcript_hash


def test_wrong_chain_id_is_refused(keys: list[PrivateKey]) -> None:
    with pytest.raises(RemoteProtocolError) as e:
        _handshake(keys[0], keys[1], chain_i="chain-A", chain_r="chain-B")
    assert e.value.reason == "wrong_chain"


def test_wrong_version_is_refused(keys: list[PrivateKey]) -> None:
    def bump_version(i: int, m: bytes) -> bytes:
        if i != 0:
            return m
        fields = msgpack.unpackb(m)
        fields[1] = PROTOCOL_VERSION - 1  # a peer of the previous version
        return msgpack.packb(fields)

    with pytest.raises(RemoteProtocolError) as e:
        _handshake(keys[0], keys[1], tamper=bump_version)
    assert e.value.reason == "version"


def test_unknown_initiator_is_refused_before_any_crypto(keys: list[PrivateKey]) -> None:
    seen: list[bytes] = []

    def authorize(pub: PublicKey) -> str | None:
        seen.append(pub.address)
        return "unknown_node"

    with pytest.raises(RemoteProtocolError) as e:
        _handshake(keys[0], keys[1], authorize=authorize)
    assert e.value.reason == "unknown_node"
    assert seen == [keys[0].public_key.address]


def test_initiator_refuses_an_unexpected_responder(
    keys: list[PrivateKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    # An honest responder already refuses a hello meant for another node (its proof is bound
    # to the responder's identity) ...
    with pytest.raises(RemoteProtocolError) as e:
        _handshake(keys[0], keys[1], expected=keys[2].public_key)
    assert e.value.reason == "bad_hello"

    # ... and if a responder skips that check, the initiator still refuses the session: M4 must
    # name the node it dialled.
    real = handshake.compute_hello_proof
    intended = keys[2].public_key.to_bytes()

    def lying(**kw: Any) -> bytes:
        return real(**{**kw, "responder": intended})

    monkeypatch.setattr(handshake, "compute_hello_proof", lying)
    with pytest.raises(RemoteProtocolError) as e:
        _handshake(keys[0], keys[1], expected=keys[2].public_key)
    assert e.value.reason == "wrong_peer"


def test_impersonation_without_the_identity_key_fails(keys: list[PrivateKey]) -> None:
    """M3 claims keys[2]'s identity but is signed with keys[0]: refused by signature."""
    victim = keys[2].public_key.to_bytes()
    ini = Initiator(
        chain_id="c", genesis_hash=GENESIS, identity=keys[0], expected_peer=keys[1].public_key
    )
    res = Responder(chain_id="c", genesis_hash=GENESIS, identity=keys[1], authorize=lambda p: None)
    m3 = InitiatorAuth.decode(ini.on_responder_hello(res.on_initiator_hello(ini.start())))
    forged = InitiatorAuth(
        kem_ct=m3.kem_ct, identity=victim, signature=m3.signature, mac=m3.mac
    ).encode()
    with pytest.raises(RemoteProtocolError) as e:
        res.on_initiator_auth(forged)
    assert e.value.reason in ("bad_mac", "bad_signature")


def test_every_bit_flip_in_the_handshake_is_detected(keys: list[PrivateKey]) -> None:
    base = []
    _handshake(keys[0], keys[1], tamper=lambda i, m: base.append(m) or m)
    lengths = [len(m) for m in base]
    rng = random.Random(3)
    checked = 0
    for idx, n in enumerate(lengths):
        for pos in sorted(rng.sample(range(n), min(n, 25))):
            bit = 1 << rng.randrange(8)

            def flip(i: int, m: bytes, idx: int = idx, pos: int = pos, bit: int = bit) -> bytes:
                if i != idx or pos >= len(m):
                    return m
                b = bytearray(m)
                b[pos] ^= bit
                return bytes(b)

            with pytest.raises(RemoteProtocolError):
                _handshake(keys[0], keys[1], tamper=flip)
            checked += 1
    assert checked == sum(min(n, 25) for n in lengths)


def test_garbage_handshake_messages_raise_only_protocol_errors(keys: list[PrivateKey]) -> None:
    rng = random.Random(11)
    for _ in range(200):
        res = Responder(
            chain_id="c", genesis_hash=GENESIS, identity=keys[1], authorize=lambda p: None
        )
        with pytest.raises(RemoteProtocolError):
            res.on_initiator_hello(rng.randbytes(rng.randint(1, 200)))


def test_hkdf_matches_an_independent_implementation() -> None:
    salt, ikm, info = b"salt" * 8, b"ikm" * 20, b"info"
    ref = HKDF(algorithm=hashes.SM3(), length=77, salt=salt, info=info).derive(ikm)
    prk = compute_hkdf_extract(salt, ikm)
    assert compute_hkdf_expand(prk, info, 77) == ref
    ref_expand = HKDFExpand(algorithm=hashes.SM3(), length=16, info=b"x").derive(prk)
    assert compute_hkdf_expand(prk, b"x", 16) == ref_expand


# ---------------------------------------------------------------------------- test vector


def _vec_bytes(section: str, name: str) -> bytes:
    return bytes.fromhex(VECTOR[section][name])


def test_vector_key_schedule() -> None:
    msgs = [_vec_bytes("messages", f"m{n}") for n in (1, 2, 3, 4)]
    for n in (1, 2, 3, 4):
        assert compute_transcript_hash(msgs[:n]) == _vec_bytes("derived", f"th{n}")
    ks = compute_key_schedule(
        secret_i=_vec_bytes("inputs", "secret_i"),
        secret_r=_vec_bytes("inputs", "secret_r"),
        th2=_vec_bytes("derived", "th2"),
        th4=_vec_bytes("derived", "th4"),
    )
    for name in ("prk", "auth_key_i", "auth_key_r", "key_i2r", "iv_i2r", "key_r2i", "iv_r2i"):
        assert getattr(ks, name) == _vec_bytes("derived", name), name


def test_vector_transcript_checks_out() -> None:
    """The recorded messages decrypt to the recorded secrets and carry valid signatures."""
    inp = VECTOR["inputs"]
    m = {n: _vec_bytes("messages", n) for n in ("m1", "m2", "m3", "m4")}
    eph_i = PrivateKey.from_bytes(bytes.fromhex(inp["ephemeral_priv_i"]))
    eph_r = PrivateKey.from_bytes(bytes.fromhex(inp["ephemeral_priv_r"]))
    id_i = PrivateKey.from_bytes(bytes.fromhex(inp["identity_priv_i"])).public_key
    id_r = PrivateKey.from_bytes(bytes.fromhex(inp["identity_priv_r"])).public_key
    m1, m2 = msgpack.unpackb(m["m1"]), msgpack.unpackb(m["m2"])
    assert m1[2] == m2[2] == inp["chain_id"]
    assert m1[3] == eph_i.public_key.to_bytes() and m1[4].hex() == inp["nonce_i"]
    # M1's proof: keyed by the genesis hash, bound to the responder it was meant for
    assert m1[5] == compute_hello_proof(
        genesis_hash=bytes.fromhex(inp["genesis_hash"]),
        version=m1[1],
        chain_id=m1[2],
        ephemeral=m1[3],
        nonce=m1[4],
        responder=id_r.to_bytes(),
    )
    assert sm2_decrypt(eph_i, m2[5]).hex() == inp["secret_r"]
    m3, m4 = InitiatorAuth.decode(m["m3"]), ResponderAuth.decode(m["m4"])
    assert sm2_decrypt(eph_r, m3.kem_ct).hex() == inp["secret_i"]
    th2, th3 = _vec_bytes("derived", "th2"), _vec_bytes("derived", "th3")
    a_i = compute_auth_digest(D_AUTH_I, [th2, m3.kem_ct, m3.identity])
    a_r = compute_auth_digest(D_AUTH_R, [th3, m4.identity])
    assert id_i.verify(a_i, m3.signature) and id_r.verify(a_r, m4.signature)
    # the MACs check under the recorded auth keys
    k_i, k_r = _vec_bytes("derived", "auth_key_i"), _vec_bytes("derived", "auth_key_r")
    assert m3.mac == sm3_hmac(k_i, D_FIN_I + a_i + m3.signature)
    assert m4.mac == sm3_hmac(k_r, D_FIN_R + a_r + m4.signature)


def test_vector_first_frame() -> None:
    f = VECTOR["first_frame_i2r"]
    sealer = FrameSealer(_vec_bytes("derived", "key_i2r"), _vec_bytes("derived", "iv_i2r"))
    frame = sealer.seal(encode_data(bytes.fromhex(f["payload"])))
    assert frame.hex() == f["frame"]

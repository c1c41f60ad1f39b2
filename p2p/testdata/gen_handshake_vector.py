"""Regenerate handshake_vector.json (run once; the checked-in file is the reference).

Fixed identity and ephemeral scalars, nonces and KEM secrets go in; SM2 encryption and signing
are randomised, so M2..M4 differ per run, but every value derived from the recorded transcript
is a pure function of it. tests/test_p2p_handshake.py recomputes all derived values from the
recorded inputs and messages and checks the signatures, MACs and KEM ciphertexts.

Run:
`.venv/bin/python -m gmchain.p2p.testdata.gen_handshake_vector > p2p/testdata/handshake_vector.json`
"""

from __future__ import annotations

import json

from gmchain.crypto_sm import PrivateKey, sm3_hash
from gmchain.p2p.handshake import (
    Initiator,
    Responder,
    compute_key_schedule,
    compute_transcript_hash,
)
from gmchain.p2p.session import FrameSealer, encode_data

__all__ = ["main"]


def _scalar(label: str) -> bytes:
    return sm3_hash(b"gmchain p2p test vector " + label.encode())


def main() -> None:
    chain_id = "gmchain-vector-1"
    genesis_hash = _scalar("genesis")
    id_i, id_r = (
        PrivateKey.from_bytes(_scalar("identity I")),
        PrivateKey.from_bytes(_scalar("identity R")),
    )
    eph_i, eph_r = (
        PrivateKey.from_bytes(_scalar("ephemeral I")),
        PrivateKey.from_bytes(_scalar("ephemeral R")),
    )
    nonce_i, nonce_r = _scalar("nonce I"), _scalar("nonce R")
    secret_i, secret_r = _scalar("secret I"), _scalar("secret R")
    ini = Initiator(
        chain_id=chain_id,
        genesis_hash=genesis_hash,
        identity=id_i,
        expected_peer=id_r.public_key,
        ephemeral=eph_i,
        nonce=nonce_i,
        kem_secret=secret_i,
    )
    res = Responder(
        chain_id=chain_id,
        genesis_hash=genesis_hash,
        identity=id_r,
        authorize=lambda pub: None,
        ephemeral=eph_r,
        nonce=nonce_r,
        kem_secret=secret_r,
    )
    m1 = ini.start()
    m2 = res.on_initiator_hello(m1)
    m3 = ini.on_responder_hello(m2)
    m4, _ = res.on_initiator_auth(m3)
    result = ini.on_responder_auth(m4)
    msgs = [m1, m2, m3, m4]
    th = [compute_transcript_hash(msgs[:n]) for n in (1, 2, 3, 4)]
    ks = compute_key_schedule(secret_i=secret_i, secret_r=secret_r, th2=th[1], th4=th[3])
    assert ks.key_i2r == result.send_key
    payload = b"hello, regulator"
    frame0 = FrameSealer(result.send_key, result.send_iv).seal(encode_data(payload))
    out = {
        "description": "gmchain p2p handshake (protocol version 3); see docs/p2p.md section 5",
        "inputs": {
            "chain_id": chain_id,
            "genesis_hash": genesis_hash.hex(),
            "identity_priv_i": id_i.to_bytes().hex(),
            "identity_priv_r": id_r.to_bytes().hex(),
            "ephemeral_priv_i": eph_i.to_bytes().hex(),
            "ephemeral_priv_r": eph_r.to_bytes().hex(),
            "nonce_i": nonce_i.hex(),
            "nonce_r": nonce_r.hex(),
            "secret_i": secret_i.hex(),
            "secret_r": secret_r.hex(),
        },
        "messages": {f"m{n + 1}": m.hex() for n, m in enumerate(msgs)},
        "derived": {
            "th1": th[0].hex(),
            "th2": th[1].hex(),
            "th3": th[2].hex(),
            "th4": th[3].hex(),
            "prk": ks.prk.hex(),
            "auth_key_i": ks.auth_key_i.hex(),
            "auth_key_r": ks.auth_key_r.hex(),
            "key_i2r": (ks.key_i2r or b"").hex(),
            "iv_i2r": (ks.iv_i2r or b"").hex(),
            "key_r2i": (ks.key_r2i or b"").hex(),
            "iv_r2i": (ks.iv_r2i or b"").hex(),
        },
        "first_frame_i2r": {"payload": payload.hex(), "seq": 0, "frame": frame0.hex()},
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

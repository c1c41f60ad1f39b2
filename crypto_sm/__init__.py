"""SM2 / SM3 / SM4 for gmchain (GB/T 32918, GB/T 32905, GB/T 32907; SM2 usage GB/T 35276).

The public surface every other package uses; see docs/crypto.md.

Rules kept here:
- SM3 and SM4-GCM go through `cryptography` (OpenSSL's C code). SM2 goes through a backend
  (`crypto_sm.backend`): "openssl" (libcrypto via ctypes, the default, GIL released during
  each call) or "gmssl" (pure Python, the independent reference for tests).
- No cryptographic primitive is implemented in this package; it wraps, checks inputs, and
  converts encodings.
- Signatures are 64-byte r || s over SM3(Z_A || msg) with DEFAULT_SM2_ID; nonces always come
  from a CSPRNG; private keys at rest are encrypted with a passphrase in files of mode 0600.
"""

from gmchain.crypto_sm.backend import get_backend, set_backend
from gmchain.crypto_sm.errors import CryptoError, InsecureKeyFile, InvalidKey, InvalidSignature
from gmchain.crypto_sm.keyfile import load_private_key, save_private_key
from gmchain.crypto_sm.params import DEFAULT_SM2_ID
from gmchain.crypto_sm.sm2 import PrivateKey, PublicKey, sm2_decrypt, sm2_encrypt, verify_many
from gmchain.crypto_sm.sm3 import sm3_hash, sm3_hmac
from gmchain.crypto_sm.sm4 import sm4_gcm_decrypt, sm4_gcm_encrypt

__all__ = [
    "DEFAULT_SM2_ID",
    "CryptoError",
    "InsecureKeyFile",
    "InvalidKey",
    "InvalidSignature",
    "PrivateKey",
    "PublicKey",
    "get_backend",
    "load_private_key",
    "save_private_key",
    "set_backend",
    "sm2_decrypt",
    "sm2_encrypt",
    "sm3_hash",
    "sm3_hmac",
    "sm4_gcm_decrypt",
    "sm4_gcm_encrypt",
    "verify_many",
]

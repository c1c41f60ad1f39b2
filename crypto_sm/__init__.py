"""SM2 / SM3 / SM4 for gmchain (GB/T 32918, 32905, 32907).

The public surface every other package uses. Hashing and symmetric encryption go through
`cryptography` (OpenSSL's C code); SM2 goes through a backend (see `crypto_sm.backend`).
"""

from crypto_sm.sm3 import sm3_hash, sm3_hmac

__all__ = ["sm3_hash", "sm3_hmac"]

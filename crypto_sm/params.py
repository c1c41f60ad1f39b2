"""SM2 recommended curve parameters (GB/T 32918.5-2017, Annex A; same as GM/T 0003.5-2012).

Rules kept here: these are public constants only (used for range checks on scalars and
signature components, and for the on-curve check of the reference backend). No arithmetic
on points lives in this module.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "DEFAULT_SM2_ID",
    "GX",
    "GY",
    "PUBLIC_KEY_SIZE",
    "SCALAR_SIZE",
    "SIGNATURE_SIZE",
    "A",
    "B",
    "N",
    "P",
]

P: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B: Final = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX: Final = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY: Final = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

#: The distinguishing identifier of GB/T 35276-2017 §10 (and GM/T 0009-2012 §10): the ASCII
#: string "1234567812345678", ENTL = 128 bits. It enters Z_A = SM3(ENTL || ID || a || b || G || P).
DEFAULT_SM2_ID: Final = b"1234567812345678"

SCALAR_SIZE: Final = 32
PUBLIC_KEY_SIZE: Final = 65  # 0x04 || X || Y
SIGNATURE_SIZE: Final = 64  # r || s, each 32 bytes big-endian

"""A site's self-signed certificate for its JSON-RPC TLS listener, and the fingerprint clients pin.

Rules this module keeps:
1. `make_self_signed(cert_path, key_path, hosts)` writes a new ECDSA P-256 key (PEM, PKCS#8,
   unencrypted, mode 0600: the node reads it unattended at start and on SIGHUP) and a
   self-signed X.509 certificate (PEM, mode 0644) whose subjectAltName lists every host: an IP
   literal as an iPAddress entry (RFC 5280 4.2.1.6; clients match IP literals only against
   those), anything else as a dNSName. The certificate is its own CA (basicConstraints CA:TRUE,
   pathlen 0), so a client passes the file itself as its CA file. Python's ssl (OpenSSL's TLS
   1.2/1.3) cannot use SM2 keys, hence P-256; a national-cryptography deployment (TLCP, GB/T
   38636) puts a TLCP proxy in front (docs/sites.md, "Threat model").
2. Neither file is ever overwritten: an existing path is an error and nothing is written.
3. `cert_fingerprint(pem)` is SM3 of the certificate's DER bytes, 0x-hex: what a site's
   descriptor and peers.json carry so a client can check it got the right certificate.
   Computing it needs only the standard library; making a certificate needs `cryptography`
   (the standard library's ssl cannot create certificates).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Sequence
from pathlib import Path

from gmchain.crypto_sm import sm3_hash

__all__ = ["CERT_VALID_DAYS", "cert_fingerprint", "make_self_signed"]

CERT_VALID_DAYS = 5 * 365  # renew by running `site init --tls` for a new folder, or by hand


def cert_fingerprint(pem: str) -> str:
    """Rule 3: 0x + SM3 of the DER form of the first certificate in `pem`."""
    try:
        der = ssl.PEM_cert_to_DER_cert(pem)
    except ValueError:
        raise ValueError("not a PEM certificate") from None
    return "0x" + sm3_hash(der).hex()


def _san(hosts: Sequence[str]) -> list[object]:
    from cryptography import x509

    names: list[object] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def make_self_signed(
    cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str], hosts: Sequence[str]
) -> str:
    """Rules 1-2: write a new key and a self-signed certificate for `hosts`; its fingerprint."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    if not hosts:
        raise ValueError("a certificate needs at least one host")
    cert_file, key_file = Path(cert_path), Path(key_path)
    for p in (cert_file, key_file):
        if os.path.lexists(p):
            raise FileExistsError(f"{p} already exists: refusing to overwrite it")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate small clock skew
        .not_valid_after(now + datetime.timedelta(days=CERT_VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(_san(hosts)), critical=False)  # type: ignore[arg-type]
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "wb") as out:
        out.write(key_pem)
    fd = os.open(cert_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with open(fd, "wb") as out:
        out.write(cert_pem)
    return cert_fingerprint(cert_pem.decode())

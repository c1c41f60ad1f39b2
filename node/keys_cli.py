"""Client key files for the CLI and `gmchain dev`: default locations, passphrases, the dev key.

Rules this module keeps:
1. Keys live in `crypto_sm` key files (encrypted with SM4-GCM under a PBKDF2-HMAC-SM3 key, mode
   0600, never overwritten; docs/crypto.md). This module only chooses paths and passphrases.
2. The default client key is `$GMCHAIN_HOME/dev/client.key` (`GMCHAIN_HOME` defaults to
   `~/.gmchain`).
3. A passphrase comes from the environment variable named by `--passphrase-env`, else from
   `GMCHAIN_PASSPHRASE`, else it is "empty". `crypto_sm` refuses an empty passphrase, so "empty"
   means the well-known `DEV_PASSPHRASE` — INSECURE by design, for the dev chain only (anyone who
   can read the file can use the key; the file mode still limits who can read it).
4. The dev key uses the lowest iteration count crypto_sm allows (its passphrase is public anyway),
   so CLI commands against `gmchain dev` do not pay 0.4 s of PBKDF2 each.
"""

from __future__ import annotations

import os
from pathlib import Path

from gmchain.crypto_sm import PrivateKey, load_private_key, save_private_key
from gmchain.crypto_sm.keyfile import MIN_ITERATIONS

__all__ = [
    "DEV_PASSPHRASE",
    "PASSPHRASE_ENV",
    "default_home",
    "default_key_path",
    "ensure_dev_key",
    "load_key",
    "resolve_passphrase",
]

PASSPHRASE_ENV = "GMCHAIN_PASSPHRASE"
# What an "empty" passphrase stands for (rule 3). Public, hence insecure: dev chains only.
DEV_PASSPHRASE = b"gmchain-dev"  # = node.daemon.DEV_PASSPHRASE (the dev chain's keys)


def default_home() -> Path:
    return Path(os.environ.get("GMCHAIN_HOME") or Path.home() / ".gmchain")


def default_key_path() -> Path:
    return default_home() / "dev" / "client.key"


def resolve_passphrase(env_var: str | None = None) -> bytes:
    """Rule 3. A named variable that is unset is an error, not a silent fallback."""
    if env_var:
        if env_var not in os.environ:
            raise ValueError(f"environment variable {env_var} (named by --passphrase-env) is unset")
        value = os.environ[env_var]
    else:
        value = os.environ.get(PASSPHRASE_ENV, "")
    return value.encode() if value else DEV_PASSPHRASE


def load_key(path: str | os.PathLike[str], passphrase: bytes) -> PrivateKey:
    """Load a key file, with a message that names the file when it is missing."""
    if not os.path.lexists(path):
        raise FileNotFoundError(f"no key file at {path} (create one with `gmchain keygen --out`)")
    return load_private_key(path, passphrase)


def ensure_dev_key(path: str | os.PathLike[str] | None = None) -> PrivateKey:
    """The dev client key at `path` (default: default_key_path()), created on first use (rule 4)."""
    target = Path(path) if path is not None else default_key_path()
    if target.exists():
        return load_private_key(target, DEV_PASSPHRASE)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = PrivateKey.generate()
    save_private_key(target, key, DEV_PASSPHRASE, iterations=MIN_ITERATIONS)
    return key

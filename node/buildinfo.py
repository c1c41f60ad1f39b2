"""What this build of gmchain is: version, commit, Python, and the SM2 backend's libcrypto.

`gmchain --version` prints it (node/cli_meta.py) and the node exports it as the labels of
`gmchain_build_info` (node/metrics.py).

Rules this module keeps:
1. No server dependency: the SDK-only install (no `[node]` extra) runs `gmchain --version` too.
2. The commit is, in this order: $GMCHAIN_COMMIT (a packager's override); the file `COMMIT`
   beside gmchain/__init__.py, which `make wheel` writes into the wheel (and removes from the
   source tree again), so an installed wheel knows the commit it was built from without git;
   the source tree's `git rev-parse --short=12 HEAD` (an editable checkout); else "unknown".
3. Computed once per process: the git call and the backend's self-test run at most once.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["COMMIT_FILE", "BuildInfo", "get_build_info", "version_text"]

COMMIT_FILE = "COMMIT"  # gmchain/COMMIT in a wheel (rule 2)


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildInfo:
    """The labels of `gmchain_build_info` and the lines of `gmchain --version`."""

    version: str  # gmchain.__version__
    commit: str  # rule 2
    python: str  # platform.python_version()
    openssl: str  # the libcrypto version text the SM2 backend loaded
    sm2_backend: str  # "openssl" or "gmssl"


def _commit() -> str:
    """Rule 2."""
    import gmchain

    env = os.environ.get("GMCHAIN_COMMIT", "").strip()
    if env:
        return env[:40]
    baked = Path(gmchain.__file__).resolve().parent / COMMIT_FILE
    try:
        text = baked.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        text = ""
    if text:
        return text[:40]
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=2.0,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else "unknown"


@functools.cache
def get_build_info() -> BuildInfo:
    import ssl

    import gmchain
    from gmchain.crypto_sm.backend import active_backend

    backend = active_backend()
    return BuildInfo(
        version=gmchain.__version__,
        commit=_commit(),
        python=platform.python_version(),
        # the libcrypto that does SM2 (the OpenSSL backend), else the one Python's ssl uses
        openssl=str(getattr(backend, "version_text", ssl.OPENSSL_VERSION)),
        sm2_backend=backend.name,
    )


def version_text() -> str:
    """What `gmchain --version` prints: four lines, `key: value` after the first."""
    b = get_build_info()
    return (
        f"gmchain {b.version}\n"
        f"commit: {b.commit}\n"
        f"python: {b.python} ({platform.machine()})\n"
        f"sm2 backend: {b.sm2_backend} ({b.openssl})\n"
    )

"""The report's manifest (what was measured where) and the same machine's microbenchmarks.

Rules this module keeps:
1. Every report says what machine, software and parameters produced it: CPU model (the kernel's
   `model name` in full, plus vendor, family, model, stepping, clock, cache and whether a
   hypervisor is present), cores, memory, OS, load average before and after, Python, OpenSSL,
   package versions, git commit (and whether the tree was dirty), consensus and packing
   parameters, generator settings.
2. Microbenchmarks are measured on the spot, before the nodes start: SM2 verify/s on one thread and
   on all threads and SM3 MB/s (`crypto_sm.bench.run_bench`), synced LevelDB writes/s (plyvel,
   `sync=True` single puts, the per-block durability primitive of ledger/store).
3. The SM2 ceiling: single node = the all-thread verify rate; n nodes sharing this machine = that
   rate / n (each node verifies each transaction once: DESIGN.md "Performance budget").
"""

from __future__ import annotations

import os
import platform
import ssl
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from gmchain.ledger.leveldb_build import leveldb_build

__all__ = ["ceiling_tps", "machine_manifest", "microbench"]

_PACKAGES = ("aiohttp", "uvloop", "msgpack", "plyvel", "cryptography", "prometheus-client")


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (proc(5)), or {} off Linux."""
    out: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                if out:
                    break
                continue
            k, _, v = line.partition(":")
            out.setdefault(k.strip(), v.strip())
    except OSError:
        pass
    return out


def _cpu_model(info: dict[str, str]) -> str:
    """`model name` exactly as the kernel reports it (a VM may hide the exact part: the family,
    model and stepping fields then still identify it)."""
    return info.get("model name") or info.get("Model") or platform.processor() or platform.machine()


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def _mem_total_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return 0.0


def _git(repo: Path, *args: str) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _openssl_text() -> str:
    try:
        from cryptography.hazmat.backends.openssl.backend import backend

        return str(backend.openssl_version_text())
    except Exception:  # pragma: no cover - informative only
        return ssl.OPENSSL_VERSION


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_manifest() -> dict[str, Any]:
    repo = Path(__file__).resolve().parent.parent
    versions = {p: _version(p) for p in _PACKAGES}
    info = _cpuinfo()
    flags = info.get("flags", "").split()
    return {
        "cpu_model": _cpu_model(info),
        "cpu": {
            "vendor": info.get("vendor_id"),
            "family": info.get("cpu family"),
            "model": info.get("model"),
            "stepping": info.get("stepping"),
            "mhz": info.get("cpu MHz"),
            "cache": info.get("cache size"),
            "virtualized": "hypervisor" in flags,
        },
        "cores": os.cpu_count(),
        "memory_gb": _mem_total_gb(),
        "os": f"{_os_name()}, {platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "python": sys.version.split()[0],
        "openssl": _openssl_text(),
        "packages": versions,
        # the LevelDB and snappy the node runs on: the wheel's unoptimised copies or the system's
        "leveldb": leveldb_build().describe(),
        "git_commit": _git(repo, "rev-parse", "HEAD"),
        "git_dirty": bool(_git(repo, "status", "--porcelain", "--untracked-files=no")),
        "gmchain": _version("gmchain"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _synced_writes_per_s(seconds: float) -> float:
    import plyvel

    with tempfile.TemporaryDirectory(prefix="gmbench-fsync-") as d:
        db = plyvel.DB(d, create_if_missing=True)
        try:
            n = 0
            value = os.urandom(200)
            t0 = time.perf_counter()
            while (el := time.perf_counter() - t0) < seconds:
                db.put(b"k%d" % n, value, sync=True)
                n += 1
        finally:
            db.close()
    return n / el


def microbench(seconds: float = 1.0) -> dict[str, Any]:
    """Rule 2; `seconds` per figure."""
    from gmchain.crypto_sm.bench import run_bench

    crypto = run_bench(seconds=seconds)
    return {
        "sm2_verify_per_s_1thread": crypto["sm2_verify_per_s_1thread"],
        "sm2_verify_per_s_all_threads": crypto["sm2_verify_per_s_threads"],
        "sm2_sign_per_s": crypto["sm2_sign_per_s"],
        "sm3_mb_per_s": crypto["sm3_mb_per_s"],
        "synced_writes_per_s": round(_synced_writes_per_s(seconds), 1),
        "threads": crypto["threads"],
        "seconds_per_figure": seconds,
    }


def ceiling_tps(micro: dict[str, Any], nodes: int) -> float:
    """Rule 3."""
    return round(float(micro["sm2_verify_per_s_all_threads"]) / max(1, nodes), 1)

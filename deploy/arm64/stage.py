"""Assemble the aarch64 bundle inside the arm64 build root (run by build.sh under qemu-user).

Runs with the build root's own /usr/bin/python3.11 (Debian bookworm, aarch64), so everything it
compiles or resolves is aarch64. Standard library only (it runs before anything is installed).

Rules:
S1. plyvel is compiled here from the pinned sdist against Debian's libleveldb-dev, in a fixed
    folder, without debug information (-g0), so its binary does not depend on the build's paths.
S2. Every wheel is installed with pip's --no-index --no-deps --no-compile: only the pinned,
    hash-checked inputs build.sh put in /build/inputs can enter the bundle.
S3. The runtime is Debian's python3.11 binary, its standard library (minus tests, IDLE, Tk,
    ensurepip and Debian's /etc symlinks), and the closure of shared libraries that the loader
    resolves for it and for every extension module, glibc and the loader included; OpenSSL 3
    (libssl.so.3, libcrypto.so.3) goes to runtime/ssl3, off the loader's search path
    (launcher rule L2); build.sh points _ssl/_hashlib at it with a RUNPATH.
S4. Byte code is compiled with the bundle's own interpreter in checked-hash mode (no
    timestamps in .pyc, so the bundle is reproducible and an edited source is still noticed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

INPUTS = Path("/build/inputs")
SRC = Path("/build/src")
LOADER = "/lib/ld-linux-aarch64.so.1"
STDLIB = Path("/usr/lib/python3.11")
STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "__pycache__", "lib2to3"}
SSL3 = {"libssl.so.3", "libcrypto.so.3"}


def run(*cmd: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        sys.exit(f"stage: {' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def build_plyvel() -> Path:
    sdist = next(INPUTS.glob("plyvel-*.tar.gz"))
    shutil.rmtree(SRC, ignore_errors=True)
    SRC.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        # Debian's 3.11.2 predates extraction filters (3.11.4); the sdist is hash-checked.
        if hasattr(tarfile, "data_filter"):
            tar.extractall(SRC, filter="data")
        else:
            tar.extractall(SRC)
    tree = next(SRC.iterdir())
    env = dict(os.environ, CFLAGS="-g0", CXXFLAGS="-g0")
    out = SRC / "wheel"
    run(
        "/usr/bin/python3.11", "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "--no-index", "-w", str(out), str(tree), env=env,
    )  # fmt: skip
    return next(out.glob("plyvel-*.whl"))


def install_wheels(site: Path, plyvel: Path) -> None:
    wheels = [*sorted(str(w) for w in INPUTS.glob("*.whl")), str(plyvel)]
    run(
        "/usr/bin/python3.11", "-m", "pip", "install", "--no-index", "--no-deps", "--no-compile",
        "--disable-pip-version-check", "--target", str(site), *wheels,
    )  # fmt: skip
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts: bin/gmchain replaces them


def copy_stdlib(dest: Path) -> None:
    def ignore(folder: str, names: list[str]) -> set[str]:
        skip = {n for n in names if n in STDLIB_SKIP}
        for name in names:
            path = Path(folder) / name
            if path.is_symlink() and os.readlink(path).startswith("/"):
                skip.add(name)  # e.g. sitecustomize.py -> /etc/python3.11/sitecustomize.py
        return skip

    shutil.copytree(STDLIB, dest, ignore=ignore, symlinks=True)


def resolve_libraries(root: Path) -> dict[str, Path]:
    """soname -> file in the build root, for everything the loader resolves outside `root`."""
    found: dict[str, Path] = {}
    objects = [root / "runtime" / "python3.11"]
    objects += sorted(p for p in root.rglob("*.so*") if p.is_file() and not p.is_symlink())
    for obj in objects:
        for line in run(LOADER, "--list", str(obj)).splitlines():
            line = line.strip()
            if "=>" in line:
                name, _, rest = line.partition("=>")
                path = rest.strip().split(" (")[0]
            else:
                path = line.split(" (")[0]
                name = os.path.basename(path)
            name = name.strip()
            if not path.startswith("/") or path.startswith(str(root)):
                continue  # a wheel's own *.libs folder (RUNPATH $ORIGIN) or the vDSO
            found.setdefault(name, Path(path))
    return found


def main() -> None:
    stage = Path(sys.argv[1])
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "runtime" / "lib").mkdir(parents=True)
    (stage / "runtime" / "ssl3").mkdir()
    plyvel = build_plyvel()
    install_wheels(stage / "lib" / "python3" / "dist-packages", plyvel)
    shutil.copy2("/usr/bin/python3.11", stage / "runtime" / "python3.11")
    copy_stdlib(stage / "lib" / "python3.11")
    libs = resolve_libraries(stage)
    libs.setdefault("ld-linux-aarch64.so.1", Path(LOADER))
    for soname, path in sorted(libs.items()):
        folder = "ssl3" if soname in SSL3 else "lib"
        shutil.copy2(path.resolve(), stage / "runtime" / folder / soname)
    for soname in sorted(libs):
        print(f"lib {soname} {libs[soname].resolve()}")


if __name__ == "__main__":
    main()

"""Assemble the aarch64 bundle from the arm64 build root (build.sh runs this natively).

Everything that ends up in the bundle is an aarch64 file of the Debian bookworm arm64 root or of
a pinned aarch64 wheel; assembling them is file work (copying, reading ELF headers, unpacking
wheels), done at native speed. Running aarch64 code is left to build.sh (under qemu-user):
`gmchain --version` with the finished bundle, and the byte-code cross-check.

Rules:
S1. plyvel is Debian's python3-plyvel of the build root: compiled by Debian for arm64 against
    Debian's LevelDB (libleveldb1d), version pinned in debian-pins.txt. (Compiling the sdist
    under emulation took over an hour of CPU on this shared machine; requirements-sdist.txt
    keeps the pinned sdist for a native arm64 build machine.)
S2. Every wheel is installed with pip's --no-index --no-deps --no-compile and the aarch64
    platform tags: only the pinned, hash-checked inputs build.sh downloaded can enter.
S3. The runtime is Debian's python3.11 binary, its standard library (minus tests, IDLE, Tk,
    ensurepip and symlinks into /etc), and the closure of the shared libraries named by
    DT_NEEDED of the interpreter and of every extension module, resolved as the aarch64 loader
    does (the object's RUNPATH, then the root's multiarch and plain library folders), glibc and
    the loader included. OpenSSL 3 (libssl.so.3, libcrypto.so.3) goes to runtime/ssl3, off the
    loader's search path (launcher rule L2); build.sh points what links it there with a RUNPATH.
S4. Output: one line per bundled library, "lib SONAME PATH-IN-ROOT", for the build log.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "__pycache__", "lib2to3"}
# python3.11-dev in the root adds the static libpython (23 MB) here: nothing at run time uses it.
STDLIB_SKIP.add("config-3.11-aarch64-linux-gnu")
SSL3 = {"libssl.so.3", "libcrypto.so.3"}
LIBDIRS = ("lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu", "lib", "usr/lib")
LOADER = "ld-linux-aarch64.so.1"
PLATFORMS = ("manylinux_2_28_aarch64", "manylinux2014_aarch64", "manylinux_2_17_aarch64")


def run(*cmd: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"stage: {' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def dynamic(obj: Path) -> tuple[list[str], list[str]]:
    """DT_NEEDED and DT_RUNPATH/DT_RPATH entries of an ELF object (readelf reads aarch64)."""
    needed: list[str] = []
    runpath: list[str] = []
    for line in run("readelf", "-d", "-W", str(obj)).splitlines():
        if "(NEEDED)" in line:
            needed.append(line.split("[", 1)[1].rstrip("]"))
        elif "(RUNPATH)" in line or "(RPATH)" in line:
            runpath += line.split("[", 1)[1].rstrip("]").split(":")
    return needed, runpath


def is_elf(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == b"\x7fELF"


def install_wheels(python: str, site: Path, inputs: Path) -> None:
    wheels = sorted(str(w) for w in inputs.glob("*.whl"))
    plats = [arg for p in PLATFORMS for arg in ("--platform", p)]
    run(
        python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
        "--disable-pip-version-check", "--only-binary=:all:", *plats, "--python-version",
        "3.11", "--implementation", "cp", "--target", str(site), *wheels,
    )  # fmt: skip
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts: bin/gmchain replaces them


def copy_plyvel(root: Path, site: Path) -> None:
    debian = root / "usr/lib/python3/dist-packages"
    found = sorted(debian.glob("plyvel*"))
    if not any(p.name == "plyvel" for p in found):
        sys.exit("stage: python3-plyvel is not installed in the build root")
    for path in found:
        shutil.copytree(path, site / path.name, ignore=shutil.ignore_patterns("__pycache__"))


def copy_stdlib(root: Path, dest: Path) -> None:
    def ignore(folder: str, names: list[str]) -> set[str]:
        skip = {n for n in names if n in STDLIB_SKIP}
        for name in names:
            path = Path(folder) / name
            if path.is_symlink() and os.readlink(path).startswith("/"):
                skip.add(name)  # e.g. sitecustomize.py -> /etc/python3.11/sitecustomize.py
        return skip

    shutil.copytree(root / "usr/lib/python3.11", dest, ignore=ignore, symlinks=True)


def in_root(root: Path, path: Path) -> Path:
    """Resolve `path` (inside the root) following symlinks as the root would."""
    for _ in range(40):
        if not path.is_symlink():
            return path
        target = os.readlink(path)
        path = (root / target.lstrip("/")) if target.startswith("/") else path.parent / target
    sys.exit(f"stage: symlink loop at {path}")


def resolve_libraries(root: Path, stage: Path) -> dict[str, Path]:
    found: dict[str, Path] = {LOADER: in_root(root, root / "lib" / LOADER)}
    queue = [stage / "runtime" / "python3.11"]
    queue += sorted(
        p for p in stage.rglob("*.so*") if p.is_file() and not p.is_symlink() and is_elf(p)
    )
    seen: set[Path] = set()
    while queue:
        obj = queue.pop()
        if obj in seen:
            continue
        seen.add(obj)
        needed, runpath = dynamic(obj)
        dirs = [Path(d.replace("$ORIGIN", str(obj.parent))) for d in runpath if "$ORIGIN" in d]
        for name in needed:
            if any((d / name).exists() for d in dirs) or name in found:
                continue  # a wheel's own *.libs folder, or already resolved
            for libdir in LIBDIRS:
                candidate = root / libdir / name
                if candidate.exists() or candidate.is_symlink():
                    real = in_root(root, candidate)
                    found[name] = real
                    queue.append(real)
                    break
            else:
                sys.exit(f"stage: {name} (needed by {obj}) is not in the build root")
    return found


def main() -> None:
    root, stage, inputs = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "runtime" / "lib").mkdir(parents=True)
    (stage / "runtime" / "ssl3").mkdir()
    site = stage / "lib" / "python3" / "dist-packages"
    install_wheels(sys.executable, site, inputs)
    copy_plyvel(root, site)
    shutil.copy2(root / "usr/bin/python3.11", stage / "runtime" / "python3.11")
    copy_stdlib(root, stage / "lib" / "python3.11")
    libs = resolve_libraries(root, stage)
    for soname, path in sorted(libs.items()):
        folder = "ssl3" if soname in SSL3 else "lib"
        shutil.copy2(path, stage / "runtime" / folder / soname)
        print(f"lib {soname} /{path.relative_to(root)}")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# build.sh: the reproducible aarch64 bundle dist/gmchain-<version>-linux-aarch64.tar.gz
# (docs/deploy-arm64.md), built in a Debian bookworm arm64 root under qemu-user-static.
#
# Rules:
# B1. Inputs are pinned: the Debian packages of the build root (debian-pins.txt: a different
#     version on the mirror stops the build unless GMCHAIN_ARM64_ALLOW_DRIFT=1, and the versions
#     used are recorded either way; plyvel is Debian's python3-plyvel), the aarch64 wheels
#     (requirements-aarch64.txt, pip --require-hashes), and gmchain itself (HEAD, as a wheel).
# B2. SOURCE_DATE_EPOCH (default: the last commit's time) fixes every timestamp: wheel zips,
#     .pyc (checked-hash, no time inside), file times and the tar (sorted, owner 0, gzip -n).
# B3. The bundle carries its manifest: MANIFEST.sm3 (SM3 and path of every other file, sorted)
#     and BUILDINFO.json (version, commit, SOURCE_DATE_EPOCH, Debian versions, wheel hashes).
# B4. Work files live in GMCHAIN_ARM64_WORK (default ~/.cache/gmchain/arm64), never in git; the
#     build root is made once and reused (delete it to start over).
# B5. Needs root (debootstrap, chroot), debootstrap, qemu-user-static with binfmt_misc, patchelf,
#     curl, readelf, and this checkout's .venv (make install). Nothing is emulated that need not
#     be: downloads, assembling (stage.py) and the manifest are native; the build root's
#     second stage, `gmchain --version` and the byte-code cross-check run under emulation.
# B6. Byte code: see the comment at the compile step.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd -P)"
REPO="$(cd "$HERE/../.." && pwd -P)"
WORK="${GMCHAIN_ARM64_WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/gmchain/arm64}"
MIRROR="${GMCHAIN_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
ROOTFS="$WORK/build-rootfs"
PY="$REPO/.venv/bin/python"
VERSION="$("$PY" -c 'import gmchain; print(gmchain.__version__)')"
NAME="gmchain-$VERSION-linux-aarch64"
OUT="$REPO/dist/$NAME.tar.gz"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct)}"
log() { echo "[arm64 build] $*" >&2; }
# remove_root (rule M1 of common.sh: never rm -rf a root with file systems mounted in it)
. "$HERE/common.sh"

# The build root's packages: what debootstrap --include gets (their dependencies follow).
mapfile -t PINS < <(grep -v '^#' "$HERE/debian-pins.txt" | awk 'NF')
INCLUDE="$(printf '%s\n' "${PINS[@]}" | awk '$3 == "include" {print $1}' | paste -sd,)"

if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || true
    update-binfmts --enable qemu-aarch64 2>/dev/null || true
fi
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || {
    log "no binfmt_misc handler for aarch64: apt install qemu-user-static binfmt-support"; exit 1; }
for tool in debootstrap patchelf curl; do
    command -v "$tool" >/dev/null || { log "missing $tool (apt install $tool)"; exit 1; }
done

mkdir -p "$WORK" "$REPO/dist"
if [ ! -f "$ROOTFS/.gmchain-rootfs-ok" ]; then
    log "debootstrap $SUITE arm64 into $ROOTFS (emulated second stage: 10-20 min)"
    remove_root "$ROOTFS"
    debootstrap --arch=arm64 --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOTFS" "$MIRROR" \
        >"$WORK/debootstrap-build.log" 2>&1 || { tail -20 "$WORK/debootstrap-build.log"; exit 1; }
    touch "$ROOTFS/.gmchain-rootfs-ok"
fi

missing=()
for pkg in ${INCLUDE//,/ }; do
    [ -e "$ROOTFS/var/lib/dpkg/info/$pkg.list" ] || [ -e "$ROOTFS/var/lib/dpkg/info/$pkg:arm64.list" ] \
        || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then  # the pins gained a package since the root was made
    log "installing ${missing[*]} in the build root (emulated apt)"
    apt_install() {
        chroot "$ROOTFS" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends "${missing[@]}" >>"$WORK/debootstrap-build.log" 2>&1
    }
    apt_install || { chroot "$ROOTFS" apt-get update -q >>"$WORK/debootstrap-build.log" 2>&1 && apt_install; }
fi

log "checking the Debian versions against debian-pins.txt"
used="$WORK/debian-used.txt"
chroot "$ROOTFS" dpkg-query -W -f '${Package} ${Version}\n' \
    $(printf '%s\n' "${PINS[@]}" | awk '{print $1}') >"$used"
drift=0
while read -r pkg want _; do
    got="$(awk -v p="$pkg" '$1 == p {print $2}' "$used")"
    if [ "$got" != "$want" ]; then
        log "pin drift: $pkg is $got, pinned $want"
        drift=1
    fi
done < <(printf '%s\n' "${PINS[@]}")
if [ "$drift" = 1 ] && [ "${GMCHAIN_ARM64_ALLOW_DRIFT:-0}" != 1 ]; then
    log "refusing to build from unpinned Debian packages (GMCHAIN_ARM64_ALLOW_DRIFT=1 to record and go on)"
    exit 1
fi

log "fetching the pinned wheels (hash-checked) and building gmchain's wheel"
inputs="$WORK/inputs"
rm -rf "$inputs"
mkdir -p "$inputs"
"$PY" -m pip download -q --disable-pip-version-check --no-deps --require-hashes \
    --only-binary=:all: --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 \
    --platform manylinux_2_17_aarch64 --python-version 3.11 --implementation cp \
    -r "$HERE/requirements-aarch64.txt" -d "$inputs" 2> >(grep -v '^WARNING: Location' >&2)
src="$WORK/gmchain-src"
rm -rf "$src"
mkdir -p "$src"
git -C "$REPO" archive --format=tar HEAD | tar -C "$src" -xf -
"$PY" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation \
    -w "$inputs" "$src" 2> >(grep -v '^WARNING: Location' >&2)

log "assembling from the build root (native: wheels, standard library, library closure)"
rm -rf "$ROOTFS/build"
mkdir -p "$ROOTFS/build"
B="$ROOTFS/build/$NAME"
"$PY" "$HERE/stage.py" "$ROOTFS" "$B" "$inputs" >"$WORK/stage.log"
mkdir -p "$B/bin"
install -m 0755 "$HERE/launcher/python3" "$HERE/launcher/gmchain" "$B/bin/"
# OpenSSL 3 off the search path (launcher rule L2): what links it finds it by RUNPATH.
for obj in $(find "$B/lib" "$B/runtime/lib" "$B/runtime/ssl3" -name '*.so*' -type f | sort); do
    if patchelf --print-needed "$obj" 2>/dev/null | grep -qE '^lib(ssl|crypto)\.so\.3$'; then
        rel="$(realpath --relative-to="$(dirname "$obj")" "$B/runtime/ssl3")"
        patchelf --set-rpath "\$ORIGIN/$rel" "$obj"
        echo "runpath $obj \$ORIGIN/$rel" >>"$WORK/stage.log"
    fi
done

# Byte code (rule B6): compiled natively when the build machine's /usr/bin/python3.11 is the same
# CPython release as the bundle's (byte code does not depend on the CPU), else under emulation;
# file names inside are bundle-relative (-s), so the .pyc do not depend on the work folder.
root_version="$(chroot "$ROOTFS" /usr/bin/python3.11 -c 'import platform; print(platform.python_version())')"
host_version="$(/usr/bin/python3.11 -c 'import platform; print(platform.python_version())' 2>/dev/null || true)"
if [ "$root_version" = "$host_version" ]; then
    log "compiling byte code natively (CPython $host_version on both sides)"
    /usr/bin/python3.11 -I -m compileall -q -j 2 --invalidation-mode checked-hash -s "$B" "$B/lib" >/dev/null
    log "cross-checking a sample against the bundle's own interpreter (emulated)"
    sample="lib/python3.11/os.py lib/python3.11/asyncio/base_events.py lib/python3/dist-packages/gmchain/ledger/wire.py lib/python3/dist-packages/aiohttp/web_protocol.py"
    chroot "$ROOTFS" "/build/$NAME/bin/python3" -c '
import importlib.util, py_compile, sys
root = sys.argv[1]
for rel in sys.argv[2:]:
    src = f"{root}/{rel}"
    out = py_compile.compile(src, cfile="/tmp/check.pyc", dfile=rel, doraise=True,
                             invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    mine = open(out, "rb").read()
    theirs = open(importlib.util.cache_from_source(src), "rb").read()
    assert mine == theirs, f"byte code of {rel} differs between native and aarch64 compile"
print("byte code identical on", len(sys.argv) - 2, "files")
' "/build/$NAME" $sample
else
    log "compiling byte code with the bundle's interpreter (emulated; host has ${host_version:-no python3.11})"
    chroot "$ROOTFS" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        "/build/$NAME/bin/python3" -m compileall -q -j 2 --invalidation-mode checked-hash \
        -s "/build/$NAME" "/build/$NAME/lib" >/dev/null
fi
log "gmchain --version with the bundle (emulated)"
chroot "$ROOTFS" "/build/$NAME/bin/gmchain" --version

log "manifest, times, tar"
"$PY" - "$B" "$SOURCE_DATE_EPOCH" "$used" "$inputs" "$(git -C "$REPO" rev-parse HEAD)" <<'EOF'
import hashlib, json, os, sys
from pathlib import Path
from gmchain.crypto_sm import sm3_hash
root, epoch, used, inputs, commit = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4]), sys.argv[5]
import gmchain
info = {
    "name": root.name, "version": gmchain.__version__, "commit": commit,
    "source_date_epoch": epoch, "debian_suite": "bookworm",
    "debian_packages": dict(line.split(" ", 1) for line in Path(used).read_text().split("\n") if line),
    "inputs_sha256": {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                      for p in sorted(inputs.iterdir()) if not p.name.startswith("gmchain-")},
    "libcrypto_policy": "host first (GMCHAIN_LIBCRYPTO, else the host's libcrypto.so.1.1 or .so.3); "
                        "the bundled OpenSSL 3 only with GMCHAIN_BUNDLED_LIBCRYPTO=1",
}
(root / "BUILDINFO.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
lines = []
for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
    rel = path.relative_to(root).as_posix()
    if rel != "MANIFEST.sm3":
        lines.append(f"{sm3_hash(path.read_bytes()).hex()}  {rel}")
(root / "MANIFEST.sm3").write_text("\n".join(lines) + "\n")
for path in [root, *root.rglob("*")]:
    os.utime(path, (epoch, epoch), follow_symlinks=False)
EOF
tar -C "$ROOTFS/build" --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 \
    --numeric-owner --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -cf - "$NAME" | gzip -n -9 >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
(cd "$(dirname "$OUT")" && sha256sum "$(basename "$OUT")" | tee "$(basename "$OUT").sha256")
log "built $OUT ($(du -h "$OUT" | cut -f1))"

#!/usr/bin/env bash
# build.sh: the reproducible aarch64 bundle dist/gmchain-<version>-linux-aarch64.tar.gz
# (docs/deploy-arm64.md), built in a Debian bookworm arm64 root under qemu-user-static.
#
# Rules:
# B1. Inputs are pinned: the Debian packages of the build root (debian-pins.txt: a different
#     version on the mirror stops the build unless GMCHAIN_ARM64_ALLOW_DRIFT=1, and the versions
#     used are recorded either way), the aarch64 wheels and the plyvel sdist (requirements-*.txt,
#     pip --require-hashes), and gmchain itself (this checkout, built as a wheel).
# B2. SOURCE_DATE_EPOCH (default: the last commit's time) fixes every timestamp: wheel zips,
#     .pyc (checked-hash, no time inside), file times and the tar (sorted, owner 0, gzip -n).
# B3. The bundle carries its manifest: MANIFEST.sm3 (SM3 and path of every other file, sorted)
#     and BUILDINFO.json (version, commit, SOURCE_DATE_EPOCH, Debian versions, wheel hashes).
# B4. Work files live in GMCHAIN_ARM64_WORK (default ~/.cache/gmchain/arm64), never in git; the
#     build root is made once and reused (delete it to start over).
# B5. Needs root (debootstrap, chroot), debootstrap, qemu-user-static with binfmt_misc, patchelf,
#     curl, and this checkout's .venv (make install). Nothing is emulated that need not be: the
#     downloads and the manifest run natively; compiling plyvel, resolving libraries and
#     compiling byte code run under emulation.
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
    rm -rf "$ROOTFS"
    debootstrap --arch=arm64 --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOTFS" "$MIRROR" \
        >"$WORK/debootstrap-build.log" 2>&1 || { tail -20 "$WORK/debootstrap-build.log"; exit 1; }
    touch "$ROOTFS/.gmchain-rootfs-ok"
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

log "fetching the pinned wheels and sdist (hash-checked) and building gmchain's wheel"
inputs="$WORK/inputs"
rm -rf "$inputs"
mkdir -p "$inputs"
"$PY" -m pip download -q --disable-pip-version-check --no-deps --require-hashes \
    --only-binary=:all: --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 \
    --platform manylinux_2_17_aarch64 --python-version 3.11 --implementation cp \
    -r "$HERE/requirements-aarch64.txt" -d "$inputs" 2> >(grep -v '^WARNING: Location' >&2)
"$PY" -m pip download -q --disable-pip-version-check --no-deps --require-hashes \
    --no-binary=:all: -r "$HERE/requirements-sdist.txt" -d "$inputs" \
    2> >(grep -v '^WARNING: Location' >&2)
src="$WORK/gmchain-src"
rm -rf "$src"
mkdir -p "$src"
git -C "$REPO" archive --format=tar HEAD | tar -C "$src" -xf -
"$PY" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation \
    -w "$inputs" "$src" 2> >(grep -v '^WARNING: Location' >&2)

log "assembling in the build root (emulated: plyvel compile, library closure)"
rm -rf "$ROOTFS/build"
mkdir -p "$ROOTFS/build"
cp -a "$inputs" "$ROOTFS/build/inputs"
cp "$HERE/stage.py" "$ROOTFS/build/stage.py"
chroot "$ROOTFS" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" /usr/bin/python3.11 /build/stage.py "/build/$NAME" \
    >"$WORK/stage.log"
B="$ROOTFS/build/$NAME"
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
log "compiling byte code with the bundle's interpreter (emulated)"
chroot "$ROOTFS" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" \
    "/build/$NAME/bin/python3" -m compileall -q -j 2 --invalidation-mode checked-hash \
    "/build/$NAME/lib" >/dev/null
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
sha256sum "$OUT" | tee "$OUT.sha256"
log "built $OUT ($(du -h "$OUT" | cut -f1))"

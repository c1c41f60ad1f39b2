#!/usr/bin/env bash
# test.sh [TARBALL]: run the aarch64 bundle on a Kylin-V10-like arm64 root under qemu-user and
# check it (docs/deploy-arm64.md "Testing under emulation"). Exit 0 only if every check passed.
#
# Rules:
# T1. The root is Debian bullseye arm64, the oldest suite deb.debian.org still serves: glibc
#     2.31, OpenSSL 1.1.1w as libssl1.1, python3 3.9 (Kylin V10: 2.28, 1.1.1f, 3.7; all older
#     than the bundle's). Made to look like an RPM system where it matters to the bundle:
#     libcrypto.so.1.1 and libssl.so.1.1 moved to /usr/lib64 (ld.so.conf.d entry, ldconfig),
#     and uname reports a Kylin kernel (QEMU_UNAME=4.19.90-...ky10.aarch64).
# T2. Nothing of the build root or of the x86-64 checkout is visible: the bundle is unpacked in
#     /opt/gmchain, the tests (tests/, docs/ and the files they read, no gmchain/ folder) in
#     /opt/gmchain-tests, the tests' own aarch64 wheels (requirements-test-aarch64.txt,
#     hash-checked) unzipped in /opt/gmchain-testdeps and reached through GMCHAIN_PYTHONPATH.
# T3. The checks are checks.sh, run inside the root exactly as on a real server (its rules C1-C5):
#     `gmchain --version`; SM2 on the root's /usr/lib64/libcrypto.so.1.1; the core test subset
#     (crypto vectors incl. tests/test_crypto_openssl11.py on that library, codec/wire, ledger
#     store, chain); `gmchain dev` + one `evidence submit` + `evidence flow --verify`; a short
#     `gmchain bench`. Log and bench report are copied to $WORK/results/.
# T4. The emulated CPU is a Cortex-A72 (ARMv8.0-A, QEMU_CPU; GMCHAIN_ARM64_CPU changes it), older
#     than Kunpeng 920's ARMv8.2-A: an instruction the Kunpeng lacks fails here (FISCO #3213's
#     "Illegal instruction"). One emulated job at a time: the steps run one after another.
# T5. dist/<bundle>-checks.tar.gz holds checks.sh, the tests and their wheels, for a real server.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd -P)"
REPO="$(cd "$HERE/../.." && pwd -P)"
WORK="${GMCHAIN_ARM64_WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/gmchain/arm64}"
MIRROR="${GMCHAIN_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PY="$REPO/.venv/bin/python"
VERSION="$("$PY" -c 'import gmchain; print(gmchain.__version__)')"
NAME="gmchain-$VERSION-linux-aarch64"
TARBALL="${1:-$REPO/dist/$NAME.tar.gz}"
KROOT="$WORK/kylin-rootfs"
RESULTS="$WORK/results"
KYLIN_UNAME="${GMCHAIN_ARM64_UNAME:-4.19.90-24.4.v2101.ky10.aarch64}"
RPC_PORT="${GMCHAIN_ARM64_RPC_PORT:-28545}"
QEMU_CPU="${GMCHAIN_ARM64_CPU:-cortex-a72}"
CHECKS="$REPO/dist/$NAME-checks.tar.gz"
BENCH_PORT="${GMCHAIN_ARM64_BENCH_PORT:-28645}"
log() { echo "[arm64 test] $*" >&2; }
# remove_root (rule M1 of common.sh: never rm -rf a root with file systems mounted in it)
. "$HERE/common.sh"

[ -f "$TARBALL" ] || { log "no bundle at $TARBALL: make arm64 first"; exit 1; }
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || { log "no binfmt_misc handler for aarch64"; exit 1; }

if [ ! -f "$KROOT/.gmchain-rootfs-ok" ]; then
    log "debootstrap bullseye arm64 into $KROOT (emulated second stage: 5-15 min)"
    if [ ! -f "$KROOT/.gmchain-foreign-ok" ]; then  # download and unpack: native
        remove_root "$KROOT"
        debootstrap --foreign --arch=arm64 --variant=minbase \
            --include=python3,libssl1.1,openssl,procps bullseye "$KROOT" "$MIRROR" \
            >"$WORK/debootstrap-kylin.log" 2>&1 || { tail -20 "$WORK/debootstrap-kylin.log"; exit 1; }
        touch "$KROOT/.gmchain-foreign-ok"
    fi
    chroot "$KROOT" /debootstrap/debootstrap --second-stage >>"$WORK/debootstrap-kylin.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap-kylin.log"; exit 1; }  # configure: emulated
    mkdir -p "$KROOT/usr/lib64"
    for lib in libcrypto.so.1.1 libssl.so.1.1; do
        mv "$KROOT/usr/lib/aarch64-linux-gnu/$lib" "$KROOT/usr/lib64/$lib"
    done
    echo /usr/lib64 >"$KROOT/etc/ld.so.conf.d/lib64.conf"
    chroot "$KROOT" /sbin/ldconfig
    touch "$KROOT/.gmchain-rootfs-ok"
fi

log "unpacking the bundle, the tests and their wheels"
rm -rf "$KROOT/opt/gmchain" "$KROOT/opt/$NAME" "$KROOT/opt/gmchain-tests" "$KROOT/opt/gmchain-testdeps"
tar -C "$KROOT/opt" -xzf "$TARBALL"
mv "$KROOT/opt/$NAME" "$KROOT/opt/gmchain"
mkdir -p "$KROOT/opt/gmchain-tests"
git -C "$REPO" archive --format=tar HEAD tests docs README.md pyproject.toml \
    | tar -C "$KROOT/opt/gmchain-tests" -xf -
testwheels="$WORK/testwheels"
mkdir -p "$testwheels"
"$PY" -m pip download -q --disable-pip-version-check --no-deps --require-hashes \
    --only-binary=:all: --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 \
    --platform manylinux_2_17_aarch64 --python-version 3.11 --implementation cp \
    -r "$HERE/requirements-test-aarch64.txt" -d "$testwheels" 2> >(grep -v '^WARNING: Location' >&2)
"$PY" - "$testwheels" "$KROOT/opt/gmchain-testdeps" "$HERE/requirements-test-aarch64.txt" <<'EOF'
import sys, zipfile
from pathlib import Path
src, dest, req = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
wanted = {line.split("==")[0].lower().replace("_", "-"): line.split("==")[1].split()[0]
          for line in req.read_text().splitlines() if line and not line.startswith("#")}
for wheel in sorted(src.glob("*.whl")):
    name, version = wheel.name.split("-")[:2]
    if wanted.get(name.lower().replace("_", "-")) == version:
        zipfile.ZipFile(wheel).extractall(dest)
EOF

in_root() {
    chroot "$KROOT" env -i PATH=/opt/gmchain/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 QEMU_UNAME="$KYLIN_UNAME" QEMU_CPU="$QEMU_CPU" "$@"
}

log "writing the checks tarball for a real server: $CHECKS"
cp "$HERE/checks.sh" "$KROOT/opt/gmchain-checks.sh"
tar -C "$KROOT/opt" --sort=name --owner=0 --group=0 --numeric-owner \
    --mtime="@${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct)}" \
    -czf "$CHECKS" gmchain-checks.sh gmchain-tests gmchain-testdeps

log "running checks.sh in the Kylin-like root (emulated, CPU model $QEMU_CPU: 30-60 min)"
mkdir -p "$RESULTS"
start=$(date +%s)
set +e
# Under emulation (and on a loaded build machine) the full subset takes hours: run
# test_crypto_openssl11 (whose child runs test_crypto_vectors and test_crypto_cross on the 1.1.1
# library) instead of those two again, one wire type's property test, the store and the chain's
# packing; the dev chain and the bench below exercise the node end to end.
in_root env GMCHAIN_EXPECT_LIBCRYPTO=/usr/lib64/libcrypto.so.1.1 \
    GMCHAIN_CHECKS_FILES="tests/test_crypto_openssl11.py tests/test_codec_fastpath.py \
tests/test_wire_registry.py tests/test_store.py tests/test_chain_packing.py" \
    GMCHAIN_CHECKS_SELECT="${GMCHAIN_ARM64_SELECT:-not million and not bench and (not mutations or BlockHeader)}" \
    GMCHAIN_BENCH_LABEL="emulated aarch64 (qemu-user)" GMCHAIN_RESULTS=/tmp \
    GMCHAIN_ARM64_RPC_PORT="$RPC_PORT" GMCHAIN_ARM64_BENCH_PORT="$BENCH_PORT" \
    /bin/sh /opt/gmchain-checks.sh 2>&1 | tee "$RESULTS/checks-emulated-aarch64.log"
status=${PIPESTATUS[0]}
set -e
for f in bench-single-aarch64.json bench-single-aarch64.md; do
    cp "$KROOT/tmp/$f" "$RESULTS/emulated-$f" 2>/dev/null || true
done
log "checks exited $status after $(($(date +%s) - start)) s; log and bench in $RESULTS"
exit "$status"

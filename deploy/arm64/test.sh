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
# T3. Checks, in order, each must pass: `gmchain --version`; SM2 uses the host's 1.1.1 library;
#     the core test subset (crypto vectors incl. tests/test_crypto_openssl11.py against the
#     root's /usr/lib64/libcrypto.so.1.1, codec/wire, ledger store, chain); a dev chain started
#     with `gmchain dev`, one `gmchain evidence submit` and `evidence flow --verify`; a short
#     `gmchain bench` single-node run (its JSON and Markdown copied to $WORK/results/).
# T4. One emulated job at a time: the steps run one after another.
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
BENCH_PORT="${GMCHAIN_ARM64_BENCH_PORT:-28645}"
log() { echo "[arm64 test] $*" >&2; }

[ -f "$TARBALL" ] || { log "no bundle at $TARBALL: make arm64 first"; exit 1; }
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || { log "no binfmt_misc handler for aarch64"; exit 1; }

if [ ! -f "$KROOT/.gmchain-rootfs-ok" ]; then
    log "debootstrap bullseye arm64 into $KROOT (emulated second stage: 5-15 min)"
    rm -rf "$KROOT"
    debootstrap --arch=arm64 --variant=minbase --include=python3,libssl1.1,openssl,procps \
        bullseye "$KROOT" "$MIRROR" >"$WORK/debootstrap-kylin.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap-kylin.log"; exit 1; }
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
        LANG=C.UTF-8 QEMU_UNAME="$KYLIN_UNAME" GMCHAIN_PYTHONPATH=/opt/gmchain-testdeps \
        GMCHAIN_HOME=/root/.gmchain "$@"
}

log "host: $(in_root uname -srm); glibc $(in_root ldd --version | head -1 | awk '{print $NF}');" \
    "$(in_root python3 --version); $(in_root openssl version)"
log "1. gmchain --version"
in_root gmchain --version
log "2. SM2 backend on the host's libcrypto"
in_root python3 -V >/dev/null
in_root /opt/gmchain/bin/python3 -c '
import os, platform, sys
from gmchain.crypto_sm.backend import active_backend
b = active_backend()
print(f"python {platform.python_version()} {platform.machine()} libc {platform.libc_ver()[1]}")
print(f"SM2 backend {b.name} on {b.version_text} from {os.environ.get(\"GMCHAIN_LIBCRYPTO\")}")
assert os.environ["GMCHAIN_LIBCRYPTO"] == "/usr/lib64/libcrypto.so.1.1"
assert b.version_text.startswith("OpenSSL 1.1.1"), b.version_text
'
log "3. core test subset (emulated: 20-40 min)"
start=$(date +%s)
in_root sh -c 'cd /opt/gmchain-tests && GMCHAIN_LIBCRYPTO11=/usr/lib64/libcrypto.so.1.1 \
    exec /opt/gmchain/bin/python3 -m pytest -q -p no:cacheprovider -o addopts= --timeout 3600 \
    -k "not million and not bench" \
    tests/test_crypto_openssl11.py tests/test_crypto_vectors.py tests/test_crypto_cross.py \
    tests/test_crypto_keys.py tests/test_codec_fastpath.py tests/test_wire_registry.py \
    tests/test_merkle.py tests/test_store.py tests/test_chain_packing.py tests/test_node_chain.py'
log "   test subset took $(($(date +%s) - start)) s"
log "4. dev chain, one evidence submit"
in_root sh -c "rm -rf /root/.gmchain; gmchain dev --rpc-port $RPC_PORT >/tmp/dev.log 2>&1 & echo \$! >/tmp/dev.pid"
devpid="$(cat "$KROOT/tmp/dev.pid")"
trap 'kill "$devpid" 2>/dev/null || true' EXIT
rpc="http://127.0.0.1:$RPC_PORT"
for _ in $(seq 1 120); do
    in_root gmchain status --rpc "$rpc" >/dev/null 2>&1 && break
    sleep 2
done
in_root gmchain status --rpc "$rpc"
in_root gmchain evidence submit --rpc "$rpc" --id arm64-001 --flow arm64 --step kyc \
    --data "submitted on emulated aarch64" --meta site=kunpeng-emulated
in_root gmchain evidence flow arm64 --rpc "$rpc" --verify
kill "$devpid"
trap - EXIT
log "5. short single-node bench (emulated: not representative of Kunpeng speed)"
mkdir -p "$RESULTS"
in_root gmchain bench --profile single --duration 20 --warmup 5 --rate 40 --keys 20 \
    --connections 4 --query-seconds 1 --micro-seconds 0.5 --base-port "$BENCH_PORT" \
    --json /tmp/bench-arm64.json
cp "$KROOT/tmp/bench-arm64.json" "$RESULTS/bench-single-emulated-aarch64.json"
cp "$KROOT/tmp/bench-arm64.md" "$RESULTS/bench-single-emulated-aarch64.md" 2>/dev/null || true
log "all checks passed; bench report in $RESULTS"

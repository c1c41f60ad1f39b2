#!/bin/sh
# checks.sh: the checks of the aarch64 bundle, run ON the target: inside the emulated Kylin-like
# root (test.sh runs it there) or on a real Kunpeng server under Kylin V10 (unpack the checks
# tarball that test.sh also writes, then run this; docs/deploy-arm64.md). POSIX sh: the target's
# own shell, no bash needed.
#
# Rules:
# C1. Paths come from the environment: GMCHAIN_BUNDLE (default /opt/gmchain), GMCHAIN_TESTS
#     (tests/ and docs/, default /opt/gmchain-tests), GMCHAIN_TESTDEPS (the tests' own aarch64
#     wheels unzipped, default /opt/gmchain-testdeps), GMCHAIN_EXPECT_LIBCRYPTO (the library SM2
#     must use; default: whatever the launcher picks, which must be OpenSSL 1.1.1 or 3).
# C2. Each step must pass; the first failure ends the run with its exit status.
# C3. Ports: GMCHAIN_ARM64_RPC_PORT (28545) for the dev chain, GMCHAIN_ARM64_BENCH_PORT (28645)
#     for the bench; the dev chain's home is a fresh temporary folder, removed at the end.
# C4. The test subset is GMCHAIN_CHECKS_FILES (default: the ten core files below) filtered by
#     GMCHAIN_CHECKS_SELECT (a pytest -k expression; default: not the SM4 million-round example
#     and not the crypto micro-benchmarks).
# C5. GMCHAIN_BENCH_LABEL names the machine in the bench output ("emulated aarch64 (qemu-user)"
#     under test.sh); the bench JSON and Markdown land in GMCHAIN_RESULTS (default /tmp).
set -eu

BUNDLE="${GMCHAIN_BUNDLE:-/opt/gmchain}"
TESTS="${GMCHAIN_TESTS:-/opt/gmchain-tests}"
TESTDEPS="${GMCHAIN_TESTDEPS:-/opt/gmchain-testdeps}"
RESULTS="${GMCHAIN_RESULTS:-/tmp}"
RPC_PORT="${GMCHAIN_ARM64_RPC_PORT:-28545}"
BENCH_PORT="${GMCHAIN_ARM64_BENCH_PORT:-28645}"
LABEL="${GMCHAIN_BENCH_LABEL:-aarch64}"
# The core subset; test.sh narrows it under emulation (GMCHAIN_CHECKS_FILES / _SELECT).
FILES="${GMCHAIN_CHECKS_FILES:-tests/test_crypto_openssl11.py tests/test_crypto_vectors.py \
tests/test_crypto_cross.py tests/test_crypto_keys.py tests/test_codec_fastpath.py \
tests/test_wire_registry.py tests/test_merkle.py tests/test_store.py tests/test_chain_packing.py \
tests/test_node_chain.py}"
SELECT="${GMCHAIN_CHECKS_SELECT:-not million and not bench}"
GM="$BUNDLE/bin/gmchain"
PY="$BUNDLE/bin/python3"
say() { echo "[checks] $*" >&2; }

say "machine: $(uname -srm); $(ldd --version 2>/dev/null | head -1); $(python3 --version 2>&1 || echo 'no python3');" \
    "$(openssl version 2>/dev/null || echo 'no openssl command')"
say "1. gmchain --version"
"$GM" --version

say "2. the SM2 backend's libcrypto"
GMCHAIN_EXPECT_LIBCRYPTO="${GMCHAIN_EXPECT_LIBCRYPTO:-}" "$PY" -c '
import os, platform
from gmchain.crypto_sm.backend import active_backend
b = active_backend()
lib = os.environ.get("GMCHAIN_LIBCRYPTO")
print(f"python {platform.python_version()} on {platform.machine()}, bundled glibc {platform.libc_ver()[1]}")
print(f"SM2 backend {b.name}: {b.version_text} from {lib}")
expect = os.environ["GMCHAIN_EXPECT_LIBCRYPTO"]
assert not expect or lib == expect, (lib, expect)
assert b.version_text.startswith(("OpenSSL 1.1.1", "OpenSSL 3")), b.version_text
'

say "3. core test subset"
start=$(date +%s)
(
    cd "$TESTS"
    # shellcheck disable=SC2086  # the file list is split on purpose
    GMCHAIN_PYTHONPATH="$TESTDEPS" GMCHAIN_LIBCRYPTO11="${GMCHAIN_EXPECT_LIBCRYPTO:-}" \
        "$PY" -m pytest -q -p no:cacheprovider -o addopts= --timeout 3600 -k "$SELECT" $FILES
)
say "   the test subset took $(($(date +%s) - start)) s"

say "4. a dev chain and one evidence record through the CLI"
home="$(mktemp -d /tmp/gmchain-checks.XXXXXX)"
GMCHAIN_HOME="$home" "$GM" dev --rpc-port "$RPC_PORT" >"$home/dev.log" 2>&1 &
devpid=$!
trap 'kill $devpid 2>/dev/null || true; rm -rf "$home"' EXIT
rpc="http://127.0.0.1:$RPC_PORT"
i=0
until "$GM" status --rpc "$rpc" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -gt 150 ] || ! kill -0 "$devpid" 2>/dev/null; then
        tail -20 "$home/dev.log" >&2
        say "the dev chain did not answer"
        exit 1
    fi
    sleep 2
done
"$GM" status --rpc "$rpc"
GMCHAIN_HOME="$home" "$GM" evidence submit --rpc "$rpc" --id arm64-001 --flow arm64 --step kyc \
    --data "submitted on $LABEL" --meta site=kunpeng
GMCHAIN_HOME="$home" "$GM" evidence flow arm64 --rpc "$rpc" --verify
kill "$devpid"
wait "$devpid" 2>/dev/null || true

say "5. a short single-node bench ($LABEL)"
# Emulated, a node takes ~75 s to answer; the bench's default wait is 30 s (bench/nodes.py).
GMCHAIN_BENCH_START_S="${GMCHAIN_BENCH_START_S:-300}" \
    "$GM" bench --profile single --duration 15 --warmup 3 --rate 40 --keys 20 --connections 4 \
        --query-seconds 1 --micro-seconds 0.5 --base-port "$BENCH_PORT" \
        --json "$RESULTS/bench-single-aarch64.json"
say "all checks passed (bench report: $RESULTS/bench-single-aarch64.json and .md)"

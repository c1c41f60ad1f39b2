#!/usr/bin/env bash
# fetch_libcrypto11.sh [ARCH]: put OpenSSL 1.1.1's libcrypto.so.1.1 (Debian bullseye's libssl1.1,
# pinned version and SHA-256) in a cache folder outside git and print its path.
#
# Rules:
# R1. One pinned input per architecture (amd64, arm64): the .deb's file name and SHA-256 below, as
#     listed in bullseye's Packages index. A download whose hash differs is refused, not used.
# R2. The cache is ${GMCHAIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gmchain}/openssl11/<arch>/;
#     a library already there (checked against the .deb's recorded hash) is reused, offline.
# R3. Extraction needs no root and no dpkg: `ar` or Python's own ar reader, then tar.
# R4. Exit status 0 and the library's path on stdout, or 1 and the reason on stderr (the test
#     that calls this skips with that reason).
set -euo pipefail

ARCH="${1:-$(uname -m)}"
case "$ARCH" in
    x86_64|amd64) ARCH=amd64; SHA256=aadf8b4b197335645b230c2839b4517aa444fd2e8f434e5438c48a18857988f7 ;;
    aarch64|arm64) ARCH=arm64; SHA256=fe7a7d313c87e46e62e614a07137e4a476a79fc9e5aab7b23e8235211280fee3 ;;
    *) echo "fetch_libcrypto11: unsupported architecture $ARCH" >&2; exit 1 ;;
esac
VERSION="1.1.1w-0+deb11u1"
DEB="libssl1.1_${VERSION}_${ARCH}.deb"
MIRROR="${GMCHAIN_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
URL="$MIRROR/pool/main/o/openssl/$DEB"
CACHE="${GMCHAIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gmchain}/openssl11/$ARCH"
case "$ARCH" in
    amd64) LIBDIR=usr/lib/x86_64-linux-gnu ;;
    arm64) LIBDIR=usr/lib/aarch64-linux-gnu ;;
esac
LIB="$CACHE/root/$LIBDIR/libcrypto.so.1.1"

if [ -f "$LIB" ] && [ "$(cat "$CACHE/deb.sha256" 2>/dev/null)" = "$SHA256" ]; then
    echo "$LIB"
    exit 0
fi

mkdir -p "$CACHE"
tmp="$(mktemp -d "$CACHE/.fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
if ! curl -fsSL --retry 2 -m 120 -o "$tmp/$DEB" "$URL" 2>"$tmp/curl.err"; then
    echo "fetch_libcrypto11: cannot download $URL: $(tr '\n' ' ' <"$tmp/curl.err")" >&2
    exit 1
fi
got="$(sha256sum "$tmp/$DEB" | cut -d' ' -f1)"
if [ "$got" != "$SHA256" ]; then
    echo "fetch_libcrypto11: $DEB has SHA-256 $got, pinned $SHA256: refused" >&2
    exit 1
fi
(
    cd "$tmp"
    if command -v ar >/dev/null; then
        ar x "$DEB"
    else
        python3 - "$DEB" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"!<arch>\n", "not an ar archive"
pos = 8
while pos < len(data):
    name = data[pos:pos + 16].decode().strip().rstrip("/")
    size = int(data[pos + 48:pos + 58].decode().strip())
    open(name, "wb").write(data[pos + 60:pos + 60 + size])
    pos += 60 + size + (size & 1)
PY
    fi
    mkdir root
    tar -C root -xf data.tar.*
)
rm -rf "$CACHE/root"
mv "$tmp/root" "$CACHE/root"
echo "$SHA256" >"$CACHE/deb.sha256"
echo "$LIB"

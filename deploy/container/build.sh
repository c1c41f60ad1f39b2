#!/bin/sh
# Build the gmchain container image from this checkout (docs/ops.md, "Container image").
#
#   deploy/container/build.sh [--tag NAME] [--base IMAGE | --debootstrap DIR]
#
# Needs dist/wheelhouse (`make wheelhouse`; `make image` runs both). ENGINE: podman (default
# when installed) or docker. --base IMAGE: the bookworm image to build on (default
# docker.io/library/debian:bookworm-slim). --debootstrap DIR: where no registry of images can
# be reached, make the base from Debian's packages instead: `debootstrap --variant=minbase
# bookworm DIR` (once; DIR is reused), imported as localhost/debian:bookworm-minbase.
# RUN steps use the host's network (apt-get reaches the Debian mirror; pip installs offline).
set -eu
cd "$(dirname "$0")/../.."
ENGINE=${ENGINE:-$(command -v podman >/dev/null 2>&1 && echo podman || echo docker)}
VERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' gmchain/__init__.py)
TAG="localhost/gmchain:$VERSION"
BASE=docker.io/library/debian:bookworm-slim
ROOTFS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --tag) TAG=$2; shift 2 ;;
        --base) BASE=$2; shift 2 ;;
        --debootstrap) ROOTFS=$2; shift 2 ;;
        *) echo "build.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
ls dist/gmchain-"$VERSION"-py3-none-any.whl dist/wheelhouse/*.whl >/dev/null || {
    echo "build.sh: no dist/gmchain-$VERSION-*.whl or dist/wheelhouse: run make wheelhouse" >&2
    exit 1
}
# the commit `make wheel` wrote into the wheel (what `gmchain --version` in the image shows)
REVISION=$(python3 -c 'import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).read("gmchain/COMMIT").decode().strip())' \
    "dist/gmchain-$VERSION-py3-none-any.whl" 2>/dev/null || echo unknown)
# podman: the docker image format, which keeps HEALTHCHECK (OCI images have no such field)
FORMAT=""
case "$ENGINE" in *podman*) FORMAT="--format docker" ;; esac
if [ -n "$ROOTFS" ]; then
    if [ ! -x "$ROOTFS/usr/bin/apt-get" ]; then
        debootstrap --variant=minbase bookworm "$ROOTFS" http://deb.debian.org/debian
    fi
    BASE=localhost/debian:bookworm-minbase
    tar -C "$ROOTFS" -c . | "$ENGINE" import - "$BASE"
fi
# shellcheck disable=SC2086
"$ENGINE" build $FORMAT --network host --build-arg "BASE=$BASE" --build-arg "VERSION=$VERSION" \
    --label "org.opencontainers.image.version=$VERSION" \
    --label "org.opencontainers.image.revision=$REVISION" \
    -f deploy/container/Containerfile -t "$TAG" .
echo "$TAG"

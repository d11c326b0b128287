#!/usr/bin/env bash
# Builds the image fabric-master:<version> and fabric-master:latest on this machine, without a
# registry or a base image: a static binary (glibc with crt-static, OpenSSL linked statically)
# in an image built `FROM scratch` (Dockerfile beside this script; the legacy builder, which
# needs no BuildKit). It runs as the non-root user 10001, keeps its state in the volume /data,
# and checks itself with `fabric-master probe` (GET /healthz).
#
#   bash docker/build.sh            prints the image size at the end
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/fabric-master-target}
TARGET=x86_64-unknown-linux-gnu
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
command -v docker >/dev/null || { echo "docker: not installed" >&2; exit 1; }

# --target keeps build scripts and proc-macros dynamic; only the binary is static. getrandom
# uses the getrandom(2) syscall, not /dev/urandom, so the image needs no /dev files.
RUSTFLAGS='-C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"' \
  OPENSSL_STATIC=1 cargo build --release --locked --target "$TARGET" --bin fabric-master
BIN=$CARGO_TARGET_DIR/$TARGET/release/fabric-master
# A static(-pie) binary names no shared library ("statically linked" / "not a dynamic executable").
if ldd "$BIN" 2>&1 | grep -q "=>"; then
  echo "docker/build.sh: $BIN is not static:" >&2
  ldd "$BIN" >&2
  exit 1
fi

CONTEXT=$(mktemp -d)
trap 'rm -rf "$CONTEXT"' EXIT
cp "$BIN" "$CONTEXT/fabric-master"
strip "$CONTEXT/fabric-master"
# The image has no shell to run useradd: its user and group are plain files.
mkdir -p "$CONTEXT/etc" "$CONTEXT/data"
echo "fabric:x:10001:10001:fabric-master:/data:/fabric-master" >"$CONTEXT/etc/passwd"
echo "fabric:x:10001:" >"$CONTEXT/etc/group"
cp docker/Dockerfile "$CONTEXT/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t "fabric-master:$VERSION" -t fabric-master:latest \
  --label "org.opencontainers.image.version=$VERSION" \
  --label "org.opencontainers.image.revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  "$CONTEXT" >/dev/null
docker run --rm --entrypoint /fabric-master "fabric-master:$VERSION" version
SIZE=$(docker image inspect "fabric-master:$VERSION" --format '{{.Size}}')
echo "built fabric-master:$VERSION and fabric-master:latest ($((SIZE / 1024 / 1024)) MiB, $SIZE bytes)"

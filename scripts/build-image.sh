#!/usr/bin/env bash
# Builds the aiops container image (deploy/Containerfile) with podman:
#
#   scripts/build-image.sh [IMAGE]      # default aiops:dev
#
# It fills a build context of its own (CONTEXT, default bin/image-context)
# with a static binary (CGO_ENABLED=0: nothing to load from a libc that
# scratch does not have), the host's CA certificates and the default
# configuration with the shipped rules, then builds from scratch, so no
# base image is pulled. VERSION is stamped into the binary. With
# SIM_IMAGE set it also builds the workflow simulator's image
# (deploy/Containerfile.workflow-sim) for the compose stack.
set -euo pipefail
cd "$(dirname "$0")/.."

image=${1:-aiops:dev}
ctx=${CONTEXT:-bin/image-context}
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
certs=${CA_CERTIFICATES:-/etc/ssl/certs/ca-certificates.crt}

command -v podman >/dev/null 2>&1 || { echo "podman is missing: run scripts/install-test-deps.sh or apt-get install podman" >&2; exit 1; }
[ -r "$certs" ] || { echo "no CA certificates at $certs (set CA_CERTIFICATES)" >&2; exit 1; }

# rootfs/ is the image's tree as it is to be, modes included (COPY keeps
# the modes of what it copies, not of the directory it copies into);
# state/aiops becomes /var/lib/aiops, owned by the image's user.
rm -rf "$ctx"
root="$ctx/rootfs"
mkdir -p "$root/etc/ssl/certs" "$root/etc/aiops" "$root/usr/bin" "$root/var/lib" "$root/tmp" "$ctx/state/aiops"
chmod 1777 "$root/tmp"
chmod 0700 "$ctx/state/aiops"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$root/usr/bin/aiops" ./cmd/aiops
cp deploy/container/passwd deploy/container/group "$root/etc/"
cp "$certs" "$root/etc/ssl/certs/ca-certificates.crt"
cp deploy/container/aiops.yaml "$root/etc/aiops/aiops.yaml"
cp -r deploy/rules deploy/alertmanager "$root/etc/aiops/"
rm -rf "$root/etc/aiops/rules/tests"
chmod -R a+rX,go-w "$root/etc" "$root/usr"

podman build --format docker --label "org.opencontainers.image.version=$version" \
	-f deploy/Containerfile -t "$image" "$ctx"

if [ -n "${SIM_IMAGE:-}" ]; then
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$ctx/workflow-sim" ./cmd/workflow-sim
	cp deploy/container/passwd deploy/container/group "$ctx/"
	podman build --format docker -f deploy/Containerfile.workflow-sim -t "$SIM_IMAGE" "$ctx"
fi

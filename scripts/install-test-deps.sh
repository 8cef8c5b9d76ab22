#!/usr/bin/env bash
# Installs what `make test` needs and a fresh machine lacks: Debian's
# clickhouse-server (the tests start private servers themselves; nothing is
# left running). Does nothing when it is already installed.
#
#   install-test-deps.sh podman   installs Debian's podman instead, for
#                                 `make image` and `make image-test`
set -euo pipefail

if [ "${1:-}" = podman ]; then
	command -v podman >/dev/null 2>&1 && exit 0
	sudo=""
	[ "$(id -u)" -ne 0 ] && sudo="sudo"
	echo "Installing Debian's podman for the container image..." >&2
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -q
	$sudo apt-get install -y -q --no-install-recommends podman
	exit 0
fi

if command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/sbin/clickhouse-server ] || [ -x /usr/bin/clickhouse-server ]; then
	exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		sudo="sudo"
	else
		echo "clickhouse-server is missing and installing it needs root: run as root or install sudo" >&2
		exit 1
	fi
fi

echo "Installing Debian's clickhouse-server and clickhouse-client for the test suite..." >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends clickhouse-server clickhouse-client

#!/usr/bin/env bash
# Installs what `make test` needs and a fresh machine lacks: Debian's
# clickhouse-server (the tests start private servers themselves; nothing is
# left running), and checks for Node.js and npm, which build and test the
# Grafana plugin's frontend. Does nothing when they are already installed.
#
#   install-test-deps.sh podman   installs Debian's podman instead, for
#                                 `make image` and `make image-test`
#   install-test-deps.sh node     only Node.js and npm, for `make plugin`
set -euo pipefail

# The plugin's frontend tools (eslint 10, webpack-cli 7, jest 30) need
# Node.js 20.19 or later; Debian's own nodejs is older on bookworm, so a
# machine without Node.js gets Debian's and is refused if that is too old.
need_node() {
	if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
		local sudo=""
		[ "$(id -u)" -ne 0 ] && sudo="sudo"
		echo "Installing Debian's nodejs and npm for the plugin's frontend..." >&2
		export DEBIAN_FRONTEND=noninteractive
		$sudo apt-get update -q
		$sudo apt-get install -y -q --no-install-recommends nodejs npm
	fi
	if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; then
		echo "Node.js $(node --version) is too old for the plugin's frontend: it needs 20.19 or later" >&2
		exit 1
	fi
}

if [ "${1:-}" = node ]; then
	need_node
	exit 0
fi

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

need_node

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

#!/usr/bin/env bash
# Installs the tools the test suite needs beyond Python: Prometheus's `promtool` (Debian
# package `prometheus`). Run by `make test` when promtool is missing. Needs root and
# apt-get; otherwise it says what to install and exits non-zero. The package's daemon is
# not started (policy-rc.d refuses service starts during the install).
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "promtool is missing: install Debian's 'prometheus' package (or put promtool on PATH)" >&2
    exit 1
fi

created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v promtool >/dev/null
echo "installed $(promtool --version 2>&1 | head -1)"

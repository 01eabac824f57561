#!/usr/bin/env bash
# Installs the tools the test suite needs beyond Python: Prometheus's `promtool` (Debian
# package `prometheus`) and `kcat` (librdkafka's command-line client, the Kafka client
# that is not ours in the integration tests). Run by `make test` when one is missing. Needs root and
# apt-get; otherwise it says what to install and exits non-zero. The package's daemon is
# not started (policy-rc.d refuses service starts during the install).
set -euo pipefail

packages=()
command -v promtool >/dev/null 2>&1 || packages+=(prometheus)
command -v kcat >/dev/null 2>&1 || packages+=(kcat)
if [ ${#packages[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "missing test tools: install Debian's ${packages[*]} package(s) (promtool, kcat on PATH)" >&2
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
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
command -v promtool >/dev/null
command -v kcat >/dev/null
echo "installed ${packages[*]}: $(promtool --version 2>&1 | head -1); $(kcat -V 2>&1 | head -1)"

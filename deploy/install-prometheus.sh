#!/usr/bin/env bash
# Installs prometheus and promtool from Debian's `prometheus` package when they are missing:
# the alert-rule unit tests and the live Prometheus test need them (`make install-test` runs
# this). Without root or apt-get it installs nothing, says why, and exits 0: those tests then
# skip with the same reason, and `make test` still runs everything else.
set -uo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-prometheus.sh: prometheus/promtool missing and not installable here (needs root" \
         "and apt-get): the Prometheus tests will skip" >&2
    exit 0
fi

# The package's postinst would start a system Prometheus on :9090; tests start their own on a
# free port, so keep the service from starting (policy-rc.d 101 = "action forbidden"), unless
# the machine already has a policy of its own.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
fi
export DEBIAN_FRONTEND=noninteractive
echo "install-prometheus.sh: apt-get install prometheus (Debian package, for promtool and the" \
     "live Prometheus test)" >&2
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }; then
    echo "install-prometheus.sh: installing Debian's prometheus package failed: the Prometheus" \
         "tests will skip" >&2
fi
if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
exit 0

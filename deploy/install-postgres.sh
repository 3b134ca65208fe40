#!/usr/bin/env bash
# Installs the PostgreSQL server from Debian's `postgresql` package when it is missing: the
# store, relay, lease and reconcile suites run against a real server too (tests/postgres.py
# starts a throwaway one per session; `make install-test` runs this). Without root or apt-get
# it installs nothing and says why (exit 0); `make test` then fails those suites loudly
# (HANDWERK_REQUIRE_POSTGRES=1), a plain `pytest` skips them with the reason. A failed
# install exits non-zero.
set -uo pipefail

if compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null \
        || { command -v postgres >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; }; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-postgres.sh: PostgreSQL server binaries missing and not installable here" \
         "(needs root and apt-get): install Debian's postgresql package" >&2
    exit 0
fi

# The package's postinst would start a system cluster on :5432; tests start their own on a
# free port, so keep the service from starting (policy-rc.d 101 = "action forbidden"), unless
# the machine already has a policy of its own.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
fi
# C.UTF-8 always exists: a caller's locale that this machine lacks (Debian 12 generates none
# by default) would make the package's scripts warn or its cluster setup fail.
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 LANG=C.UTF-8
unset LANGUAGE
echo "install-postgres.sh: apt-get update && apt-get install postgresql (Debian package, for" \
     "the PostgreSQL test suites)" >&2
status=0
# update first: a fresh machine (or image) has no package lists, so install alone finds nothing
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }; then
    echo "install-postgres.sh: installing Debian's postgresql package failed: the PostgreSQL" \
         "suites would fail under make test" >&2
    status=1
fi
if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
if [ "$status" = 0 ] && ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
    echo "install-postgres.sh: the postgresql package installed no server binaries" >&2
    status=1
fi
exit "$status"

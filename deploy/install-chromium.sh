#!/usr/bin/env bash
# Installs Debian's `chromium` package when it is missing: the browser test of the search page
# (tests/integration/test_search_page_browser.py) drives it headless through Playwright, which
# uses this system browser and never downloads one (`make install-test` runs this). Without
# root or apt-get it installs nothing and says why (exit 0); `make test` then fails that test
# loudly (HANDWERK_REQUIRE_BROWSER=1), a plain `pytest` skips it with the reason. A failed
# install exits non-zero.
set -uo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium.sh: chromium missing and not installable here (needs root and" \
         "apt-get): install Debian's chromium package" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 LANG=C.UTF-8
unset LANGUAGE
echo "install-chromium.sh: apt-get update && apt-get install chromium (Debian package, for the" \
     "browser test of the search page)" >&2
# update first: a fresh machine (or image) has no package lists, so install alone finds nothing
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; then
    echo "install-chromium.sh: installing Debian's chromium package failed: the browser test" \
         "would fail under make test" >&2
    exit 1
fi
if ! command -v chromium >/dev/null 2>&1; then
    echo "install-chromium.sh: the chromium package installed no chromium command" >&2
    exit 1
fi

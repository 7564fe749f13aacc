#!/bin/sh
# Install what the web console's tests and benchmark need on Debian 12: Chromium, which
# they drive headless over the Chrome DevTools Protocol (tests/e2e/browser.py).
# Idempotent: when it is in place this only checks and returns. It never skips: a
# machine that cannot install it fails here, before the tests.
set -eu

PACKAGES="chromium"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "setup-console: missing Debian packages:$missing; run this script as root (or: sudo apt-get install$missing)" >&2
    exit 1
fi
echo "setup-console: installing$missing" >&2
apt() { DEBIAN_FRONTEND=noninteractive apt-get -q -y --no-install-recommends -o DPkg::Lock::Timeout=300 "$@"; }
if ! apt install $missing >/tmp/sendo-setup-console.log 2>&1; then
    apt update >>/tmp/sendo-setup-console.log 2>&1 || true
    if ! apt install $missing >>/tmp/sendo-setup-console.log 2>&1; then
        echo "setup-console: apt-get install$missing failed; see /tmp/sendo-setup-console.log" >&2
        tail -n 20 /tmp/sendo-setup-console.log >&2
        exit 1
    fi
fi

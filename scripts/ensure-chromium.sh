#!/bin/sh
# The dashboard's end-to-end tests drive Debian's Chromium (Playwright's own browser download is
# not needed); install it if this machine has none.
set -e
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
    exit 0
fi
echo "chromium not found: installing it from the distribution's packages" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium

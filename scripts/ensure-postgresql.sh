#!/bin/sh
# The store tests start their own throwaway PostgreSQL server (initdb + pg_ctl, tests/_postgres.py);
# install the server if this machine has none. As root, the tests run it as the `postgres` user
# that the package creates (PostgreSQL refuses to run as root).
set -e
if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    exit 0
fi
for bin in /usr/lib/postgresql/*/bin; do
    if [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ]; then
        exit 0
    fi
done
echo "PostgreSQL (initdb, pg_ctl) not found: installing it from the distribution's packages" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql

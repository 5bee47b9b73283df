#!/bin/sh
# Tests start their own Mosquitto broker, and the site benchmark records telemetry with
# mosquitto_sub: install them if this machine has none.
set -e
if { command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; } \
    && command -v mosquitto_sub >/dev/null 2>&1; then
    exit 0
fi
echo "mosquitto or mosquitto_sub not found: installing them from the distribution's packages" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mosquitto mosquitto-clients

#!/bin/sh
# The batch-record tests read the PDF back with pdftotext (poppler-utils); install it if missing.
set -e
if command -v pdftotext >/dev/null 2>&1; then
    exit 0
fi
echo "pdftotext not found: installing poppler-utils from the distribution's packages" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq poppler-utils

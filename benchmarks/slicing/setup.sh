#!/bin/sh
# Installs what the slicing benchmark compares against and needs to build its meshes:
# PrusaSlicer and CuraEngine from Debian, and Cura's printer definitions (extracted from
# Debian's cura package without installing the GUI), GNU time.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=${SLICING_BENCH_DIR:-/tmp/labdevices-bench-slicing}
mkdir -p "$work"
if ! command -v prusa-slicer >/dev/null || ! command -v CuraEngine >/dev/null || [ ! -x /usr/bin/time ]; then
    apt-get update
    apt-get install -y prusa-slicer cura-engine time
fi
if [ ! -f "$work/cura/usr/share/cura/resources/definitions/fdmprinter.def.json" ]; then
    (cd "$work" && apt-get download cura && dpkg -x cura_*.deb cura && rm -f cura_*.deb)
fi

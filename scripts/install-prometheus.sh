#!/usr/bin/env bash
# Unpacks Debian's `prometheus` package (prometheus and promtool) into tools/prometheus, without
# installing it system-wide: `apt-get download`, then `dpkg-deb -x`. The package lists are
# refreshed (apt-get update, as root) only when apt does not know the package yet.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=tools/cache
mkdir -p "$cache"
if ! (cd "$cache" && apt-get download prometheus >/dev/null 2>&1); then
  apt-get update -qq
  (cd "$cache" && apt-get download prometheus)
fi
deb=$(ls -t "$cache"/prometheus_*.deb | head -n 1)
rm -rf tools/prometheus
dpkg-deb -x "$deb" tools/prometheus
mkdir -p tools/bin
ln -sf ../prometheus/usr/bin/prometheus tools/bin/prometheus
ln -sf ../prometheus/usr/bin/promtool tools/bin/promtool
tools/bin/promtool --version | head -n 1

#!/usr/bin/env bash
# Installs Debian's `chromium` for the browser tests (Playwright drives it through its
# executable_path; no browser is ever downloaded by a test tool). As root, through apt-get; the
# package lists are refreshed only when apt does not know the package yet.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
fi
/usr/bin/chromium --version

#!/usr/bin/env bash
# Debian's chromium for the Playwright browser tests (Playwright never downloads a browser).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then echo "chromium: $(/usr/bin/chromium --version 2>/dev/null)"; exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "Run as root to install chromium (apt-get install chromium)."; exit 1; fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core
/usr/bin/chromium --version

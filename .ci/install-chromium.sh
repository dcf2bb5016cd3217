#!/bin/sh
# Install Debian's Chromium for the UI's browser tests (tests/e2e/test_ui_browser.py drive
# it with Playwright; Playwright's own browser download cannot work here). Idempotent:
# does nothing when /usr/bin/chromium exists.
set -eu

if [ -x /usr/bin/chromium ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    chromium >/dev/null
/usr/bin/chromium --version

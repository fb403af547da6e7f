#!/usr/bin/env bash
# System packages the tests use beyond the virtual environment. Each step is best-effort:
# where it cannot run (no root, no package index), the tests that need it skip with a reason.
set -u
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Chromium for the browser tests (apt-get)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
    >/tmp/aerocolor-apt.log 2>&1 || echo "could not install Chromium (see /tmp/aerocolor-apt.log); browser tests will skip"
else
  echo "not root or no apt-get: Chromium not installed; browser tests will skip"
fi
exit 0

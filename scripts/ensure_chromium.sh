#!/usr/bin/env bash
# The browser tests drive Debian's Chromium (browser downloads are not used). Install it
# when it is missing and this user may; otherwise the browser tests skip and say why.
set -u
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the browser tests…"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) \
    >/dev/null 2>&1 || echo "Could not install chromium; the browser tests will be skipped."
else
  echo "chromium is not installed (apt-get install chromium); the browser tests will be skipped."
fi
exit 0

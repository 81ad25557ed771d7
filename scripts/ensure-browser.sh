#!/usr/bin/env bash
# Make sure Debian's chromium is there for the browser tests; install it when we can.
# Never fails: without a browser the browser tests skip and say how to enable them.
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the browser tests…"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/tmp/medui-chromium.log 2>&1 \
    || echo "Could not install chromium (see /tmp/medui-chromium.log); browser tests will be skipped."
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && command -v apt-get >/dev/null 2>&1; then
  (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/tmp/medui-chromium.log 2>&1 \
    || echo "Could not install chromium; browser tests will be skipped."
else
  echo "chromium not found and cannot be installed here; browser tests will be skipped (install it: apt-get install chromium)."
fi
exit 0

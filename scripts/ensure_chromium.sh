#!/usr/bin/env bash
# Installs Debian's chromium for the alert console's browser tests when it is missing.
# Best effort: without root (or password-less sudo) or apt-get, or if the install fails, it says
# so in one line and the browser tests skip with that reason; the rest of the suite still runs.
set -uo pipefail
# CHROMIUM only for the script's own tests: the browser tests look for /usr/bin/chromium.
chromium="${CHROMIUM:-/usr/bin/chromium}"

if [[ -x "$chromium" ]]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: $chromium is missing and apt-get is not here: the browser tests will be skipped." >&2
  exit 0
fi
if [[ "$(id -u)" -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "note: $chromium is missing; run 'sudo apt-get install chromium' or the browser tests will be skipped." >&2
  exit 0
fi

echo "Installing Debian's chromium for the browser tests (apt-get, once)..." >&2
# Through env: sudo drops the caller's environment, DEBIAN_FRONTEND with it.
apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
log="$(mktemp)"
if "${apt[@]}" update -qq >"$log" 2>&1 \
  && "${apt[@]}" install -y -qq --no-install-recommends chromium >>"$log" 2>&1 \
  && [[ -x "$chromium" ]]; then
  rm -f "$log"
else
  echo "note: installing chromium failed (apt-get's output: $log): the browser tests will be skipped." >&2
fi
exit 0

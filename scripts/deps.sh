#!/bin/bash
# Installs ringcast's build and test dependencies from Debian 12 (run as root). Idempotent and
# quick when everything is already there; `apt-get update` runs only when something is missing.
set -euo pipefail

pkgs=(
  meson ninja-build pkg-config gcc clang libclang-rt-14-dev clang-format
  liburing-dev libssl-dev libjsmn-dev libinih-dev libhiredis-dev
  python3 python3-websockets python3-pytest
  libwebsockets-dev redis-server chromium
  procps psmisc curl util-linux
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Node's `ws` for the client tests and the peer benchmark, pinned by package-lock.json.
for d in tests/clients bench/peers/node; do
  if [[ -f "$d/package.json" && ! -d "$d/node_modules" ]]; then
    (cd "$d" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done

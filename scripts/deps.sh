#!/bin/bash
# Installs ringcast's build and test dependencies from Debian 12 (run as root). Idempotent and
# quick when everything is already there; `apt-get update` runs only when something is missing.
#
#   scripts/deps.sh                  everything (build, tests, peers, browser)
#   scripts/deps.sh --check          exit 0 if everything is installed, else 1 and the list;
#                                    installs nothing, needs no root
#   scripts/deps.sh --build [...]    only what building and running the engine and the load
#                                    generator needs (bench/demo)
set -euo pipefail

check=0
build_only=0
for a in "$@"; do
  case $a in
    --check) check=1 ;;
    --build) build_only=1 ;;
    *) echo "usage: scripts/deps.sh [--check] [--build]" >&2; exit 2 ;;
  esac
done

build_pkgs=(meson ninja-build pkg-config gcc liburing-dev libssl-dev libjsmn-dev libinih-dev
  libsystemd-dev libhiredis-dev util-linux)
pkgs=(
  "${build_pkgs[@]}" clang libclang-rt-14-dev clang-format
  python3 python3-websockets python3-pytest openssl
  libwebsockets-dev redis-server chromium
  procps psmisc curl prometheus systemd
)
((build_only)) && pkgs=("${build_pkgs[@]}")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((!build_only)) && { ! command -v node >/dev/null || ! command -v npm >/dev/null; }; then
  missing+=(nodejs npm)
fi
if ((check)); then
  ((${#missing[@]})) && { echo "deps: missing ${missing[*]}" >&2; exit 1; }
  exit 0
fi
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

((build_only)) && exit 0

# Node's `ws` and the MCP SDK (@modelcontextprotocol/sdk) for the client tests, `ws` for the peer
# benchmark, pinned by package-lock.json. npm ci runs again when the lockfile is newer than what
# node_modules holds (npm records that in node_modules/.package-lock.json).
for d in tests/clients bench/peers/node; do
  if [[ -f "$d/package.json" && ( ! -f "$d/node_modules/.package-lock.json" ||
        "$d/package-lock.json" -nt "$d/node_modules/.package-lock.json" ) ]]; then
    (cd "$d" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done

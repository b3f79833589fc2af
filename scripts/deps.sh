#!/usr/bin/env bash
# Installs what gretel needs to build, test or benchmark on Debian 12, and nothing
# more. Idempotent and quiet when everything is present: it asks dpkg first and calls
# apt-get only for what is missing.  Usage: scripts/deps.sh [build|test|bench]...
set -euo pipefail

# webext-ublock-origin-chromium carries Debian's EasyList + EasyPrivacy, gretel's default
# lists (installed without its Recommends: chromium is for the tests only)
build_pkgs=(build-essential pkg-config libevent-dev libssl-dev libnghttp2-dev liblmdb-dev
            libpcre2-dev libpsl-dev publicsuffix libjansson-dev libinih-dev zlib1g-dev
            webext-ublock-origin-chromium)
test_pkgs=(libcmocka-dev clang libclang-rt-14-dev nginx-light curl python3 openssl procps chromium
           iproute2)
bench_pkgs=(wrk privoxy tinyproxy squid mitmproxy)
# The rule benchmark's peer engine runs on node; its npm package is installed by
# scripts/bench/rules.sh into build/peers/. A node from elsewhere (nodesource) counts.
bench_cmds=(node:nodejs npm:npm)

want=()
for set in "${@:-build}"; do
  case "$set" in
    build) want+=("${build_pkgs[@]}") ;;
    test)  want+=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
    bench) want+=("${build_pkgs[@]}" "${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
    *) echo "deps.sh: unknown set '$set' (build, test, bench)" >&2; exit 2 ;;
  esac
done

for set in "${@:-build}"; do
  [ "$set" = bench ] || continue
  for c in "${bench_cmds[@]}"; do
    command -v "${c%%:*}" >/dev/null || want+=("${c#*:}")
  done
done

missing=()
for p in "${want[@]}"; do
  st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$st" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "deps.sh: missing packages: ${missing[*]}" >&2
  echo "deps.sh: run as root (or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Services shipped by these packages (nginx, squid, privoxy, tinyproxy) must not start on
# install: tests and benchmarks start their own instances on loopback ports.
# (GRETEL_DEPS_POLICY and GRETEL_DEPS_LOG move these two files for tests/deps/run.sh.)
policy=${GRETEL_DEPS_POLICY:-/usr/sbin/policy-rc.d}
log=${GRETEL_DEPS_LOG:-/tmp/gretel-deps.log}
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; made_policy=1
fi
# An EXIT trap's last status becomes the script's under set -e: a bare `[ ... ] && rm`
# that is false (policy-rc.d was already there, as in Debian container images) would
# fail a run that installed everything.
cleanup() { if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
# A first failure is usually stale package lists (a fresh image has none): update, retry.
if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
  apt-get update -q >>"$log" 2>&1 || true
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
    tail -20 "$log" >&2
    echo "deps.sh: apt-get failed (log: $log)" >&2
    exit 1
  fi
fi
echo "deps.sh: installed ${missing[*]}" >&2
exit 0

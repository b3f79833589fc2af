#!/usr/bin/env bash
# Proxy throughput/latency/memory benchmark: wrk against nginx directly, through gretel, and
# through privoxy, tinyproxy and squid (Debian packages, each started here on loopback with
# its own minimal config, caching off), in interleaved rounds of one run. Prints req/s,
# p50/p99 latency, ratios to direct and to squid, and peak RSS.
# Env: ROUNDS (3), DURATION seconds per cell (5), PEERS (privoxy tinyproxy squid),
#      GRETEL_BASE (another gretel binary, e.g. the previous main, measured alongside),
#      GRETEL (build/gretel), GRETEL_OPTS (extra KEY=VALUE overrides), SCENARIOS (all).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/deps.sh bench
[ -x build/gretel ] || make -s build/gretel
exec /usr/bin/python3 scripts/bench/proxy_bench.py "$@"

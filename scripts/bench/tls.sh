#!/usr/bin/env bash
# TLS interception benchmark: new TLS connections per second through gretel (warm leaf
# cache) vs mitmproxy (Debian package) vs direct TLS to nginx, in interleaved rounds of one
# run; gretel's leaf minting cost; keep-alive requests/s inside one intercepted connection
# vs gretel's plain-HTTP path. Prints medians and ratios.
# Env: ROUNDS (3), DURATION seconds per cell (5), THREADS client connections in parallel (8).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/deps.sh bench
[ -x build/gretel ] || make -s build/gretel
[ -x build/bench/tls_bench ] || make -s build/bench/tls_bench
exec /usr/bin/python3 scripts/bench/tls_bench.py "$@"

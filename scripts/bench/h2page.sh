#!/usr/bin/env bash
# HTTP/2 page benchmark: headless Chromium loads a page of 100 small images from an nginx
# TLS origin directly (h2), through gretel intercepting with HTTP/2, and through gretel with
# http2 = off (HTTP/1.1 to the browser), interleaved, each load from a fresh profile (cold
# connections); the page's own navigation timing is the figure. Then requests/s inside one
# intercepted h2 connection (curl --parallel) against the same directly.
# The origin sits behind a relay adding RTT_MS of round trip (gretel stays next to the
# browser, as on a user's machine). Env: ROUNDS (7), REQUESTS (2000), RTT_MS (40; 0 = bare
# loopback), GRETEL_BASE (another gretel binary measured alongside, both with `lists =`).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/deps.sh bench test
[ -x build/gretel ] || make -s build/gretel
exec /usr/bin/python3 scripts/bench/h2page.py "$@"

#!/usr/bin/env bash
# Lists benchmark (issue 7): EasyList + EasyPrivacy from Debian's webext-ublock-origin-chromium
# compiled into a gt_abp_set, every request of tests/data/requests-dev.tsv.gz decided
# (URL parsing and registrable-domain lookup included), and in the same run the reference
# engine (Ghostery's adblocker via scripts/bench/peer) on the same lists, requests
# and core, measured the same way: 1 warm-up pass, then 20 timed passes, quantiles over all
# timed decisions. gretel runs ROUNDS times (default 3; the table shows the median round);
# its load is timed from the list text and from the compiled cache. Prints the table with
# the targets and the reference/gretel ratios, and gretel's block/not-block agreement with
# requests-dev.ghostery-decisions.tsv.gz.
# Env: ROUNDS, CPU (the core to pin to; default the last), GRETEL_DATA, GHOSTERY_DIR.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/deps.sh bench
make -s build/bench/lists_bench
data=${GRETEL_DATA:-tests/data}
peer_tool=${GRETEL_PEER_TOOL:-scripts/bench/peer/ghostery-decide.mjs}
peer_dir=${GHOSTERY_DIR:-$PWD/build/peers/engine}
el=/usr/share/chromium/extensions/ublock-origin/assets/thirdparties/easylist
rounds=${ROUNDS:-3}
cpu=${CPU:-$(( $(nproc) - 1 ))}
out=build/bench
mkdir -p "$out"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
zcat "$data/requests-dev.tsv.gz" >"$tmp/req.tsv"
zcat "$data/requests-dev.ghostery-decisions.tsv.gz" >"$tmp/ref.tsv"

echo "== gretel: $rounds rounds, each 1 warm-up + 20 timed passes over $(wc -l <"$tmp/req.tsv") requests (core $cpu)"
: >"$out/lists.jsonl"
for r in $(seq "$rounds"); do
  rm -f "$tmp/lists.cache"
  # the first load compiles and writes the cache; the rounds' figures load from the text
  taskset -c "$cpu" build/bench/lists_bench "$tmp/req.tsv" "$tmp/ref.tsv" --cache "$tmp/lists.cache" -- \
    "$el/easylist.txt" "$el/easyprivacy.txt" | tee "$tmp/round.txt" | sed -n '1,3p'
  tail -n 1 "$tmp/round.txt" >>"$out/lists.jsonl"
done

peer_json=""
if command -v node >/dev/null; then
  if [ ! -d "$peer_dir/node_modules/@ghostery/adblocker" ]; then
    echo "== installing the reference engine into $peer_dir (npm, once)"
    (mkdir -p "$peer_dir" && cd "$peer_dir" && { [ -f package.json ] || npm init -y >/dev/null; } &&
     npm install --no-audit --no-fund --silent @ghostery/adblocker@2.18.2 >/dev/null) ||
      echo "   (npm install failed: reference skipped)"
  fi
  if [ -d "$peer_dir/node_modules/@ghostery/adblocker" ]; then
    echo "== reference: Ghostery adblocker 2.18.2 (node $(node --version)), the same lists and requests"
    GHOSTERY_DIR="$peer_dir" taskset -c "$cpu" node "$peer_tool" \
      --lists "$el/easylist.txt,$el/easyprivacy.txt" --requests "$tmp/req.tsv" \
      --warmup 1 --repeat 20 --quiet >"$out/lists-peer.json" && peer_json="$out/lists-peer.json"
  fi
else
  echo "   (node not installed: reference skipped; scripts/deps.sh bench installs it)"
fi

/usr/bin/python3 - "$out/lists.jsonl" "$peer_json" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
g = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
p = json.load(open(sys.argv[2])) if sys.argv[2] else None
print()
print(f"{'':34}{'gretel':>12}{'reference':>12}{'ref/gretel':>12}{'target':>12}{'met':>6}")
def row(label, gv, pv, target=None, better_low=True, fmt="{:.0f}"):
    ratio = (pv / gv if better_low else gv / pv) if (pv and gv) else None
    met = "" if target is None else ("yes" if gv <= target else "no")
    print(f"{label:34}{fmt.format(gv):>12}{(fmt.format(pv) if pv is not None else '-'):>12}"
          f"{(f'{ratio:.1f}x' if ratio else '-'):>12}{('' if target is None else fmt.format(target)):>12}{met:>6}")
us = lambda k: p[k] * 1000 if p else None
row("decision median (ns)", g["median_ns"], us("median_us"), 400)
row("decision p99 (ns)", g["p99_ns"], us("p99_us"), 5000)
row("decision p99.9 (ns)", g["p999_ns"], us("p999_us"))
row("decision average (ns)", g["avg_ns"], us("avg_us"))
row("requests/s (one core)", g["rps"], p["wall_req_per_s"] if p else None, better_low=False)
row("load from the lists (ms)", g["load_ms"], p["load_ms"] if p else None, 150, fmt="{:.1f}")
row("load from the compiled cache (ms)", g["cache_load_ms"], p["deserialize_ms_median"] if p else None, 20, fmt="{:.1f}")
row("process RSS with both lists (MiB)", g["rss_kb"] / 1024, p["rss_mb"] if p else None, 25, fmt="{:.1f}")
print(f"gretel medians over the rounds (ns): {', '.join(str(int(r['median_ns'])) for r in rows)}")
print(f"filters: gretel {g['filters']:.0f}" + (f", reference {p['network_filters']}" if p else ""))
print(f"agreement with the reference's decisions (requests-dev.ghostery-decisions): "
      f"{g['agree']:.0f} of {g['compared']:.0f} ({100 * g['agree'] / max(g['compared'], 1):.2f}%), target >= 99.5%")
if not p:
    print("(reference not run)")
PY

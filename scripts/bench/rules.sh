#!/usr/bin/env bash
# Rule engine benchmark (issue 3's targets): gretel's per-decision cost over the real request
# set ../shared/data/requests-dev.tsv.gz with the shipped rules plus 10,000 generated rules
# (scripts/bench/gen_rules.py: half host rules, half regex rules), load time and memory;
# and, in the same run, a public JavaScript engine (Ghostery's adblocker, via
# ../shared/tools/engine-peer) given the same 10,000 rules as Adblock Plus filters over the
# same requests. Prints a table with the targets and the peer/gretel ratios.
# Env: ROUNDS (default 5; each gretel figure is the median over rounds), GRETEL_DATA.
set -eu
cd "$(dirname "$0")/../.."
data=${GRETEL_DATA:-../shared/data}
peer_tool=${GRETEL_PEER_TOOL:-../shared/tools/engine-peer/ghostery-decide.mjs}
peer_dir=${GHOSTERY_DIR:-$PWD/build/peers/engine}
rounds=${ROUNDS:-5}
out=build/bench
mkdir -p "$out"
make -s build/bench/rules_bench build/gretel >/dev/null
/usr/bin/python3 scripts/bench/gen_rules.py "$data/requests-dev.tsv.gz" 10000 \
  "$out/gen10k.rules" "$out/gen10k-abp.txt"
zcat "$data/requests-dev.tsv.gz" >"$out/requests-dev.tsv"

echo "== gretel: $rounds rounds x 20 passes over $(wc -l <"$out/requests-dev.tsv") requests"
: >"$out/rules-full.jsonl"; : >"$out/rules-gen.jsonl"; : >"$out/rules-shipped.jsonl"
for r in $(seq "$rounds"); do
  build/bench/rules_bench "$out/requests-dev.tsv" 20 rules/*.rules "$out/gen10k.rules" >>"$out/rules-full.jsonl"
  build/bench/rules_bench "$out/requests-dev.tsv" 20 "$out/gen10k.rules" >>"$out/rules-gen.jsonl"
  build/bench/rules_bench "$out/requests-dev.tsv" 20 rules/*.rules >>"$out/rules-shipped.jsonl"
done

peer_json=""
if command -v node >/dev/null; then
  if [ ! -d "$peer_dir/node_modules/@ghostery/adblocker" ]; then
    echo "== installing the peer engine into $peer_dir (npm, once)"
    (mkdir -p "$peer_dir" && cd "$peer_dir" && { [ -f package.json ] || npm init -y >/dev/null; } &&
     npm install --no-audit --no-fund --silent @ghostery/adblocker@2.18.2 >/dev/null) ||
      echo "   (npm install failed: peer skipped)"
  fi
  if [ -d "$peer_dir/node_modules/@ghostery/adblocker" ]; then
    echo "== peer: Ghostery adblocker 2.18.2 (node $(node --version)), same 10,000 rules as filters"
    GHOSTERY_DIR="$peer_dir" node "$peer_tool" --lists "$out/gen10k-abp.txt" \
      --requests "$data/requests-dev.tsv.gz" --warmup 1 --repeat 20 --quiet >"$out/peer.json" &&
      peer_json="$out/peer.json"
  fi
else
  echo "   (node not installed: peer skipped; scripts/deps.sh bench installs it)"
fi

/usr/bin/python3 - "$out" "$peer_json" <<'PY'
import json, statistics, sys
out, peer = sys.argv[1], sys.argv[2]
def load(name):
    rows = [json.loads(l) for l in open(f"{out}/{name}.jsonl")]
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if isinstance(rows[0][k], (int, float))}
    med["_min_median"] = min(r["median_ns"] for r in rows)
    med["_max_median"] = max(r["median_ns"] for r in rows)
    return med
full, gen, shipped = load("rules-full"), load("rules-gen"), load("rules-shipped")
p = json.load(open(peer)) if peer else None
print()
print(f"{'':34}{'shipped+10k':>14}{'10k only':>12}{'shipped':>10}{'target':>10}")
def row(label, key, unit, target="", scale=1):
    vals = [full[key] / scale, gen[key] / scale, shipped[key] / scale]
    print(f"{label:34}" + "".join(f"{v:>{w}.0f}" if v >= 10 else f"{v:>{w}.1f}" for v, w in zip(vals, (14, 12, 10))) + f"{target:>10}")
print(f"{'rules':34}{full['rules']:>14.0f}{gen['rules']:>12.0f}{shipped['rules']:>10.0f}")
row("decision median (ns)", "median_ns", "ns", "<= 500")
row("decision p99 (ns)", "p99_ns", "ns", "<= 5000")
row("decision p99.9 (ns)", "p999_ns", "ns")
row("decision mean (ns)", "mean_ns", "ns")
row("with context: median (ns)", "ctx_median_ns", "ns")
row("with context: p99 (ns)", "ctx_p99_ns", "ns")
row("load (ms)", "load_ms", "ms", "<= 300")
row("RSS growth of the load (KiB)", "rss_growth_kib", "KiB", "<= 20480")
row("heap growth of the load (KiB)", "heap_kib", "KiB")
row("decisions/s (one core)", "decisions_per_s", "/s")
print(f"{'medians over rounds (ns)':34}{full['_min_median']:>7.0f}-{full['_max_median']:<6.0f}")
print(f"decisions (shipped+10k): block {full['block']:.0f}, allow {full['allow']:.0f}, rewrite {full['rewrite']:.0f}, pass {full['pass']:.0f}")
if p:
    print()
    print("peer (Ghostery adblocker, JS) with the same 10,000 rules as Adblock Plus filters:")
    print(f"  build {p['load_ms']} ms, engine heap {p['engine_mb']} MB, RSS {p['rss_mb']} MB")
    print(f"  per request (URL parsing and domain lookup included): median {p['median_us']*1000:.0f} ns, p99 {p['p99_us']*1000:.0f} ns")
    print(f"  blocked {p.get('blocked', p.get('block_fraction', '?'))}")
    g = gen
    print("ratios peer/gretel (10k only; gretel with its context derivation, as the peer):")
    print(f"  median {p['median_us']*1000/g['ctx_median_ns']:.2f}x, p99 {p['p99_us']*1000/g['ctx_p99_ns']:.2f}x, "
          f"build {p['load_ms']/g['load_ms']:.2f}x, memory (peer heap / gretel RSS growth) "
          f"{p['engine_mb']*1024/max(g['rss_growth_kib'],1):.2f}x")
PY

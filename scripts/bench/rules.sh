#!/usr/bin/env bash
# Rule engine benchmark (issue 3's targets): gretel's per-decision cost over the real request
# set tests/data/requests-dev.tsv.gz with the shipped rules plus 10,000 generated rules
# (scripts/bench/gen_rules.py: half host rules, half regex rules), load time and memory;
# and, in the same run, a public JavaScript engine (Ghostery's adblocker, via
# scripts/bench/peer) given the same 10,000 rules as Adblock Plus filters over the
# same requests. Prints a table with the targets and the peer/gretel ratios. The decision
# figures time gt_rules_decide on a request just split into a reused buffer (hot, as in the
# proxy); the "cold input" rows time splitting and deciding from the scattered input lines,
# like the peer's figures, which also include URL parsing.
# Env: ROUNDS (default 5; each gretel figure is the median over rounds), GRETEL_DATA.
set -eu
cd "$(dirname "$0")/../.."
data=${GRETEL_DATA:-tests/data}
peer_tool=${GRETEL_PEER_TOOL:-scripts/bench/peer/ghostery-decide.mjs}
peer_dir=${GHOSTERY_DIR:-$PWD/build/peers/engine}
rounds=${ROUNDS:-5}
out=build/bench
mkdir -p "$out"
make -s build/bench/rules_bench build/gretel >/dev/null
/usr/bin/python3 scripts/bench/gen_rules.py "$data/requests-dev.tsv.gz" 10000 \
  "$out/gen10k.rules" "$out/gen10k-abp.txt"
zcat "$data/requests-dev.tsv.gz" >"$out/requests-dev.tsv"
# the host half alone (the first 5,000 rules), where a list engine is on home ground
head -n 5001 "$out/gen10k.rules" >"$out/gen5k-hosts.rules"
head -n 5002 "$out/gen10k-abp.txt" >"$out/gen5k-hosts-abp.txt"

# Pinned to one core (both engines): on a small VM, migrations between cores were the
# largest source of run-to-run spread.
pin=(); command -v taskset >/dev/null && pin=(taskset -c "$(( $(nproc) - 1 ))")
echo "== gretel: $rounds rounds x 20 passes over $(wc -l <"$out/requests-dev.tsv") requests ${pin[*]:+(${pin[*]})}"
: >"$out/rules-full.jsonl"; : >"$out/rules-gen.jsonl"; : >"$out/rules-shipped.jsonl"
: >"$out/rules-hosts.jsonl"
for r in $(seq "$rounds"); do
  "${pin[@]}" build/bench/rules_bench "$out/requests-dev.tsv" 20 rules/*.rules "$out/gen10k.rules" >>"$out/rules-full.jsonl"
  "${pin[@]}" build/bench/rules_bench "$out/requests-dev.tsv" 20 "$out/gen10k.rules" >>"$out/rules-gen.jsonl"
  "${pin[@]}" build/bench/rules_bench "$out/requests-dev.tsv" 20 rules/*.rules >>"$out/rules-shipped.jsonl"
  "${pin[@]}" build/bench/rules_bench "$out/requests-dev.tsv" 20 "$out/gen5k-hosts.rules" >>"$out/rules-hosts.jsonl"
done

peer_json=""; peer_hosts_json=""
if command -v node >/dev/null; then
  if [ ! -d "$peer_dir/node_modules/@ghostery/adblocker" ]; then
    echo "== installing the peer engine into $peer_dir (npm, once)"
    (mkdir -p "$peer_dir" && cd "$peer_dir" && { [ -f package.json ] || npm init -y >/dev/null; } &&
     npm install --no-audit --no-fund --silent @ghostery/adblocker@2.18.2 >/dev/null) ||
      echo "   (npm install failed: peer skipped)"
  fi
  if [ -d "$peer_dir/node_modules/@ghostery/adblocker" ]; then
    echo "== peer: Ghostery adblocker 2.18.2 (node $(node --version)), the same rules as filters"
    # its regex filters are tried one by one (about 1.6 ms per request with 5,000 of them),
    # so the full set gets one pass; the host half gets the usual warm-up and 20 passes
    GHOSTERY_DIR="$peer_dir" "${pin[@]}" node "$peer_tool" --lists "$out/gen10k-abp.txt" \
      --requests "$data/requests-dev.tsv.gz" --warmup 0 --repeat 1 --quiet >"$out/peer.json" &&
      peer_json="$out/peer.json"
    GHOSTERY_DIR="$peer_dir" "${pin[@]}" node "$peer_tool" --lists "$out/gen5k-hosts-abp.txt" \
      --requests "$data/requests-dev.tsv.gz" --warmup 1 --repeat 20 --quiet \
      >"$out/peer-hosts.json" && peer_hosts_json="$out/peer-hosts.json"
  fi
else
  echo "   (node not installed: peer skipped; scripts/deps.sh bench installs it)"
fi

/usr/bin/python3 - "$out" "$peer_json" "$peer_hosts_json" <<'PY'
import json, statistics, sys
out, peer, peer_hosts = sys.argv[1], sys.argv[2], sys.argv[3]
def load(name):
    rows = [json.loads(l) for l in open(f"{out}/{name}.jsonl")]
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if isinstance(rows[0][k], (int, float))}
    med["_min_median"] = min(r["median_ns"] for r in rows)
    med["_max_median"] = max(r["median_ns"] for r in rows)
    return med
full, gen, shipped = load("rules-full"), load("rules-gen"), load("rules-shipped")
hosts = load("rules-hosts")
p = json.load(open(peer)) if peer else None
print()
print(f"{'':34}{'shipped+10k':>14}{'10k only':>12}{'shipped':>10}{'target':>10}")
def row(label, key, unit, target="", scale=1):
    vals = [full[key] / scale, gen[key] / scale, shipped[key] / scale]
    print(f"{label:34}" + "".join(f"{v:>{w}.0f}" if v >= 10 else f"{v:>{w}.1f}" for v, w in zip(vals, (14, 12, 10))) + f"{target:>10}")
print(f"{'rules':34}{full['rules']:>14.0f}{gen['rules']:>12.0f}{shipped['rules']:>10.0f}")
for k, label in (("by_host", "  filed by host"), ("by_token", "  filed by URL token"),
                 ("by_prefix", "  filed by token prefix"), ("gated", "  tried always, gated"),
                 ("always", "  tried always")):
    print(f"{label:34}{full[k]:>14.0f}{gen[k]:>12.0f}{shipped[k]:>10.0f}")
row("decision median (ns)", "median_ns", "ns", "<= 500")
row("decision p99 (ns)", "p99_ns", "ns", "<= 5000")
row("decision p99.9 (ns)", "p999_ns", "ns")
row("decision mean (ns)", "mean_ns", "ns")
row("cold input + URL split: median", "ctx_median_ns", "ns")
row("cold input + URL split: p99", "ctx_p99_ns", "ns")
row("load (ms)", "load_ms", "ms", "<= 300")
row("RSS growth of the load (KiB)", "rss_growth_kib", "KiB", "<= 20480")
row("heap growth of the load (KiB)", "heap_kib", "KiB")
row("decisions/s (one core)", "decisions_per_s", "/s")
print(f"{'medians over rounds (ns)':34}{full['_min_median']:>7.0f}-{full['_max_median']:<6.0f}")
print(f"decisions (shipped+10k): block {full['block']:.0f}, allow {full['allow']:.0f}, rewrite {full['rewrite']:.0f}, pass {full['pass']:.0f}")
def compare(title, p, g):
    print()
    print(title)
    print(f"  peer:   build {p['load_ms']} ms, engine heap {p['engine_mb']} MB, process RSS {p['rss_mb']} MB;"
          f" median {p['median_us']*1000:.0f} ns, p99 {p['p99_us']*1000:.0f} ns per request"
          f" ({p['repeat']} pass{'es' if p['repeat'] != 1 else ''}, {p['warmup']} warm-up; URL parsing included)")
    print(f"  gretel: build {g['load_ms']:.1f} ms, RSS growth {g['rss_growth_kib']/1024:.1f} MiB;"
          f" median {g['ctx_median_ns']:.0f} ns, p99 {g['ctx_p99_ns']:.0f} ns per request (URL split included, input cold)")
    print(f"  ratio peer/gretel: median {p['median_us']*1000/g['ctx_median_ns']:.1f}x, "
          f"p99 {p['p99_us']*1000/g['ctx_p99_ns']:.1f}x, build {p['load_ms']/g['load_ms']:.1f}x")
p = json.load(open(peer)) if peer else None
ph = json.load(open(peer_hosts)) if peer_hosts else None
if p:
    compare("vs Ghostery adblocker (JS), the same 10,000 rules as Adblock Plus filters:", p, gen)
if ph:
    compare("vs Ghostery adblocker (JS), the 5,000 host rules alone (||domain^ filters):", ph, hosts)
if not (p or ph):
    print("\n(peer not run)")
PY

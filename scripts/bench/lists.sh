#!/usr/bin/env bash
# Lists benchmark and agreement (issue 7, first part): EasyList + EasyPrivacy from Debian's
# webext-ublock-origin-chromium compiled into a gt_abp_set, every request of
# ../shared/data/requests-dev.tsv.gz decided (URL parsing and registrable-domain lookup
# included), pinned to one core: load time, RSS, median/p99 ns per decision, requests/s,
# and agreement with requests-dev.ghostery-decisions.tsv.gz on block/not-block.
# The reference engine's own run beside it (../shared/tools/engine-peer) comes with the
# rest of issue 7.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/deps.sh test
make -s build/bench/lists_bench
data=${GRETEL_DATA:-../shared/data}
[ -d "$data" ] || data=/work/shared/data
el=/usr/share/chromium/extensions/ublock-origin/assets/thirdparties/easylist
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
zcat "$data/requests-dev.tsv.gz" >"$tmp/req.tsv"
zcat "$data/requests-dev.ghostery-decisions.tsv.gz" >"$tmp/ref.tsv"
taskset -c "${CPU:-1}" build/bench/lists_bench "$tmp/req.tsv" "$tmp/ref.tsv" -- \
  "$el/easylist.txt" "$el/easyprivacy.txt"

#!/usr/bin/env bash
# scripts/deps.sh against stub `dpkg-query`, `apt-get` and `id` on PATH, in every starting
# state a fresh or a used machine can be in: nothing missing; one package missing with and
# without /usr/sbin/policy-rc.d (Debian container images ship one); apt failing once, then
# succeeding after `apt-get update` (stale lists); apt failing for good; not root. Nothing
# is installed and no system file is touched: the policy file and the log live in a temp dir.
# Prints one line per case and ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
pass=0; fail=0
ok() { echo "[  PASSED  ] deps.sh: $1"; pass=$((pass+1)); }
bad() { echo "[  FAILED  ] deps.sh: $1"; fail=$((fail+1)); }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
stubs=$tmp/bin; mkdir -p "$stubs"

# dpkg-query -W -f=... PKG: "installed" unless PKG is listed in $STATE/missing
cat >"$stubs/dpkg-query" <<'EOF'
#!/bin/sh
pkg=$(eval echo "\${$#}")
if grep -qx "$pkg" "$STATE/missing" 2>/dev/null; then exit 1; fi
printf installed
EOF
# apt-get install|update; $STATE/mode: ok | fail-once | fail. Records its calls and whether
# the policy file existed while it installed.
cat >"$stubs/apt-get" <<'EOF'
#!/bin/sh
echo "$*" >>"$STATE/calls"
case "$1" in
  update) echo "Reading package lists..."; exit 0 ;;
  install)
    [ -e "$GRETEL_DEPS_POLICY" ] && echo policy >>"$STATE/saw"
    mode=$(cat "$STATE/mode")
    if [ "$mode" = fail ] || { [ "$mode" = fail-once ] && ! grep -q '^update' "$STATE/calls"; }; then
      echo "E: Unable to locate package $(eval echo "\${$#}")"; exit 100
    fi
    : >"$STATE/missing"; echo "Setting up packages"; exit 0 ;;
esac
exit 0
EOF
printf '#!/bin/sh\necho "${STUB_UID:-0}"\n' >"$stubs/id"
chmod 755 "$stubs"/*

# run CASE-NAME MODE MISSING-PKG POLICY-PRESENT [UID] -> sets rc, out, st
run() {
  st=$tmp/$1; mkdir -p "$st"; : >"$st/calls"; : >"$st/saw"
  echo "$2" >"$st/mode"; printf '%s\n' $3 >"$st/missing"
  rm -f "$st/policy-rc.d"; [ "$4" = yes ] && printf '#!/bin/sh\nexit 101\n' >"$st/policy-rc.d"
  out=$(PATH="$stubs:$PATH" STATE=$st STUB_UID=${5:-0} GRETEL_DEPS_POLICY=$st/policy-rc.d \
        GRETEL_DEPS_LOG=$st/log scripts/deps.sh test 2>&1); rc=$?
}

run present ok "" no
if [ $rc -eq 0 ] && [ ! -s "$st/calls" ] && [ -z "$out" ]; then ok "nothing missing: quiet, no apt-get"
else bad "nothing missing (rc=$rc): $out"; fi

run fresh ok libcmocka-dev no
if [ $rc -eq 0 ] && grep -q "installed libcmocka-dev" <<<"$out" && [ -s "$st/saw" ] \
   && [ ! -e "$st/policy-rc.d" ]; then
  ok "one missing, no policy-rc.d: installed, services held back, policy file removed"
else bad "one missing, no policy-rc.d (rc=$rc): $out"; fi

run image ok libcmocka-dev yes
if [ $rc -eq 0 ] && grep -q "installed libcmocka-dev" <<<"$out" && [ -e "$st/policy-rc.d" ]; then
  ok "one missing, policy-rc.d already there: exit 0, the image's file kept"
else bad "one missing, policy-rc.d present (rc=$rc): $out"; fi

run stale fail-once nginx-light no
if [ $rc -eq 0 ] && grep -q '^update' "$st/calls" && [ "$(grep -c '^install' "$st/calls")" = 2 ] \
   && grep -q "installed nginx-light" <<<"$out"; then
  ok "apt fails on stale lists: update, install again, exit 0"
else bad "stale lists (rc=$rc): $out"; fi

run broken fail nginx-light no
if [ $rc -ne 0 ] && grep -q "E: Unable to locate package" <<<"$out" \
   && grep -q "deps.sh: apt-get failed" <<<"$out" && [ ! -e "$st/policy-rc.d" ]; then
  ok "apt fails for good: exit $rc with apt's own error"
else bad "apt failing for good (rc=$rc): $out"; fi

run user ok libcmocka-dev no 1000
if [ $rc -ne 0 ] && grep -q "run as root" <<<"$out" && [ ! -s "$st/calls" ]; then
  ok "not root: says which packages and how, installs nothing"
else bad "not root (rc=$rc): $out"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

#!/usr/bin/env bash
# Runs gretel's test suites and ends with one summary line: "N passed, N failed".
# Usage: scripts/run-tests.sh [deps] [unit] [fuzz] [rules] [integration]   (default: all five)
set -u
cd "$(dirname "$0")/.."
suites=("$@"); [ ${#suites[@]} -eq 0 ] && suites=(deps unit fuzz rules integration)
pass=0; fail=0; failed=()
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

run() { # name, command...
  local name=$1; shift
  if "$@"; then pass=$((pass+1)); else fail=$((fail+1)); failed+=("$name"); fi
}

for s in "${suites[@]}"; do
  case "$s" in
  deps)
    echo "== scripts/deps.sh against stub dpkg-query/apt-get"
    run deps tests/deps/run.sh ;;
  unit)
    echo "== unit tests (cmocka, ASan+UBSan)"
    for t in build/test/test_*; do [ -x "$t" ] && run "unit:$(basename "$t")" "$t"; done ;;
  fuzz)
    secs=${FUZZ_SECONDS:-5}
    jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
    echo "== fuzzers (libFuzzer, ${secs}s each, $jobs at a time)"
    # Each fuzzer gets its full time; they run side by side, one per core, and report in
    # order once all have ended.
    fz=(); for f in build/fuzz/fuzz_*; do [ -x "$f" ] && fz+=("$f"); done
    fuzz_one() { # fuzzer -> writes build/fuzz/NAME.rc
      local f=$1 n; n=$(basename "$f")
      local corpus=tests/fuzz/corpus/${n#fuzz_} work=build/fuzz/work-${n#fuzz_}
      mkdir -p "$work"
      local dict=(); [ -f "tests/fuzz/${n#fuzz_}.dict" ] && dict=(-dict="tests/fuzz/${n#fuzz_}.dict")
      "$f" -max_total_time="$secs" -print_final_stats=0 -artifact_prefix=build/fuzz/ \
        "${dict[@]}" "$work" "$corpus" >"build/fuzz/$n.log" 2>&1
      echo $? >"build/fuzz/$n.rc"
    }
    running=0
    for f in "${fz[@]}"; do
      fuzz_one "$f" &
      running=$((running+1))
      if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running-1)); fi
    done
    wait
    for f in "${fz[@]}"; do
      n=$(basename "$f")
      if [ "$(cat "build/fuzz/$n.rc" 2>/dev/null)" = 0 ]; then
        echo "[  PASSED  ] $n: $(grep -Eo 'Done [0-9]+ runs' "build/fuzz/$n.log" | tail -1)"
        pass=$((pass+1))
      else
        echo "[  FAILED  ] $n (log: build/fuzz/$n.log)"; tail -30 "build/fuzz/$n.log"
        fail=$((fail+1)); failed+=("fuzz:$n")
      fi
    done ;;
  rules)
    echo "== rule engine CLI (check, explain golden files, --batch over tests/data)"
    run rules tests/golden/run.sh build/test/gretel ;;
  integration)
    echo "== integration tests (nginx origins, curl, real sockets)"
    run integration /usr/bin/python3 tests/integration/run.py --gretel build/test/gretel --release build/gretel ;;
  *) echo "unknown suite $s" >&2; exit 2 ;;
  esac
done
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

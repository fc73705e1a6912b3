#!/usr/bin/env bash
# Runs the libFuzzer harnesses of a CNN_FUZZ build: run.sh BUILD_DIR SECONDS [TARGET...]
# (default: every fuzz_* harness in BUILD_DIR). Each runs SECONDS on its seeds
# (tests/fuzz/corpus/<target>, read only) plus what earlier runs found
# (BUILD_DIR/corpus/<target>, where new inputs go). An input that crashes or leaks
# is written to tests/fuzz/regress/<target>/, one that times out or runs out of
# memory to tests/fuzz/slow/<target>/ (not replayed by default: too slow until
# fixed), and the target fails; the log is BUILD_DIR/fuzz-<target>.log.
# Exit status: 1 if any target failed.
# FUZZ_FLAGS: more libFuzzer flags (they override the ones below), e.g. "-jobs=2".
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${1:?usage: run.sh BUILD_DIR SECONDS [TARGET...]}
secs=${2:-60}
shift 2 || shift $#
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$build"/fuzz_*; do
    t=${f##*/fuzz_}
    [ -x "$f" ] && [ -d "tests/fuzz/corpus/$t" ] && targets+=("$t")
  done
fi
[ ${#targets[@]} -gt 0 ] || { echo "fuzz: no harnesses in $build (configure with -DCNN_FUZZ=ON)" >&2; exit 1; }
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=0
for t in "${targets[@]}"; do
  mkdir -p "$build/corpus/$t" "tests/fuzz/regress/$t" "tests/fuzz/slow/$t"
  log="$build/fuzz-$t.log"
  before=$(find "tests/fuzz/regress/$t" "tests/fuzz/slow/$t" -type f | wc -l)
  # -timeout: an input taking 10 s is a hang; -rss_limit_mb/-malloc_limit_mb: a
  # file that makes the library allocate over 2 GiB is a finding
  "$build/fuzz_$t" "$build/corpus/$t" "tests/fuzz/corpus/$t" -max_total_time="$secs" \
    -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="tests/fuzz/regress/$t/" ${FUZZ_FLAGS:-} >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  corpus=$(ls "$build/corpus/$t" | wc -l)
  for f in "tests/fuzz/regress/$t"/oom-* "tests/fuzz/regress/$t"/timeout-* \
           "tests/fuzz/regress/$t"/slow-unit-*; do
    [ -e "$f" ] && mv "$f" "tests/fuzz/slow/$t/"
  done
  after=$(find "tests/fuzz/regress/$t" "tests/fuzz/slow/$t" -type f | wc -l)
  if [ $rc -ne 0 ] || [ "$after" -gt "$before" ]; then
    failed=1
    echo "fuzz $t: FAILED after ${execs:-?} runs ($cov): new input(s) in tests/fuzz/{regress,slow}/$t/, log $log"
    grep -m1 -A12 -E '^==[0-9]+==ERROR|runtime error|cnn fuzz:|ERROR: libFuzzer' "$log" | sed 's/^/  /'
  else
    echo "fuzz $t: ok, ${execs:-?} runs in ${secs}s, $cov, $corpus new corpus inputs"
  fi
done
exit $failed

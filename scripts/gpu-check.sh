#!/usr/bin/env bash
# The GPU checks in one script, for a machine with a GPU and a build made elsewhere,
# within GPU_CHECK_SECONDS (default 450: under 8 minutes with the start-up):
#   1. the card (cnn devices), every GPU test (ctest -L gpu: the op suite, each conv
#      engine in each math against ref, the tuner, cuBLASLt gemm_ex, cuDNN, programs,
#      nets), with the tuner's cache in $OUT;
#   2. bench/run.sh (`make bench` without make, BENCH_QUICK=1): cnn and PyTorch side
#      by side, one markdown table;
#   3. compute-sanitizer memcheck and racecheck on the engine, op and program tests
#      (CNN_TEST_QUICK=1: the engine test's smaller case list), synccheck on the
#      program test.
# Each step gets what is left of the time; a step that would start too late is
# skipped and says so. Logs go to $OUT (default ./gpu-check); summary.txt is the
# short version. On the lent GPU machine:
#   .gpu/run scripts/gpu-check.sh build       (with OUT=$OUT, carry build and .gpu)
#   scripts/gpu-check.sh [BUILD_DIR]
set -u
build=${1:-build}
out=${OUT:-gpu-check}
budget=${GPU_CHECK_SECONDS:-450}
mkdir -p "$out"
start=$(date +%s)
export CNN_TUNE_CACHE="$out/tune-cache.txt"
summary="$out/summary.txt"
: > "$summary"

left() { echo $((budget - ($(date +%s) - start))); }
# step NAME CAP_SECONDS CMD...: run CMD with a timeout of min(CAP, time left)
step() {
  local name=$1 cap=$2 t
  shift 2
  t=$(left)
  [ "$t" -gt "$cap" ] && t=$cap
  if [ "$t" -lt 10 ]; then
    echo "$name: skipped (out of time)" | tee -a "$summary"
    return
  fi
  local t0=$(date +%s)
  timeout "$t" "$@"
  local rc=$?
  echo "$name: exit $rc ($(( $(date +%s) - t0 )) s$([ $rc = 124 ] && echo ', timed out'))" |
    tee -a "$summary"
}

"$build/cnn" devices > "$out/devices.txt" 2>&1
head -8 "$out/devices.txt" >> "$summary"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv,noheader \
  >> "$summary" 2>/dev/null

step "ctest -L gpu" 150 ctest --test-dir "$build" -L gpu --output-on-failure \
  > "$out/ctest-gpu.txt" 2>&1

# cnn and PyTorch side by side (bench/run.sh is `make bench` without make); the
# time-to-accuracy run is left to a separate `BENCH_TTA_S=60 bench/run.sh`
step "bench/run.sh" 150 env BENCH_QUICK=1 BENCH_CNN_S=70 BENCH_PT_S=70 BENCH_TTA=0 \
  BUILD="$build" BENCH_OUT="$out/bench" bench/run.sh > "$out/bench.txt" 2>&1
cat "$out/bench.txt" >> "$summary"

if command -v compute-sanitizer > /dev/null; then
  export CNN_TEST_QUICK=1
  for run in "memcheck test_gpu_conv_engines" "racecheck test_gpu_conv_engines" \
             "memcheck test_gpu_ops" "memcheck test_gpu_program" "memcheck test_gpu_gemm_ex" \
             "racecheck test_gpu_ops" "memcheck test_gpu_tuner" "synccheck test_gpu_program"; do
    set -- $run
    [ -x "$build/$2" ] || { echo "compute-sanitizer $1 $2: not built" >> "$summary"; continue; }
    step "compute-sanitizer $1 $2" 40 compute-sanitizer --tool "$1" --error-exitcode 99 \
      "$build/$2" > "$out/sanitizer-$1-$2.txt" 2>&1
  done
  unset CNN_TEST_QUICK
else
  echo "compute-sanitizer not found" >> "$summary"
fi
echo "total: $(( $(date +%s) - start )) s of $budget" >> "$summary"
cat "$summary"

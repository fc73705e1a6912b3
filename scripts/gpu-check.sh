#!/usr/bin/env bash
# The GPU checks in one script, for a machine with a GPU and a build made elsewhere
# (at most ~8 minutes): the card, every GPU test, the GPU op and program tests under
# compute-sanitizer, and training/inference throughput of the shipped models on cuda
# with CUDA graphs on and off, with a host round trip per step (--sync), with the
# batches made on the device (--bound), and in bf16.
# Logs go to $OUT (default: ./gpu-check); summary.txt has the short version.
#   scripts/gpu-check.sh [BUILD_DIR]
set -u
build=${1:-build}
out=${OUT:-gpu-check}
mkdir -p "$out"
"$build/cnn" devices > "$out/devices.txt" 2>&1
head -5 "$out/devices.txt" > "$out/summary.txt"
ctest --test-dir "$build" -L gpu --output-on-failure > "$out/ctest-gpu.txt" 2>&1
echo "ctest -L gpu: exit $?" | tee -a "$out/summary.txt"
if command -v compute-sanitizer > /dev/null; then
  for tool in memcheck racecheck synccheck initcheck; do
    for t in test_gpu_ops test_gpu_program test_bound; do
      timeout 150 compute-sanitizer --tool "$tool" --error-exitcode 99 "$build/$t" \
        > "$out/sanitizer-$tool-$t.txt" 2>&1
      echo "compute-sanitizer $tool $t: exit $?" >> "$out/summary.txt"
    done
  done
else
  echo "compute-sanitizer not found" >> "$out/summary.txt"
fi
for m in models/lenet.cfg models/fashion.cfg models/resnet9.cfg; do
  for opts in "" "--cuda-graph off" "--sync" "--bound" "--bound --cuda-graph off" \
      "--precision bf16" "--infer"; do
    timeout 60 "$build/bench_train" "$m" --device cuda --steps 50 $opts >> "$out/bench.txt" 2>&1 ||
      echo "bench_train $m cuda $opts: failed (exit $?)" >> "$out/bench.txt"
  done
done
cat "$out/bench.txt" >> "$out/summary.txt"
cat "$out/summary.txt"

#!/usr/bin/env bash
# The GPU checks in one script, for a machine with a GPU and a build made elsewhere:
# the GPU tests, then training/inference throughput of the shipped models on cuda and
# on cpu for comparison. Logs go to $OUT (default: ./gpu-check).
#   scripts/gpu-check.sh [BUILD_DIR]
set -u
build=${1:-build}
out=${OUT:-gpu-check}
mkdir -p "$out"
"$build/cnn" devices > "$out/devices.txt" 2>&1
ctest --test-dir "$build" -L gpu --output-on-failure > "$out/ctest-gpu.txt" 2>&1
echo "ctest -L gpu: exit $?" | tee -a "$out/summary.txt"
for m in models/lenet.cfg models/fashion.cfg models/resnet9.cfg; do
  for mode in "" --infer; do
    timeout 120 "$build/bench_train" "$m" --device cuda --steps 30 $mode >> "$out/bench.txt" 2>&1 ||
      echo "bench_train $m cuda $mode: failed (exit $?)" >> "$out/bench.txt"
  done
done
cat "$out/bench.txt" >> "$out/summary.txt"
cat "$out/summary.txt"

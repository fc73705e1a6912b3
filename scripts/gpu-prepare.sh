#!/usr/bin/env bash
# Prepare the build for one run on a lent GPU machine (which can carry 64 MiB in all):
# build, drop the object files (they are only needed to rebuild: ~24 MiB), pack the
# shared libraries the GPU machine lacks into .gpu/ (../shared/gpu/pack), and print
# the size of what travels and the command to run there.
#   scripts/gpu-prepare.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
cmake --build "$build" -j"$(nproc)" > /dev/null
find "$build/CMakeFiles" -name '*.o' -delete
pack=${GPU_PACK:-../shared/gpu/pack}
[ -x "$pack" ] || { echo "gpu-prepare: $pack not found" >&2; exit 2; }
"$pack" "$build"
total=$(du -sck "$build" .gpu | tail -1 | cut -f1)
echo "carry: $build and .gpu, $((total / 1024)) MiB (the limit is 64 MiB)"
[ "$total" -le $((64 * 1024)) ] || echo "gpu-prepare: too big to carry" >&2
echo "run there: .gpu/run scripts/gpu-check.sh $build   (carry [\"$build\", \".gpu\"], timeout_s 540)"

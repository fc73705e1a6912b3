#!/usr/bin/env bash
# cnn's Darknet .weights against Darknet itself (pjreddie/darknet; not a ctest: it needs
# Darknet's source):   tests/darknet/compare.sh DARKNET_SRC [CNN_BUILD_DIR]
# Builds Darknet (GPU=0 OPENCV=0) in a temp copy, then
#  1. cnn writes random weights for model.cfg (conv + batch norm, grouped conv, [batchnorm],
#     [connected] after a 5x4x6 input and with batch norm); Darknet runs an input with them;
#  2. Darknet saves its own random net (batch norm statistics randomised); cnn runs it;
# and prints both softmax outputs side by side: they agree to ~1e-6 (a layout error
# shows as ~0.1). Then, for each classifier cfg of tests/data/darknet that cnn reads,
# the weights Darknet saves for it must fit (cnn summary --weights).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=${1:?usage: compare.sh DARKNET_SRC [CNN_BUILD_DIR]}
build=$(cd "${2:-$here/../../build}" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/cnn-darknet-XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -r "$src" "$work/darknet"
make -C "$work/darknet" GPU=0 OPENCV=0 -j"$(nproc)" >"$work/make.log" 2>&1 ||
  { tail -20 "$work/make.log"; exit 1; }
dn="-I$work/darknet/include $work/darknet/libdarknet.a -lm -pthread"
gcc -O2 "$here/cmp_dn.c" $dn -o "$work/cmp_dn"
gcc -O2 "$here/dn_save.c" $dn -o "$work/dn_save"
gcc -O2 -I"$here/../../include" -I"$here/../../src" "$here/cmp_cnn.c" -L"$build" -lcnn \
  -Wl,-rpath,"$build" -o "$work/cmp_cnn"
cd "$work"
cfg=$here/model.cfg
./cmp_cnn make "$cfg" cnn.weights input.bin >cnn1.txt
./cmp_dn "$cfg" cnn.weights input.bin >dn1.txt 2>/dev/null
./cmp_dn "$cfg" - input.bin dn.weights >dn2.txt 2>/dev/null
./cmp_cnn run "$cfg" dn.weights input.bin >cnn2.txt
echo "cnn writes, Darknet reads (cnn | Darknet):"
paste cnn1.txt dn1.txt
echo "Darknet writes, cnn reads (Darknet | cnn):"
paste dn2.txt cnn2.txt
fail=$(paste cnn1.txt dn1.txt dn2.txt cnn2.txt |
  awk '{d = $1 - $2; e = $3 - $4; if (d < 0) d = -d; if (e < 0) e = -e; if (d > 1e-5 || e > 1e-5) n++} END {print n + 0}')
echo "outputs differing by more than 1e-5: $fail"
for f in "$here"/../data/darknet/*.cfg; do
  c=$(basename "$f" .cfg)
  sed -e 's/^batch *=.*/batch=1/' -e 's/^subdivisions *=.*/subdivisions=1/' "$f" >"$c.cfg"
  "$build/cnn" summary "$c.cfg" >/dev/null 2>&1 || { echo "$c: cnn does not read this cfg"; continue; }
  ./dn_save "$c.cfg" "$c.weights" >/dev/null 2>&1 || { echo "$c: Darknet failed"; continue; }
  if "$build/cnn" summary "$c.cfg" --weights "$c.weights" 2>&1 | tail -1 | grep -q "they fit"; then
    echo "$c: Darknet's $(stat -c %s "$c.weights")-byte weights fit"
  else
    echo "$c: Darknet's weights do NOT fit"; fail=$((fail + 1))
  fi
  rm -f "$c.weights"
done
[ "$fail" -eq 0 ]

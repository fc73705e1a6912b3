#!/bin/sh
# Regenerates expected.tsv: the layer shapes and conv FLOPs that Darknet itself
# (pjreddie/darknet, the commit named in README.md) reports for every cfg here.
#   usage: tests/data/darknet/regen.sh DARKNET_SRC   (a built checkout: libdarknet.a)
# Each cfg is parsed with its [net] batch and subdivisions set to 1 (Darknet
# allocates every activation for the whole batch; shapes and FLOPs do not depend
# on it). Columns: cfg, section, Darknet layer type, out w, h, c, outputs, FLOPs
# by Darknet's expression (conv only, else 0), the BFLOPs Darknet prints (conv
# only, 3 decimals, else -).
set -eu
src=${1:?usage: regen.sh DARKNET_SRC}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -O1 -I"$src/include" -o "$tmp/dump" "$here/darknet_dump.c" "$src/libdarknet.a" -lm -lpthread
out="$here/expected.tsv"
printf 'cfg\tsection\ttype\tw\th\tc\toutputs\tflops\tbflops_printed\n' > "$out.new"
for cfg in "$here"/*.cfg; do
  name=$(basename "$cfg" .cfg)
  awk 'BEGIN { net = 1 }
       /^\[/ && !/^\[net\]/ && !/^\[network\]/ { net = 0 }
       net && /^batch=/ { print "batch=1"; next }
       net && /^subdivisions=/ { print "subdivisions=1"; next }
       { print }' "$cfg" > "$tmp/$name.cfg"
  "$tmp/dump" "$name" "$tmp/$name.cfg" > "$tmp/$name.tsv" 2> "$tmp/$name.log"
  # Darknet's own table: "%5d " then the layer's line; conv lines end in "N.NNN BFLOPs"
  awk '$NF == "BFLOPs" && $1 ~ /^[0-9]+$/ { print $1 "\t" $(NF-1) }' "$tmp/$name.log" \
    > "$tmp/$name.bf"
  awk -F'\t' 'NR == FNR { bf[$1] = $2; next }
              { OFS = "\t"; print $0, ($2 in bf ? bf[$2] : "-") }' \
    "$tmp/$name.bf" "$tmp/$name.tsv" >> "$out.new"
done
mv "$out.new" "$out"
echo "wrote $out ($(($(wc -l < "$out") - 1)) sections)"

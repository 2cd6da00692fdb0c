#!/bin/sh
# Issue 5's memory bar: peak resident memory of `submoe apply` on a synthetic model with the real
# layer shapes of Qwen1.5-MoE-A2.7B (hidden 2048, 60 experts of 1408, top-4, a shared expert of
# 5632) stays under twice one MoE layer's fp32 size plus 256 MB, whatever the number of layers.
#   make bench-rss [RSS_LAYERS=4]      (or: bench/apply_rss.sh SUBMOE [LAYERS])
# Needs about 1.1 GB of disk per layer (bf16) under $TMPDIR; the plan is made by `submoe plan`
# (ratio 0.5, submoe, collapse-lstsq), as a user would, and apply is measured with /usr/bin/time.
set -eu
submoe=${1:-src/submoe}
layers=${2:-4}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/submoe-rss.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
H=2048 I=1408 E=60 S=5632
echo "synth: qwen2_moe, $layers layers, hidden $H, $E experts of $I, shared expert $S, bf16"
"$submoe" synth --arch qwen2_moe --out "$tmp/m" --layers "$layers" --hidden $H --intermediate $I --experts $E \
    --top-k 4 --shared-intermediate $S --heads 16 --kv-heads 16 --vocab 256 --clusters 15 --dtype bf16 -q
du -sh "$tmp/m" | sed 's/\t.*//; s/^/model on disk: /'
"$submoe" plan "$tmp/m" --ratio 0.5 -m submoe --samples 8 --seq-len 256 -t "$here/../data/calib.u32" \
    -c "$tmp/calib.stats" -o "$tmp/plan.yaml" -q
/usr/bin/time -v "$submoe" apply "$tmp/plan.yaml" -o "$tmp/out" -q 2>"$tmp/time"
rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): *//p' "$tmp/time")
wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): *//p' "$tmp/time")
layer_bytes=$(( (E * 3 * I * H + 3 * S * H + E * H + H) * 4 ))
bound_kb=$(( (2 * layer_bytes + 256 * 1024 * 1024) / 1024 ))
awk -v l="$layer_bytes" -v b="$bound_kb" -v r="$rss_kb" -v w="$wall" 'BEGIN {
    printf "one MoE layer in fp32: %.0f MB; bound 2 x layer + 256 MB = %.0f MB\n", l / 1048576, b / 1024
    printf "apply: peak RSS %.0f MB, wall %s  ->  %.2f of the bound: %s\n", r / 1024, w, r / b, r <= b ? "ok" : "OVER"
    exit !(r <= b) }'

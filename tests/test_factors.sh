#!/bin/sh
# Factor storage of rank-r merges (issue 19 item 3): a plain submoe merge at a rank below the
# break-even r·(out+in) < out·in is written as weight_a/weight_b factors in the native format,
# smaller than the full-rank output by exactly the factors' saving, and evaluates as the dense
# rank-r merge; above the break-even it stays dense; hf refuses factors at plan and apply time,
# naming the layer and a format that holds them.
set -u
. "$SRCDIR/tests/lib.sh"
scratch factors
ppl() { "$SUBMOE" eval "$1" --tokens "$SRCDIR/data/heldout.u32" --max-tokens 8192 --precision fp32 --quiet; }
total() { "$SUBMOE" inspect --json "$1" | grep -o "\"$2\": *[0-9]*" | head -1 | grep -o '[0-9]*$'; }

calib="-t $SRCDIR/data/calib.u32 --samples 8 --seq-len 128 --keep 600 --heldout 120 -c $tmp/demo.stats"
"$SUBMOE" plan "$DEMO" --ratio 0.25 -m submoe $calib -o "$tmp/full.yaml" -q
"$SUBMOE" plan "$DEMO" --ratio 0.25 -m submoe --rank 32 $calib -o "$tmp/r32.yaml" -q
"$SUBMOE" apply "$tmp/full.yaml" -o "$tmp/full" -q
"$SUBMOE" apply "$tmp/r32.yaml" -o "$tmp/r32" -q
"$SUBMOE" inspect "$tmp/r32" >"$tmp/insp"
check "rank 32 submoe is stored as factors in every layer" \
    test "$(grep -c '^    [0-9]  MoE          6            8  18 of 18 matrices as A.B, rank 32 (expert map)' "$tmp/insp")" -eq 4

# The demo: hidden 128, intermediate 256; 4 layers of 6 groups, 3 matrices each (256×128 or
# 128×256): each saves 256·128 − 32·(256 + 128) parameters; the source dtype is bf16.
want=$((4 * 6 * 3 * (256 * 128 - 32 * (256 + 128))))
check_eq "parameters saved by the factors" "$(($(total "$tmp/full" total) - $(total "$tmp/r32" total)))" "$want"
# tensor data bytes: the file less its 8-byte length and JSON header (safetensors)
data_bytes() { echo $(($(wc -c <"$1") - 8 - $(od -An -t u8 -N8 "$1"))); }
check_eq "tensor data bytes saved (bf16)" \
    "$(($(data_bytes "$tmp/full/model.safetensors") - $(data_bytes "$tmp/r32/model.safetensors")))" "$((2 * want))"

# Evaluates as the dense rank-r merge: hf-expanded multiplies the factors out (remap router, f32
# output so neither side is rounded to bf16).
sed 's/^  ratio: 0.25$/  ratio: 0.25\n  router: remap/' "$tmp/r32.yaml" >"$tmp/rm.yaml"
printf 'output:\n  dtype: f32\n' >>"$tmp/rm.yaml"
"$SUBMOE" apply "$tmp/rm.yaml" -o "$tmp/rn" -q
"$SUBMOE" apply "$tmp/rm.yaml" -o "$tmp/rx" --format hf-expanded -q
check "the native remap output holds factors" grep -a -q 'w1.weight_a' "$tmp/rn/model.safetensors"
check "the hf-expanded output is dense" sh -c "! grep -a -q 'weight_a' '$tmp/rx/model.safetensors'"
p_n=$(ppl "$tmp/rn")
p_x=$(ppl "$tmp/rx")
check "factored ($p_n) = dense rank-32 merge ($p_x) to 1e-6" \
    awk -v a="$p_n" -v b="$p_x" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-6 * b) }'
p_f=$(ppl "$tmp/full")
p_r=$(ppl "$tmp/r32")
check "rank 32 costs perplexity over full rank ($p_f -> $p_r)" awk -v a="$p_r" -v b="$p_f" 'BEGIN { exit !(a > b) }'

# hf holds dense experts only: refused when planning and when applying, naming the layer.
"$SUBMOE" plan "$DEMO" --ratio 0.25 -m submoe --rank 32 --format hf $calib -o "$tmp/hf.yaml" -q 2>"$tmp/err"
st=$?
check "plan --format hf refuses rank-32 factors: exit 1, no plan" sh -c "[ $st -eq 1 ] && [ ! -e '$tmp/hf.yaml' ]"
check "... naming the layer and the formats that hold them" \
    grep -q 'layer 0 stores 18 matrices as low-rank factors (submoe merge at rank 32.*use --format submoe' "$tmp/err"
"$SUBMOE" apply "$tmp/r32.yaml" -o "$tmp/hf" --format hf -q 2>"$tmp/err"
st=$?
check "apply --format hf refuses them too, writing nothing" \
    sh -c "[ $st -eq 1 ] && grep -q 'layer 0: hf cannot hold low-rank factors; write the submoe format' '$tmp/err' && [ ! -e '$tmp/hf' ]"

# Above the break-even (100·384 > 256·128) factors would be larger: stored dense, so hf holds
# it, for submoe-whitened too.
for m in submoe submoe-whitened; do
    "$SUBMOE" plan "$DEMO" --ratio 0.25 -m $m --rank 100 --format hf $calib -o "$tmp/$m-100.yaml" -q 2>"$tmp/err"
    check "$m rank 100 (above the break-even) plans in hf" test -s "$tmp/$m-100.yaml"
    "$SUBMOE" apply "$tmp/$m-100.yaml" -o "$tmp/$m-100" -q
    check "... and is written dense" sh -c "! grep -a -q 'weight_a' '$tmp/$m-100/model.safetensors'"
done
# (compared with the full-rank merge in the same format: hf's router is a collapse, one row per
# group, where the native output keeps every row for remap)
"$SUBMOE" plan "$DEMO" --ratio 0.25 -m submoe --format hf $calib -o "$tmp/full-hf.yaml" -q
"$SUBMOE" apply "$tmp/full-hf.yaml" -o "$tmp/full-hf" -q
check_eq "dense rank-100 output: the full-rank output's size" "$(total "$tmp/submoe-100" total)" \
    "$(total "$tmp/full-hf" total)"
[ "$fail" -eq 0 ]

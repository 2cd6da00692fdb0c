#!/bin/sh
# plan + apply end to end on the bundled demo: determinism (same plan, same bytes), the three
# output formats and their equivalences under eval, refusals (existing output, formats that
# cannot hold a plan), interrupts, unwritable and full output filesystems, and the source model
# left untouched.
set -u
. "$SRCDIR/tests/lib.sh"
scratch apply
ppl() { "$SUBMOE" eval "$1" --tokens "$SRCDIR/data/heldout.u32" --max-tokens 8192 --precision fp32 --quiet; }
close() { # close A B RELTOL
    awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t * b) }'
}
src_sum() { cat "$DEMO"/* | cksum; }
before=$(src_sum)

# A plan: 8 -> 6 experts per layer, with a stats cache.
calib="-t $SRCDIR/data/calib.u32 --samples 8 --seq-len 128 --keep 600 --heldout 120 -c $tmp/demo.stats"
"$SUBMOE" plan "$DEMO" --ratio 0.25 -m submoe $calib -o "$tmp/p.yaml" -q
check "plan writes a plan and a stats file" test -s "$tmp/p.yaml" -a -s "$tmp/demo.stats"
check "the plan spells out every MoE layer's groups" test "$(grep -c 'groups: \[\[' "$tmp/p.yaml")" -eq 4
touch -d '2000-01-01' "$tmp/demo.stats"
"$SUBMOE" plan "$DEMO" --ratio 0.25 -m submoe $calib -o "$tmp/p2.yaml" -q
check "planning again gives the same plan" cmp -s "$tmp/p.yaml" "$tmp/p2.yaml"
check "... and reuses the stats file (not rewritten)" test -z "$(find "$tmp/demo.stats" -newer "$tmp/p.yaml")"

# Determinism and atomicity.
"$SUBMOE" apply "$tmp/p.yaml" -o "$tmp/a" -q
"$SUBMOE" apply "$tmp/p.yaml" -o "$tmp/b" -q
check "apply writes config.json and model.safetensors" test -s "$tmp/a/config.json" -a -s "$tmp/a/model.safetensors"
check "apply twice: identical bytes" sh -c "cd '$tmp/a' && for f in *; do cmp -s \"\$f\" '$tmp/b/'\"\$f\" || exit 1; done"
"$SUBMOE" apply "$tmp/p.yaml" -o "$tmp/a" -q 2>"$tmp/err"
st=$?
check "an existing output is refused without --force" sh -c "[ $st -eq 1 ] && grep -q 'already exists (use --force' '$tmp/err'"
check "refusal: one line" test "$(wc -l <"$tmp/err")" -eq 1
"$SUBMOE" apply "$tmp/p.yaml" -o "$tmp/a" --force -q
check "--force replaces it" cmp -s "$tmp/a/model.safetensors" "$tmp/b/model.safetensors"
check "no temporary directories left" test -z "$(ls "$tmp" | grep tmp-)"

# Formats: the native form runs in eval; collapsed-router hf equals the native form with that
# router; a remap plan in hf-expanded equals the same plan in the native form. A plan that names
# no router gets the best its format holds (issue 18): remap natively, collapse-kl in hf.
p_native=$(ppl "$tmp/a")
"$SUBMOE" apply "$tmp/p.yaml" -o "$tmp/hf" --format hf -q
p_hf=$(ppl "$tmp/hf")
sed 's/^  ratio: 0.25$/  ratio: 0.25\n  router: collapse-kl/' "$tmp/p.yaml" >"$tmp/kl.yaml"
"$SUBMOE" apply "$tmp/kl.yaml" -o "$tmp/kln" -q
p_kln=$(ppl "$tmp/kln")
check "hf loads and evaluates: no router means collapse-kl (ppl $p_hf = native collapse-kl $p_kln)" close "$p_hf" "$p_kln" 1e-6
check "hf reduces the expert count in config.json" grep -q '"num_local_experts": 6' "$tmp/hf/config.json"
sed 's/^  ratio: 0.25$/  ratio: 0.25\n  router: remap/' "$tmp/p.yaml" >"$tmp/remap.yaml"
"$SUBMOE" apply "$tmp/remap.yaml" -o "$tmp/rn" -q
"$SUBMOE" apply "$tmp/remap.yaml" -o "$tmp/rx" --format hf-expanded -q
p_rn=$(ppl "$tmp/rn")
p_rx=$(ppl "$tmp/rx")
check "remap: hf-expanded ($p_rx) = native with expert maps ($p_rn)" close "$p_rx" "$p_rn" 1e-6
check "native remap layers record their expert maps" grep -q '"expert_map"' "$tmp/rn/config.json"
check "a plan without a router is applied with remap in the native format" \
    cmp -s "$tmp/a/model.safetensors" "$tmp/rn/model.safetensors"
p_orig=$(ppl "$DEMO")
check "merging 8 -> 6 costs perplexity ($p_orig -> $p_native)" awk -v a="$p_native" -v b="$p_orig" 'BEGIN { exit !(a > b) }'
"$SUBMOE" apply "$tmp/remap.yaml" -o "$tmp/rh" --format hf -q 2>"$tmp/err"
st=$?
check "hf refuses a remap router with a reason" sh -c "[ $st -eq 1 ] && grep -q 'hf needs a collapsed router' '$tmp/err' && [ ! -e '$tmp/rh' ]"

# defaults.svd: the demo's Grams (256 × 256) are small enough for AUTO to solve them exactly, so
# `exact` gives auto's bytes; `randomized` at rank 32 takes another path, close but not equal.
sed 's/^    rank: full$/    rank: 32/' "$tmp/p.yaml" >"$tmp/r32.yaml"
for s in exact randomized; do
    sed "/^defaults:\$/a\\  svd: $s" "$tmp/r32.yaml" >"$tmp/r32-$s.yaml"
    "$SUBMOE" apply "$tmp/r32-$s.yaml" -o "$tmp/r32-$s" -q
done
"$SUBMOE" apply "$tmp/r32.yaml" -o "$tmp/r32-auto" -q
check "svd: exact gives auto's bytes on the demo" cmp -s "$tmp/r32-exact/model.safetensors" "$tmp/r32-auto/model.safetensors"
check "svd: randomized takes effect (other bytes)" sh -c "! cmp -s '$tmp/r32-exact/model.safetensors' '$tmp/r32-randomized/model.safetensors'"
p_rx32=$(ppl "$tmp/r32-exact")
p_rr32=$(ppl "$tmp/r32-randomized")
check "rank 32: randomized ($p_rr32) within 2% of exact ($p_rx32)" close "$p_rr32" "$p_rx32" 0.02
"$SUBMOE" plan "$DEMO" --ratio 0.25 -m submoe --svd randomized $calib -o "$tmp/psvd.yaml" -q
check "plan --svd records defaults.svd" grep -q '^  svd: randomized$' "$tmp/psvd.yaml"
"$SUBMOE" plan "$DEMO" --ratio 0.25 -m submoe --rank 32 --svd randomized $calib -o "$tmp/psvd32.yaml" -q
check "... and a randomized merge says so in the layer's comments" \
    grep -q '^  # union subspaces: [1-9][0-9]* of [1-9][0-9]* randomized (approximate' "$tmp/psvd32.yaml"
"$SUBMOE" plan "$DEMO" --ratio 0.25 -m submoe --rank 32 --svd exact $calib -o "$tmp/psvdx.yaml" -q
check "... which exact merges do not" sh -c "grep -q '^  svd: exact' '$tmp/psvdx.yaml' && ! grep -q 'union subspaces' '$tmp/psvdx.yaml'"
"$SUBMOE" plan "$DEMO" --ratio 0.25 --svd gesdd $calib -o "$tmp/psvd2.yaml" -q 2>"$tmp/err"
st=$?
check "plan --svd refuses an unknown solver, writing nothing" \
    sh -c "[ $st -ne 0 ] && grep -q \"unknown svd solver 'gesdd'\" '$tmp/err' && [ ! -e '$tmp/psvd2.yaml' ]"

# Low-rank factors in the native format.
sed 's/^  method: submoe$/  method: submoe-whitened/; s/^    method: submoe$/    method: submoe-whitened/; s/^    rank: full$/    rank: 32/' \
    "$tmp/p.yaml" >"$tmp/lr.yaml"
"$SUBMOE" apply "$tmp/lr.yaml" -o "$tmp/lr" -q
check "submoe-whitened rank 32 writes weight_a/weight_b factors" sh -c "grep -a -q 'w1.weight_a' '$tmp/lr/model.safetensors'"
p_lr=$(ppl "$tmp/lr")
check "factored model evaluates (ppl $p_lr)" awk -v a="$p_lr" 'BEGIN { exit !(a > 1 && a < 100) }'
"$SUBMOE" inspect "$tmp/lr" >"$tmp/insp"
check "inspect reads the native format: per-layer counts and factor ranks" grep -q '^    2  MoE          6            8  18 of 18 matrices as A.B, rank 32 (expert map)' "$tmp/insp"
"$SUBMOE" inspect "$tmp/rn" >"$tmp/insp"
check "inspect shows remapped layers' router rows" grep -q '^    1  MoE          6            8  dense (expert map)' "$tmp/insp"
"$SUBMOE" diff "$DEMO" "$tmp/rx" >"$tmp/diff"
check "diff source vs hf-expanded: same tensors, merged experts differ" grep -q '^127 tensors compared, [1-9][0-9]* differ' "$tmp/diff"
"$SUBMOE" diff "$tmp/rx" "$tmp/rx" --json >"$tmp/diff"
check "diff of a model with itself: nothing differs" grep -q '"differ": 0' "$tmp/diff"
check "factored model is smaller" test "$(wc -c <"$tmp/lr/model.safetensors")" -lt "$(wc -c <"$tmp/a/model.safetensors")"
"$SUBMOE" apply "$tmp/lr.yaml" -o "$tmp/lrh" --format hf -q 2>"$tmp/err"
check "hf refuses low-rank factors" grep -q 'cannot hold low-rank factors; write the submoe format' "$tmp/err"

# Interrupts, unwritable and full output filesystems: clear error, nothing left.
"$SUBMOE" apply "$tmp/p.yaml" -o /proc/submoe-out -q 2>"$tmp/err"
st=$?
check "unwritable output: exit 1, one message naming it" sh -c "[ $st -eq 1 ] && grep -q '/proc/submoe-out' '$tmp/err' && [ \$(wc -l <'$tmp/err') -eq 1 ]"
(ulimit -f 1000; "$SUBMOE" apply "$tmp/p.yaml" -o "$tmp/full" -q 2>"$tmp/err")
st=$?
check "full filesystem (file size limit): exit 1 naming the file" sh -c "[ $st -eq 1 ] && grep -q 'model.safetensors' '$tmp/err'"
check "full filesystem: nothing left" sh -c "! ls -d '$tmp'/full* >/dev/null 2>&1"
"$SUBMOE" synth --arch mixtral --layers 4 --hidden 512 --intermediate 2048 --experts 8 --heads 8 --kv-heads 2 \
    -q --out "$tmp/big"
"$SUBMOE" plan "$tmp/big" --experts 6 --samples 2 --seq-len 64 --keep 100 -c "$tmp/big.stats" -o "$tmp/big.yaml" -q
for sig in INT:2 TERM:15; do
    num=${sig#*:}
    sig=${sig%:*}
    out="$tmp/big-$sig"
    "$SUBMOE" apply "$tmp/big.yaml" -o "$out" -q 2>/dev/null &
    pid=$!
    i=0
    while [ ! -d "$out.tmp-$pid" ] && [ $i -lt 400 ]; do sleep 0.02; i=$((i + 1)); done
    kill -$sig $pid
    wait $pid
    st=$?
    check "SIG$sig during apply: exit $st, no output, no temporary" \
        sh -c "[ $st -eq $((128 + num)) ] && ! ls -d '$out'* >/dev/null 2>&1"
done
# The default method, auto: the choice and its reasons are recorded; apply follows them.
"$SUBMOE" plan "$DEMO" --ratio 0.25 $calib -o "$tmp/auto.yaml" -q
check "default plan: method auto with the choice recorded per layer" test "$(grep -c '^    chosen: "prune-\|^    chosen: "submoe' "$tmp/auto.yaml")" -eq 4
# auto's plan guard (issue 18): its scores and the plan kept in the header; a uniform plan kept is
# named first in every auto layer's choice (what apply builds, without searching again).
check "default plan: the header records auto's plan guard and the plan it kept" \
    grep -q "^# auto's plan guard, held-out loss on 8 windows .*per-layer .*uniform prune-output .*; kept: " "$tmp/auto.yaml"
kept=$(sed -n "s/^# auto's plan guard.*; kept: \(uniform \)\{0,1\}//p" "$tmp/auto.yaml")
check "the kept plan ($kept) is the choice of every auto layer" \
    sh -c "[ '$kept' = per-layer ] || [ \$(grep -c '^    chosen: \"$kept (' '$tmp/auto.yaml') -eq 4 ]"
"$SUBMOE" apply "$tmp/auto.yaml" -o "$tmp/auto" -q
p_auto=$(ppl "$tmp/auto")
check "auto ($p_auto) is no worse than the submoe merge ($p_native) on the demo" awk -v a="$p_auto" -v b="$p_native" 'BEGIN { exit !(a <= b) }'
# Tokenizer and generation files travel with the model; shards get an index.
"$SUBMOE" synth --arch qwen2_moe --layers 2 --hidden 256 --intermediate 256 --experts 8 --heads 4 --kv-heads 2 -q \
    --out "$tmp/qw"
printf '{"model": "fake"}\n' >"$tmp/qw/tokenizer.json"
printf '{"bos_token_id": 1}\n' >"$tmp/qw/generation_config.json"
"$SUBMOE" plan "$tmp/qw" --experts 4 --method submoe -t "$SRCDIR/data/calib.u32" --samples 4 --seq-len 64 \
    --keep 200 --shard-size 1M -o "$tmp/qw.yaml" -q
"$SUBMOE" apply "$tmp/qw.yaml" -o "$tmp/qwm" --format hf -q
check "tokenizer.json and generation_config.json are copied" \
    sh -c "cmp -s '$tmp/qw/tokenizer.json' '$tmp/qwm/tokenizer.json' && cmp -s '$tmp/qw/generation_config.json' '$tmp/qwm/generation_config.json'"
check "1M shards: several files and model.safetensors.index.json" \
    sh -c "[ -s '$tmp/qwm/model.safetensors.index.json' ] && [ \$(ls '$tmp/qwm' | grep -c '^model-0000[0-9]-of-') -ge 3 ]"
check "qwen2_moe hf output: shared expert kept, 4 experts, evaluates" \
    sh -c "grep -q '\"num_experts\": 4' '$tmp/qwm/config.json' && '$SUBMOE' eval '$tmp/qwm' --tokens '$SRCDIR/data/heldout.u32' --max-tokens 2048 -q >/dev/null"
# The output is never the source model, inside it or around it, even with --force; an existing
# output is refused before any work.
cp -r "$DEMO" "$tmp/srccopy"
"$SUBMOE" plan "$tmp/srccopy" --ratio 0.25 -m submoe $calib -o "$tmp/sc.yaml" -q
for o in "$tmp/srccopy" "$tmp/srccopy/out" "$tmp"; do
    "$SUBMOE" apply "$tmp/sc.yaml" -o "$o" --force -q 2>"$tmp/err"
    st=$?
    check "apply -o $(basename "$o") --force around the source model: refused" \
        sh -c "[ $st -eq 1 ] && grep -q 'the source model .* is never modified' '$tmp/err' && [ ! -e '$tmp/srccopy/out' ] && cmp -s '$tmp/srccopy/model.safetensors' '$DEMO/model.safetensors'"
done
mkdir "$tmp/exists"
"$SUBMOE" apply "$tmp/sc.yaml" -o "$tmp/exists" -q 2>"$tmp/err"
check "an existing output is refused before calibration" grep -q 'exists (use --force' "$tmp/err"
# method keep needs no calibration (it crashed); plan --method keep writes such a plan.
"$SUBMOE" plan "$DEMO" --method keep --experts 8 -o "$tmp/keep.yaml" -q
st=$?
"$SUBMOE" apply "$tmp/keep.yaml" -o "$tmp/kept" -q
check "plan and apply of a keep plan: exit $st, a model identical in function" \
    sh -c "[ $st -eq 0 ] && [ \"\$('$SUBMOE' eval '$tmp/kept' --tokens '$SRCDIR/data/heldout.u32' --max-tokens 2048 -q)\" = \"\$('$SUBMOE' eval '$DEMO' --tokens '$SRCDIR/data/heldout.u32' --max-tokens 2048 -q)\" ]"
# Options are checked where they are typed.
"$SUBMOE" plan "$DEMO" --experts 3.7 -o "$tmp/x.yaml" -q 2>"$tmp/err"
check "--experts 3.7: not a whole number" grep -q -- "--experts: '3.7' is not a whole number" "$tmp/err"
"$SUBMOE" plan "$DEMO" --experts 1 -o "$tmp/x.yaml" -q 2>"$tmp/err"
check "--experts 1: fewer than top-k, named by its option" grep -q -- "--experts 1: fewer than the 2 experts" "$tmp/err"
"$SUBMOE" plan "$DEMO" --ratio 0.5 --rank 0 -o "$tmp/x.yaml" -q 2>"$tmp/err"
check "--rank 0: one clear message" sh -c "[ \"\$(cat '$tmp/err')\" = \"submoe plan: --rank: invalid rank '0' (expected full, an integer ≥ 1 or a fraction)\" ]"
"$SUBMOE" plan "$DEMO" --ratio 0.5 -m submoe --allocation adaptive --format hf $calib -o "$tmp/x.yaml" -q 2>"$tmp/err"
check "--format hf with adaptive allocation: refused at plan time, no plan" \
    sh -c "grep -q -- '--format hf: layers keep different numbers of experts' '$tmp/err' && [ ! -e '$tmp/x.yaml' ]"
(cd "$tmp" && "$SUBMOE" plan "$DEMO" --ratio 0.5 -m submoe $calib --out-dir rel-out -o "$tmp/srccopy/../p3.yaml" -q)
check "--out-dir DIR is relative to where it was typed" grep -q "path: $tmp/rel-out" "$tmp/p3.yaml"
# auto on clustered groups also tries dominant ones; a layer merged on them records those groups,
# and apply of the plan gives the plan's own choice.
check "default plan: auto scores dominant groups on every layer" \
    test "$(grep -c '^    chosen: .*/dominant' "$tmp/auto.yaml")" -eq 4
check "the source model is untouched" test "$(src_sum)" = "$before"
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

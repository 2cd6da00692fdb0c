#!/bin/sh
# Numbers that are not numbers (issue 14 §5): Inf and NaN in weights of any role and dtype, in
# stats files, and values whose products overflow are refused with one message naming the
# tensor, the layer and the file; nothing is written or printed, the exit status is 1. No JSON
# writer prints a partial object or `{}`. Values are planted with tests/st_poke.
set -u
. "$SRCDIR/tests/lib.sh"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/submoe-finite.XXXXXX")
trap 'tmux -S "$tmp/t.sock" kill-server >/dev/null 2>&1; rm -rf "$tmp"' EXIT
sm() { timeout 120 "$SUBMOE" "$@"; }
poke() { timeout 30 "$BUILDDIR/tests/st_poke" "$@"; }
H="$SRCDIR/data/heldout.u32"
ev() { ev_m=$1; shift; sm eval "$ev_m" --tokens "$H" --max-tokens 512 --seq-len 64 -q "$@"; }
# copy MODEL to DIR and plant VALUE in TENSOR (all elements, or FIRST [COUNT])
planted() { rm -rf "$2" && cp -r "$1" "$2" && shift 2 && poke "$@"; }

sm synth --arch mixtral --out "$tmp/m" -q || bad "synth mixtral"
sm calibrate "$tmp/m" --tokens "$SRCDIR/data/calib.u32" --samples 8 --seq-len 64 -o "$tmp/m.stats" -q ||
    bad "calibrate"
cd "$tmp" || exit 1

# 1. The issue's example: moe_input of all 3e38 (finite) makes the router fit overflow. apply
# used to write NaN gate weights with exit 0; now nothing is published.
cp m.stats big.stats
poke big.stats layers.0.moe_input 3e38 && poke big.stats layers.1.moe_input 3e38
sm plan m --experts 4 --method submoe --calib big.stats -o big.yaml -q 2>e1
check_expr "plan whose merge overflows: refused, the layer named (no silently missing error)" \
    '[ $? -eq 1 ] && grep -q "layer 0: the merged layer.s held-out output error is not finite" e1 && [ ! -e big.yaml ]'
# the same plan made on sound statistics, then applied with the overflowing ones
sm plan m --experts 4 --method submoe --router collapse-lstsq --calib m.stats -o ok.yaml -q && sed 's|m\.stats|big.stats|' ok.yaml >big.yaml
sm apply big.yaml -o out1 -q 2>e2
check_expr "apply of overflowing merge: exit 1" '[ $? -eq 1 ]'
check_expr "message names output, layer and gate.weight" \
    'grep -q "out1: layer 0: tensor .model.layers.0.block_sparse_moe.gate.weight.*nan" e2'
check_expr "nothing published, no temporary left" '[ ! -e out1 ] && [ -z "$(ls | grep "out1")" ]'
sm plan m --experts 4 --calib big.stats -o auto.yaml -q 2>e3
check_expr "method auto: overflow is named, not 'needs held-out rows'" \
    '[ $? -eq 1 ] && grep -q "not finite" e3 && ! grep -q "held-out calibration rows" e3 && [ ! -e auto.yaml ]'

# 2. Statistics computed from such inputs: router logits and Grams overflow.
sm plan m --experts 4 --method submoe-whitened --calib big.stats -o w.yaml -q 2>e4
check_expr "router logits overflow named with the stats file" \
    '[ $? -eq 1 ] && grep -q "big.stats.*layer 0.*router logits.*not finite" e4 && [ ! -e w.yaml ]'
cp m.stats g.stats
poke g.stats layers.0.moe_input 1e20
sm plan m --experts 4 --method submoe-whitened --calib g.stats -o w.yaml -q 2>e5
check_expr "statistics of 1e20 inputs overflow: refused" '[ $? -eq 1 ] && grep -q "g.stats.*not finite" e5 && [ ! -e w.yaml ]'
for t in sim_output sim_logit sim_weight expert_outputs; do
    cp m.stats s.stats
    poke s.stats "layers.1.$t" nan 3
    sm plan m --experts 4 --method submoe --calib s.stats -o s.yaml -q 2>e6
    check_expr "stored $t with a NaN: refused naming the file" '[ $? -eq 1 ] && grep -q "s.stats.*layer 1.*not finite" e6 && [ ! -e s.yaml ]'
    rm -f s.yaml
done
cp m.stats r.stats
poke r.stats layers.1.router_logits inf 17
sm plan m --experts 4 --method submoe --calib r.stats -o r.yaml -q 2>e6
check_expr "stored router_logits with an Inf: refused naming the file" \
    '[ $? -eq 1 ] && grep -q "r.stats: tensor .layers.1.router_logits.: row 2 has a non-finite value" e6 && [ ! -e r.yaml ]'
cp m.stats i.stats
poke i.stats layers.0.moe_input inf 70
sm plan m --experts 4 --method submoe --calib i.stats --heldout 8 -o i.yaml -q 2>e7
check_expr "Inf in moe_input: refused" '[ $? -eq 1 ] && grep -q "moe_input.*non-finite" e7 && [ ! -e i.yaml ]'

# 3. eval of a model with NaN weights: an error naming tensor, layer and file (was: nan, exit 0;
# --json printed {}).
planted m mn mn/model.safetensors model.layers.1.self_attn.q_proj.weight nan 5
out=$(ev mn 2>e8)
check_expr "eval of NaN weights: exit 1, no perplexity" '[ $? -eq 1 ] && [ -z "$out" ]'
check_expr "names layer, file and tensor" \
    'grep -q "layer 1: mn/model.safetensors: tensor .model.layers.1.self_attn.q_proj.weight. has a non-finite value (nan) at element 5" e8'
out=$(ev mn --json 2>e9)
check_expr "eval --json of NaN weights: an error, never {}" '[ $? -eq 1 ] && [ -z "$out" ] && grep -q "q_proj" e9'
out=$(sm diff m mn --json 2>e10)
check_expr "diff --json with a NaN tensor: an error naming it" '[ $? -eq 1 ] && [ -z "$out" ] && grep -q "mn/model.safetensors.*q_proj" e10'
sm calibrate mn --tokens "$SRCDIR/data/calib.u32" --samples 8 --seq-len 64 -o mn.stats -q 2>e11
check_expr "calibrate of NaN weights: refused, no stats file" '[ $? -eq 1 ] && grep -q "q_proj" e11 && [ -z "$(ls | grep mn.stats)" ]'
# a non-expert tensor is copied by apply: never written with its NaN
sm plan mn --experts 4 --method submoe --calib m.stats -o mn.yaml -q 2>/dev/null &&
    sm apply mn.yaml -o outn -q 2>e12
check_expr "apply never copies a NaN tensor" '[ $? -eq 1 ] && grep -q "outn.*q_proj" e12 && [ -z "$(ls | grep outn)" ]'

# 4. NaN or Inf in every weight role, in every dtype: the loader names the tensor.
for t in model.embed_tokens.weight model.layers.0.input_layernorm.weight model.layers.0.self_attn.k_proj.weight \
    model.layers.0.self_attn.v_proj.weight model.layers.0.self_attn.o_proj.weight \
    model.layers.1.post_attention_layernorm.weight model.layers.1.block_sparse_moe.gate.weight \
    model.layers.1.block_sparse_moe.experts.3.w1.weight model.layers.1.block_sparse_moe.experts.3.w2.weight \
    model.layers.0.block_sparse_moe.experts.7.w3.weight model.norm.weight lm_head.weight; do
    planted m mr mr/model.safetensors "$t" nan
    out=$(ev mr 2>e13)
    check_expr "NaN in $t: refused by name" '[ $? -eq 1 ] && [ -z "$out" ] && grep -q "tensor .$t. has a non-finite value (nan)" e13'
done
for dt in f16 bf16; do
    sm synth --arch qwen2_moe --layers 2 --hidden 32 --intermediate 32 --vocab 256 --dtype "$dt" --out "q$dt" -q
    for t in model.layers.0.mlp.shared_expert.up_proj.weight model.layers.1.mlp.shared_expert_gate.weight \
        model.layers.1.self_attn.q_proj.bias model.layers.0.mlp.experts.2.down_proj.weight; do
        planted "q$dt" qr qr/model.safetensors "$t" inf 3 1
        out=$(ev qr 2>e14)
        check_expr "Inf in $dt $t: refused by name" '[ $? -eq 1 ] && [ -z "$out" ] && grep -q "tensor .$t. has a non-finite value (inf) at element 3" e14'
    done
done
sm synth --arch olmoe --layers 2 --hidden 32 --intermediate 32 --vocab 256 --experts 8 --dtype bf16 --out ob -q
planted ob obr obr/model.safetensors model.layers.1.self_attn.q_norm.weight -inf 0 1
ev obr >/dev/null 2>e15
check_expr "-Inf in a BF16 q_norm: refused" '[ $? -eq 1 ] && grep -q "q_norm.weight. has a non-finite value (-inf)" e15'

# 5. Finite weights whose activations overflow: eval names the first layer whose output is not
# finite (and the head when the logits overflow).
planted m mo mo/model.safetensors model.layers.0.self_attn.o_proj.weight 3e38
ev mo >/dev/null 2>e16
check_expr "overflow in layer 0's attention: layer 0 named" '[ $? -eq 1 ] && grep -q "layer 0: the hidden state after this layer is not finite" e16'
planted m mo mo/model.safetensors model.layers.1.block_sparse_moe.experts.2.w2.weight 3e38
ev mo >/dev/null 2>e17
check_expr "overflow in layer 1's experts: layer 1 named" '[ $? -eq 1 ] && grep -q "layer 1: the hidden state after this layer is not finite" e17'
planted m mo mo/model.safetensors lm_head.weight 3e38
out=$(ev mo --json 2>e18)
check_expr "logits overflow: lm_head named, no JSON" '[ $? -eq 1 ] && [ -z "$out" ] && grep -q "lm_head: the logits" e18'
planted m mo mo/model.safetensors model.layers.0.block_sparse_moe.gate.weight 3e38
sm calibrate mo --tokens "$SRCDIR/data/calib.u32" --samples 8 --seq-len 64 -o mo.stats -q 2>e19
check_expr "calibrate of overflowing router: refused, nothing written" \
    '[ $? -eq 1 ] && grep -q "layer 0" e19 && grep -q "not finite" e19 && [ -z "$(ls | grep mo.stats)" ]'

# 6. A finite F32 value beyond the F16 range becomes Inf on export to F16: refused.
planted m mh mh/model.safetensors model.layers.0.self_attn.k_proj.weight 1e5 7 1
sm plan mh --experts 4 --method submoe --calib m.stats -o f16.yaml -q
sed 's/^calibration:/output: {dtype: f16}\ncalibration:/' f16.yaml >f16b.yaml
sm apply f16b.yaml -o outh -q 2>e20
check_expr "F16 overflow on export: refused naming tensor and dtype" \
    '[ $? -eq 1 ] && grep -q "outh: layer 0: tensor .model.layers.0.self_attn.k_proj.weight. would hold a non-finite value (inf as F16) at element 7" e20 && [ -z "$(ls | grep outh)" ]'
sm apply f16.yaml -o outf -q 2>e21
check_expr "the same model kept in F32 is written" '[ $? -eq 0 ] && [ -d outf ]'

# 7. JSON writers never print a partial object: a value jansson cannot encode (a path that is
# not UTF-8) is an error, not a silently missing field or {}.
bad_name=$(printf 'm\377')
cp -r m "$bad_name"
out=$(sm inspect --json "$bad_name" 2>e22)
check_expr "inspect --json with a non-UTF-8 path: error, no output" '[ $? -eq 1 ] && [ -z "$out" ] && grep -q "path" e22'
cp "$H" "$(printf 't\377.u32')"
out=$(sm eval m --tokens "$(printf 't\377.u32')" --max-tokens 256 --seq-len 64 --json 2>e23)
check_expr "eval --json with a non-UTF-8 token path: error, never {}" '[ $? -eq 1 ] && [ -z "$out" ] && grep -q "tokens_file" e23'
out=$(sm diff m "$bad_name" --json 2>e24)
check_expr "diff --json with a non-UTF-8 path: error, no output" '[ $? -eq 1 ] && [ -z "$out" ]'
out=$(ev m --json)
check_expr "eval --json of a sound model still prints its result" 'echo "$out" | grep -q "\"perplexity\": [0-9]"'

# 8. The workbench's previews say so instead of showing nan (and its commit is apply's export).
if command -v tmux >/dev/null 2>&1; then
    T() { tmux -S "$tmp/t.sock" "$@"; }
    T new-session -d -s wb -x 100 -y 30 "timeout --foreground 60 '$SUBMOE' tui '$tmp/m' --calib '$tmp/big.stats'; sleep 30"
    i=0
    while [ $i -lt 300 ] && ! T capture-pane -t wb -p | grep -q "not finite"; do
        sleep 0.1
        i=$((i + 1))
    done
    check_expr "workbench preview of an overflowing merge: 'not finite', not nan" \
        'T capture-pane -t wb -p | grep -q "not finite" && ! T capture-pane -t wb -p | grep -qi " nan"'
    T kill-server >/dev/null 2>&1
else
    echo "# tmux not installed: workbench check skipped"
fi

echo "$n checks, $fail failed"
[ $fail -eq 0 ]

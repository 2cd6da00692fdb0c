#!/bin/sh
# `submoe inspect` on synthetic models of all five architectures in both expert layouts: the
# parameter counts it reports must equal the ones computed here from the shapes alone.
set -u
. "$SRCDIR/tests/lib.sh"
scratch inspect
L=3 H=64 I=128 E=8 K=2 NH=4 NKV=2 HD=16 V=256 D=256 S=256 NS=2
json_int() { sed -n "s/.*\"$1\": \([0-9]*\).*/\1/p" "$2" | head -n 1; }
for arch in mixtral qwen2_moe qwen3_moe olmoe deepseek; do
    # Expected counts, from first principles.
    attn=$((2 * H + NH * HD * H + 2 * NKV * HD * H + H * NH * HD))
    case $arch in
        qwen2_moe) attn=$((attn + NH * HD + 2 * NKV * HD)) ;;
        qwen3_moe) attn=$((attn + 2 * HD)) ;;
        olmoe) attn=$((attn + NH * HD + NKV * HD)) ;;
    esac
    moe=$((E * H + E * 3 * H * I))
    case $arch in
        qwen2_moe) moe=$((moe + 3 * H * S + H)) ;;
        deepseek) moe=$((moe + 3 * H * NS * I)) ;;
    esac
    nmoe=$L
    [ "$arch" = deepseek ] && nmoe=$((L - 1))
    total=$((2 * V * H + H + L * attn + nmoe * moe + (L - nmoe) * 3 * H * D))
    per=$((3 * H * I))
    active=$((total - nmoe * (E - K) * per))
    for layout in per-expert fused; do
        d="$tmp/$arch-$layout"
        "$SUBMOE" synth --arch "$arch" --layout "$layout" --layers $L --hidden $H --intermediate $I --experts $E \
            --top-k $K --heads $NH --kv-heads $NKV --vocab $V --dense-intermediate $D --shared-intermediate $S \
            --shared-experts $NS --first-dense 1 --dtype bf16 -q --out "$d" || { bad "synth $arch $layout failed"; continue; }
        "$SUBMOE" inspect --json "$d" >"$d.json" || { bad "inspect $arch $layout failed"; continue; }
        check_eq "$arch $layout total" "$(json_int total "$d.json")" "$total"
        check_eq "$arch $layout per expert" "$(json_int per_expert "$d.json")" "$per"
        check_eq "$arch $layout active per token" "$(json_int active_per_token "$d.json")" "$active"
        check_eq "$arch $layout layout" "$(sed -n 's/.*"expert_layout": "\([a-z-]*\)".*/\1/p' "$d.json")" "$layout"
        # Every stored element is 2 bytes (bf16): the file holds the header plus exactly 2*total bytes.
        size=$(wc -c <"$d/model.safetensors")
        hlen=$(od -An -t u8 -N 8 "$d/model.safetensors" | tr -d ' ')
        check_eq "$arch $layout file size" "$size" "$((8 + hlen + 2 * total))"
        "$SUBMOE" inspect "$d" >"$d.txt" || bad "inspect $arch $layout (human output) failed"
        grep -q "^Architecture   $arch" "$d.txt" && grep -q "top-$K" "$d.txt"
        check_eq "$arch $layout human output" "$?" 0
    done
done
# The bundled demo model.
if "$SUBMOE" inspect --json "$DEMO" >"$tmp/demo.json"; then
    check_eq "demo architecture" "$(sed -n 's/.*"architecture": "\([a-z0-9_]*\)".*/\1/p' "$tmp/demo.json")" mixtral
else
    bad "inspect of the demo model failed"
fi
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

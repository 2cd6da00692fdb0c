#!/bin/sh
# Issue 5's acceptance, checked against the PyTorch reference (tools/ref_forward.py, Debian's
# python3-torch): a merged model written in the standard Hugging Face layout (hf) loads in that
# independent script and gives the perplexity `submoe eval` gives on it (within 0.5%), and the
# hf-expanded output (original expert count, original router) gives the perplexity of the same
# merge with the remap router in submoe's native format (exactly, up to float summation order).
#   make check-hf-reference      (or: bench/check_hf_reference.sh SUBMOE [MODEL] [TOKENS])
set -eu
submoe=${1:-src/submoe}
here=$(cd "$(dirname "$0")" && pwd)
model=${2:-$here/../data/demo}
tokens=${3:-$here/../data/heldout.u32}
calib=$here/../data/calib.u32
python=${PYTHON:-/usr/bin/python3}
if ! "$python" -c 'import torch' 2>/dev/null; then
    echo "check_hf_reference: $python has no torch (apt-get install python3-torch)" >&2
    exit 1
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/submoe-hfref.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
field() { echo "$1" | sed -n "s/.*\"$2\": *\([0-9.eE+-]*\).*/\1/p"; }
fail=0

# 50% fewer experts, subspace merge, collapsed router: the hf layout.
"$submoe" plan "$model" --ratio 0.5 -m submoe --router collapse-lstsq --format hf -t "$calib" \
    -c "$tmp/calib.stats" -o "$tmp/hf.yaml" -q
"$submoe" apply "$tmp/hf.yaml" -o "$tmp/hf" -q
ours=$("$submoe" eval "$tmp/hf" --tokens "$tokens" --json)
ref=$("$python" "$here/../tools/ref_forward.py" --bench "$tmp/hf" --tokens "$tokens" | tail -n 1)
p_ours=$(field "$ours" perplexity)
p_ref=$(field "$ref" perplexity)
printf 'hf output (%s):           submoe eval %.6f   PyTorch reference %.6f\n' \
    "$(sed -n 's/.*"num_local_experts": *\([0-9]*\).*/\1 experts/p' "$tmp/hf/config.json")" "$p_ours" "$p_ref"
if awk -v a="$p_ours" -v b="$p_ref" 'BEGIN { d = (a - b) / b; if (d < 0) d = -d; printf "  relative difference %.2e (at most 5e-3): ", d; exit !(d <= 5e-3) }'; then
    echo "ok"
else
    echo "FAILED"
    fail=1
fi

# The same groups with the remap router: native format vs hf-expanded, and the reference.
sed 's/router: collapse-lstsq/router: remap/' "$tmp/hf.yaml" >"$tmp/remap.yaml"
"$submoe" apply "$tmp/remap.yaml" -o "$tmp/native" --format submoe -q
"$submoe" apply "$tmp/remap.yaml" -o "$tmp/expanded" --format hf-expanded -q
p_native=$(field "$("$submoe" eval "$tmp/native" --tokens "$tokens" --json)" perplexity)
p_exp=$(field "$("$submoe" eval "$tmp/expanded" --tokens "$tokens" --json)" perplexity)
p_exp_ref=$(field "$("$python" "$here/../tools/ref_forward.py" --bench "$tmp/expanded" --tokens "$tokens" | tail -n 1)" perplexity)
printf 'remap router:   native (submoe eval) %.9f   hf-expanded (submoe eval) %.9f   (PyTorch %.6f)\n' \
    "$p_native" "$p_exp" "$p_exp_ref"
# Exact up to float summation order: with remap, a token that picks two members of one group runs
# the merged expert once with the summed weight; hf-expanded runs it once per slot and adds.
if awk -v a="$p_exp" -v b="$p_native" 'BEGIN { d = (a - b) / b; if (d < 0) d = -d; printf "  relative difference %.2e (at most 1e-6, float summation order): ", d; exit !(d <= 1e-6) }'; then
    echo "ok"
else
    echo "FAILED"
    fail=1
fi
exit $fail

#!/bin/sh
# Tokens per second of `submoe eval` against the PyTorch reference (tools/ref_forward.py, Debian
# python3-torch) on the same model and tokens, same machine, same run; printed as a ratio.
#   make bench-eval            (or: bench/bench_eval.sh SUBMOE MODEL TOKENS)
set -eu
submoe=${1:-src/submoe}
here=$(cd "$(dirname "$0")" && pwd)
model=${2:-$here/../data/demo}
tokens=${3:-$here/../data/heldout.u32}
python=${PYTHON:-/usr/bin/python3}
threads=${THREADS:-$(nproc)}
if ! "$python" -c 'import torch' 2>/dev/null; then
    echo "bench_eval: $python has no torch (apt-get install python3-torch)" >&2
    exit 1
fi
ours=$(SUBMOE_THREADS=$threads "$submoe" eval "$model" --tokens "$tokens" --json)
ref=$("$python" "$here/../tools/ref_forward.py" --bench "$model" --tokens "$tokens" --threads "$threads" | tail -n 1)
field() { echo "$1" | sed -n "s/.*\"$2\": *\([0-9.eE+-]*\).*/\1/p"; }
t_ours=$(field "$ours" tokens_per_second)
t_ref=$(field "$ref" tokens_per_second)
p_ours=$(field "$ours" perplexity)
p_ref=$(field "$ref" perplexity)
printf 'model %s, %s threads\n' "$model" "$threads"
printf '%-22s %12s %14s\n' "" "tokens/s" "perplexity"
printf '%-22s %12.0f %14.6f\n' "submoe eval" "$t_ours" "$p_ours"
printf '%-22s %12.0f %14.6f\n' "PyTorch reference" "$t_ref" "$p_ref"
awk -v a="$t_ours" -v b="$t_ref" 'BEGIN { printf "speed ratio submoe / PyTorch: %.2fx (target >= 1)\n", a / b }'

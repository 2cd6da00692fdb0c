#!/bin/sh
# make_demo_data.sh — regenerate everything in data/ from a clean checkout:
#   KJV corpus (tools/make_corpus.sh) -> data/calib.u32, data/heldout.u32 (tools/make_tokens.py)
#   -> data/demo (sparse-upcycled Mixtral-layout MoE) -> data/demo-scratch (MoE from scratch).
# Needs: apt-get install python3-torch bible-kjv   (uses /usr/bin/python3, torch >= 1.13, numpy)
# Takes about 22 + 10 minutes on 2 CPU cores.  Deterministic given the seeds (up to CPU
# floating-point nondeterminism in PyTorch's kernels).
#
# Environment overrides: PYTHON, SEED, THREADS, DEMO_DENSE_STEPS, DEMO_MOE_STEPS,
# SCRATCH_STEPS, WORKDIR (keeps the corpus there instead of a temporary directory).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
data="$top/data"
PYTHON=${PYTHON:-/usr/bin/python3}
SEED=${SEED:-1234}
THREADS=${THREADS:-2}
DEMO_DENSE_STEPS=${DEMO_DENSE_STEPS:-600}
DEMO_MOE_STEPS=${DEMO_MOE_STEPS:-450}
SCRATCH_STEPS=${SCRATCH_STEPS:-550}

if [ -n "${WORKDIR:-}" ]; then
    work=$WORKDIR; mkdir -p "$work"
else
    work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$data"

echo "== corpus"
"$here/make_corpus.sh" "$work/kjv.txt"
echo "== token files"
"$PYTHON" "$here/make_tokens.py" "$work/kjv.txt" "$data"

echo "== data/demo (sparse upcycling)"
"$PYTHON" "$here/train_demo.py" --corpus "$work/kjv.txt" --heldout "$data/heldout.u32" \
    --out "$data/demo" --seed "$SEED" --threads "$THREADS" \
    --hidden 128 --layers 4 --heads 4 --kv-heads 2 --head-dim 32 \
    --experts 8 --top-k 2 --inter 256 --seq-len 256 --batch 16 \
    --dense-steps "$DEMO_DENSE_STEPS" --lr 3e-3 \
    --moe-steps "$DEMO_MOE_STEPS" --moe-lr 1.5e-3 --noise 1e-3 --aux-coef 0.02 \
    --warmup 50 --min-lr-frac 0.1 --weight-decay 0.1

echo "== data/demo-scratch (MoE from scratch)"
"$PYTHON" "$here/train_demo.py" --scratch --corpus "$work/kjv.txt" --heldout "$data/heldout.u32" \
    --out "$data/demo-scratch" --seed "$SEED" --threads "$THREADS" \
    --hidden 96 --layers 3 --heads 4 --kv-heads 2 --head-dim 24 \
    --experts 8 --top-k 2 --inter 192 --seq-len 256 --batch 16 \
    --moe-steps "$SCRATCH_STEPS" --lr 3e-3 --aux-coef 0.02 \
    --warmup 50 --min-lr-frac 0.1 --weight-decay 0.1

echo "== done"
ls -l "$data" "$data/demo" "$data/demo-scratch"

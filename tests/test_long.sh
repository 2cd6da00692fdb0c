#!/bin/sh
# Long windows: attention runs in blocks of 256 queries (forward.c, ATT_BLOCK), so a 500-token
# window takes two blocks; its perplexity must match the PyTorch reference, which attends over
# the whole window at once. The reference value was produced with
#   /usr/bin/python3 tools/ref_forward.py --bench data/demo --tokens data/heldout.u32 --seq-len 500
# (perplexity 5.7677052614605895: the demo was trained on 256-byte windows, hence the higher value).
set -u
ref=5.7677052614605895
p=$("$SUBMOE" eval "$DEMO" --tokens "$SRCDIR/data/heldout.u32" --seq-len 500 --quiet) || { echo "not ok 1 - eval failed"; exit 1; }
if awk -v a="$p" -v b="$ref" 'BEGIN { d = (a - b) / b; if (d < 0) d = -d; exit !(d <= 1e-5) }'; then
    echo "ok 1 - 500-token windows (two attention blocks): perplexity $p = PyTorch $ref within 1e-5"
else
    echo "not ok 1 - 500-token windows: perplexity $p vs PyTorch $ref"
    exit 1
fi

#!/bin/sh
# The calibration's and eval's work split over threads (issue 16: a layer's conversions and bf16
# copies, the weight similarity beside the writing, the LM head's scores) gives the same bytes
# whatever the number of threads: stats files of the demo and of a synth with more experts than
# threads, calibrated on one thread and on three (SUBMOE_THREADS), are cmp-equal, in fp32 and
# (where the CPU has it) bf16, and so are eval's likelihoods.
set -u
. "$SRCDIR/tests/lib.sh"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/submoe-calib-threads.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
DEMO=$SRCDIR/data/demo
CAL=$SRCDIR/data/calib.u32

"$SUBMOE" synth --arch olmoe --out "$tmp/syn" --layers 2 --hidden 256 --intermediate 128 --experts 12 \
    --top-k 3 --heads 4 --kv-heads 4 --vocab 256 --dtype bf16 -q >/dev/null || bad "synth"
precisions=fp32
"$SUBMOE" eval "$DEMO" --tokens "$SRCDIR/data/heldout.u32" --max-tokens 256 --precision bf16 -q >/dev/null 2>&1 &&
    precisions="fp32 bf16"
for model in "$DEMO" "$tmp/syn"; do
    name=$(basename "$model")
    for p in $precisions; do
        for t in 1 3; do
            SUBMOE_THREADS=$t "$SUBMOE" calibrate "$model" --tokens "$CAL" -o "$tmp/$name-$p-$t.stats" -s 4 -k 512 \
                --sample 64 --precision "$p" -q || bad "$name: calibrate $p on $t thread(s)"
        done
        check_expr "$name: $p stats file on one thread = on three" \
            'cmp -s "$tmp/$name-$p-1.stats" "$tmp/$name-$p-3.stats"'
        for t in 1 3; do
            SUBMOE_THREADS=$t "$SUBMOE" eval "$model" --tokens "$SRCDIR/data/heldout.u32" --max-tokens 1024 \
                --precision "$p" --json >"$tmp/$name-$p-$t.json" || bad "$name: eval $p on $t thread(s)"
        done
        l1=$(sed 's/.*"nll": *\([^,]*\),.*/\1/' "$tmp/$name-$p-1.json")
        l3=$(sed 's/.*"nll": *\([^,]*\),.*/\1/' "$tmp/$name-$p-3.json")
        check_expr "$name: $p eval likelihood on one thread ($l1) = on three ($l3)" '[ -n "$l1" ] && [ "$l1" = "$l3" ]'
    done
done
[ "$fail" -eq 0 ]

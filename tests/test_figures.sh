#!/bin/sh
# submoe figures (issue 19 item 5), on the demo and on a 128-expert qwen3_moe synth:
# - the heatmap CSVs hold the stats file's similarities, model-frequency.csv its routing
#   frequencies (summing to top-k per layer), model.csv the plan's held-out errors as `submoe plan`
#   previews them (its comments);
# - each PNG has its figure's size and is not blank (tests/figures_check reads it with cairo), each
#   SVG and PDF is non-empty and what it says, every figure has its CSV;
# - with a plan, the spectra of every merged group, the plan's rank marked;
# - two runs give the same bytes;
# - bad input (missing model, bad plan, unwritable or existing DIR) fails with one message naming
#   the file and leaves no directory behind.
set -u
. "$SRCDIR/tests/lib.sh"
scratch figures
check_bin=$BUILDDIR/tests/figures_check

# figures_ok NAME DIR LAYERS: every figure of DIR has its four files and the PNG its size
figures_ok() {
    bad=0
    for png in "$2"/*.png; do
        base=${png%.png}
        case $base in
        */model) w=960 h=$((110 + 26 * $3)) ;;
        *-spectrum) w=960 h=420 ;;
        *) w=720 h=640 ;;
        esac
        "$check_bin" png "$png" $w $h 16 || bad=1
        [ -s "$base.svg" ] && head -c 200 "$base.svg" | grep -q '<svg' || { echo "$base.svg: no SVG"; bad=1; }
        [ "$(head -c 5 "$base.pdf")" = "%PDF-" ] || { echo "$base.pdf: no PDF"; bad=1; }
        [ -s "$base.csv" ] || { echo "$base.csv: missing"; bad=1; }
    done
    [ "$bad" -eq 0 ]
}

# --- the demo -----------------------------------------------------------------------------
stats=$tmp/demo.stats
"$SUBMOE" calibrate "$DEMO" --tokens "$SRCDIR/data/calib.u32" -o "$stats" -q
check "demo: figures without a plan" "$SUBMOE" figures "$DEMO" -c "$stats" -o "$tmp/plain" -q
check_eq "demo: three heatmaps per layer and the model chart, 4 files each, and the frequencies" \
    "$(ls "$tmp/plain" | wc -l)" 53
check "demo: the PNGs, SVGs, PDFs and CSVs" figures_ok demo "$tmp/plain" 4
check "demo: the CSVs hold the stats file's similarities and frequencies" \
    "$check_bin" stats "$DEMO" "$stats" "$tmp/plain"

"$SUBMOE" plan "$DEMO" --ratio 0.5 -m submoe --rank 0.5 -c "$stats" -o "$tmp/plan.yaml" -q
check "demo: figures of a plan" "$SUBMOE" figures "$DEMO" --plan "$tmp/plan.yaml" -c "$stats" -o "$tmp/a" -q
check "demo: the plan's figures" figures_ok demo "$tmp/a" 4
check "demo: the plan's CSVs hold the stats file's numbers" "$check_bin" stats "$DEMO" "$stats" "$tmp/a"
check_expr "demo: a spectrum for every merged group of two or more" "[ \$(ls '$tmp/a' | grep -c 'spectrum.png') -ge 4 ]"
# the plan's rank (0.5 of 256 for gate: 128) is marked on its own line of a spectrum CSV
check_eq "demo: the gate's rank 128 marked" \
    "$(awk -F, '$1 == "gate" && $5 == 1 { print $2 }' "$tmp/a/layer1-group0-spectrum.csv")" 128
check_eq "demo: 90/95/99% energy ranks marked once per matrix" \
    "$(awk -F, 'NR > 1 { e += $6 + $7 + $8 } END { print e }' "$tmp/a/layer1-group0-spectrum.csv")" 9
# held-out errors as the plan previews them (its comments: "held-out MoE-block output error X")
want=$(sed -n 's/.*held-out MoE-block output error \([0-9.]*\).*/\1/p' "$tmp/plan.yaml" | tr '\n' ' ')
got=$(awk -F, 'NR > 1 { printf "%.4f ", $8 }' "$tmp/a/model.csv")
check_eq "demo: model.csv's errors are the plan's previews" "$got" "$want"
check "demo: a second run" "$SUBMOE" figures "$DEMO" --plan "$tmp/plan.yaml" -c "$stats" -o "$tmp/b" -q
check "demo: the same bytes twice" diff -r "$tmp/a" "$tmp/b"

# --- a 128-expert qwen3_moe synth -----------------------------------------------------------
syn=$tmp/q3
"$SUBMOE" synth --arch qwen3_moe --out "$syn" --layers 1 --experts 128 --clusters 16 --top-k 8 \
    --hidden 32 --intermediate 16 >/dev/null
"$SUBMOE" calibrate "$syn" --tokens "$SRCDIR/data/calib.u32" --samples 8 -o "$tmp/q3.stats" -q
"$SUBMOE" plan "$syn" --ratio 0.75 -m submoe -c "$tmp/q3.stats" -o "$tmp/q3.yaml" -q
check "synth: figures of a 128-expert plan" "$SUBMOE" figures "$syn" --plan "$tmp/q3.yaml" -c "$tmp/q3.stats" \
    -o "$tmp/q3figs" -q
check "synth: the figures" figures_ok synth "$tmp/q3figs" 1
check "synth: the CSVs hold the stats file's numbers" "$check_bin" stats "$syn" "$tmp/q3.stats" "$tmp/q3figs"
check_eq "synth: 128x128 cells in the output heatmap's CSV" \
    "$(($(wc -l <"$tmp/q3figs/layer0-similarity-output.csv") - 1))" 16384

# --- bad input ------------------------------------------------------------------------------
# fails NAME WHAT DIR ARGS...: non-zero, one line naming WHAT, DIR not created, no temporaries
fails() {
    name=$1 what=$2 dir=$3
    shift 3
    "$SUBMOE" figures "$@" -q >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ "$rc" -ne 0 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q -- "$what" "$tmp/err" &&
        [ ! -e "$dir" ] && ! ls "$(dirname "$dir")" | grep -q "$(basename "$dir").tmp-" ||
        { echo "$name: rc=$rc"; sed 's/^/    | /' "$tmp/err"; return 1; }
}
check "a missing model" fails missing "$tmp/nomodel" "$tmp/x1" "$tmp/nomodel" -o "$tmp/x1"
printf 'version: 1\nlayers: [[[\n' >"$tmp/bad.yaml"
check "a bad plan" fails badplan "$tmp/bad.yaml" "$tmp/x2" "$DEMO" --plan "$tmp/bad.yaml" -c "$stats" -o "$tmp/x2"
check "a plan for another model" fails otherplan "$tmp/q3.yaml" "$tmp/x4" "$DEMO" --plan "$tmp/q3.yaml" -c "$stats" \
    -o "$tmp/x4"
check "a missing stats file" fails nostats "$tmp/none.stats" "$tmp/x3" "$DEMO" -c "$tmp/none.stats" -o "$tmp/x3"
: >"$tmp/file"
check "an unwritable DIR (under a file)" fails unwritable "$tmp/file/out" "$tmp/file/out" "$DEMO" -c "$stats" \
    -o "$tmp/file/out"
before=$(ls -l "$tmp/a" | md5sum)
check_expr "an existing DIR is refused without --force" \
    "! '$SUBMOE' figures '$DEMO' -c '$stats' -o '$tmp/a' -q 2>'$tmp/err' && grep -q 'already exists' '$tmp/err'"
check_eq "and left as it was" "$(ls -l "$tmp/a" | md5sum)" "$before"
check_expr "no temporary directory left beside the outputs" "! ls '$tmp' | grep -q 'tmp-'"
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

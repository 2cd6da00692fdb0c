#!/bin/sh
# Text all the way through, on the demo (issue 17's end-to-end item): text -> tokenize ->
# calibrate -> plan -> apply -> eval --task. The calibration text is the demo's own calibration
# tokens decoded back to text with the demo's tokenizer.json (id = byte), so tokenizing it again
# must give exactly data/calib.u32; the rest of the chain must then run from those ids.
set -u
. "$SRCDIR/tests/lib.sh"
scratch text
S=$SUBMOE
run() { timeout 600 "$S" "$@"; }

run tokenize "$DEMO" --decode "$SRCDIR/data/calib.u32" >"$tmp/calib.txt"
check_expr "the calibration tokens decode to text ($(wc -c <"$tmp/calib.txt") bytes)" '[ -s "$tmp/calib.txt" ]'
run tokenize "$DEMO" "$tmp/calib.txt" --no-special -o "$tmp/calib.u32"
check "tokenizing the text gives data/calib.u32 exactly" cmp -s "$tmp/calib.u32" "$SRCDIR/data/calib.u32"

run calibrate "$DEMO" --tokens "$tmp/calib.u32" --samples 16 --seq-len 256 -q -o "$tmp/demo.stats"
rc=$?
check_expr "calibrate on the tokenized text" '[ $rc -eq 0 ] && [ -s "$tmp/demo.stats" ]'
run plan "$DEMO" --ratio 0.25 -c "$tmp/demo.stats" -q -o "$tmp/plan.yaml"
rc=$?
check_expr "plan (the default, auto) at 25% fewer experts" '[ $rc -eq 0 ] && grep -q "^layers:" "$tmp/plan.yaml"'
run apply "$tmp/plan.yaml" -q -o "$tmp/merged"
rc=$?
check_expr "apply" '[ $rc -eq 0 ] && [ -s "$tmp/merged/model.safetensors" ] && [ -s "$tmp/merged/tokenizer.json" ]'

head -n 40 "$SRCDIR/data/demo-task.jsonl" >"$tmp/task40.jsonl"
run eval "$tmp/merged" --task "$tmp/task40.jsonl" --json >"$tmp/merged.json"
rc=$?
check_expr "eval --task on the merged model, with its copied tokenizer.json" '[ $rc -eq 0 ] &&
    grep -q "\"items\": 40, \"acc\": [01]" "$tmp/merged.json"'
run eval "$DEMO" --task "$tmp/task40.jsonl" -q >"$tmp/orig.txt"
check_expr "the original's acc and acc_norm on the same 40 items are the recorded 0.450 0.325 ($(cat "$tmp/orig.txt"))" \
    '[ "$(cat "$tmp/orig.txt")" = "0.450000 0.325000" ]'

echo "1..$n"
[ "$fail" -eq 0 ]

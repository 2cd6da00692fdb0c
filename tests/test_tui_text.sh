#!/bin/sh
# The workbench on text (issue 17): `submoe tui MODEL --text FILE` calibrates on the text through
# the model's tokenizer.json, P computes perplexity on the text's windows after the calibration
# ones, A the task accuracy of the original and of the plan (the original's equals
# `submoe eval --task`), and the saved plan records the text and both digests. Driven through
# tmux; polls with timeouts, so sanitizer builds pass too.
set -u
. "$SRCDIR/tests/lib.sh"
tmux_harness tuitext

"$SUBMOE" tokenize "$DEMO" --decode "$SRCDIR/data/calib.u32" >"$tmp/calib.txt"
head -n 12 "$SRCDIR/data/demo-task.jsonl" >"$tmp/task12.jsonl"
want=$("$SUBMOE" eval "$DEMO" --task "$tmp/task12.jsonl" -q | awk '{ printf "%.3f", $1 }')

T new-session -d -s wb -x 120 -y 30 \
    "cd '$tmp' && NO_COLOR=1 TERM=xterm-256color LANG=C.UTF-8 '$SUBMOE' tui '$DEMO' --text '$tmp/calib.txt' --task '$tmp/task12.jsonl' --plan '$tmp/plan.yaml'; echo EXIT=\$?; sleep 600"
check "calibrates on the text" wait_for 'calibrated on calib.txt' 120
check "the accuracy key is shown" wait_for 'accuracy: A'
keys P
check "P: perplexity on the text's 8 windows after the calibration ones" wait_for 'perplexity on 8 x 256 held-out tokens' 300
keys A
check "A: the task accuracy of the original and the plan" wait_for 'accuracy on task12.jsonl \(12 items\): original [01]\.[0-9]{3}, plan [01]\.[0-9]{3}' 300
got=$(screen | grep -Eo 'original [01]\.[0-9]{3}' | head -1 | cut -d ' ' -f 2)
check_expr "... the original's equals submoe eval --task ($got = $want)" '[ -n "$got" ] && [ "$got" = "$want" ]'
check "... and it stays on the status bar" wait_for 'accuracy [01]\.[0-9]{3} → [01]\.[0-9]{3}'
keys w
check "w: the save dialog" wait_for 'Enter saves'
keys Enter
check "saved" wait_for 'plan saved to' 60
check_expr "the saved plan records the text and its digests" \
    'grep -q "^    - $tmp/calib.txt" "$tmp/plan.yaml" && grep -q "^  text_digest: fnv1a64:" "$tmp/plan.yaml" &&
     grep -q "^  tokenizer_digest: fnv1a64:" "$tmp/plan.yaml"'
keys q
wait_for 'EXIT=0' 30 || keys y
check "quits" wait_for 'EXIT=0' 30

echo "1..$n"
[ "$fail" -eq 0 ]

#!/bin/sh
# `submoe eval --task` on the whole demo task (data/demo-task.jsonl, 200 items, 800 choices) on
# the demo model: acc and acc_norm exactly as the PyTorch reference recorded them
# (tests/fixtures/demo-task-ref.tsv, first line). tests/test_eval_task.sh checks the first 40 items.
set -u
. "$SRCDIR/tests/lib.sh"
got=$(timeout 1200 "$SUBMOE" eval "$SRCDIR/data/demo" --task "$SRCDIR/data/demo-task.jsonl" --precision fp32 -q)
rc=$?
want=$(awk 'NR == 1 { printf "%.6f %.6f\n", $8, $10 }' "$SRCDIR/tests/fixtures/demo-task-ref.tsv")
check_expr "the whole demo task: exit $rc, acc acc_norm ($got) = the reference's ($want)" '[ $rc -eq 0 ] && [ "$got" = "$want" ]'
echo "1..$n"
[ "$fail" -eq 0 ]

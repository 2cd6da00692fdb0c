#!/bin/sh
# The spectrum's rank chooser (issue 19 item 3) on the real binary through tmux, on the demo, at
# 80x24 and 200x60: the marks line gives the ranks keeping 90/95/99% of the energy and the
# break-even (85 for the demo's 256 x 128 gate: sm_rank_factored), and the parameters line the
# group's and the layer's. Lowering the gate rank of a submoe layer below the break-even lowers
# the group's parameters, at once (the estimate) and never above dense.
set -u
. "$SRCDIR/tests/lib.sh"
tmux_harness tuimarks
# the group's parameters as the parameters line shows them ("98.3k" -> 98.3)
group_params() { screen | grep -Eo 'group [0-9]+ [0-9.]+k params' | grep -Eo '[0-9.]+k' | tr -d k; }

for size in 80x24 200x60; do
    cols=${size%x*} rows=${size#*x}
    sock="$tmp/tmux$size.sock"
    tui_session "$tmp" "'$DEMO' --plan '$tmp/p$size.yaml'"
    check "$size: calibrates" wait_for 'calibrated on' 300
    keys M 3 # layer 0: submoe (auto -> submoe), the spectrum
    check "$size: the marks: 90/95/99% of the energy and the break-even r85" \
        wait_for '(90% r[0-9]+  95% r[0-9]+  99% r[0-9]+|90/95/99% r[0-9]+/[0-9]+/[0-9]+) .* break-even r85' 120
    check "$size: the group's and the layer's parameters" wait_for 'group 0 [0-9.]+k params \(dense 98k\), layer [0-9.]+k' 10
    full=$(group_params)
    keys =
    check "$size: = opens the rank prompt" wait_for 'Rank of gate in group 0' 10
    keys 3 2 Enter
    check "$size: gate rank 32 set" wait_for 'gate rank 32' 10
    # one member: gate 32·(256 + 128) = 12288 as factors, up and down dense 32768 each: 77.8k
    check "$size: ... the group's parameters: gate factors, up and down dense" \
        wait_for 'group 0 7[78](\.[0-9])?k params \(dense 98k\)' 10
    lower=$(group_params)
    check_expr "$size: ... $lower k < $full k" "awk -v a='$lower' -v b='$full' 'BEGIN { exit !(a < b) }'"
    tui_quit "$size" discard
done
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

#!/bin/sh
# The heatmap at 128 experts (issue 19 item 4), on the real binary through tmux, at 80x24 and
# 200x60, on a 128-expert qwen3_moe synth (one layer, small so it calibrates in seconds):
# - the hint line names the paging keys (/ jump, z overview, PgUp/PgDn);
# - PgDn pages the experts (the layer has one MoE layer: before, PgDn stepped layers and did
#   nothing here) until the cursor is on expert 127, its number on the column labels; PgUp back;
# - / jumps to an expert: 130 is refused as it is typed, with the layer's range; 100 is reached;
# - z shows the overview: one column per expert at 200x60 (all 128 across), one per group at
#   80x24 (128 columns do not fit in 49), its column labels at one regular step; z again gives the
#   cells back;
# - at the cursor's start, the diagonal, its status names the expert's share once.
set -u
. "$SRCDIR/tests/lib.sh"
tmux_harness tuiheat
"$SUBMOE" synth --arch qwen3_moe --out "$tmp/q128" --layers 1 --hidden 32 --intermediate 32 --experts 128 \
    --top-k 8 --clusters 32 -q
# the column-label row of the heatmap: the screen's fourth line (header 2, the panel's title)
labels() { screen | sed -n 4p; }

for size in 80x24 200x60; do
    cols=${size%x*} rows=${size#*x}
    sock="$tmp/tmux$size.sock"
    tui_session "$tmp" "'$tmp/q128' --plan '$tmp/p$size.yaml'"
    keys 2
    check "$size: the heatmap of 128 experts, scrolled" wait_for 'rows 1-[0-9]+, cols 1-[0-9]+/128|1-[0-9]+,1-[0-9]+/128' 120
    check "$size: the cursor starts on expert 0" wait_for 'S\(e0, ?e0\)' 5
    # the diagonal: one expert, its share and group said once
    check_expr "$size: ... its status names e0 once" "[ \$(screen | grep 'S(e0, \\?e0)' | grep -o '%' | wc -l) -eq 1 ]"
    keys 1 2 # the message area gives the hint line back
    check "$size: the hints name the paging keys" wait_for '/ jump  z overview  PgUp/PgDn page' 10
    for i in 1 2 3 4 5 6 7 8 9 10 11 12; do keys NPage; done
    check "$size: PgDn pages to the last expert, 127 (in cluster order)" wait_for 'S\(e127, ?e127\)' 10
    check "$size: ... the window ends at column 128 of 128" wait_for '[0-9]+-128/128' 5
    check_expr "$size: ... 127 is on the column labels" "labels | grep -qw 127"
    for i in 1 2 3 4 5 6 7 8 9 10 11 12; do keys PPage; done
    check "$size: PgUp pages back to expert 0" wait_for 'S\(e0, ?e0\)' 10
    keys / 1 3 0
    check "$size: / refuses 130 as it is typed" wait_for 'expert 130 is not in layer 0: its experts are 0\.\.127' 10
    keys BSpace 0 0 Enter # "13" less its 3, then 00
    check "$size: / 100 jumps to expert 100" wait_for 'S\(e100, ?e100\)' 10
    check "$size: ... saying its group" wait_for 'expert 100: group [0-9]+ of [0-9]+' 5
    keys z
    check "$size: z shows the overview" wait_for 'heatmap overview' 5
    if [ "$size" = 200x60 ]; then
        # the rows scroll to keep expert 100 in view: where it sits in group order follows the statistics
        check "$size: ... one column per expert, all 128 across" wait_for 'rows [0-9]+-[0-9]+, cols 1-128/128' 5
    else
        check "$size: ... one column per group (128 do not fit)" wait_for 'group rows [0-9]+-[0-9]+, cols [0-9]+-[0-9]+/[0-9]+|/[0-9]+g' 5
    fi
    # the overview's column labels, the cursor on the first column: at a regular step, so that an
    # unlabelled column never reads as a missing expert (before: "0 2 4 5 7 1 6" where numbers fit)
    keys Home
    sleep 0.5
    starts=$(labels | sed 's/^.*error\( *saved router\)\{0,1\}//' | awk '{
        for (i = 1; i <= length($0); i++) {
            c = substr($0, i, 1); p = i > 1 ? substr($0, i - 1, 1) : " "
            if (c ~ /[0-9]/ && p !~ /[0-9]/) printf "%d ", i
        } }')
    steps=$(echo "$starts" | awk '{ for (i = 2; i <= NF; i++) print $i - $(i - 1) }' | sort -u | wc -l)
    check_expr "$size: ... column labels at one regular step (label columns: $starts)" \
        "[ \$(echo $starts | wc -w) -ge 3 ] && [ $steps -eq 1 ]"
    keys z
    check "$size: z again: the cells" wait_for 'heatmap cells' 5
    tui_quit "$size"
done
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

#!/bin/sh
# The workbench driven through tmux (send-keys / capture-pane), as a user would: open the demo at
# 80x24, every layer previewed in the background, move through layers, the heatmap and a cluster
# edit that changes the preview, the spectrum and a rank that changes it, undo, keys answered
# while a perplexity runs, save / open a plan, commit (and `submoe apply` of the saved plan giving
# the committed bytes), replace-or-keep, the help, quit with unsaved edits. Then a 64-expert model
# whose heatmap scrolls, a terminal too small and resized, resize from 200x50, Ctrl-C, and an
# ASCII terminal without colour. Polls the screen with timeouts, so sanitizer builds pass too.
set -u
. "$SRCDIR/tests/lib.sh"
tmux_harness tui
# wait_for PATTERN [SECONDS] (lib.sh) polls screen until it matches (extended regex)
has() { screen | grep -Eq -- "$1"; }
hasnt() { ! screen | grep -Eq -- "$1"; }
# the first number after a label on the screen, e.g. field 'output error'
field() { screen | grep -Eo -- "$1 [0-9.]+" | head -1 | grep -Eo '[0-9.]+$'; }
# wait_change LABEL OLD [SECONDS]: until the number after LABEL differs from OLD
wait_change() {
    i=0
    lim=$(( ${3:-30} * 10 ))
    while [ $i -lt $lim ]; do
        now=$(field "$1")
        [ -n "$now" ] && [ "$now" != "$2" ] && hasnt 'before the last edit' && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

T new-session -d -s wb -x 80 -y 24 \
    "cd '$tmp' && NO_COLOR=1 TERM=xterm-256color LANG=C.UTF-8 '$SUBMOE' tui '$DEMO' --plan '$tmp/plan.yaml'; echo EXIT=\$?; sleep 600"
check "opens the demo at 80x24" wait_for 'submoe workbench'
check "calibrates" wait_for 'calibrated on calib.u32'
check "the header: model, shape, size before and after" \
    sh -c "tmux -S '$sock' capture-pane -t wb -p | grep -q 'mixtral · 4 layers · 8 experts · top-2' &&
           tmux -S '$sock' capture-pane -t wb -p | grep -q 'params 3.41M → 2.63M (-23.0%)'"
check "every MoE layer previewed in the background (error column filled)" \
    wait_for '^ +3 +8→6 +[a-z+-]+\*? +0\.[0-9]{4} ' 120
check "auto's choice shown in the layer list and the plan view" has 'chose +prune-frequency|chose +submoe'
keys j
check "j selects layer 1" wait_for 'layer 1 plan'
keys k 2
check "2: the heatmap, with the cursor cell's similarity and frequencies" wait_for 'S\(e0, e0\) = 1\.000 output'
check "... group boundaries as columns and rows, shaded cells" sh -c "
    tmux -S '$sock' capture-pane -t wb -p | grep -q '│.*[░▒▓█]' && tmux -S '$sock' capture-pane -t wb -p | grep -q '─┼─'"
check "... and the legend" has '0\.[0-9]{2} .*0\.[0-9]{2} +│ groups'
keys M
check "M: method submoe for layer 0" wait_for 'layer 0: method submoe'
check "... previewed (merging gives a weight error)" wait_for 'weight error 0\.[0-9]{4}' 60
before=$(field 'output error')
keys j j m
check "m moves the row's expert into the column's group" wait_for 'expert moved'
check "... and the preview changes (was $before)" wait_change 'output error' "$before" 60
keys 3
check "3: the spectrum of group 0 with its rank" wait_for 'rank [0-9]+/[0-9]+ keeps' 60
r0=$(screen | grep -Eo 'rank [0-9]+/' | head -1 | grep -Eo '[0-9]+')
keys h
check "h lowers group 0's gate rank (from $r0)" sh -c "
    i=0; while [ \$i -lt 100 ]; do
        r=\$(tmux -S '$sock' capture-pane -t wb -p | grep -Eo 'rank [0-9]+/' | head -1 | grep -Eo '[0-9]+')
        [ -n \"\$r\" ] && [ \"\$r\" -lt '$r0' ] && exit 0; sleep 0.1; i=\$((i+1)); done; exit 1"
check "... the rank marker moves" has 'r=[0-9]+'
before=$(field 'output error')
keys 1 = C-u 16 Enter
check "= sets rank 16 for the layer" wait_for 'rank 16 for gate, up and down'
check "... and the error changes (was $before)" wait_change 'output error' "$before" 60
check "... the plan view shows the ranks" has 'gate 16 · up 16 · down 16'
keys u
check "u undoes the rank" wait_for 'gate full · up full · down full'
keys P
sleep 0.1
keys j
check "keys answered while the perplexity runs" wait_for 'layer 1 plan' 5
check "perplexity of the original and of the plan" wait_for 'perplexity [0-9.]+ → [0-9.]+' 120
keys w
check "w asks where to save, prefilled with --plan" wait_for 'file .*plan\.yaml'
keys Enter
check "Enter saves the plan" wait_for 'plan saved to'
check "... a valid plan file" sh -c "grep -q '^submoe_plan: 1' '$tmp/plan.yaml' && '$SUBMOE' plan --help >/dev/null"
check "... no longer marked modified" sh -c "! tmux -S '$sock' capture-pane -t wb -p | grep -q 'modified'"
keys C
check "C asks where to commit, in which format" wait_for 'directory +demo-merged'
keys Enter
check "commit writes the merged model, reports where and its size" wait_for 'committed to demo-merged \(submoe\): [0-9.]+ MB' 120
check "... a model submoe reads" sh -c "'$SUBMOE' inspect '$tmp/demo-merged' >/dev/null"
keys C Enter
check "committing again asks before replacing" wait_for 'Replace it'
keys n
check "... n keeps it" wait_for 'commit cancelled'
"$SUBMOE" apply "$tmp/plan.yaml" -o "$tmp/fromplan" -q
check "apply of the saved plan = the workbench's commit (same bytes)" \
    sh -c "cmp -s '$tmp/fromplan/model.safetensors' '$tmp/demo-merged/model.safetensors' &&
           cmp -s '$tmp/fromplan/config.json' '$tmp/demo-merged/config.json'"
keys C Tab
check "Tab in the commit dialog picks the format" wait_for 'format +hf \(standard layout\)'
keys Enter
wait_for 'Replace it' 20
keys y
check "an hf commit replaces it after the question" wait_for 'committed to demo-merged \(hf\)' 120
check "... with the reduced expert count in config.json" grep -q '"num_local_experts": 6' "$tmp/demo-merged/config.json"
keys c
check "c re-clusters (an edit: modified)" wait_for '\[modified\]'
keys o
check "o asks for a plan to open" wait_for 'open a plan'
keys Enter
check "... with unsaved edits it asks first" wait_for 'Discard them and open'
keys y
check "... y opens the saved plan again" wait_for 'opened .*plan\.yaml' 60
check "... not modified" sh -c "! tmux -S '$sock' capture-pane -t wb -p | grep -q 'modified'"
keys '?'
check "? shows every key" wait_for "P the plan's perplexity"
keys x 2 c
check "an edit after opening marks the plan modified" wait_for '\[modified\]'
keys q
check "q with unsaved edits asks" wait_for 'Quit and discard them'
keys y
check "y quits and restores the terminal (exit 0)" wait_for 'EXIT=0'
T kill-server >/dev/null 2>&1

# 64 experts: the heatmap scrolls with the cursor; labels and the position are shown.
sock="$tmp/tmux2.sock"
"$SUBMOE" synth --arch qwen3_moe --out "$tmp/q64" --experts 64 --clusters 16 --layers 2 --hidden 64 \
    --intermediate 32 --vocab 256 -q
T new-session -d -s wb -x 80 -y 24 \
    "cd '$tmp' && LANG=C.UTF-8 '$SUBMOE' '$tmp/q64'; echo EXIT=\$?; sleep 600"
check "a 64-expert qwen3_moe model opens" wait_for 'calibrated on' 60
keys 2
check "its heatmap is scrolled, saying which rows and columns show" wait_for 'rows 1-[0-9]+, cols 1-[0-9]+/64'
keys End
check "End: the cursor at the last cell, still visible" wait_for 'rows [0-9]+-64, cols [0-9]+-64/64'
keys q
check "q quits an unmodified plan" wait_for 'EXIT=0'
T kill-server >/dev/null 2>&1
# A plan giving each of the 32 groups of both layers its own rank (96 per layer; the workbench
# used to keep at most 48 and refused the plan): opened, saved, every group rank still there.
"$SUBMOE" plan "$tmp/q64" --experts 32 -m submoe -o "$tmp/q64.yaml" -q
awk '{ print } /^    groups:/ { print "    clusters:"; for (i = 0; i < 32; i++) print "      " i ": {rank: 4}" }' \
    "$tmp/q64.yaml" >"$tmp/q64-ranks.yaml"
T new-session -d -s wb -x 80 -y 24 \
    "cd '$tmp' && LANG=C.UTF-8 '$SUBMOE' '$tmp/q64' --plan '$tmp/q64-ranks.yaml'; echo EXIT=\$?; sleep 600"
check "a plan with 96 group ranks per layer opens" wait_for 'calibrated on' 60
keys w C-u q64-saved.yaml Enter
check "... saves" wait_for 'plan saved to'
check "... with all 2 x 32 groups' ranks" test "$(grep -c '^      [0-9]*: {rank: 4}' "$tmp/q64-saved.yaml")" -eq 64
keys q
T kill-server >/dev/null 2>&1

# Too small, then resized; and from 200x50 down to 80x24.
sock="$tmp/tmux3.sock"
"$SUBMOE" calibrate "$DEMO" --tokens "$SRCDIR/data/calib.u32" --samples 8 -o "$tmp/demo.stats" -q
T new-session -d -s wb -x 50 -y 12 \
    "cd '$tmp' && TERM=xterm-256color LANG=C.UTF-8 '$SUBMOE' '$DEMO' --calib '$tmp/demo.stats'; echo EXIT=\$?; sleep 600"
check "a 50x12 terminal: says it needs 60x16" wait_for 'needs at least 60x16'
T resize-window -t wb -x 200 -y 50 >/dev/null 2>&1
check "resized to 200x50: drawn, with the wide layer list, on that stats file" \
    wait_for 'calibrated on demo.stats' 60
check "... the wide layer list shows savings and routers" wait_for 'saved router'
T resize-window -t wb -x 80 -y 24 >/dev/null 2>&1
keys 2
check "resized to 80x24: still drawn" wait_for 'layer 0: output similarity'
keys q
check "q quits" wait_for 'EXIT=0'
T kill-server >/dev/null 2>&1

# A commit whose write fails (injected: the 10th write, ENOSPC): the error in the status line, no
# output and no temporary left, the workbench still running; the next commit succeeds.
sock="$tmp/tmux6.sock"
T new-session -d -s wb -x 80 -y 24 \
    "cd '$tmp' && SUBMOE_FAULT=write:10 NO_COLOR=1 TERM=xterm-256color '$SUBMOE' tui '$DEMO' --calib '$tmp/demo.stats'; echo EXIT=\$?; sleep 600"
check "opens for the failing commit" wait_for 'calibrated on demo.stats' 60
keys C C-u faulty Enter
check "a failed write: the error in the status line" wait_for 'faulty.*(space|write)' 120
check "... no output, no temporary" sh -c "! ls -d '$tmp'/faulty* >/dev/null 2>&1"
keys C C-u fine Enter
check "... and the workbench goes on: the next commit succeeds" wait_for 'committed to fine' 120
keys q
check "q quits" wait_for 'EXIT=0'
T kill-server >/dev/null 2>&1
# Ctrl-C while a commit is stuck in a step that cannot be cancelled (SUBMOE_FAULT=stall:1: its
# first write stalls 30 s through signals): the workbench says it is stopping; a second Ctrl-C
# quits at once, restores the terminal, exits 130 and names the temporary it leaves.
sock="$tmp/tmux7.sock"
T new-session -d -s wb -x 80 -y 24 \
    "trap : INT; cd '$tmp' && SUBMOE_FAULT=stall:1 NO_COLOR=1 TERM=xterm-256color '$SUBMOE' tui '$DEMO' --calib '$tmp/demo.stats' 2>'$tmp/stall.err'; echo EXIT=\$?; sleep 600"
check "opens for the stalled commit" wait_for 'calibrated on demo.stats' 60
keys C C-u stuck Enter
i=0
while ! grep -q stalling "$tmp/stall.err" 2>/dev/null && [ $i -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done
keys C-c
check "Ctrl-C during an uncancellable step: 'Stopping', with the way out" wait_for 'Stopping: waiting for the current step \(Ctrl-C again'
keys C-c
check "a second Ctrl-C quits at once: exit 130" wait_for 'EXIT=130' 5
check "... the screen is the shell's again" sh -c "! tmux -S '$sock' capture-pane -t wb -p | grep -q 'submoe workbench'"
check "... and the temporary left behind is named" grep -q "second signal: quitting at once; left behind: .*stuck.tmp-" "$tmp/stall.err"
rm -rf "$tmp"/stuck.tmp-*
T kill-server >/dev/null 2>&1
# SIGINT (Ctrl-C) restores the terminal and exits 130 (the wrapper shell traps INT to survive it).
sock="$tmp/tmux4.sock"
T new-session -d -s wb -x 80 -y 24 \
    "trap : INT; cd '$tmp' && NO_COLOR=1 TERM=xterm-256color '$SUBMOE' tui '$DEMO'; echo EXIT=\$?; sleep 600"
check "opens for the interrupt test" wait_for 'submoe workbench'
keys C-c
check "Ctrl-C: terminal restored, exit status 130" wait_for 'EXIT=130'
check "... and the screen is the shell's again" sh -c "! tmux -S '$sock' capture-pane -t wb -p | grep -q 'submoe workbench'"
T kill-server >/dev/null 2>&1

# Without UTF-8 (LANG=C) and without colour: ASCII rules, boundaries and shading.
sock="$tmp/tmux5.sock"
T new-session -d -s wb -x 80 -y 24 \
    "trap : INT; cd '$tmp' && LANG=C LC_ALL=C NO_COLOR=1 TERM=xterm '$SUBMOE' tui '$DEMO'; echo EXIT=\$?; sleep 600"
check "opens in an ASCII terminal" wait_for 'calibrated on'
keys 2
check "ASCII heatmap: '|' boundaries, '-+-' rows and the ' .:-=+#@' ramp" wait_for '^ *[0-9] .*[@#=:.-].*\|'
check "... '-+-' boundary rows and '-' rules" sh -c "tmux -S '$sock' capture-pane -t wb -p | grep -q -- '-+-' &&
    tmux -S '$sock' capture-pane -t wb -p | grep -q -- '^- layers ---'"
check "... no UTF-8 on the screen" sh -c "! tmux -S '$sock' capture-pane -t wb -p | grep -q '[─│→·]'"
keys q
check "q quits" wait_for 'EXIT=0'
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

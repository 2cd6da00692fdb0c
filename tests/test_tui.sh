#!/bin/sh
# The workbench driven through tmux at 80x24: open the demo, move through layers, change a
# cluster and a rank and see the preview change, keys answered while a perplexity runs, save a
# plan, commit, and `submoe apply` of the saved plan giving the committed bytes; quit. Polls the
# screen (capture-pane) with timeouts, so slow sanitizer builds pass too.
set -u
command -v tmux >/dev/null 2>&1 || { echo "tmux not installed: skipped"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/submoe-tui.XXXXXX")
sock="$tmp/tmux.sock"
T() { tmux -S "$sock" "$@"; }
trap 'T kill-server >/dev/null 2>&1; rm -rf "$tmp"' EXIT
fail=0
n=0
screen() { T capture-pane -t wb -p 2>/dev/null; }
# wait_for PATTERN [SECONDS]: poll the screen until it matches
wait_for() {
    i=0
    lim=$(( ${2:-20} * 10 ))
    while [ $i -lt $lim ]; do
        screen | grep -q -- "$1" && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}
has() { screen | grep -q -- "$1"; }
check() { # check NAME COMMAND...
    name=$1
    shift
    n=$((n + 1))
    if "$@"; then echo "ok $n - $name"; else echo "not ok $n - $name"; screen | sed 's/^/    | /'; fail=$((fail + 1)); fi
}
keys() { T send-keys -t wb "$@"; }

T new-session -d -s wb -x 80 -y 24 \
    "cd '$tmp' && NO_COLOR=1 TERM=xterm-256color LANG=C.UTF-8 '$SUBMOE' tui '$DEMO' --plan '$tmp/plan.yaml'; echo EXIT=\$?; sleep 600"
check "opens the demo at 80x24" wait_for 'submoe workbench'
check "calibrates and previews layer 0" wait_for 'calibrated on'
check "layer list shows every MoE layer with its plan" has ' 3 MoE    8>6'
check "... and the model size before and after" wait_for 'params 3.41M -> 2.63M (77.0%)'
keys j
check "j selects layer 1" wait_for 'layer 1 plan'
keys k 2
check "the heatmap: shading, cluster boundaries and the cursor cell" wait_for 'S\[[0-9],[0-9]\]='
check "... boundaries drawn between groups, shaded cells" has '│.*[░▒▓█]'
keys M
check "M: method submoe (merging previewed)" wait_for 'layer 0: method submoe'
wait_for 'output err 0\.[0-9]' 20
before=$(screen | grep -o 'output err [0-9.]*' | head -1)
keys j j m
check "m moves an expert: the preview changes" sh -c "
    i=0; while [ \$i -lt 200 ]; do
        now=\$(tmux -S '$sock' capture-pane -t wb -p | grep -o 'output err [0-9.]*' | head -1)
        tmux -S '$sock' capture-pane -t wb -p | grep -q 'expert moved' && [ -n \"\$now\" ] && [ \"\$now\" != '$before' ] && exit 0
        sleep 0.1; i=\$((i + 1)); done; exit 1"
keys 3
check "the spectrum view with the rank marker" wait_for 'rank 256 of 256'
keys h h
check "h lowers the rank; numbers update" wait_for 'rank 224 of 256'
keys u u
check "u undoes the rank changes" wait_for 'rank 256 of 256'
keys 1 P
sleep 0.05
keys j
check "keys answered while the perplexity runs" wait_for 'layer 1 plan' 5
check "perplexity of the plan" wait_for 'perplexity [0-9.]* -> [0-9.]*' 60
keys w
check "w saves the plan" wait_for 'plan saved to'
check "the saved plan is a valid plan file" sh -c "grep -q '^submoe_plan: 1' '$tmp/plan.yaml'"
keys C
check "C asks where to commit" wait_for 'Commit: write the merged model'
keys Enter
check "commit writes the merged model" wait_for 'committed to demo-merged' 60
check "... as a model submoe reads" sh -c "'$SUBMOE' inspect '$tmp/demo-merged' >/dev/null"
keys C Enter
check "committing again asks before replacing" wait_for 'Replace it'
keys n
check "... n keeps it" wait_for 'commit cancelled'
"$SUBMOE" apply "$tmp/plan.yaml" -o "$tmp/fromplan" -q
check "apply of the saved plan = the workbench's commit (same bytes)" \
    sh -c "cmp -s '$tmp/fromplan/model.safetensors' '$tmp/demo-merged/model.safetensors' && cmp -s '$tmp/fromplan/config.json' '$tmp/demo-merged/config.json'"
keys C Tab
check "Tab in the commit dialog picks the format" wait_for 'format hf (standard layout)'
keys Enter
wait_for 'Replace it' 20
keys y
check "an hf commit replaces it after the question" wait_for 'committed to demo-merged (hf)' 60
check "... with the reduced expert count in config.json" grep -q '"num_local_experts": 6' "$tmp/demo-merged/config.json"
keys '?'
check "? shows the keys" wait_for 'perplexity of the whole plan'
keys x
keys 2 c
check "an edit after saving marks the plan modified" wait_for '\[modified\]'
keys q
check "q with unsaved edits asks" wait_for 'Quit and discard them'
keys y
check "y quits and restores the terminal (exit 0)" wait_for 'EXIT=0'
T kill-server >/dev/null 2>&1
# A 200x50 terminal and a resize to 80x24 while running (a second tmux server).
sock="$tmp/tmux2.sock"
"$SUBMOE" calibrate "$DEMO" --tokens "$SRCDIR/data/calib.u32" --samples 8 -o "$tmp/demo.stats" -q
T new-session -d -s wb -x 200 -y 50 \
    "cd '$tmp' && TERM=xterm-256color '$SUBMOE' '$DEMO' --calib '$tmp/demo.stats'; echo EXIT=\$?; sleep 600"
check "submoe MODEL --calib FILE opens at 200x50 in colour on that stats file" wait_for 'calibrated on .*demo.stats'
T resize-window -t wb -x 80 -y 24 >/dev/null 2>&1 || T resize-window -t wb -x 80 -y 24
keys 2
check "resized to 80x24: still drawn" wait_for 'layer 0: output similarity'
keys q
check "q quits an unmodified plan" wait_for 'EXIT=0'
T kill-server >/dev/null 2>&1
# SIGINT (Ctrl-C) restores the terminal and exits 130 (the wrapper shell traps INT to survive it).
sock="$tmp/tmux3.sock"
T new-session -d -s wb -x 80 -y 24 \
    "trap : INT; cd '$tmp' && NO_COLOR=1 TERM=xterm-256color '$SUBMOE' tui '$DEMO'; echo EXIT=\$?; sleep 600"
check "opens for the interrupt test" wait_for 'submoe workbench'
keys C-c
check "Ctrl-C: terminal restored, exit status 130" wait_for 'EXIT=130'
check "... and the screen is the shell's again" sh -c "! tmux -S '$sock' capture-pane -t wb -p | grep -q 'submoe workbench'"
T kill-server >/dev/null 2>&1
# Without UTF-8 (LANG=C) and without colour: ASCII rules, boundaries and shading.
sock="$tmp/tmux4.sock"
T new-session -d -s wb -x 80 -y 24 \
    "trap : INT; cd '$tmp' && LANG=C LC_ALL=C NO_COLOR=1 TERM=xterm '$SUBMOE' tui '$DEMO'; echo EXIT=\$?; sleep 600"
check "opens in an ASCII terminal" wait_for 'calibrated on'
keys 2
check "ASCII heatmap: '|' boundaries and the ' .:-=+#@' ramp" wait_for '^ *[0-9] .*[@#]*|.*[@#=:.-]'
check "... and '-' rules" has '^- layers ---'
keys q
check "q quits" wait_for 'EXIT=0'
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

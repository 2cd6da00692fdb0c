#!/bin/sh
# The workbench's group edits on the real binary through tmux (issue 14 §1): after calibration,
# 2 then - (the group count lowered before the re-clustering arrived: UBSan index out of bounds
# in the heatmap, then SEGV), 2 - m, 2 - n, 2 - g, 2 + + m, 2 - u U - -. Each runs in its own
# workbench: it must draw the heatmap at the new count, quit with 0 and leave no sanitizer
# report. The unit-level versions (and opened plans of group counts) are in test_tui_groups.c.
set -u
. "$SRCDIR/tests/lib.sh"
command -v tmux >/dev/null 2>&1 || { echo "tmux not installed: skipped"; exit 77; }
: "${ASAN_OPTIONS:=detect_leaks=1:abort_on_error=1}" "${UBSAN_OPTIONS:=print_stacktrace=1:halt_on_error=1}"
export ASAN_OPTIONS UBSAN_OPTIONS
tmp=$(mktemp -d "${TMPDIR:-/tmp}/submoe-tuigroups.XXXXXX")
sock="$tmp/tmux.sock"
T() { tmux -S "$sock" "$@"; }
trap 'for s in "$tmp"/*.sock; do tmux -S "$s" kill-server >/dev/null 2>&1; done; rm -rf "$tmp"' EXIT
screen() { T capture-pane -t wb -p 2>/dev/null; }
wait_for() { # wait_for REGEX [SECONDS] (wall-clock: a loaded machine slows the polling)
    until=$(($(date +%s) + ${2:-30}))
    while [ "$(date +%s)" -le "$until" ]; do
        screen | grep -Eq -- "$1" && return 0
        sleep 0.1
    done
    return 1
}

"$SUBMOE" synth --arch mixtral --out "$tmp/m" -q &&
    "$SUBMOE" calibrate "$tmp/m" --tokens "$SRCDIR/data/calib.u32" --samples 8 --seq-len 64 -o "$tmp/m.stats" -q ||
    { echo "cannot make the test model"; exit 99; }
# run NAME KEYS EXPECT: a fresh workbench; after calibration, KEYS; then the screen must show EXPECT
run() {
    name=$1 keys=$2 expect=$3
    rm -f "$tmp/err"
    sock="$tmp/tmux$n.sock" # a server of its own: a killed one may still hold the old socket
    T new-session -d -s wb -x 80 -y 24 \
        "cd '$tmp' && TERM=xterm-256color LANG=C.UTF-8 timeout --foreground 120 '$SUBMOE' tui '$tmp/m' --calib '$tmp/m.stats' 2>'$tmp/err'; echo EXIT=\$?; sleep 600"
    wait_for 'calibrated on' 60
    # shellcheck disable=SC2086
    T send-keys -t wb -- $keys
    ok=true
    wait_for "$expect|EXIT=" 60 && ! screen | grep -q 'EXIT=' || ok=false
    if $ok; then
        sleep 1 # the re-clustering and the previews arrive
        wait_for 'layer 0: output similarity|EXIT=' 10 && ! screen | grep -q 'EXIT=' || ok=false
        T send-keys -t wb Escape q y
    fi
    wait_for 'EXIT=' 60
    screen | grep -q 'EXIT=0' || ok=false
    grep -Eq 'runtime error|Sanitizer|SEGV' "$tmp/err" && ok=false
    check "$name: drawn, quits with 0, no sanitizer report" $ok
    $ok || { screen | sed 's/^/    | /'; sed 's/^/    ! /' "$tmp/err" | head -20; }
    T kill-server >/dev/null 2>&1
}

run "2 -" "2 -" 'into 5 groups'
run "2 - m" "2 - j j m" 'expert moved|already in'
run "2 - n" "2 - j j j n" 'new group|already alone'
run "2 - g" "2 - j j j l g" 'groups merged|same group'
run "2 + + m" "2 + + End m" 'expert moved|already in'
run "2 - u U -" "2 - u U - -" 'into 3 groups'
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

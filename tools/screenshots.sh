#!/bin/sh
# screenshots.sh: colour screenshots of the workbench, for the documentation (never run by the
# tests). It drives `submoe tui` through tmux (TERM=xterm-256color, colour on), shows each view at
# 80x24, 120x40 and 200x60, captures it with its colours (tmux capture-pane -e) and draws each
# capture as a PNG with tools/ansi2png (built by make; cairo, as the figures use).
#
#   tools/screenshots.sh [-b BUILDDIR] [-o OUTDIR] [-w SECONDS] [MODEL [WORKBENCH ARGS...]]
#
#   -b BUILDDIR  where src/submoe and tools/ansi2png were built (default: the current directory)
#   -o OUTDIR    where SIZE-VIEW.png and SIZE-VIEW.ansi go (default: screenshots)
#   -w SECONDS   how long to wait for every layer's preview (default 600)
#   MODEL        default: the bundled demo; e.g. /models/qwen3 --calib qwen3.stats
#
# The views: plan (1), heatmap (2) and its overview (z), spectrum (3), model (4), compare (5,
# against the plan as it was before one edit of layer 0's method), help (?), log (L). One
# session, resized between the sizes. Needs tmux.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
build=. out=screenshots wait=600
while getopts b:o:w: opt; do
    case $opt in
    b) build=$OPTARG ;;
    o) out=$OPTARG ;;
    w) wait=$OPTARG ;;
    *) sed -n '8,13p' "$0" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
build=$(cd "$build" && pwd)
submoe=$build/src/submoe ansi2png=$build/tools/ansi2png
for f in "$submoe" "$ansi2png"; do
    [ -x "$f" ] || { echo "screenshots.sh: $f: not built (make, or -b BUILDDIR)" >&2; exit 1; }
done
command -v tmux >/dev/null || { echo "screenshots.sh: tmux is not installed (Debian: tmux)" >&2; exit 1; }
[ $# -gt 0 ] || set -- "$here/data/demo"
mkdir -p "$out"
out=$(cd "$out" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/submoe-shots.XXXXXX")
sock=$tmp/tmux.sock
trap 'tmux -S "$sock" kill-server >/dev/null 2>&1; rm -rf "$tmp"' EXIT
T() { tmux -S "$sock" "$@"; }
screen() { T capture-pane -t wb -p; }
keys() { T send-keys -t wb -- "$@"; }
# wait_for REGEX SECONDS
wait_for() {
    i=0
    while [ $i -lt $(($2 * 10)) ]; do
        screen | grep -Eq -- "$1" && return 0
        sleep 0.1
        i=$((i + 1))
    done
    echo "screenshots.sh: gave up waiting for '$1'; the screen:" >&2
    screen >&2
    exit 1
}
# wait_idle: until no work's progress bar shows in the header (for up to -w seconds)
wait_idle() {
    i=0
    while [ $i -lt $((wait * 10)) ] && screen | sed -n 2p | grep -Eq '[0-9]+%$'; do
        sleep 0.1
        i=$((i + 1))
    done
}
# shot NAME: the screen, settled, as $out/SIZE-NAME.{ansi,png}
shot() {
    sleep 1
    T capture-pane -e -t wb -p >"$out/$size-$1.ansi"
    "$ansi2png" "$cols" "$rows" "$out/$size-$1.ansi" "$out/$size-$1.png"
    echo "$out/$size-$1.png"
}

args=
for a in "$@"; do args="$args '$a'"; done
T new-session -d -s wb -x 80 -y 24 \
    "cd '$tmp' && env -u NO_COLOR TERM=xterm-256color LANG=C.UTF-8 '$submoe' tui $args; echo EXIT=\$?; sleep 600"
wait_for 'every layer previewed' "$wait"
# a plan to compare with: this one saved, then one edit of layer 0's method
keys w
wait_for 'save the plan' 10
keys Enter
wait_for 'plan saved to' 30
keys 1 M
wait_for 'layer [0-9]+: method' 10
keys O
wait_for 'compare with a plan' 10
keys Enter
wait_for 'comparing with' 30
wait_idle # this plan's edited layer and the other plan's layers previewed

for size in 80x24 120x40 200x60; do
    cols=${size%x*} rows=${size#*x}
    T resize-window -t wb -x "$cols" -y "$rows"
    keys 1 # (not Esc: with work running, it cancels the work)
    wait_for 'layer [0-9]+ plan' 10
    shot plan
    keys 2
    wait_for 'similarity \(s\)' 10
    shot heatmap
    keys z
    wait_for 'heatmap overview' 10
    shot overview
    keys z 3
    wait_for 'rank [0-9]+/[0-9]+' "$wait"
    shot spectrum
    keys 4
    wait_for 'model: [0-9]+ MoE layer' 10
    shot model
    keys 5
    wait_for 'compare: this plan' "$wait"
    shot compare
    keys '?'
    wait_for 'any key closes this help' 10
    shot help
    keys Escape L
    wait_for 'messages: [0-9]+, lines' 10
    shot log
    keys Escape
done
keys q
sleep 0.5
keys y

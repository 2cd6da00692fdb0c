#!/bin/sh
# A model or stats file truncated while a command reads it (issue 14 §2; a network file system's
# I/O error looks the same: SIGBUS on the mapped read). Every command must fail with status 1 and
# "FILE changed or became unreadable while reading (tensor T)", print no result, and leave no
# temporary and no output behind. The file is truncated at a fixed point: SUBMOE_FAULT=mapped:N
# stops the command once its N-th input file is mapped (pause:N at its N-th write), the test
# truncates, then continues it. One case truncates by the clock instead, as a user would.
set -u
. "$SRCDIR/tests/lib.sh"
scratch changed
shown=/dev/null
show_failure() { sed 's/^/    | /' "$shown"; }

m="$tmp/m"
"$SUBMOE" synth --arch mixtral --layers 2 --hidden 256 --intermediate 512 --experts 8 --clusters 4 -q --out "$m" ||
    { echo "not ok - cannot make the test model"; exit 1; }
"$SUBMOE" calibrate "$m" --tokens "$SRCDIR/data/calib.u32" --samples 4 --seq-len 64 -q -o "$tmp/m.stats" ||
    { echo "not ok - cannot calibrate the test model"; exit 1; }
size=$(wc -c <"$m/model.safetensors")
ssize=$(wc -c <"$tmp/m.stats")

# fresh NAME: a new copy of the model at $tmp/NAME
fresh() { rm -rf "${tmp:?}/$1"; cp -r "$m" "$tmp/$1"; }

# run_paused POINT FILE BYTES CMD...: run CMD with SUBMOE_FAULT=POINT, truncate FILE to BYTES
# when it pauses, continue it; sets status, and leaves its stdout/stderr in $tmp/out, $tmp/err.
run_paused() {
    point=$1 file=$2 bytes=$3
    shift 3
    : >"$tmp/err"
    SUBMOE_FAULT=$point timeout 60 "$@" >"$tmp/out" 2>"$tmp/err" &
    pid=$!
    i=0
    while ! grep -q 'submoe-fault: paused' "$tmp/err" && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
    truncate -s "$bytes" "$file"
    sleep 0.1 # the stop has happened by the time the message is read; give it a moment anyway
    pkill -CONT -P "$pid" 2>/dev/null
    kill -CONT "$pid" 2>/dev/null
    wait "$pid"
    status=$?
}

# verdict NAME FILE OUTPUT...: status 1, the message naming FILE and a tensor, nothing on stdout,
# none of OUTPUT or OUTPUT.tmp-* left
verdict() {
    name=$1 file=$2
    shift 2
    left=""
    for o in "$@"; do
        for f in "$o" "$o".tmp-*; do [ -e "$f" ] && left="$left $f"; done
    done
    want="$file changed or became unreadable while reading (tensor "
    shown=$tmp/err
    if [ "$status" -ne 1 ]; then
        bad "$name: exit status $status, want 1"
    elif ! grep -qF "$want" "$tmp/err"; then
        bad "$name: no '$want...' message:"
    elif [ -s "$tmp/out" ]; then
        shown=$tmp/out; bad "$name: printed a result:"
    elif [ -n "$left" ]; then
        shown=/dev/null; bad "$name: left behind:$left"
    else
        ok "$name: $(grep -F "$want" "$tmp/err" | head -n 1)"
    fi
}

half=$((size / 2))
tokens="$SRCDIR/data/heldout.u32"

fresh e
run_paused mapped:1 "$tmp/e/model.safetensors" $half "$SUBMOE" eval "$tmp/e" --tokens "$tokens" --max-tokens 4096 -q
verdict "eval, model truncated" "$tmp/e/model.safetensors"

fresh e1
run_paused mapped:1 "$tmp/e1/model.safetensors" $half env SUBMOE_THREADS=1 \
    "$SUBMOE" eval "$tmp/e1" --tokens "$tokens" --max-tokens 4096 --json
verdict "eval (one thread, --json), model truncated" "$tmp/e1/model.safetensors"

fresh c
run_paused mapped:1 "$tmp/c/model.safetensors" $half \
    "$SUBMOE" calibrate "$tmp/c" --tokens "$SRCDIR/data/calib.u32" --samples 8 --seq-len 64 -q -o "$tmp/c.stats"
verdict "calibrate, model truncated" "$tmp/c/model.safetensors" "$tmp/c.stats"

# plan maps the model twice (checking the options, then resolving the plan), then the stats file
fresh p
run_paused mapped:2 "$tmp/p/model.safetensors" $half \
    "$SUBMOE" plan "$tmp/p" -c "$tmp/m.stats" -e 4 -q -o "$tmp/p.yaml"
verdict "plan, model truncated" "$tmp/p/model.safetensors" "$tmp/p.yaml"

cp "$tmp/m.stats" "$tmp/s.stats"
run_paused mapped:3 "$tmp/s.stats" $((ssize / 2)) "$SUBMOE" plan "$m" -c "$tmp/s.stats" -e 4 -q -o "$tmp/s.yaml"
verdict "plan, stats file truncated" "$tmp/s.stats" "$tmp/s.yaml"

fresh a
printf 'submoe_plan: 1\nmodel: {path: %s}\ncalibration: {stats: %s}\ndefaults: {experts: 4, method: freq-average}\n' \
    "$tmp/a" "$tmp/m.stats" >"$tmp/a.yaml"
run_paused mapped:1 "$tmp/a/model.safetensors" $half "$SUBMOE" apply "$tmp/a.yaml" -q -o "$tmp/a.out"
verdict "apply, model truncated before merging" "$tmp/a/model.safetensors" "$tmp/a.out"

# while the output is written: the first write is the first shard's header, then the tensors are
# copied from the source mapping
fresh a
run_paused pause:1 "$tmp/a/model.safetensors" $half "$SUBMOE" apply "$tmp/a.yaml" -q -o "$tmp/a.out"
verdict "apply, model truncated while copying tensors" "$tmp/a/model.safetensors" "$tmp/a.out"

fresh d
run_paused mapped:2 "$tmp/d/model.safetensors" $half "$SUBMOE" diff "$m" "$tmp/d"
verdict "diff, second model truncated" "$tmp/d/model.safetensors"

# The workbench: the model truncated once it is open; its background calibration reads it. It
# leaves the screen and exits with the message.
if command -v tmux >/dev/null 2>&1; then
    fresh w
    sock="$tmp/t.sock"
    : >"$tmp/err"
    rm -f "$tmp/tui.status"
    # (no job control in the pane: the background workbench still owns the terminal)
    tmux -S "$sock" new-session -d -s wb -x 100 -y 30 \
        "TERM=xterm-256color LANG=C.UTF-8 SUBMOE_FAULT=mapped:1 '$SUBMOE' tui '$tmp/w' </dev/tty 2>'$tmp/err' & echo \$! >'$tmp/tui.pid'; wait \$!; echo \$? >'$tmp/tui.status'; sleep 60"
    i=0
    while ! grep -q 'submoe-fault: paused' "$tmp/err" 2>/dev/null && [ $i -lt 400 ]; do sleep 0.05; i=$((i + 1)); done
    truncate -s $half "$tmp/w/model.safetensors"
    kill -CONT "$(cat "$tmp/tui.pid")"
    i=0
    while [ ! -s "$tmp/tui.status" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
    status=$(cat "$tmp/tui.status" 2>/dev/null || echo 124)
    : >"$tmp/out"
    verdict "tui, model truncated under the background calibration" "$tmp/w/model.safetensors"
    tmux -S "$sock" kill-server >/dev/null 2>&1
fi

# By the clock, as in the report: a one-thread eval of the whole held-out file runs for many
# seconds; truncate it once the model is mapped and the forward pass under way.
if [ -r /proc/self/maps ]; then
    fresh t
    SUBMOE_THREADS=1 timeout 120 "$SUBMOE" eval "$tmp/t" --tokens "$tokens" -q >"$tmp/out" 2>"$tmp/err" &
    pid=$!
    i=0
    child=""
    while ! grep -q "$tmp/t/model.safetensors" /proc/${child:-$pid}/maps 2>/dev/null && [ $i -lt 400 ]; do
        child=$(pgrep -P $pid | head -n 1) # timeout's child, the command
        sleep 0.05
        i=$((i + 1))
    done
    sleep 0.5
    truncate -s $half "$tmp/t/model.safetensors"
    wait $pid
    status=$?
    verdict "eval, model truncated by the clock" "$tmp/t/model.safetensors"
fi

echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

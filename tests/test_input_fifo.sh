#!/bin/sh
# Input files that are not regular files (issue 14 §2): a FIFO anywhere among the inputs used to
# hang the command forever, open(2) blocking before any check. Every kind of input of every
# command, as a FIFO (and a few as a device or a directory), must be refused at once with status 1
# and "PATH: not a regular file (...)". The workbench shows the refusal and still quits on q.
set -u
. "$SRCDIR/tests/lib.sh"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/submoe-fifo.XXXXXX")
trap 'for s in "$tmp"/*.sock; do [ -e "$s" ] && tmux -S "$s" kill-server >/dev/null 2>&1; done; rm -rf "$tmp"' EXIT
shown=/dev/null # what a failure shows: the output checked last
show_failure() { sed 's/^/    | /' "$shown"; }

# refused NAME PATH -- command...: exit 1 within 10 s, naming PATH as not a regular file
refused() {
    name=$1 path=$2
    shift 3
    timeout 10 "$@" </dev/null >"$tmp/out" 2>&1
    got=$?
    shown=$tmp/out
    if [ "$got" -eq 124 ]; then
        shown=/dev/null; bad "$name: still blocked after 10 s"
    elif [ "$got" -ne 1 ]; then
        bad "$name: exit $got, want 1"
    elif ! grep -qF -- "$path: not a regular file (" "$tmp/out"; then
        bad "$name: no '$path: not a regular file' message:"
    else
        ok "$name: $(head -n 1 "$tmp/out")"
    fi
}

# model_with NAME FILE: a copy of the demo model at $tmp/NAME whose FILE is a FIFO
model_with() {
    rm -rf "${tmp:?}/$1"
    cp -r "$DEMO" "$tmp/$1"
    rm -f "$tmp/$1/$2"
    mkfifo "$tmp/$1/$2"
}

"$SUBMOE" calibrate "$DEMO" --tokens "$SRCDIR/data/calib.u32" --samples 2 --seq-len 64 -q -o "$tmp/demo.stats" ||
    { echo "not ok - cannot calibrate the demo model"; exit 1; }
mkfifo "$tmp/fifo"

model_with cfg config.json
refused "inspect: config.json a FIFO" "$tmp/cfg/config.json" -- "$SUBMOE" inspect "$tmp/cfg"
model_with st model.safetensors
refused "inspect: model.safetensors a FIFO" "$tmp/st/model.safetensors" -- "$SUBMOE" inspect "$tmp/st"
model_with idx model.safetensors.index.json
refused "inspect: the shard index a FIFO" "$tmp/idx/model.safetensors.index.json" -- "$SUBMOE" inspect "$tmp/idx"
model_with shard model-00001-of-00001.safetensors
rm -f "$tmp/shard/model.safetensors"
printf '{"weight_map": {"model.embed_tokens.weight": "model-00001-of-00001.safetensors"}}\n' \
    >"$tmp/shard/model.safetensors.index.json"
refused "inspect: a shard a FIFO" "$tmp/shard/model-00001-of-00001.safetensors" -- "$SUBMOE" inspect "$tmp/shard"
refused "diff: the second model's config.json a FIFO" "$tmp/cfg/config.json" -- "$SUBMOE" diff "$DEMO" "$tmp/cfg"

refused "eval --tokens a FIFO" "$tmp/fifo" -- "$SUBMOE" eval "$DEMO" --tokens "$tmp/fifo"
refused "eval --tokens a device" /dev/null -- "$SUBMOE" eval "$DEMO" --tokens /dev/null
refused "eval --tokens a directory" "$tmp" -- "$SUBMOE" eval "$DEMO" --tokens "$tmp"
refused "calibrate --tokens a FIFO" "$tmp/fifo" -- \
    "$SUBMOE" calibrate "$DEMO" --tokens "$tmp/fifo" -q -o "$tmp/x.stats"
refused "plan -c STATS a FIFO" "$tmp/fifo" -- "$SUBMOE" plan "$DEMO" -c "$tmp/fifo" -e 6 -q -o "$tmp/x.yaml"
refused "apply PLAN a FIFO" "$tmp/fifo" -- "$SUBMOE" apply "$tmp/fifo" -q -o "$tmp/x.out"

printf 'submoe_plan: 1\nmodel: {path: %s}\ncalibration: {stats: %s}\ndefaults: {experts: 6, method: freq-average}\n' \
    "$DEMO" "$tmp/fifo" >"$tmp/stats-fifo.yaml"
refused "apply: the plan's stats file a FIFO" "$tmp/fifo" -- "$SUBMOE" apply "$tmp/stats-fifo.yaml" -q -o "$tmp/x.out"
model_with tok tokenizer.json
printf 'submoe_plan: 1\nmodel: {path: %s}\ncalibration: {stats: %s}\ndefaults: {experts: 6, method: freq-average}\n' \
    "$tmp/tok" "$tmp/demo.stats" >"$tmp/tok.yaml"
refused "apply: tokenizer.json (copied to the output) a FIFO" "$tmp/tok/tokenizer.json" -- \
    "$SUBMOE" apply "$tmp/tok.yaml" -q -o "$tmp/x.out"
shown=/dev/null
if ls "$tmp" | grep -q 'x\.'; then
    bad "output or temporaries left behind: $(ls "$tmp" | grep 'x\.' | tr '\n' ' ')"
else
    ok "no output or temporary left behind"
fi

# The workbench, in tmux: --plan is read before the screen opens (status 1 and the message);
# --calib and --tokens are read by the background calibration: the refusal shows in the status
# line and q still quits (it used to wait forever for the blocked step).
if command -v tmux >/dev/null 2>&1; then
    # tui NAME PATTERN ARGS...: run the workbench on the demo; PATTERN must show; q quits within 10 s
    tui() {
        name=$1 pat=$2
        shift 2
        sock="$tmp/$n.sock"
        : >"$tmp/tui.status"
        tmux -S "$sock" new-session -d -s wb -x 120 -y 30 \
            "TERM=xterm-256color LANG=C.UTF-8 NO_COLOR=1 timeout --foreground 60 '$SUBMOE' tui '$DEMO' $* 2>'$tmp/tui.err'; echo \$? >'$tmp/tui.status'; sleep 60"
        i=0
        while [ $i -lt 200 ] && ! { tmux -S "$sock" capture-pane -t wb -p; cat "$tmp/tui.err"; } 2>/dev/null |
            grep -qF -- "$pat"; do
            sleep 0.05; i=$((i + 1))
        done
        if [ $i -ge 200 ]; then
            tmux -S "$sock" capture-pane -t wb -p >"$tmp/screen"
            shown=$tmp/screen; bad "$name: '$pat' never shown"
        else
            tmux -S "$sock" send-keys -t wb q
            i=0
            while [ $i -lt 200 ] && [ ! -s "$tmp/tui.status" ]; do sleep 0.05; i=$((i + 1)); done
            if [ ! -s "$tmp/tui.status" ]; then
                shown=/dev/null; bad "$name: shown, but q did not quit within 10 s"
            else
                ok "$name: '$pat' shown, exit $(cat "$tmp/tui.status")"
            fi
        fi
        tmux -S "$sock" kill-server >/dev/null 2>&1
    }
    tui "tui --plan a FIFO" "$tmp/fifo: not a regular file (a FIFO)" --plan "$tmp/fifo"
    tui "tui --calib a FIFO" "fifo: not a regular file (a FIFO)" --calib "$tmp/fifo"
    tui "tui --tokens a FIFO" "fifo: not a regular file (a FIFO)" --tokens "$tmp/fifo"
else
    echo "# tmux not installed: the workbench cases skipped"
fi

echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

#!/bin/sh
# The workbench's outputs (issue 14 §4), driven through tmux: saving the plan (w) over a file of
# the model it edits is refused; a commit (C) into the model directory is refused even after
# "replace it? y"; a commit directory someone else creates while the commit runs is left alone
# (the commit fails and says so); the workbench goes on.
set -u
. "$SRCDIR/tests/lib.sh"
tmux_harness outtui
S=$SUBMOE
timeout 120 "$S" synth --arch mixtral --layers 4 --hidden 256 --intermediate 1024 --experts 8 --heads 8 --kv-heads 2 \
    -q --out "$tmp/mm"
timeout 120 "$S" calibrate "$tmp/mm" --tokens "$SRCDIR/data/calib.u32" --samples 4 --seq-len 64 -o "$tmp/mm.stats" -q
sum=$(cat "$tmp"/mm/* | cksum)

T new-session -d -s wb -x 100 -y 30 \
    "cd '$tmp' && NO_COLOR=1 TERM=xterm-256color LANG=C.UTF-8 '$S' tui mm --calib mm.stats --plan p.yaml; echo EXIT=\$?; sleep 600"
check "opens" wait_for 'calibrated on mm.stats' 120
# A commit races with someone creating its directory: stop it once its temporary exists.
keys C C-u racy Enter
i=0
while ! ls -d "$tmp"/racy.tmp-* >/dev/null 2>&1 && [ $i -lt 6000 ]; do sleep 0.01; i=$((i + 1)); done
pid=$(ls -d "$tmp"/racy.tmp-* 2>/dev/null | sed -n 's/.*racy\.tmp-\([0-9]*\)$/\1/p' | head -1)
if [ -n "$pid" ] && kill -STOP "$pid" 2>/dev/null && [ -d "$tmp/racy.tmp-$pid" ]; then
    mkdir "$tmp/racy" && echo theirs >"$tmp/racy/file"
    kill -CONT "$pid"
    check "a commit directory created meanwhile: the commit fails, says so" wait_for 'racy: appeared while this' 120
    check "... their directory is left as it is, no temporary" \
        sh -c "[ \"\$(ls '$tmp/racy')\" = file ] && ! ls -d '$tmp'/racy.tmp-* >/dev/null 2>&1"
else
    [ -n "$pid" ] && kill -CONT "$pid" 2>/dev/null
    check "the commit's temporary showed" false
fi
keys w C-u "mm/config.json" Enter
check "w over the model's config.json: refused in the status line" \
    wait_for 'mm/config.json: the output would replace the source model file' 60
keys C C-u mm Enter
wait_for 'Replace it' 20
keys y
check "C into the model directory, replace: y: refused" wait_for 'mm: the output would replace the source model' 60
check "... the model is unchanged" test "$(cat "$tmp"/mm/* | cksum)" = "$sum"
keys C C-u fine Enter
check "... and the workbench goes on: the next commit succeeds" wait_for 'committed to fine' 120
keys q
wait_for 'Quit' 5 && keys y
check "quits" wait_for 'EXIT=0' 20
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

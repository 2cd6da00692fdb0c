#!/bin/sh
# SIGINT / SIGTERM during long commands: the conventional exit status (130 / 143), promptly (the
# signal cancels the work in progress, not only the next write), no output and no temporary left
# behind. Covered: synth while writing, calibrate while capturing, plan from a cached stats file
# while building layers, apply while merging (prune-output's expert outputs take seconds per layer;
# the writes are quick), and eval in the middle of the forward pass (nothing printed).
set -u
. "$SRCDIR/tests/lib.sh"
scratch signal
mkdir "$tmp/tmpdir"
TMPDIR=$tmp/tmpdir
export TMPDIR
# One forward-pass thread: the long commands stay long on a machine with many cores.
SUBMOE_THREADS=1
export SUBMOE_THREADS
# Seconds a command may take to exit after the signal (generous for the sanitizer build).
LIMIT=${SIGNAL_LIMIT:-2.5}

# check_signalled NAME SIG PID T0 OUTPUT...: the command (PID) got SIG at time T0; it must exit with
# 128+SIG within LIMIT seconds, and none of OUTPUT (or OUTPUT.*) may exist.
check_signalled() {
    name=$1 sig=$2 pid=$3 t0=$4
    shift 4
    wait "$pid"
    status=$?
    took=$(seconds_since "$t0")
    want=$((128 + $(kill -l "$sig")))
    left=""
    for o in "$@"; do
        for f in "$o" "$o".*; do [ -e "$f" ] && left="$left $f"; done
    done
    for f in "$tmp/tmpdir"/*; do [ -e "$f" ] && left="$left $f"; done
    if [ "$status" -ne "$want" ]; then
        bad "$name SIG$sig: exit status $status, want $want"
    elif longer_than "$took" "$LIMIT"; then
        bad "$name SIG$sig: took $took s to exit (limit $LIMIT s)"
    elif [ -n "$left" ]; then
        bad "$name SIG$sig: left behind:$left"
    else
        ok "$name SIG$sig: exit $status after $took s, nothing left behind"
    fi
}

# synth while writing (about 1.2 GB of f32: long enough to be caught mid-write on any machine)
for sig in INT TERM; do
    out="$tmp/model-$sig"
    "$SUBMOE" synth --arch mixtral --layers 4 --hidden 1024 --intermediate 4096 --experts 8 -q --out "$out" &
    pid=$!
    wait_for_file "$out.tmp-$pid"
    sleep 0.2
    t0=$(now)
    kill -$sig $pid
    check_signalled synth $sig $pid "$t0" "$out"
done

# A model whose commands each run for many seconds: 4 MoE layers of 8 experts, hidden 256.
m="$tmp/m"
"$SUBMOE" synth --arch mixtral --layers 4 --hidden 256 --intermediate 512 --experts 8 --clusters 4 -q --out "$m" ||
    { echo "not ok - cannot make the test model"; exit 1; }
"$SUBMOE" calibrate "$m" --tokens "$SRCDIR/data/calib.u32" -q -o "$tmp/m.stats" ||
    { echo "not ok - cannot calibrate the test model"; exit 1; }

# calibrate: 256 sequences of 256 tokens (several seconds); signalled once its file is begun
out="$tmp/c.stats"
"$SUBMOE" calibrate "$m" --tokens "$SRCDIR/data/calib.u32" --samples 256 -q -o "$out" &
pid=$!
wait_for_file "$out.tmp-$pid"
sleep 0.3
t0=$(now)
kill -INT $pid
check_signalled calibrate INT $pid "$t0" "$out"

# plan from the cached stats: every layer's auto build takes seconds; no plan file written
out="$tmp/p.yaml"
"$SUBMOE" plan "$m" -c "$tmp/m.stats" -e 4 -q -o "$out" &
pid=$!
sleep 1.5
t0=$(now)
kill -TERM $pid
check_signalled "plan -c" TERM $pid "$t0" "$out"

# apply while merging: the output directory is begun after the first pass (cheap here); the
# second pass spends seconds per layer on prune-output's expert outputs, milliseconds writing
printf 'submoe_plan: 1\nmodel: {path: %s}\ncalibration: {stats: %s}\ndefaults: {experts: 4, method: prune-output}\n' \
    "$m" "$tmp/m.stats" >"$tmp/apply.yaml"
for sig in INT TERM; do
    out="$tmp/out-$sig"
    "$SUBMOE" apply "$tmp/apply.yaml" -q -o "$out" &
    pid=$!
    wait_for_file "$out.tmp-$pid"
    sleep 0.5
    t0=$(now)
    kill -$sig $pid
    check_signalled "apply (merging)" $sig $pid "$t0" "$out"
done

# A second signal while the first one's orderly stop is stuck in a step that cannot be cancelled
# (SUBMOE_FAULT=stall:1: the first write stalls for 30 s through signals, like one long LAPACK
# call): quit at once with the signal's status, saying so and naming the temporary left behind.
out="$tmp/out-twice"
sed 's/prune-output/prune-frequency/' "$tmp/apply.yaml" >"$tmp/twice.yaml"
SUBMOE_FAULT=stall:1 "$SUBMOE" apply "$tmp/twice.yaml" -q -o "$out" 2>"$tmp/twice.err" &
pid=$!
i=0
while ! grep -q stalling "$tmp/twice.err" 2>/dev/null && [ $i -lt 400 ]; do sleep 0.05; i=$((i + 1)); done
kill -INT $pid
sleep 1
if kill -0 $pid 2>/dev/null; then
    ok "one SIGINT during an uncancellable step: still stopping after 1 s"
else
    bad "the stalled apply exited on the first SIGINT (the stall did not hold)"
fi
t0=$(now)
kill -INT $pid
wait $pid
status=$?
took=$(seconds_since "$t0")
if [ $status -eq 130 ] && ! longer_than "$took" "$LIMIT" &&
    grep -q "^submoe: second signal: quitting at once; left behind: $out.tmp-$pid\$" "$tmp/twice.err" &&
    [ "$(grep -vc '^submoe-fault' "$tmp/twice.err")" -eq 1 ] &&
    [ ! -e "$out" ]; then
    ok "a second SIGINT quits at once ($took s, status 130), naming $out.tmp-$pid"
else
    bad "second SIGINT: status $status after $took s; stderr: $(cat "$tmp/twice.err")"
fi
rm -rf "$out.tmp-$pid"

# eval: the whole token file (tens of seconds); no perplexity printed
for sig in INT TERM; do
    "$SUBMOE" eval "$m" --tokens "$SRCDIR/data/calib.u32" -q >"$tmp/eval.out" &
    pid=$!
    sleep 1
    t0=$(now)
    kill -$sig $pid
    check_signalled eval $sig $pid "$t0"
    if [ -s "$tmp/eval.out" ]; then
        bad "eval printed a result after SIG$sig: $(cat "$tmp/eval.out")"
    else
        ok "eval printed nothing after SIG$sig"
    fi
done

echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

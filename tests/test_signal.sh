#!/bin/sh
# SIGINT / SIGTERM while a model is being written: conventional exit status, no output
# directory, no temporary directory left behind.
set -u
tmp=$(mktemp -d "${TMPDIR:-/tmp}/submoe-signal.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0
n=0
for sig in INT TERM; do
    n=$((n + 1))
    out="$tmp/model-$sig"
    # About 1.2 GB of f32: long enough to be caught mid-write on any machine.
    "$SUBMOE" synth --arch mixtral --layers 4 --hidden 1024 --intermediate 4096 --experts 8 -q --out "$out" &
    pid=$!
    i=0
    while [ ! -d "$out.tmp-$pid" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
    sleep 0.2
    kill -$sig $pid
    wait $pid
    status=$?
    want=$((128 + $(kill -l $sig)))
    if [ "$status" -ne "$want" ]; then
        echo "not ok $n - SIG$sig: exit status $status, want $want"; fail=$((fail + 1))
    elif [ -e "$out" ] || ls -d "$out".* >/dev/null 2>&1; then
        echo "not ok $n - SIG$sig: output or temporary left behind: $(ls "$tmp")"; fail=$((fail + 1))
    else
        echo "ok $n - SIG$sig: exit $status, nothing left behind"
    fi
done
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

#!/bin/sh
# Failure injection (util/fault.h): every write point and every final rename of synth (single
# file and sharded), calibrate, plan and apply (native and sharded hf) fails in turn — ENOSPC,
# EIO or a short write. Each time: exit status 1, one message naming the file and the error, no
# output, no temporary left, the source model unchanged.
set -u
tmp=$(mktemp -d "${TMPDIR:-/tmp}/submoe-fault.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0
n=0
cd "$tmp" || exit 1
S=$SUBMOE
model_args="--arch mixtral --layers 2 --hidden 16 --intermediate 32 --experts 4 --clusters 2 --heads 2 --kv-heads 1 --vocab 256 -q"
"$S" synth $model_args --out m
head -c 16384 "$SRCDIR/data/calib.u32" >t.u32
"$S" plan m --ratio 0.5 -t t.u32 --samples 4 --seq-len 64 --keep 200 -c m.stats -o p.yaml -q
src_sum=$(cat m/* | cksum)

# inject KIND COUNT NAME OUTPUT -- COMMAND...: fail each of COUNT points of KIND in turn
inject() {
    kind=$1 count=$2 name=$3 out=$4
    shift 5
    i=1
    bad=0
    while [ $i -le "$count" ]; do
        case $kind:$((i % 3)) in
        write:0) spec="write:$i" ;;
        write:1) spec="write:$i:eio" ;;
        write:2) spec="write:$i:short" ;;
        *) spec="$kind:$i" ;;
        esac
        SUBMOE_FAULT=$spec "$@" 2>err >/dev/null
        st=$?
        left=$(ls -d "$out" "$out".* 2>/dev/null | head -1)
        if [ $st -ne 1 ] || [ "$(wc -l <err)" -ne 1 ] || ! grep -qE "(write failed|cannot move|cannot rename).*(space|Input/output)" err ||
            [ -n "$left" ]; then
            echo "    $name, $spec: exit $st, left '$left', stderr: $(cat err)"
            bad=$((bad + 1))
        fi
        i=$((i + 1))
    done
    n=$((n + 1))
    if [ $bad -eq 0 ]; then
        echo "ok $n - $name: each of $count ${kind}s failed in turn: exit 1, one message, nothing left"
    else
        echo "not ok $n - $name: $bad of $count ${kind} points misbehaved"
        fail=$((fail + 1))
    fi
}
points() { # points KIND COMMAND...: how many write/rename points a clean run has
    kind=$1
    shift
    SUBMOE_FAULT=count "$@" 2>&1 >/dev/null | sed -n "s/^submoe-fault: \([0-9]*\) writes, \([0-9]*\) renames$/\1 \2/p" |
        awk -v k="$kind" '{ print (k == "write") ? $1 : $2 }'
}
run_all() { # run_all NAME OUTPUT COMMAND...
    name=$1 out=$2
    shift 2
    rm -rf "$out"
    w=$(points write "$@")
    rm -rf "$out"
    r=$(points rename "$@")
    rm -rf "$out"
    if [ -z "$w" ] || [ "$w" -lt 1 ]; then
        n=$((n + 1)); echo "not ok $n - $name: no write points counted"; fail=$((fail + 1)); return
    fi
    inject write "$w" "$name" "$out" -- "$@"
    inject rename "$r" "$name" "$out" -- "$@"
}
run_all "synth" synth1 "$S" synth $model_args --out synth1
run_all "synth, sharded" synth2 "$S" synth $model_args --shard-size 20K --out synth2
run_all "calibrate" c.stats "$S" calibrate m --tokens t.u32 --samples 4 --seq-len 64 --keep 100 -o c.stats -q
run_all "plan" p2.yaml "$S" plan m --ratio 0.5 -c m.stats -o p2.yaml -q
run_all "apply (native)" out1 "$S" apply p.yaml -o out1 -q
run_all "apply (hf)" out2 "$S" apply p.yaml -o out2 --format hf -q
n=$((n + 1))
if [ "$(cat m/* | cksum)" = "$src_sum" ]; then echo "ok $n - the source model is unchanged"; else
    echo "not ok $n - the source model changed"; fail=$((fail + 1)); fi
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

#!/bin/sh
# Failure injection (util/fault.h): every write point and every final rename of synth (single
# file and sharded), calibrate, plan and apply (native; hf; hf in two shards with an index and
# the source's tokenizer and generation files; hf-expanded) fails in turn — ENOSPC, EIO or a
# short write. Each time: exit status 1, one message naming the file (under the output's name)
# and the error, no output, no temporary left, the source model unchanged. apply --force over an
# existing output: every write and the one rename (renameat2 RENAME_EXCHANGE of the new output
# with the old) fail in turn and the old output stays byte-identical.
set -u
. "$SRCDIR/tests/lib.sh"
scratch fault
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
    misbehaved=0
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
            ! grep -qF "$out" err || [ -n "$left" ]; then
            echo "    $name, $spec: exit $st, left '$left', stderr: $(cat err)"
            misbehaved=$((misbehaved + 1))
        fi
        i=$((i + 1))
    done
    if [ $misbehaved -eq 0 ]; then
        ok "$name: each of $count ${kind}s failed in turn: exit 1, one message, nothing left"
    else
        bad "$name: $misbehaved of $count ${kind} points misbehaved"
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
        bad "$name: no write points counted"; return
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

# A source with tokenizer and generation files, big enough that a 1M shard size gives two shards:
# the hf writer's shard files, index and file copies, and hf-expanded's expansion.
"$S" synth --arch mixtral --layers 2 --hidden 64 --intermediate 128 --experts 8 --clusters 4 --heads 2 --kv-heads 1 \
    --vocab 256 -q --out m2
printf '{"model": "fake"}\n' >m2/tokenizer.json
printf '{"padding_side": "left"}\n' >m2/tokenizer_config.json
printf '{"bos_token_id": 1}\n' >m2/generation_config.json
"$S" plan m2 --ratio 0.25 -m submoe -t t.u32 --samples 4 --seq-len 64 --keep 200 -c m2.stats --format hf \
    --shard-size 1M -o p3.yaml -q
"$S" plan m2 --ratio 0.5 -m submoe -c m2.stats --format hf -o p4.yaml -q
src2_sum=$(cat m2/* | cksum)
"$S" apply p3.yaml -o clean -q
if [ -f clean/model-00002-of-00002.safetensors ] && [ -f clean/model.safetensors.index.json ] &&
    cmp -s clean/tokenizer.json m2/tokenizer.json && cmp -s clean/generation_config.json m2/generation_config.json; then
    ok "the hf test output has two shards, an index and the tokenizer and generation files"
else
    bad "the hf test output lacks shards or copied files: $(ls clean)"
fi
rm -rf clean
run_all "apply (hf, 2 shards, tokenizer files)" out3 "$S" apply p3.yaml -o out3 -q
run_all "apply (hf-expanded)" out4 "$S" apply p3.yaml -o out4 --format hf-expanded -q

# --force over an existing (different) output: every failure leaves the old output as it was.
"$S" apply p4.yaml -o old -q
old_sum=$(cd old && ls && cat ./* | cksum)
rm -rf oldc && cp -r old oldc
fw=$(points write "$S" apply p3.yaml -o oldc --force -q)
rm -rf oldc && cp -r old oldc
fr=$(points rename "$S" apply p3.yaml -o oldc --force -q)
rm -rf oldc
for kind in write rename; do
    count=$fw
    [ $kind = rename ] && count=$fr
    i=1 misbehaved=0
    while [ $i -le "${count:-0}" ]; do
        case $kind:$((i % 3)) in
        write:0) spec="write:$i" ;;
        write:1) spec="write:$i:eio" ;;
        write:2) spec="write:$i:short" ;;
        *) spec="$kind:$i" ;;
        esac
        SUBMOE_FAULT=$spec "$S" apply p3.yaml -o old --force -q 2>err >/dev/null
        st=$?
        left=$(ls -d old.* 2>/dev/null | head -1)
        if [ $st -ne 1 ] || [ "$(wc -l <err)" -ne 1 ] || ! grep -qE "(write failed|cannot move|cannot rename).*(space|Input/output)" err ||
            ! grep -qF old err || [ -n "$left" ] || [ "$(cd old && ls && cat ./* | cksum)" != "$old_sum" ]; then
            echo "    --force, $spec: exit $st, left '$left', stderr: $(cat err)"
            misbehaved=$((misbehaved + 1))
        fi
        i=$((i + 1))
    done
    if [ "${count:-0}" -ge 1 ] && [ $misbehaved -eq 0 ]; then
        ok "apply --force over an existing output: each of $count ${kind}s failed in turn: exit 1, one message, the old output byte-identical"
    else
        bad "apply --force: $misbehaved of ${count:-0} ${kind} points misbehaved"
    fi
done
if [ "${fr:-0}" -eq 1 ]; then ok "--force has one rename (the new output exchanged with the old one)"; else
    bad "--force has ${fr:-0} renames, want 1"; fi

if [ "$(cat m/* | cksum)" = "$src_sum" ] && [ "$(cat m2/* | cksum)" = "$src2_sum" ]; then
    ok "the source models are unchanged"; else
    bad "a source model changed"; fi
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

#!/bin/sh
# Every hand-crafted corrupt model in tests/corrupt/ must give exactly one clear error line
# containing the expected text and exit with status 1 — never a crash, never success. Then a
# sharded model with one damaged shard, through eval, calibrate, apply, plan and inspect.
# (Regenerate the corpus with tools/make_corrupt_corpus.py.)
set -u
. "$SRCDIR/tests/lib.sh"
tmp=${TMPDIR:-/tmp}/submoe-corrupt.$$
show_failure() { cat "$shown"; } # a failed case's stderr
shown=$tmp.err
for dir in "$SRCDIR"/tests/corrupt/*/; do
    case=$(basename "$dir")
    expected=$(cat "$dir/expected")
    "$SUBMOE" inspect "$dir" >"$tmp.out" 2>"$tmp.err"
    status=$?
    lines=$(wc -l <"$tmp.err")
    if [ "$status" -ne 1 ]; then
        bad "$case: exit status $status (want 1)"
    elif [ "$lines" -ne 1 ]; then
        bad "$case: $lines lines on stderr (want 1)"
    elif ! grep -qF -- "$expected" "$tmp.err"; then
        bad "$case: message does not contain: $expected"
    elif [ -s "$tmp.out" ]; then
        bad "$case: printed to stdout on failure"
    else
        ok "$case: $(cat "$tmp.err")"
    fi
done
rm -f "$tmp.out" "$tmp.err"

# A sharded model with a damaged shard (cut short as by an interrupted download, its header cut,
# emptied, missing): every command that reads the model fails when it opens it, before any work,
# with one line naming the shard, and leaves no output or temporary.
d=$(mktemp -d "${TMPDIR:-/tmp}/submoe-corrupt-shard.XXXXXX")
trap 'rm -rf "$d"' EXIT
shown=$d/err
"$SUBMOE" synth --arch mixtral --layers 2 --hidden 32 --intermediate 64 --experts 4 --clusters 2 --heads 2 \
    --kv-heads 1 --vocab 256 --shard-size 40K -q --out "$d/good"
shard=model-00002-of-00008.safetensors
damage() { # damage HOW: a copy of the good model with shard 2 damaged
    rm -rf "$d/m"
    cp -r "$d/good" "$d/m"
    case $1 in
    truncated) truncate -s -1000 "$d/m/$shard"; want="$shard: tensor" ;;
    header) truncate -s 300 "$d/m/$shard"; want="$shard: header length" ;;
    empty) : >"$d/m/$shard"; want="$shard:" ;;
    missing) rm "$d/m/$shard"; want="$shard" ;;
    esac
}
shard_case() { # shard_case NAME OUTPUT -- command...
    name=$1 out=$2
    shift 3
    "$@" >"$d/out" 2>"$d/err"
    status=$?
    left=$(ls -d "$out" "$out".* 2>/dev/null | head -1)
    if [ "$status" -ne 1 ] || [ "$(wc -l <"$d/err")" -ne 1 ] || ! grep -qF -- "$want" "$d/err"; then
        bad "$name: exit $status, want 1 and one line with '$want'"
    elif [ -n "$left" ] || [ -s "$d/out" ]; then
        bad "$name: output left behind or printed ($left)"
    else
        ok "$name: $(cat "$d/err")"
    fi
}
printf 'submoe_plan: 1\nmodel: {path: %s}\ncalibration: {tokens: %s}\ndefaults: {experts: 2}\n' \
    "$d/m" "$SRCDIR/data/calib.u32" >"$d/p.yaml"
for how in truncated header empty missing; do
    damage "$how"
    shard_case "shard $how: eval" "$d/none" -- "$SUBMOE" eval "$d/m" --tokens "$SRCDIR/data/heldout.u32" -q
    shard_case "shard $how: calibrate" "$d/c.stats" -- \
        "$SUBMOE" calibrate "$d/m" --tokens "$SRCDIR/data/calib.u32" -q -o "$d/c.stats"
    shard_case "shard $how: apply" "$d/out-model" -- "$SUBMOE" apply "$d/p.yaml" -q -o "$d/out-model"
done
damage truncated
shard_case "shard truncated: plan" "$d/p2.yaml" -- "$SUBMOE" plan "$d/m" -e 2 -q -o "$d/p2.yaml"
shard_case "shard truncated: inspect" "$d/none" -- "$SUBMOE" inspect "$d/m"

echo "$n cases, $fail failed"
[ "$n" -ge 15 ] && [ "$fail" -eq 0 ]

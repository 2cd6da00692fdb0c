#!/bin/sh
# `submoe eval --task`: the demo task (data/demo-task.jsonl) on the demo model against the PyTorch
# reference recorded by tools/ref_forward.py --task (tests/fixtures/demo-task-ref.tsv): every
# choice's log-likelihood of the first 40 items to 1e-4 and their acc / acc_norm exactly (the
# whole file is tests/test_eval_task_slow.sh, in SLOW_TESTS); broken task files
# (tests/corrupt-task), a model without tokenizer.json and option misuse: one message naming the
# file and line, exit status 1 (2 for usage), nothing on standard output, no --items file.
set -u
. "$SRCDIR/tests/lib.sh"
scratch evaltask
demo="$SRCDIR/data/demo"
ref="$SRCDIR/tests/fixtures/demo-task-ref.tsv"
corrupt="$SRCDIR/tests/corrupt-task"

# --- the demo task, first 40 items --------------------------------------------------------------
head -n 40 "$SRCDIR/data/demo-task.jsonl" >"$tmp/demo40.jsonl"
timeout 300 "$SUBMOE" eval "$demo" --task "$tmp/demo40.jsonl" --precision fp32 --items "$tmp/items.tsv" -q >"$tmp/out" 2>"$tmp/err"
rc=$?
check_expr "demo task (40 items) runs (exit $rc)" '[ $rc -eq 0 ] && [ -s "$tmp/items.tsv" ]'
cat "$tmp/err"
want=$(awk 'NR == 2 { printf "%.6f %.6f\n", $6, $8 }' "$ref")
got=$(cat "$tmp/out")
check_expr "acc and acc_norm of the first 40 items equal the reference's ($got = $want)" '[ "$got" = "$want" ]'
# join on (line, choice); compare tokens exactly and log-likelihoods to 1e-4
res=$(awk -F'\t' 'FNR == 1 { f++ } /^#/ || /^line/ || /^file/ { next }
    f == 1 { ll[$1 "/" $2] = $5; tk[$1 "/" $2] = $4; next }
    { k = $2 "/" $3; seen++; if (!(k in ll)) { miss++; next }
      d = $6 - ll[k]; if (d < 0) d = -d; if (d > worst) worst = d; if ($5 != tk[k]) badtok++ }
    END { printf "%d %d %d %.3g\n", seen, miss, badtok, worst }' "$ref" "$tmp/items.tsv")
read -r seen miss badtok worst <<EOT
$res
EOT
check_expr "160 choices compared, all in the reference ($res)" '[ "$seen" -eq 160 ] && [ "$miss" -eq 0 ]'
check_expr "continuation token counts equal the reference's" '[ "$badtok" -eq 0 ]'
check_expr "max |log-likelihood - reference| $worst <= 1e-4" 'awk "BEGIN { exit !($worst <= 1e-4) }"'

# --- JSON and several files ---------------------------------------------------------------------
head -n 3 "$tmp/demo40.jsonl" >"$tmp/a.jsonl"
head -n 5 "$tmp/demo40.jsonl" | tail -n 2 >"$tmp/b.jsonl"
j=$(timeout 120 "$SUBMOE" eval "$demo" --task "$tmp/a.jsonl" -T "$tmp/b.jsonl" --json 2>/dev/null)
check_expr "--json lists both tasks and their mean" 'echo "$j" | grep -q "\"tasks\": \[{\"file\": \"$tmp/a.jsonl\", \"items\": 3," &&
    echo "$j" | grep -q "\"mean\": {\"items\": 5,"'
t=$(timeout 120 "$SUBMOE" eval "$demo" --task "$tmp/a.jsonl" -T "$tmp/b.jsonl" 2>/dev/null)
check_expr "the table has a row per task and the mean" 'echo "$t" | grep -q "^mean of 2 tasks"'

# --- broken task files: FILE:LINE, exit 1, nothing printed, no --items file ----------------------
while read -r name where what; do
    [ "$where" = - ] && where=
    rm -f "$tmp/i.tsv"
    timeout 60 "$SUBMOE" eval "$demo" --task "$corrupt/$name" --items "$tmp/i.tsv" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    msg=$(cat "$tmp/err")
    check_expr "$name: exit 1, one message naming $name$where ($msg)" \
        '[ $rc -eq 1 ] && [ ! -s "$tmp/out" ] && [ ! -e "$tmp/i.tsv" ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] &&
         grep -qF "$corrupt/$name$where: $what" "$tmp/err"'
done <<'LIST'
bad-json.jsonl :2 not valid JSON
missing-context.jsonl :1 missing "context"
missing-choices.jsonl :1 missing "choices"
missing-gold.jsonl :3 missing "gold"
gold-out-of-range.jsonl :1 "gold" 2 is out of range
gold-negative.jsonl :1 "gold" -1 is out of range
gold-string.jsonl :1 "gold" is not an integer
gold-float.jsonl :1 "gold" is not an integer
empty-choices.jsonl :1 "choices" is empty
non-string-choice.jsonl :1 choices[1] is not a string
choices-not-array.jsonl :1 "choices" is not an array
context-not-string.jsonl :1 "context" is not a string
empty-choice-string.jsonl :1 choices[1] is empty
not-an-object.jsonl :1 expected a JSON object
duplicate-key.jsonl :1 not valid JSON
nul-in-string.jsonl :1 a string holds
invalid-utf8.jsonl :1 not valid JSON
trailing-garbage.jsonl :1 not valid JSON
empty.jsonl - no items
blank-lines.jsonl - no items
empty-context.jsonl :1 the context encodes to no tokens
LIST
check_expr "every file in tests/corrupt-task is covered" '[ "$(ls "$corrupt" | wc -l)" -eq 21 ]'

# A later bad file: nothing is printed for the good first one either.
timeout 60 "$SUBMOE" eval "$demo" --task "$tmp/a.jsonl" --task "$corrupt/gold-negative.jsonl" >"$tmp/out" 2>"$tmp/err"
rc=$?
check_expr "a bad second file: exit 1, nothing printed" '[ $rc -eq 1 ] && [ ! -s "$tmp/out" ]'
timeout 60 "$SUBMOE" eval "$demo" --task "$tmp/missing.jsonl" >"$tmp/out" 2>"$tmp/err"
rc=$?
check_expr "a missing task file: exit 1 naming it" '[ $rc -eq 1 ] && [ ! -s "$tmp/out" ] && grep -qF "$tmp/missing.jsonl" "$tmp/err"'

# A model without tokenizer.json.
mkdir "$tmp/notok"
ln -s "$demo/config.json" "$tmp/notok/config.json"
ln -s "$demo/model.safetensors" "$tmp/notok/model.safetensors"
timeout 60 "$SUBMOE" eval "$tmp/notok" --task "$tmp/a.jsonl" >"$tmp/out" 2>"$tmp/err"
rc=$?
check_expr "no tokenizer.json: exit 1, one message naming it ($(cat "$tmp/err"))" \
    '[ $rc -eq 1 ] && [ ! -s "$tmp/out" ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "tokenizer.json" "$tmp/err"'

# --items never lands on an input: the task file, or a file of the model.
cp "$tmp/a.jsonl" "$tmp/a-copy.jsonl"
cp -r "$demo" "$tmp/demo-copy"
for target in "$tmp/a-copy.jsonl" "$tmp/demo-copy/config.json"; do
    before=$(cksum <"$target")
    timeout 60 "$SUBMOE" eval "$tmp/demo-copy" --task "$tmp/a-copy.jsonl" --items "$target" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    check_expr "--items $(basename "$target"), an input: exit 1, one message, unchanged" \
        '[ $rc -eq 1 ] && [ ! -s "$tmp/out" ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && [ "$(cksum <"$target")" = "$before" ]'
done

# Usage errors: exit 2.
"$SUBMOE" eval "$demo" --task "$tmp/a.jsonl" --tokens "$SRCDIR/data/heldout.u32" >"$tmp/out" 2>"$tmp/err"
check_expr "--task with --tokens: exit 2" '[ $? -eq 2 ] && grep -q "do not go together" "$tmp/err"'
"$SUBMOE" eval "$demo" --tokens "$SRCDIR/data/heldout.u32" --no-special >"$tmp/out" 2>"$tmp/err"
check_expr "--no-special without --task: exit 2" '[ $? -eq 2 ] && grep -q "need --task" "$tmp/err"'
"$SUBMOE" eval "$demo" --task "$tmp/a.jsonl" --delimiter "$(printf '\377')" >"$tmp/out" 2>"$tmp/err"
check_expr "--delimiter that is not UTF-8: exit 2" '[ $? -eq 2 ] && grep -q "not valid UTF-8" "$tmp/err"'

echo "1..$n"
[ "$fail" -eq 0 ]

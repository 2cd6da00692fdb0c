#!/bin/sh
# Every hand-crafted corrupt model in tests/corrupt/ must give exactly one clear error line
# containing the expected text and exit with status 1 — never a crash, never success.
# (Regenerate the corpus with tools/make_corrupt_corpus.py.)
set -u
fail=0
n=0
tmp=${TMPDIR:-/tmp}/submoe-corrupt.$$
for dir in "$SRCDIR"/tests/corrupt/*/; do
    case=$(basename "$dir")
    expected=$(cat "$dir/expected")
    n=$((n + 1))
    "$SUBMOE" inspect "$dir" >"$tmp.out" 2>"$tmp.err"
    status=$?
    lines=$(wc -l <"$tmp.err")
    if [ "$status" -ne 1 ]; then
        echo "not ok $n - $case: exit status $status (want 1)"; cat "$tmp.err"; fail=$((fail + 1))
    elif [ "$lines" -ne 1 ]; then
        echo "not ok $n - $case: $lines lines on stderr (want 1)"; cat "$tmp.err"; fail=$((fail + 1))
    elif ! grep -qF -- "$expected" "$tmp.err"; then
        echo "not ok $n - $case: message does not contain: $expected"; cat "$tmp.err"; fail=$((fail + 1))
    elif [ -s "$tmp.out" ]; then
        echo "not ok $n - $case: printed to stdout on failure"; fail=$((fail + 1))
    else
        echo "ok $n - $case: $(cat "$tmp.err")"
    fi
done
rm -f "$tmp.out" "$tmp.err"
echo "$n cases, $fail failed"
[ "$n" -ge 15 ] && [ "$fail" -eq 0 ]

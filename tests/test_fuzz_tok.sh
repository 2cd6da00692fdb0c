#!/bin/sh
# Replay the tokenizer harnesses' seeds and regression inputs (fuzz/corpus/tokjson, tokencode):
# nothing may crash (under ASan/UBSan in the sanitizer build). Issue 17.
set -u
fail=0
n=0
for h in tokjson tokencode; do
    n=$((n + 1))
    if out=$(timeout 300 "$BUILDDIR/tests/fuzz_replay_$h" "$SRCDIR/fuzz/corpus/$h" 2>&1); then
        echo "ok $n - fuzz_$h: $(echo "$out" | tail -1)"
    else
        echo "not ok $n - fuzz_$h"
        echo "$out" | tail -20 | sed 's/^/    /'
        fail=$((fail + 1))
    fi
done
[ "$fail" -eq 0 ]

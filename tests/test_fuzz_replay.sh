#!/bin/sh
# Replay every fuzz seed and every crash input found so far (fuzz/corpus/NAME) through its
# harness: nothing may crash (under ASan/UBSan in CI's sanitizer build).
set -u
fail=0
n=0
for h in st config index tokens plan calib; do
    n=$((n + 1))
    if out=$("$BUILDDIR/tests/fuzz_replay_$h" "$SRCDIR/fuzz/corpus/$h" 2>&1); then
        echo "ok $n - fuzz_$h: $(echo "$out" | tail -1)"
    else
        echo "not ok $n - fuzz_$h"
        echo "$out" | tail -20 | sed 's/^/    /'
        fail=$((fail + 1))
    fi
done
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

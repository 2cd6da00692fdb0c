#!/bin/sh
# Replay the tokenizer harnesses' seeds and regression inputs (fuzz/corpus/tokjson, tokencode):
# nothing may crash (under ASan/UBSan in the sanitizer build). Issue 17.
set -u
. "$SRCDIR/tests/lib.sh"
show_failure() { echo "$out" | tail -20 | sed 's/^/    /'; }
for h in tokjson tokencode; do
    if out=$(timeout 300 "$BUILDDIR/tests/fuzz_replay_$h" "$SRCDIR/fuzz/corpus/$h" 2>&1); then
        ok "fuzz_$h: $(echo "$out" | tail -1)"
    else
        bad "fuzz_$h"
    fi
done
[ "$fail" -eq 0 ]

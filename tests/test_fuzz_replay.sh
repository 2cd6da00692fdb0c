#!/bin/sh
# Replay every fuzz seed and every crash input found so far (fuzz/corpus/NAME) through its
# harness: nothing may crash (under ASan/UBSan in CI's sanitizer build). Plan inputs whose first
# line is "# expect: MESSAGE" must also be refused by `submoe apply` with exactly that message
# (the regression inputs of fuzz findings; the seeds copied from tests/plans are test_plan's).
set -u
. "$SRCDIR/tests/lib.sh"
show_failure() { echo "$out" | tail -20 | sed 's/^/    /'; }
for h in st config index tokens plan calib resolve; do
    if out=$("$BUILDDIR/tests/fuzz_replay_$h" "$SRCDIR/fuzz/corpus/$h" 2>&1); then
        ok "fuzz_$h: $(echo "$out" | tail -1)"
    else
        bad "fuzz_$h"
    fi
done
scratch replay
show_failure() { echo "#   want: submoe apply: $want"; }
for f in "$SRCDIR"/fuzz/corpus/plan/*; do
    name=$(basename "$f")
    [ -e "$SRCDIR/tests/plans/$name" ] && continue # a seed copied from tests/plans: test_plan checks it
    want=$(sed -n '1s/^# expect: //p' "$f")
    [ -n "$want" ] || continue
    cp "$f" "$tmp/$name"
    got=$(cd "$tmp" && "$SUBMOE" apply "$name" -o "$tmp/out" 2>&1)
    status=$?
    if [ "$status" -ne 1 ] || [ "$got" != "submoe apply: $want" ]; then
        bad "$name: exit $status, got: $got"
    else
        ok "$name: $want"
    fi
done
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

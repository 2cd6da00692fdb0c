#!/bin/sh
# Cancellation within a second (issue 16 item 6), measured without a wall clock: with
# SUBMOE_FAULT=checks every monitor check records the CPU time its thread worked since its
# previous one (util/monitor.h), and the longest such gap bounds how long Esc, q or a signal waits
# for the work in progress. CPU time does not grow when other processes share the cores, so the
# bound holds on a loaded machine.
#
# The shape is small on disk (one OLMoE-style MoE layer, 200 MB in bf16) but its 2048-row forward
# unit is about 100 GFLOP, seconds of work, as a real layer's is; an expert slot of it is 1.6 GFLOP.
# The forward pass that checked only between units (eval, calibrate's capture) showed gaps of
# seconds here; checking after attention's projections, per window and between expert slots
# brings them to tens of ms. The bound is a few times the longest checked step and a fraction of
# one unit, so it holds on a slow machine and fails when a unit runs unchecked.
set -u
. "$SRCDIR/tests/lib.sh"
scratch cancel
# The sanitizers make every step about three times the CPU time (the base's gap grows alike).
if ldd "$SUBMOE" 2>/dev/null | grep -q 'libasan\|libubsan'; then BOUND_MS=${CANCEL_BOUND_MS:-1200}; else BOUND_MS=${CANCEL_BOUND_MS:-400}; fi
SUBMOE_THREADS=2
export SUBMOE_THREADS

"$SUBMOE" synth --arch olmoe --layers 1 --hidden 512 --intermediate 1024 --experts 64 --top-k 16 \
    --heads 8 --kv-heads 8 --vocab 1024 --dtype bf16 --clusters 16 --out "$tmp/m" >/dev/null 2>"$tmp/err" ||
    { cat "$tmp/err"; exit 1; }

# gap NAME COMMAND...: run the command with SUBMOE_FAULT=checks; it must succeed, check the
# monitor, and never work more than BOUND_MS of CPU time between two checks.
gap() {
    name=$1
    shift
    SUBMOE_FAULT=checks "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    line=$(grep '^submoe-fault: [0-9]* monitor checks' "$tmp/err" | tail -1)
    checks=$(echo "$line" | sed -n 's/^submoe-fault: \([0-9]*\) monitor checks.*/\1/p')
    ms=$(echo "$line" | sed -n 's/.*longest gap \([0-9]*\) ms.*/\1/p')
    echo "# $name: ${line#submoe-fault: }"
    show_failure() { sed 's/^/    | /' "$tmp/err" | tail -5; }
    check_expr "$name: succeeds and checks the monitor" '[ "$rc" -eq 0 ] && [ -n "$checks" ] && [ "$checks" -gt 0 ]'
    check_expr "$name: at most $BOUND_MS ms of CPU time between checks (${ms:-?} ms)" \
        '[ -n "$ms" ] && [ "$ms" -le "$BOUND_MS" ]'
}

gap "eval (two forward units)" "$SUBMOE" eval "$tmp/m" --tokens "$SRCDIR/data/heldout.u32" -m 4096 -q
gap "calibrate (capture and statistics)" "$SUBMOE" calibrate "$tmp/m" --tokens "$SRCDIR/data/calib.u32" \
    -o "$tmp/m.stats" -s 8 -k 1024 -q
gap "plan --method submoe from the stats file (clustering, Grams, union SVD)" "$SUBMOE" plan "$tmp/m" \
    --ratio 0.25 --method submoe -c "$tmp/m.stats" -o "$tmp/plan.yaml"
[ "$fail" -eq 0 ]

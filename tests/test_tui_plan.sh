#!/bin/sh
# The workbench's state is the plan (issue 15) on the real binary through tmux, on the demo:
# - the rank prompt (=) starts empty and refuses a rank above the layer's largest as it is typed
#   (issue 19: "1288" was taken, saved, and refused only by apply), at 80x24 and at 200x60: the
#   message says the range and the saved plan is byte for byte the one saved before;
# - a plan saved after every layer was previewed records auto's choice (`chosen:`) of each layer,
#   and `submoe apply` of it builds without searching again: it makes far fewer monitor checks
#   (SUBMOE_FAULT=checks counts them: a count, not a time, so load does not matter) than the same
#   plan without its `chosen:` lines.
set -u
. "$SRCDIR/tests/lib.sh"
tmux_harness tuiplan
# save: w, Enter (the plan's own path), until the status says so
save() {
    keys w Enter
    wait_for 'plan saved to' 60
}

for size in 80x24 200x60; do
    cols=${size%x*} rows=${size#*x}
    sock="$tmp/tmux$size.sock"
    tui_session "$tmp" "'$DEMO' --plan '$tmp/p$size.yaml'"
    check "$size: calibrates and previews every layer" wait_for 'every layer previewed' 300
    check "$size: saves the plan" save
    cp "$tmp/p$size.yaml" "$tmp/before$size.yaml"
    keys =
    check "$size: = opens the rank prompt" wait_for 'rank' 10
    keys 1 2 8 8
    check "$size: 1288 is refused as it is typed, with the range" wait_for 'outside 1\.\.128' 10
    keys Escape
    check "$size: the prompt closes" wait_for 'rank cancelled' 10
    check "$size: saves again" save
    check "$size: the plan is unchanged (cmp)" cmp -s "$tmp/before$size.yaml" "$tmp/p$size.yaml"
    check_expr "$size: no rank 1288 in it" "! grep -q 1288 '$tmp/p$size.yaml'"
    keys q
    wait_for 'EXIT=' 30
    check "$size: quits with 0" wait_for 'EXIT=0' 5
    T kill-server >/dev/null 2>&1
done

plan=$tmp/p80x24.yaml
auto=$(grep -c 'method: auto' "$plan")
chosen=$(grep -c 'chosen: ' "$plan")
check_expr "the saved plan records auto's choice on each of its $auto auto layers ($chosen)" \
    "[ '$auto' -gt 0 ] && [ '$chosen' -eq '$auto' ]"
grep -v 'chosen: ' "$plan" >"$tmp/searching.yaml"
SUBMOE_FAULT=checks "$SUBMOE" apply "$plan" -o "$tmp/reused" -q 2>"$tmp/reused.err"
rc=$?
SUBMOE_FAULT=checks "$SUBMOE" apply "$tmp/searching.yaml" -o "$tmp/searched" -q 2>"$tmp/searched.err"
check_eq "apply of both plans" "$rc $?" "0 0"
reused=$(grep -Eo '[0-9]+ monitor checks' "$tmp/reused.err" | grep -Eo '^[0-9]+')
searched=$(grep -Eo '[0-9]+ monitor checks' "$tmp/searched.err" | grep -Eo '^[0-9]+')
check_expr "apply reuses the recorded choices: $reused monitor checks, $searched when it searches" \
    "[ -n '$reused' ] && [ -n '$searched' ] && [ \$(( $reused * 3 )) -lt '$searched' ]"
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

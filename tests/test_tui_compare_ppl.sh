#!/bin/sh
# The compare view's perplexity (issue 19 item 2: "totals: parameters and perplexity ... when
# computed") on the real binary through tmux at 80x24, on the demo. In view 5, P computes the
# perplexity of the plan compared against too, in the same job and on the same held-out windows
# as the plan's own, and the totals show both and their ratio:
# - Esc cancels it, and the other plan's perplexity stays "not computed";
# - the plan compared with itself (saved with w, opened with O): both perplexities are the same
#   number and their ratio is 1.000 (an identity: the same layers built on the same windows);
# - another plan (`submoe plan --ratio 0.5 -m submoe`): a different perplexity, and the ratio
#   shown is the quotient of the two numbers shown.
set -u
. "$SRCDIR/tests/lib.sh"
tmux_harness tuicmpppl
cols=80 rows=24

"$SUBMOE" plan "$DEMO" --ratio 0.5 -m submoe -o "$tmp/other.yaml" -q >/dev/null 2>&1
check_eq "another plan of the demo" "$?" 0

# the totals' perplexity line: "this THIS · other OTHER · other/this RATIO" -> "THIS OTHER RATIO"
ppl_line() {
    screen | sed -n 's/^ *perplexity  this \([0-9.]*\) · other \([0-9.]*\) · other\/this \([0-9.]*\) *$/\1 \2 \3/p'
}

tui_session "$tmp" "'$DEMO'"
check "calibrates and previews every layer" wait_for 'every layer previewed' 300
keys w C-u
keys -l "$tmp/self.yaml"
keys Enter
check "saves the plan" wait_for 'plan saved to' 60
keys O C-u
keys -l "$tmp/self.yaml"
keys Enter
check "view 5 compares the plan with itself" wait_for 'compare: this plan .*self.yaml \(0 of 4 layers differ\)' 60
check "the other plan's perplexity: not computed, P computes it" wait_for 'perplexity +this .* · other not computed \(P\)' 5

# cancelled: nothing of the other plan's is kept
keys P
check "P starts the perplexity job" wait_for 'perplexity [^ ]* +[0-9]+%' 10
keys Escape
check "Esc cancels it" wait_for 'cancelled' 10
check "the other plan's perplexity stays not computed" wait_for 'other not computed \(P\)' 5

# the plan against itself: the same number, ratio 1.000
keys P
check "P computes both perplexities" wait_for 'perplexity +this [0-9.]+ · other [0-9.]+ · other/this' 300
set -- $(ppl_line)
check_expr "both numbers and a ratio shown ('$*')" "[ $# -eq 3 ]"
check_eq "the plan against itself: the other's perplexity" "${2:-}" "${1:-x}"
check_eq "the plan against itself: the ratio" "${3:-}" 1.000
this=${1:-0}
check "the message says both" wait_for "this plan $this, other" 5
check "and their ratio" wait_for '\(1\.000x this\)' 5

# another plan: its own perplexity, the ratio of the two shown
keys O C-u
keys -l "$tmp/other.yaml"
keys Enter
check "view 5 compares with the other plan" wait_for 'compare: this plan .*other.yaml \(4 of 4 layers differ\)' 60
check "a new plan compared: its perplexity not computed" wait_for 'other not computed \(P\)' 5
keys P
check "P computes its perplexity" wait_for 'perplexity +this [0-9.]+ · other [0-9.]+ · other/this' 300
set -- $(ppl_line)
check_eq "this plan's perplexity is the one computed before" "${1:-}" "$this"
check_expr "the other plan's perplexity differs ('${2:-}' against '$this')" "[ '${2:-}' != '$this' ]"
check_expr "the ratio shown (${3:-}) is other/this (${2:-}/${1:-})" \
    "awk -v t='${1:-1}' -v o='${2:-0}' -v r='${3:-0}' 'BEGIN { d = o / t - r; exit !(d < 0.0015 && d > -0.0015) }'"

tui_quit "the compare view"
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

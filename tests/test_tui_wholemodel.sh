#!/bin/sh
# The model view (4) and comparing plans (5) on the real binary through tmux (issue 19 items 1
# and 2), at 80x24 and 200x60, on the demo:
# - the model view shows every MoE layer (error, experts kept, routing shares, saving); at 200x60
#   its rows grow to fill the height;
# - M in the model view sets the method of every layer as one step: the plan view of two layers
#   shows it, u undoes it on both, U redoes it;
# - a plan saved, one layer changed, the saved plan opened with O: view 5 shows that one layer's
#   method differing and the totals; a plan for another model is refused with one message;
# and on a 24-layer synth at 80x24 the model view scrolls to the selected layer, S sorts by error
# and Enter shows the layer's plan.
set -u
. "$SRCDIR/tests/lib.sh"
tmux_harness tuimodel

# the screen row (1-based) of the model view's row of layer $1 (its text line)
model_row() { screen | grep -nE "^[ *] *$1 +([0-9]*\.[0-9]+(e-[0-9]+)?|[0-9]e-[0-9]+|<1e-[0-9]+|~0|-)" | head -1 | cut -d: -f1; }

for size in 80x24 200x60; do
    cols=${size%x*} rows=${size#*x}
    sock="$tmp/tmux$size.sock"
    tui_session "$tmp" "'$DEMO' --plan '$tmp/p$size.yaml'"
    check "$size: calibrates and previews every layer" wait_for 'every layer previewed' 300
    keys 4
    check "$size: 4 shows the model view" wait_for 'model: 4 MoE layers, by layer' 10
    # the title can be on screen a redraw before the rows (seen under load): wait for the last row
    wait_for "^[ *] *3 +([0-9]*\.[0-9]+(e-[0-9]+)?|[0-9]e-[0-9]+|<1e-[0-9]+|~0|-)" 10 || true
    r0=$(model_row 0) r3=$(model_row 3)
    check_expr "$size: a row for each of the 4 layers (layer 0 at row ${r0:-none}, layer 3 at ${r3:-none})" \
        "[ -n '$r0' ] && [ -n '$r3' ] && [ -n '$(model_row 1)' ] && [ -n '$(model_row 2)' ]"
    check "$size: the routing shares are drawn as bars" wait_for '█' 5
    if [ "$size" = 200x60 ]; then
        check_expr "$size: the rows fill the height (layer 3's row at screen row ${r3:-none} of 60)" \
            "[ -n '$r3' ] && [ '$r3' -ge 45 ]"
    fi

    keys w Enter
    check "$size: saves the plan" wait_for 'plan saved to' 60
    keys M
    check "$size: M sets submoe on every layer" wait_for 'method submoe on 4 of 4 MoE layers' 10
    keys 1
    check "$size: layer 0's plan says submoe" wait_for 'method +submoe \(M\)' 10
    keys J
    check "$size: so does layer 1's" wait_for 'layer 1 plan.*' 10
    check "$size: layer 1: submoe" wait_for 'method +submoe \(M\)' 10
    keys u
    check "$size: u undoes it on every layer" wait_for 'undone on 4 layers' 10
    check "$size: layer 1 is auto again" wait_for 'method +auto \(M\)' 10
    keys K
    check "$size: layer 0's plan" wait_for 'layer 0 plan' 10
    check "$size: layer 0 is auto again" wait_for 'method +auto \(M\)' 10
    keys U
    check "$size: U redoes it" wait_for 'redone on 4 layers' 10
    check "$size: layer 0 submoe again" wait_for 'method +submoe \(M\)' 10
    keys u
    check "$size: and undone again" wait_for 'undone on 4 layers' 10

    # compare: one layer changed against the saved plan
    keys M
    check "$size: layer 0 alone changed" wait_for 'layer 0: method submoe' 10
    keys O
    check "$size: O asks for the plan to compare with" wait_for 'compare with a plan' 10
    keys Enter
    check "$size: view 5 compares" wait_for 'compare: this plan .*(1 of 4 layers differ)' 60
    check "$size: layer 0's method differs: submoe here, auto in the saved plan" wait_for 'submoe→auto' 5
    check "$size: the totals: parameters" wait_for 'params +this [0-9.]+[kMB] · other [0-9.]+[kMB]' 5
    check "$size: the totals: perplexity not computed yet" wait_for 'perplexity +this not computed' 5
    check "$size: the other plan's layers are built for their errors" \
        wait_for "^[* ] +3 .*[0-9]\.[0-9]{4}(~)?(→[0-9]\.[0-9]{4})?\s*$" 120
    keys Enter
    check "$size: Enter shows the selected layer's plan" wait_for 'layer 0 plan' 10

    # a plan for another model: one message, the comparison unchanged
    sed 's/fingerprint: ".*"/fingerprint: "fnv1a64:0123456789abcdef"/' "$tmp/p$size.yaml" >"$tmp/other$size.yaml"
    keys O C-u
    keys -l "$tmp/other$size.yaml"
    keys Enter
    check "$size: a plan for another model is refused" wait_for 'cannot compare with it' 30
    [ "$size" = 200x60 ] && check "$size: naming the fingerprint" wait_for 'cannot compare with it: .*model\.fingerprint: fnv1a64:0123456789abcdef does not match' 5
    keys 5
    check "$size: the comparison with the saved plan stays" wait_for "compare: this plan .*p$size.yaml" 10

    tui_quit "$size" discard
done

# scrolling: 24 MoE layers at 80x24
sock="$tmp/tmuxtall.sock"
"$SUBMOE" synth --arch mixtral --out "$tmp/tall" --layers 24 --hidden 32 --intermediate 32 --experts 8 >/dev/null
check_eq "a 24-layer synth" "$?" 0
T new-session -d -s wb -x 80 -y 24 \
    "cd '$tmp' && NO_COLOR=1 TERM=xterm-256color LANG=C.UTF-8 '$SUBMOE' tui '$tmp/tall'; echo EXIT=\$?; sleep 600"
check "tall: calibrates" wait_for 'calibrated on' 300
keys 4
check "tall: the model view shows the first 14 of 24 layers" wait_for 'model: 24 MoE layers, by layer \(S\), 1-14 shown' 10
check_expr "tall: layer 13 shown, layer 14 not" "[ -n '$(model_row 13)' ] && [ -z '$(model_row 14)' ]"
for i in $(seq 20); do keys j; done
check "tall: j moves down and the rows scroll with it" wait_for '11-24 shown' 10
check_expr "tall: layer 20 shown, layer 5 not" "[ -n '$(model_row 20)' ] && [ -z '$(model_row 5)' ]"
keys Enter
check "tall: Enter shows the layer's plan" wait_for 'layer 20 plan' 10
keys 4 S
check "tall: S sorts by error" wait_for 'by error \(S\)' 10
for i in $(seq 24); do keys k; done
check "tall: k walks up to the first row" wait_for 'by error \(S\), 1-14 shown' 10
# the errors of the rows shown, as the previews arrive (layers without one are sorted last)
errors_shown() { screen | sed -n 's/^[ *] *[0-9]\{1,2\} \{1,\}\([0-9]\.[0-9]\{4\}\).*/\1/p'; }
i=0
while [ "$(errors_shown | wc -l)" -lt 3 ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i + 1)); done
errs=$(errors_shown | tr '\n' ' ')
check_expr "tall: the errors shown are in descending order ($errs)" \
    "[ \$(errors_shown | wc -l) -ge 3 ] && errors_shown | sort -rn -c"
keys q
check "tall: quits with 0" wait_for 'EXIT=0' 30
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

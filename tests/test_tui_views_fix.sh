#!/bin/sh
# Defects of the walk-through in the views (issue 19, second pass), on the real binary through tmux
# at 80x24, in colour (the highlight and the bars' colours are what is checked), on the demo:
# - compare view (5): the selected row keeps its background under every cell; the method cell
#   "freq-avg+a→sub-whit+a" is whole; a layer whose group has an up rank of its own reads "mixed",
#   not "full"; the rule above the totals says what "a→b" means and what the pending "…" is;
# - Esc while the other plan's layers are being built: they show "?" and the legend and the message
#   say so ("p computes them"), never "…" for ever; p in view 5 builds them;
# - spectrum (3): all three ▴ marks of 90/95/99% show beside "r=128" (none hidden under it, none
#   run into it), and the energy dots inside a kept bar are drawn on the bar's colour;
# - the detail panel's preview line prints the output error as the layer list does (7e-8, never
#   0.0000).
set -u
. "$SRCDIR/tests/lib.sh"
tmux_harness tuiviewsfix
. "$SRCDIR/tests/tui_lib.sh"
cols=80 rows=24

# this plan and two to compare with: layer 0 freq-average+align here, submoe-whitened+align there,
# layer 1 pruned by output here (an error of about 1e-7: its pruned experts are never routed), its
# group 0 with an up rank of 64 there; and one whose layers auto searches (no chosen:),
# seconds a layer, so that Esc finds them being built
"$SUBMOE" plan "$DEMO" --ratio 0.5 -m submoe -o "$tmp/base.yaml" -q >/dev/null 2>&1
check_eq "a plan of the demo" "$?" 0
awk 'BEGIN { n = 0 }
     /^    method: submoe$/ && n == 0 { print "    method: freq-average"; n = 1; getline; print "    align: true"; next }
     /^    method: submoe$/ && n == 1 { print "    method: prune-output"; n = 2; next }
     { print }' "$tmp/base.yaml" >"$tmp/this.yaml"
awk 'BEGIN { n = 0 }
     /^    method: submoe$/ && n == 0 { print "    method: submoe-whitened"; n = 1; getline; print "    align: true"; next }
     /^  1:$/ { l1 = 1 }
     /^    groups:/ && l1 == 1 { print; print "    clusters:"; print "      0: {rank: {up: 64}}"; l1 = 2; next }
     { print }' "$tmp/base.yaml" >"$tmp/cmp.yaml"
"$SUBMOE" plan "$DEMO" --ratio 0.5 -o "$tmp/auto.yaml" -q >/dev/null 2>&1
grep -v 'chosen:' "$tmp/auto.yaml" >"$tmp/search.yaml"

T new-session -d -s wb -x "$cols" -y "$rows" \
    "cd '$tmp' && env -u NO_COLOR TERM=xterm-256color LANG=C.UTF-8 '$SUBMOE' tui '$DEMO' --plan this.yaml; echo EXIT=\$?; sleep 600"
check "calibrates and previews every layer" wait_for 'every layer previewed' 300

# the preview line and the layer list say the same error, for every layer
for l in 0 1 2 3; do
    [ "$l" = 0 ] || keys J
    wait_for "─ layer $l ─" 10
    sleep 0.3
    list=$(screen | sed -n "s/^  *$l  *[0-9]*→[0-9]*  *[^ ]*  *\([^ ~]*\).*/\1/p" | head -1)
    detail=$(screen | sed -n 's/.*preview: output error \([^ ]*\) .*/\1/p' | head -1)
    check_eq "layer $l: the preview line's error is the list's ($list)" "$detail" "$list"
done
keys K K K

# compare
keys O C-u
keys -l "$tmp/cmp.yaml"
keys Enter
check "view 5 compares" wait_for 'compare: this plan .*cmp.yaml' 60
check "the method's change is whole" wait_for ' freq-avg\+a→sub-whit\+a ' 5
check "layer 1's own group rank reads mixed" wait_for '^[* ] +1 .* full→mixed ' 5
check "all built: the legend says what a→b is" wait_for '─ a→b: this plan→the other ─' 60
screen_e >"$tmp/cmp.esc"
# the selected row (layer 0): every character of its text on the cyan background (46), the SGR
# state followed along the row (0 or 49: the default background)
sel=$(grep 'freq-avg' "$tmp/cmp.esc" | head -1)
off=$(printf '%s' "$sel" | awk -v esc="$(printf '\033')" '{
    s = $0; bg = 0; bad = 0
    while (s != "") {
        k = index(s, esc "[")
        text = k ? substr(s, 1, k - 1) : s
        if (text != "" && !bg) bad++
        if (!k) break
        s = substr(s, k + 2); j = index(s, "m")
        n = split(substr(s, 1, j - 1), a, ";")
        if (n == 0) bg = 0
        for (t = 1; t <= n; t++)
            if (a[t] == "38" || a[t] == "48") { if (a[t] == "48") bg = 0; t += a[t + 1] == "5" ? 2 : 4 }
            else if (a[t] == "" || a[t] == "0" || a[t] == "49") bg = 0
            else if (a[t] == "46") bg = 1
        s = substr(s, j + 1)
    }
    print bad }')
if [ "$off" = 0 ] && printf '%s' "$sel" | grep -q '46m'; then
    ok "the selected row's highlight runs under every cell"
else
    bad "the selected row's highlight runs under every cell ($off runs of text off it)"
    printf '%s\n' "$sel" | cat -v | sed 's/^/    | /'
fi

# Esc while the other plan's layers are being built
keys O C-u
keys -l "$tmp/search.yaml"
keys Enter
check "comparing with a plan auto searches" wait_for 'comparing with .*search.yaml' 60
check "its errors pending (…), the legend says so" wait_for 'a→… still computing' 10
keys Escape
check "Esc: the message says what was dropped" wait_for 'cancelled; the compared plan.s errors not built yet: p in view 5 builds them' 10
check "Esc: the rows show ? for what was not built" wait_for '→\?$' 10
check "Esc: the legend says so" wait_for 'a→\? cancelled \(Esc\): p computes them' 5
sleep 2
check_expr "nothing left pending (…)" "! screen | grep -q '→…'"
keys p
check "p builds them: every row has its error" wait_for '─ a→b: this plan→the other ─' 300
check_expr "... no ? left" "! screen | grep -q '→?'"

# spectrum of layer 0's group 0 at full rank
keys 3
check "the spectrum" wait_for 'break-even r[0-9]+' 60
axis=$(screen | grep 'r=[0-9]')
check_expr "the three ▴ marks show beside r=N ('$axis')" "[ \$(printf '%s' '$axis' | grep -o '▴' | wc -l) -eq 3 ]"
check_expr "... none runs into r=N" "! printf '%s' '$axis' | grep -qE '▴r=|r=[0-9]+▴'"
screen_e >"$tmp/spec.esc"
check_expr "energy dots inside kept bars are on the bar's colour (background 250)" "grep -q '48;5;250m' '$tmp/spec.esc'"

keys q
wait_for 'Quit and discard' 10 && keys y
check "quits" wait_for 'EXIT=0' 30
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

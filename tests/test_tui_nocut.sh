#!/bin/sh
# No cut text (issue 19's acceptance), on the real binary through tmux at 80x24, then (the window
# resized) at the smallest size the workbench draws, 60x16, and at 120x40 and 200x60: every view
# and dialog of the list below is shown in turn on the demo and captured; no line of any capture cuts
# text (tests/tui_lib.sh, cut_lines: no word runs into the last column, no "…" stands for text left
# out other than a path's start or a "… N more" count), the model view's column header has only
# whole words (tui_lib.sh, header_cuts: a word cut before the last column), and every message
# shown in the message area is, whole, a message of the log (L).
set -u
. "$SRCDIR/tests/lib.sh"
tmux_harness tuinocut
. "$SRCDIR/tests/tui_lib.sh"
cols=80 rows=24
sizes='80x24 60x16 120x40 200x60'

# The views and dialogs, one a line (add yours: views 4 and 5, new dialogs):
#   NAME|KEYS that show it (tmux send-keys words)|REGEX on the screen once shown|KEYS that close it
views='plan|1|layer [0-9]+ plan|
heatmap|2|output similarity|
spectrum|3|break-even r[0-9]+|
help|?|keys? close|Escape
save|w|save the plan|Escape
open|o|open a plan|Escape
commit|C|commit: write the merged model|Escape
rank|=|Rank of gate|Escape
next layer|J|─ layer 1 ─|
edited|1 M|\[modified\]|
quit|q|Quit and discard|n
log|L|messages: [0-9]+, lines|Escape
model|4|model: [0-9]+ MoE layers|
compare|5|─ compare[: ]|
compare dialog|O|compare with a plan|Escape
compare opened|O C-u other.yaml Enter|compare: this plan .*other.yaml|
jump|2 /|jump to an expert|Escape
export|E|export this view as figures|Escape'

"$SUBMOE" plan "$DEMO" --ratio 0.5 -m submoe -o "$tmp/other.yaml" -q >/dev/null 2>&1 # to compare with
tui_session "$tmp" "'$DEMO'"
check "calibrates and previews every layer" wait_for 'every layer previewed' 300
: >"$tmp/shown"
echo "$views" >"$tmp/views"
for size in $sizes; do
    cols=${size%x*} rows=${size#*x}
    T resize-window -t wb -x "$cols" -y "$rows"
    keys 1 # a view drawn at the new size
    sleep 1
    while IFS='|' read -r name open want close; do
        # shellcheck disable=SC2086 # the keys are words
        keys $open
        if ! wait_for "$want" 20; then
            bad "$size $name: shown (waiting for '$want')"
            continue
        fi
        sleep 1 # let the screen settle (previews land)
        screen >"$tmp/$name.txt"
        screen_e >"$tmp/$name.esc"
        if cut_lines "$tmp/$name.txt" >"$tmp/$name.cut"; then
            bad "$size $name: no line cuts text; these do:"
            sed 's/^/    | /' "$tmp/$name.cut"
            sed 's/^/    : /' "$tmp/$name.txt"
        else
            ok "$size $name: no line cuts text ($(grep -c . "$tmp/$name.txt") lines)"
        fi
        if [ "$name" = model ]; then
            if header_cuts "$tmp/$name.txt" >"$tmp/$name.hcut"; then
                bad "$size model: the column header has only whole words; these are not:"
                sed 's/^/    | /' "$tmp/$name.hcut"
            else
                ok "$size model: the column header has only whole words"
            fi
        fi
        msg=$(message_shown "$tmp/$name.esc")
        [ -z "$msg" ] || printf '%s\n' "$msg" >>"$tmp/shown"
        # shellcheck disable=SC2086
        [ -z "$close" ] || keys $close
        sleep 0.5
    done <"$tmp/views"
    keys K # back to layer 0 for the next size's "next layer"
done
show_failure() { sed 's/^/    | /' "$tmp/log"; }
check "the log opens and reads" log_entries "$tmp/log"
sort -u "$tmp/shown" >"$tmp/shown.u"
check_expr "messages were shown ($(wc -l <"$tmp/shown.u"))" "[ \$(wc -l <'$tmp/shown.u') -ge 3 ]"
while read -r msg; do
    check "shown whole in the log: '$msg'" has_entry "$tmp/log" "$msg"
done <"$tmp/shown.u"
keys q
wait_for 'Quit and discard' 10
keys y
check "quits" wait_for 'EXIT=0' 30
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

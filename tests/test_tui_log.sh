#!/bin/sh
# The workbench's messages (issue 19 item 6) on the real binary through tmux, at 80x24 and 200x60:
# - a message longer than the status line (a plan saved to a long path) is shown whole: the
#   message area wraps it over the detail panel, and the rows joined are the message, verbatim;
# - it clears when its context changes (the next layer), and the log (L) keeps it, whole, with a
#   time stamp; the log scrolls (k a line, PgUp a page, G its end) and Esc or q close it;
# - P on a model whose vocabulary is not 256 refuses the bundled byte held-out tokens (issue 19
#   item 7) with the one message of sm_bundled_tokens_check, shown whole and kept in the log, and
#   no perplexity is computed.
set -u
. "$SRCDIR/tests/lib.sh"
tmux_harness tuilog
. "$SRCDIR/tests/tui_lib.sh"
long="$tmp/a-directory-with-a-rather-long-name-for-the-plans/and-one-more-level-below-it"
mkdir -p "$long"
plan="$long/submoe-plan.yaml"
want="plan saved to $plan (submoe apply $plan -o DIR runs it)"

for size in 80x24 200x60; do
    cols=${size%x*} rows=${size#*x}
    sock="$tmp/tmux$size.sock"
    tui_session "$tmp" "'$DEMO'"
    check "$size: calibrates and previews every layer" wait_for 'every layer previewed' 300
    keys w C-u
    keys -l "$plan"
    keys Enter
    check "$size: saves the plan" wait_for 'plan saved to' 60
    sleep 0.5
    screen_e >"$tmp/saved$size.esc"
    shown=$(message_shown "$tmp/saved$size.esc")
    check "$size: the message shown, its rows joined, is the message: $shown" same_text "$shown" "$want"
    area=$(sed "s/$(printf '\033')\[[0-9;]*m//g" "$tmp/saved$size.esc" | grep -c 'and-one-more-level')
    [ "$cols" -eq 80 ] && check_expr "$size: it wraps over $area rows of the message area" "[ '$area' -ge 2 ]"
    screen >"$tmp/saved$size.txt"
    check_expr "$size: no line cuts text" "! cut_lines '$tmp/saved$size.txt' >/dev/null"
    keys J
    sleep 1
    screen_e >"$tmp/next$size.esc"
    check_eq "$size: the next layer clears it" "$(message_shown "$tmp/next$size.esc")" ""
    check "$size: the log opens and reads" log_entries "$tmp/log$size"
    check "$size: the log has the message whole" has_entry "$tmp/log$size" "$want"
    check "$size: ... with a time stamp" grep -Eq '^[0-9]{2}:[0-9]{2}:[0-9]{2} plan saved to' "$tmp/log$size.lines"

    # many messages: the log scrolls
    for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 \
        36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60; do
        keys u
    done
    wait_for 'nothing to undo' 10
    sleep 1
    keys L
    check "$size: L opens the log at its end" wait_for 'messages: [0-9]+, lines [0-9]+-([0-9]+) of \1' 10
    end=$(screen | sed -n '1s/.*lines \([0-9]*\)-\([0-9]*\) of.*/\1/p')
    keys k
    check "$size: k scrolls up a line" wait_for "lines $((end - 1))-" 10
    keys PgUp
    per=$((rows - 4)) up=$((end - 1 - rows + 4))
    [ "$up" -ge 1 ] || up=1
    check "$size: PgUp a page ($per rows, or to the start)" wait_for "lines $up-" 10
    keys G
    check "$size: G back to the end" wait_for "lines $end-" 10
    check_expr "$size: the newest message at the bottom" "screen | sed -n '$((rows - 3))p' | grep -q 'nothing to undo'"
    keys Escape
    check "$size: Esc closes it" wait_for 'L log' 10
    keys L
    wait_for 'messages: ' 10
    keys q
    check "$size: q closes it (the workbench stays)" wait_for 'L log' 10
    keys q
    wait_for 'EXIT=' 30
    check "$size: quits with 0" wait_for 'EXIT=0' 5
    T kill-server >/dev/null 2>&1
done

# P on a 1024-token vocabulary: the bundled held-out tokens are refused (calibration on the
# bundled tokens is given explicitly, as a user may choose).
"$SUBMOE" synth --arch qwen3_moe --out "$tmp/q" --vocab 1024 --layers 2 --hidden 32 --intermediate 32 --experts 8 \
    --clusters 4 --heads 2 --kv-heads 1 -q
for size in 80x24 200x60; do
    cols=${size%x*} rows=${size#*x}
    sock="$tmp/q$size.sock"
    tui_session "$tmp" "'$tmp/q' --tokens '$SRCDIR/data/calib.u32'"
    check "$size: the 1024-token synth calibrates on the tokens given" wait_for 'every layer previewed' 300
    keys P
    check "$size: P is refused" wait_for 'bundled byte' 120
    sleep 1
    screen_e >"$tmp/p$size.esc"
    shown=$(message_shown "$tmp/p$size.esc")
    refusal="is the bundled byte tokens (English text as ids 0..255), but the model's vocabulary has 1024 tokens: give its own token ids with --heldout FILE (submoe tokenize MODEL TEXT -o FILE makes them) or text with --text FILE"
    check "$size: ... with one message, whole: $shown" same_text "${shown#/*heldout.u32}" "$refusal"
    check "$size: no perplexity was computed" wait_for 'perplexity: P' 5
    log_entries "$tmp/plog$size"
    check "$size: the log has the refusal whole" has_entry "$tmp/plog$size" "$shown"
    tui_quit "$size"
done
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

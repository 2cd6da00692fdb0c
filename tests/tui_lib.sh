# tui_lib.sh: what the workbench's message tests share (sourced after lib.sh and tmux_harness, with
# $cols set to the terminal's width). Screens are captured with NO_COLOR=1, where the message area
# is the rows in reverse video at the bottom of the screen.

# screen_e: the screen with its attributes (escape sequences).
screen_e() { T capture-pane -e -t wb -p 2>/dev/null; }

# cut_lines FILE: the lines of a captured screen that cut text, with their numbers; none: status 1.
# A line cuts text when
#  - a word runs into the screen's last column (its last two columns are letters or digits): the
#    word is continued on nothing;
#  - or an ellipsis "…" stands for text left out, except a shortened path's start ("…/models/x")
#    and a count of what is not shown ("… 5 more"): that is, "…" at the end of a line, "…"
#    followed by anything but "/" or a space, or "… " followed by anything but a digit.
#    The compare view's "→…" (the other plan's value, still being computed, as its legend says)
#    stands for no text: not a cut.
cut_lines() {
    sed 's/→…/→·/g' "$1" | LC_ALL=C.UTF-8 grep -nE "^.{$((cols - 2))}[[:alnum:]]{2}\$|…\$|…[^/ ]|… [^0-9]"
}

# header_cuts FILE: the words of the model view's column header (the line of "L   error") that are
# not words of its forms (tui_view_model.c): a word cut to fit ("routing: expe") shows here even
# where it does not reach the last column.
header_cuts() {
    sed -n '/^ *L  *error /p' "$1" | tr -s ' ' '\n' |
        grep -vxE 'L|error|experts|method|routing:?|expert|shares,?|sorted|saved|'
}

# message_shown FILE: the message shown in a screen captured by screen_e — the rows at the bottom
# whose first column is in reverse video (tmux writes an attribute only where it changes, so the
# SGR state is followed across lines), without the key hints, joined by single spaces ("" when none
# is shown).
message_shown() {
    esc=$(printf '\033')
    awk -v esc="$esc" '
        function sgr(p, n, a, t) {
            n = split(p, a, ";")
            if (n == 0) rev = 0
            for (t = 1; t <= n; t++)
                if (a[t] == "" || a[t] == "0" || a[t] == "27") rev = 0
                else if (a[t] == "7") rev = 1
        }
        # apply the sequences at the start of s; return the rest
        function lead(s, j) {
            while (substr(s, 1, 2) == esc "[") {
                j = index(s, "m")
                sgr(substr(s, 3, j - 3))
                s = substr(s, j + 1)
            }
            return s
        }
        {
            text = lead($0)
            first_rev[NR] = rev
            row[NR] = text
            rest = text
            while ((k = index(rest, esc "[")) > 0) {
                rest = substr(rest, k)
                j = index(rest, "m")
                sgr(substr(rest, 3, j - 3))
                rest = substr(rest, j + 1)
            }
        }
        END {
            first = NR + 1
            for (i = NR; i > 0 && first_rev[i]; i--) first = i
            for (i = first; i <= NR; i++) print row[i]
        }' "$1" | sed "s/$esc\[[0-9;]*m//g; s/ ? help  L log .*quit *\$//" | tr '\n' ' ' | tr -s ' ' |
        sed 's/^ //; s/ $//'
}

# same_text A B: A and B are the same text but for spaces (a wrapped row may break a long word).
same_text() { [ "$(printf '%s' "$1" | tr -d ' ')" = "$(printf '%s' "$2" | tr -d ' ')" ]; }
# has_entry FILE MESSAGE: a line of FILE (log_entries) is MESSAGE but for spaces.
has_entry() { tr -d ' ' <"$1" | grep -Fxq -- "$(printf '%s' "$2" | tr -d ' ')"; }

# log_entries FILE: open the log (L), read it page by page from its start and write its messages
# to FILE, one a line, without their time stamps, wrapped lines joined by single spaces; then close
# it (Esc). 1 when the log did not open.
log_entries() {
    keys L
    wait_for 'messages: [0-9]+, lines' 10 || return 1
    keys g # its start (Home: tmux sends the pane terminal's sequence, not always curses' KEY_HOME)
    sleep 0.5
    : >"$1.lines"
    seen=0
    while :; do
        screen >"$1.page"
        title=$(sed -n '1s/.*lines \([0-9]*\)-\([0-9]*\) of \([0-9]*\).*/\1 \2 \3/p' "$1.page")
        set -- "$1" $title
        [ $# -eq 4 ] || return 1
        # rows 2.. of the frame are lines $2..$3 of the log: keep those not read yet
        sed -n "2,$(($3 - $2 + 2))p" "$1.page" | sed 's/^│ //; s/ *│$//' |
            awk -v first="$2" -v seen="$seen" '{ if (first + NR - 1 > seen) print }' >>"$1.lines"
        seen=$3
        [ "$3" -lt "$4" ] || break
        keys PgDn
        wait_i=0
        while [ $wait_i -lt 50 ] && screen | sed -n 1p | grep -q "lines $2-"; do
            sleep 0.1
            wait_i=$((wait_i + 1))
        done
    done
    keys Escape
    awk '/^[0-9][0-9]:[0-9][0-9]:[0-9][0-9] / { if (e != "") print e; e = substr($0, 10); next }
         { sub(/^ +/, ""); e = e " " $0 }
         END { if (e != "") print e }' "$1.lines" | tr -s ' ' | sed 's/^ //; s/ $//' >"$1"
}

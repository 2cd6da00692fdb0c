#!/bin/sh
# Every key of the help, pressed (issue 19's acceptance: "every key in ? exercised"), on the real
# binary through tmux, in colour, at 80x24 and then 200x60 (the same session, resized), on the demo.
#
# The keys are read from the help screen itself (?): a help line is a section's name (or blanks)
# to column 9, then items two spaces apart, each starting with its keys ("J/K, PgDn/PgUp", "j/k
# or Up/Down", "M r = a:", "[/]"; "arrows" stands for the four); src/tui/tui_keys.c,
# tui_key_help. Each (section, key) must have a row in the table below, and each row must be in
# the help: a key added to the help without a row here, or a row whose key left the help, fails
# the test.
#
# The rows run in order, so that each finds the context the rows before it left: m, n and g edit
# the groups of the heatmap's first row (the first group) and last column (the last group), n
# splits the expert m moved, and u takes the edits back.
#
# A row is pressed in its context: SETUP keys (tmux key words), then READY (a regex) is awaited;
# then the key, and its effect is awaited: EXPECT is a regex absent from the screen before the key
# and shown after it, or ~REGEX: the text the regex matches first changes (a cursor, a rank, a
# view's title). Then AFTER keys close what it opened. After each key: the workbench still runs,
# and no line of the screen cuts a word (tests/tui_lib.sh, cut_lines).
set -u
. "$SRCDIR/tests/lib.sh"
tmux_harness tuiwalk
. "$SRCDIR/tests/tui_lib.sh"
t0=$(now)

# SECTION;KEY;SETUP;READY;EXPECT;AFTER, in the order pressed (fields split at ";").
walk='Views;2;1;layer [0-9]+ plan;similarity \(s\);
Views;3;;;~layer [0-9]+ · group [0-9]+ of;
Views;4;;;model: [0-9]+ MoE layers;
Views;5;;;compare plans;
Views;1;;;layer [0-9]+ plan;
Views;Tab;1;layer [0-9]+ plan;similarity \(s\);
Layers;J;1 K K K;layer 0 plan;~layer [0-9]+ plan;
Layers;K;;;~layer [0-9]+ plan;
Layers;PgDn;;;~layer [0-9]+ plan;
Layers;PgUp;;;~layer [0-9]+ plan;
Layers;j;;;~layer [0-9]+ plan;
Layers;k;;;~layer [0-9]+ plan;
Layers;Down;;;~layer [0-9]+ plan;
Layers;Up;;;~layer [0-9]+ plan;
Heatmap;Right;2 Home;S\(e0, e0\);~S\(e[0-9]+, e[0-9]+\);
Heatmap;Left;;;~S\(e[0-9]+, e[0-9]+\);
Heatmap;Down;;;~S\(e[0-9]+, e[0-9]+\);
Heatmap;Up;;;~S\(e[0-9]+, e[0-9]+\);
Heatmap;l;;;~S\(e[0-9]+, e[0-9]+\);
Heatmap;h;;;~S\(e[0-9]+, e[0-9]+\);
Heatmap;j;;;~S\(e[0-9]+, e[0-9]+\);
Heatmap;k;;;~S\(e[0-9]+, e[0-9]+\);
Heatmap;End;;;~S\(e[0-9]+, e[0-9]+\);
Heatmap;Home;;;~S\(e[0-9]+, e[0-9]+\);
Heatmap;PgDn;;;~S\(e[0-9]+, e[0-9]+\);
Heatmap;PgUp;;;~S\(e[0-9]+, e[0-9]+\);
Heatmap;s;;;~[a-z]+ similarity \(s\);
Heatmap;/;;;jump to an expert;Escape
Heatmap;z;;;heatmap overview;z
Heatmap;m;End Up Up Up Up Up Up Up;S\(e[0-9]+, e[0-9]+\);layer [0-9]+: expert moved;
Heatmap;n;;;layer [0-9]+: new group;u u
Heatmap;g;End Up Up Up Up Up Up Up;S\(e[0-9]+, e[0-9]+\);layer [0-9]+: groups merged;u
Spectrum;x;3;rank [0-9]+/[0-9]+;~\[(gate|up|down)\];
Spectrum;h;;;~rank [0-9]+/[0-9]+;
Spectrum;l;;;~rank [0-9]+/[0-9]+;
Spectrum;[;;;~rank [0-9]+/[0-9]+;
Spectrum;];;;~rank [0-9]+/[0-9]+;
Spectrum;j;;;~group [0-9]+ of [0-9]+ ·;
Spectrum;k;;;~group [0-9]+ of [0-9]+ ·;
Spectrum;>;;;~group [0-9]+ of [0-9]+ ·;
Spectrum;<;;;~group [0-9]+ of [0-9]+ ·;
Ranks;=;1;layer [0-9]+ plan;Rank of gate, up and down;Escape
Ranks;f;;;full rank for gate, up and down;
Groups;+;;;~into [0-9]+ groups;
Groups;-;;;~into [0-9]+ groups;
Groups;c;;;~seed [0-9]+;
Method;M;;;layer [0-9]+: method;
Method;a;;;layer [0-9]+: neuron alignment;
Method;r;;;layer [0-9]+: router;
Method;R;;;layer [0-9]+: refit;
Preview;A;;;accuracy [^:]*[0-9]+%;Escape
Preview;p;;;layer [0-9]+ previewed again;
Preview;P;;;perplexity [^:]*[0-9]+%;
Preview;Esc;;;cancelled;
Model;space;4;model: [0-9]+ MoE layers;[0-9]+ marked;Up space
Model;S;;;model view by error;S
Model;M;;;method [a-z-]+ (on|already on) ;u
Model;r;;;router [a-z-]+ (on|already on) ;u
Model;a;;;alignment [a-z ()-]+ (on|already on) ;u
Model;=;;;Rank of gate, up and down in every group;Escape
Model;Enter;;;layer [0-9]+ plan;
Edits;u;1 M;layer [0-9]+: method;undone;
Edits;U;;;redone;
Edits;?;;;any key closes this help;Escape
Edits;L;;;messages: [0-9]+, lines;Escape
Edits;q;;\[modified\];Quit and discard;n
Files;w;;;save the plan;Escape
Files;o;;;open a plan;Escape
Files;O;;;compare with a plan;Escape
Files;C;;;commit: write the merged model;Escape
Files;E;;;export this view as figures;Escape'

# help_keys: the keys of the help screen on stdout, "SECTION KEY" a line (arrows: Up Down Left
# Right; "/" alone is the key /).
help_keys() {
    sed 's/^│ //; s/ *│$//' | awk '
        function key_word(w) { return length(w) == 1 || w ~ /^(PgUp|PgDn|Home|End|Enter|Esc|Tab|space|arrows|Up|Down|Left|Right)$/ }
        function emit(w) {
            if (w == "arrows") { print sec, "Up"; print sec, "Down"; print sec, "Left"; print sec, "Right" }
            else print sec, w
        }
        {
            head = substr($0, 1, 9); rest = substr($0, 10)
            if (head ~ /^[A-Z][a-z]+ +$/) { sec = head; sub(/ +$/, "", sec) }
            else if (head != "         " || sec == "") { sec = ""; next }
            if (rest ~ /^ /) next
            n = split(rest, item, /   */)
            for (i = 1; i <= n; i++) {
                m = split(item[i], word, " ")
                for (j = 1; j <= m; j++) {
                    w = word[j]
                    sub(/[,:]$/, "", w)
                    if (w == "or") continue
                    if (w == "/") { emit(w); continue }
                    k = split(w, part, "/")
                    good = k > 0
                    for (q = 1; q <= k; q++) if (!key_word(part[q])) good = 0
                    if (!good) break
                    for (q = 1; q <= k; q++) emit(part[q])
                }
            }
        }'
}

# press KEY: a help key as tmux sends it (single characters literally)
press() {
    case $1 in
    space) keys Space ;;
    Esc) keys Escape ;;
    PgUp) keys PPage ;;
    PgDn) keys NPage ;;
    Enter | Tab | Home | End | Up | Down | Left | Right) keys "$1" ;;
    *) T send-keys -t wb -l -- "$1" ;;
    esac
}
# words WORDS: tmux key words (space, Esc and the page keys as the help names them)
words() {
    for w in "$@"; do
        case $w in
        space | Esc | PgUp | PgDn) press "$w" ;;
        *) keys -- "$w" ;;
        esac
    done
}
first_match() { screen | grep -Eo -- "$1" | head -n 1; }
# changed REGEX BEFORE: until the first match of REGEX is shown and differs from BEFORE (10 s)
changed() {
    wait_i=0
    while [ $wait_i -lt 100 ]; do
        now_m=$(first_match "$1")
        [ -n "$now_m" ] && [ "$now_m" != "$2" ] && return 0
        sleep 0.1
        wait_i=$((wait_i + 1))
    done
    return 1
}
alive() { ! screen | grep -q 'EXIT='; }

# walk_size: read the help's keys, check them against the table, press every row's key
walk_size() {
    size="${cols}x$rows"
    keys Escape 1
    sleep 0.3
    keys '?'
    if ! wait_for 'any key closes this help' 10; then
        bad "$size: the help opens"
        return
    fi
    screen | help_keys >"$tmp/help.$size"
    keys Escape
    nkeys=$(wc -l <"$tmp/help.$size")
    check_expr "$size: the help lists keys ($nkeys)" "[ $nkeys -ge 40 ]"
    echo "$walk" | awk -F';' '{ print $1, $2 }' >"$tmp/table"
    missing=$(grep -vxF -f "$tmp/table" "$tmp/help.$size" | tr '\n' ',')
    stale=$(grep -vxF -f "$tmp/help.$size" "$tmp/table" | tr '\n' ',')
    check_eq "$size: help keys without a row in the walk" "$missing" ""
    check_eq "$size: rows of the walk whose key is not in the help" "$stale" ""
    echo "$walk" >"$tmp/walk"
    while IFS=';' read -r sec key setup ready expect after; do
        name="$size $sec '$key'"
        # shellcheck disable=SC2086 # the setup keys are words
        [ -z "$setup" ] || words $setup
        if [ -n "$ready" ] && ! wait_for "$ready" 20; then
            bad "$name: its context is shown (waiting for '$ready')"
            continue
        fi
        [ -z "$setup" ] || sleep 0.3 # the setup's redraws land
        case $expect in
        "~"*)
            re=${expect#"~"}
            before=$(first_match "$re")
            press "$key"
            if changed "$re" "$before"; then effect="'$before' -> '$(first_match "$re")'"; else effect=; fi
            ;;
        *)
            re=$expect
            if screen | grep -Eq -- "$re"; then
                bad "$name: '$re' is not shown before the key"
                continue
            fi
            press "$key"
            if wait_for "$re" 20; then effect="'$(first_match "$re")'"; else effect=; fi
            ;;
        esac
        if [ -z "$effect" ]; then
            bad "$name: its effect is shown ('$expect')"
        elif ! alive; then
            bad "$name: the workbench still runs"
            return
        else
            screen >"$tmp/shot"
            if cut_lines "$tmp/shot" >"$tmp/cut"; then
                bad "$name: $effect, but lines cut words:"
                sed 's/^/    | /' "$tmp/cut"
            else
                ok "$name: $effect"
            fi
        fi
        # shellcheck disable=SC2086
        [ -z "$after" ] || words $after
    done <"$tmp/walk"
}

# On a plan of submoe merges: a preview is one build, not auto's search of every candidate (the
# walk takes less than half the time; auto's keys are the same). In colour, as a user sees it
# (tui_session runs it with NO_COLOR).
"$SUBMOE" plan "$DEMO" --ratio 0.25 -m submoe -c "$tmp/demo.stats" -o "$tmp/plan.yaml" -q
cols=80 rows=24
T new-session -d -s wb -x "$cols" -y "$rows" \
    "cd '$tmp' && env -u NO_COLOR TERM=xterm-256color LANG=C.UTF-8 '$SUBMOE' tui '$DEMO' --plan plan.yaml --calib demo.stats; echo EXIT=\$?; sleep 600"
check "calibrates and previews every layer" wait_for 'every layer previewed' 300
walk_size
cols=200 rows=60
T resize-window -t wb -x "$cols" -y "$rows" >/dev/null 2>&1
check "resized to 200x60: the wide layer list" wait_for 'saved router' 10
walk_size
tui_quit "after the walk" discard
echo "walked in $(seconds_since "$t0") s"
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

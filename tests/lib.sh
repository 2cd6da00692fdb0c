# lib.sh: what the shell tests share, sourced after `set -u` (. "$SRCDIR/tests/lib.sh").
# TAP-like lines "ok N - NAME" / "not ok N - NAME"; $n counts the checks and $fail the failures,
# so a test ends with `[ "$fail" -eq 0 ]`.
n=0
fail=0

# What a failure shows after its "not ok" line (a test redefines it: the screen, a stderr file).
show_failure() { :; }

ok() { n=$((n + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); echo "not ok $n - $1"; show_failure; fail=$((fail + 1)); }

# check NAME COMMAND...: the command's status decides.
check() {
    check_name=$1
    shift
    if "$@"; then ok "$check_name"; else bad "$check_name"; fi
}
# check_expr NAME 'SHELL EXPRESSION': the expression's status (evaluated here) decides.
check_expr() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
# check_eq NAME GOT WANT: the two strings are equal ("NAME = GOT"; a failure shows both).
check_eq() { if [ "$2" = "$3" ]; then ok "$1 = $2"; else bad "$1: got '$2', want '$3'"; fi; }

# now: the clock in seconds (with nanoseconds); seconds_since T0: the seconds since T0 (now's
# output), to 2 decimals; longer_than SECONDS LIMIT: whether SECONDS > LIMIT (decimals allowed).
now() { date +%s.%N; }
seconds_since() { echo "$(now) $1" | awk '{ printf "%.2f", $1 - $2 }'; }
longer_than() { awk -v t="$1" -v l="$2" 'BEGIN { exit !(t > l) }'; }

# wait_for REGEX [SECONDS]: poll the test's `screen` function (default: 30 s of 0.1 s polls)
# until its output matches REGEX; 1 if it never did.
wait_for() {
    wait_i=0
    wait_lim=$((${2:-30} * 10))
    while [ $wait_i -lt $wait_lim ]; do
        screen | grep -Eq -- "$1" && return 0
        sleep 0.1
        wait_i=$((wait_i + 1))
    done
    return 1
}

# wait_for_file PATH: until PATH exists (20 s of 0.05 s polls); 1 if it never did.
wait_for_file() {
    wait_i=0
    while [ ! -e "$1" ]; do
        [ $wait_i -lt 400 ] || return 1
        sleep 0.05
        wait_i=$((wait_i + 1))
    done
}

# scratch NAME: a new directory $tmp ("$TMPDIR/submoe-NAME.XXXXXX", /tmp without TMPDIR), removed
# with everything in it when the test exits.
scratch() {
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/submoe-$1.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
}

# tmux_harness NAME: a test of the workbench through tmux: skipped (77) without tmux. Its scratch
# directory $tmp is made as scratch NAME's, and on exit every tmux server on a socket there
# (*.sock) is killed before it is removed. T runs tmux on the socket in $sock ("$tmp/tmux.sock"
# until a test sets another), screen captures the session "wb", keys sends it keys, and a failed
# check shows the screen.
tmux_harness() {
    command -v tmux >/dev/null 2>&1 || { echo "tmux not installed: skipped"; exit 77; }
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/submoe-$1.XXXXXX")
    sock="$tmp/tmux.sock"
    trap 'for s in "$tmp"/*.sock; do tmux -S "$s" kill-server >/dev/null 2>&1; done; rm -rf "$tmp"' EXIT
    T() { tmux -S "$sock" "$@"; }
    screen() { T capture-pane -t wb -p 2>/dev/null; }
    show_failure() { screen | sed 's/^/    | /'; }
    keys() { T send-keys -t wb "$@"; }
    # The workbench in session wb ($cols x $rows), started in DIR with ARGS (shell words, quoted
    # by the caller), printing EXIT=status when it ends: tui_session "$tmp" "'$DEMO' --plan 'p'"
    tui_session() {
        T new-session -d -s wb -x "$cols" -y "$rows" \
            "cd '$1' && NO_COLOR=1 TERM=xterm-256color LANG=C.UTF-8 '$SUBMOE' tui $2; echo EXIT=\$?; sleep 600"
    }
    # q (and y when the plan was edited: tui_quit LABEL discard), the workbench exits with 0, and
    # the session ends
    tui_quit() {
        keys q
        if [ "${2:-}" = discard ]; then
            check "$1: asks before discarding" wait_for 'Quit and discard' 10
            keys y
        fi
        check "$1: quits with 0" wait_for 'EXIT=0' 30
        T kill-server >/dev/null 2>&1
    }
}

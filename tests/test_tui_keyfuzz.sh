#!/bin/sh
# Random keys into the workbench (issue 14 §1), for make check-slow (run under ASan/UBSan by
# .ci/run). First the in-process fuzz (tests/test_tui_fuzz: keys, worker results, drawing) for
# TUI_FUZZ_INPROC seconds; then the real binary in tmux, fed random keys — every editing key,
# the dialogs and their text fields, saving and opening plans, commits, perplexity, Esc — for
# TUI_FUZZ_SECONDS in all, in three sessions starting at 80x24, 60x16 and 200x60 and resized at
# random (too small included). A quit restarts the workbench. Passes when every run exited 0,
# no sanitizer report appeared, and each session still quits cleanly at the end.
#   TUI_FUZZ_SEED=N (printed; default from the clock) repeats the same key sequences.
set -u
. "$SRCDIR/tests/lib.sh"
command -v tmux >/dev/null 2>&1 || { echo "tmux not installed: skipped"; exit 77; }
seed=${TUI_FUZZ_SEED:-$(date +%s)}
total=${TUI_FUZZ_SECONDS:-66}
inproc=${TUI_FUZZ_INPROC:-30}
echo "# seed $seed: repeat with TUI_FUZZ_SEED=$seed"
: "${ASAN_OPTIONS:=detect_leaks=1:abort_on_error=1}" "${UBSAN_OPTIONS:=print_stacktrace=1:halt_on_error=1}"
export ASAN_OPTIONS UBSAN_OPTIONS
tmp=$(mktemp -d "${TMPDIR:-/tmp}/submoe-keyfuzz.XXXXXX")
trap 'for s in "$tmp"/*.sock; do tmux -S "$s" kill-server >/dev/null 2>&1; done; rm -rf "$tmp"' EXIT

check "in-process: ${inproc} s of random keys and worker results, drawn (seed $seed)" \
    timeout $((inproc * 4 + 120)) "$BUILDDIR/tests/test_tui_fuzz" "$inproc" "$seed"

"$SUBMOE" synth --arch mixtral --out "$tmp/m" -q &&
    "$SUBMOE" calibrate "$tmp/m" --tokens "$SRCDIR/data/calib.u32" --samples 8 --seq-len 64 -o "$tmp/m.stats" -q &&
    "$SUBMOE" synth --arch qwen3_moe --out "$tmp/q64" --experts 64 --clusters 16 --layers 2 --hidden 64 \
        --intermediate 32 --vocab 256 -q || { echo "cannot make the test models"; exit 99; }

# keys SEED COUNT: COUNT random tmux key names, one a line
keys() {
    awk -v seed="$1" -v count="$2" 'BEGIN {
        srand(seed)
        split("m n g + - u U c m n g + - u U c j k h l H L J K 2 3 1 Up Down Left Right PageUp PageDown Home End", ed, " ")
        split("Tab 1 2 3 s x < > , . f = M a r p P w o C Enter Escape BSpace C-u C-r y n q ? Y Space 0 4 7 9 A z", ot, " ")
        for (i = 0; i < count; i++) {
            r = rand()
            if (r < 0.55) print ed[1 + int(rand() * length(ed))]
            else print ot[1 + int(rand() * length(ot))]
        }
    }'
}

# session NAME COLS ROWS SECONDS SEED MODEL [ARGS...]
session() {
    name=$1 cols=$2 rows=$3 secs=$4 sseed=$5
    shift 5
    dir="$tmp/$name"
    mkdir -p "$dir"
    sock="$tmp/$name.sock"
    T() { tmux -S "$sock" "$@"; }
    # the workbench in a loop: a quit restarts it until the test says stop
    T new-session -d -s wb -x "$cols" -y "$rows" \
        "cd '$dir' && while [ ! -e stop ]; do TERM=xterm-256color LANG=C.UTF-8 '$SUBMOE' tui $* 2>>err; echo \$? >>exits; done; echo FUZZ-DONE; sleep 600"
    i=0
    while [ $i -lt 600 ] && ! T capture-pane -t wb -p 2>/dev/null | grep -q 'submoe workbench'; do
        sleep 0.1
        i=$((i + 1))
    done
    keys "$sseed" 200000 >"$dir/keys"
    start=$(date +%s)
    line=1
    batches=0
    while [ $(($(date +%s) - start)) -lt "$secs" ]; do
        # 25 keys a batch, then a moment for the screen; now and then a resize
        T send-keys -t wb -- $(sed -n "${line},$((line + 24))p;$((line + 24))q" "$dir/keys") 2>/dev/null
        line=$((line + 25))
        batches=$((batches + 1))
        if [ $((batches % 40)) -eq 0 ]; then
            sz=$(awk -v s="$sseed$batches" 'BEGIN { srand(s); split("80x24 60x16 200x60 50x12 132x43 61x17", z, " "); print z[1 + int(rand() * 6)] }')
            T resize-window -t wb -x "${sz%x*}" -y "${sz#*x}" >/dev/null 2>&1
        fi
        sleep 0.05
        if grep -Eq 'runtime error|Sanitizer' "$dir/err" 2>/dev/null; then break; fi
    done
    sent=$((line - 1))
    # stop: close any dialog, cancel any job, quit (discarding edits)
    T resize-window -t wb -x "$cols" -y "$rows" >/dev/null 2>&1
    touch "$dir/stop"
    i=0
    while [ $i -lt 60 ] && ! T capture-pane -t wb -p 2>/dev/null | grep -q FUZZ-DONE; do
        T send-keys -t wb Escape 2>/dev/null
        sleep 0.2
        T send-keys -t wb Escape q 2>/dev/null
        sleep 0.3
        T send-keys -t wb y 2>/dev/null
        sleep 0.5
        i=$((i + 1))
    done
    runs=$(wc -l <"$dir/exits" 2>/dev/null || echo 0)
    check "$name: $sent random keys in $secs s from ${cols}x${rows} (resized), $runs runs of the workbench: it quits cleanly at the end" \
        sh -c "tmux -S '$sock' capture-pane -t wb -p | grep -q FUZZ-DONE"
    check "$name: every run exited 0 (exits: $(sort "$dir/exits" 2>/dev/null | uniq -c | tr -s ' \n' ' '))" \
        sh -c "[ -s '$dir/exits' ] && ! grep -vqx 0 '$dir/exits'"
    check "$name: no sanitizer report" sh -c "! grep -Eq 'runtime error|Sanitizer|SEGV' '$dir/err' 2>/dev/null"
    if [ -s "$dir/err" ]; then sed 's/^/    | /' "$dir/err" | head -40; fi
    T kill-server >/dev/null 2>&1
}

per=$(((total + 2) / 3))
session mix80 80 24 "$per" "$seed" "'$tmp/m'" --calib "'$tmp/m.stats'" --heldout "'$SRCDIR/data/heldout.u32'"
session mix60 60 16 "$per" "$((seed + 1))" "'$tmp/m'" --calib "'$tmp/m.stats'"
session q64 200 60 "$per" "$((seed + 2))" "'$tmp/q64'"
echo "$n checks, $fail failed (seed $seed)"
[ "$fail" -eq 0 ]

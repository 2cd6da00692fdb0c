#!/bin/sh
# Command-line behaviour: help texts, usage errors, refusing to overwrite, the default overview;
# standard output that cannot be written; -o paths that are links or devices.
set -u
. "$SRCDIR/tests/lib.sh"
scratch cli
shown=/dev/null # what a failure shows: the output of the command checked last
show_failure() { sed 's/^/    /' "$shown"; }
expect() { # expect NAME STATUS PATTERN -- command...
    name=$1 want=$2 pat=$3
    shift 4
    "$@" >"$tmp/out" 2>&1
    got=$?
    shown=$tmp/out
    if [ "$got" -ne "$want" ]; then
        bad "$name: exit $got, want $want"
    elif [ -n "$pat" ] && ! grep -qE -- "$pat" "$tmp/out"; then
        bad "$name: output lacks /$pat/"
    else
        ok "$name"
    fi
}
expect "submoe --help" 0 "^Usage: submoe" -- "$SUBMOE" --help
expect "help lists inspect" 0 "inspect +describe a model" -- "$SUBMOE" --help
expect "help lists synth" 0 "synth +write a synthetic model" -- "$SUBMOE" --help
expect "--version" 0 "^submoe [0-9]+\.[0-9]+" -- "$SUBMOE" --version
expect "inspect --help" 0 "^Usage: submoe inspect" -- "$SUBMOE" inspect --help
expect "synth --help" 0 "^Usage: submoe synth" -- "$SUBMOE" synth --help
expect "unknown command" 2 "neither a command nor a model directory" -- "$SUBMOE" frobnicate
expect "unknown option" 2 "unknown option '--frob'" -- "$SUBMOE" --frob
expect "inspect without a model" 2 "expected exactly one MODEL" -- "$SUBMOE" inspect
expect "inspect of a missing path" 1 "nonexistent: not a model directory" -- "$SUBMOE" inspect "$tmp/nonexistent"
expect "synth without --arch" 2 "--arch is required" -- "$SUBMOE" synth --out "$tmp/x"
expect "synth with a bad arch" 2 "--arch 'gpt2' is not one of" -- "$SUBMOE" synth --arch gpt2 --out "$tmp/x"
expect "synth with bad top-k" 2 "--top-k 9 is out of range" -- "$SUBMOE" synth --arch olmoe --top-k 9 --out "$tmp/x"
expect "synth with a non-number" 2 "--hidden: 'big' is not an integer" -- "$SUBMOE" synth --arch olmoe --hidden big --out "$tmp/x"
expect "synth writes a model" 0 "" -- "$SUBMOE" synth --arch olmoe -q --out "$tmp/m"
expect "synth refuses to overwrite" 1 "already exists \(use --force" -- "$SUBMOE" synth --arch olmoe -q --out "$tmp/m"
expect "synth --force replaces" 0 "" -- "$SUBMOE" synth --arch olmoe -q --seed 2 --force --out "$tmp/m"
shown=/dev/null
if ls "$tmp" | grep -q 'tmp-\|old-'; then bad "temporary directories left behind"; else ok "no temporaries left"; fi
"$SUBMOE" synth --arch olmoe -q --seed 2 --out "$tmp/m3"
expect "same seed, same bytes" 0 "" -- cmp "$tmp/m/model.safetensors" "$tmp/m3/model.safetensors"
expect "no arguments: overview of the demo model" 0 "^Architecture   mixtral" -- "$SUBMOE"
expect "a model directory as the only argument" 0 "^Architecture   olmoe" -- "$SUBMOE" "$tmp/m"

# Results that cannot be written to standard output (a full disk, a closed descriptor): exit 1
# with exactly one message, never a silent success.
one_line() { # one_line NAME PATTERN -- command... (stdout already redirected by the caller)
    name=$1 pat=$2
    lines=$(wc -l <"$tmp/err")
    shown=$tmp/err
    if [ "$st" -ne 1 ]; then
        bad "$name: exit $st, want 1"
    elif [ "$lines" -ne 1 ] || ! grep -qE -- "$pat" "$tmp/err"; then
        bad "$name: want one line matching /$pat/"
    else
        ok "$name"
    fi
}
full="cannot write the output to standard output: No space left on device"
if [ -w /dev/full ]; then
    "$SUBMOE" inspect "$DEMO" >/dev/full 2>"$tmp/err"; st=$?
    one_line "inspect > /dev/full" "$full"
    "$SUBMOE" inspect --json "$DEMO" >/dev/full 2>"$tmp/err"; st=$?
    one_line "inspect --json > /dev/full" "$full"
    "$SUBMOE" --help >/dev/full 2>"$tmp/err"; st=$?
    one_line "--help > /dev/full" "$full"
    "$SUBMOE" eval "$DEMO" --tokens "$SRCDIR/data/heldout.u32" -m 600 -q >/dev/full 2>"$tmp/err"; st=$?
    one_line "eval -q > /dev/full" "$full"
    "$SUBMOE" eval "$DEMO" --tokens "$SRCDIR/data/heldout.u32" -m 600 --json >/dev/full 2>"$tmp/err"; st=$?
    one_line "eval --json > /dev/full" "$full"
    "$SUBMOE" diff "$DEMO" "$DEMO" >/dev/full 2>"$tmp/err"; st=$?
    one_line "diff > /dev/full" "$full"
    "$SUBMOE" plan "$DEMO" -e 6 -m freq-average -q -o /dev/stdout >/dev/full 2>"$tmp/err"; st=$?
    one_line "plan -o /dev/stdout > /dev/full" "^submoe plan: /dev/stdout: write failed: No space left on device"
fi
"$SUBMOE" inspect "$DEMO" >&- 2>"$tmp/err"; st=$?
one_line "inspect with standard output closed" "cannot write the output to standard output: Bad file descriptor"

# -o paths: the temporary + rename never replaces a symbolic link or a device.
o="$tmp/o"
mkdir "$o"
was_link=no
[ -L /dev/stdout ] && was_link=yes
"$SUBMOE" plan "$DEMO" -e 6 -m freq-average -q -o /dev/stdout >"$o/stdout.yaml" 2>"$tmp/err"
st=$?
is_link=no
[ -L /dev/stdout ] && is_link=yes
shown=/dev/null
check_expr "plan -o /dev/stdout writes the plan to standard output" \
    '[ $st -eq 0 ] && grep -q "^submoe_plan: 1" "$o/stdout.yaml" && [ $was_link = $is_link ]'
echo "# kept" >"$o/log.yaml"
"$SUBMOE" plan "$DEMO" -e 6 -m freq-average -q -o /dev/stdout >>"$o/log.yaml"
expect "plan -o /dev/stdout >> FILE appends" 0 "" -- sh -c "head -1 '$o/log.yaml' | grep -q '^# kept' && grep -q '^submoe_plan: 1' '$o/log.yaml'"
echo old >"$o/real.yaml"
ln -s real.yaml "$o/link.yaml"
expect "plan -o LINK writes through the link" 0 "" -- "$SUBMOE" plan "$DEMO" -e 6 -m freq-average -q -o "$o/link.yaml"
expect "... the link stays a link" 0 "" -- test -L "$o/link.yaml"
expect "... and its file holds the plan" 0 "" -- grep -q '^submoe_plan: 1' "$o/real.yaml"
ln -s nowhere "$o/dangling.yaml"
expect "plan -o a dangling link is refused" 1 "dangling.yaml: a symbolic link to nothing" -- \
    "$SUBMOE" plan "$DEMO" -e 6 -m freq-average -q -o "$o/dangling.yaml"
expect "plan -o a directory is refused" 1 "o: is a directory" -- "$SUBMOE" plan "$DEMO" -e 6 -m freq-average -q -o "$o"
expect "plan -o /dev/null" 0 "" -- "$SUBMOE" plan "$DEMO" -e 6 -m freq-average -q -o /dev/null
expect "... /dev/null is still a device" 0 "" -- test -c /dev/null
"$SUBMOE" calibrate "$DEMO" --tokens "$SRCDIR/data/calib.u32" --samples 2 --seq-len 64 -q -o "$o/real.stats"
ln -s real.stats "$o/link.stats"
expect "calibrate -o LINK writes through the link" 0 "" -- \
    "$SUBMOE" calibrate "$DEMO" --tokens "$SRCDIR/data/calib.u32" --samples 3 --seq-len 64 -q -o "$o/link.stats"
expect "... the link stays a link" 0 "" -- test -L "$o/link.stats"
expect "calibrate -o /dev/null is refused" 1 "/dev/null: not a regular file" -- \
    "$SUBMOE" calibrate "$DEMO" --tokens "$SRCDIR/data/calib.u32" --samples 2 --seq-len 64 -q -o /dev/null
"$SUBMOE" synth --arch olmoe -q --out "$o/realdir"
ln -s realdir "$o/linkdir"
expect "synth --force over a link to a directory" 0 "" -- "$SUBMOE" synth --arch olmoe -q --seed 3 --force --out "$o/linkdir"
expect "... the link stays a link" 0 "" -- test -L "$o/linkdir"
expect "... to the new model" 0 "" -- cmp -s "$o/linkdir/model.safetensors" "$o/realdir/model.safetensors"
echo x >"$o/file"
expect "synth --force over a regular file is refused" 1 "file: exists and is not a directory" -- \
    "$SUBMOE" synth --arch olmoe -q --force --out "$o/file"
expect "synth --force over /dev/null is refused" 1 "/dev/null: exists and is not a directory" -- \
    "$SUBMOE" synth --arch olmoe -q --force --out /dev/null
expect "... /dev/null is still a device" 0 "" -- test -c /dev/null
shown=/dev/null
if ls -a "$o" | grep -q 'tmp-\|old-'; then bad "temporaries left in $o: $(ls "$o")"; else ok "no temporaries left"; fi

echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

#!/bin/sh
# Command-line behaviour: help texts, usage errors, refusing to overwrite, the default overview.
set -u
tmp=$(mktemp -d "${TMPDIR:-/tmp}/submoe-cli.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0
n=0
expect() { # expect NAME STATUS PATTERN -- command...
    name=$1 want=$2 pat=$3
    shift 4
    "$@" >"$tmp/out" 2>&1
    got=$?
    n=$((n + 1))
    if [ "$got" -ne "$want" ]; then
        echo "not ok $n - $name: exit $got, want $want"; sed 's/^/    /' "$tmp/out"; fail=$((fail + 1))
    elif [ -n "$pat" ] && ! grep -qE -- "$pat" "$tmp/out"; then
        echo "not ok $n - $name: output lacks /$pat/"; sed 's/^/    /' "$tmp/out"; fail=$((fail + 1))
    else
        echo "ok $n - $name"
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
n=$((n + 1))
if ls "$tmp" | grep -q 'tmp-\|old-'; then echo "not ok $n - temporary directories left behind"; fail=$((fail + 1)); else echo "ok $n - no temporaries left"; fi
"$SUBMOE" synth --arch olmoe -q --seed 2 --out "$tmp/m3"
expect "same seed, same bytes" 0 "" -- cmp "$tmp/m/model.safetensors" "$tmp/m3/model.safetensors"
expect "no arguments: overview of the demo model" 0 "^Architecture   mixtral" -- "$SUBMOE"
expect "a model directory as the only argument" 0 "^Architecture   olmoe" -- "$SUBMOE" "$tmp/m"
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

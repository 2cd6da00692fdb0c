#!/bin/sh
# `submoe eval`: perplexity on token files (raw uint32 and .npy give the same answer; windows and
# --max-tokens behave as documented), clear errors for bad token files and options, and — when the
# bundled demo model and its PyTorch reference exist — agreement with the reference perplexity to 0.1%.
set -u
. "$SRCDIR/tests/lib.sh"
scratch eval

"$SUBMOE" synth --arch qwen2_moe --out "$tmp/m" --layers 2 --hidden 32 --intermediate 32 --vocab 256 -q >/dev/null ||
    bad "synth"
# 4096 byte-valued tokens as raw uint32.
head -c 16384 "$SRCDIR/data/heldout.u32" >"$tmp/t.u32"

p1=$("$SUBMOE" eval "$tmp/m" --tokens "$tmp/t.u32" --seq-len 64 --quiet 2>"$tmp/err")
check_expr "eval --quiet prints a perplexity ($p1)" 'echo "$p1" | grep -Eq "^[0-9]+\.[0-9]+$"'

# The same ids as a .npy int32 file: 10-byte preamble + header padded to a multiple of 64 bytes.
hdr="{'descr': '<i4', 'fortran_order': False, 'shape': (4096,), }"
pad=$(((64 - (10 + ${#hdr} + 1) % 64) % 64))
{
    printf '\223NUMPY\001\000'
    printf "\\$(printf %03o $((pad + ${#hdr} + 1)))\\000"
    printf '%s' "$hdr"
    printf "%${pad}s\n" ""
    cat "$tmp/t.u32"
} >"$tmp/t.npy"
p2=$("$SUBMOE" eval "$tmp/m" --tokens "$tmp/t.npy" --seq-len 64 --quiet 2>>"$tmp/err")
check_expr ".npy gives the same perplexity ($p2)" '[ "$p1" = "$p2" ]'

j=$("$SUBMOE" eval "$tmp/m" --tokens "$tmp/t.u32" --seq-len 100 --max-tokens 1000 --json 2>>"$tmp/err")
check_expr "--json windows: 1000 tokens / 100 = 10 windows" 'echo "$j" | grep -q "\"windows\": 10,"'
check_expr "--json predicted: 10 x 99" 'echo "$j" | grep -q "\"predicted\": 990,"'
check_expr "--json bits_per_byte for vocab 256" 'echo "$j" | grep -q "\"bits_per_byte\""'

# The first window alone equals --max-tokens of one window.
pa=$("$SUBMOE" eval "$tmp/m" --tokens "$tmp/t.u32" --seq-len 64 --max-tokens 64 --quiet)
pb=$("$SUBMOE" eval "$tmp/m" --tokens "$tmp/t.u32" --seq-len 64 --max-tokens 127 --quiet)
check_expr "a partial trailing window is dropped ($pa = $pb)" '[ "$pa" = "$pb" ]'

# Sequences split over threads give exactly the answer of one thread (work is cut into units of
# whole sequences that do not depend on the thread count), and so do calibration statistics.
t1=$(SUBMOE_THREADS=1 "$SUBMOE" eval "$tmp/m" --tokens "$tmp/t.u32" --seq-len 64 --json | grep -o '"nll": [0-9.]*')
t2=$(SUBMOE_THREADS=3 "$SUBMOE" eval "$tmp/m" --tokens "$tmp/t.u32" --seq-len 64 --json | grep -o '"nll": [0-9.]*')
check_expr "1 thread ($t1) = 3 threads ($t2), to the last digit" '[ -n "$t1" ] && [ "$t1" = "$t2" ]'
SUBMOE_THREADS=1 "$SUBMOE" calibrate "$tmp/m" --tokens "$tmp/t.u32" --samples 64 --seq-len 64 -o "$tmp/c1.stats" -q
SUBMOE_THREADS=2 "$SUBMOE" calibrate "$tmp/m" --tokens "$tmp/t.u32" --samples 64 --seq-len 64 -o "$tmp/c2.stats" -q
check_expr "stats files from 1 and 2 threads are byte-identical" 'cmp -s "$tmp/c1.stats" "$tmp/c2.stats"'

# Errors: one clear message, non-zero exit, no crash.
"$SUBMOE" eval "$tmp/m" >/dev/null 2>"$tmp/e1"
check_expr "missing --tokens: exit 2" '[ $? -eq 2 ] && grep -q -- "--tokens" "$tmp/e1"'
printf 'abcde' >"$tmp/odd.u32"
"$SUBMOE" eval "$tmp/m" --tokens "$tmp/odd.u32" >/dev/null 2>"$tmp/e2"
check_expr "odd-sized token file: exit 1 naming the file" '[ $? -eq 1 ] && grep -q "odd.u32" "$tmp/e2"'
printf '\001\000\000\000\000\001\000\000' >"$tmp/big.u32"
"$SUBMOE" eval "$tmp/m" --tokens "$tmp/big.u32" >/dev/null 2>"$tmp/e3"
check_expr "id 256 >= vocab refused with its position" '[ $? -eq 1 ] && grep -q "token 1 has id 256" "$tmp/e3"'
"$SUBMOE" eval "$tmp/m" --tokens "$tmp/none.u32" >/dev/null 2>"$tmp/e4"
check_expr "missing token file" '[ $? -eq 1 ] && grep -q "none.u32" "$tmp/e4"'
"$SUBMOE" eval "$tmp/m" --tokens "$tmp/t.u32" --seq-len 1 >/dev/null 2>"$tmp/e5"
check_expr "--seq-len 1 refused" '[ $? -eq 2 ]'
printf '\223NUMPY\001\000\377\377' >"$tmp/trunc.npy"
"$SUBMOE" eval "$tmp/m" --tokens "$tmp/trunc.npy" >/dev/null 2>"$tmp/e6"
check_expr "truncated .npy header" '[ $? -eq 1 ] && grep -q "trunc.npy" "$tmp/e6"'

# submoe calibrate: activations file, fingerprint cache, errors.
"$SUBMOE" calibrate "$tmp/m" --tokens "$tmp/t.u32" -o "$tmp/act.st" --samples 3 --seq-len 32 --keep 50 -q 2>"$tmp/c1"
check_expr "calibrate writes an activations file" '[ $? -eq 0 ] && [ -s "$tmp/act.st" ]'
s1=$(cksum <"$tmp/act.st")
out=$("$SUBMOE" calibrate "$tmp/m" --tokens "$tmp/t.u32" -o "$tmp/act.st" --samples 3 --seq-len 32 --keep 50)
check_expr "same settings: up to date, not recomputed" 'echo "$out" | grep -q "up to date"'
"$SUBMOE" calibrate "$tmp/m" --tokens "$tmp/t.u32" -o "$tmp/act2.st" --samples 3 --seq-len 32 --keep 50 -q
check_expr "deterministic: same bytes" '[ "$(cksum <"$tmp/act2.st")" = "$s1" ]'
out=$("$SUBMOE" calibrate "$tmp/m" --tokens "$tmp/t.u32" -o "$tmp/act.st" --samples 3 --seq-len 32 --keep 40)
check_expr "changed settings: recomputed" 'echo "$out" | grep -q "with statistics"'
# The same shapes, other weights (a model rewritten in place): recomputed, not reused.
"$SUBMOE" synth --arch qwen2_moe --out "$tmp/m9" --layers 2 --hidden 32 --intermediate 32 --vocab 256 --seed 9 -q
cp "$tmp/m9/model.safetensors" "$tmp/m/model.safetensors" # config.json unchanged
out=$("$SUBMOE" calibrate "$tmp/m" --tokens "$tmp/t.u32" -o "$tmp/act.st" --samples 3 --seq-len 32 --keep 40)
check_expr "weights changed in place: recomputed" 'echo "$out" | grep -q "with statistics"'
"$SUBMOE" calibrate "$tmp/m" --tokens "$tmp/t.u32" -o "$tmp/act3.st" --samples 1000 --seq-len 64 -q 2>"$tmp/c2"
check_expr "too few tokens: clear error, no output" '[ $? -eq 1 ] && grep -q "t.u32 holds 4096 tokens" "$tmp/c2" && [ ! -e "$tmp/act3.st" ]'
check_expr "no temporary files left" '[ -z "$(ls "$tmp" | grep "tmp")" ]'

# The bundled demo models (upcycled and trained from scratch) against their PyTorch reference
# (when the demo has been built).
check_reference() { # NAME DIR
    if [ -f "$2/reference.json" ]; then
        ref=$(sed -n 's/.*"heldout_ppl": *\([0-9.eE+-]*\).*/\1/p' "$2/reference.json" | head -n 1)
        sl=$(sed -n 's/.*"seq_len": *\([0-9]*\).*/\1/p' "$2/reference.json" | head -n 1)
        got=$("$SUBMOE" eval "$2" --tokens "$SRCDIR/data/heldout.u32" --seq-len "${sl:-256}" --precision fp32 --quiet)
        check_expr "$1 held-out perplexity $got vs PyTorch $ref (0.1%)" '[ -n "$ref" ] &&
            awk -v a="$got" -v b="$ref" "BEGIN { d = (a - b) / b; if (d < 0) d = -d; exit !(d <= 0.001) }"'
    else
        echo "# $2/reference.json absent: $1 perplexity check skipped"
    fi
}
check_reference demo "$DEMO"
check_reference demo-scratch "$SRCDIR/data/demo-scratch"

echo "$n checks, $fail failed"
[ $fail -eq 0 ]

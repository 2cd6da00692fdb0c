#!/bin/sh
# --precision (issue 16 item 4): on the bundled demo, the perplexity with bf16 products is within
# 0.2% of fp32's, and so is the bf16 perplexity of a synth large enough that its projections and
# experts take oneDNN's bf16 kernels (n·k ≥ 2^20); auto runs one of the two and says which;
# calibrate accepts it (a bf16 stats file is not reused for fp32); bad values get one message.
set -u
. "$SRCDIR/tests/lib.sh"
scratch precision
DEMO=$SRCDIR/data/demo
TOK=$SRCDIR/data/heldout.u32

# within LIMIT A B: |A/B - 1| <= LIMIT
within() { awk -v a="$2" -v b="$3" -v l="$1" 'BEGIN { d = a / b - 1; if (d < 0) d = -d; exit !(b > 0 && d <= l) }'; }

f=$("$SUBMOE" eval "$DEMO" --tokens "$TOK" --max-tokens 16384 --precision fp32 -q) || bad "demo eval fp32"
# bf16 only where the CPU has it: otherwise `--precision bf16` is refused with a message
if "$SUBMOE" eval "$DEMO" --tokens "$TOK" --max-tokens 512 --precision bf16 -q >/dev/null 2>"$tmp/e"; then
    b=$("$SUBMOE" eval "$DEMO" --tokens "$TOK" --max-tokens 16384 --precision bf16 -q) || bad "demo eval bf16"
    check_expr "demo: bf16 perplexity $b within 0.2% of fp32 $f" 'within 0.002 "$b" "$f"'
    check_expr "demo: bf16 perplexity $b differs from fp32 $f (bf16 products really ran)" '[ "$b" != "$f" ]'
    # auto: bf16 where it pays (AMX, or AMD's AVX512-BF16), else fp32; the result says which
    "$SUBMOE" eval "$DEMO" --tokens "$TOK" --max-tokens 16384 >"$tmp/auto"
    a=$(sed -n 's/^perplexity *//p' "$tmp/auto")
    check_expr "auto ran fp32 or bf16 and says which ($a)" \
        '{ [ "$a" = "$b" ] && grep -q "bf16 products" "$tmp/auto"; } || { [ "$a" = "$f" ] && grep -q "fp32 products" "$tmp/auto"; }'
    # hidden 1024: every projection and expert matrix is at least 2^20 elements (oneDNN's kernels)
    "$SUBMOE" synth --arch olmoe --out "$tmp/big" --layers 2 --hidden 1024 --intermediate 1024 --experts 4 \
        --top-k 2 --heads 8 --kv-heads 8 --vocab 1024 --dtype bf16 --clusters 2 -q >/dev/null || bad "synth"
    head -c 16384 "$TOK" >"$tmp/t.u32"
    fs=$("$SUBMOE" eval "$tmp/big" --tokens "$tmp/t.u32" --seq-len 256 --precision fp32 -q)
    bs=$("$SUBMOE" eval "$tmp/big" --tokens "$tmp/t.u32" --seq-len 256 --precision bf16 -q)
    check_expr "synth (H 1024): bf16 perplexity $bs within 0.2% of fp32 $fs" 'within 0.002 "$bs" "$fs"'
    check_expr "synth: bf16 and fp32 differ ($bs, $fs)" '[ "$bs" != "$fs" ]'
else
    check_expr "bf16 refused on a CPU without it, with a message" 'grep -q "no bf16 dot products" "$tmp/e"'
    a=$("$SUBMOE" eval "$DEMO" --tokens "$TOK" --max-tokens 16384 -q)
    check_expr "auto is fp32 on this CPU ($a)" '[ "$a" = "$f" ]'
fi

"$SUBMOE" eval "$DEMO" --tokens "$TOK" --precision fp16 >"$tmp/o" 2>"$tmp/e"; st=$?
check_expr "--precision fp16: exit 2, one message naming the choices" \
    '[ $st -eq 2 ] && [ ! -s "$tmp/o" ] && grep -q "expected auto, fp32 or bf16" "$tmp/e"'
"$SUBMOE" calibrate "$DEMO" --tokens "$SRCDIR/data/calib.u32" -o "$tmp/s" --precision half -q 2>"$tmp/e"; st=$?
check_expr "calibrate --precision half: exit 2 with the message, no file" \
    '[ $st -eq 2 ] && [ ! -e "$tmp/s" ] && grep -q "expected auto, fp32 or bf16" "$tmp/e"'

# calibrate in both precisions: the files differ, and the fp32 one is not taken for the bf16 one
cal() { "$SUBMOE" calibrate "$DEMO" --tokens "$SRCDIR/data/calib.u32" -o "$1" -s 4 -k 512 -q --precision "$2"; }
cal "$tmp/f.stats" fp32 || bad "calibrate fp32"
if cal "$tmp/b.stats" bf16 2>/dev/null; then
    check_expr "calibrate: bf16 and fp32 stats differ" '! cmp -s "$tmp/f.stats" "$tmp/b.stats"'
    cp "$tmp/f.stats" "$tmp/x.stats"
    "$SUBMOE" calibrate "$DEMO" --tokens "$SRCDIR/data/calib.u32" -o "$tmp/x.stats" -s 4 -k 512 --precision bf16 \
        >"$tmp/o" 2>&1
    check_expr "calibrate --precision bf16 over an fp32 file recomputes it" 'cmp -s "$tmp/x.stats" "$tmp/b.stats"'
fi
[ "$fail" -eq 0 ]

#!/bin/sh
# The bundled token files are bytes of English text (issue 19 item 7): plan refuses to calibrate
# on them by default for a model whose vocabulary is not 256, with one message saying how to give
# tokens or text; naming them explicitly (--tokens data/calib.u32) is the user's choice and works;
# a byte model still gets them by default.
set -u
. "$SRCDIR/tests/lib.sh"
scratch bundled
"$SUBMOE" synth --arch qwen3_moe --out "$tmp/q" --vocab 1024 --layers 2 --hidden 32 --intermediate 32 --experts 8 \
    --clusters 4 --heads 2 --kv-heads 1 -q

"$SUBMOE" plan "$tmp/q" --experts 4 -m submoe --samples 4 --seq-len 64 -o "$tmp/p.yaml" -q 2>"$tmp/err"
st=$?
check "plan on a 1024-token vocabulary without --tokens: exit 1, no plan" sh -c "[ $st -eq 1 ] && [ ! -e '$tmp/p.yaml' ]"
check "... one line naming the bundled file and the vocabulary" \
    sh -c "[ \$(wc -l <'$tmp/err') -eq 1 ] && grep -q 'calib.u32 is the bundled byte tokens (English text as ids 0..255), but the model.s vocabulary has 1024 tokens' '$tmp/err'"
check "... and saying how to give tokens or text" grep -q 'give its own token ids with --tokens FILE (submoe tokenize MODEL TEXT -o FILE makes them) or text with --text FILE' "$tmp/err"

"$SUBMOE" plan "$tmp/q" --experts 4 -m submoe --samples 4 --seq-len 64 -t "$SRCDIR/data/calib.u32" -o "$tmp/p.yaml" -q 2>"$tmp/err"
st=$?
check "explicit --tokens data/calib.u32 is used as given" sh -c "[ $st -eq 0 ] && [ -s '$tmp/p.yaml' ] && [ ! -s '$tmp/err' ]"
"$SUBMOE" eval "$tmp/q" --tokens "$SRCDIR/data/heldout.u32" --max-tokens 512 -q >/dev/null 2>"$tmp/err"
check "eval with explicit --tokens data/heldout.u32 works" test $? -eq 0
"$SUBMOE" eval "$tmp/q" -q >/dev/null 2>"$tmp/err"
st=$?
check "eval has no default tokens: it asks for them (exit 2)" sh -c "[ $st -eq 2 ] && grep -q -- '--tokens FILE, --text FILE or --task FILE is required' '$tmp/err'"

# A stats file already made (from the model's own tokens) needs no tokens.
"$SUBMOE" calibrate "$tmp/q" --tokens "$SRCDIR/data/calib.u32" --samples 4 --seq-len 64 -o "$tmp/q.stats" -q
"$SUBMOE" plan "$tmp/q" --experts 4 -m submoe -c "$tmp/q.stats" -o "$tmp/p2.yaml" -q
check "plan from an existing stats file: no tokens needed" test -s "$tmp/p2.yaml"

# A byte model keeps the default.
"$SUBMOE" plan "$DEMO" --experts 6 -m freq-average --samples 4 --seq-len 64 -o "$tmp/d.yaml" -q
check "the demo (vocabulary 256) still calibrates on the bundled tokens by default" grep -q 'calib.u32' "$tmp/d.yaml"
[ "$fail" -eq 0 ]

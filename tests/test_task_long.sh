#!/bin/sh
# Long task items (eval --task) are left-truncated as lm-eval's _loglikelihood_tokens does: the
# model reads (context + continuation)[-(max_length + 1):][:-1], max_length from --max-length, else
# the config's max_position_embeddings (else 2048). On the demo (one token per byte, no BOS) a
# truncated item must score exactly like the item whose context is the bytes kept. And a long
# item with a 151,936-token vocabulary must not hold [tokens, vocab] logits: 10,000 tokens would
# be 6 GB of them; it runs under a 1.5 GB address-space limit.
set -u
. "$SRCDIR/tests/lib.sh"
scratch tasklong
S=$SUBMOE
show_failure() { [ -s "$tmp/err" ] && sed 's/^/    | /' "$tmp/err"; }

# A 300-byte context of plain words (nothing JSON would escape); four 4-byte choices, so every
# choice's continuation " xxxx" is 5 tokens and the four sequences have one length.
"$S" tokenize "$DEMO" --decode "$SRCDIR/data/heldout.u32" | LC_ALL=C tr -cd 'a-zA-Z ' | head -c 300 >"$tmp/ctx"
item() { printf '{"context": "%s", "choices": ["lamb", "fish", "gold", "wine"], "gold": 0}\n' "$1"; }
item "$(cat "$tmp/ctx")" >"$tmp/long.jsonl"
item "$(tail -c 60 "$tmp/ctx")" >"$tmp/kept.jsonl"
"$S" eval "$DEMO" --task "$tmp/long.jsonl" --max-length 64 --items "$tmp/long.tsv" -q >/dev/null 2>"$tmp/err"
"$S" eval "$DEMO" --task "$tmp/kept.jsonl" --items "$tmp/kept.tsv" -q >/dev/null 2>>"$tmp/err"
cut -f 3- "$tmp/long.tsv" >"$tmp/long.ll"
cut -f 3- "$tmp/kept.tsv" >"$tmp/kept.ll"
check_expr "--max-length 64: a 305-token item scores as its last 60 context bytes + the choice ($(sed -n 2p "$tmp/long.ll" | cut -f 4))" \
    '[ $(wc -l <"$tmp/long.ll") -eq 5 ] && cmp -s "$tmp/long.ll" "$tmp/kept.ll"'
"$S" eval "$DEMO" --task "$tmp/long.jsonl" --items "$tmp/full.tsv" -q >/dev/null 2>"$tmp/err"
cut -f 3- "$tmp/full.tsv" >"$tmp/full.ll"
check_expr "without truncation (305 < 512 tokens) the scores differ" '[ -s "$tmp/full.ll" ] && ! cmp -s "$tmp/full.ll" "$tmp/long.ll"'

# The demo's config says max_position_embeddings 512: a 700-byte item is read as 512 tokens.
item "$(cat "$tmp/ctx" "$tmp/ctx" "$tmp/ctx" | head -c 700)" >"$tmp/700.jsonl"
"$S" eval "$DEMO" --task "$tmp/700.jsonl" --json >"$tmp/700.json" 2>"$tmp/err"
check_expr "default max length from the config: 4 choices x 512 tokens read" 'grep -q "\"tokens\": 2048," "$tmp/700.json"'
"$S" eval "$DEMO" --task "$tmp/long.jsonl" --max-length 3 -q >"$tmp/out" 2>"$tmp/err"
rc=$?
check_expr "a continuation longer than the max length: exit 1, file:line, nothing printed" \
    '[ $rc -eq 1 ] && grep -q "long.jsonl:1: choices\[0\] is 5 tokens, more than the model.s max length of 3" "$tmp/err" && [ ! -s "$tmp/out" ]'

# 151,936-token vocabulary (Qwen3's tokenizer, tests/fixtures/tok/qwen3), a 10,000-token item.
"$S" synth --arch qwen3_moe --out "$tmp/q" --vocab 151936 --layers 1 --hidden 32 --intermediate 32 --experts 4 \
    --clusters 2 >/dev/null 2>"$tmp/err"
gunzip -c "$SRCDIR/tests/fixtures/tok/qwen3/tokenizer.json.gz" >"$tmp/q/tokenizer.json"
gunzip -c "$SRCDIR/tests/fixtures/tok/qwen3/tokenizer_config.json.gz" >"$tmp/q/tokenizer_config.json"
head -c 40000 "$SRCDIR/tests/fixtures/tok/text.txt" | LC_ALL=C tr -cd 'a-zA-Z0-9 .,' | head -c 30000 >"$tmp/qctx"
n_ctx=$("$S" tokenize "$tmp/q" "$tmp/qctx" | wc -w)
item "$(cat "$tmp/qctx")" >"$tmp/q.jsonl"
limit=1500000 how="under ulimit -v 1.5 GB"
if grep -q __asan_init "$S" 2>/dev/null; then # ASan reserves more address space than any limit
    limit=unlimited how="(sanitizer build: no ulimit -v)"
fi
(ulimit -v $limit && exec "$S" eval "$tmp/q" --task "$tmp/q.jsonl" --json) >"$tmp/q.json" 2>"$tmp/err"
rc=$?
check_expr "a $n_ctx-token item, vocabulary 151936, $how: scored, read as 4 x 4096 tokens (the config's max)" \
    '[ $rc -eq 0 ] && [ "$n_ctx" -gt 8000 ] && grep -q "\"tokens\": 16384," "$tmp/q.json"'

echo "1..$n"
[ "$fail" -eq 0 ]

#!/bin/sh
# make_tok_seeds.sh: the seed corpora of the tokenizer harnesses (issue 17), from the repository:
#   fuzz/corpus/tokjson:   the broken tokenizers of tests/corrupt-tok, the demo tokenizer and the
#                          trained SentencePiece-style and Metaspace fixtures;
#   fuzz/corpus/tokencode: a selector byte (0, 1, 2: the harness's three tokenizers; +4 special
#                          tokens, +8 skip special on decode) then text: the edge cases of
#                          tests/fixtures/tok/edge and slices of the parity text.
# Run from the top of the source tree.
set -eu
j=fuzz/corpus/tokjson e=fuzz/corpus/tokencode
rm -rf "$j" "$e"
mkdir -p "$j" "$e"
for d in tests/corrupt-tok/*/; do
    [ -f "$d/tokenizer.json" ] && cp "$d/tokenizer.json" "$j/corrupt-$(basename "$d").json"
done
cp data/demo/tokenizer.json "$j/demo.json"
cp tests/fixtures/tok/spm/tokenizer.json "$j/spm.json"
cp tests/fixtures/tok/meta/tokenizer.json "$j/meta.json"
i=0
for f in tests/fixtures/tok/edge/*.txt; do
    sel=$((i % 3 + 4 * ((i / 3) % 2) + 8 * ((i / 6) % 2)))
    { printf "\\$(printf %03o "$sel")"; cat "$f"; } >"$e/edge-$(basename "$f" .txt)"
    i=$((i + 1))
done
for k in 0 1 2; do
    { printf "\\$(printf %03o $((k + 4)))"; head -c $((4096 * (k + 1))) tests/fixtures/tok/text.txt | tail -c 4096; } >"$e/text-$k"
done

#!/bin/sh
# submoe tokenize (issue 17): exact parity with Hugging Face tokenizers 0.22.1 on seven tokenizers
# (the real qwen3 and gpt-oss ones, five trained on KJV text: see tests/fixtures/tok/README) over
# the 210 KB parity text and 54 edge cases, and decoding those ids back to the reference's text;
# the demo tokenizer's byte round trip; the invalid UTF-8 policy; tokenizer_config.json's
# add_bos_token/add_eos_token; -o atomicity; and every broken tokenizer in tests/corrupt-tok/: one
# line naming the file and JSON path, exit 1, nothing written.
set -u
. "$SRCDIR/tests/lib.sh"
fix=$SRCDIR/tests/fixtures/tok
scratch tokenize
tokenize() { timeout 120 "$SUBMOE" tokenize "$@"; }

# 1. Parity: the whole text as one document (ids as uint32), each edge case as one document.
for name in qwen3 gpt-oss neox spm deepseek wordy meta; do
    dir=$fix/$name
    if [ -f "$dir/tokenizer.json.gz" ]; then # the real tokenizers are stored compressed
        mkdir -p "$tmp/$name"
        for f in "$dir"/*.gz; do gzip -dc "$f" >"$tmp/$name/$(basename "$f" .gz)"; done
        dir=$tmp/$name
    fi
    if tokenize "$dir" "$fix/text.txt" -o "$tmp/$name.u32" 2>"$tmp/err" && cmp -s "$tmp/$name.u32" "$fix/$name.text.u32"; then
        ok "$name: text.txt ids identical ($(($(wc -c <"$fix/$name.text.u32") / 4)) ids)"
    else
        bad "$name: text.txt ids differ"; head -3 "$tmp/err"
    fi
    sum=$(tokenize "$dir" --decode "$fix/$name.text.u32" | sha256sum | cut -d' ' -f1)
    if [ "$sum" = "$(cat "$fix/$name.decode.sha256")" ]; then
        ok "$name: decoding the ids gives the reference's text"
    else
        bad "$name: decoded text differs from the reference's"
    fi
    if tokenize "$dir" "$fix"/edge/*.txt >"$tmp/$name.edge" 2>"$tmp/err" && cmp -s "$tmp/$name.edge" "$fix/$name.edge.txt"; then
        ok "$name: edge cases identical"
    else
        bad "$name: edge cases differ"; diff "$tmp/$name.edge" "$fix/$name.edge.txt" | head -6
    fi
done

# Small variants for the pre-tokenizer settings the seven leave out (ByteLevel add_prefix_space,
# Whitespace, Metaspace always/never and split=false, Punctuation contiguous, Split removed and
# invert with every merge behaviour, BertPreTokenizer, RobertaProcessing): slice.txt + edge cases.
for v in prefix whitespace always never punct invert bert; do
    if tokenize "$fix/var-$v" "$fix/slice.txt" "$fix"/edge/*.txt >"$tmp/var.out" 2>"$tmp/err" && cmp -s "$tmp/var.out" "$fix/var-$v.txt"; then
        ok "var-$v: ids identical"
    else
        bad "var-$v: ids differ"; diff "$tmp/var.out" "$fix/var-$v.txt" | head -4
    fi
done

# The merges in the older "A B" string form (spm-legacy, as Mixtral's file has them): same ids.
if tokenize "$fix/spm-legacy" "$fix/text.txt" -o "$tmp/legacy.u32" && cmp -s "$tmp/legacy.u32" "$fix/spm.text.u32"; then
    ok "spm-legacy: string-form merges give the same ids"
else
    bad "spm-legacy: string-form merges differ"
fi

# 2. The demo tokenizer: id = byte; decoding held-out tokens and encoding them again is exact.
if tokenize "$DEMO" --decode "$SRCDIR/data/heldout.u32" >"$tmp/heldout.txt" &&
    tokenize "$DEMO" "$tmp/heldout.txt" -o "$tmp/heldout.u32" && cmp -s "$tmp/heldout.u32" "$SRCDIR/data/heldout.u32"; then
    ok "demo: heldout.u32 -> text -> ids round trip"
else
    bad "demo: round trip differs"
fi
# ... and the text decoded by qwen3 is the text encoded (valid UTF-8, no special tokens).
if tokenize "$tmp/qwen3" "$tmp/heldout.txt" -o "$tmp/q.u32" && tokenize "$tmp/qwen3" --decode "$tmp/q.u32" >"$tmp/q.txt" &&
    cmp -s "$tmp/q.txt" "$tmp/heldout.txt"; then
    ok "qwen3: decode(encode(text)) = text"
else
    bad "qwen3: decode round trip differs"
fi

# 3. Invalid UTF-8: replaced by U+FFFD with one warning naming file and byte offset; an error
#    under --strict-utf8, with no output written.
printf 'good \377\376 text \300' >"$tmp/bad.txt"
out=$(tokenize "$DEMO" "$tmp/bad.txt" 2>"$tmp/err")
if [ $? -eq 0 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -qF "$tmp/bad.txt: invalid UTF-8 at byte offset 5 (3 ill-formed sequences replaced by U+FFFD)" "$tmp/err" &&
    [ "$out" = "103 111 111 100 32 239 191 189 239 191 189 32 116 101 120 116 32 239 191 189" ]; then
    ok "invalid UTF-8 replaced by U+FFFD with a warning"
else
    bad "invalid UTF-8 replacement: $out"; cat "$tmp/err"
fi
tokenize "$DEMO" "$tmp/bad.txt" --strict-utf8 -o "$tmp/strict.u32" 2>"$tmp/err"
st=$?
if [ $st -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -qF "$tmp/bad.txt: invalid UTF-8 at byte offset 5" "$tmp/err" && [ ! -e "$tmp/strict.u32" ]; then
    ok "--strict-utf8: one error naming file and offset, nothing written"
else
    bad "--strict-utf8: exit $st"; cat "$tmp/err"
fi

# 4. tokenizer_config.json switches BOS/EOS on top of the post-processor (spm adds <s> = 1).
mkdir -p "$tmp/spm2"
cp "$fix/spm/tokenizer.json" "$tmp/spm2/"
printf 'In the beginning' >"$tmp/one.txt"
with=$(tokenize "$fix/spm" "$tmp/one.txt")
echo '{"add_bos_token": false, "add_eos_token": true, "bos_token": "<s>", "eos_token": {"content": "</s>"}}' >"$tmp/spm2/tokenizer_config.json"
flipped=$(tokenize "$tmp/spm2" "$tmp/one.txt")
plain=$(tokenize "$fix/spm" "$tmp/one.txt" --no-special)
if [ "${with#1 }" = "$plain" ] && [ "$flipped" = "$plain 2" ]; then
    ok "add_bos_token/add_eos_token override the post-processor; --no-special drops both"
else
    bad "BOS/EOS: with='$with' flipped='$flipped' plain='$plain'"
fi

# 5. -o: a failing run leaves an existing output untouched; several files are concatenated.
echo keep >"$tmp/keep.u32"
tokenize "$DEMO" "$tmp/one.txt" "$tmp/absent.txt" -o "$tmp/keep.u32" 2>"$tmp/err"
if [ $? -eq 1 ] && [ "$(cat "$tmp/keep.u32")" = keep ] && grep -qF "absent.txt" "$tmp/err" && [ "$(ls "$tmp" | grep -c 'keep.u32.')" -eq 0 ]; then
    ok "-o: a missing input fails before anything is replaced"
else
    bad "-o atomicity"; cat "$tmp/err"
fi
tokenize "$DEMO" "$tmp/one.txt" "$tmp/one.txt" -o "$tmp/two.u32"
if [ "$(wc -c <"$tmp/two.u32")" -eq 128 ]; then ok "two files, 2 x 16 ids"; else bad "two files: $(wc -c <"$tmp/two.u32") bytes"; fi
# -o never lands on an input (util/iopaths.h): the text file, the tokenizer, the model's files.
cp -r "$DEMO" "$tmp/demo-copy"
cp "$tmp/one.txt" "$tmp/one-copy.txt"
for target in "$tmp/one-copy.txt" "$tmp/demo-copy/tokenizer.json" "$tmp/demo-copy/config.json" "$tmp/demo-copy"; do
    before=$(cksum <"$tmp/one-copy.txt"; find "$tmp/demo-copy" -type f -exec cksum {} + | sort)
    tokenize "$tmp/demo-copy" "$tmp/one-copy.txt" -o "$target" 2>"$tmp/err"
    status=$?
    after=$(cksum <"$tmp/one-copy.txt"; find "$tmp/demo-copy" -type f -exec cksum {} + | sort)
    if [ $status -eq 1 ] && [ "$before" = "$after" ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -qF "$target" "$tmp/err"; then
        ok "-o $(basename "$target"), an input: refused, nothing changed"
    else
        bad "-o $(basename "$target"), an input: status $status"; cat "$tmp/err"
    fi
done

# 6. Broken tokenizers: one line with file and JSON path, exit 1, no output.
for dir in "$SRCDIR"/tests/corrupt-tok/*/; do
    case=$(basename "$dir")
    want=$(cat "$dir/expected")
    rm -f "$tmp/c.u32"
    tokenize "$dir" "$tmp/one.txt" -o "$tmp/c.u32" >"$tmp/out" 2>"$tmp/err"
    st=$?
    if [ $st -ne 1 ] || [ "$(wc -l <"$tmp/err")" -ne 1 ] || ! grep -qF -- "$want" "$tmp/err" || [ -e "$tmp/c.u32" ] || [ -s "$tmp/out" ]; then
        bad "corrupt-tok/$case: exit $st, want one line with: $want"; cat "$tmp/err"
    else
        ok "corrupt-tok/$case: $(cat "$tmp/err")"
    fi
done

# 7. Usage errors.
tokenize "$DEMO" 2>/dev/null
[ $? -eq 2 ] && ok "no FILE: exit 2" || bad "no FILE: wrong exit"
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

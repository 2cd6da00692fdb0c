#!/bin/sh
# --text on eval, calibrate, plan and apply (issue 17, text/corpus.h), on the demo: the text of
# the demo's token files gives the same ids; JSON Lines documents and plain text agree; the
# separator is tokenizer_config.json's bos_token; stats files and plans record the text and
# tokenizer digests and a changed byte in either recalibrates; invalid UTF-8 and bad JSON Lines
# are one message with file and line (or byte offset), exit 1 and nothing written.
set -u
. "$SRCDIR/tests/lib.sh"
scratch corpus
S=$SUBMOE
run() { timeout 600 "$S" "$@"; }
show_failure() { [ -s "$tmp/err" ] && sed 's/^/    | /' "$tmp/err"; }

run tokenize "$DEMO" --decode "$SRCDIR/data/heldout.u32" | head -c 8192 >"$tmp/held.txt"
head -c 32768 "$SRCDIR/data/heldout.u32" >"$tmp/held.u32"
a=$(run eval "$DEMO" --tokens "$tmp/held.u32" -n 128 -q)
b=$(run eval "$DEMO" --text "$tmp/held.txt" -n 128 -q 2>"$tmp/err")
check_expr "eval --text on the held-out text = eval --tokens on its ids ($a, $b)" '[ -n "$a" ] && [ "$a" = "$b" ]'

# Two documents as JSON Lines (and with another field) = the same bytes as one plain file: the
# demo's tokenizer has no BOS or EOS, so documents are joined directly.
head -c 4000 "$tmp/held.txt" >"$tmp/a.txt"
tail -c +4001 "$tmp/held.txt" >"$tmp/b.txt"
# json_string FILE: its bytes as a JSON string (the demo text is printable ASCII, tabs and newlines)
json_string() {
    printf '"'
    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/	/\\t/g' "$1" | awk 'NR > 1 { printf "\\n" } { printf "%s", $0 }'
    [ "$(tail -c 1 "$1" | od -An -tx1 | tr -d ' ')" = 0a ] && printf '\\n'
    printf '"'
}
{
    printf '{"text": %s, "id": 1}\n{"text": ""}\n\n' "$(json_string "$tmp/a.txt")"
    printf '{"text": %s}\n' "$(json_string "$tmp/b.txt")"
} >"$tmp/docs.jsonl"
sed 's/"text"/"body"/' "$tmp/docs.jsonl" >"$tmp/body.jsonl"
c=$(run eval "$DEMO" --text "$tmp/docs.jsonl" -n 128 -q 2>"$tmp/err")
check_expr "JSON Lines documents = the plain text they hold ($c)" '[ "$c" = "$b" ]'
c=$(run eval "$DEMO" --text "$tmp/a.txt" "$tmp/b.txt" -n 128 -q 2>"$tmp/err")
check_expr "--text A B: two files, two documents, joined ($c)" '[ "$c" = "$b" ]'
c=$(run eval "$DEMO" --text "$tmp/body.jsonl" --text-field body -n 128 -q 2>"$tmp/err")
check_expr "--text-field body ($c)" '[ "$c" = "$b" ]'

# With a bos_token in tokenizer_config.json every document follows it (lm-eval's prefix token):
# byte 1 is the demo's token "ā".
mkdir "$tmp/bos"
for f in "$DEMO"/*; do ln -s "$f" "$tmp/bos/"; done
printf '{"bos_token": "\\u0101"}\n' >"$tmp/bos/tokenizer_config.json"
{ printf '\001'; cat "$tmp/a.txt"; printf '\001'; cat "$tmp/b.txt"; } >"$tmp/sep.txt"
c=$(run eval "$DEMO" --text "$tmp/sep.txt" -n 128 -q 2>"$tmp/err")
d=$(run eval "$tmp/bos" --text "$tmp/docs.jsonl" -n 128 -q 2>"$tmp/err")
check_expr "with a BOS token each document is preceded by it ($c, $d)" '[ -n "$c" ] && [ "$c" = "$d" ] && [ "$c" != "$b" ]'

# calibrate: the digests recorded, the cache reused, and invalidated by a byte of either input.
run tokenize "$DEMO" --decode "$SRCDIR/data/calib.u32" | head -c 40000 >"$tmp/calib.txt"
cal() { run calibrate "$1" --text "$tmp/calib.txt" --samples 8 --seq-len 128 --keep 512 -o "$tmp/c.stats" 2>"$tmp/err"; }
cal "$DEMO" >"$tmp/out1"
check_expr "calibrate --text writes a stats file" '[ -s "$tmp/c.stats" ] && grep -q "drawn from the text" "$tmp/out1"'
hdr=$(head -c 8192 "$tmp/c.stats" | tr -c '[:print:]' ' ')
check_expr "the stats file records the text, its digest and the tokenizer's" \
    'echo "$hdr" | grep -q "\"text_digest\":\"fnv1a64:[0-9a-f]\{16\}\"" && echo "$hdr" | grep -q "\"tokenizer_digest\":\"fnv1a64:" &&
     echo "$hdr" | grep -q "\"text\":\"$tmp/calib.txt\"" && echo "$hdr" | grep -q "\"text_separator\":\"none\""'
cal "$DEMO" >"$tmp/out2"
check_expr "unchanged text and tokenizer: the stats file is reused" 'grep -q "is up to date" "$tmp/out2"'
cp "$tmp/calib.txt" "$tmp/calib.orig"
printf 'x' | dd of="$tmp/calib.txt" bs=1 seek=39990 conv=notrunc 2>/dev/null
cal "$DEMO" >"$tmp/out3"
check_expr "one byte of the text changed (outside the windows drawn too): recalibrated" \
    '! grep -q "is up to date" "$tmp/out3" && grep -q "drawn from the text" "$tmp/out3"'
mkdir "$tmp/tok"
for f in "$DEMO"/*; do ln -s "$f" "$tmp/tok/"; done
rm "$tmp/tok/tokenizer.json"
{ cat "$DEMO/tokenizer.json"; echo; } >"$tmp/tok/tokenizer.json"
cal "$DEMO" >"$tmp/out4"
cal "$tmp/tok" >"$tmp/out5"
check_expr "one byte of tokenizer.json changed: recalibrated (same text and model: reused before)" \
    'grep -q "is up to date" "$tmp/out4" && ! grep -q "is up to date" "$tmp/out5" && grep -q "drawn from the text" "$tmp/out5"'
cp "$tmp/calib.orig" "$tmp/calib.txt"

# Bad text: one message naming the file and line or byte offset, exit 1, nothing written.
bad_text() { # NAME EXPECTED-MESSAGE-REGEX FILE...
    name=$1 want=$2
    shift 2
    rm -f "$tmp/bad.stats"
    run calibrate "$DEMO" --text "$@" --samples 1 --seq-len 8 -q -o "$tmp/bad.stats" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    check_expr "$name: exit 1, one message, nothing written" \
        '[ $rc -eq 1 ] && [ $(wc -l <"$tmp/err") -eq 1 ] && grep -Eq -- "$want" "$tmp/err" && [ ! -e "$tmp/bad.stats" ] && [ ! -s "$tmp/out" ]'
}
printf 'good text\nbad \377 byte\n' >"$tmp/bad.txt"
bad_text "invalid UTF-8 in plain text" "bad.txt:2: invalid UTF-8 at byte offset 14" "$tmp/bad.txt"
printf '{"text": "fine"}\n{"text": "bro\300\257ken"}\n' >"$tmp/bad.jsonl"
bad_text "invalid UTF-8 in JSON Lines" "bad.jsonl:2: invalid UTF-8 at byte offset 30" "$tmp/bad.jsonl"
printf '{"text": "fine"}\n\n{"text": "x",}\n' >"$tmp/j1.jsonl"
bad_text "malformed JSON line" "j1.jsonl:3: malformed JSON" "$tmp/j1.jsonl"
printf '{"body": "x"}\n' >"$tmp/j2.jsonl"
bad_text "no text field" 'j2.jsonl:1: no "text" field' "$tmp/j2.jsonl"
printf '{"text": 3}\n' >"$tmp/j3.jsonl"
bad_text "a text field that is not a string" 'j3.jsonl:1: "text" is not a string' "$tmp/j3.jsonl"
printf '["text"]\n' >"$tmp/j4.jsonl"
bad_text "a line that is not an object" 'j4.jsonl:1: expected a JSON object' "$tmp/j4.jsonl"
printf '{"text": ""}\n\n' >"$tmp/j5.jsonl"
bad_text "no document" 'j5.jsonl: no document' "$tmp/j5.jsonl"
: >"$tmp/empty.txt"
bad_text "an empty text file" 'empty.txt: empty' "$tmp/empty.txt"
printf 'short' >"$tmp/short.txt"
bad_text "a text shorter than one window" 'short.txt holds 5 tokens \(0 windows of 8\)' "$tmp/short.txt"
bad_text "a missing text file" 'nothing.txt' "$tmp/nothing.txt"
mkdir "$tmp/notok"
ln -s "$DEMO/config.json" "$DEMO/model.safetensors" "$tmp/notok/"
rm -f "$tmp/bad.stats"
run calibrate "$tmp/notok" --text "$tmp/calib.txt" --samples 1 --seq-len 8 -q -o "$tmp/bad.stats" 2>"$tmp/err"
rc=$?
check_expr "a model without tokenizer.json: --text says so, exit 1" \
    '[ $rc -eq 1 ] && grep -q "needs the model.s tokenizer.*tokenizer.json" "$tmp/err" && [ ! -e "$tmp/bad.stats" ]'
run eval "$DEMO" --text "$tmp/bad.txt" -q >"$tmp/out" 2>"$tmp/err"
rc=$?
check_expr "eval --text on invalid UTF-8: the same message, nothing printed" \
    '[ $rc -eq 1 ] && grep -q "bad.txt:2: invalid UTF-8 at byte offset 14" "$tmp/err" && [ ! -s "$tmp/out" ]'
run eval "$DEMO" --text-field x --tokens "$tmp/held.u32" 2>"$tmp/err" >/dev/null
check_expr "--text-field without --text is a usage error" '[ $? -eq 2 ] && grep -q "needs --text" "$tmp/err"'

# plan --text records the text and digests; apply recalibrates from it, and refuses changed text.
run plan "$DEMO" --ratio 0.25 -m submoe --text "$tmp/calib.txt" --samples 8 --seq-len 128 --keep 512 -q \
    -o "$tmp/plan.yaml" 2>"$tmp/err"
check_expr "plan --text records the files, the seed and both digests" \
    'grep -q "^  text:" "$tmp/plan.yaml" && grep -q "^    - $tmp/calib.txt" "$tmp/plan.yaml" &&
     grep -q "^  text_digest: fnv1a64:" "$tmp/plan.yaml" && grep -q "^  tokenizer_digest: fnv1a64:" "$tmp/plan.yaml" &&
     grep -q "^  seed: 1" "$tmp/plan.yaml"'
run apply "$tmp/plan.yaml" -q -o "$tmp/merged" 2>"$tmp/err"
check_expr "apply recalibrates from the plan's text" '[ -s "$tmp/merged/model.safetensors" ]'
head -n 20 "$SRCDIR/data/demo-task.jsonl" >"$tmp/task.jsonl"
run eval "$tmp/merged" --task "$tmp/task.jsonl" -q >"$tmp/acc" 2>"$tmp/err"
check_expr "eval --task on the model merged from text ($(cat "$tmp/acc"))" 'grep -Eq "^[01]\.[0-9]+ [01]\.[0-9]+$" "$tmp/acc"'
printf 'x' | dd of="$tmp/calib.txt" bs=1 seek=100 conv=notrunc 2>/dev/null
run apply "$tmp/plan.yaml" -q -o "$tmp/merged2" 2>"$tmp/err"
rc=$?
check_expr "apply after the text changed: refused, naming the digests, nothing written" \
    '[ $rc -eq 1 ] && grep -q "calibration text.*changed since the plan was written" "$tmp/err" && [ ! -e "$tmp/merged2" ]'

echo "1..$n"
[ "$fail" -eq 0 ]

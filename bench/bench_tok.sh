#!/bin/sh
# bench_tok.sh BENCH_TOK SRCDIR [PYTHON]: encoding speed of submoe's tokenizer.json encoder next to
# the reference (Hugging Face tokenizers) on the parity text, one document per encode call, for
# the real qwen3 and gpt-oss tokenizers and the trained ones. The reference runs when PYTHON (default
# /tmp/venv-tok/bin/python) can import tokenizers; otherwise its line says skipped.
set -eu
bench=$1 src=$2 py=${3:-/tmp/venv-tok/bin/python}
fix=$src/tests/fixtures/tok
text=$fix/text.txt
tmp=$(mktemp -d "${TMPDIR:-/tmp}/submoe-bench-tok.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
have_ref=no
"$py" -c 'import tokenizers' 2>/dev/null && have_ref=yes
for name in qwen3 gpt-oss neox spm deepseek; do
    dir=$fix/$name
    if [ -f "$dir/tokenizer.json.gz" ]; then
        mkdir -p "$tmp/$name"
        gzip -dc "$dir/tokenizer.json.gz" >"$tmp/$name/tokenizer.json"
        dir=$tmp/$name
    fi
    echo "== $name ($(wc -c <"$text") bytes, single document)"
    "$bench" "$dir/tokenizer.json" "$text" 10
    if [ "$have_ref" = yes ]; then
        "$py" "$src/bench/bench_tok.py" "$dir/tokenizer.json" "$text" 10
    else
        echo "tokenizers skipped ($py cannot import tokenizers)"
    fi
done

#!/bin/sh
# make_corpus.sh OUT — write the King James Bible as plain text, one verse per line.
#
# Source: Debian's bible-kjv package (`apt-get install bible-kjv`); the KJV text is in the
# public domain ("The copyright for the King James Version text of the Bible is expired").
# `bible -f` prints every verse as "Ge1:1 In the beginning ..."; the book/chapter:verse
# label and the space after it are stripped.  The result is pure 7-bit ASCII.
set -eu
out=${1:?usage: make_corpus.sh OUT}
command -v bible >/dev/null 2>&1 || { echo "make_corpus.sh: 'bible' not found (apt-get install bible-kjv)" >&2; exit 1; }
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
bible -f 'gen1:1-rev22:21' | LC_ALL=C sed -E 's/^[1-3]?[A-Za-z]+[0-9]+:[0-9]+ //' > "$tmp"
lines=$(wc -l < "$tmp")
if [ "$lines" -ne 31102 ]; then
    echo "make_corpus.sh: expected 31102 verses, got $lines" >&2; exit 1
fi
if LC_ALL=C grep -qE '^[1-3]?[A-Z][A-Za-z]*[0-9]+:[0-9]+ ' "$tmp"; then
    echo "make_corpus.sh: verse labels left in the text" >&2; exit 1
fi
mv "$tmp" "$out"
trap - EXIT

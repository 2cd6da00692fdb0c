#!/bin/sh
# long_functions.sh [LIMIT] [FILE|DIR...] — list C function bodies longer
# than LIMIT lines (default 150), longest first, as "LINES file:line name".
# A body is the span from a line that is exactly "{" at column 0 to the next
# line that starts with "}" at column 0 (the project's K&R-for-functions
# style); the name is the last identifier before "(" in the header lines
# above it, so multi-line signatures are handled. Exit 1 if any is found.
limit=150
case "$1" in [0-9]*) limit=$1; shift ;; esac
[ $# -eq 0 ] && set -- src
find "$@" -name '*.c' -type f | sort | xargs awk -v limit="$limit" '
FNR == 1 { header = ""; open = 0 }
open == 0 && /^\{[ \t]*$/ {
    name = header
    sub(/\(.*/, "", name)
    n = split(name, words, /[^A-Za-z0-9_]+/)
    name = ""
    for (i = n; i >= 1; i--) if (words[i] != "") { name = words[i]; break }
    open = 1; start = FNR; next
}
open == 1 && /^\}/ {
    len = FNR - start - 1
    if (len > limit) printf "%d %s:%d %s\n", len, FILENAME, start, name
    open = 0; header = ""; next
}
open == 0 {
    # Collect the header: restart it at any line that cannot continue one.
    if ($0 ~ /^[ \t]*$/ || $0 ~ /;[ \t]*$/ || $0 ~ /^#/ || $0 ~ /^\}/ || $0 ~ /\*\/[ \t]*$/) header = ""
    else header = header " " $0
}
' | sort -rn | tee /tmp/long_functions.$$ 
found=$(wc -l < /tmp/long_functions.$$); rm -f /tmp/long_functions.$$
[ "$found" -eq 0 ]

#!/bin/sh
# Deeply nested plans (issue 14 §2): libyaml's scanner takes quadratic time in the nesting depth,
# so a plan of 100 000 '[' ran for over a minute (apply, and the workbench's --plan) before any
# check. Nesting deeper than 64 is refused while scanning, at once, with file:line:col; 64 deep
# is not refused for its depth.
set -u
. "$SRCDIR/tests/lib.sh"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/submoe-depth.XXXXXX")
trap '[ -e "$tmp/t.sock" ] && tmux -S "$tmp/t.sock" kill-server >/dev/null 2>&1; rm -rf "$tmp"' EXIT
LIMIT=${DEPTH_LIMIT:-2}
shown=/dev/null # what a failure shows
show_failure() { sed 's/^/    | /' "$shown"; }

# repeat STRING COUNT
repeat() { awk -v s="$1" -v n="$2" 'BEGIN { while (n-- > 0) printf "%s", s }'; }

# deep NAME FILE WHERE: apply FILE must fail (status 1) within LIMIT seconds with
# "FILE:WHERE: lists and mappings nested more than 64 deep"
deep() {
    name=$1 file=$2 where=$3
    t0=$(now)
    timeout 60 "$SUBMOE" apply "$file" -q -o "$tmp/out" >"$tmp/err" 2>&1
    got=$?
    took=$(seconds_since "$t0")
    want="$file:$where: lists and mappings nested more than 64 deep"
    shown=$tmp/err
    if [ "$got" -ne 1 ]; then
        bad "$name: exit $got, want 1 (after $took s)"
    elif ! grep -qF -- "$want" "$tmp/err"; then
        bad "$name: no '$want':"
    elif longer_than "$took" "$LIMIT"; then
        shown=/dev/null; bad "$name: took $took s (limit $LIMIT s)"
    else
        ok "$name: refused in $took s"
    fi
}

repeat '[' 100000 >"$tmp/flow-seq.yaml"
deep "100 000 '['" "$tmp/flow-seq.yaml" 1:65
{ printf 'submoe_plan: 1\nmodel: '; repeat '{a: ' 100000; } >"$tmp/flow-map.yaml"
deep "100 000 '{a: ' after a valid start" "$tmp/flow-map.yaml" 2:260
awk 'BEGIN { s = ""; for (i = 0; i < 3000; i++) { print s "k" i ":"; s = s " " } }' >"$tmp/block-map.yaml"
deep "3000 block mappings, each indented one more" "$tmp/block-map.yaml" 65:65
awk 'BEGIN { s = ""; for (i = 0; i < 3000; i++) { print s "- "; s = s "  " } }' >"$tmp/block-seq.yaml"
deep "3000 block lists, each indented one more" "$tmp/block-seq.yaml" 65:129

# 64 deep: not refused for its depth (it is not a plan either)
{ repeat '[' 64; repeat ']' 64; echo; } >"$tmp/d64.yaml"
timeout 60 "$SUBMOE" apply "$tmp/d64.yaml" -q -o "$tmp/out" >"$tmp/err" 2>&1
got=$?
shown=$tmp/err
if [ "$got" -eq 1 ] && ! grep -q 'nested more than' "$tmp/err"; then
    ok "64 deep is not refused for its depth: $(head -n 1 "$tmp/err")"
else
    bad "64 deep: exit $got"
fi

# the workbench's --plan reads the same way: refused before the screen opens
if command -v tmux >/dev/null 2>&1; then
    tmux -S "$tmp/t.sock" new-session -d -s wb -x 100 -y 30 \
        "TERM=xterm-256color LANG=C.UTF-8 timeout --foreground 60 '$SUBMOE' tui '$DEMO' --plan '$tmp/flow-seq.yaml' 2>'$tmp/tui.err'; echo \$? >'$tmp/tui.status'; sleep 60"
    i=0
    while [ $i -lt $((LIMIT * 20)) ] && [ ! -s "$tmp/tui.status" ]; do sleep 0.05; i=$((i + 1)); done
    shown=$tmp/tui.err
    if [ "$(cat "$tmp/tui.status" 2>/dev/null)" = 1 ] && grep -qF "flow-seq.yaml:1:65: lists and mappings nested" "$tmp/tui.err"; then
        ok "tui --plan: $(cat "$tmp/tui.err")"
    else
        bad "tui --plan: status '$(cat "$tmp/tui.status" 2>/dev/null)' within $LIMIT s"
    fi
else
    echo "# tmux not installed: the workbench case skipped"
fi

echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

#!/bin/sh
# Dependencies point one way (issue 15): util below model below engine below forward, the pipeline
# above them, the workbench and the commands on top. Checks the sources' #include lines; that no
# module of src/ (x.c and x.h are one module x) and no folder is part of an include cycle; and that
# the workbench has no cycle in which of its object files calls which (nm on the built library).
set -u
. "$SRCDIR/tests/lib.sh"
src=$SRCDIR/src
lib=$BUILDDIR/src/libsubmoe.a
scratch layering
show_failure() { sed 's/^/    | /' "$tmp/found"; }

# none PATTERN FILES...: no #include line of FILES matches PATTERN (the matches go to $tmp/found)
none() {
    pattern=$1
    shift
    ! grep -n "^#include \"$pattern" "$@" >"$tmp/found"
}
only_util() { ! grep -n '^#include "[a-z]*/' "$src"/util/*.[ch] | grep -v '#include "util/' >"$tmp/found"; }
check "util includes only util/" only_util
check "forward/ includes nothing of engine/ (the MoE block is src/moe, the monitor util/)" none 'engine/' \
    "$src"/forward/*.[ch]
check "the engine does not include forward/" none 'forward/' "$src"/engine/*.[ch]
check "the MoE block (src/moe) includes neither forward/ nor engine/" none '\(forward\|engine\)/' "$src"/moe/*.[ch]
check "below the pipeline nothing includes pipeline/, tui/ or cmd/" none '\(pipeline\|tui\|cmd\)/' \
    "$src"/util/*.[ch] "$src"/model/*.[ch] "$src"/moe/*.[ch] "$src"/engine/*.[ch] "$src"/forward/*.[ch] "$src"/plan/*.[ch] \
    "$src"/text/*.[ch]
check "figures/ (drawing from plain data) includes only util/ of src/" none '\(model\|moe\|engine\|forward\|plan\|pipeline\|text\|eval\|tui\|cmd\)/' \
    "$src"/figures/*.[ch]
check "the workbench does not include cmd/" none 'cmd/' "$src"/tui/*.[ch]
check "tui/ and cmd/ are included only from src/tui, src/cmd and src/main.c" none '\(tui\|cmd\)/' \
    $(ls "$src"/*/*.[ch] | grep -v "^$src/\(tui\|cmd\)/")

# acyclic EDGES-FILE: tsort fails on a loop and names its members.
acyclic() { tsort "$1" >/dev/null 2>"$tmp/found" && [ ! -s "$tmp/found" ]; }

# The include graph of all of src/, module to module (folder/x.c and folder/x.h are one module
# folder/x; src/main.c is the module main): no cycle within a folder or across folders.
for f in "$src"/*.c "$src"/*/*.[ch]; do
    from=$(echo "${f#"$src"/}" | sed 's/\.[ch]$//')
    sed -n 's|^#include "\([a-z_0-9]*/[a-z_0-9]*\)\.h".*|\1|p' "$f" | while read -r to; do
        [ "$to" = "$from" ] || echo "$from $to"
    done
done | sort -u >"$tmp/modules"
check "src/ has #include lines between modules" test -s "$tmp/modules"
check "no include cycle between the modules of src/" acyclic "$tmp/modules"
# The same graph between folders (main.c counts as the folder main).
awk '{ a = $1; b = $2; sub(/\/.*/, "", a); sub(/\/.*/, "", b); if (a != b) print a, b }' "$tmp/modules" |
    sort -u >"$tmp/folders"
check "no include cycle between the folders of src/" acyclic "$tmp/folders"

# The workbench's include graph, module to module.
for f in "$src"/tui/*.[ch]; do
    from=$(basename "$f" | sed 's/\.[ch]$//')
    sed -n 's|^#include "tui/\([a-z_]*\)\.h".*|\1|p' "$f" | while read -r to; do
        [ "$to" = "$from" ] || echo "$from $to"
    done
done >"$tmp/includes"
check "no include cycle between the workbench's modules" acyclic "$tmp/includes"

# The workbench's call graph: object A -> object B when A uses a symbol B defines.
nm -A "$lib" 2>/dev/null | sed -n 's|^.*:\([^:]*tui_[a-z_]*\)\.o: *[0-9a-f]* *\([A-Za-z]\) \(.*\)$|\1 \2 \3|p' |
    sed 's|^[^ ]*-||' >"$tmp/symbols"
awk '$2 != "U" && $2 ~ /[A-Z]/ { def[$3] = $1 } $2 == "U" { use[NR] = $1 " " $3 }
     END { for (i in use) { split(use[i], u, " "); if ((u[2] in def) && def[u[2]] != u[1]) print u[1], def[u[2]] } }' \
    "$tmp/symbols" | sort -u >"$tmp/calls"
check "the library holds the workbench's objects" test -s "$tmp/symbols"
check "no call cycle between the workbench's object files" acyclic "$tmp/calls"
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

#!/bin/sh
# Outputs that appear meanwhile (issue 14 §4): an output directory someone else creates while
# apply runs is left alone (apply fails, says so); of two simultaneous applies to one output one
# wins and the other fails; --force exchanges the new output with the old one in one rename
# (renameat2 RENAME_EXCHANGE); where the file system lacks renameat2's flags
# (SUBMOE_FAULT=no-renameat2) the fallbacks keep the same rules; temporaries a killed run left
# beside an output are reported on the next run to it, with how to remove them.
# The racing process is stopped (SIGSTOP) once its temporary exists, so the races are exact.
set -u
. "$SRCDIR/tests/lib.sh"
scratch race
S=$SUBMOE
T="timeout 300"
cd "$tmp" || exit 1
show_failure() { for f in err err2; do [ -f $f ] && sed 's/^/    | /' $f; done; }
$T "$S" synth --arch mixtral --layers 4 --hidden 256 --intermediate 1024 --experts 8 --heads 8 --kv-heads 2 -q --out big
$T "$S" calibrate big --tokens "$SRCDIR/data/calib.u32" --samples 4 --seq-len 64 -o big.stats -q
printf 'submoe_plan: 1\nmodel: {path: big}\ncalibration: {stats: big.stats}\ndefaults: {experts: 6, method: submoe}\n' >big.yaml
mkdir o

# start_stopped OUT ENV=VALUE [ARGS...]: apply big.yaml -o OUT ARGS in the background, stopped
# once its temporary OUT.tmp-PID exists; sets $pid (a watchdog kills it after 300 s). Fails if
# the temporary never showed.
start_stopped() {
    out=$1 envv=$2
    shift 2
    env "$envv" "$S" apply big.yaml -o "$out" -q "$@" 2>err &
    pid=$!
    (sleep 300 && kill -KILL $pid 2>/dev/null) >/dev/null 2>&1 &
    watchdog=$!
    i=0
    while [ ! -d "$out.tmp-$pid" ] && [ $i -lt 3000 ] && kill -0 $pid 2>/dev/null; do sleep 0.01; i=$((i + 1)); done
    kill -STOP $pid 2>/dev/null
    [ -d "$out.tmp-$pid" ]
}
# finish: continue $pid and wait for it; sets $st
finish() {
    kill -CONT $pid 2>/dev/null
    wait $pid
    st=$?
    kill $watchdog 2>/dev/null
}

# 1. An output directory created by someone else meanwhile stays, with its file.
if start_stopped o/x X=1; then
    mkdir o/x && echo mine >o/x/file
    finish
    if [ $st -eq 1 ] && grep -q "o/x: appeared while this command ran" err && [ "$(cat o/x/file)" = mine ] &&
        [ "$(ls o/x)" = file ] && ! ls -d o/x.tmp-* >/dev/null 2>&1; then
        ok "an output that appears while apply runs is left as it is (exit 1, one message, no temporary)"
    else echo "    exit $st"; bad "an output that appeared meanwhile was replaced or apply exited $st"; fi
else finish; bad "apply's temporary never showed"; fi

# 2. Two simultaneous applies to one output: the second to finish fails.
if start_stopped o/y X=1; then
    $T "$S" apply big.yaml -o o/y -q 2>err2
    st2=$?
    finish
    if [ $st2 -eq 0 ] && [ $st -eq 1 ] && grep -q "o/y: appeared while this command ran" err &&
        $T "$S" inspect o/y >/dev/null 2>&1 && ! ls -d o/y.tmp-* >/dev/null 2>&1; then
        ok "two simultaneous applies to one output: one writes it, the other fails (exit $st2 and $st)"
    else bad "two simultaneous applies: exit $st2 and $st"; fi
else finish; bad "apply's temporary never showed"; fi

# 3. --force: one rename, the old output replaced, nothing left beside it.
old_inode=$(ls -di o/y | cut -d' ' -f1)
SUBMOE_FAULT=count $T "$S" apply big.yaml -o o/y --force -q 2>err
if grep -q "submoe-fault: [0-9]* writes, 1 renames" err && [ "$(ls -di o/y | cut -d' ' -f1)" != "$old_inode" ] &&
    [ "$(ls o)" = "$(printf 'x\ny')" ]; then ok "--force: the new output exchanged with the old in one rename, nothing left"
else bad "--force: $(cat err)"; fi
# ... and with --force an output that appears meanwhile is replaced, as asked
if start_stopped o/z X=1 --force; then
    mkdir o/z && echo theirs >o/z/file
    finish
    if [ $st -eq 0 ] && [ ! -e o/z/file ] && [ -f o/z/config.json ] && [ "$(ls o | grep -c z)" -eq 1 ]; then
        ok "--force replaces an output that appeared meanwhile"; else bad "--force over an output that appeared: exit $st"; fi
else finish; bad "apply's temporary never showed"; fi

# 4. Without renameat2's flags: the fallbacks (mkdir + rename over the empty directory; the old
# output aside and the new one in for --force) keep the rules.
if start_stopped o/w SUBMOE_FAULT=no-renameat2; then
    mkdir o/w && echo mine >o/w/file
    finish
    if [ $st -eq 1 ] && grep -q "o/w: appeared while this command ran" err && [ "$(cat o/w/file)" = mine ]; then
        ok "no renameat2: an output that appeared meanwhile is still left as it is"
    else bad "no renameat2: exit $st"; fi
else finish; bad "apply's temporary never showed"; fi
rm -rf o/w
SUBMOE_FAULT=no-renameat2 $T "$S" apply big.yaml -o o/w -q 2>err && SUBMOE_FAULT=no-renameat2 $T "$S" apply big.yaml -o o/w --force -q 2>>err
st=$?
if [ $st -eq 0 ] && [ ! -s err ] && $T "$S" inspect o/w >/dev/null 2>&1 && ! ls -d o/w.* >/dev/null 2>&1; then
    ok "no renameat2: a new output and --force over an old one are written, nothing left"
else bad "no renameat2: exit $st"; fi

# 5. A run killed between writing and publishing leaves NAME.tmp-PID; the next run says so.
if start_stopped o/y X=1 --force; then
    kill -KILL $pid
    wait $pid 2>/dev/null
    kill $watchdog 2>/dev/null
    dead=$pid
    sh -c 'exit 0' & gone=$!
    wait $gone
    echo x >o/y.old-$gone
    $T "$S" apply big.yaml -o o/y --force -q 2>err
    st=$?
    if [ $st -eq 0 ] && [ "$(wc -l <err)" -eq 2 ] &&
        grep -q "warning: .*o/y.tmp-$dead: left behind by an earlier run to o/y that did not finish.*rm -rf -- '.*o/y.tmp-$dead'" err &&
        grep -q "warning: .*o/y.old-$gone: left behind" err && [ -d "o/y.tmp-$dead" ]; then
        ok "stale o/y.tmp-PID and o/y.old-PID of dead processes are reported with how to remove them (and kept)"
    else echo "    exit $st"; bad "stale siblings not reported"; fi
else finish; bad "apply's temporary never showed"; fi
rm -rf o/y.tmp-* o/y.old-*
# ... of a file output too (plan -o P writes P.tmp-PID)
sh -c 'exit 0' & gone=$!
wait $gone
echo partial >p.yaml.tmp-$gone
$T "$S" plan big --experts 6 -c big.stats -o p.yaml -q 2>err
st=$?
if [ $st -eq 0 ] && grep -q "p.yaml.tmp-$gone: left behind by an earlier run to p.yaml" err; then
    ok "a stale temporary of a file output is reported"; else bad "stale file temporary: exit $st"; fi
$T "$S" apply big.yaml -o o/v -q 2>err
if [ ! -s err ]; then ok "no stale temporaries: nothing said"; else bad "a clean run warned"; fi
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]

#!/bin/sh
# Resource limits (issue 14 §3): every command (inspect, the overview `submoe MODEL`, synth, eval,
# calibrate, plan, apply, diff, tui) under an address-space limit (ulimit -v: 100000 KiB, too small
# for BLAS; 60000 KiB, where OpenBLAS could not even start its threads; 300000 KiB, enough for
# BLAS but not for calibrate's statistics; 2000000 KiB, room for several BLAS threads) and under a
# file-size limit (ulimit -f). Each time: success where the command fits, else exit 1 with one
# clear message; never a hang (every run is time-bounded), never 130/143 (a claimed interrupt) or
# 153 (SIGXFSZ); no temporary (NAME.tmp-*) or partial output left behind.
# OpenBLAS's thread count is left to the program (the harness sets OPENBLAS_NUM_THREADS=1, which
# hid the hang). Sanitizer builds reserve terabytes of address space, so there the ulimit -v part
# is skipped (said below); the ulimit -f part runs everywhere.
set -u
. "$SRCDIR/tests/lib.sh"
scratch limits
cd "$tmp" || exit 1
S=$SUBMOE
TMPDIR=$tmp # plan's temporary statistics file goes here, where leftovers are seen
export TMPDIR
unset OPENBLAS_NUM_THREADS GOTO_NUM_THREADS OMP_NUM_THREADS
calib="$SRCDIR/data/calib.u32"
bound=${SUBMOE_LIMITS_TIMEOUT:-120} # seconds each run may take (a hang is killed 5 s later)
"$S" synth --arch mixtral --out m -q
"$S" calibrate m --tokens "$calib" --samples 8 --seq-len 64 -o m.stats -q
"$S" plan m -c m.stats --experts 6 -o m.yaml -q
# a model whose overview is longer than a block of 1024 bytes (ulimit -f counts 512 or 1024)
"$S" synth --arch mixtral --layers 40 --hidden 16 --intermediate 32 --experts 4 --heads 2 --kv-heads 1 --vocab 256 -q --out deep
before=$(ls)

show_failure() { sed 's/^/    | /' err; }

# limited KIND LIMIT EXPECT NAME OUT -- COMMAND...: run COMMAND under `ulimit -KIND LIMIT` with
# stdin from /dev/null and stdout to a file. EXPECT: ok (must succeed), fail:REGEX (exit 1, one
# line on stderr matching REGEX, no output OUT and nothing on stdout) or either:REGEX. Always:
# finished within the time bound, and no OUT.tmp-* nor submoe-calib-* left. OUT "stdout": the
# standard output is what runs into the limit (what fitted stays there).
limited() {
    kind=$1 limit=$2 expect=$3 name=$4 out=$5
    shift 6
    rm -rf out out.* stdout
    (ulimit -"$kind" "$limit" && exec timeout -k 5 "$bound" "$@" </dev/null >stdout 2>err)
    st=$?
    what="ulimit -$kind $limit: $name"
    left=$(ls -d "$out".tmp-* submoe-calib-* 2>/dev/null | head -1)
    regex=${expect#*:}
    if [ $st -eq 124 ] || [ $st -eq 137 ]; then
        bad "$what: still running after $bound s (a hang)"
    elif [ $st -eq 130 ] || [ $st -eq 143 ] || [ $st -eq 153 ] || [ $st -gt 128 ]; then
        bad "$what: exit $st (killed by a signal)"
    elif [ -n "$left" ]; then
        bad "$what: left $left behind (exit $st)"
    elif [ $st -eq 0 ] && [ "$expect" != "${expect#fail}" ]; then
        bad "$what: succeeded, expected a failure matching '$regex'"
    elif [ $st -eq 0 ]; then
        ok "$what: succeeds"
    elif [ "$expect" = ok ]; then
        bad "$what: exit $st, expected success"
    elif [ $st -ne 1 ] || [ "$(wc -l <err)" -ne 1 ] || ! grep -Eq "$regex" err; then
        bad "$what: exit $st, expected exit 1 and one line matching '$regex'"
    elif [ "$out" != - ] && [ "$out" != stdout ] && ls -d "$out" >/dev/null 2>&1; then
        bad "$what: failed but left a partial $out"
    elif [ "$out" != stdout ] && [ -s stdout ]; then
        bad "$what: failed but printed a partial result"
    else
        ok "$what: exit 1, '$(cat err)'"
    fi
}

# all KIND LIMIT PLAIN BLAS: every command under one limit; PLAIN is what is expected of the
# commands that need no BLAS (inspect, overview, synth, diff), BLAS of the others.
all() {
    kind=$1 limit=$2 plain=$3 blas=$4
    limited "$kind" "$limit" "$plain" inspect - -- "$S" inspect m
    limited "$kind" "$limit" "$plain" overview - -- "$S" m
    limited "$kind" "$limit" "$plain" synth out -- "$S" synth --arch mixtral --out out -q
    limited "$kind" "$limit" "$plain" diff - -- "$S" diff m m
    limited "$kind" "$limit" "$blas" eval - -- "$S" eval m --tokens "$calib" --seq-len 64 --max-tokens 1024
    limited "$kind" "$limit" "$blas" calibrate out.stats -- "$S" calibrate m --tokens "$calib" --samples 8 --seq-len 64 -o out.stats -q
    limited "$kind" "$limit" "$blas" "plan (statistics given)" out.yaml -- "$S" plan m -c m.stats --experts 6 -o out.yaml -q
    limited "$kind" "$limit" "$blas" "plan (calibrating)" out.yaml -- "$S" plan m --tokens "$calib" --samples 8 --seq-len 64 --experts 6 -o out.yaml -q
    limited "$kind" "$limit" "$blas" apply out -- "$S" apply m.yaml -o out -q
}

too_small='the address-space limit \(ulimit -v\) of [0-9]+ KiB is too small: at least [0-9]+ MiB is needed'
oom='out of memory \(([0-9]+ bytes; )?the address-space limit, ulimit -v, is [0-9]+ KiB\)'
if grep -q __asan_init "$S" 2>/dev/null; then
    echo "# sanitizer build: the ulimit -v cases are skipped (ASan reserves more address space than any limit)"
else
    # 100000 KiB: no room for OpenBLAS's 128 MiB buffer (it used to spin forever at exit)
    all v 100000 ok "fail:$too_small"
    limited v 100000 "fail:$too_small" "tui (before it looks for a terminal)" - -- "$S" tui m
    # thread counts asked for in the environment that do not fit are lowered
    limited v 100000 ok "inspect, OPENBLAS_NUM_THREADS=4" - -- env OPENBLAS_NUM_THREADS=4 "$S" inspect m
    limited v 100000 ok "diff, OMP_NUM_THREADS=4" - -- env OMP_NUM_THREADS=4 "$S" diff m m
    # 60000 KiB: OpenBLAS could not start its thread and raised SIGINT (exit 130) before main
    # (below about 52000 KiB the dynamic loader cannot map the libraries: exit 127 before main)
    all v 60000 "either:$too_small|$oom" "fail:$too_small"
    # 300000 KiB: BLAS fits; calibrate's statistics do not, and say so
    all v 300000 ok "either:$oom"
    # room for several BLAS threads: they start, each with its buffer
    limited v 2000000 ok "eval, several BLAS threads" - -- "$S" eval m --tokens "$calib" --seq-len 64 --max-tokens 1024
    limited v 2000000 ok "apply, several BLAS threads" out -- "$S" apply m.yaml -o out -q
fi

# ulimit -f: a write past the limit is a write error (EFBIG), not death by SIGXFSZ. The models and
# statistics here are about 1.8 MB; 1000 blocks is at most 1 MB.
efbig='write failed: File too large'
limited f 1000 ok inspect - -- "$S" inspect m
limited f 1000 ok overview - -- "$S" m
limited f 1000 "fail:out(\.tmp-[0-9]+)?/model.safetensors: $efbig" synth out -- "$S" synth --arch mixtral --out out -q
limited f 1000 ok diff - -- "$S" diff m m
limited f 1000 ok eval - -- "$S" eval m --tokens "$calib" --seq-len 64 --max-tokens 1024
limited f 1000 "fail:out.stats.tmp-[0-9]+: $efbig" calibrate out.stats -- "$S" calibrate m --tokens "$calib" --samples 8 --seq-len 64 -o out.stats -q
limited f 1000 "fail:submoe-calib-[0-9]+.tmp-[0-9]+: $efbig" "plan (its temporary statistics)" out.yaml -- "$S" plan m --tokens "$calib" --samples 8 --seq-len 64 --experts 6 -o out.yaml -q
limited f 1000 "fail:out.stats.tmp-[0-9]+: $efbig" "plan -c (its statistics)" out.yaml -- "$S" plan m --tokens "$calib" --samples 8 --seq-len 64 --experts 6 -c out.stats -o out.yaml -q
limited f 1000 "fail:out(\.tmp-[0-9]+)?/model.safetensors: $efbig" apply out -- "$S" apply m.yaml -o out -q
limited f 1000 "fail:out(\.tmp-[0-9]+)?/model.safetensors: $efbig" "apply --format hf" out -- "$S" apply m.yaml -o out --format hf -q
# the plan file itself (about 1.1 KB; 1 block is 512 or 1024 bytes)
limited f 1 "fail:out.yaml(\.tmp-[0-9]+)?: $efbig" "plan (the plan file)" out.yaml -- "$S" plan m -c m.stats --experts 6 -o out.yaml -q
# the standard output itself, to a file past the limit
limited f 1 "fail:cannot write the output to standard output: File too large" "inspect > file" stdout -- "$S" inspect deep
rm -rf out out.* stdout err
n=$((n + 1))
if [ "$(ls)" = "$before" ]; then echo "ok $n - nothing else left in the working directory"; else
    echo "not ok $n - left behind: $(ls)"; fail=$((fail + 1)); fi
exit $((fail > 0))

#!/bin/sh
# make bench-real (issue 16): bf16 synths with the published shapes of real MoE models, timed
# through the commands a user runs and the workbench (driven through tmux, as tests/test_tui.sh
# drives it), every figure printed next to its bar from the issue with PASS or FAIL.
#
#   bench/bench_real.sh SUBMOE BENCH_GEMM          (make bench-real)
#
# Shapes (config.json values of the published checkpoints; a synth writes NAME's layers only):
#   olmoe    OLMoE-1B-7B, all 16 layers          qwen3    Qwen3-30B-A3B, 4 of 48 layers
#   mixtral  Mixtral-8x7B, 2 of 32 layers        deepseek DeepSeek-MoE-16B, 4 of 28 layers
#   qwen15   Qwen1.5-MoE-A2.7B, 4 of 24 layers   olmoe2   OLMoE-1B-7B, 2 layers (PyTorch comparison)
# One at a time: synth, calibrate (8192 tokens of data/calib.u32), plan --ratio 0.25 from the
# cached stats file (the default method, auto; then --method submoe), apply of the submoe plan,
# eval of the synth (data/heldout.u32), the workbench on the cached stats file (OLMoE shapes):
# stats file open, first heatmap, every layer previewed. Peak RSS from /usr/bin/time -v. The
# shape's files are deleted before the next shape. A shape that does not fit on the disk is
# skipped with a message.
#
# The roof: the matmul rate measured at the start of the run by BENCH_GEMM (the fastest of oneDNN
# bf16 where the CPU runs it natively, oneDNN fp32 and OpenBLAS sgemm) divided by 2 x the parameters a token
# multiplies (submoe inspect's active_per_token less the embedding table, a lookup, when the
# output head is not tied to it).
#
# Environment:
#   BENCH_REAL_DIR=DIR        scratch directory (/tmp/submoe-bench-real); emptied shape by shape
#   BENCH_REAL_ONLY=a,b       only these shapes (default: all six, olmoe2 first)
#   BENCH_REAL_QUICK=1        the same as BENCH_REAL_ONLY=olmoe2
#   BENCH_REAL_STEPS=a,b      only these steps of synth, calibrate, plan, plan-submoe, apply, eval,
#                             torch, workbench (synth and calibrate always run: every other
#                             step needs their model and stats file)
#   BENCH_REAL_TIMEOUT=S      a step without a bar is stopped after S seconds (1800)
#   BENCH_REAL_CAP=F          a step with a time bar is stopped after F x its bar (2)
#   BENCH_REAL_EVAL_TOKENS=N  tokens for eval and the PyTorch forward (4096)
#   BENCH_REAL_CALIB_SAMPLES=N  calibration windows of 256 tokens (32, calibrate's default)
#   PYTHON=...                Python with torch for bench/torch_eager.py (/usr/bin/python3)
# Exit status 1 when a bar fails or a step errs or is stopped, else 0.
set -u
if [ $# -lt 2 ]; then
    echo "usage: bench_real.sh SUBMOE BENCH_GEMM" >&2
    exit 2
fi
abspath() { case $1 in /*) echo "$1" ;; *) echo "$(pwd)/$1" ;; esac; }
submoe=$(abspath "$1")
gemm=$(abspath "$2")
here=$(cd "$(dirname "$0")" && pwd)
calib_tokens=$here/../data/calib.u32
heldout=$here/../data/heldout.u32
scratch=${BENCH_REAL_DIR:-/tmp/submoe-bench-real}
only=${BENCH_REAL_ONLY:-}
[ "${BENCH_REAL_QUICK:-0}" = 1 ] && [ -z "$only" ] && only=olmoe2
steps=${BENCH_REAL_STEPS:-synth,calibrate,plan,plan-submoe,apply,eval,torch,workbench}
timeout_s=${BENCH_REAL_TIMEOUT:-1800}
cap=${BENCH_REAL_CAP:-2}
eval_tokens=${BENCH_REAL_EVAL_TOKENS:-4096}
python=${PYTHON:-/usr/bin/python3}
ratio=0.25
calib_samples=${BENCH_REAL_CALIB_SAMPLES:-32} calib_seq=256

if [ ! -x /usr/bin/time ] || ! /usr/bin/time -v true >/dev/null 2>&1; then
    echo "bench_real: /usr/bin/time -v is needed for peak RSS: install the Debian package 'time'" >&2
    exit 1
fi
command -v timeout >/dev/null 2>&1 || { echo "bench_real: needs timeout (coreutils)" >&2; exit 1; }
mkdir -p "$scratch" || exit 1
scratch=$(cd "$scratch" && pwd)
results=$scratch/bench-real.txt
: >"$results"
sock=$scratch/tmux.sock
cleanup() {
    tmux -S "$sock" kill-server >/dev/null 2>&1
    rm -f "$sock"
    [ -n "${shape_dir:-}" ] && rm -rf "$shape_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
failed=0

want_step() { case ",$steps," in *",$1,"*) return 0 ;; esac; return 1; }
want_shape() { [ -z "$only" ] && return 0; case ",$only," in *",$1,"*) return 0 ;; esac; return 1; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%s\", $1 }"; }
say() { echo "$*" | tee -a "$results"; }
# row SHAPE WHAT FIGURE BAR VERDICT: one aligned result line
row() {
    line=$(printf '%-9s %-46s %-20s %-12s %s' "$1" "$2" "$3" "$4" "$5")
    say "$line"
    [ "$5" = FAIL ] && failed=1
    return 0
}
verdict() { if awk "BEGIN { exit !($1) }"; then echo PASS; else echo FAIL; fi; }
mb() { calc "sprintf(\"%.0f MB\", $1 / 1024)"; }

# run_step LOG SECONDS CMD...: run CMD under /usr/bin/time -v with a time limit. Sets wall (s),
# rss_kb and status (ok, timeout or error; LOG.err has the command's stderr).
run_step() {
    log=$1 lim=$2
    shift 2
    t0=$(now)
    timeout -k 15 "$lim" /usr/bin/time -v -o "$log.time" "$@" </dev/null >"$log.out" 2>"$log.err"
    rc=$?
    wall=$(calc "$(now) - $t0")
    rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): *//p' "$log.time" 2>/dev/null)
    rss_kb=${rss_kb:-0}
    if [ $rc = 124 ] || { [ $rc = 137 ] && awk "BEGIN { exit !($wall >= $lim) }"; }; then
        status=timeout
    elif [ $rc = 137 ]; then # SIGKILL before the limit: the kernel's OOM killer, as a rule
        status=error
        echo "    | killed by SIGKILL after $wall s (out of memory? see dmesg)" | tee -a "$results"
    elif [ $rc != 0 ]; then
        status=error
        sed 's/^/    | /' "$log.err" | tail -n 5 | tee -a "$results"
    else
        status=ok
    fi
}
# time_figure: the wall time, or "> LIMIT s (stopped)" / "error"
time_figure() {
    case $status in
    ok) calc "sprintf(\"%.1f s\", $wall)" ;;
    timeout) echo "> $1 s (stopped)" ;;
    *) echo "error" ;;
    esac
}
# A timed step's time against a bar of BAR seconds; an unbarred one is informational.
time_row() { # SHAPE WHAT LIMIT [BAR]
    fig=$(time_figure "$3")
    if [ $# -ge 4 ]; then
        if [ $status = ok ]; then v=$(verdict "$wall <= $4"); else v=FAIL; fi
        row "$1" "$2" "$fig" "<= $4 s" "$v"
    else
        [ $status = ok ] || failed=1 # a step that errs or is stopped leaves its bars unmeasured
        row "$1" "$2" "$fig" "" ""
    fi
}
rss_row() { # SHAPE WHAT BOUND_KB
    [ "$rss_kb" -gt 0 ] || return 0
    if [ $status = ok ]; then v=$(verdict "$rss_kb <= $3"); else v="(step stopped)"; fi
    row "$1" "$2" "$(mb "$rss_kb")" "<= $(mb "$3")" "$v"
}

# ---- the roof --------------------------------------------------------------------------------
say "make bench-real: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "submoe: $submoe; scratch: $scratch"
gemm_out=$("$gemm") || { echo "bench_real: $gemm failed" >&2; exit 1; }
rate() { echo "$gemm_out" | awk -v n="$1" '$1 == n && $2 ~ /^[0-9.]+$/ { print $2 }'; }
bf16=$(rate dnnl_bf16) f32=$(rate dnnl_f32) sgemm=$(rate openblas_sgemm)
bf16_impl=$(echo "$gemm_out" | awk '$1 == "dnnl_bf16" { print $3 }')
say "matmul 4096x2048 . 2048x1024 (bench_gemm, best of 3 s): oneDNN bf16 ${bf16:-n/a} GFLOP/s (${bf16_impl:-absent}), oneDNN fp32 ${f32:-n/a}, OpenBLAS sgemm ${sgemm:-n/a}"
# The roof is the fastest rate the program can choose (--precision auto takes bf16 only where it is
# faster than fp32: on a CPU with avx512_bf16 but no AMX, oneDNN's bf16 can be the slower one).
# bf16 counts only where oneDNN runs it natively (an implementation that is not its reference one).
roof_rate=${sgemm:-0} roof_prec="OpenBLAS sgemm"
if [ -n "$f32" ] && [ "$(calc "($f32 > $roof_rate)")" = 1 ]; then roof_rate=$f32 roof_prec="oneDNN fp32"; fi
case "${bf16_impl:-ref}" in
*bf16* | *amx*) if [ "$(calc "($bf16 > $roof_rate)")" = 1 ]; then roof_rate=$bf16 roof_prec="oneDNN bf16"; fi ;;
esac
say "roof precision: $roof_prec at $roof_rate GFLOP/s"
say ""
printf '%-9s %-46s %-20s %-12s %s\n' shape step figure bar verdict | tee -a "$results"

# ---- shapes ----------------------------------------------------------------------------------
# name | label | arch | layers | H | I | E | top-k | heads | kv | head_dim | vocab | shared width |
# dense width | synth options
shapes="olmoe2|OLMoE-1B-7B, 2 layers|olmoe|2|2048|1024|64|8|16|16|128|50304|0|0|--no-norm-topk --clusters 16
olmoe|OLMoE-1B-7B, 16 layers|olmoe|16|2048|1024|64|8|16|16|128|50304|0|0|--no-norm-topk --clusters 16
qwen3|Qwen3-30B-A3B, 4 of 48 layers|qwen3_moe|4|2048|768|128|8|32|4|128|151936|0|0|--norm-topk --clusters 32
mixtral|Mixtral-8x7B, 2 of 32 layers|mixtral|2|4096|14336|8|2|32|8|128|32000|0|0|--clusters 4
deepseek|DeepSeek-MoE-16B, 4 of 28 layers|deepseek|4|2048|1408|64|6|16|16|128|102400|2816|10944|--shared-experts 2 --first-dense 1 --dense-intermediate 10944 --no-norm-topk --clusters 16
qwen15|Qwen1.5-MoE-A2.7B, 4 of 24 layers|qwen2_moe|4|2048|1408|60|4|16|16|128|151936|5632|0|--shared-intermediate 5632 --no-norm-topk --clusters 15"

field() { echo "$1" | sed -n "s/.*\"$2\": *\([0-9.eE+-]*\).*/\1/p" | head -n 1; }

# The workbench on MODEL with the cached stats file, through tmux: sets wb_open, wb_heat, wb_all
# (seconds from launch, empty when not reached), wb_quit, rss_kb and status.
workbench() { # NAME MODEL STATS LIMIT
    tmux -S "$sock" kill-server >/dev/null 2>&1
    wbt=$shape_dir/wb.time
    rm -f "$wbt"
    t0=$(now)
    tmux -S "$sock" new-session -d -s wb -x 200 -y 50 \
        "cd '$shape_dir' && NO_COLOR=1 TERM=xterm-256color LANG=C.UTF-8 /usr/bin/time -v -o '$wbt' '$submoe' tui '$2' --calib '$3' --plan '$shape_dir/wb-plan.yaml' 2>'$shape_dir/wb.err'; echo EXIT=\$?; sleep 3600"
    wb_open='' wb_heat='' wb_all='' wb_quit='' status=timeout
    while :; do
        t=$(calc "$(now) - $t0")
        scr=$(tmux -S "$sock" capture-pane -t wb -p 2>/dev/null)
        case $scr in *EXIT=*) status=error; break ;; esac
        [ -z "$wb_open" ] && echo "$scr" | grep -q 'calibrated on' && wb_open=$t
        [ -z "$wb_heat" ] && echo "$scr" | grep -Eq 'S\(e[0-9]+, e[0-9]+\) = ' && wb_heat=$t
        [ -z "$wb_all" ] && echo "$scr" | grep -q 'every layer previewed' && wb_all=$t
        [ -z "$wb_heat" ] && tmux -S "$sock" send-keys -t wb 2
        if [ -n "$wb_all" ] && [ -n "$wb_heat" ]; then status=ok; break; fi
        awk "BEGIN { exit !($t > $4) }" && break
        sleep 0.2
    done
    [ $status = error ] && { echo "$scr" | tail -n 5 | sed 's/^/    | /' | tee -a "$results"; cat "$shape_dir/wb.err" >&2; }
    # quit (and confirm if it asks): how long until the process is gone
    tq=$(now)
    tmux -S "$sock" send-keys -t wb q
    wb_i=0
    while [ $wb_i -lt 1200 ]; do
        scr=$(tmux -S "$sock" capture-pane -t wb -p 2>/dev/null)
        case $scr in *EXIT=*) wb_quit=$(calc "$(now) - $tq"); break ;; esac
        echo "$scr" | grep -q 'Quit and discard' && tmux -S "$sock" send-keys -t wb y
        sleep 0.1
        wb_i=$((wb_i + 1))
    done
    tmux -S "$sock" kill-server >/dev/null 2>&1
    sleep 1
    rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): *//p' "$wbt" 2>/dev/null)
    rss_kb=${rss_kb:-0}
}

# The shape's directory, disk check, memory bound, synth and roof. 1: skip the shape.
shape_prepare() {
    shape_dir=$scratch/$name
    rm -rf "$shape_dir"
    mkdir -p "$shape_dir"
    model=$shape_dir/model stats=$shape_dir/calib.stats
    say ""
    say "== $name: $label (H $H, $E experts of $I, top-$K, heads $NH/$NKV, vocab $V$( [ "$S" != 0 ] && echo ", shared $S"))"
    # disk: the bf16 model, the merged output (at most the same again) and the stats file
    n_moe=$layers
    first_dense=0
    [ "$arch" = deepseek ] && first_dense=1 && n_moe=$((layers - 1))
    need_kb=$(calc "sprintf(\"%.0f\", (2 * ($n_moe * ($E * 3 * $H * $I + 3 * $H * $S + $E * $H) + $first_dense * 3 * $H * $D + $layers * 2 * $H * $HD * ($NH + $NKV) + 2 * $V * $H) * 2.05 + 2 * 1048576 * 1024) / 1024)")
    free_kb=$(df -Pk "$scratch" | awk 'NR == 2 { print $4 }')
    if [ "$free_kb" -lt "$need_kb" ]; then
        row "$name" "skipped: needs $(mb "$need_kb") of disk" "$(mb "$free_kb") free" "" ""
        return 1
    fi
    # item 7's bound: two MoE layers of fp32 expert weights (routed, shared, router) + 1 GiB
    layer_b=$(calc "($E * 3 * $H * $I + 3 * $H * $S + $E * $H) * 4")
    bound_kb=$(calc "sprintf(\"%.0f\", (2 * $layer_b + 1073741824) / 1024)")

    run_step "$shape_dir/synth" "$timeout_s" "$submoe" synth --arch "$arch" --out "$model" --layers "$layers" \
        --hidden "$H" --intermediate "$I" --experts "$E" --top-k "$K" --heads "$NH" --kv-heads "$NKV" --head-dim "$HD" \
        --vocab "$V" --dtype bf16 $opts -q
    time_row "$name" "synth$([ -d "$model" ] && echo " ($(du -sh "$model" | cut -f1) bf16)")" "$timeout_s"
    [ $status = ok ] || return 1
    ins=$("$submoe" inspect "$model" --json)
    active=$(field "$ins" active_per_token)
    grep -q '"tie_word_embeddings": *true' "$model/config.json" && tied=1 || tied=0
    mult=$(calc "$active - (1 - $tied) * $V * $H")
    roof=$(calc "$roof_rate * 1e9 / (2 * $mult)")
    say "$(printf '%-9s active parameters %.3f G (%.3f G multiplied per token); roof %.0f tokens/s (%s); memory bound %s' \
        "$name" "$(calc "$active / 1e9")" "$(calc "$mult / 1e9")" "$roof" "$roof_prec" "$(mb "$bound_kb")")"
}

# calibrate: the stats file every later step reads. 1: it failed.
step_calibrate() {
    run_step "$shape_dir/calib" "$timeout_s" "$submoe" calibrate "$model" --tokens "$calib_tokens" -o "$stats" \
        --samples $calib_samples --seq-len $calib_seq -q
    time_row "$name" "calibrate ($((calib_samples * calib_seq)) tokens)" "$timeout_s"
    [ $status = ok ] || return 1
    calib_tps=$(calc "$calib_samples * $calib_seq / $wall")
    row "$name" "  calibrate tokens/s" "$(calc "sprintf(\"%.1f\", $calib_tps)")" "" ""
    row "$name" "  calibrate peak RSS" "$(mb "$rss_kb")" "" ""
    if [ "$name" = olmoe ]; then
        row "$name" "  calibrate / roof" "$(calc "sprintf(\"%.3f\", $calib_tps / $roof)")" ">= 0.7" "$(verdict "$calib_tps >= 0.7 * $roof")"
    else
        row "$name" "  calibrate / roof" "$(calc "sprintf(\"%.3f\", $calib_tps / $roof)")" "" ""
    fi
}

step_eval() {
    eval_tps=
    if want_step eval; then
        run_step "$shape_dir/eval" "$timeout_s" "$submoe" eval "$model" --tokens "$heldout" --max-tokens "$eval_tokens" --json
        time_row "$name" "eval ($eval_tokens tokens)" "$timeout_s"
        if [ $status = ok ]; then
            j=$(cat "$shape_dir/eval.out")
            eval_tps=$(field "$j" tokens_per_second)
            eval_ppl=$(calc "sprintf(\"%.7g\", $(field "$j" perplexity))")
            row "$name" "  eval tokens/s (perplexity $eval_ppl)" "$(calc "sprintf(\"%.1f\", $eval_tps)")" "" ""
            if [ "$name" = olmoe ]; then
                row "$name" "  eval / roof" "$(calc "sprintf(\"%.3f\", $eval_tps / $roof)")" ">= 0.7" "$(verdict "$eval_tps >= 0.7 * $roof")"
            else
                row "$name" "  eval / roof" "$(calc "sprintf(\"%.3f\", $eval_tps / $roof)")" "" ""
            fi
        fi
    fi
}

# The PyTorch eager forward of the same weights, fp32 and bf16, against calibrate and eval.
step_torch() {
    if want_step torch && [ "$name" = olmoe2 ]; then
        if ! "$python" -c 'import torch' >/dev/null 2>&1; then
            row "$name" "PyTorch eager bf16 / fp32" "skipped" "(no torch in $python)" ""
        else
            for dt in fp32 bf16; do
                run_step "$shape_dir/torch-$dt" "$timeout_s" "$python" "$here/torch_eager.py" "$model" --tokens "$heldout" \
                    --max-tokens "$eval_tokens" --dtype $dt
                if [ $status = ok ]; then
                    j=$(tail -n 1 "$shape_dir/torch-$dt.out")
                    tps=$(field "$j" tokens_per_second)
                    row "$name" "PyTorch eager $dt tokens/s (ppl $(calc "sprintf(\"%.7g\", $(field "$j" perplexity))"))" "$tps" "" ""
                    [ $dt = bf16 ] && torch_bf16=$tps
                else
                    time_row "$name" "PyTorch eager $dt" "$timeout_s"
                fi
            done
            if [ -n "${torch_bf16:-}" ]; then
                row "$name" "calibrate / PyTorch eager bf16" "$(calc "sprintf(\"%.2fx\", $calib_tps / $torch_bf16)")" ">= 1.2x" \
                    "$(verdict "$calib_tps >= 1.2 * $torch_bf16")"
                [ -n "$eval_tps" ] && row "$name" "eval / PyTorch eager bf16" "$(calc "sprintf(\"%.2fx\", $eval_tps / $torch_bf16)")" \
                    ">= 1.2x" "$(verdict "$eval_tps >= 1.2 * $torch_bf16")"
            fi
        fi
    fi
}

step_plan_default() {
    if want_step plan; then
        case $name in
        olmoe) bar=600 ;;
        qwen3) bar=$((60 * n_moe)) ;;
        mixtral) bar=$((180 * n_moe)) ;;
        *) bar= ;;
        esac
        lim=${bar:+$(calc "sprintf(\"%.0f\", $cap * $bar)")}
        lim=${lim:-$timeout_s}
        run_step "$shape_dir/plan-auto" "$lim" "$submoe" plan "$model" --ratio $ratio -c "$stats" -o "$shape_dir/plan-auto.yaml" -q
        if [ "$name" = olmoe ]; then
            time_row "$name" "plan (default: auto), $n_moe MoE layers" "$lim" "$bar"
        elif [ -n "$bar" ]; then
            time_row "$name" "plan (default: auto), $n_moe MoE layers" "$lim"
            fig=$(if [ $status = ok ]; then calc "sprintf(\"%.1f s\", $wall / $n_moe)"; else echo "> $(calc "$lim / $n_moe") s"; fi)
            v=FAIL
            [ $status = ok ] && v=$(verdict "$wall / $n_moe <= $bar / $n_moe")
            row "$name" "  plan (default) per MoE layer" "$fig" "<= $((bar / n_moe)) s" "$v"
        else
            time_row "$name" "plan (default: auto), $n_moe MoE layers" "$lim"
        fi
        rss_row "$name" "  plan (default) peak RSS" "$bound_kb"
    fi
}

step_plan_submoe_apply() {
    if want_step plan-submoe || want_step apply; then
        run_step "$shape_dir/plan-submoe" "$timeout_s" "$submoe" plan "$model" --ratio $ratio -m submoe -c "$stats" \
            -o "$shape_dir/plan-submoe.yaml" -q
        time_row "$name" "plan --method submoe" "$timeout_s"
        rss_row "$name" "  plan --method submoe peak RSS" "$bound_kb"
        if [ $status = ok ] && want_step apply; then
            run_step "$shape_dir/apply" "$timeout_s" "$submoe" apply "$shape_dir/plan-submoe.yaml" -o "$shape_dir/merged" -q
            time_row "$name" "apply (the submoe plan)" "$timeout_s"
            rss_row "$name" "  apply peak RSS" "$bound_kb"
            rm -rf "$shape_dir/merged"
        fi
    fi
}

step_workbench() {
    if want_step workbench && { [ "$name" = olmoe ] || [ "$name" = olmoe2 ]; }; then
        if ! command -v tmux >/dev/null 2>&1; then
            row "$name" "workbench" "skipped (no tmux)" "" ""
        else
            if [ "$name" = olmoe ]; then lim=$(calc "$cap * 600"); else lim=$timeout_s; fi
            workbench "$name" "$model" "$stats" "$lim"
            fig() {
                if [ -n "$1" ]; then calc "sprintf(\"%.1f s\", $1)"
                elif [ $status = error ]; then echo "error"
                else echo "> $lim s (stopped)"; fi
            }
            if [ "$name" = olmoe ]; then
                v() { if [ -n "$1" ]; then verdict "$1 <= $2"; else echo FAIL; fi; }
                row "$name" "workbench: stats file open" "$(fig "$wb_open")" "<= 10 s" "$(v "$wb_open" 10)"
                row "$name" "workbench: first heatmap" "$(fig "$wb_heat")" "<= 2 s" "$(v "$wb_heat" 2)"
                row "$name" "workbench: every layer previewed" "$(fig "$wb_all")" "<= 600 s" "$(v "$wb_all" 600)"
            else
                row "$name" "workbench: stats file open" "$(fig "$wb_open")" "" ""
                row "$name" "workbench: first heatmap" "$(fig "$wb_heat")" "" ""
                row "$name" "workbench: every layer previewed" "$(fig "$wb_all")" "" ""
            fi
            [ $status = error ] && failed=1
            row "$name" "  workbench: q to exit" "${wb_quit:+$(calc "sprintf(\"%.1f s\", $wb_quit)")}" "" ""
            [ "$rss_kb" -gt 0 ] && row "$name" "  workbench peak RSS" "$(mb "$rss_kb")" "" ""
        fi
    fi
}

bench_shape() {
    IFS='|' read -r name label arch layers H I E K NH NKV HD V S D opts <<EOF
$1
EOF
    want_shape "$name" || return 0
    if shape_prepare && step_calibrate; then
        step_eval
        step_torch
        step_plan_default
        step_plan_submoe_apply
        step_workbench
    fi
    rm -rf "$shape_dir"
    shape_dir=
}

n_shapes=$(echo "$shapes" | wc -l)
shape_i=1
while [ $shape_i -le "$n_shapes" ]; do
    bench_shape "$(echo "$shapes" | sed -n "${shape_i}p")"
    shape_i=$((shape_i + 1))
done
say ""
say "results: $results (shared machine: load average now $(cut -d' ' -f1-3 /proc/loadavg))"
if grep -q ' FAIL$' "$results"; then exit 1; fi
exit $failed

/* demo_table: the paper's comparison on a bundled demo model — held-out perplexity of the
 * original and, at 25% and 50% expert reduction, of every merge and pruning method with the
 * `remap` and `collapse-lstsq` routers (issue 5's acceptance table; DESIGN §5 "Quality"), and
 * the zero-shot accuracy (acc, eval --task) of the collapse-lstsq model on the demo task, the
 * shape of the paper's Table 1 (issue 17).
 *
 *   bench/demo_table [--model DIR] [--calib TOKENS] [--heldout TOKENS] [--samples N]
 *                    [--seq-len T] [--max-tokens N] [--task FILE.jsonl | --no-task] [--refit-only]
 *                    [--routers-only]
 *                    [--row LABEL]...
 * --row (repeatable) runs only the rows of those labels ("prune-reap", "submoe, reap", ...): a
 * quicker partial table on a loaded machine, without the summary lines (they compare every row).
 *
 * After the table, refit's held-out gain (issue 18 item 3): the merges of the table without and with
 * `refit: down`, both routers (--refit-only prints only that part); then the routers remap / lstsq /
 * kl / mean on the submoe merge and on auto (--routers-only prints only that part).
 *
 * Every row is built with the same pipeline `submoe apply` runs (each layer resolved by
 * pipeline/resolve.h from the row's defaults and the planner's groups; pipeline/build.h: statistics
 * on the calibration fit rows, k-means++ on output similarity with seed 1, the merge, the router
 * fit) and evaluated in memory with the merged layers swapped into the forward pass — the same
 * numbers `apply` + `eval` give, without writing models. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/mcscore.h"
#include "model/tokens.h"
#include "pipeline/build.h"
#include "pipeline/guard.h"
#include "pipeline/planner.h"
#include "pipeline/resolve.h"
#include "util/diag.h"
#include "util/progress.h"

/* Perplexities closer than this (relative) are a tie (issue 19: 3.843 vs 3.844 on one held-out
 * window decides nothing). */
#define TIE_REL 0.005

/* The paper's ordering: subspace merging (`merge`) beats the best of pruning and averaging
 * (`other`) by more than TIE_REL. */
static const char *ordering_verdict(double merge, double other)
{
    if (fabs(merge - other) < TIE_REL * fmin(merge, other))
        return "a tie (within 0.5%): the paper's ordering is not shown";
    return merge < other ? "subspace merging wins (paper's ordering)" : "paper's ordering does NOT hold";
}

typedef struct {
    const char *label;
    sm_merge_method method;
    bool adaptive, is_auto, align;
    sm_cluster_algo algo;
} row;

static sm_model *model;
static sm_calib *calib;
static sm_tokens held;
static int n_seq, seq_len;
static sm_tok *tok;          /* NULL: no accuracy column */
static bool plan_refit;      /* every merge of plan_ppl's plans with refit: down */
static sm_mc_task task;

static int blocks_override(void *ctx, int layer, const sm_moe_block **block)
{
    *block = ((const sm_moe_block *const *)ctx)[layer];
    return 0;
}

/* acc on the task with MoE layers from blocks (NULL entries: the model's own). */
static double task_acc(const sm_moe_block **blocks)
{
    sm_mc_opts o = {.add_special = true, .quiet = true, .moe_override = blocks_override,
                    .override_ctx = (void *)blocks, .batch_tokens = 65536};
    sm_mc_scores sc;
    if (sm_mc_score(model, tok, &task, &o, &sc)) {
        fprintf(stderr, "demo_table: %s\n", sm_errmsg());
        return NAN;
    }
    double acc = sc.acc;
    sm_mc_scores_free(&sc);
    return acc;
}

/* Perplexity of a whole-model plan: every MoE layer built with `method` at the planned k. */
static double plan_ppl(const sm_planned_layer *pl, sm_merge_method method, sm_router_mode router, bool is_auto,
                       bool align, double *acc)
{
    const sm_config *c = sm_model_config(model);
    sm_layer_build *b = calloc((size_t)c->n_layers, sizeof *b);
    const sm_moe_block **blocks = calloc((size_t)c->n_layers, sizeof *blocks);
    sm_resolved_layer *rl = calloc((size_t)c->n_layers, sizeof *rl);
    sm_guard_layer *gl = calloc((size_t)c->n_layers, sizeof *gl);
    char (*why)[600] = calloc((size_t)c->n_layers, sizeof *why);
    double ppl = NAN;
    int ok = 1;
    for (int l = 0; ok && l < c->n_layers; l++) {
        if (pl[l].layer < 0)
            continue;
        /* the layer as `submoe apply` resolves a plan with these defaults and the planner's groups */
        sm_plan p;
        sm_plan_init(&p);
        p.defaults.has_method = true, p.defaults.method_auto = is_auto, p.defaults.method = method;
        p.defaults.has_router = true, p.defaults.router = router;
        p.defaults.has_align = true, p.defaults.align = align;
        p.defaults.has_refit = true, p.defaults.refit = plan_refit;
        sm_resolve_layer(&p, NULL, l, pl[l].n, pl[l].k, pl[l].assign, &rl[l]);
        const sm_layer_job *j = &rl[l].job;
        if ((is_auto ? sm_layer_build_auto(model, calib, j, NULL, &b[l], why[l], sizeof why[l])
                     : sm_layer_build_run(model, calib, j, NULL, &b[l])) != 0) {
            fprintf(stderr, "demo_table: %s\n", sm_errmsg());
            ok = 0;
            break;
        }
        blocks[l] = &b[l].block;
        gl[l] = (sm_guard_layer){j, is_auto ? why[l] : NULL};
    }
    /* auto's plan guard, as `submoe plan` runs it: a uniform candidate replaces the per-layer
     * choices when it scores better on the guard windows */
    sm_guard g = {0};
    if (ok && is_auto && sm_guard_run(model, calib, gl, c->n_layers, NULL, &g)) {
        fprintf(stderr, "demo_table: %s\n", sm_errmsg());
        ok = 0;
    }
    for (int l = 0; ok && sm_guard_choice(&g) && l < c->n_layers; l++) {
        sm_layer_job j;
        if (pl[l].layer < 0)
            continue;
        sm_layer_build_free(&b[l]);
        if (sm_guard_candidate_job(&rl[l].job, sm_guard_choice(&g), &j) ||
            sm_layer_build_run(model, calib, &j, NULL, &b[l])) {
            fprintf(stderr, "demo_table: %s\n", sm_errmsg());
            ok = 0;
        }
        blocks[l] = &b[l].block;
    }
    if (ok && sm_perplexity_with(model, held.ids, n_seq, seq_len, blocks, NULL, &ppl) != 0)
        fprintf(stderr, "demo_table: %s\n", sm_errmsg());
    if (acc)
        *acc = ok && tok ? task_acc(blocks) : NAN;
    for (int l = 0; l < c->n_layers; l++) {
        sm_layer_build_free(&b[l]);
        sm_resolved_layer_free(&rl[l]);
    }
    free(b);
    free(rl);
    free(gl);
    free(why);
    free(blocks);
    return ppl;
}

/* refit's held-out gain: perplexity of the table's merges without and with refit: down, at each
 * ratio and router (the groups of the planner, as in the table). */
static void refit_gain_table(void)
{
    const struct {
        const char *label;
        bool align;
        sm_cluster_algo algo;
    } merges[] = {
        {"submoe", false, SM_CLUSTER_KMEANS},
        {"submoe, aligned", true, SM_CLUSTER_KMEANS},
        {"submoe, dominant", false, SM_CLUSTER_DOMINANT},
        {"submoe, dom+align", true, SM_CLUSTER_DOMINANT},
    };
    const double ratios[2] = {0.25, 0.5};
    const sm_router_mode routers[2] = {SM_ROUTER_REMAP, SM_ROUTER_COLLAPSE_LSTSQ};
    const sm_config *c = sm_model_config(model);
    printf("\nrefit: down (each merged down projection refitted to its members' routing-weighted outputs on the\n"
           "calibration fit rows): held-out perplexity without -> with refit, and the change\n");
    printf("%-18s", "merge");
    for (int r = 0; r < 2; r++)
        printf(" | %3.0f%% fewer: remap                   lstsq                  ", ratios[r] * 100);
    printf("\n");
    double gain_sum[2][2] = {{0, 0}, {0, 0}};
    int n_rows = (int)(sizeof merges / sizeof merges[0]);
    for (int q = 0; q < n_rows; q++) {
        printf("%-18s", merges[q].label);
        for (int r = 0; r < 2; r++) {
            sm_planned_layer pl[64];
            sm_planner_opts po = {.ratio = ratios[r], .window = 2, .algo = merges[q].algo, .sim = SM_SIM_OUTPUT,
                                  .seed = 1};
            if (c->n_layers > 64 || sm_planner_run(model, calib, &po, NULL, pl))
                sm_die("%s", sm_errmsg());
            printf(" |");
            for (int ro = 0; ro < 2; ro++) {
                plan_refit = false;
                double p0 = plan_ppl(pl, SM_MERGE_SUBMOE, routers[ro], false, merges[q].align, NULL);
                plan_refit = true;
                double p1 = plan_ppl(pl, SM_MERGE_SUBMOE, routers[ro], false, merges[q].align, NULL);
                plan_refit = false;
                printf(" %7.3f -> %7.3f (%+5.1f%%)", p0, p1, 100.0 * (p1 / p0 - 1.0));
                gain_sum[r][ro] += p1 / p0 - 1.0;
            }
            for (int l = 0; l < c->n_layers; l++)
                sm_planned_layer_free(&pl[l]);
            fflush(stdout);
        }
        printf("\n");
    }
    for (int r = 0; r < 2; r++)
        printf("%2.0f%% fewer experts: refit changes held-out perplexity by %+.1f%% (remap) and %+.1f%% (lstsq) on "
               "average over these merges\n",
               ratios[r] * 100, 100.0 * gain_sum[r][0] / n_rows, 100.0 * gain_sum[r][1] / n_rows);
}

/* Issue 18: the routers side by side on the k-means submoe merge and on auto, and the default
 * plan — a plan that says nothing: auto, with the router its output format (submoe) gets. */
static void router_rows(void)
{
    const sm_config *c = sm_model_config(model);
    const double ratios[2] = {0.25, 0.5};
    const sm_router_mode modes[] = {SM_ROUTER_REMAP, SM_ROUTER_COLLAPSE_LSTSQ, SM_ROUTER_COLLAPSE_KL,
                                    SM_ROUTER_COLLAPSE_MEAN};
    const struct {
        const char *label;
        bool is_auto;
    } merges[] = {{"submoe", false}, {"auto", true}};
    printf("\nrouters (perplexity)  |");
    for (int r = 0; r < 2; r++)
        printf(" %2.0f%% fewer:  remap   lstsq      kl    mean |", ratios[r] * 100);
    printf("\n");
    sm_plan dflt; /* what a plan that says nothing resolves to */
    sm_plan_init(&dflt);
    sm_plan_effective eff;
    sm_plan_effective_settings(&dflt, NULL, &eff);
    for (size_t q = 0; q < sizeof merges / sizeof merges[0]; q++) {
        printf("%-22s|", merges[q].label);
        for (int r = 0; r < 2; r++) {
            sm_planned_layer pl[64];
            sm_planner_opts po = {.ratio = ratios[r], .window = 2, .algo = SM_CLUSTER_KMEANS, .sim = SM_SIM_OUTPUT,
                                  .seed = 1};
            if (c->n_layers > 64 || sm_planner_run(model, calib, &po, NULL, pl))
                sm_die("%s", sm_errmsg());
            printf("           ");
            for (size_t mi = 0; mi < sizeof modes / sizeof modes[0]; mi++)
                printf(" %7.3f", plan_ppl(pl, SM_MERGE_SUBMOE, modes[mi], merges[q].is_auto, false, NULL));
            printf(" |");
            for (int l = 0; l < c->n_layers; l++)
                sm_planned_layer_free(&pl[l]);
            fflush(stdout);
        }
        printf("\n");
    }
    printf("(the default plan: %s with router %s, the one its output format, submoe, holds best: the auto row's "
           "%s column)\n",
           eff.is_auto ? "auto" : sm_merge_method_name(eff.method), sm_router_mode_name(eff.router),
           sm_router_mode_name(eff.router));
}

int main(int argc, char **argv)
{
    const char *dir = "data/demo", *ctok = "data/calib.u32", *htok = "data/heldout.u32",
               *task_file = "data/demo-task.jsonl";
    int samples = 32, max_tokens = 32768;
    bool refit_only = false;
    bool routers_only = false; /* only the routers' rows (issue 18) */
    const char *only[16];
    int n_only = 0;
    seq_len = 256;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--calib") && i + 1 < argc)
            ctok = argv[++i];
        else if (!strcmp(argv[i], "--heldout") && i + 1 < argc)
            htok = argv[++i];
        else if (!strcmp(argv[i], "--samples") && i + 1 < argc)
            samples = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seq-len") && i + 1 < argc)
            seq_len = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--max-tokens") && i + 1 < argc)
            max_tokens = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--task") && i + 1 < argc)
            task_file = argv[++i];
        else if (!strcmp(argv[i], "--no-task"))
            task_file = NULL;
        else if (!strcmp(argv[i], "--refit-only"))
            refit_only = true;
        else if (!strcmp(argv[i], "--routers-only"))
            routers_only = true;
        else if (!strcmp(argv[i], "--row") && i + 1 < argc && n_only < 16)
            only[n_only++] = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--model DIR] [--calib TOKENS] [--heldout TOKENS] [--samples N] "
                            "[--seq-len T] [--max-tokens N] [--task FILE.jsonl | --no-task] [--refit-only] "
                            "[--routers-only] [--row LABEL]...\n",
                    argv[0]);
            return 2;
        }
    }
    if (!(model = sm_model_open(dir)))
        sm_die("%s", sm_errmsg());
    const sm_config *c = sm_model_config(model);
    if (sm_tokens_read(htok, c->vocab, &held))
        sm_die("%s", sm_errmsg());
    if (task_file && (sm_mc_task_read(task_file, &task) || !(tok = sm_tok_load(dir))))
        sm_die("%s", sm_errmsg());
    n_seq = (int)((held.n < (size_t)max_tokens ? held.n : (size_t)max_tokens) / (size_t)seq_len);
    sm_calib_spec s;
    sm_calib_spec_default(&s);
    s.tokens = ctok;
    s.samples = samples;
    s.seq_len = seq_len;
    s.quiet = true;
    double t0 = sm_now();
    if (!(calib = sm_calib_capture(model, &s, NULL, NULL, NULL)))
        sm_die("%s", sm_errmsg());
    const sm_moe_block **none = calloc((size_t)c->n_layers, sizeof *none);
    double base;
    if (sm_perplexity_with(model, held.ids, n_seq, seq_len, none, NULL, &base))
        sm_die("%s", sm_errmsg());
    double base_acc = tok ? task_acc(none) : NAN;
    free(none);
    int n_experts = sm_model_layer_experts(model, c->n_layers - 1);
    printf("demo_table: %s (%s, %d MoE layers x %d experts, top-%d)\n", dir, sm_arch_name(c->arch),
           c->n_moe_layers, n_experts, c->top_k);
    printf("calibration: %d x %d tokens of %s (4096 rows kept per layer, 1024 held out); "
           "evaluation: %d x %d tokens of %s\n\n", samples, seq_len, ctok, n_seq, seq_len, htok);
    printf("original perplexity %.3f", base);
    if (tok)
        printf(", accuracy %.3f on %s (%zu items, acc as eval --task; the acc column: the lstsq model)",
               base_acc, task_file, task.n);
    printf("\n\n");
    if (refit_only || routers_only)
        goto refit;

    const row rows[] = {
        {"submoe", SM_MERGE_SUBMOE, false, false, false, SM_CLUSTER_KMEANS},
        {"submoe, adaptive", SM_MERGE_SUBMOE, true, false, false, SM_CLUSTER_KMEANS},
        {"submoe, aligned", SM_MERGE_SUBMOE, false, false, true, SM_CLUSTER_KMEANS},
        {"submoe, dominant", SM_MERGE_SUBMOE, false, false, false, SM_CLUSTER_DOMINANT},
        {"submoe, dom+align", SM_MERGE_SUBMOE, false, false, true, SM_CLUSTER_DOMINANT},
        {"submoe, reap", SM_MERGE_SUBMOE, false, false, false, SM_CLUSTER_REAP},
        {"submoe, reap+align", SM_MERGE_SUBMOE, false, false, true, SM_CLUSTER_REAP},
        {"freq-average", SM_MERGE_FREQ_AVERAGE, false, false, false, SM_CLUSTER_KMEANS},
        {"average", SM_MERGE_AVERAGE, false, false, false, SM_CLUSTER_KMEANS},
        {"prune-frequency", SM_MERGE_PRUNE_FREQUENCY, false, false, false, SM_CLUSTER_KMEANS},
        {"prune-output", SM_MERGE_PRUNE_OUTPUT, false, false, false, SM_CLUSTER_KMEANS},
        {"prune-reap", SM_MERGE_PRUNE_REAP, false, false, false, SM_CLUSTER_KMEANS},
        {"auto (default)", SM_MERGE_SUBMOE, false, true, false, SM_CLUSTER_KMEANS},
    };
    const double ratios[2] = {0.25, 0.5};
    printf("%-18s", "method");
    for (int r = 0; r < 2; r++)
        printf(" | %3.0f%% fewer: remap  lstsq%s", ratios[r] * 100, tok ? "    acc" : "");
    printf("\n");
    double best_merge[2] = {INFINITY, INFINITY}, best_prune[2] = {INFINITY, INFINITY}, avg[2] = {0, 0};
    double unaligned[2] = {INFINITY, INFINITY}, aligned[2] = {INFINITY, INFINITY}, autov[2] = {0, 0};
    for (size_t q = 0; q < sizeof rows / sizeof rows[0]; q++) {
        bool run = n_only == 0;
        for (int i = 0; i < n_only; i++)
            run = run || !strcmp(only[i], rows[q].label);
        if (!run)
            continue;
        printf("%-18s", rows[q].label);
        for (int r = 0; r < 2; r++) {
            sm_planned_layer pl[64];
            sm_planner_opts po = {.ratio = ratios[r], .adaptive = rows[q].adaptive, .window = 2,
                                  .algo = rows[q].algo, .sim = SM_SIM_OUTPUT, .seed = 1};
            if (c->n_layers > 64 || sm_planner_run(model, calib, &po, NULL, pl))
                sm_die("%s", sm_errmsg());
            bool prune = !sm_merge_method_merges(rows[q].method);
            double acc = NAN;
            double p_remap = plan_ppl(pl, rows[q].method, SM_ROUTER_REMAP, rows[q].is_auto, rows[q].align,
                                      prune ? &acc : NULL);
            double p_lstsq = prune ? p_remap
                                   : plan_ppl(pl, rows[q].method, SM_ROUTER_COLLAPSE_LSTSQ, rows[q].is_auto,
                                              rows[q].align, &acc);
            printf(" |           %7.3f %6.3f", p_remap, p_lstsq);
            if (tok)
                printf(" %6.3f", acc);
            double best = fmin(p_remap, p_lstsq);
            if (rows[q].method == SM_MERGE_SUBMOE && !rows[q].is_auto && !rows[q].adaptive && !rows[q].align)
                unaligned[r] = fmin(unaligned[r], best);
            if (rows[q].align)
                aligned[r] = fmin(aligned[r], best);
            if (rows[q].is_auto)
                autov[r] = best;
            if (rows[q].method == SM_MERGE_SUBMOE && !rows[q].is_auto)
                best_merge[r] = fmin(best_merge[r], best);
            if (prune)
                best_prune[r] = fmin(best_prune[r], best);
            if (rows[q].method == SM_MERGE_AVERAGE)
                avg[r] = best;
            for (int l = 0; l < c->n_layers; l++)
                sm_planned_layer_free(&pl[l]);
            fflush(stdout);
        }
        printf("\n");
    }
    printf("\n(pruning drops router rows; its two columns are the same model. dominant: M-SMoE's groups, the\n"
           " most-routed experts as centres. reap: REAM-style groups, the most REAP-salient experts as\n"
           " centres; prune-reap keeps the most salient. auto: per layer, the best of submoe and submoe\n"
           " aligned on k-means, dominant and reap groups and the three prunings, by held-out loss with that\n"
           " layer swapped in, then the plan guard: that plan or one candidate on every layer, whichever\n"
           " whole plan loses least on 8 other held-out windows)\n");
    if (n_only) /* the comparisons below need every row */
        printf("(--row: a partial table, no summary)\n");
    for (int r = 0; !n_only && r < 2; r++)
        printf("%2.0f%% fewer experts: best submoe %.3f vs best pruning %.3f vs average %.3f -> %s\n",
               ratios[r] * 100, best_merge[r], best_prune[r], avg[r],
               ordering_verdict(best_merge[r], fmin(best_prune[r], avg[r])));
    for (int r = 0; !n_only && r < 2; r++)
        printf("%2.0f%% fewer experts: aligned merge %.3f vs unaligned %.3f vs best pruning %.3f; auto %.3f "
               "(best single method %.3f)\n",
               ratios[r] * 100, aligned[r], unaligned[r], best_prune[r], autov[r],
               fmin(best_merge[r], best_prune[r]));
refit:
    if (!routers_only)
        refit_gain_table();
    if (!refit_only)
        router_rows();
    printf("(%.1f s)\n", sm_now() - t0);
    sm_calib_free(calib);
    sm_tok_free(tok);
    sm_mc_task_free(&task);
    sm_tokens_free(&held);
    sm_model_close(model);
    return 0;
}

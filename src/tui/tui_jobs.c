/* tui_jobs: what the workbench's worker thread does (see tui_jobs.h, tui_worker.h) — calibrate,
 * preview a layer, re-cluster, compute a spectrum, the plan's perplexity, save / open plans,
 * commit. Every layer is built as pipeline/resolve.c resolves the plan the workbench saves
 * (tui_layer_resolve, tui_plan.c), so a preview is what `submoe apply` makes of that plan. */
#include "eval/mcscore.h"
#include "forward/moelayer.h"
#include "model/tokens.h"
#include "pipeline/apply.h"
#include "tui/tui_jobs.h"
#include "tui/tui_worker.h"
#include "util/datadir.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/mem.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Build a resolved layer (auto decides unless the plan recorded its choice, `chosen`). */
static int build_layer(tui_app *a, sm_resolved_layer *rl, const sm_monitor *mon, sm_layer_build *b, char *why,
                       size_t wn)
{
    why[0] = 0;
    int rc = rl->is_auto ? sm_layer_build_auto(a->model, a->calib, &rl->job, mon, b, why, wn)
                         : sm_layer_build_run(a->model, a->calib, &rl->job, mon, b);
    if (!rl->is_auto && rl->auto_why)
        snprintf(why, wn, "%s", rl->auto_why);
    sm_resolved_layer_free(rl);
    return rc;
}

/* Groups for a resolved layer by its clustering (`algo`: k-means when the user asks to
 * re-cluster) at its count. Frees rl. */
static int cluster_layer(tui_app *a, sm_resolved_layer *rl, int k, const sm_moe_layer *ml, const sm_cluster_algo *algo,
                         const sm_monitor *mon, int *assign)
{
    rl->job.groups = NULL;
    rl->job.k = k;
    if (algo)
        rl->job.algo = *algo;
    int rc = sm_layer_cluster(a->calib, ml, &rl->job, mon, assign);
    sm_resolved_layer_free(rl);
    return rc;
}

/* ---- jobs ---------------------------------------------------------------------------------- */

/* Statistics of every MoE layer into the state; clusters for layers whose groups no plan gave
 * (the plan's target through the planner, else its clustering at the layer's k). */
static int job_calibrate(tui_app *a, const sm_monitor *mon)
{
    sm_monitor_span span;
    bool reused;
    sm_calib_free(a->calib);
    a->calib = a->calib_file[0] ? sm_calib_read(a->model, a->calib_file, -1)
                                : sm_calib_capture(a->model, &a->spec, NULL,
                                                   sm_monitor_span_init(&span, mon, 0, 0.6), &reused);
    if (!a->calib)
        return -1;
    const sm_config *c = sm_model_config(a->model);
    sm_planned_layer *planned = NULL;
    sm_planner_opts po;
    pthread_mutex_lock(&a->mu);
    sm_resolve_planner_opts(&a->s.plan, &po);
    pthread_mutex_unlock(&a->mu);
    if (a->planner_pending) {
        planned = xcalloc((size_t)c->n_layers, sizeof *planned);
        if (sm_planner_run(a->model, a->calib, &po, sm_monitor_span_init(&span, mon, 0.6, 0.7), planned)) {
            free(planned);
            return -1;
        }
    }
    int rc = 0;
    for (int l = 0; l < c->n_layers && !rc; l++) {
        if (!c->is_moe[l])
            continue;
        sm_moe_layer ml;
        const sm_layer_analysis *an;
        double lo = 0.7 + 0.3 * l / c->n_layers, hi = 0.7 + 0.3 * (l + 1) / c->n_layers;
        /* a stats file has the statistics: the layer's weights are not needed (seconds each) */
        if (sm_calib_has_stats(a->calib) ? sm_moe_layer_load_shell(a->model, l, &ml)
                                         : sm_moe_layer_load_mon(a->model, l, mon, &ml)) {
            rc = -1;
            break;
        }
        rc = sm_calib_analysis(a->calib, l, &ml.block, false, sm_monitor_span_init(&span, mon, lo, (lo + hi) / 2),
                               &an);
        int assign[TUI_MAX_EXPERTS];
        bool got = false;
        pthread_mutex_lock(&a->mu);
        tui_layer_data *d = &a->s.data[l];
        if (!rc) { /* shown at once: the layer's heatmap does not wait for its clustering */
            d->n = an->n;
            memcpy(d->freq, an->freq, sizeof(double) * (size_t)an->n);
            if ((d->have_saliency = an->saliency != NULL))
                memcpy(d->saliency, an->saliency, sizeof(double) * (size_t)an->n);
            const double *src[3] = {an->sim_output, an->sim_weight, an->sim_logit};
            for (int q = 0; q < 3; q++) {
                free(d->sim[q]);
                d->sim[q] = src[q] ? xmalloc(sizeof(double) * (size_t)an->n * (size_t)an->n) : NULL;
                if (src[q])
                    memcpy(d->sim[q], src[q], sizeof(double) * (size_t)an->n * (size_t)an->n);
            }
            d->have_stats = true;
        }
        tui_layer p = a->s.res[l];
        sm_resolved_layer rl;
        tui_layer_resolve(&a->s, l, NULL, &rl);
        pthread_mutex_unlock(&a->mu);
        if (!rc && !a->have_groups[l] && (p.is_auto || sm_merge_method_merges(p.method))) {
            if (planned && planned[l].assign && (planned[l].k == p.k || a->planner_pending)) {
                memcpy(assign, planned[l].assign, sizeof(int) * (size_t)p.n);
                got = true;
            } else {
                rc = cluster_layer(a, &rl, p.k, &ml, NULL, sm_monitor_span_init(&span, mon, (lo + hi) / 2, hi), assign);
                got = !rc;
            }
        }
        sm_resolved_layer_free(&rl);
        pthread_mutex_lock(&a->mu);
        if (got) { /* unless the user edited the groups meanwhile: then those are the plan's */
            tui_adopt_groups(&a->s, l, &p, assign);
            a->have_groups[l] = true; /* from now on the state's groups are the plan's */
        }
        pthread_mutex_unlock(&a->mu);
        sm_moe_layer_free(&ml);
        sm_calib_release(a->calib, l); /* the state has what it shows; keep one layer's statistics */
    }
    for (int l = 0; planned && l < c->n_layers; l++)
        sm_planned_layer_free(&planned[l]);
    free(planned);
    a->planner_pending = false;
    if (rc)
        return -1;
    pthread_mutex_lock(&a->mu);
    a->s.calibrated = true;
    int cur = a->s.layer;
    /* the bundled tokens are bytes: for a model with a real tokenizer they are ids, not text */
    bool bytes_for_tokenizer = !a->calib_file[0] && !a->n_text && a->tokens_default && c->vocab != 256;
    if (bytes_for_tokenizer)
        tui_say(&a->s, true, "calibrated on the bundled byte tokens: give --tokens FILE");
    else
        tui_say(&a->s, false, "calibrated on %s; previewing every layer",
                sm_basename(a->calib_file[0] ? a->calib_file : a->n_text ? a->text[0] : a->tokens));
    pthread_mutex_unlock(&a->mu);
    /* previews: the selected layer first, then every other one in the background */
    tui_push(a, (tui_job){TUI_JOB_PREVIEW, cur, 0, false, false});
    for (int l = 0; l < c->n_layers; l++)
        if (c->is_moe[l] && l != cur)
            tui_push(a, (tui_job){TUI_JOB_PREVIEW, l, 0, false, true});
    pthread_mutex_lock(&a->mu);
    bool other = a->s.other != NULL; /* a plan compared against before calibration: its errors now */
    pthread_mutex_unlock(&a->mu);
    for (int l = 0; other && l < c->n_layers; l++)
        if (c->is_moe[l])
            tui_push(a, (tui_job){TUI_JOB_OTHER, l, 0, false, true});
    return 0;
}

static int job_preview(tui_app *a, int l, bool force, const sm_monitor *mon)
{
    pthread_mutex_lock(&a->mu);
    if (!force && tui_preview_fresh(&a->s, l)) {
        pthread_mutex_unlock(&a->mu);
        return 0;
    }
    tui_layer p = a->s.res[l];
    unsigned gen = a->s.plan_gen[l];
    sm_resolved_layer rl;
    tui_layer_resolve(&a->s, l, NULL, &rl);
    pthread_mutex_unlock(&a->mu);
    sm_layer_build b;
    char why[600];
    if (build_layer(a, &rl, mon, &b, why, sizeof why))
        return -1;
    if (sm_layer_build_check(&b)) { /* a preview never shows nan */
        sm_layer_build_free(&b);
        return -1;
    }
    pthread_mutex_lock(&a->mu);
    tui_layer_data *d = &a->s.data[l];
    /* auto chose other groups than the clustering's (dominant ones): adopt them, unless the layer
     * was edited meanwhile — the plan then means what was previewed */
    if (p.is_auto && p.groups_auto && sm_merge_method_merges(b.merged.method) && a->s.plan_gen[l] == gen &&
        b.assign && tui_adopt_groups(&a->s, l, &p, b.assign))
        gen = a->s.plan_gen[l];
    d->have_preview = true;
    d->preview_gen = gen;
    d->output_error = b.output_error;
    d->member_error = b.mean_member_error;
    d->params_before = b.params_before;
    d->params_after = b.params_after;
    d->built_method = b.merged.method;
    d->built_align = b.merged.align_corr != 0;
    bool al;
    sm_merge_method mm;
    if (why[0] && sm_auto_choice_parse(why, &mm, &al) == 0)
        d->built_method = mm, d->built_align = al;
    for (int i = 0; i < p.n && i < TUI_MAX_EXPERTS; i++)
        d->built_slot[i] = b.merged.cluster_of ? b.merged.cluster_of[i] : i;
    snprintf(d->chosen, sizeof d->chosen, "%s", why);
    if (force) /* p: say it is done, also when nothing changed */
        tui_say(&a->s, false, "layer %d previewed again: output error %.4g", l, b.output_error);
    pthread_mutex_unlock(&a->mu);
    sm_layer_build_free(&b);
    sm_calib_release(a->calib, l); /* the state has the figures: one layer's inputs and statistics at a time */
    return 0;
}

static int job_recluster(tui_app *a, int l, const sm_monitor *mon)
{
    pthread_mutex_lock(&a->mu);
    tui_layer p = a->s.res[l];
    sm_resolved_layer rl;
    tui_layer_resolve(&a->s, l, NULL, &rl);
    pthread_mutex_unlock(&a->mu);
    sm_moe_layer ml;
    int assign[TUI_MAX_EXPERTS];
    if (sm_moe_layer_load_mon(a->model, l, mon, &ml)) {
        sm_resolved_layer_free(&rl);
        return -1;
    }
    const sm_cluster_algo kmeans = SM_CLUSTER_KMEANS;
    int rc = cluster_layer(a, &rl, p.k, &ml, &kmeans, mon, assign);
    sm_moe_layer_free(&ml);
    if (rc)
        return -1;
    pthread_mutex_lock(&a->mu);
    /* unless the groups were edited meanwhile (a - or + queued its own re-cluster) */
    tui_adopt_groups(&a->s, l, &p, assign);
    pthread_mutex_unlock(&a->mu);
    return job_preview(a, l, false, mon);
}

static int job_spectrum(tui_app *a, int l, int cluster, const sm_monitor *mon)
{
    pthread_mutex_lock(&a->mu);
    tui_layer p = a->s.res[l];
    bool fresh = tui_spectrum_fresh(&a->s, l) && a->s.spec_cluster == cluster;
    pthread_mutex_unlock(&a->mu);
    if (cluster >= p.k || fresh)
        return 0;
    sm_moe_layer ml;
    if (sm_moe_layer_load_mon(a->model, l, mon, &ml))
        return -1;
    const float **w[3];
    for (int q = 0; q < 3; q++)
        w[q] = xcalloc((size_t)p.n, sizeof *w[q]);
    int nm = 0;
    for (int i = 0; i < p.n; i++)
        if (p.assign[i] == cluster) {
            w[0][nm] = ml.gate[i], w[1][nm] = ml.up[i], w[2][nm] = ml.down[i];
            nm++;
        }
    double *sv[3] = {NULL, NULL, NULL};
    int len[3] = {0, 0, 0}, rc = 0;
    for (int q = 0; q < 3 && !rc; q++) {
        int64_t out = q == 2 ? ml.block.hidden : ml.inter, in = q == 2 ? ml.inter : ml.block.hidden;
        sm_matset set = {nm, out, in, w[q]};
        len[q] = (int)sm_usvd_max_rank(&set);
        sv[q] = xmalloc(sizeof(double) * (size_t)len[q]);
        sm_monitor_span span;
        rc = sm_usvd_spectrum(&set, sm_monitor_span_init(&span, mon, q / 3.0, (q + 1) / 3.0), sv[q]);
    }
    sm_moe_layer_free(&ml);
    for (int q = 0; q < 3; q++)
        free(w[q]);
    pthread_mutex_lock(&a->mu);
    tui_layer_data *d = &a->s.data[l];
    for (int q = 0; q < 3; q++) {
        free(d->spec[q]);
        d->spec[q] = rc ? NULL : sv[q];
        d->spec_len[q] = len[q];
        if (rc)
            free(sv[q]);
    }
    d->have_spectrum = !rc;
    d->spec_cluster = cluster;
    for (int i = 0; i < p.n; i++)
        d->spec_member[i] = p.assign[i] == cluster;
    pthread_mutex_unlock(&a->mu);
    return rc;
}

typedef struct {
    tui_app *a;
} ppl_build_ctx;

/* Layer L as the plan says it now, for the streamed perplexity run. An auto layer whose preview
 * is fresh is built as the preview decided (method and alignment; dominant groups the preview
 * chose are already the plan's, adopted by job_preview), exactly as auto built that candidate:
 * one build instead of every candidate's build and score. */
static int ppl_build_layer(void *ctx, int l, const sm_monitor *mon, sm_layer_build *out)
{
    ppl_build_ctx *c = ctx;
    pthread_mutex_lock(&c->a->mu);
    const tui_state *s = &c->a->s;
    const tui_layer_data *d = &s->data[l];
    sm_merge_method mm;
    bool al;
    bool previewed = s->res[l].is_auto && tui_preview_fresh(s, l) && d->chosen[0] &&
                     sm_auto_choice_parse(d->chosen, &mm, &al) == 0;
    sm_resolved_layer rl;
    tui_layer_resolve(s, l, previewed ? d->chosen : NULL, &rl);
    pthread_mutex_unlock(&c->a->mu);
    char why[600];
    return build_layer(c->a, &rl, mon, out, why, sizeof why);
}

/* Perplexity of the original model and of the plan on held-out token windows. Each layer is
 * built as the forward pass reaches it and freed after it, so memory holds one merged layer. */
#define TUI_PPL_WINDOWS 16
#define TUI_PPL_SEQ 256
/* The held-out windows: --heldout's tokens, or with calibration text (and no --heldout) the text's
 * windows after the calibration ones, which the statistics never saw (sm_calib_eval_windows). */
static int heldout_windows(tui_app *a, sm_tokens *t, int *T, int *n_seq)
{
    const int32_t *ids;
    int nw, len;
    if (a->n_text && !a->heldout_given && !a->calib_file[0]) {
        if (sm_calib_eval_windows(a->calib, &ids, &nw, &len))
            return sm_err("the calibration text has no windows left after the calibration ones for perplexity: "
                          "give more text, or --heldout FILE");
        t->n = (size_t)nw * (size_t)len;
        t->ids = xmalloc(t->n * sizeof *t->ids);
        memcpy(t->ids, ids, t->n * sizeof *t->ids);
        *T = len, *n_seq = nw;
        return 0;
    }
    if ((!a->heldout_given && sm_bundled_tokens_check(sm_model_config(a->model)->vocab, a->heldout, "--heldout")) ||
        sm_tokens_read(a->heldout, sm_model_config(a->model)->vocab, t))
        return -1;
    *T = TUI_PPL_SEQ;
    *n_seq = (int)(t->n / (size_t)*T < TUI_PPL_WINDOWS ? t->n / (size_t)*T : TUI_PPL_WINDOWS);
    return 0;
}

/* Layer l of the compared plan (other_gen `gen`) resolved, clustered first when its entry gives
 * no groups and the worker has not clustered it yet. 1 (nothing to free) when another plan was
 * opened to compare meanwhile; -1 with a message. */
static int other_layer_resolved(tui_app *a, int l, unsigned gen, const sm_monitor *mon, sm_resolved_layer *rl)
{
    pthread_mutex_lock(&a->mu);
    if (!a->s.other || a->s.other_gen != gen) {
        pthread_mutex_unlock(&a->mu);
        return 1;
    }
    bool cluster = !a->s.other->grouped[l];
    tui_layer p = a->s.other->res[l];
    tui_other_resolve(&a->s, l, rl);
    pthread_mutex_unlock(&a->mu);
    if (!cluster || !(p.is_auto || sm_merge_method_merges(p.method)))
        return 0;
    sm_moe_layer ml;
    int assign[TUI_MAX_EXPERTS];
    if (sm_moe_layer_load_mon(a->model, l, mon, &ml)) {
        sm_resolved_layer_free(rl);
        return -1;
    }
    int rc = cluster_layer(a, rl, p.k, &ml, NULL, mon, assign); /* frees rl */
    sm_moe_layer_free(&ml);
    if (rc)
        return -1;
    pthread_mutex_lock(&a->mu);
    bool same = a->s.other && a->s.other_gen == gen;
    if (same) {
        tui_other_set_groups(&a->s, l, assign);
        tui_other_resolve(&a->s, l, rl);
    }
    pthread_mutex_unlock(&a->mu);
    return same ? 0 : 1;
}

typedef struct {
    tui_app *a;
    unsigned gen; /* the compared plan's other_gen when the job started */
} other_build_ctx;

/* Layer L as the compared plan says, for its streamed perplexity run. */
static int other_build_layer(void *ctx, int l, const sm_monitor *mon, sm_layer_build *out)
{
    other_build_ctx *c = ctx;
    sm_resolved_layer rl;
    int rc = other_layer_resolved(c->a, l, c->gen, mon, &rl);
    if (rc)
        return rc < 0 ? -1 : sm_err("another plan was opened to compare meanwhile");
    char why[600];
    return build_layer(c->a, &rl, mon, out, why, sizeof why);
}

/* Perplexity of the original model and of the plan on the held-out windows; with `both` (the
 * compare view's P), of the plan compared against too, on the same windows, in the same job (one
 * Esc cancels it; what finished before stays). */
static int job_ppl(tui_app *a, bool both, const sm_monitor *mon)
{
    const sm_config *c = sm_model_config(a->model);
    sm_tokens t;
    int T = 0, n_seq = 0;
    if (heldout_windows(a, &t, &T, &n_seq))
        return -1;
    const sm_moe_block **blocks = xcalloc((size_t)c->n_layers, sizeof *blocks); /* none: the original */
    int rc = 0;
    pthread_mutex_lock(&a->mu);
    double orig = a->s.ppl_original;
    unsigned gen = tui_plan_gen_sum(&a->s);
    other_build_ctx oc = {a, a->s.other_gen};
    both = both && a->s.other;
    /* the compare view's P leaves a fresh perplexity of this plan as it is */
    bool this_plan = !both || a->s.ppl_plan < 0 || !tui_ppl_fresh(&a->s);
    pthread_mutex_unlock(&a->mu);
    double f0 = orig < 0 ? 0.2 : 0, f1 = both && this_plan ? (1 + f0) / 2 : 1; /* progress spans */
    sm_monitor_span span;
    if (n_seq < 1)
        rc = sm_err("%s holds fewer than %d tokens", a->heldout, T);
    if (!rc && orig < 0)
        rc = sm_perplexity_with_prec(a->model, t.ids, n_seq, T, blocks, a->spec.precision,
                                     sm_monitor_span_init(&span, mon, 0, f0), &orig);
    double pp = -1, po = -1;
    ppl_build_ctx bc = {a};
    if (!rc && this_plan)
        rc = sm_perplexity_built_prec(a->model, t.ids, n_seq, T, ppl_build_layer, &bc, a->spec.precision,
                                      sm_monitor_span_init(&span, mon, f0, f1), &pp);
    pthread_mutex_lock(&a->mu);
    if (orig > 0)
        a->s.ppl_original = orig;
    if (pp > 0) {
        a->s.ppl_plan = pp;
        a->s.ppl_gen = gen;
    }
    pthread_mutex_unlock(&a->mu);
    if (!rc && both)
        rc = sm_perplexity_built_prec(a->model, t.ids, n_seq, T, other_build_layer, &oc, a->spec.precision,
                                      sm_monitor_span_init(&span, mon, this_plan ? f1 : f0, 1), &po);
    free(blocks);
    sm_tokens_free(&t);
    pthread_mutex_lock(&a->mu);
    if (!rc && both && a->s.other && a->s.other_gen == oc.gen) {
        a->s.other->ppl = po;
        tui_say(&a->s, false, "perplexity on %d x %d held-out tokens: original %.3f, this plan %.3f, other %.3f (%.3fx this)",
                n_seq, T, orig, a->s.ppl_plan, po, po / a->s.ppl_plan);
    } else if (!rc && !both) {
        tui_say(&a->s, false, "perplexity on %d x %d held-out tokens: original %.3f, plan %.3f (%+.1f%%)", n_seq, T,
                orig, pp, 100 * (pp - orig) / orig);
    }
    pthread_mutex_unlock(&a->mu);
    return rc;
}

/* Task accuracy (eval --task, eval/mcscore.h) of the original model and of the plan, each layer
 * built as the forward pass reaches it (as for perplexity); the whole task runs as one batch per
 * TUI_ACC_BATCH_TOKENS so that a layer is built once per batch. */
#define TUI_ACC_BATCH_TOKENS 65536
static int job_accuracy(tui_app *a, const sm_monitor *mon)
{
    sm_mc_task task;
    if (sm_mc_task_read(a->task, &task))
        return -1;
    sm_tok *tok = sm_tok_load(sm_model_dir(a->model));
    if (!tok) {
        sm_mc_task_free(&task);
        return sm_err_prefix("the accuracy key needs the model's tokenizer");
    }
    pthread_mutex_lock(&a->mu);
    double orig = a->s.acc_original;
    ppl_build_ctx bc = {a};
    unsigned gen = tui_plan_gen_sum(&a->s);
    pthread_mutex_unlock(&a->mu);
    sm_monitor_span span;
    /* the original: batched as eval --task */
    sm_mc_opts o = {.add_special = true, .quiet = true, .precision = a->spec.precision};
    sm_mc_scores sc;
    int rc = 0;
    if (orig < 0) {
        o.mon = sm_monitor_span_init(&span, mon, 0, 0.3);
        if (!(rc = sm_mc_score(a->model, tok, &task, &o, &sc)))
            orig = sc.acc;
        sm_mc_scores_free(&sc);
    }
    sm_built_layers bl;
    sm_built_layers_init(&bl, a->model, ppl_build_layer, &bc, sm_monitor_span_init(&span, mon, 0.3, 1));
    o.mon = bl.mon;
    o.batch_tokens = TUI_ACC_BATCH_TOKENS;
    o.moe_override = sm_built_override;
    o.on_layer = sm_built_layer_done;
    o.override_ctx = &bl;
    double acc = -1, acc_norm = -1;
    if (!rc && !(rc = sm_mc_score(a->model, tok, &task, &o, &sc)))
        acc = sc.acc, acc_norm = sc.acc_norm;
    if (!rc)
        sm_mc_scores_free(&sc);
    sm_built_layers_end(&bl);
    sm_tok_free(tok);
    pthread_mutex_lock(&a->mu);
    if (orig >= 0)
        a->s.acc_original = orig;
    if (!rc) {
        a->s.acc_plan = acc;
        a->s.acc_gen = gen;
        tui_say(&a->s, false, "accuracy on %s (%zu items): original %.3f, plan %.3f (acc_norm %.3f)",
                 sm_basename(a->task), task.n, orig, acc, acc_norm);
    }
    pthread_mutex_unlock(&a->mu);
    sm_mc_task_free(&task);
    return rc;
}

static int job_save(tui_app *a)
{
    pthread_mutex_lock(&a->mu);
    char path[512];
    snprintf(path, sizeof path, "%s", a->s.plan_path);
    sm_plan p;
    tui_app_plan(a, &p, path);
    pthread_mutex_unlock(&a->mu);
    sm_paths inputs = {0}, outputs = {0}; /* never over the model, the tokens or the stats file */
    tui_app_inputs(a, &inputs);
    sm_paths_add(&outputs, "plan", path);
    int rc = sm_check_output_paths(&inputs, &outputs) || sm_plan_write(&p, path) ? -1 : 0;
    sm_paths_free(&inputs);
    sm_paths_free(&outputs);
    sm_plan_free(&p);
    pthread_mutex_lock(&a->mu);
    if (!rc) {
        a->s.modified = false;
        tui_say(&a->s, false, "plan saved to %s (submoe apply %s -o DIR runs it)%s", path,
                 path, tui_take_warning(a));
    }
    pthread_mutex_unlock(&a->mu);
    return rc;
}

static int job_open(tui_app *a, const sm_monitor *mon)
{
    char old_tokens[PATH_MAX], old_calib[PATH_MAX];
    snprintf(old_tokens, sizeof old_tokens, "%s", a->tokens);
    snprintf(old_calib, sizeof old_calib, "%s", a->calib_file);
    sm_calib_spec old_spec = a->spec;
    bool old_text = a->n_text > 0;
    if (tui_app_load_plan(a, a->open_path))
        return -1;
    bool same_calib = a->calib && !strcmp(old_tokens, a->tokens) && !strcmp(old_calib, a->calib_file) &&
                      old_spec.samples == a->spec.samples && old_spec.seq_len == a->spec.seq_len &&
                      old_spec.keep == a->spec.keep && old_spec.heldout == a->spec.heldout &&
                      old_spec.sample == a->spec.sample && old_spec.seed == a->spec.seed && !old_text && !a->n_text;
    if (!same_calib) {
        pthread_mutex_lock(&a->mu);
        a->s.calibrated = false;
        pthread_mutex_unlock(&a->mu);
    }
    /* statistics (again when the plan calibrates differently), clusters, then previews */
    int rc = job_calibrate(a, mon);
    pthread_mutex_lock(&a->mu);
    if (!rc) {
        tui_say(&a->s, false, "opened %s; previewing every layer", a->s.plan_path);
    }
    pthread_mutex_unlock(&a->mu);
    return rc;
}

static int job_commit(tui_app *a, bool force, const sm_monitor *mon)
{
    pthread_mutex_lock(&a->mu);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", a->s.commit_dir);
    sm_plan p;
    tui_app_plan(a, &p, a->s.plan_path);
    static const sm_out_format fmts[3] = {SM_OUT_SUBMOE, SM_OUT_HF, SM_OUT_HF_EXPANDED};
    sm_out_format fmt = fmts[a->s.commit_format % 3];
    if (!force && sm_exists(dir)) {
        a->s.dialog = TUI_DIALOG_OVERWRITE; /* ask; 'y' queues the commit again with force */
        pthread_mutex_unlock(&a->mu);
        sm_plan_free(&p);
        return 0;
    }
    tui_say(&a->s, false, "committing to %s (%s) ...", dir, sm_out_format_name(fmt));
    pthread_mutex_unlock(&a->mu);
    sm_paths inputs = {0};
    tui_app_inputs(a, &inputs);
    sm_apply_opts o = {.outdir = dir, .format = (int)fmt, .force = force, .quiet = true, .mon = mon, .inputs = &inputs};
    sm_apply_report rep;
    int rc = sm_apply(&p, &o, &rep);
    sm_paths_free(&inputs);
    sm_plan_free(&p);
    if (!rc) {
        uint64_t bytes = sm_dir_size(rep.outdir[0] ? rep.outdir : dir);
        pthread_mutex_lock(&a->mu);
        snprintf(a->s.committed, sizeof a->s.committed, "%.500s", dir);
        tui_say(&a->s, false, "committed to %s (%s): %.1f MB, experts at %.0f%%%s", dir,
                 sm_out_format_name(fmt), (double)bytes / 1e6,
                 rep.params_before ? 100.0 * (double)rep.params_after / (double)rep.params_before : 0.0,
                 tui_take_warning(a));
        pthread_mutex_unlock(&a->mu);
    }
    return rc;
}

/* Read the plan O named, check it against the model, keep it as the plan compared against, and
 * build its layers in the background for their errors. */
static int job_compare(tui_app *a)
{
    char path[PATH_MAX];
    pthread_mutex_lock(&a->mu);
    snprintf(path, sizeof path, "%s", a->compare_path);
    pthread_mutex_unlock(&a->mu);
    sm_plan p;
    if (sm_plan_read(path, &p) || sm_plan_check_model(&p, a->model)) {
        sm_plan_free(&p);
        return sm_err_prefix("cannot compare with it");
    }
    pthread_mutex_lock(&a->mu);
    tui_other_open(&a->s, &p, path);
    a->s.view = TUI_VIEW_COMPARE;
    int n = 0;
    for (int l = 0; l < a->s.n_layers; l++)
        n += a->s.is_moe[l];
    char shown[64];
    tui_short_path(path, 40, shown, sizeof shown, a->s.utf8);
    tui_say(&a->s, false, "comparing with %s: previewing its %d MoE layer%s", shown, n, n == 1 ? "" : "s");
    const sm_config *c = sm_model_config(a->model);
    pthread_mutex_unlock(&a->mu);
    for (int l = 0; l < c->n_layers; l++)
        if (c->is_moe[l])
            tui_push(a, (tui_job){TUI_JOB_OTHER, l, 0, false, true});
    return 0;
}

/* Layer l as the compared plan says: clustered when its entry gives no groups, then built for its
 * held-out error and parameters. Dropped when another plan was opened meanwhile. */
static int job_other(tui_app *a, int l, const sm_monitor *mon)
{
    pthread_mutex_lock(&a->mu);
    if (!a->s.other || a->s.other->have_error[l]) {
        pthread_mutex_unlock(&a->mu);
        return 0;
    }
    unsigned gen = a->s.other_gen;
    pthread_mutex_unlock(&a->mu);
    sm_resolved_layer rl;
    int rc = other_layer_resolved(a, l, gen, mon, &rl);
    if (rc) /* 1: another plan was opened meanwhile */
        return rc < 0 ? -1 : 0;
    sm_layer_build b;
    char why[600];
    if (build_layer(a, &rl, mon, &b, why, sizeof why))
        return -1;
    rc = sm_layer_build_check(&b);
    pthread_mutex_lock(&a->mu);
    tui_other *o = a->s.other;
    if (!rc && o && a->s.other_gen == gen) {
        o->have_error[l] = true;
        o->error[l] = b.output_error;
        o->params[l] = b.params_after;
        if (!o->grouped[l] && b.assign) /* auto's groups, as built */
            tui_other_set_groups(&a->s, l, b.assign);
    }
    pthread_mutex_unlock(&a->mu);
    sm_layer_build_free(&b);
    sm_calib_release(a->calib, l);
    return rc;
}

int tui_job_run(tui_app *a, const tui_job *j, const sm_monitor *mon)
{
    bool ready = a->calib != NULL;
    if (!ready && j->kind == TUI_JOB_OTHER)
        return 0; /* queued again when calibration ends */
    if (!ready && j->kind != TUI_JOB_CALIB && j->kind != TUI_JOB_SAVE && j->kind != TUI_JOB_OPEN &&
        j->kind != TUI_JOB_COMPARE) {
        tui_status(a, false, "still calibrating: try again when it is done");
        return 0;
    }
    switch (j->kind) {
    case TUI_JOB_CALIB: return job_calibrate(a, mon);
    case TUI_JOB_PREVIEW: return job_preview(a, j->layer, j->force, mon);
    case TUI_JOB_RECLUSTER: return job_recluster(a, j->layer, mon);
    case TUI_JOB_SPECTRUM: return job_spectrum(a, j->layer, j->cluster, mon);
    case TUI_JOB_PPL: return job_ppl(a, j->cluster == TUI_PPL_BOTH, mon);
    case TUI_JOB_ACCURACY: return job_accuracy(a, mon);
    case TUI_JOB_SAVE: return job_save(a);
    case TUI_JOB_OPEN: return job_open(a, mon);
    case TUI_JOB_COMMIT: return job_commit(a, j->force, mon);
    case TUI_JOB_COMPARE: return job_compare(a);
    case TUI_JOB_OTHER: return job_other(a, j->layer, mon);
    default: return 0;
    }
}

/* build: one MoE layer of a plan, built in memory (see build.h). */
#include "pipeline/build.h"
#include "engine/align.h"
#include "forward/forward.h"
#include "util/diag.h"
#include "util/mem.h"

#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sm_layer_cluster(sm_calib *c, const sm_moe_layer *src, const sm_layer_job *job, const sm_monitor *mon,
                     int *assign)
{
    int n = src->block.n_router;
    if (job->groups) {
        memcpy(assign, job->groups, sizeof(int) * (size_t)n);
        return sm_cluster_canonical(assign, n) < 0 ? -1 : 0;
    }
    const sm_layer_analysis *a;
    if (sm_calib_analysis(c, job->layer, &src->block, false, mon, &a))
        return -1;
    if (job->k < 1 || job->k > n)
        return sm_err("cannot make %d clusters of %d experts", job->k, n);
    return sm_engine_cluster(a, job->algo, job->sim, job->k, job->seed, mon, assign);
}

static double mean_member_error(const sm_merged_layer *l)
{
    if (!l->mats)
        return -1;
    double s = 0;
    int cnt = 0;
    for (int e = 0; e < l->n_experts; e++)
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < l->mats[e][j].n_members; i++) {
                s += l->mats[e][j].member_err[i];
                cnt++;
            }
    return cnt ? s / cnt : 0;
}

/* A build on a layer already loaded (`shared`, borrowed: auto's candidates share one copy of
 * the source weights) or loaded here (NULL); `ref`: the source's output on the held-out rows
 * (sm_engine_reference), or NULL to compute it. */
static int build_with(const sm_model *m, sm_calib *c, const sm_layer_job *job, const sm_monitor *mon,
                      const sm_moe_layer *shared, const float *ref, sm_layer_build *out)
{
    memset(out, 0, sizeof *out);
    out->layer = job->layer;
    out->output_error = -1;
    sm_monitor_span span;
    if (shared) {
        out->src = *shared;
        out->src.block.shared = out->src.shared_inter ? &out->src.shared : NULL;
        out->src_borrowed = true;
    } else if (sm_moe_layer_load_mon(m, job->layer, mon, &out->src)) {
        return -1;
    }
    const sm_moe_block *src = &out->src.block;
    int n = out->n = src->n_router;
    sm_merge_method method = job->spec.method;
    bool merges = sm_merge_method_merges(method);
    const float *fit = NULL, *held = NULL;
    int64_t m_fit = 0, m_held = 0;
    /* keep needs no calibration (a plan of kept layers is applied without one) */
    if ((c || method != SM_MERGE_KEEP) && sm_calib_inputs(c, job->layer, &fit, &m_fit, &held, &m_held))
        goto fail;
    /* Statistics: merges weight members by frequency and pruning by frequency needs them too;
     * whitening needs the input Grams. */
    if (method != SM_MERGE_KEEP &&
        sm_calib_analysis(c, job->layer, src, method == SM_MERGE_SUBMOE_WHITENED,
                          sm_monitor_span_init(&span, mon, 0.0, 0.3), &out->analysis))
        goto fail;
    if (!(out->assign = sm_alloc((size_t)n, sizeof *out->assign)))
        goto fail;
    out->k = method == SM_MERGE_KEEP ? n : job->k;
    if (merges && sm_layer_cluster(c, &out->src, job, sm_monitor_span_init(&span, mon, 0.3, 0.4), out->assign))
        goto fail;
    if (sm_engine_merge(src, out->analysis, merges ? out->assign : NULL, out->k, &job->spec, fit, m_fit,
                        sm_monitor_span_init(&span, mon, 0.4, 0.9), &out->merged))
        goto fail;
    memcpy(out->assign, out->merged.cluster_of, sizeof(int) * (size_t)n);
    out->block = sm_merged_layer_block(&out->merged, src);
    if (m_held > 0 &&
        sm_engine_error_ref(src, &out->merged, held, ref, m_held, sm_monitor_span_init(&span, mon, 0.9, 1.0),
                            &out->output_error))
        goto fail;
    out->mean_member_error = mean_member_error(&out->merged);
    out->params_before = (int64_t)n * 3 * out->src.inter * src->hidden;
    out->params_after = sm_merged_layer_params(&out->merged);
    return 0;
fail:
    sm_err_prefix("layer %d", job->layer);
    sm_layer_build_free(out);
    return -1;
}

int sm_layer_build_run(const sm_model *m, sm_calib *c, const sm_layer_job *job, const sm_monitor *mon,
                       sm_layer_build *out)
{
    return build_with(m, c, job, mon, NULL, NULL, out);
}

int sm_layer_build_check(const sm_layer_build *b)
{
    if (isfinite(b->output_error) && isfinite(b->mean_member_error))
        return 0;
    return sm_err("layer %d: the merged layer's %s is not finite: the calibration inputs or the merge overflow float32",
                  b->layer, isfinite(b->output_error) ? "weight error" : "held-out output error");
}

void sm_layer_build_free(sm_layer_build *b)
{
    if (!b)
        return;
    sm_merged_layer_free(&b->merged);
    if (!b->src_borrowed)
        sm_moe_layer_free(&b->src);
    free(b->assign);
    memset(b, 0, sizeof *b);
    /* A layer's matrices are a few MB each: below glibc's (adaptive) mmap threshold they live in
     * the heap, whose freed pages stay resident. Hand them back, so that building layer after
     * layer keeps the memory of one layer, not of every layer built so far. */
    malloc_trim(0);
}

/* Move a build to another place: the layer's block points at its own shared expert, and the
 * merged block at the source block, so both are re-pointed (a plain struct copy would leave them
 * in the old place). */
static void build_move(sm_layer_build *dst, sm_layer_build *src)
{
    *dst = *src;
    dst->src.block.shared = dst->src.shared_inter ? &dst->src.shared : NULL;
    dst->block = sm_merged_layer_block(&dst->merged, &dst->src.block);
    memset(src, 0, sizeof *src);
}

/* The score of a candidate build: held-out loss of the whole model with it swapped in (log
 * perplexity), or its held-out MoE-block output error. */
static int auto_score(const sm_model *m, const sm_layer_build *b, int layer, const sm_moe_block **blocks,
                      const int32_t *ids, int n_seq, int T, const sm_monitor *mon, double *score)
{
    *score = b->output_error;
    if (blocks) {
        blocks[layer] = &b->block;
        double ppl;
        int rc = sm_perplexity_with(m, ids, n_seq, T, blocks, mon, &ppl);
        blocks[layer] = NULL;
        if (rc)
            return -1;
        *score = log(ppl);
    }
    if (!isfinite(*score)) /* a NaN is not "no held-out rows": say what it is */
        return sm_err("layer %d: a candidate's held-out error is not finite: the calibration inputs or the merged "
                      "weights overflow float32", layer);
    if (*score < 0)
        return sm_err("layer %d: method auto needs held-out calibration rows", layer);
    return 0;
}

typedef struct {
    sm_merge_method method;
    bool align, dominant;
} auto_candidate;

#define AUTO_MAX_CANDIDATES 6

/* Candidates: the merge without and with neuron alignment (on the job's groups, and with
 * job->regroup also on dominant groups), then both prunings. An aligned merge follows its
 * unaligned twin (aligned_twin looks back for it). */
static int auto_candidates(const sm_layer_job *job, auto_candidate *cand)
{
    int nc = 0;
    bool merges = sm_merge_method_merges(job->spec.method) && job->groups;
    bool regroup = merges && job->regroup;
    if (merges) {
        cand[nc++] = (typeof(cand[0])){job->spec.method, false, false};
        cand[nc++] = (typeof(cand[0])){job->spec.method, true, false};
    }
    if (regroup) { /* skipped when the dominant groups are the job's own */
        cand[nc++] = (typeof(cand[0])){job->spec.method, false, true};
        cand[nc++] = (typeof(cand[0])){job->spec.method, true, true};
    }
    cand[nc++] = (typeof(cand[0])){SM_MERGE_PRUNE_FREQUENCY, false, false};
    cand[nc++] = (typeof(cand[0])){SM_MERGE_PRUNE_OUTPUT, false, false};
    return nc;
}

static sm_layer_job candidate_job(const sm_layer_job *job, const auto_candidate *cand, const int *dominant,
                                  sm_align_memo *memo)
{
    sm_layer_job j = *job;
    j.spec.method = cand->method;
    j.spec.align = cand->align;
    j.spec.align_memo = memo;
    if (cand->dominant)
        j.groups = dominant;
    return j;
}

/* An aligned candidate whose alignments permute nothing is its unaligned twin (same method and
 * groups), byte for byte: its twin's score, when the twin was scored (else -1). The alignments
 * are computed into memo, where the build finds them if it runs. */
static int aligned_twin(sm_calib *c, const sm_layer_job *j, const sm_moe_layer *src,
                        const auto_candidate *cand, int i, const bool *scored, sm_align_memo *memo,
                        const sm_monitor *mon, int *twin)
{
    *twin = -1;
    for (int q = 0; q < i && *twin < 0; q++)
        if (scored[q] && !cand[q].align && cand[q].method == cand[i].method && cand[q].dominant == cand[i].dominant)
            *twin = q;
    if (*twin < 0)
        return 0;
    const int n = src->block.n_router;
    const sm_layer_analysis *a;
    const float *fit, *held;
    int64_t m_fit, m_held;
    int *assign = sm_alloc((size_t)n, sizeof *assign), moved = 0;
    int rc = !assign || sm_calib_inputs(c, j->layer, &fit, &m_fit, &held, &m_held) ||
                     sm_calib_analysis(c, j->layer, &src->block, j->spec.method == SM_MERGE_SUBMOE_WHITENED, mon, &a) ||
                     sm_layer_cluster(c, src, j, mon, assign) ||
                     sm_align_moves(&src->block, a->freq, assign, j->k, fit, m_fit, memo, mon, &moved)
                 ? -1
                 : 0;
    free(assign);
    if (moved)
        *twin = -1;
    return rc;
}

static void append_score(char *errs, size_t len, size_t *used, const auto_candidate *cand, double score)
{
    *used += (size_t)snprintf(errs + *used, *used < len ? len - *used : 0, "%s%s%s%s %.4g", *used ? ", " : "",
                              sm_merge_method_name(cand->method), cand->align ? "+align" : "",
                              cand->dominant ? "/dominant" : "", score);
}

int sm_layer_build_auto(const sm_model *m, sm_calib *c, const sm_layer_job *job, const sm_monitor *mon,
                        sm_layer_build *out, char *why, size_t why_len)
{
    auto_candidate cand[AUTO_MAX_CANDIDATES];
    const int nc = auto_candidates(job, cand);
    const bool regroup = sm_merge_method_merges(job->spec.method) && job->groups && job->regroup;
    int n = sm_model_layer_experts(m, job->layer);
    int *dominant = regroup ? sm_alloc((size_t)n, sizeof *dominant) : NULL;
    bool skip_dominant = !regroup;
    if (regroup && !dominant)
        return -1;
    /* The score: held-out loss of the whole model with the candidate layer swapped in, when a
     * forward pass is cheap and held-out windows exist (block error alone can mislead: a layer
     * whose pruning looks harmless locally may hurt much more downstream); else the held-out
     * MoE-block output error. */
    const int32_t *ids = NULL;
    int n_seq = 0, T = 0;
    bool by_loss = sm_model_param_count(m) <= SM_AUTO_LOSS_MAX_PARAMS && sm_calib_eval_windows(c, &ids, &n_seq, &T) == 0;
    const sm_config *cfg = sm_model_config(m);
    const sm_moe_block **blocks = by_loss ? sm_zalloc((size_t)cfg->n_layers, sizeof *blocks) : NULL;
    if (by_loss && !blocks) {
        free(dominant);
        return -1;
    }
    /* One copy of the source layer and one reference forward on the held-out rows, shared by
     * every candidate (each used to load its own copy and recompute the reference). */
    sm_moe_layer src;
    const float *fit, *held = NULL;
    int64_t m_fit, m_held = 0;
    float *ref = NULL;
    sm_monitor_span span0;
    if (sm_moe_layer_load_mon(m, job->layer, sm_monitor_span_init(&span0, mon, 0.0, 0.0), &src)) {
        free(blocks), free(dominant);
        return -1;
    }
    if (sm_calib_inputs(c, job->layer, &fit, &m_fit, &held, &m_held) ||
        (m_held > 0 && (!(ref = sm_alloc_f32((size_t)(m_held * src.block.hidden))) ||
                        sm_engine_reference(&src.block, held, m_held, sm_monitor_span_init(&span0, mon, 0.0, 0.0), ref)))) {
        sm_err_prefix("layer %d", job->layer);
        free(ref), free(blocks), free(dominant);
        sm_moe_layer_free(&src);
        return -1;
    }
    sm_layer_build best;
    memset(&best, 0, sizeof best);
    double best_score = 0;
    int have = -1, rc = 0;
    bool best_held = false; /* best holds the best-so-far build (else only its score is kept) */
    size_t used = 0;
    char errs[600] = "";
    sm_align_memo *memo = sm_align_memo_new(n);
    bool scored[AUTO_MAX_CANDIDATES] = {false};
    double score_of[AUTO_MAX_CANDIDATES];
    rc = memo ? 0 : -1;
    for (int i = 0; i < nc && !rc; i++) {
        if (cand[i].dominant && skip_dominant)
            continue;
        sm_layer_job j = candidate_job(job, &cand[i], dominant, memo);
        sm_layer_build b;
        sm_monitor_span span;
        double lo = (double)i / nc, hi = (i + 1.0) / nc, score;
        int twin = -1;
        if (cand[i].align &&
            aligned_twin(c, &j, &src, cand, i, scored, memo, sm_monitor_span_init(&span, mon, lo, lo + (hi - lo) * 0.3),
                         &twin)) {
            rc = -1;
            break;
        }
        if (twin >= 0) { /* its twin's build and score: nothing to build */
            append_score(errs, sizeof errs, &used, &cand[i], score_of[twin]);
            continue;
        }
        const double b_lo = cand[i].align ? lo + (hi - lo) * 0.3 : lo; /* after the alignments */
        if (build_with(m, c, &j, sm_monitor_span_init(&span, mon, b_lo, lo + (hi - lo) * 0.6), &src, ref, &b)) {
            rc = -1;
            break;
        }
        if (i == 0 && regroup) {
            /* dominant groups from the statistics the first merge just used (no second load of
             * the layer); tried only when they differ from the job's groups */
            int *own = sm_alloc((size_t)n, sizeof *own);
            rc = own ? sm_cluster_dominant(b.analysis->freq, b.analysis->sim_output, n, job->k, dominant) : -1;
            if (!rc) {
                memcpy(own, job->groups, sizeof(int) * (size_t)n);
                sm_cluster_canonical(own, n);
                skip_dominant = memcmp(own, dominant, sizeof(int) * (size_t)n) == 0;
            }
            free(own);
            if (rc) {
                sm_layer_build_free(&b);
                break;
            }
        }
        if (auto_score(m, &b, job->layer, blocks, ids, n_seq, T,
                       sm_monitor_span_init(&span, mon, lo + (hi - lo) * 0.6, hi), &score)) {
            sm_layer_build_free(&b);
            rc = -1;
            break;
        }
        append_score(errs, sizeof errs, &used, &cand[i], score);
        scored[i] = true;
        score_of[i] = score;
        if (have < 0 || score < best_score) {
            if (best_held)
                sm_layer_build_free(&best);
            /* A merged layer owns weights about the size of the source's: holding it while the
             * next candidate is built would need room for three layers. Keep its score and build
             * it again if it wins. A pruned layer only points into the shared source: keep it. */
            best_held = !sm_merge_method_merges(cand[i].method);
            if (best_held)
                build_move(&best, &b);
            else
                sm_layer_build_free(&b);
            best_score = score;
            have = i;
        } else {
            sm_layer_build_free(&b);
        }
    }
    if (!rc && have >= 0 && !best_held) { /* the winner again: the same job on the same rows, the same layer */
        sm_layer_job j = candidate_job(job, &cand[have], dominant, memo);
        sm_monitor_span span;
        rc = build_with(m, c, &j, sm_monitor_span_init(&span, mon, 1.0, 1.0), &src, ref, &best);
        best_held = rc == 0;
    }
    sm_align_memo_free(memo);
    free(blocks);
    free(dominant);
    free(ref);
    if (rc) {
        if (best_held)
            sm_layer_build_free(&best);
        sm_moe_layer_free(&src);
        return -1;
    }
    snprintf(why, why_len, "%s%s%s (%s: %s)", sm_merge_method_name(cand[have].method),
             cand[have].align ? "+align" : "", cand[have].dominant ? "/dominant" : "",
             by_loss ? "held-out loss, nats/token" : "held-out output error", errs);
    build_move(out, &best);
    out->src_borrowed = false; /* the winner takes the shared copy */
    return 0;
}

int sm_auto_choice_parse(const char *why, sm_merge_method *out, bool *align)
{
    char name[40];
    if (!why || sscanf(why, "%39[a-z-]", name) != 1)
        return -1;
    *align = !strncmp(why + strlen(name), "+align", 6);
    return sm_merge_method_parse(name, out);
}

typedef struct {
    const sm_moe_block *const *blocks;
    const sm_monitor *mon;
    int n_layers;
} ppl_ctx;

static int ppl_override(void *ctx, int layer, const sm_moe_block **block)
{
    ppl_ctx *p = ctx;
    *block = p->blocks[layer];
    return 0;
}

static void ppl_layer(void *ctx, int done)
{
    ppl_ctx *p = ctx;
    sm_monitor_report(p->mon, (done + 1.0) / (p->n_layers + 1.0), "perplexity");
}

/* Perplexity with MoE layers from `override`, `on_layer` after each layer (both given ctx). */
static int ppl_run(const sm_model *m, const int32_t *ids, int n_seq, int seq_len,
                   int (*override)(void *, int, const sm_moe_block **), void (*on_layer)(void *, int), void *ctx,
                   sm_precision precision, const sm_monitor *mon, double *ppl)
{
    sm_forward_opts fo;
    sm_forward_opts_init(&fo);
    fo.precision = precision;
    double nll = 0;
    uint64_t cnt = 0;
    fo.nll_sum = &nll;
    fo.nll_count = &cnt;
    fo.moe_override = override;
    fo.moe_override_ctx = ctx;
    fo.on_layer = on_layer;
    fo.on_layer_ctx = ctx;
    fo.mon = mon; /* cancellable between chunks; chunks keep memory bounded */
    if (sm_forward(m, ids, n_seq, seq_len, &fo))
        return -1;
    if (!cnt)
        return sm_err("no tokens to predict");
    *ppl = exp(nll / (double)cnt);
    sm_monitor_report(mon, 1.0, "perplexity");
    return 0;
}

int sm_perplexity_with_prec(const sm_model *m, const int32_t *ids, int n_seq, int seq_len,
                            const sm_moe_block *const *blocks, sm_precision precision, const sm_monitor *mon,
                            double *ppl)
{
    ppl_ctx p = {blocks, mon, sm_model_config(m)->n_layers};
    return ppl_run(m, ids, n_seq, seq_len, ppl_override, ppl_layer, &p, precision, mon, ppl);
}

int sm_perplexity_with(const sm_model *m, const int32_t *ids, int n_seq, int seq_len,
                       const sm_moe_block *const *blocks, const sm_monitor *mon, double *ppl)
{
    return sm_perplexity_with_prec(m, ids, n_seq, seq_len, blocks, SM_PRECISION_FP32, mon, ppl);
}

void sm_built_layers_init(sm_built_layers *b, const sm_model *m, sm_layer_builder build, void *ctx,
                          const sm_monitor *mon)
{
    memset(b, 0, sizeof *b);
    b->build = build;
    b->ctx = ctx;
    b->mon = mon;
    b->n_layers = sm_model_config(m)->n_layers;
    if (mon)
        b->cancel_only.cancel = mon->cancel;
}

int sm_built_override(void *ctx, int layer, const sm_moe_block **block)
{
    sm_built_layers *p = ctx;
    if (p->have)
        sm_layer_build_free(&p->cur);
    p->have = false;
    int rc = p->build(p->ctx, layer, p->mon ? &p->cancel_only : NULL, &p->cur);
    if (rc < 0)
        return -1;
    p->have = rc == 0;
    *block = p->have ? &p->cur.block : NULL;
    return 0;
}

void sm_built_layer_done(void *ctx, int done)
{
    sm_built_layers *p = ctx;
    if (p->have)
        sm_layer_build_free(&p->cur);
    p->have = false;
    sm_monitor_report(p->mon, (done + 1.0) / (p->n_layers + 1.0), "building and evaluating layers");
}

void sm_built_layers_end(sm_built_layers *b)
{
    if (b->have) /* a run stopped inside a layer */
        sm_layer_build_free(&b->cur);
    b->have = false;
}

int sm_perplexity_built_prec(const sm_model *m, const int32_t *ids, int n_seq, int seq_len, sm_layer_builder build,
                             void *build_ctx, sm_precision precision, const sm_monitor *mon, double *ppl)
{
    sm_built_layers p;
    sm_built_layers_init(&p, m, build, build_ctx, mon);
    int rc = ppl_run(m, ids, n_seq, seq_len, sm_built_override, sm_built_layer_done, &p, precision, mon, ppl);
    sm_built_layers_end(&p);
    return rc;
}

int sm_perplexity_built(const sm_model *m, const int32_t *ids, int n_seq, int seq_len, sm_layer_builder build,
                        void *build_ctx, const sm_monitor *mon, double *ppl)
{
    return sm_perplexity_built_prec(m, ids, n_seq, seq_len, build, build_ctx, SM_PRECISION_FP32, mon, ppl);
}

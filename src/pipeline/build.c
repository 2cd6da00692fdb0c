/* build: one MoE layer of a plan, built in memory (see build.h). */
#include "pipeline/build.h"
#include "engine/align.h"
#include "engine/heldout.h"
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
 * the source weights) or loaded here (NULL); the held-out error from `hc` (the shared layer's
 * cached outputs on the held-out rows) when given, else by block forward against `ref` (the source's
 * output on the held-out rows, sm_engine_reference), or NULL to compute it. */
static int build_with(const sm_model *m, sm_calib *c, const sm_layer_job *job, const sm_monitor *mon,
                      const sm_moe_layer *shared, const float *ref, sm_heldout *hc, sm_layer_build *out)
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
    if (hc && !job->no_output_error &&
        sm_heldout_error(hc, &out->block, sm_monitor_span_init(&span, mon, 0.9, 1.0), &out->output_error))
        goto fail;
    if (!hc && m_held > 0 && !job->no_output_error &&
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
    return build_with(m, c, job, mon, NULL, NULL, NULL, out);
}

int sm_layer_build_on(const sm_model *m, sm_calib *c, const sm_layer_job *job, const sm_monitor *mon,
                      const sm_moe_layer *src, sm_layer_build *out)
{
    return build_with(m, c, job, mon, src, NULL, NULL, out);
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

typedef enum { AUTO_GROUPS_OWN, AUTO_GROUPS_DOMINANT, AUTO_GROUPS_REAP } auto_groups;
static const char *const auto_groups_tag[] = {"", "/dominant", "/reap"};

typedef struct {
    sm_merge_method method;
    bool align, refit;
    auto_groups groups;
} auto_candidate;

/* The fixed candidates, at most 9, and one more: the best merge refitted. */
#define AUTO_MAX_CANDIDATES 10

/* Candidates: the merge without and with neuron alignment on the job's groups (with job->regroup
 * also on dominant groups), prune-frequency and prune-output; then REAP's (with job->regroup the
 * merge on reap groups, and prune-reap). The best merge refitted comes last (auto_run_layer). */
static int auto_candidates(const sm_layer_job *job, auto_candidate *cand)
{
    int nc = 0;
    bool merges = sm_merge_method_merges(job->spec.method) && job->groups;
    bool regroup = merges && job->regroup;
    for (int g = AUTO_GROUPS_OWN; g <= AUTO_GROUPS_DOMINANT; g++)
        for (int a = 0; a < 2 && merges && (g == AUTO_GROUPS_OWN || regroup); a++)
            cand[nc++] = (auto_candidate){job->spec.method, a == 1, false, (auto_groups)g};
    cand[nc++] = (auto_candidate){SM_MERGE_PRUNE_FREQUENCY, false, false, AUTO_GROUPS_OWN};
    cand[nc++] = (auto_candidate){SM_MERGE_PRUNE_OUTPUT, false, false, AUTO_GROUPS_OWN};
    for (int a = 0; a < 2 && regroup; a++) /* REAP (DESIGN §2.8): reap groups, then prune-reap */
        cand[nc++] = (auto_candidate){job->spec.method, a == 1, false, AUTO_GROUPS_REAP};
    cand[nc++] = (auto_candidate){SM_MERGE_PRUNE_REAP, false, false, AUTO_GROUPS_OWN};
    return nc;
}

/* One layer's search: what every candidate shares, and the best so far. */
typedef struct {
    const sm_model *m;
    sm_calib *c;
    const sm_layer_job *job;
    int n;
    sm_moe_layer src;              /* one copy of the source layer ... */
    float *ref;                    /* ... and one reference forward on the held-out rows (by loss), */
    sm_heldout *hc;                /* or its experts' outputs there, which score candidates (by error) */
    int *regroups;                 /* 2n: dominant groups, then reap groups */
    bool skip[3];                  /* a grouping equal to one already tried */
    const sm_moe_block **blocks;   /* by loss: the model with one layer swapped in */
    const int32_t *ids;
    int n_seq, T;
    sm_layer_build best;
    bool best_held;                /* best holds the best-so-far build (else only its score is kept) */
    double best_score, merge_score;
    int have, best_merge;          /* the best candidate, the best merge (−1: none yet) */
    sm_align_memo *memo;           /* every pair's alignment, computed once for every candidate */
    bool scored[AUTO_MAX_CANDIDATES];
    double score_of[AUTO_MAX_CANDIDATES];
    size_t used;
    char errs[600];
} auto_run;

static sm_layer_job candidate_job(const auto_run *r, const auto_candidate *cand)
{
    sm_layer_job j = *r->job;
    j.spec.method = cand->method;
    j.spec.align = cand->align;
    j.spec.refit = cand->refit; /* a candidate's refit is the whole layer's, whatever the plan says */
    j.spec.cluster_refit = NULL;
    j.spec.align_memo = r->memo;
    if (cand->groups != AUTO_GROUPS_OWN)
        j.groups = r->regroups + (cand->groups == AUTO_GROUPS_REAP ? r->n : 0);
    return j;
}

static int candidate_name(char *buf, size_t len, const auto_candidate *cand)
{
    return snprintf(buf, len, "%s%s%s%s", sm_merge_method_name(cand->method), cand->align ? "+align" : "",
                    cand->refit ? "+refit" : "", auto_groups_tag[cand->groups]);
}

/* Dominant and reap groups from the statistics the first merge just used (no second load of the
 * layer); each tried only when it differs from the groups tried before it. */
static int auto_regroup(auto_run *r, const sm_layer_analysis *an)
{
    int n = r->n, *dominant = r->regroups, *reap = r->regroups + n;
    int *own = sm_alloc((size_t)n, sizeof *own);
    int rc = own ? sm_cluster_dominant(an->freq, an->sim_output, n, r->job->k, dominant) : -1;
    rc = rc ? rc : sm_cluster_reap(an->saliency, an->sim_output, n, r->job->k, reap);
    if (!rc) {
        memcpy(own, r->job->groups, sizeof(int) * (size_t)n);
        sm_cluster_canonical(own, n);
        r->skip[AUTO_GROUPS_DOMINANT] = !memcmp(own, dominant, sizeof(int) * (size_t)n);
        r->skip[AUTO_GROUPS_REAP] = !memcmp(own, reap, sizeof(int) * (size_t)n) || !memcmp(dominant, reap, sizeof(int) * (size_t)n);
    }
    free(own);
    return rc;
}

/* "<candidate> <score>" appended to the scores auto records. */
static void auto_note(auto_run *r, const auto_candidate *cand, double score)
{
    size_t len = sizeof r->errs;
    r->used += (size_t)snprintf(r->errs + r->used, r->used < len ? len - r->used : 0, "%s", r->used ? ", " : "");
    r->used += (size_t)candidate_name(r->errs + r->used, r->used < len ? len - r->used : 0, cand);
    r->used += (size_t)snprintf(r->errs + r->used, r->used < len ? len - r->used : 0, " %.4g", score);
}

/* An aligned candidate whose alignments permute nothing is its unaligned twin (same method,
 * groups and refit), byte for byte: its twin's index, when the twin was scored (else -1). The
 * alignments are computed into the memo, where the build finds them if it runs. */
static int aligned_twin(auto_run *r, const auto_candidate *cand, int i, const sm_monitor *mon, int *twin)
{
    *twin = -1;
    for (int q = 0; q < i && *twin < 0; q++)
        if (r->scored[q] && !cand[q].align && cand[q].method == cand[i].method && cand[q].groups == cand[i].groups &&
            cand[q].refit == cand[i].refit)
            *twin = q;
    if (*twin < 0)
        return 0;
    sm_layer_job j = candidate_job(r, &cand[i]);
    const sm_layer_analysis *a;
    const float *fit, *held;
    int64_t m_fit, m_held;
    int *assign = sm_alloc((size_t)r->n, sizeof *assign), moved = 0;
    int rc = !assign || sm_calib_inputs(r->c, j.layer, &fit, &m_fit, &held, &m_held) ||
                     sm_calib_analysis(r->c, j.layer, &r->src.block, j.spec.method == SM_MERGE_SUBMOE_WHITENED, mon, &a) ||
                     sm_layer_cluster(r->c, &r->src, &j, mon, assign) ||
                     sm_align_moves(&r->src.block, a->freq, assign, j.k, fit, m_fit, r->memo, mon, &moved)
                 ? -1
                 : 0;
    free(assign);
    if (moved)
        *twin = -1;
    return rc;
}

/* Parameters a merged layer holds in its own memory (not its kept experts, which are the
 * source's). */
static int64_t owned_params(const sm_merged_layer *l)
{
    int64_t p = 0;
    for (int c = 0; l->mats && c < l->n_experts; c++)
        for (int j = 0; j < 3; j++)
            p += l->mats[c][j].w_borrowed ? 0 : sm_merged_params(&l->mats[c][j]);
    return p;
}

/* Build and score one candidate; keep it if it is the best so far. `last`: no candidate follows,
 * so a winning merge is kept rather than built again. */
static int auto_try(auto_run *r, const auto_candidate *cand, int i, bool last, double lo, double hi,
                    const sm_monitor *mon)
{
    sm_layer_job j = candidate_job(r, cand);
    sm_layer_build b;
    sm_monitor_span span;
    double score;
    if (build_with(r->m, r->c, &j, sm_monitor_span_init(&span, mon, lo, lo + (hi - lo) * 0.6), &r->src, r->ref, r->hc, &b))
        return -1;
    if ((i == 0 && r->regroups && auto_regroup(r, b.analysis)) ||
        auto_score(r->m, &b, j.layer, r->blocks, r->ids, r->n_seq, r->T,
                   sm_monitor_span_init(&span, mon, lo + (hi - lo) * 0.6, hi), &score)) {
        sm_layer_build_free(&b);
        return -1;
    }
    auto_note(r, cand, score);
    r->scored[i] = true, r->score_of[i] = score;
    bool merges = sm_merge_method_merges(cand->method);
    if (merges && !cand->refit && (r->best_merge < 0 || score < r->merge_score))
        r->merge_score = score, r->best_merge = i;
    if (r->have >= 0 && score >= r->best_score) {
        sm_layer_build_free(&b);
        return 0;
    }
    if (r->best_held)
        sm_layer_build_free(&r->best);
    /* A pruned layer only points into the shared source, and a merged one shares its kept experts
     * with it and owns only its merged ones: keep it while it owns at most half a layer (the
     * source, it and the next candidate then fit in two layers). A larger one (a merge that owns
     * more) is built again if it wins. */
    r->best_held = !merges || last || 2 * owned_params(&b.merged) <= b.params_before;
    if (r->best_held)
        build_move(&r->best, &b);
    else
        sm_layer_build_free(&b);
    r->best_score = score;
    r->have = i;
    return 0;
}
/* The search over one layer's candidates, sharing r's source layer and reference. */
static int auto_search(auto_run *r, auto_candidate *cand, int nc, const sm_monitor *mon)
{
    const double parts = nc + 1.0; /* the refit of the best merge is the last part */
    for (int i = 0; i < nc; i++) {
        if (r->skip[cand[i].groups])
            continue;
        double lo = i / parts, hi = (i + 1) / parts, mid = lo + (hi - lo) * 0.3;
        sm_monitor_span span;
        int twin = -1;
        if (cand[i].align && aligned_twin(r, cand, i, sm_monitor_span_init(&span, mon, lo, mid), &twin))
            return -1;
        if (twin >= 0) { /* its twin's build and score: nothing to build */
            auto_note(r, &cand[i], r->score_of[twin]);
            continue;
        }
        if (auto_try(r, &cand[i], i, false, cand[i].align ? mid : lo, hi, mon))
            return -1;
    }
    /* the best merge with its down projections refitted (DESIGN §2.10), where that keeps its size:
     * a refitted down projection is dense, and below full rank it may have been factored */
    const sm_layer_spec *spec = &r->job->spec;
    if (r->best_merge < 0 || !cand[r->best_merge].align) {
        /* nothing left aligns: the memo's activations (up to SM_ALIGN_MEMO_ACT_BYTES) would sit
         * beside the refit candidate, the layer's peak of memory (Qwen3's shape) */
        sm_align_memo_free(r->memo);
        r->memo = NULL;
    }
    if (r->best_merge >= 0 && spec->matrix[2].rank.kind == SM_RANK_FULL && !spec->cluster) {
        cand[nc] = cand[r->best_merge];
        cand[nc].refit = true;
        if (auto_try(r, &cand[nc], nc, true, nc / parts, 1.0, mon))
            return -1;
    }
    if (!r->best_held) { /* the winner again: the same job on the same rows, the same layer */
        sm_layer_job j = candidate_job(r, &cand[r->have]);
        sm_monitor_span span;
        if (build_with(r->m, r->c, &j, sm_monitor_span_init(&span, mon, 1.0, 1.0), &r->src, r->ref, r->hc, &r->best))
            return -1;
        r->best_held = true;
    }
    return 0;
}

int sm_layer_build_auto(const sm_model *m, sm_calib *c, const sm_layer_job *job, const sm_monitor *mon,
                        sm_layer_build *out, char *why, size_t why_len)
{
    auto_candidate cand[AUTO_MAX_CANDIDATES];
    int nc = auto_candidates(job, cand);
    auto_run *r = sm_zalloc(1, sizeof *r);
    if (!r)
        return -1;
    *r = (auto_run){.m = m, .c = c, .job = job, .n = sm_model_layer_experts(m, job->layer), .have = -1, .best_merge = -1};
    bool regroup = sm_merge_method_merges(job->spec.method) && job->groups && job->regroup;
    r->skip[AUTO_GROUPS_DOMINANT] = r->skip[AUTO_GROUPS_REAP] = !regroup;
    /* The score: held-out loss of the whole model with the candidate layer swapped in, when a
     * forward pass is cheap and held-out windows exist (block error alone can mislead: a layer
     * whose pruning looks harmless locally may hurt much more downstream); else the held-out
     * MoE-block output error. */
    bool by_loss = sm_model_param_count(m) <= SM_AUTO_LOSS_MAX_PARAMS &&
                   sm_calib_eval_windows(c, &r->ids, &r->n_seq, &r->T) == 0;
    const float *fit, *held = NULL;
    int64_t m_fit, m_held = 0;
    sm_monitor_span span0;
    int rc = !(r->memo = sm_align_memo_new(r->n)) || (regroup && !(r->regroups = sm_alloc((size_t)r->n * 2, sizeof *r->regroups))) ||
                     (by_loss && !(r->blocks = sm_zalloc((size_t)sm_model_config(m)->n_layers, sizeof *r->blocks)))
                 ? -1
                 : 0;
    bool loaded = !rc && !sm_moe_layer_load_mon(m, job->layer, sm_monitor_span_init(&span0, mon, 0.0, 0.0), &r->src);
    /* By error, candidates are scored from the source experts' outputs on the held-out rows
     * (heldout.h); by loss, their block error is only reported, against one reference forward. */
    if (loaded && (sm_calib_inputs(c, job->layer, &fit, &m_fit, &held, &m_held) ||
                   (m_held > 0 && !by_loss &&
                    !(r->hc = sm_heldout_new(&r->src.block, held, m_held, sm_monitor_span_init(&span0, mon, 0.0, 0.0)))) ||
                   (m_held > 0 && by_loss &&
                    (!(r->ref = sm_alloc_f32((size_t)(m_held * r->src.block.hidden))) ||
                     sm_engine_reference(&r->src.block, held, m_held, sm_monitor_span_init(&span0, mon, 0.0, 0.0),
                                         r->ref))))) {
        sm_err_prefix("layer %d", job->layer);
        rc = -1;
    }
    rc = rc || !loaded ? -1 : auto_search(r, cand, nc, mon);
    free(r->blocks), free(r->regroups), free(r->ref);
    sm_heldout_free(r->hc);
    sm_align_memo_free(r->memo);
    if (rc) {
        if (r->best_held)
            sm_layer_build_free(&r->best);
        if (loaded)
            sm_moe_layer_free(&r->src);
        free(r);
        return -1;
    }
    char name[64];
    candidate_name(name, sizeof name, &cand[r->have]);
    snprintf(why, why_len, "%s (%s: %s)", name, by_loss ? "held-out loss, nats/token" : "held-out output error", r->errs);
    build_move(out, &r->best);
    out->src_borrowed = false; /* the winner takes the shared copy */
    free(r);
    return 0;
}

bool sm_auto_choice_refit(const char *why)
{
    const char *r = why ? strstr(why, "+refit") : NULL;
    return r && (size_t)(r - why) < strcspn(why, " "); /* in the choice, not in its scores */
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

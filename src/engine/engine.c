#include "engine/engine.h"
#include "engine/align.h"
#include "engine/router_kl.h"
#include "engine/subset.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/diag.h"
#include "util/mem.h"

#define DEFAULT_BLOCK 256

/* ---- merged layer -------------------------------------------------------------------------- */

void sm_merged_layer_free(sm_merged_layer *l)
{
    if (!l)
        return;
    for (int c = 0; l->mats && c < l->n_experts; c++)
        for (int j = 0; j < 3; j++)
            sm_merged_free(&l->mats[c][j]);
    free(l->mats), free(l->experts), free(l->router), free(l->expert_map), free(l->source);
    free(l->cluster_of);
    memset(l, 0, sizeof *l);
}

sm_moe_block sm_merged_layer_block(const sm_merged_layer *l, const sm_moe_block *src)
{
    sm_moe_block b = *src;
    b.n_router = l->n_router;
    b.router = l->router;
    b.n_experts = l->n_experts;
    b.experts = l->experts;
    b.expert_map = l->expert_map;
    if (b.rule.top_k > b.n_router)
        b.rule.top_k = b.n_router;
    return b;
}

int64_t sm_merged_layer_params(const sm_merged_layer *l)
{
    int64_t p = 0;
    for (int c = 0; c < l->n_experts; c++) {
        const sm_linear *ls[3] = {&l->experts[c].gate, &l->experts[c].up, &l->experts[c].down};
        for (int j = 0; j < 3; j++)
            p += ls[j]->w ? ls[j]->out * ls[j]->in : ls[j]->rank * (ls[j]->out + ls[j]->in);
    }
    return p;
}

static sm_linear linear_of(const sm_merged *mm)
{
    sm_linear l = {.out = mm->out, .in = mm->in, .w = mm->w, .a = mm->a, .b = mm->b, .rank = mm->rank};
    return l;
}

/* Keep the experts keep[0..k) (ascending) of src: views, pruned router rows. */
static int select_layer(const sm_moe_block *src, const int *keep, int k, sm_merged_layer *out)
{
    const int n = src->n_experts;
    out->n_router = out->n_experts = k;
    out->router = sm_alloc_f32((size_t)(k * src->hidden));
    out->experts = sm_alloc((size_t)k, sizeof(sm_expert));
    out->source = sm_alloc((size_t)k, sizeof(int));
    out->cluster_of = sm_alloc((size_t)n, sizeof(int));
    if (!out->router || !out->experts || !out->source || !out->cluster_of)
        return -1;
    if (sm_router_prune(src->router, n, src->hidden, keep, k, out->router) != 0)
        return -1;
    for (int i = 0; i < n; i++)
        out->cluster_of[i] = -1;
    for (int j = 0; j < k; j++) {
        out->experts[j] = src->experts[keep[j]];
        out->source[j] = keep[j];
        out->cluster_of[keep[j]] = j;
    }
    return 0;
}

/* prune-output: the subset with the least output error on the calibration rows, every candidate
 * scored from expert outputs computed once (subset.h) instead of a block forward per candidate. */
static int prune_by_output(const sm_moe_block *src, int k, const float *x, int64_t m,
                           const sm_monitor *mon, int *keep)
{
    if (!x || m <= 0)
        return sm_err("prune-output needs calibration inputs");
    sm_monitor_span span;
    sm_subset_cache *c = sm_subset_cache_new(src, x, m, k, sm_monitor_span_init(&span, mon, 0.0, 0.5));
    if (!c)
        return -1;
    sm_prune_result res;
    int rc = sm_prune_output_batch(src->n_experts, k, sm_subset_cache_errors, c, 0,
                             sm_monitor_span_init(&span, mon, 0.5, 1.0), keep, &res);
    sm_subset_cache_free(c);
    return rc;
}

/* Permuted copies of a layer's experts, made by the alignment and dropped once their cluster is
 * merged; NULL entries: the expert is used as it is. */
typedef struct aligned_experts {
    sm_expert *experts;
    float **bufs;     /* gate, up, down of each expert: 3 per expert */
    float **gram_mid; /* the intermediate Gram permuted like the expert, when the analysis has one */
} aligned_experts;

/* Alignment of cluster c: permuted copies of every member but the reference that the alignment
 * moves (memo: alignments already made). Progress: [c_lo, m_lo], one equal share per member. */
static int align_cluster(const sm_moe_block *src, const sm_layer_analysis *a, const int *assign, int c, int nm,
                         const float *x, int64_t m, sm_align_memo *memo, const sm_monitor *mon, double c_lo,
                         double m_lo, aligned_experts *al, int *n_aligned, sm_merged_layer *out)
{
    const int n = src->n_experts;
    const int64_t h = src->hidden;
    int done_members = 0;
    const int ref = sm_align_reference(a ? a->freq : NULL, assign, n, c);
    for (int i = 0; i < n; i++) {
        if (assign[i] != c || i == ref)
            continue;
        const sm_expert *e = &src->experts[i];
        int64_t ni = e->gate.out;
        int *perm = sm_alloc((size_t)ni, sizeof *perm);
        float *pg = NULL, *pu = NULL, *pd = NULL;
        double corr = 0;
        bool moved = true;
        sm_monitor_span aspan;
        const sm_monitor *amon = sm_monitor_span_init(&aspan, mon, c_lo + (m_lo - c_lo) * done_members / (nm - 1),
                                                      c_lo + (m_lo - c_lo) * (done_members + 1) / (nm - 1));
        done_members++;
        if (!perm || sm_align_pair_memo(memo, src, ref, i, x, m, amon, perm, &corr, &moved) != 0 ||
            /* the identity: the member is merged as it is (the same bytes as a permuted copy) */
            (moved && (!(pg = sm_alloc_f32((size_t)(ni * h))) || !(pu = sm_alloc_f32((size_t)(ni * h))) ||
                       !(pd = sm_alloc_f32((size_t)(ni * h)))))) {
            free(perm), free(pg), free(pu), free(pd);
            if (!sm_monitor_cancelled(mon))
                sm_err_prefix("cluster %d: aligning expert %d to %d", c, i, ref);
            return -1;
        }
        out->align_corr += corr;
        (*n_aligned)++;
        if (!moved) {
            free(perm);
            continue;
        }
        al->bufs[3 * i] = pg, al->bufs[3 * i + 1] = pu, al->bufs[3 * i + 2] = pd; /* freed by the caller */
        if (sm_expert_permute_mon(e, perm, pg, pu, pd, mon) != 0) { /* about a second at Mixtral's shape */
            free(perm);
            return -1;
        }
        al->experts[i] = sm_expert_dense(h, ni, pg, pu, pd);
        if (a && a->gram_mid) { /* the down projection's inputs are permuted too */
            float *gm = sm_alloc_f32((size_t)(ni * ni));
            if (!gm) {
                free(perm);
                return -1;
            }
            for (int64_t r = 0; r < ni; r++)
                for (int64_t q = 0; q < ni; q++)
                    gm[r * ni + q] = a->gram_mid[i][(int64_t)perm[r] * ni + perm[q]];
            al->gram_mid[i] = gm;
        }
        free(perm);
    }
    return 0;
}

static bool refit_asked(const sm_layer_spec *spec, int c)
{
    return spec->cluster_refit && c < spec->n_cluster ? spec->cluster_refit[c] : spec->refit;
}

/* Merge of cluster c's gate, up and down (aligned copies where there are) into out->experts[c],
 * then its refit when asked (routes: the fit rows' routing). f: the members' frequencies; w, gr:
 * scratch for n pointers. Progress: [m_lo, c_hi]. */
static int merge_cluster(const sm_moe_block *src, const sm_layer_analysis *a, const int *assign, int c, int nm,
                         const double *f, const float **w, const float **gr, const aligned_experts *al,
                         const sm_layer_spec *spec, const float *x, const sm_refit_routes *routes,
                         const sm_monitor *mon, double m_lo, double c_hi, sm_merged_layer *out)
{
    const double r_hi = c_hi, r_lo = refit_asked(spec, c) ? m_lo + (c_hi - m_lo) * 0.75 : c_hi;
    c_hi = r_lo;
    const int n = src->n_experts;
    for (int j = 0; j < 3; j++) {
        int q = 0;
        const sm_linear *first = NULL;
        for (int i = 0; i < n; i++) {
            if (assign[i] != c)
                continue;
            const sm_expert *ex = al->bufs[3 * i] ? &al->experts[i] : &src->experts[i];
            const sm_linear *l = j == 0 ? &ex->gate : j == 1 ? &ex->up : &ex->down;
            if (!l->w)
                return sm_err("expert %d is factored; merging needs dense experts", i);
            if (first && (l->out != first->out || l->in != first->in))
                return sm_err("cluster %d mixes experts of different shapes", c);
            first = first ? first : l;
            w[q] = l->w;
            gr[q++] = a && a->gram_in ? (j < 2 ? a->gram_in[i] : al->gram_mid[i] ? al->gram_mid[i] : a->gram_mid[i])
                                      : NULL;
        }
        sm_matset set = {nm, first->out, first->in, w};
        sm_monitor_span span;
        const sm_monitor *sub =
            sm_monitor_span_init(&span, mon, m_lo + (c_hi - m_lo) * j / 3.0, m_lo + (c_hi - m_lo) * (j + 1) / 3.0);
        const sm_merge_opts *mo = spec->cluster && c < spec->n_cluster ? &spec->cluster[c][j] : &spec->matrix[j];
        /* A kept expert is shared, not copied, also when a refit is asked: a lone member at full rank
         * is exact, and sm_refit_merged leaves it as it is (at Mixtral shape a copy is 0.7 GB). */
        int single = sm_merge_matrix_single(spec->method, &set, f, mo, &out->mats[c][j]);
        if (single < 0 ||
            (single > 0 && sm_merge_matrix(spec->method, &set, f, a && a->gram_in ? gr : NULL, mo, sub,
                                           &out->mats[c][j]) != 0)) {
            if (!sm_monitor_cancelled(mon))
                sm_err_prefix("cluster %d %s", c, j == 0 ? "gate" : j == 1 ? "up" : "down");
            return -1;
        }
    }
    out->experts[c].gate = linear_of(&out->mats[c][0]);
    out->experts[c].up = linear_of(&out->mats[c][1]);
    out->experts[c].down = linear_of(&out->mats[c][2]);
    if (!refit_asked(spec, c))
        return 0;
    /* A plain submoe merge below the break-even rank is stored factored; the refit is a full-rank
     * fit, so its down projection becomes dense (submoe-whitened's factors are refused instead:
     * refit.h). */
    if (spec->method == SM_MERGE_SUBMOE && out->mats[c][2].rank > 0) {
        if (sm_merged_densify(&out->mats[c][2]))
            return -1;
        out->experts[c].down = linear_of(&out->mats[c][2]);
    }
    sm_matset set = {nm, out->mats[c][2].out, out->mats[c][2].in, w}; /* the members' downs as merged */
    sm_monitor_span span;
    int rc = sm_refit_merged(src, assign, c, &set, out->mats[c], &out->experts[c], x, routes, spec->refit_ridge,
                             sm_monitor_span_init(&span, mon, r_lo, r_hi));
    if (rc < 0 && !sm_monitor_cancelled(mon))
        sm_err_prefix("cluster %d", c);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    out->refit_clusters++;
    return 0;
}

/* The merged layer's router: the source's with an expert map (remap), or one row per cluster. */
static int fit_router(const sm_moe_block *src, const sm_layer_analysis *a, const int *assign, int k,
                      const sm_layer_spec *spec, const float *x, int64_t m, const sm_monitor *mon,
                      sm_merged_layer *out)
{
    const int n = src->n_experts;
    const int64_t h = src->hidden;
    out->router_mode = spec->router;
    if (spec->router == SM_ROUTER_REMAP) {
        out->n_router = n;
        out->router = sm_alloc_f32((size_t)(n * h));
        out->expert_map = sm_alloc((size_t)n, sizeof(int));
        if (!out->router || !out->expert_map || sm_router_remap(assign, n, k, out->expert_map))
            return -1;
        memcpy(out->router, src->router, sizeof(float) * (size_t)(n * h));
        return 0;
    }
    out->n_router = k;
    if (!(out->router = sm_alloc_f32((size_t)(k * h))))
        return -1;
    const double *freq = a ? a->freq : NULL;
    if (spec->router == SM_ROUTER_COLLAPSE_MEAN)
        return sm_router_collapse_mean(src->router, n, h, assign, k, freq, out->router);
    if (!x || m < 1)
        return sm_err("%s needs calibration inputs", sm_router_mode_name(spec->router));
    /* the merge reported progress to the end: the fit only checks for cancellation */
    const sm_monitor cancel_only = {.cancel = mon ? mon->cancel : NULL};
    return spec->router == SM_ROUTER_COLLAPSE_KL
               ? sm_router_collapse_kl(src->router, n, h, assign, k, freq, x, m, spec->ridge, &cancel_only,
                                       out->router)
               : sm_router_collapse_lstsq(src->router, n, h, assign, k, freq, x, m, spec->ridge, out->router);
}

static int merge_clusters(const sm_moe_block *src, const sm_layer_analysis *a, const int *assign,
                          int k, const sm_layer_spec *spec, const float *x, int64_t m,
                          const sm_monitor *mon, sm_merged_layer *out)
{
    const int n = src->n_experts;
    if (sm_router_check_partition(assign, n, k) != 0)
        return -1;
    if (spec->method == SM_MERGE_SUBMOE_WHITENED && (!a || !a->gram_in))
        return sm_err("submoe-whitened needs an analysis with input Grams");
    out->n_experts = k;
    out->mats = sm_zalloc((size_t)k, sizeof *out->mats);
    out->experts = sm_zalloc((size_t)k, sizeof(sm_expert));
    out->cluster_of = sm_alloc((size_t)n, sizeof(int));
    const float **w = sm_alloc((size_t)n, sizeof(float *));
    const float **gr = sm_alloc((size_t)n, sizeof(float *));
    double *f = sm_alloc((size_t)n, sizeof(double));
    aligned_experts al = {sm_zalloc((size_t)n, sizeof(sm_expert)), sm_zalloc((size_t)n * 3, sizeof(float *)),
                          sm_zalloc((size_t)n, sizeof(float *))};
    sm_refit_routes routes = {0}; /* the fit rows' routing, when a cluster is refitted */
    bool any_refit = false;
    for (int c = 0; c < k; c++)
        any_refit |= refit_asked(spec, c);
    int rc = -1;
    if (!out->mats || !out->experts || !out->cluster_of || !w || !gr || !f || !al.experts || !al.bufs ||
        !al.gram_mid)
        goto done;
    memcpy(out->cluster_of, assign, sizeof(int) * (size_t)n);
    if (any_refit && sm_refit_route(src, x, m, mon, &routes) != 0)
        goto done;
    int n_aligned = 0;
    for (int c = 0; c < k; c++) {
        int nm = 0;
        for (int i = 0; i < n; i++)
            if (assign[i] == c)
                f[nm] = a ? a->freq[i] : 0.0, w[nm++] = NULL;
        /* Progress: cluster c owns [c/k, (c+1)/k]; when its members are aligned, the alignments
         * take the first half of it (one equal share per aligned member), the merge the rest. */
        const bool aligning = spec->align && nm > 1;
        const double c_lo = (double)c / k, c_hi = (c + 1.0) / k;
        const double m_lo = aligning ? 0.5 * (c_lo + c_hi) : c_lo;
        if (aligning && align_cluster(src, a, assign, c, nm, x, m, spec->align_memo, mon, c_lo, m_lo, &al, &n_aligned,
                                       out) != 0)
            goto done;
        if (merge_cluster(src, a, assign, c, nm, f, w, gr, &al, spec, x, any_refit ? &routes : NULL, mon, m_lo, c_hi,
                          out) != 0)
            goto done;
        for (int i = 0; i < n; i++) { /* the cluster's permuted copies are merged: drop them */
            for (int q = 0; q < 3; q++) {
                free(al.bufs[3 * i + q]);
                al.bufs[3 * i + q] = NULL;
            }
            free(al.gram_mid[i]);
            al.gram_mid[i] = NULL;
        }
    }
    if (n_aligned)
        out->align_corr /= n_aligned;
    if (fit_router(src, a, assign, k, spec, x, m, mon, out) != 0)
        goto done;
    rc = 0;
done:
    for (int i = 0; al.bufs && i < 3 * n; i++)
        free(al.bufs[i]);
    for (int i = 0; al.gram_mid && i < n; i++)
        free(al.gram_mid[i]);
    free(al.experts), free(al.bufs), free(al.gram_mid);
    free(w), free(gr), free(f);
    sm_refit_routes_free(&routes);
    return rc;
}

int sm_engine_merge(const sm_moe_block *src, const sm_layer_analysis *a, const int *assign,
                    int k, const sm_layer_spec *spec, const float *x, int64_t m,
                    const sm_monitor *mon, sm_merged_layer *out)
{
    memset(out, 0, sizeof *out);
    if (sm_moe_block_check(src) != 0)
        return -1;
    if (src->expert_map || src->n_router != src->n_experts)
        return sm_err("the source layer must have one router row per expert");
    if (a && a->n != src->n_experts)
        return sm_err("analysis of %d experts for a layer of %d", a->n, src->n_experts);
    const int n = src->n_experts;
    out->hidden = src->hidden;
    out->method = spec->method;
    out->n_original = n;
    int rc = -1;
    int *keep = sm_alloc((size_t)n, sizeof(int));
    if (!keep)
        return -1;
    switch (spec->method) {
    case SM_MERGE_KEEP:
        for (int i = 0; i < n; i++)
            keep[i] = i;
        rc = select_layer(src, keep, n, out);
        break;
    case SM_MERGE_PRUNE_FREQUENCY:
        if (!a)
            rc = sm_err("prune-frequency needs routing frequencies");
        else if ((rc = sm_prune_frequency(a->freq, n, k, keep)) == 0)
            rc = select_layer(src, keep, k, out);
        break;
    case SM_MERGE_PRUNE_REAP:
        if (!a || !a->saliency)
            rc = sm_err("prune-reap needs REAP saliencies (statistics read without the layer's experts from a "
                        "stats file that predates them)");
        else if ((rc = sm_prune_frequency(a->saliency, n, k, keep)) == 0)
            rc = select_layer(src, keep, k, out);
        break;
    case SM_MERGE_PRUNE_OUTPUT:
        if ((rc = k < 1 || k > n ? sm_err("cannot keep %d of %d experts", k, n) : 0) == 0 &&
            (rc = prune_by_output(src, k, x, m, mon, keep)) == 0)
            rc = select_layer(src, keep, k, out);
        break;
    default:
        rc = merge_clusters(src, a, assign, k, spec, x, m, mon, out);
        break;
    }
    free(keep);
    if (rc != 0) {
        sm_merged_layer_free(out);
        return -1;
    }
    sm_monitor_report(mon, 1.0, "merged layer");
    return 0;
}

/* ---- errors -------------------------------------------------------------------------------- */

/* Rows per block of an output-error pass: enough that each expert gets about ERROR_EXPERT_ROWS
 * gathered rows (256 rows of a 64-expert top-8 layer would give it 32, GEMMs dominated by packing
 * the weights), at least DEFAULT_BLOCK, at most ERROR_BLOCK_MAX (bounded scratch). */
#define ERROR_EXPERT_ROWS 256
#define ERROR_BLOCK_MAX 4096
static int64_t error_block_rows(const sm_moe_block *b)
{
    int64_t rows = (int64_t)ERROR_EXPERT_ROWS * b->n_experts / (b->rule.top_k > 0 ? b->rule.top_k : 1);
    return rows < DEFAULT_BLOCK ? DEFAULT_BLOCK : rows > ERROR_BLOCK_MAX ? ERROR_BLOCK_MAX : rows;
}

/* The reference's output and the candidate's come from the same blocks of rows either way, so
 * an error against a precomputed reference (sm_engine_reference) is bit-identical to one that
 * recomputes it. */
int sm_engine_error_ref(const sm_moe_block *src, const sm_merged_layer *l, const float *x, const float *ref,
                        int64_t m, const sm_monitor *mon, double *rel)
{
    sm_moe_block mb = sm_merged_layer_block(l, src);
    const int64_t h = src->hidden, blk = m > 0 && m < error_block_rows(src) ? m : error_block_rows(src);
    float *ya = ref ? NULL : sm_alloc_f32((size_t)(blk * h)), *yb = sm_alloc_f32((size_t)(blk * h));
    sm_error_acc acc = {0, 0};
    int rc = (ya || ref) && yb ? 0 : -1;
    for (int64_t t0 = 0; rc == 0 && t0 < m; t0 += blk) {
        const int64_t n = m - t0 < blk ? m - t0 : blk;
        if ((rc = sm_monitor_check(mon)) != 0 ||
            (!ref && (rc = sm_moe_forward_mon(src, x + t0 * h, n, ya, NULL, mon)) != 0) ||
            (rc = sm_moe_forward_mon(&mb, x + t0 * h, n, yb, NULL, mon)) != 0)
            break;
        sm_error_acc_add(&acc, ref ? ref + t0 * h : ya, yb, n * h);
        sm_monitor_report(mon, (double)(t0 + n) / m, "output error");
    }
    free(ya), free(yb);
    if (rc == 0)
        *rel = sm_error_acc_value(&acc);
    return rc;
}

int sm_engine_error(const sm_moe_block *src, const sm_merged_layer *l, const float *x, int64_t m,
                    const sm_monitor *mon, double *rel)
{
    return sm_engine_error_ref(src, l, x, NULL, m, mon, rel);
}

int sm_engine_reference(const sm_moe_block *src, const float *x, int64_t m, const sm_monitor *mon, float *ref)
{
    const int64_t h = src->hidden, blk = m > 0 && m < error_block_rows(src) ? m : error_block_rows(src);
    int rc = 0;
    for (int64_t t0 = 0; rc == 0 && t0 < m; t0 += blk) {
        const int64_t n = m - t0 < blk ? m - t0 : blk;
        if ((rc = sm_monitor_check(mon)) != 0 || (rc = sm_moe_forward_mon(src, x + t0 * h, n, ref + t0 * h, NULL, mon)) != 0)
            break;
        sm_monitor_report(mon, (double)(t0 + n) / m, "reference output");
    }
    return rc;
}

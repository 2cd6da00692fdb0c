/* analyse: a layer's statistics (engine/analyse.h). */
#include "engine/analyse.h"
#include "model/dtype.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/diag.h"
#include "util/mem.h"
#include "util/parallel.h"

#define DEFAULT_BLOCK SM_ROUTE_BLOCK /* the saliencies' recomputation routes alike */
#define DEFAULT_SAMPLE 512

void sm_layer_analysis_free(sm_layer_analysis *a)
{
    if (!a)
        return;
    for (int i = 0; a->gram_in && i < a->n; i++)
        free(a->gram_in[i]);
    for (int i = 0; a->gram_mid && i < a->n; i++)
        free(a->gram_mid[i]);
    free(a->gram_in), free(a->gram_mid);
    free(a->counts), free(a->freq), free(a->outputs);
    free(a->sim_output), free(a->sim_weight), free(a->sim_logit), free(a->saliency);
    memset(a, 0, sizeof *a);
}

sm_outputs sm_layer_analysis_outputs(const sm_layer_analysis *a)
{
    sm_outputs o = {a->n, a->sampled, a->hidden, a->outputs, NULL, NULL};
    return o;
}

static int block_is_plain(const sm_moe_block *b)
{
    if (sm_moe_block_check(b) != 0)
        return -1;
    if (b->expert_map || b->n_router != b->n_experts)
        return sm_err("analysis needs a layer with one router row per expert");
    for (int i = 1; i < b->n_experts; i++)
        if (b->experts[i].gate.out != b->experts[0].gate.out)
            return sm_err("experts of different widths (%lld vs %lld)",
                          (long long)b->experts[i].gate.out, (long long)b->experts[0].gate.out);
    return 0;
}

/* The Gram pass gathers each expert's routed rows across blocks and accumulates them GRAM_ROWS at
 * a time, so its GEMMs have GRAM_ROWS rows rather than the handful one block routes to one expert
 * (32 of 256 rows per expert at 64 experts, top-8). Buffers: n × GRAM_ROWS × hidden floats. */
#define GRAM_ROWS 256
typedef struct gram_batch {
    float *rows;    /* n × GRAM_ROWS × hidden: each expert's pending rows */
    int64_t *count; /* n */
} gram_batch;

/* Add expert e's pending rows to its Grams. g, u, tmp: scratch of GRAM_ROWS rows. */
static void gram_flush(const sm_moe_block *b, sm_layer_analysis *a, gram_batch *gb, int e, float *g, float *u,
                       float *tmp)
{
    const int64_t h = a->hidden, inter = a->inter, me = gb->count[e];
    const float *xs = gb->rows + (int64_t)e * GRAM_ROWS * h;
    if (!me)
        return;
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)h, (int)me, 1.0f, xs, (int)h, 1.0f, a->gram_in[e],
                (int)h);
    const sm_expert *ex = &b->experts[e];
    sm_linear_forward(&ex->gate, xs, me, g, tmp);
    sm_linear_forward(&ex->up, xs, me, u, tmp);
    for (int64_t q = 0; q < me * inter; q++)
        g[q] = g[q] / (1.0f + expf(-g[q])) * u[q];
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)inter, (int)me, 1.0f, g, (int)inter, 1.0f,
                a->gram_mid[e], (int)inter);
    gb->count[e] = 0;
}

/* The rows of block x (mb rows) routed to each expert, into its pending rows. */
static void gram_add_block(const sm_moe_block *b, const float *x, int64_t mb, const int *idx, sm_layer_analysis *a,
                           gram_batch *gb, float *g, float *u, float *tmp)
{
    const int k = b->rule.top_k;
    const int64_t h = a->hidden;
    for (int64_t t = 0; t < mb; t++)
        for (int j = 0; j < k; j++) { /* a row's selected experts are distinct */
            const int e = idx[t * k + j];
            memcpy(gb->rows + ((int64_t)e * GRAM_ROWS + gb->count[e]++) * h, x + t * h, sizeof(float) * (size_t)h);
            if (gb->count[e] == GRAM_ROWS)
                gram_flush(b, a, gb, e, g, u, tmp);
        }
}

static void symmetrize(float *m, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++)
            m[j * n + i] = m[i * n + j];
}

int sm_engine_analyse(const sm_moe_block *b, const float *x, int64_t m,
                      const sm_analysis_opts *opts, const sm_monitor *mon,
                      sm_layer_analysis *a)
{
    sm_memory_rows mr = {x, b ? b->hidden : 0};
    sm_row_source src = {m, sm_rows_in_memory, &mr};
    if (!x) {
        memset(a, 0, sizeof *a);
        free(opts ? opts->outputs : NULL); /* (taken over) */
        return sm_err("analysis needs calibration inputs");
    }
    return sm_engine_analyse_rows(b, &src, opts, mon, a);
}

static int64_t first_nonfinite_f(const float *v, int64_t n) /* (the stored-weight check: vectorized) */
{
    size_t i = sm_first_nonfinite(SM_DT_F32, v, (size_t)n);
    return i < (size_t)n ? (int64_t)i : -1;
}

static int64_t first_nonfinite_d(const double *v, int64_t n)
{
    for (int64_t i = 0; v && i < n; i++)
        if (!isfinite(v[i]))
            return i;
    return -1;
}

int sm_layer_analysis_check(const sm_layer_analysis *a)
{
    const int64_t nn = (int64_t)a->n * a->n;
    const struct {
        const char *what;
        const double *v;
    } sims[] = {{"output similarity", a->sim_output}, {"logit similarity", a->sim_logit},
                {"weight similarity", a->sim_weight}, {"routing frequency", a->freq},
                {"REAP saliency", a->saliency}};
    for (size_t j = 0; j < sizeof sims / sizeof sims[0]; j++) {
        int64_t i = first_nonfinite_d(sims[j].v, j < 3 ? nn : a->n);
        if (i >= 0)
            return sm_err("the %s of expert %lld is not finite (%s)", sims[j].what, (long long)(j < 3 ? i / a->n : i),
                          sm_nonfinite_name((float)sims[j].v[i]));
    }
    int64_t i = a->outputs ? first_nonfinite_f(a->outputs, a->n * a->sampled * a->hidden) : -1;
    if (i >= 0)
        return sm_err("the output of expert %lld on sampled row %lld is not finite (%s): activations overflow float32",
                      (long long)(i / (a->sampled * a->hidden)), (long long)(i / a->hidden % a->sampled),
                      sm_nonfinite_name(a->outputs[i]));
    for (int e = 0; a->gram_in && e < a->n; e++) {
        if (first_nonfinite_f(a->gram_in[e], a->hidden * a->hidden) >= 0)
            return sm_err("the input Gram (sum of x x^T) of expert %d is not finite: the inputs overflow float32", e);
        if (first_nonfinite_f(a->gram_mid[e], a->inter * a->inter) >= 0)
            return sm_err("the intermediate Gram of expert %d is not finite: its activations overflow float32", e);
    }
    return 0;
}

/* Columns of the scratch a factored expert's forward needs: its largest rank (1 when all dense). */
static int64_t low_rank_columns(const sm_moe_block *b)
{
    int64_t tc = 1;
    for (int e = 0; e < b->n_experts; e++) {
        const sm_expert *ex = &b->experts[e];
        int64_t r = ex->gate.w ? 0 : ex->gate.rank;
        r = !ex->up.w && ex->up.rank > r ? ex->up.rank : r;
        r = !ex->down.w && ex->down.rank > r ? ex->down.rank : r;
        tc = r > tc ? r : tc;
    }
    return tc;
}

/* The Pearson correlation of the router logits from their (shifted) sums and upper-triangle
 * cross products over m rows. */
static void logit_correlation(const double *zsum, const double *zz, int64_t m, int n, double *sim)
{
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++) {
            double cij = zz[i * n + j] - zsum[i] * zsum[j] / m;
            double vi = zz[i * n + i] - zsum[i] * zsum[i] / m;
            double vj = zz[j * n + j] - zsum[j] * zsum[j] / m;
            double r = i == j ? 1.0 : vi > 0.0 && vj > 0.0 ? cij / sqrt(vi * vj) : 0.0;
            sim[i * n + j] = sim[j * n + i] = r;
        }
}

typedef struct {
    const sm_moe_block *b;
    sm_layer_analysis *a;
    const float *xs; /* the sampled rows */
} sample_job;

/* Expert e on the sampled rows (sm_expert_forward: bf16 experts as the forward pass runs them). */
static int sample_item(void *ctx, int64_t e, const sm_monitor *mon)
{
    const sample_job *j = ctx;
    if (sm_monitor_cancelled(mon))
        return -1;
    const int64_t rows = j->a->sampled;
    return sm_expert_forward(&j->b->experts[e], j->xs, rows, j->a->outputs + e * rows * j->a->hidden);
}

/* Every expert's output on a->sampled evenly spaced rows of the source, into a->outputs.
 * xs: scratch of at least sampled rows. */
static int sample_expert_outputs(const sm_moe_block *b, const sm_row_source *source, const sm_monitor *mon,
                                 sm_layer_analysis *a, float *xs)
{
    const int n = a->n;
    const int64_t h = a->hidden, inter = a->inter, sample = a->sampled, m = a->tokens;
    for (int64_t j = 0; j < sample; j++) {
        const float *row = source->rows(source->ctx, j * m / sample, 1, xs + j * h);
        if (!row)
            return -1;
        if (row != xs + j * h)
            memcpy(xs + j * h, row, sizeof(float) * (size_t)h);
    }
    sample_job j = {b, a, xs};
    if (sm_moe_experts_side_by_side(b)) /* side by side, one thread a product (saliency.c says why) */
        return sm_parallel_for(n, 6 * sample * h * inter * n, sample_item, &j, mon, "expert outputs");
    for (int e = 0; e < n; e++) {
        if (sm_monitor_check(mon) != 0 || sample_item(&j, e, NULL) != 0)
            return -1;
        sm_monitor_report(mon, 0.7 + 0.2 * (e + 1.0) / n, "expert outputs");
    }
    return 0;
}

/* a->sim_weight: the similarity of the experts' flattened weights (dense experts only). */
static int weight_similarity(const sm_moe_block *b, const sm_monitor *mon, sm_layer_analysis *a)
{
    const int n = a->n;
    const int64_t h = a->hidden, inter = a->inter;
    const float **segs = sm_alloc((size_t)n * 3, sizeof(float *));
    const uint16_t **segs16 = sm_alloc((size_t)n * 3, sizeof(uint16_t *));
    if (!segs || !segs16) {
        free(segs), free(segs16);
        return -1;
    }
    /* a matrix's fp32 values, else its bf16 ones (a layer loaded in bf16 as stored: exact) */
    int dense = 1;
    for (int e = 0; e < n; e++) {
        const sm_expert *ex = &b->experts[e];
        const sm_linear *l[3] = {&ex->gate, &ex->up, &ex->down};
        for (int g = 0; g < 3; g++) {
            segs[g * n + e] = l[g]->w, segs16[g * n + e] = l[g]->wb;
            dense &= l[g]->w || l[g]->wb;
        }
    }
    sm_flat_experts fe = {n, 3, {segs, segs + n, segs + 2 * n}, {inter * h, inter * h, h * inter},
                          {segs16, segs16 + n, segs16 + 2 * n}};
    a->sim_weight = dense ? sm_alloc((size_t)n * n, sizeof(double)) : NULL;
    sm_monitor_span span;
    int wr = !dense ? sm_err("weight similarity needs dense experts")
             : a->sim_weight ? sm_similarity_weight(&fe, sm_monitor_span_init(&span, mon, 0.9, 1.0), a->sim_weight)
                             : -1;
    free(segs), free(segs16);
    return wr;
}

int sm_engine_analyse_weights(const sm_moe_block *b, const sm_monitor *mon, sm_layer_analysis *a)
{
    if (a->sim_weight)
        return sm_err("internal: the weight similarity is computed already");
    if (weight_similarity(b, mon, a) != 0)
        return -1;
    const int64_t i = first_nonfinite_d(a->sim_weight, (int64_t)a->n * a->n);
    if (i >= 0) /* (sm_layer_analysis_check's message) */
        return sm_err("the weight similarity of expert %lld is not finite (%s)", (long long)(i / a->n),
                      sm_nonfinite_name((float)a->sim_weight[i]));
    return 0;
}

int sm_engine_analyse_rows(const sm_moe_block *b, const sm_row_source *source,
                           const sm_analysis_opts *opts, const sm_monitor *mon,
                           sm_layer_analysis *a)
{
    memset(a, 0, sizeof *a);
    float *given = opts ? opts->outputs : NULL; /* taken over: used below, or freed */
    if (block_is_plain(b) != 0) {
        free(given);
        return -1;
    }
    const int64_t m = source ? source->m : 0;
    if (!source || !source->rows || m <= 0) {
        free(given);
        return sm_err("analysis needs calibration inputs");
    }
    const int n = b->n_experts, k = b->rule.top_k;
    const int64_t h = b->hidden, inter = b->experts[0].gate.out;
    const int64_t blk = opts && opts->block > 0 ? opts->block : DEFAULT_BLOCK;
    int64_t sample = opts && opts->sample > 0 ? opts->sample : DEFAULT_SAMPLE;
    sample = sample < m ? sample : m;
    a->n = n;
    a->hidden = h;
    a->inter = inter;
    a->tokens = m;
    a->sampled = sample;
    a->counts = sm_zalloc((size_t)n, sizeof(int64_t));
    a->freq = sm_alloc((size_t)n, sizeof(double));
    if (given && opts->outputs_len == n * sample * h) {
        a->outputs = given; /* (every value is written below) */
    } else {
        free(given);
        a->outputs = sm_alloc_f32((size_t)(n * sample * h));
    }
    a->sim_output = sm_alloc((size_t)n * n, sizeof(double));
    a->sim_logit = sm_alloc((size_t)n * n, sizeof(double));
    a->saliency = sm_alloc((size_t)n, sizeof(double));
    sm_saliency_acc *sal = sm_saliency_new(b, mon);
    float *z = sm_alloc_f32((size_t)(blk * n)), *w = sm_alloc_f32((size_t)(blk * k));
    int *idx = sm_alloc((size_t)(blk * k), sizeof(int));
    double *zsum = sm_zalloc((size_t)n, sizeof(double)), *zz = sm_zalloc((size_t)n * n, sizeof(double));
    double *shift = sm_zalloc((size_t)n, sizeof(double));
    float *zc = sm_alloc_f32((size_t)(blk * n)), *pz = sm_alloc_f32((size_t)n * n);
    float *xs = NULL, *g = NULL, *u = NULL, *tmp = NULL, *xbuf = sm_alloc_f32((size_t)(blk * h));
    gram_batch gb = {NULL, NULL};
    int rc = -1;
    if (!sal || !a->counts || !a->freq || !a->outputs || !a->sim_output || !a->sim_logit || !a->saliency || !z || !w ||
        !idx || !zsum || !zz || !shift || !zc || !pz || !xbuf)
        goto done;
    if (opts && opts->grams) {
        a->gram_in = sm_zalloc((size_t)n, sizeof(float *));
        a->gram_mid = sm_zalloc((size_t)n, sizeof(float *));
        if (!a->gram_in || !a->gram_mid)
            goto done;
        for (int e = 0; e < n; e++)
            if (!(a->gram_in[e] = sm_zalloc((size_t)(h * h), sizeof(float))) ||
                !(a->gram_mid[e] = sm_zalloc((size_t)(inter * inter), sizeof(float))))
                goto done;
    }
    /* xs: the sampled rows; g, u, tmp: the Grams' scratch (gram_flush, GRAM_ROWS rows at most) */
    if (!(xs = sm_alloc_f32((size_t)(sample * h))))
        goto done;
    if (a->gram_in) {
        int64_t tc = low_rank_columns(b);
        if (!(gb.rows = sm_alloc_f32((size_t)((int64_t)n * GRAM_ROWS * h))) ||
            !(gb.count = sm_zalloc((size_t)n, sizeof(int64_t))) || !(g = sm_alloc_f32((size_t)(GRAM_ROWS * inter))) ||
            !(u = sm_alloc_f32((size_t)(GRAM_ROWS * inter))) || !(tmp = sm_alloc_f32((size_t)(GRAM_ROWS * tc))))
            goto done;
    }

    /* Pass over all tokens: routing, frequencies, logit moments, Grams. */
    for (int64_t t0 = 0; t0 < m; t0 += blk) {
        if (sm_monitor_check(mon) != 0)
            goto done;
        const int64_t mb = m - t0 < blk ? m - t0 : blk;
        const float *xb = source->rows(source->ctx, t0, mb, xbuf);
        if (!xb)
            goto done;
        sm_route_logits(xb, mb, h, b->router, n, z);
        int64_t bad = first_nonfinite_f(z, mb * n);
        if (bad >= 0) {
            sm_err("the router logits of calibration row %lld are not finite (%s): the inputs or the router "
                   "overflow float32", (long long)(t0 + bad / n), sm_nonfinite_name(z[bad]));
            goto done;
        }
        if (sm_route_select(&b->rule, z, mb, n, idx, w) != 0)
            goto done;
        sm_route_count(idx, mb, k, n, a->counts);
        if (sm_saliency_push(sal, xb, mb, idx, w) != 0)
            goto done;
        if (t0 == 0) /* provisional centre: keeps the one-pass covariance well conditioned */
            for (int i = 0; i < n; i++) {
                double s = 0.0;
                for (int64_t t = 0; t < mb; t++)
                    s += z[t * n + i];
                shift[i] = s / mb;
            }
        for (int64_t t = 0; t < mb; t++)
            for (int i = 0; i < n; i++) {
                zc[t * n + i] = (float)(z[t * n + i] - shift[i]);
                zsum[i] += zc[t * n + i];
            }
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, n, (int)mb, 1.0f, zc, n, 0.0f, pz, n);
        for (int i = 0; i < n; i++)
            for (int j = i; j < n; j++)
                zz[i * n + j] += pz[i * n + j];
        if (a->gram_in)
            gram_add_block(b, xb, mb, idx, a, &gb, g, u, tmp);
        sm_monitor_report(mon, 0.7 * (double)(t0 + mb) / m, "routing statistics");
    }
    sm_route_frequencies(a->counts, m, n, a->freq);
    logit_correlation(zsum, zz, m, n, a->sim_logit);
    for (int e = 0; a->gram_in && e < n; e++) {
        gram_flush(b, a, &gb, e, g, u, tmp);
        symmetrize(a->gram_in[e], h);
        symmetrize(a->gram_mid[e], inter);
    }

    if (sm_saliency_finish(sal, a->saliency) != 0)
        goto done;

    /* Every expert on the evenly spaced token sample. */
    if (sample_expert_outputs(b, source, mon, a, xs) != 0)
        goto done;
    sm_outputs o = sm_layer_analysis_outputs(a);
    sm_monitor quiet = {NULL, NULL, mon ? mon->cancel : NULL}; /* cancellable; progress stays put */
    if (sm_similarity_output(&o, &quiet, a->sim_output) != 0)
        goto done;
    if (opts && opts->weight_sim && weight_similarity(b, mon, a) != 0)
        goto done;
    if (sm_layer_analysis_check(a) != 0) /* statistics the engine would cluster and merge on */
        goto done;
    sm_monitor_report(mon, 1.0, "analysis");
    rc = 0;
done:
    free(z), free(w), free(idx), free(zsum), free(zz), free(shift), free(zc), free(pz);
    free(xs), free(g), free(u), free(tmp), free(xbuf), free(gb.rows), free(gb.count);
    sm_saliency_free(sal);
    if (rc != 0)
        sm_layer_analysis_free(a);
    return rc;
}

/* ---- clusters ------------------------------------------------------------------------------ */

static const char *const sim_names[] = {"output", "weight", "logit"};

const char *sm_similarity_kind_name(sm_similarity_kind s)
{
    return (unsigned)s < 3 ? sim_names[s] : "?";
}

int sm_similarity_kind_parse(const char *name, sm_similarity_kind *out)
{
    for (int s = 0; s < 3; s++)
        if (name && strcmp(name, sim_names[s]) == 0) {
            *out = (sm_similarity_kind)s;
            return 0;
        }
    return sm_err("unknown similarity '%s' (expected output, weight or logit)", name ? name : "");
}

int sm_engine_cluster(const sm_layer_analysis *a, sm_cluster_algo algo, sm_similarity_kind sim,
                      int k, uint64_t seed, const sm_monitor *mon, int *assign)
{
    const double *s = sim == SM_SIM_OUTPUT ? a->sim_output
                      : sim == SM_SIM_WEIGHT ? a->sim_weight
                                             : a->sim_logit;
    if (!s)
        return sm_err("the analysis has no %s similarity", sm_similarity_kind_name(sim));
    sm_kmeans_opts ko = {.seed = seed};
    switch (algo) {
    case SM_CLUSTER_KMEANS: {
        if (sim != SM_SIM_OUTPUT)
            return sm_err("k-means clusters expert outputs; use kmedoids or hierarchical with "
                          "%s similarity", sm_similarity_kind_name(sim));
        sm_outputs o = sm_layer_analysis_outputs(a);
        return sm_kmeans_outputs(&o, a->sim_output, k, &ko, mon, assign, NULL);
    }
    case SM_CLUSTER_HIERARCHICAL:
        return sm_hcluster_average(s, a->n, k, assign);
    case SM_CLUSTER_KMEDOIDS:
        return sm_kmedoids(s, a->n, k, &ko, assign, NULL);
    case SM_CLUSTER_DOMINANT:
        return sm_cluster_dominant(a->freq, s, a->n, k, assign);
    case SM_CLUSTER_REAP:
        if (!a->saliency)
            return sm_err("reap groups need REAP saliencies (statistics read without the layer's experts from a "
                          "stats file that predates them)");
        return sm_cluster_reap(a->saliency, s, a->n, k, assign);
    }
    return sm_err("unknown clustering algorithm");
}

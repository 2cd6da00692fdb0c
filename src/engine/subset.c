/* subset: subset output errors from cached expert outputs (see subset.h). */
#include "engine/subset.h"

#include <cblas.h>
#include <limits.h>
#include <stdbool.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/diag.h"
#include "util/mem.h"
#include "util/parallel.h"

/* Work between cancellation checks while the cache is built: an expert runs on at most this many
 * floating-point operations' worth of rows at a time (but never fewer than MIN_RUN_ROWS rows,
 * which keeps its GEMMs large), and the Grams are formed GRAM_ROWS rows at a time. */
#define RUN_FLOP 3e10
#define MIN_RUN_ROWS 128
#define GRAM_ROWS 256
/* Positions computed beyond what a subset needed when a row's outputs are extended (fewer
 * extensions, each a little larger). */
#define EXTEND_MARGIN 2

struct sm_subset_cache {
    int n, top_k, R, min_keep;
    int64_t m;
    sm_route_rule rule;
    float *z;      /* m × n: the full router's logits */
    int *order;    /* m × R: experts by descending routing probability (ties: lower index) */
    int *pos;      /* m × n: position of each expert in its row's order, −1 beyond R */
    float *w_ref;  /* m × top_k: the full block's weights of order's first top_k */
    double *gram;  /* m × R(R+1)/2: packed upper Gram of the row's top-R expert outputs, of which
                    * the first depth[t] positions are computed */
    int *depth;    /* m: positions of each row computed so far (at least top_k) */
    const sm_moe_block *b; /* the block and rows (borrowed), for extending rows */
    const float *x;
    sm_monitor cancel;     /* the creator's cancellation, for extensions */
    double den;    /* ||Y||² of the full block, shared experts included */
};

void sm_subset_cache_free(sm_subset_cache *c)
{
    if (!c)
        return;
    free(c->z), free(c->order), free(c->pos), free(c->w_ref), free(c->gram), free(c->depth);
    free(c);
}

static int64_t packed_size(int R) { return (int64_t)R * (R + 1) / 2; }

/* Index of (a, b), a ≤ b, in a packed upper triangle of order R. */
static int64_t packed_at(int R, int a, int b) { return (int64_t)a * R - (int64_t)a * (a - 1) / 2 + (b - a); }

/* Every row's R most probable experts, in the order sm_route_select picks them: probabilities as
 * it computes them (sm_route_softmax) and ranks them (sm_route_rank). Then the full block's own
 * selection, which must be the order's first top_k. */
static int rank_rows(sm_subset_cache *c)
{
    const int n = c->n, R = c->R, k = c->top_k;
    float *p = sm_alloc_f32((size_t)n);
    unsigned char *taken = sm_alloc((size_t)n, 1);
    int *idx = sm_alloc((size_t)(c->m * k), sizeof(int));
    int rc = p && taken && idx ? 0 : -1;
    for (int64_t t = 0; rc == 0 && t < c->m; t++) {
        int *ord = c->order + t * R, *pos = c->pos + t * n;
        sm_route_softmax(c->z + t * n, n, p);
        sm_route_rank(p, n, R, taken, ord);
        for (int i = 0; i < n; i++)
            pos[i] = -1;
        for (int j = 0; j < R; j++)
            pos[ord[j]] = j;
    }
    if (rc == 0)
        rc = sm_route_select(&c->rule, c->z, c->m, n, idx, c->w_ref);
    for (int64_t t = 0; rc == 0 && t < c->m; t++)
        for (int j = 0; j < k; j++)
            if (idx[t * k + j] != c->order[t * R + j])
                rc = sm_err("internal: the routing of row %lld differs from its ranking", (long long)t);
    free(p), free(taken), free(idx);
    return rc;
}

/* How deep each row is computed first: as deep as a search needs when it drops the experts that
 * carry the least routing weight (what an output-error search mostly drops; half as many more
 * than it may drop), then one more, plus one of margin; a subset that reaches deeper on a row
 * computes that row again (extend). */
static int initial_depths(sm_subset_cache *c)
{
    const int n = c->n, k = c->top_k, R = c->R;
    int dropped = (n - c->min_keep) + (n - c->min_keep) / 2;
    dropped = dropped < n ? dropped : n;
    double *mass = sm_zalloc((size_t)n, sizeof(double));
    int *by_mass = sm_alloc((size_t)n, sizeof(int));
    unsigned char *likely = sm_zalloc((size_t)n, 1);
    int rc = mass && by_mass && likely ? 0 : -1;
    for (int64_t t = 0; rc == 0 && t < c->m; t++)
        for (int j = 0; j < k; j++)
            mass[c->order[t * R + j]] += c->w_ref[t * k + j];
    for (int i = 0; rc == 0 && i < n; i++) { /* ascending mass, ties by index (insertion) */
        int j = i;
        for (; j > 0 && mass[by_mass[j - 1]] > mass[i]; j--)
            by_mass[j] = by_mass[j - 1];
        by_mass[j] = i;
    }
    for (int i = 0; rc == 0 && i < dropped; i++)
        likely[by_mass[i]] = 1;
    for (int64_t t = 0; rc == 0 && t < c->m; t++) {
        int d = 0;
        for (int kept = 0; d < R && kept < k; d++)
            kept += !likely[c->order[t * R + d]];
        d += 2; /* one more dropped, and one of margin */
        c->depth[t] = d < R ? d : R;
    }
    free(mass), free(by_mass), free(likely);
    return rc;
}

/* Scratch of one block of rows while the cache is built. */
typedef struct block_ws {
    int64_t rows;   /* rows per block */
    const int64_t *row; /* the block's rows (indices into the cache's m) */
    float *out;     /* rows × R × H: row t's outputs in its order */
    float *xs, *ys; /* rows × H: an expert's gathered inputs and outputs; the shared experts' sum */
    int64_t *tok;   /* rows: gathered rows of an expert */
    double *d, *g;  /* R × H, R × R: one row's outputs in double and their Gram */
} block_ws;

/* Run expert e on the block's rows tok[0..ne) (chunks of at most `run` rows, the cancellation
 * points) and scatter its outputs into ws->out at each row's position. */
static int run_expert(const sm_subset_cache *c, const sm_moe_block *b, int e, const float *x, int64_t ne,
                      block_ws *ws, const sm_monitor *mon)
{
    const int64_t h = b->hidden, inter = b->experts[e].gate.out;
    int64_t run = (int64_t)(RUN_FLOP / (6.0 * (double)h * (double)inter));
    run = run < MIN_RUN_ROWS ? MIN_RUN_ROWS : run;
    for (int64_t r0 = 0; r0 < ne; r0 += run) {
        const int64_t nr = ne - r0 < run ? ne - r0 : run;
        if (sm_monitor_check(mon) != 0)
            return -1;
        for (int64_t r = 0; r < nr; r++)
            memcpy(ws->xs + r * h, x + ws->row[ws->tok[r0 + r]] * h, sizeof(float) * (size_t)h);
        if (sm_expert_forward(&b->experts[e], ws->xs, nr, ws->ys) != 0)
            return -1;
        for (int64_t r = 0; r < nr; r++) {
            const int64_t t = ws->tok[r0 + r];
            const int p = c->pos[ws->row[t] * c->n + e];
            memcpy(ws->out + (t * c->R + p) * h, ws->ys + r * h, sizeof(float) * (size_t)h);
        }
    }
    return 0;
}

/* ||Y||² of the block's rows [t0, t0 + tb): the weighted top_k outputs plus the shared experts. */
static int block_norm(sm_subset_cache *c, const sm_moe_block *b, const float *x, int64_t t0, int64_t tb,
                      block_ws *ws)
{
    const int64_t h = b->hidden;
    const int R = c->R, k = c->top_k;
    if (b->n_shared > 0) {
        memset(ws->xs, 0, sizeof(float) * (size_t)(tb * h));
        for (int i = 0; i < b->n_shared; i++) {
            if (sm_expert_forward(&b->shared[i], x, tb, ws->ys) != 0)
                return -1;
            for (int64_t q = 0; q < tb * h; q++)
                ws->xs[q] += ws->ys[q];
        }
    }
    for (int64_t t = 0; t < tb; t++) {
        const float *w = c->w_ref + (t0 + t) * k, *o = ws->out + t * R * h;
        double gate = 1.0;
        if (b->n_shared > 0 && b->shared_gate)
            gate = 1.0 / (1.0 + exp(-(double)cblas_sdot((int)h, x + t * h, 1, b->shared_gate, 1)));
        double s = 0.0;
        for (int64_t q = 0; q < h; q++) {
            double y = b->n_shared > 0 ? gate * ws->xs[t * h + q] : 0.0;
            for (int j = 0; j < k; j++)
                y += (double)w[j] * o[j * h + q];
            s += y * y;
        }
        c->den += s;
    }
    return 0;
}

/* The Grams of the block's rows over their first depth[t] positions, in double (a subset's error
 * is a small difference of large terms when dropped experts resemble kept ones). */
static int block_grams(sm_subset_cache *c, int64_t h, int64_t tb, block_ws *ws, const sm_monitor *mon)
{
    const int R = c->R;
    for (int64_t t = 0; t < tb; t++) {
        if (t % GRAM_ROWS == 0 && sm_monitor_check(mon) != 0)
            return -1;
        const int d = c->depth[ws->row[t]];
        const float *o = ws->out + t * R * h;
        for (int64_t q = 0; q < d * h; q++)
            ws->d[q] = o[q];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, d, (int)h, 1.0, ws->d, (int)h, 0.0, ws->g, R);
        double *dst = c->gram + ws->row[t] * packed_size(R);
        for (int a = 0; a < d; a++)
            for (int q = a; q < d; q++)
                dst[packed_at(R, a, q)] = ws->g[a * R + q];
    }
    return 0;
}

/* Outputs of the block's rows: every expert on the rows that rank it within their first depth[t]
 * positions; `first`: the block is rows [t0, t0 + tb) seen for the first time (||Y||² too). */
static int cache_block(sm_subset_cache *c, const sm_moe_block *b, const float *x, int64_t tb, bool first,
                       block_ws *ws, const sm_monitor *mon)
{
    const int n = c->n;
    for (int e = 0; e < n; e++) {
        int64_t ne = 0;
        for (int64_t t = 0; t < tb; t++) {
            const int p = c->pos[ws->row[t] * n + e];
            if (p >= 0 && p < c->depth[ws->row[t]])
                ws->tok[ne++] = t;
        }
        if (ne && run_expert(c, b, e, x, ne, ws, mon) != 0)
            return -1;
        if (first)
            sm_monitor_report(mon, ((double)ws->row[0] + (double)tb * (e + 1) / n) / (double)c->m,
                              "expert outputs for pruning");
    }
    if (first && block_norm(c, b, x + ws->row[0] * b->hidden, ws->row[0], tb, ws) != 0)
        return -1;
    return block_grams(c, b->hidden, tb, ws, mon);
}

/* Outputs and Grams of rows[0..nr) (ascending) to their depth: the first time consecutive rows
 * 0..m-1 (first), later the rows a subset needs deeper. */
static int cache_rows(sm_subset_cache *c, const int64_t *rows, int64_t nr, bool first, const sm_monitor *mon)
{
    const sm_moe_block *b = c->b;
    const float *x = c->x;
    const int64_t h = b->hidden;
    block_ws ws = {0};
    ws.rows = SM_SUBSET_BLOCK_BYTES / ((int64_t)sizeof(float) * h * (c->R + 2));
    ws.rows = ws.rows < 1 ? 1 : ws.rows > nr ? nr : ws.rows;
    ws.out = sm_alloc_f32((size_t)(ws.rows * c->R * h));
    ws.xs = sm_alloc_f32((size_t)(ws.rows * h));
    ws.ys = sm_alloc_f32((size_t)(ws.rows * h));
    ws.tok = sm_alloc((size_t)ws.rows, sizeof(int64_t));
    ws.d = sm_alloc((size_t)(c->R * h), sizeof(double));
    ws.g = sm_alloc((size_t)c->R * (size_t)c->R, sizeof(double));
    int rc = ws.out && ws.xs && ws.ys && ws.tok && ws.d && ws.g ? 0 : -1;
    for (int64_t t0 = 0; rc == 0 && t0 < nr; t0 += ws.rows) {
        const int64_t tb = nr - t0 < ws.rows ? nr - t0 : ws.rows;
        ws.row = rows + t0;
        rc = cache_block(c, b, x, tb, first, &ws, mon);
    }
    free(ws.out), free(ws.xs), free(ws.ys), free(ws.tok), free(ws.d), free(ws.g);
    return rc;
}

sm_subset_cache *sm_subset_cache_new(const sm_moe_block *b, const float *x, int64_t m, int min_keep,
                                     const sm_monitor *mon)
{
    if (sm_moe_block_check(b) != 0)
        return NULL;
    if (b->expert_map || b->n_router != b->n_experts) {
        sm_err("subset errors need a layer with one router row per expert");
        return NULL;
    }
    const int n = b->n_experts;
    if (!x || m <= 0 || m > INT_MAX) {
        sm_err("subset errors need calibration inputs");
        return NULL;
    }
    if (min_keep < 1 || min_keep > n) {
        sm_err("cannot keep %d of %d experts", min_keep, n);
        return NULL;
    }
    sm_subset_cache *c = sm_zalloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->n = n;
    c->m = m;
    c->rule = b->rule;
    c->top_k = b->rule.top_k;
    c->min_keep = min_keep;
    c->R = c->top_k + (n - min_keep) < n ? c->top_k + (n - min_keep) : n;
    c->z = sm_alloc_f32((size_t)(m * n));
    c->order = sm_alloc((size_t)(m * c->R), sizeof(int));
    c->pos = sm_alloc((size_t)(m * n), sizeof(int));
    c->w_ref = sm_alloc_f32((size_t)(m * c->top_k));
    c->gram = sm_alloc((size_t)m, sizeof(double) * (size_t)packed_size(c->R));
    c->depth = sm_alloc((size_t)m, sizeof(int));
    int64_t *rows = sm_alloc((size_t)m, sizeof(int64_t));
    c->b = b, c->x = x;
    c->cancel.cancel = mon ? mon->cancel : NULL;
    if (!c->z || !c->order || !c->pos || !c->w_ref || !c->gram || !c->depth || !rows)
        goto fail;
    /* the logits a pruned block computes are these, restricted to its rows */
    sm_route_logits(x, m, b->hidden, b->router, n, c->z);
    for (int64_t q = 0; q < m * n; q++)
        if (!isfinite(c->z[q])) {
            sm_err("the router logits of row %lld are not finite: the inputs or the router overflow float32",
                   (long long)(q / n));
            goto fail;
        }
    for (int64_t t = 0; t < m; t++)
        rows[t] = t;
    if (rank_rows(c) != 0 || initial_depths(c) != 0 || cache_rows(c, rows, m, true, mon) != 0)
        goto fail;
    free(rows);
    return c;
fail:
    free(rows);
    sm_subset_cache_free(c);
    return NULL;
}

/* Rows whose deepest selected position (deepest, per row) reaches beyond their computed
 * positions, computed deeper. */
static int extend(sm_subset_cache *c, const int16_t *deepest)
{
    int64_t *rows = NULL, nr = 0;
    for (int64_t t = 0; t < c->m; t++) {
        if (deepest[t] < c->depth[t])
            continue;
        if (!rows && !(rows = sm_alloc((size_t)c->m, sizeof(int64_t))))
            return -1;
        c->depth[t] = deepest[t] + 1 + EXTEND_MARGIN < c->R ? deepest[t] + 1 + EXTEND_MARGIN : c->R;
        rows[nr++] = t;
    }
    int rc = nr ? cache_rows(c, rows, nr, false, &c->cancel) : 0;
    free(rows);
    return rc;
}

/* Whether a selection reaches beyond some row's computed positions. */
static bool needs_extension(const sm_subset_cache *c, const int16_t *deepest)
{
    for (int64_t t = 0; t < c->m; t++)
        if (deepest[t] >= c->depth[t])
            return true;
    return false;
}

/* ||Σ_a cv[a] E_{pv[a]}||² of one row from its packed Gram. */
static double quadratic(const double *g, int R, const int *pv, const double *cv, int np)
{
    double s = 0.0;
    for (int a = 0; a < np; a++)
        for (int q = 0; q < np; q++) {
            int i = pv[a] < pv[q] ? pv[a] : pv[q], j = pv[a] < pv[q] ? pv[q] : pv[a];
            s += cv[a] * cv[q] * g[packed_at(R, i, j)];
        }
    return s;
}

/* A batch of subsets: each one's selection on every row (positions in the row's order, weights,
 * the deepest position), made on several threads, then its error. */
typedef struct batch {
    sm_subset_cache *c;
    const int *keeps;
    int k, kk;
    sm_route_rule rule;
    int16_t *sel;     /* per subset m × kk positions */
    float *w;         /* per subset m × kk weights */
    int16_t *deepest; /* per subset m */
    double *errs;
} batch;

/* Subset i's routing on every row: sm_route_select on the kept logits, row by row. */
static int batch_select(void *ctx, int64_t i, const sm_monitor *mon)
{
    (void)mon;
    batch *bt = ctx;
    const sm_subset_cache *c = bt->c;
    const int n = c->n, k = bt->k, kk = bt->kk, *keep = bt->keeps + i * k;
    const int64_t m = c->m;
    float *zs = sm_alloc_f32((size_t)k), *p = sm_alloc_f32((size_t)k), *w = sm_alloc_f32((size_t)kk);
    int *idx = sm_alloc((size_t)kk, sizeof *idx);
    unsigned char *taken = sm_alloc((size_t)k, 1);
    int16_t *sel = bt->sel + i * m * kk, *deep = bt->deepest + i * m;
    float *sw = bt->w + i * m * kk;
    int rc = zs && p && w && idx && taken ? 0 : -1;
    for (int64_t t = 0; rc == 0 && t < m; t++) {
        for (int j = 0; j < k; j++)
            zs[j] = c->z[t * n + keep[j]];
        sm_route_select_row(&bt->rule, zs, k, p, taken, idx, w);
        int deepest = -1;
        for (int j = 0; j < kk; j++) {
            const int at = c->pos[t * n + keep[idx[j]]];
            if (at < 0) {
                rc = sm_err("internal: row %lld selects an expert beyond its %d cached ones", (long long)t, c->R);
                break;
            }
            sel[t * kk + j] = (int16_t)at, sw[t * kk + j] = w[j];
            deepest = at > deepest ? at : deepest;
        }
        deep[t] = (int16_t)deepest;
    }
    free(zs), free(p), free(w), free(idx), free(taken);
    return rc;
}

/* Subset i's error from the Grams: the quadratic form of each row, summed in row order. */
static int batch_error(void *ctx, int64_t i, const sm_monitor *mon)
{
    (void)mon;
    batch *bt = ctx;
    const sm_subset_cache *c = bt->c;
    const int R = c->R, top = c->top_k, kk = bt->kk;
    const int16_t *sel = bt->sel + i * c->m * kk;
    const float *sw = bt->w + i * c->m * kk;
    double num = 0.0;
    int pv[128];
    double cv[128];
    for (int64_t t = 0; t < c->m; t++) {
        int np = 0;
        for (int j = 0; j < top; j++) /* the full block's selection: the first top_k of the order */
            pv[np] = j, cv[np++] = c->w_ref[t * top + j];
        for (int j = 0; j < kk; j++) {
            const int p = sel[t * kk + j];
            int a = 0;
            while (a < np && pv[a] != p)
                a++;
            if (a == np)
                pv[np] = p, cv[np++] = 0.0;
            cv[a] -= sw[t * kk + j];
        }
        num += quadratic(c->gram + t * packed_size(R), R, pv, cv, np);
    }
    num = num > 0.0 ? num : 0.0;
    bt->errs[i] = c->den > 0.0 ? sqrt(num / c->den) : sqrt(num);
    return 0;
}

/* Bytes of selections a batch holds at once (larger batches go in parts). */
#define BATCH_BYTES (32ll << 20)

/* count subsets (count × k, each ascending) of a batch part. A subset reaching beyond a row's
 * computed positions extends the cache first, as the subsets one at a time would, in order:
 * each extension recomputes rows (their outputs, so their Gram entries, depend on the rows
 * computed with them), so the subsets between two extensions are scored together, on the cache
 * as it is then, and the scores are those of the serial order on any number of threads. */
static int errors_part(sm_subset_cache *c, const int *keeps, int64_t count, int k, const sm_monitor *mon,
                       double *errs)
{
    batch bt = {.c = c, .keeps = keeps, .k = k, .rule = c->rule, .errs = errs};
    bt.rule.top_k = bt.kk = c->top_k < k ? c->top_k : k;
    const int64_t m = c->m;
    bt.sel = sm_alloc((size_t)(count * m * bt.kk), sizeof *bt.sel);
    bt.w = sm_alloc_f32((size_t)(count * m * bt.kk));
    bt.deepest = sm_alloc((size_t)(count * m), sizeof *bt.deepest);
    int rc = bt.sel && bt.w && bt.deepest ? 0 : -1;
    if (rc == 0)
        rc = sm_parallel_for(count, count * m * k * 8, batch_select, &bt, mon, NULL);
    for (int64_t p = 0; rc == 0 && p < count;) {
        if (needs_extension(c, bt.deepest + p * m) && (rc = extend(c, bt.deepest + p * m)) != 0)
            break;
        int64_t q = p + 1;
        while (q < count && !needs_extension(c, bt.deepest + q * m))
            q++;
        /* subsets p..q-1 on the cache as it is now */
        batch part = bt;
        part.sel += p * m * bt.kk, part.w += p * m * bt.kk, part.deepest += p * m, part.errs += p;
        rc = sm_parallel_for(q - p, (q - p) * m * (c->top_k + bt.kk) * (c->top_k + bt.kk), batch_error, &part, mon, NULL);
        p = q;
    }
    free(bt.sel), free(bt.w), free(bt.deepest);
    return rc;
}

int sm_subset_cache_errors(void *cache, const int *keeps, int count, int k, const sm_monitor *mon, double *errs)
{
    sm_subset_cache *c = cache;
    const int n = c->n;
    if (k < c->min_keep || k > n)
        return sm_err("subset of %d experts: the cache covers subsets of %d to %d", k, c->min_keep, n);
    for (int i = 0; i < count; i++)
        for (int j = 0; j < k; j++) {
            const int *keep = keeps + (int64_t)i * k;
            if (keep[j] < 0 || keep[j] >= n || (j > 0 && keep[j] <= keep[j - 1]))
                return sm_err("kept experts must be ascending indices below %d", n);
        }
    const int kk = c->top_k < k ? c->top_k : k;
    if (kk > 64)
        return sm_err("routing: top-%d of %d experts is invalid", kk, k);
    const int64_t per = c->m * (kk * (int64_t)(sizeof(int16_t) + sizeof(float)) + (int64_t)sizeof(int16_t));
    const int64_t part = BATCH_BYTES / per > 1 ? BATCH_BYTES / per : 1;
    for (int64_t i0 = 0; i0 < count; i0 += part)
        if (errors_part(c, keeps + i0 * k, count - i0 < part ? count - i0 : part, k, mon, errs + i0) != 0)
            return -1;
    return 0;
}

int sm_subset_cache_error(void *cache, const int *keep, int k, double *err)
{
    return sm_subset_cache_errors(cache, keep, 1, k, NULL, err);
}

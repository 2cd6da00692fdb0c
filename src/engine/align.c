/* align: neuron alignment of experts (see align.h). */
#include "engine/align.h"
#include "util/diag.h"
#include "util/matmul.h"
#include "util/mem.h"
#include "util/parallel.h"

#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Rows between progress reports of the Hungarian method (cancellation is checked every row). */
#define REPORT_ROWS 64

static int assignment_solve(const double *cost, int n, const sm_monitor *mon, double lo, double hi, int *assign)
{
    if (n < 1)
        return sm_err("assignment of %d rows", n);
    /* Hungarian method with row/column potentials (shortest augmenting paths), 1-based arrays:
     * p[j] = row matched to column j, way[j] = previous column on the path. */
    double *u = sm_zalloc((size_t)n + 1, sizeof *u), *v = sm_zalloc((size_t)n + 1, sizeof *v);
    double *minv = sm_alloc((size_t)n + 1, sizeof *minv);
    int *p = sm_zalloc((size_t)n + 1, sizeof *p), *way = sm_zalloc((size_t)n + 1, sizeof *way);
    char *used = sm_alloc((size_t)n + 1, 1);
    int rc = -1;
    if (!u || !v || !minv || !p || !way || !used)
        goto out;
    for (int i = 1; i <= n; i++) {
        if (sm_monitor_check(mon))
            goto out;
        if ((i - 1) % REPORT_ROWS == 0)
            sm_monitor_report(mon, lo + (hi - lo) * (i - 1) / n, "alignment: assignment");
        p[0] = i;
        int j0 = 0;
        for (int j = 0; j <= n; j++)
            minv[j] = INFINITY, used[j] = 0;
        do {
            used[j0] = 1;
            int i0 = p[j0], j1 = 0;
            double delta = INFINITY;
            const double *row = cost + (size_t)(i0 - 1) * n;
            for (int j = 1; j <= n; j++)
                if (!used[j]) {
                    double cur = row[j - 1] - u[i0] - v[j];
                    if (cur < minv[j])
                        minv[j] = cur, way[j] = j0;
                    if (minv[j] < delta)
                        delta = minv[j], j1 = j;
                }
            if (!j1) {
                sm_err("assignment: cost matrix has non-finite entries");
                goto out;
            }
            for (int j = 0; j <= n; j++)
                if (used[j])
                    u[p[j]] += delta, v[j] -= delta;
                else
                    minv[j] -= delta;
            j0 = j1;
        } while (p[j0] != 0);
        do {
            int j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
        } while (j0);
    }
    for (int j = 1; j <= n; j++)
        assign[p[j] - 1] = j - 1;
    rc = 0;
out:
    free(u), free(v), free(minv), free(p), free(way), free(used);
    return rc;
}

int sm_assignment_solve(const double *cost, int n, int *assign)
{
    return assignment_solve(cost, n, NULL, 0, 1, assign);
}

/* Rows of calibration inputs per forward block, and correlation columns per sgemm: the units of
 * work between progress reports and cancellation checks (at Mixtral's I = 14336, H = 4096 a
 * block is ~30 GFLOP of activations or ~120 GFLOP of correlations). */
#define ACT_BLOCK 256
#define CORR_COLS 1024
/* Above ~2^35 flops a block (~0.1 s; Mixtral's blocks above are seconds of one core), blocks
 * shrink to that: cancellation within a second at every shape (util/monitor.h). */
#define CHECK_FLOPS ((int64_t)1 << 35)

/* `full` units of `per` flops each, or fewer so that a block stays under CHECK_FLOPS (at least 8). */
static int64_t block_units(int64_t full, int64_t per)
{
    const int64_t b = CHECK_FLOPS / (per > 0 ? per : 1);
    return b < 8 ? 8 : b > full ? full : b;
}

/* The elementwise and per-column passes of activations(), as items of parallel loops: each item
 * computes its elements (or its columns, each summed over the rows in order) as one loop would. */
typedef struct act_pass {
    float *h, *ht, *tmp;
    int64_t ni, rows, len;
    double *mean, *ss;
    float *scale;
} act_pass;

#define ACT_ITEM_ELEMS ((int64_t)1 << 16)
#define ACT_ITEM_COLS 128
#define ACT_ITEM_ROWS 64

static int act_swiglu(void *ctx, int64_t i, const sm_monitor *mon)
{
    (void)mon;
    const act_pass *p = ctx;
    const int64_t end = (i + 1) * ACT_ITEM_ELEMS < p->len ? (i + 1) * ACT_ITEM_ELEMS : p->len;
    for (int64_t q = i * ACT_ITEM_ELEMS; q < end; q++)
        p->h[q] = p->h[q] / (1.0f + expf(-p->h[q])) * p->tmp[q];
    return 0;
}

/* Columns [i·ACT_ITEM_COLS, ...): mean, then the sum of squared deviations, each summed over rows
 * in order (walked row by row, the item's columns at once: contiguous reads), then the scale. */
static int act_stats(void *ctx, int64_t i, const sm_monitor *mon)
{
    (void)mon;
    const act_pass *p = ctx;
    const int64_t ni = p->ni, rows = p->rows, j0 = i * ACT_ITEM_COLS, j1 = j0 + ACT_ITEM_COLS < ni ? j0 + ACT_ITEM_COLS : ni;
    const float *h = p->h;
    double *mean = p->mean, *ss = p->ss;
    for (int64_t t = 0; t < rows; t++)
        for (int64_t j = j0; j < j1; j++)
            mean[j] += h[t * ni + j];
    for (int64_t j = j0; j < j1; j++)
        mean[j] /= rows;
    for (int64_t t = 0; t < rows; t++)
        for (int64_t j = j0; j < j1; j++) {
            double d = h[t * ni + j] - mean[j];
            ss[j] += d * d;
        }
    for (int64_t j = j0; j < j1; j++) {
        double sd = sqrt(ss[j] / rows);
        p->scale[j] = sd > 1e-12 * (fabs(mean[j]) + 1e-30) && sd > 0 ? (float)(1.0 / sd) : 0.0f;
    }
    return 0;
}

/* Rows [i·ACT_ITEM_ROWS, ...) standardised; transposed column by column within the block, so the
 * writes fill cache lines. */
static int act_standardise(void *ctx, int64_t i, const sm_monitor *mon)
{
    (void)mon;
    const act_pass *p = ctx;
    const int64_t ni = p->ni, rows = p->rows, t0 = i * ACT_ITEM_ROWS;
    const int64_t t1 = rows - t0 < ACT_ITEM_ROWS ? rows : t0 + ACT_ITEM_ROWS;
    float *h = p->h, *ht = p->ht;
    const double *mean = p->mean;
    const float *scale = p->scale;
    for (int64_t j = 0; ht && j < ni; j++)
        for (int64_t t = t0; t < t1; t++)
            ht[j * rows + t] = (float)((h[t * ni + j] - mean[j]) * scale[j]);
    for (int64_t t = t0; !ht && t < t1; t++)
        for (int64_t j = 0; j < ni; j++)
            h[t * ni + j] = (float)((h[t * ni + j] - mean[j]) * scale[j]);
    return 0;
}

/* Standardised SwiGLU activations of an expert on `rows` of x (m × hidden; row t of the sample
 * is x row t·m/rows): h (rows × I). Forward passes in blocks of ACT_BLOCK rows (xs: ACT_BLOCK ×
 * hidden, tmp: ACT_BLOCK × I scratch), cancellable between blocks; progress lo..hi. ht: NULL, or
 * where the standardised activations go transposed (I × rows; h then keeps the raw ones).
 * The elementwise and per-column passes run on every core (util/parallel). */
static int activations(const sm_expert *e, const float *x, int64_t m, int64_t rows, float *h, float *ht, float *xs,
                       float *tmp, const sm_monitor *mon, double lo, double hi)
{
    int64_t ni = e->gate.out, H = e->gate.in, blk = block_units(ACT_BLOCK, 4 * H * ni);
    act_pass p = {.ht = ht, .tmp = tmp, .ni = ni, .rows = rows};
    for (int64_t t0 = 0; t0 < rows; t0 += blk) {
        if (sm_monitor_check(mon))
            return -1;
        int64_t mb = rows - t0 < blk ? rows - t0 : blk;
        for (int64_t t = 0; t < mb; t++)
            memcpy(xs + t * H, x + ((t0 + t) * m / rows) * H, sizeof(float) * (size_t)H);
        float *hb = h + t0 * ni;
        sm_linear_forward(&e->gate, xs, mb, hb, NULL);
        sm_linear_forward(&e->up, xs, mb, tmp, NULL);
        p.h = hb, p.len = mb * ni;
        if (sm_parallel_for((p.len + ACT_ITEM_ELEMS - 1) / ACT_ITEM_ELEMS, 20 * p.len, act_swiglu, &p, mon, NULL))
            return -1;
        sm_monitor_report(mon, lo + (hi - lo) * (double)(t0 + mb) / rows, "alignment: activations");
    }
    p.h = h;
    p.mean = sm_zalloc((size_t)ni, sizeof *p.mean), p.ss = sm_zalloc((size_t)ni, sizeof *p.ss);
    p.scale = sm_alloc_f32((size_t)ni);
    int rc = p.mean && p.ss && p.scale ? 0 : -1;
    if (rc == 0)
        rc = sm_parallel_for((ni + ACT_ITEM_COLS - 1) / ACT_ITEM_COLS, 3 * rows * ni, act_stats, &p, mon, NULL);
    if (rc == 0) /* checked between blocks of rows: at Mixtral's I this pass takes most of a second */
        rc = sm_parallel_for((rows + ACT_ITEM_ROWS - 1) / ACT_ITEM_ROWS, rows * ni, act_standardise, &p, mon, NULL);
    free(p.mean), free(p.ss), free(p.scale);
    return rc;
}

typedef struct {
    float c;
    int i, j;
} cand;

static int cmp_cand(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->c != y->c)
        return x->c > y->c ? -1 : 1;
    return x->i != y->i ? (x->i < y->i ? -1 : 1) : (x->j < y->j ? -1 : x->j > y->j);
}

/* Greedy on each row's best candidates, leftovers exact. c: n × n correlations. Every buffer is
 * allocated before anything is matched and perm is written only on success, so a failure
 * (allocation, cancellation) leaves no partial permutation behind. */
static int match_large(const float *c, int n, const sm_monitor *mon, double lo, double hi, int *perm)
{
    int nc = SM_ALIGN_CANDIDATES < n ? SM_ALIGN_CANDIDATES : n;
    cand *all = sm_alloc((size_t)n * nc, sizeof *all);
    int *col_of = sm_alloc((size_t)n, sizeof *col_of), *row_of = sm_alloc((size_t)n, sizeof *row_of);
    int *best = sm_alloc((size_t)nc, sizeof *best);
    int *lr = sm_alloc((size_t)n, sizeof *lr), *lc = sm_alloc((size_t)n, sizeof *lc), *as = sm_alloc((size_t)n, sizeof *as);
    double *sub = NULL;
    int rc = -1;
    if (!all || !col_of || !row_of || !best || !lr || !lc || !as)
        goto out;
    for (int i = 0; i < n; i++) {
        if (i % 1024 == 0) {
            if (sm_monitor_check(mon))
                goto out;
            sm_monitor_report(mon, lo + 0.5 * (hi - lo) * i / n, "alignment: candidates");
        }
        const float *r = c + (size_t)i * n;
        int have = 0;
        for (int j = 0; j < n; j++) { /* insertion into the row's top-nc */
            if (have == nc && r[j] <= r[best[nc - 1]])
                continue;
            int q = have < nc ? have++ : nc - 1;
            while (q > 0 && r[best[q - 1]] < r[j]) {
                best[q] = best[q - 1];
                q--;
            }
            best[q] = j;
        }
        for (int q = 0; q < nc; q++)
            all[(size_t)i * nc + q] = (cand){r[best[q]], i, best[q]};
    }
    if (sm_monitor_check(mon))
        goto out;
    qsort(all, (size_t)n * nc, sizeof *all, cmp_cand);
    for (int i = 0; i < n; i++)
        col_of[i] = row_of[i] = -1;
    for (size_t q = 0; q < (size_t)n * nc; q++)
        if (col_of[all[q].i] < 0 && row_of[all[q].j] < 0)
            col_of[all[q].i] = all[q].j, row_of[all[q].j] = all[q].i;
    /* Leftover rows and columns: exact on their sub-matrix when there are at most
     * SM_ALIGN_EXACT_MAX of them, else paired in index order. */
    int nl = 0, b = 0;
    for (int i = 0; i < n; i++) {
        if (col_of[i] < 0)
            lr[nl++] = i;
        if (row_of[i] < 0)
            lc[b++] = i;
    }
    if (nl != b) {
        sm_err("internal: candidate matching left %d rows and %d columns", nl, b);
        goto out;
    }
    if (nl && nl <= SM_ALIGN_EXACT_MAX) {
        if (!(sub = sm_alloc((size_t)nl * nl, sizeof *sub)))
            goto out;
        for (int i = 0; i < nl; i++)
            for (int j = 0; j < nl; j++)
                sub[(size_t)i * nl + j] = 1.0 - c[(size_t)lr[i] * n + lc[j]];
        if (assignment_solve(sub, nl, mon, lo + 0.5 * (hi - lo), hi, as))
            goto out;
        for (int i = 0; i < nl; i++)
            col_of[lr[i]] = lc[as[i]];
    } else {
        for (int i = 0; i < nl; i++)
            col_of[lr[i]] = lc[i];
    }
    memcpy(perm, col_of, sizeof(int) * (size_t)n);
    rc = 0;
out:
    free(all), free(col_of), free(row_of), free(best), free(lr), free(lc), free(as), free(sub);
    return rc;
}

int sm_align_match(const float *c, int n, bool exact, const sm_monitor *mon, int *perm)
{
    if (n < 1)
        return sm_err("matching of %d neurons", n);
    if (!exact)
        return match_large(c, n, mon, 0, 1, perm);
    double *cost = sm_alloc((size_t)n * n, sizeof *cost);
    if (!cost)
        return -1;
    for (size_t q = 0; q < (size_t)n * n; q++)
        cost[q] = 1.0 - c[q];
    int rc = assignment_solve(cost, n, mon, 0, 1, perm);
    free(cost);
    return rc;
}

/* Whether a pair's correlations take the large path (oneDNN on transposed activations). */
static bool pair_large(int64_t ni, int64_t rows) { return ni >= 32 && ni * rows >= (int64_t)1 << 20; }

static int64_t pair_rows(int64_t m) { return m < SM_ALIGN_MAX_ROWS ? m : SM_ALIGN_MAX_ROWS; }

/* The large path's standardised activations of an expert, transposed (I × rows), kept per expert
 * by a memo: acts[e], NULL until computed. */
typedef struct {
    float **acts;
    int64_t bytes; /* held, at most SM_ALIGN_MEMO_ACT_BYTES */
} act_cache;

/* The correlations of a pair into c (I × I; progress 0–0.7 of mon: activations, then the
 * products). On the large path, the reference's and the member's transposed activations are
 * taken from *ref_t / *mem_t when set, and those computed here are handed back through them (the
 * caller then owns them) when keep is true. */
static int pair_corr(const sm_expert *ref, const sm_expert *mem, const float *x, int64_t m, const sm_monitor *mon,
                     bool keep, float **ref_t, float **mem_t, float *c)
{
    if (!ref->gate.w || !ref->up.w || !ref->down.w || !mem->gate.w || !mem->up.w || !mem->down.w)
        return sm_err("alignment needs dense experts");
    int64_t ni = ref->gate.out, H = ref->gate.in;
    if (mem->gate.out != ni || mem->gate.in != H)
        return sm_err("alignment of experts of different shapes");
    if (ni > INT32_MAX / 2)
        return sm_err("intermediate size %lld is too large to align", (long long)ni);
    if (!x || m < 2)
        return sm_err("alignment needs calibration inputs");
    int64_t rows = pair_rows(m);
    int64_t blk = rows < ACT_BLOCK ? rows : ACT_BLOCK;
    float *xs = sm_alloc_f32((size_t)(blk * H)), *tmp = sm_alloc_f32((size_t)(blk * ni));
    /* Large correlations run through oneDNN (util/matmul: 4–6x OpenBLAS here), which wants the
     * activations transposed (hr is then the raw activations' scratch for both experts); small
     * ones keep their OpenBLAS product (and results). */
    const bool large = pair_large(ni, rows);
    const bool have_r = large && ref_t && *ref_t, have_m = large && mem_t && *mem_t;
    float *hr = have_r && have_m ? NULL : sm_alloc_f32((size_t)(rows * ni)), *hm = large ? hr : sm_alloc_f32((size_t)(rows * ni));
    float *hrt = !large ? NULL : have_r ? *ref_t : sm_alloc_f32((size_t)(rows * ni));
    float *hmt = !large ? NULL : have_m ? *mem_t : sm_alloc_f32((size_t)(rows * ni));
    int rc = -1;
    if (!xs || (!hr && !(have_r && have_m)) || (!large && !hm) || !tmp || (large && (!hrt || !hmt)))
        goto out;
    /* Progress: activations 0–0.4, correlations 0.4–0.7, matching 0.7–1 (roughly their share
     * of the time at Mixtral and Qwen3 shapes). */
    if ((!have_r && activations(ref, x, m, rows, hr, hrt, xs, tmp, mon, 0.0, 0.2)) ||
        (!have_m && activations(mem, x, m, rows, hm, hmt, xs, tmp, mon, 0.2, 0.4)))
        goto out;
    /* C = H_refᵀ H_mem / rows, CORR_COLS columns (large: rows of C) at a time. */
    const int64_t corr_cols = block_units(CORR_COLS, 2 * ni * rows);
    for (int64_t j0 = 0; j0 < ni; j0 += corr_cols) {
        if (sm_monitor_check(mon))
            goto out;
        int64_t nb = ni - j0 < corr_cols ? ni - j0 : corr_cols;
        if (large) {
            sm_matmul(nb, ni, rows, hrt + j0 * rows, hmt, NULL, 0.0f, c + j0 * ni);
            for (int64_t q = j0 * ni; q < (j0 + nb) * ni; q++)
                c[q] *= 1.0f / (float)rows;
        } else {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)ni, (int)nb, (int)rows, 1.0f / (float)rows, hr,
                        (int)ni, hm + j0, (int)ni, 0.0f, c + j0, (int)ni);
        }
        sm_monitor_report(mon, 0.4 + 0.3 * (double)(j0 + nb) / ni, "alignment: correlations");
    }
    if (large && keep) { /* computed here: the caller keeps them */
        if (!have_r)
            *ref_t = hrt;
        if (!have_m)
            *mem_t = hmt;
        rc = 0;
        goto out_kept;
    }
    rc = 0;
out:
    free(have_r ? NULL : hrt), free(have_m ? NULL : hmt);
out_kept:
    free(xs), free(hr), free(hm != hr ? hm : NULL), free(tmp);
    return rc;
}

/* The matching of a pair's correlations c (ni × ni): perm, and the mean correlation of matched
 * pairs. Progress 0–1 of mon. perm is written only on success. */
static int pair_match(const float *c, int64_t ni, const sm_monitor *mon, int *perm, double *mean_corr)
{
    int *got = sm_alloc((size_t)ni, sizeof *got);
    if (!got || sm_align_match(c, (int)ni, ni <= SM_ALIGN_EXACT_MAX, mon, got)) {
        free(got);
        return -1;
    }
    double s = 0;
    for (int64_t i = 0; i < ni; i++)
        s += c[i * ni + got[i]];
    *mean_corr = s / ni;
    memcpy(perm, got, sizeof(int) * (size_t)ni);
    free(got);
    sm_monitor_report(mon, 1.0, "alignment");
    return 0;
}

/* sm_align_pair, with the large path's activations as pair_corr takes and hands them back. */
static int align_pair_acts(const sm_expert *ref, const sm_expert *mem, const float *x, int64_t m,
                           const sm_monitor *mon, int *perm, double *mean_corr, bool keep, float **ref_t,
                           float **mem_t)
{
    const int64_t ni = ref->gate.out;
    float *c = ni > 0 && ni <= INT32_MAX / 2 ? sm_alloc_f32((size_t)(ni * ni)) : NULL;
    if (!c && ni > 0 && ni <= INT32_MAX / 2)
        return -1;
    double corr = 0;
    sm_monitor_span span;
    int rc = pair_corr(ref, mem, x, m, mon, keep, ref_t, mem_t, c) ||
                     pair_match(c, ni, sm_monitor_span_init(&span, mon, 0.7, 1.0), perm, &corr)
                 ? -1
                 : 0;
    if (rc == 0 && mean_corr)
        *mean_corr = corr;
    free(c);
    return rc;
}

int sm_align_pair(const sm_expert *ref, const sm_expert *mem, const float *x, int64_t m, const sm_monitor *mon,
                  int *perm, double *mean_corr)
{
    return align_pair_acts(ref, mem, x, m, mon, perm, mean_corr, false, NULL, NULL);
}

typedef struct {
    int *perm; /* NULL: not computed yet */
    double corr;
    bool moved;
} memo_entry;

struct sm_align_memo {
    int n;
    memo_entry *pairs; /* n × n, [ref · n + member] */
    act_cache acts;    /* every expert's activations, computed once (large path, while room) */
};

sm_align_memo *sm_align_memo_new(int n_experts)
{
    sm_align_memo *memo = sm_zalloc(1, sizeof *memo);
    if (!memo)
        return NULL;
    memo->n = n_experts;
    if (!(memo->pairs = sm_zalloc((size_t)n_experts * (size_t)n_experts, sizeof *memo->pairs)) ||
        !(memo->acts.acts = sm_zalloc((size_t)n_experts, sizeof *memo->acts.acts))) {
        free(memo->pairs), free(memo);
        return NULL;
    }
    return memo;
}

void sm_align_memo_free(sm_align_memo *memo)
{
    if (!memo)
        return;
    for (size_t q = 0; q < (size_t)memo->n * (size_t)memo->n; q++)
        free(memo->pairs[q].perm);
    for (int e = 0; e < memo->n; e++)
        free(memo->acts.acts[e]);
    free(memo->pairs), free(memo->acts.acts);
    free(memo);
}

/* A pair's correlations into c (I × I), with the memo's activations where it has them and
 * keeping those computed while it has room. */
static int memo_corr(sm_align_memo *memo, memo_entry *e, const sm_moe_block *block, int ref_i, int mem_i,
                     const float *x, int64_t m, const sm_monitor *mon, float *c)
{
    const sm_expert *ref = &block->experts[ref_i], *mem = &block->experts[mem_i];
    const int64_t ni = ref->gate.out;
    float **rt = e ? &memo->acts.acts[ref_i] : NULL, **mt = e ? &memo->acts.acts[mem_i] : NULL;
    const int64_t act_bytes = (int64_t)sizeof(float) * ni * pair_rows(m);
    const int64_t fresh = (rt && !*rt ? act_bytes : 0) + (mt && !*mt ? act_bytes : 0);
    const bool keep = e && memo->acts.bytes + fresh <= SM_ALIGN_MEMO_ACT_BYTES;
    const bool had_r = rt && *rt, had_m = mt && *mt;
    int rc = pair_corr(ref, mem, x, m, mon, keep, rt, mt, c);
    if (keep) /* what the pair computed on the large path is now held (also when it then failed) */
        memo->acts.bytes += act_bytes * ((rt && *rt && !had_r) + (mt && *mt && !had_m));
    return rc;
}

/* Whether perm moves anything; remembered in e (when given and there is room). */
static bool memo_remember(memo_entry *e, const int *perm, int64_t ni, double corr)
{
    bool moved = false;
    for (int64_t i = 0; i < ni && !moved; i++)
        moved = perm[i] != i;
    if (e && (e->perm = sm_alloc((size_t)ni, sizeof *e->perm))) { /* no room: just not remembered */
        memcpy(e->perm, perm, sizeof(int) * (size_t)ni);
        e->corr = corr;
        e->moved = moved;
    }
    return moved;
}

static memo_entry *memo_at(sm_align_memo *memo, int ref_i, int mem_i)
{
    return memo && ref_i < memo->n && mem_i < memo->n ? &memo->pairs[(size_t)ref_i * memo->n + mem_i] : NULL;
}

int sm_align_pair_memo(sm_align_memo *memo, const sm_moe_block *block, int ref_i, int mem_i, const float *x,
                       int64_t m, const sm_monitor *mon, int *perm, double *mean_corr, bool *moved)
{
    const int64_t ni = block->experts[ref_i].gate.out;
    memo_entry *e = memo_at(memo, ref_i, mem_i);
    if (e && e->perm) {
        memcpy(perm, e->perm, sizeof(int) * (size_t)ni);
        if (mean_corr)
            *mean_corr = e->corr;
        *moved = e->moved;
        return 0;
    }
    float *c = ni > 0 && ni <= INT32_MAX / 2 ? sm_alloc_f32((size_t)(ni * ni)) : NULL;
    double corr = 0;
    sm_monitor_span span;
    if ((!c && ni > 0 && ni <= INT32_MAX / 2) || memo_corr(memo, e, block, ref_i, mem_i, x, m, mon, c) ||
        pair_match(c, ni, sm_monitor_span_init(&span, mon, 0.7, 1.0), perm, &corr)) {
        free(c);
        return -1;
    }
    free(c);
    *moved = memo_remember(e, perm, ni, corr);
    if (mean_corr)
        *mean_corr = corr;
    return 0;
}

/* Bytes of correlation matrices sm_align_moves holds at once: a batch of pairs' correlations is
 * computed in turn (their GEMMs on every core), then their matchings run side by side. */
#define MOVES_BATCH_BYTES (32ll << 20)

/* The pairs of one batch: correlations in, permutations and mean correlations out. */
typedef struct moves_batch {
    int64_t ni;
    int *cl, *ref, *mem; /* each pair's cluster, reference and member */
    float **c;
    int **perm;
    double *corr;
} moves_batch;

static int moves_match(void *ctx, int64_t i, const sm_monitor *mon)
{
    moves_batch *b = ctx;
    if (pair_match(b->c[i], b->ni, mon, b->perm[i], &b->corr[i]) == 0)
        return 0;
    if (!sm_monitor_cancelled(mon))
        sm_err_prefix("cluster %d: aligning expert %d to %d", b->cl[i], b->mem[i], b->ref[i]);
    return -1;
}

/* Pairs [0, np) of the batch arrays (none in the memo yet): correlations, then matchings, then
 * remembered; *moved counts those that permute. Progress lo..hi. */
static int moves_batch_run(const sm_moe_block *block, const float *x, int64_t m, sm_align_memo *memo, moves_batch *b,
                           int np, const sm_monitor *mon, double lo, double hi, int *moved)
{
    int rc = 0, have = 0;
    for (; rc == 0 && have < np; have++) {
        sm_monitor_span span;
        /* pair_corr reports 0..0.7 of its span: that part is this pair's share of 0..0.7 */
        const double a = lo + 0.7 * (hi - lo) * have / np, z = lo + 0.7 * (hi - lo) * (have + 1) / np;
        if (!(b->c[have] = sm_alloc_f32((size_t)(b->ni * b->ni))) || !(b->perm[have] = sm_alloc((size_t)b->ni, sizeof(int))) ||
            memo_corr(memo, memo_at(memo, b->ref[have], b->mem[have]), block, b->ref[have], b->mem[have], x, m,
                      sm_monitor_span_init(&span, mon, a, a + (z - a) / 0.7), b->c[have])) {
            if (!sm_monitor_cancelled(mon))
                sm_err_prefix("cluster %d: aligning expert %d to %d", b->cl[have], b->mem[have], b->ref[have]);
            rc = -1;
        }
    }
    sm_monitor_span span;
    if (rc == 0)
        rc = sm_parallel_for(np, np * b->ni * b->ni * (b->ni <= SM_ALIGN_EXACT_MAX ? b->ni : 16), moves_match, b, sm_monitor_span_init(&span, mon, lo + 0.7 * (hi - lo), hi),
                             "alignment: assignment");
    for (int i = 0; rc == 0 && i < np; i++)
        *moved += memo_remember(memo_at(memo, b->ref[i], b->mem[i]), b->perm[i], b->ni, b->corr[i]);
    for (int i = 0; i < have; i++) {
        free(b->c[i]), free(b->perm[i]);
        b->c[i] = NULL, b->perm[i] = NULL;
    }
    return rc;
}

int sm_align_reference(const double *freq, const int *assign, int n, int c)
{
    int ref = -1;
    for (int i = 0; i < n; i++)
        if (assign[i] == c && (ref < 0 || (freq && freq[i] > freq[ref])))
            ref = i;
    return ref;
}

int sm_align_moves(const sm_moe_block *block, const double *freq, const int *assign, int k, const float *x,
                   int64_t m, sm_align_memo *memo, const sm_monitor *mon, int *moved)
{
    const int n = block->n_experts;
    *moved = 0;
    if (!memo)
        return sm_err("internal: sm_align_moves without a memo");
    int total = 0;
    for (int i = 0; i < n; i++)
        total += i != sm_align_reference(freq, assign, n, assign[i]);
    if (!total)
        return 0;
    const int64_t ni = block->experts[0].gate.out;
    const int64_t per = ni > 0 ? (int64_t)sizeof(float) * ni * ni : 1;
    const int cap = MOVES_BATCH_BYTES / per < 1 ? 1 : MOVES_BATCH_BYTES / per < total ? (int)(MOVES_BATCH_BYTES / per) : total;
    int *cl = sm_alloc((size_t)cap * 3, sizeof(int));
    float **c = sm_zalloc((size_t)cap, sizeof *c);
    int **perm = sm_zalloc((size_t)cap, sizeof *perm);
    double *corr = sm_alloc((size_t)cap, sizeof *corr);
    int rc = cl && c && perm && corr ? 0 : -1, done = 0, np = 0;
    moves_batch b = {ni, cl, cl + cap, cl + 2 * cap, c, perm, corr};
    /* pairs in cluster order, members ascending (as the merge meets them); the memo's skipped */
    for (int cc = 0; rc == 0 && cc < k; cc++) {
        const int ref = sm_align_reference(freq, assign, n, cc);
        for (int i = 0; rc == 0 && i < n; i++) {
            if (assign[i] != cc || i == ref)
                continue;
            if (block->experts[i].gate.out != ni || block->experts[ref].gate.out != ni) {
                rc = sm_err("cluster %d: aligning expert %d to %d: alignment of experts of different shapes", cc, i, ref);
                break;
            }
            const memo_entry *e = memo_at(memo, ref, i);
            if (e && e->perm) {
                *moved += e->moved;
                done++;
                continue;
            }
            b.cl[np] = cc, b.ref[np] = ref, b.mem[np] = i;
            if (++np == cap) {
                rc = moves_batch_run(block, x, m, memo, &b, np, mon, (double)done / total, (double)(done + np) / total,
                                     moved);
                done += np, np = 0;
            }
        }
    }
    if (rc == 0 && np)
        rc = moves_batch_run(block, x, m, memo, &b, np, mon, (double)done / total, (double)(done + np) / total, moved);
    free(cl), free(c), free(perm), free(corr);
    return rc;
}

int sm_expert_permute_mon(const sm_expert *src, const int *perm, float *gate, float *up, float *down,
                          const sm_monitor *mon)
{
    int64_t ni = src->gate.out, H = src->gate.in;
    for (int64_t i = 0; i < ni; i++) {
        if (i % 1024 == 0 && sm_monitor_check(mon))
            return -1;
        memcpy(gate + i * H, src->gate.w + (int64_t)perm[i] * H, sizeof(float) * (size_t)H);
        memcpy(up + i * H, src->up.w + (int64_t)perm[i] * H, sizeof(float) * (size_t)H);
    }
    for (int64_t r = 0; r < H; r++) {
        if (r % 256 == 0 && sm_monitor_check(mon))
            return -1;
        for (int64_t i = 0; i < ni; i++)
            down[r * ni + i] = src->down.w[r * ni + perm[i]];
    }
    return 0;
}

void sm_expert_permute(const sm_expert *src, const int *perm, float *gate, float *up, float *down)
{
    sm_expert_permute_mon(src, perm, gate, up, down, NULL);
}

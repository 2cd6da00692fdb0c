/* align: neuron alignment of experts (see align.h). */
#include "engine/align.h"
#include "util/diag.h"
#include "util/mem.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int sm_assignment_solve(const double *cost, int n, int *assign)
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

/* Standardised SwiGLU activations of an expert on rows xs (m × hidden): h (m × I). */
static int activations(const sm_expert *e, const float *xs, int64_t m, float *h, float *tmp)
{
    int64_t ni = e->gate.out;
    sm_linear_forward(&e->gate, xs, m, h, NULL);
    sm_linear_forward(&e->up, xs, m, tmp, NULL);
    for (int64_t q = 0; q < m * ni; q++)
        h[q] = h[q] / (1.0f + expf(-h[q])) * tmp[q];
    for (int64_t j = 0; j < ni; j++) {
        double s = 0, ss = 0;
        for (int64_t t = 0; t < m; t++)
            s += h[t * ni + j];
        double mean = s / m;
        for (int64_t t = 0; t < m; t++) {
            double d = h[t * ni + j] - mean;
            ss += d * d;
        }
        double sd = sqrt(ss / m);
        float scale = sd > 1e-12 * (fabs(mean) + 1e-30) && sd > 0 ? (float)(1.0 / sd) : 0.0f;
        for (int64_t t = 0; t < m; t++)
            h[t * ni + j] = (float)((h[t * ni + j] - mean) * scale);
    }
    return 0;
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

/* Greedy on each row's best candidates, leftovers exact. c: I × I correlations. */
static int match_large(const float *c, int n, int *perm)
{
    int nc = SM_ALIGN_CANDIDATES < n ? SM_ALIGN_CANDIDATES : n;
    cand *all = sm_alloc((size_t)n * nc, sizeof *all);
    int *col_of = sm_alloc((size_t)n, sizeof *col_of), *row_of = sm_alloc((size_t)n, sizeof *row_of);
    int *best = sm_alloc((size_t)nc, sizeof *best);
    int rc = -1;
    if (!all || !col_of || !row_of || !best)
        goto out;
    for (int i = 0; i < n; i++) {
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
    qsort(all, (size_t)n * nc, sizeof *all, cmp_cand);
    for (int i = 0; i < n; i++)
        col_of[i] = row_of[i] = -1;
    for (size_t q = 0; q < (size_t)n * nc; q++)
        if (col_of[all[q].i] < 0 && row_of[all[q].j] < 0)
            col_of[all[q].i] = all[q].j, row_of[all[q].j] = all[q].i;
    /* Leftover rows and columns: exact on their sub-matrix. */
    int nl = 0;
    for (int i = 0; i < n; i++)
        nl += col_of[i] < 0;
    if (nl) {
        int *lr = sm_alloc((size_t)nl, sizeof *lr), *lc = sm_alloc((size_t)nl, sizeof *lc), *as = sm_alloc((size_t)nl, sizeof *as);
        double *sub = nl <= SM_ALIGN_EXACT_MAX ? sm_alloc((size_t)nl * nl, sizeof *sub) : NULL;
        int a = 0, b = 0;
        for (int i = 0; i < n; i++) {
            if (col_of[i] < 0 && lr)
                lr[a++] = i;
            if (row_of[i] < 0 && lc)
                lc[b++] = i;
        }
        int ok = lr && lc && as && sub;
        for (int i = 0; ok && i < nl; i++)
            for (int j = 0; j < nl; j++)
                sub[(size_t)i * nl + j] = 1.0 - c[(size_t)lr[i] * n + lc[j]];
        ok = ok && sm_assignment_solve(sub, nl, as) == 0;
        for (int i = 0; ok && i < nl; i++)
            col_of[lr[i]] = lc[as[i]];
        for (int i = 0; !ok && lr && lc && i < nl; i++) /* too many leftovers: in order */
            col_of[lr[i]] = lc[i];
        free(lr), free(lc), free(as), free(sub);
    }
    memcpy(perm, col_of, sizeof(int) * (size_t)n);
    rc = 0;
out:
    free(all), free(col_of), free(row_of), free(best);
    return rc;
}

int sm_align_pair(const sm_expert *ref, const sm_expert *mem, const float *x, int64_t m, const sm_monitor *mon,
                  int *perm, double *mean_corr)
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
    int64_t rows = m < SM_ALIGN_MAX_ROWS ? m : SM_ALIGN_MAX_ROWS;
    float *xs = sm_alloc_f32((size_t)(rows * H)), *hr = sm_alloc_f32((size_t)(rows * ni));
    float *hm = sm_alloc_f32((size_t)(rows * ni)), *tmp = sm_alloc_f32((size_t)(rows * ni));
    float *c = sm_alloc_f32((size_t)(ni * ni));
    double *cost = NULL;
    int rc = -1;
    if (!xs || !hr || !hm || !tmp || !c)
        goto out;
    for (int64_t t = 0; t < rows; t++)
        memcpy(xs + t * H, x + (t * m / rows) * H, sizeof(float) * (size_t)H);
    activations(ref, xs, rows, hr, tmp);
    activations(mem, xs, rows, hm, tmp);
    sm_monitor_report(mon, 0.2, "alignment: activations");
    if (sm_monitor_check(mon))
        goto out;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)ni, (int)ni, (int)rows, 1.0f / (float)rows, hr, (int)ni,
                hm, (int)ni, 0.0f, c, (int)ni);
    sm_monitor_report(mon, 0.5, "alignment: correlations");
    if (ni <= SM_ALIGN_EXACT_MAX) {
        if (!(cost = sm_alloc((size_t)(ni * ni), sizeof *cost)))
            goto out;
        for (int64_t q = 0; q < ni * ni; q++)
            cost[q] = 1.0 - c[q];
        if (sm_assignment_solve(cost, (int)ni, perm))
            goto out;
    } else if (match_large(c, (int)ni, perm)) {
        goto out;
    }
    if (mean_corr) {
        double s = 0;
        for (int64_t i = 0; i < ni; i++)
            s += c[i * ni + perm[i]];
        *mean_corr = s / ni;
    }
    sm_monitor_report(mon, 1.0, "alignment");
    rc = 0;
out:
    free(xs), free(hr), free(hm), free(tmp), free(c), free(cost);
    return rc;
}

void sm_expert_permute(const sm_expert *src, const int *perm, float *gate, float *up, float *down)
{
    int64_t ni = src->gate.out, H = src->gate.in;
    for (int64_t i = 0; i < ni; i++) {
        memcpy(gate + i * H, src->gate.w + (int64_t)perm[i] * H, sizeof(float) * (size_t)H);
        memcpy(up + i * H, src->up.w + (int64_t)perm[i] * H, sizeof(float) * (size_t)H);
    }
    for (int64_t r = 0; r < H; r++)
        for (int64_t i = 0; i < ni; i++)
            down[r * ni + i] = src->down.w[r * ni + perm[i]];
}

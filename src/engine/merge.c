#include "engine/merge.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/dense.h"
#include "util/diag.h"
#include "util/matmul.h"
#include "util/mem.h"
#include "util/parallel.h"

static const char *const method_names[SM_MERGE_METHOD_COUNT] = {
    [SM_MERGE_SUBMOE] = "submoe",
    [SM_MERGE_SUBMOE_WHITENED] = "submoe-whitened",
    [SM_MERGE_FREQ_AVERAGE] = "freq-average",
    [SM_MERGE_AVERAGE] = "average",
    [SM_MERGE_PRUNE_FREQUENCY] = "prune-frequency",
    [SM_MERGE_PRUNE_OUTPUT] = "prune-output",
    [SM_MERGE_KEEP] = "keep",
    [SM_MERGE_PRUNE_REAP] = "prune-reap",
};

const char *sm_merge_method_name(sm_merge_method m)
{
    return (unsigned)m < SM_MERGE_METHOD_COUNT ? method_names[m] : "?";
}

int sm_merge_method_parse(const char *name, sm_merge_method *out)
{
    for (int m = 0; m < SM_MERGE_METHOD_COUNT; m++)
        if (name && strcmp(name, method_names[m]) == 0) {
            *out = (sm_merge_method)m;
            return 0;
        }
    return sm_err("unknown merge method '%s' (expected submoe, submoe-whitened, freq-average, "
                  "average, prune-frequency, prune-output, prune-reap or keep)",
                  name ? name : "");
}

bool sm_merge_method_merges(sm_merge_method m)
{
    return m == SM_MERGE_SUBMOE || m == SM_MERGE_SUBMOE_WHITENED || m == SM_MERGE_FREQ_AVERAGE ||
           m == SM_MERGE_AVERAGE;
}

/* ---- rank ---------------------------------------------------------------------------------- */

bool sm_rank_equal(const sm_rank *a, const sm_rank *b)
{
    if (a->kind != b->kind)
        return false;
    return a->kind == SM_RANK_COUNT ? a->count == b->count
           : a->kind == SM_RANK_FRACTION ? a->fraction == b->fraction
                                         : true;
}

int sm_rank_parse(const char *text, sm_rank *out)
{
    memset(out, 0, sizeof *out);
    if (!text || !*text)
        return sm_err("empty rank (expected full, an integer or a fraction)");
    if (strcmp(text, "full") == 0) {
        out->kind = SM_RANK_FULL;
        return 0;
    }
    char *end = NULL;
    errno = 0;
    if (!strpbrk(text, ".%eE")) {
        long long v = strtoll(text, &end, 10);
        if (errno || *end || v < 1)
            return sm_err("invalid rank '%s' (expected full, an integer ≥ 1 or a fraction)", text);
        out->kind = SM_RANK_COUNT;
        out->count = v;
        return 0;
    }
    double f = strtod(text, &end);
    if (end && *end == '%' && end[1] == '\0')
        f /= 100.0;
    else if (errno || !end || *end)
        return sm_err("invalid rank '%s' (expected full, an integer or a fraction)", text);
    if (!(f > 0.0 && f <= 1.0))
        return sm_err("rank fraction '%s' must be in (0, 1]", text);
    out->kind = SM_RANK_FRACTION;
    out->fraction = f;
    return 0;
}

void sm_rank_format(const sm_rank *r, char *buf, size_t len)
{
    if (r->kind == SM_RANK_COUNT)
        snprintf(buf, len, "%lld", (long long)r->count);
    else if (r->kind == SM_RANK_FRACTION)
        snprintf(buf, len, "%.6g", r->fraction);
    else
        snprintf(buf, len, "full");
}

int sm_rank_resolve(const sm_rank *r, sm_merge_method m, int64_t out, int64_t in, int n,
                    int64_t *rank)
{
    *rank = 0;
    if (out <= 0 || in <= 0 || n <= 0)
        return sm_err("rank of an empty cluster");
    if (m != SM_MERGE_SUBMOE && m != SM_MERGE_SUBMOE_WHITENED)
        return 0;
    if (!r || r->kind == SM_RANK_FULL)
        return 0;
    const int64_t max_rank = out < in * n ? out : in * n;
    int64_t v;
    if (r->kind == SM_RANK_COUNT) {
        if (r->count < 1)
            return sm_err("rank must be at least 1");
        v = r->count;
    } else {
        if (!(r->fraction > 0.0 && r->fraction <= 1.0))
            return sm_err("rank fraction %g must be in (0, 1]", r->fraction);
        double base = m == SM_MERGE_SUBMOE ? (double)max_rank
                                           : (double)out * (double)in / (double)(out + in);
        v = (int64_t)floor(r->fraction * base + 1e-9);
        if (v < 1)
            v = 1;
    }
    if (v >= max_rank)
        /* submoe: the projection onto the whole column space is the identity → exact W̄.
         * whitened: keep the factored form the user asked for, at the largest useful rank. */
        v = m == SM_MERGE_SUBMOE ? 0 : max_rank;
    *rank = v;
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------------- */

int sm_merge_weights(sm_merge_method m, const double *freq, int n, double *w)
{
    double total = 0.0;
    if (n <= 0)
        return sm_err("merge of an empty cluster");
    for (int i = 0; freq && m != SM_MERGE_AVERAGE && i < n; i++) {
        if (!(freq[i] >= 0.0) || isinf(freq[i]))
            return sm_err("frequency of member %d is %g (must be finite and ≥ 0)", i, freq[i]);
        total += freq[i];
    }
    for (int i = 0; i < n; i++)
        w[i] = total > 0.0 ? freq[i] / total : 1.0 / n;
    return 0;
}

typedef struct member_err_ctx {
    const sm_matset *set;
    const float *merged;
    double *err;
} member_err_ctx;

/* Member i's relative error, summed over its elements in order. */
static int member_err_item(void *ctx, int64_t i, const sm_monitor *mon)
{
    (void)mon;
    const member_err_ctx *c = ctx;
    const int64_t len = c->set->out * c->set->in;
    const float *wi = c->set->w[i], *merged = c->merged;
    double num = 0.0, den = 0.0;
    for (int64_t e = 0; e < len; e++) {
        double d = (double)wi[e] - merged[e];
        num += d * d;
        den += (double)wi[e] * wi[e];
    }
    c->err[i] = den > 0.0 ? sqrt(num / den) : sqrt(num);
    return 0;
}

int sm_member_errors(const sm_matset *set, const float *merged, double *err)
{
    if (sm_matset_check(set) != 0)
        return -1;
    member_err_ctx c = {set, merged, err};
    return sm_parallel_for(set->n, set->n * set->out * set->in * 4, member_err_item, &c, NULL, NULL); /* one member per thread */
}

bool sm_rank_factored(int64_t rank, int64_t out, int64_t in)
{
    return rank > 0 && rank * (out + in) < out * in;
}

int64_t sm_merged_params(const sm_merged *m)
{
    return m->rank > 0 ? m->rank * (m->out + m->in) : m->out * m->in;
}

int sm_merged_to_dense(const sm_merged *m, float *dst)
{
    if (m->rank == 0) {
        if (!m->w)
            return sm_err("merged matrix has no data");
        memcpy(dst, m->w, (size_t)(m->out * m->in) * sizeof(float));
        return 0;
    }
    if (!m->a || !m->b)
        return sm_err("merged factors missing");
    sm_gemm_f32(false, false, m->out, m->in, m->rank, m->a, m->rank, m->b, m->in, 0.0f, dst, m->in);
    return 0;
}

void sm_merged_free(sm_merged *m)
{
    if (!m)
        return;
    if (!m->w_borrowed)
        free(m->w);
    free(m->a);
    free(m->b);
    free(m->weights);
    free(m->member_err);
    memset(m, 0, sizeof *m);
}

/* ---- whitening ----------------------------------------------------------------------------- */

/* Lower-triangular S_i (row-major in×in) with S_i S_iᵀ = C_i + λ_i I, for every member. */
static int whitening_factors(const sm_matset *set, const float *const *gram, double damping,
                             float **s_out)
{
    const int64_t in = set->in;
    double *md = sm_alloc((size_t)set->n, sizeof(double));
    double *a = sm_alloc((size_t)(in * in), sizeof(double));
    if (!md || !a) {
        free(md);
        free(a);
        return -1;
    }
    double mean_md = 0.0;
    int nz = 0;
    for (int i = 0; i < set->n; i++) {
        double tr = 0.0;
        for (int64_t k = 0; k < in; k++)
            tr += gram[i][k * in + k];
        md[i] = tr / (double)in;
        if (!(md[i] >= 0.0) || isinf(md[i])) {
            free(md);
            free(a);
            return sm_err("input Gram of member %d has a negative or non-finite diagonal", i);
        }
        if (md[i] > 0.0) {
            mean_md += md[i];
            nz++;
        }
    }
    mean_md = nz ? mean_md / nz : 1.0;
    int rc = 0;
    for (int i = 0; rc == 0 && i < set->n; i++) {
        const double lambda = damping * (md[i] > 0.0 ? md[i] : mean_md);
        /* Column-major lower of the symmetric matrix = row-major upper: copy symmetrically. */
        for (int64_t r = 0; r < in; r++)
            for (int64_t c = 0; c < in; c++)
                a[r * in + c] = 0.5 * ((double)gram[i][r * in + c] + gram[i][c * in + r]);
        for (int64_t k = 0; k < in; k++)
            a[k * in + k] += lambda;
        if (sm_chol_f64((int)in, a) != 0) {
            sm_err_prefix("whitening member %d", i);
            rc = -1;
            break;
        }
        float *s = s_out[i] = sm_alloc_f32((size_t)(in * in));
        if (!s) {
            rc = -1;
            break;
        }
        /* Column-major L (a[c·in + r] = L_rc) to row-major. */
        for (int64_t r = 0; r < in; r++)
            for (int64_t c = 0; c < in; c++)
                s[r * in + c] = (float)a[c * in + r];
    }
    free(md);
    free(a);
    return rc;
}

static int merge_whitened(const sm_matset *set, const double *w, const float *const *gram,
                          int64_t rank, const sm_merge_opts *o, const sm_monitor *mon,
                          sm_merged *out)
{
    const int64_t outd = set->out, in = set->in;
    const int n = set->n;
    double damping = o && o->damping > 0.0 ? o->damping : SM_MERGE_DAMPING_DEFAULT;
    float **s = sm_zalloc((size_t)n, sizeof(float *));
    float **wp = sm_zalloc((size_t)n, sizeof(float *));
    sm_usvd_basis basis = {0};
    int rc = -1;
    if (!s || !wp)
        goto done;
    if (!gram)
        goto fail_gram;
    for (int i = 0; i < n; i++)
        if (!gram[i])
            goto fail_gram;
    if (whitening_factors(set, gram, damping, s) != 0)
        goto done;
    for (int i = 0; i < n; i++) {
        if (sm_monitor_check(mon) != 0)
            goto done;
        if (!(wp[i] = sm_alloc_f32((size_t)(outd * in))))
            goto done;
        /* W_i S_i: S_i is stored whole with zeros above its diagonal, so a large product runs as
         * a full one on oneDNN (twice strmm's flops at about four times its rate here). */
        if (sm_gemm_dnnl(outd, in, in)) {
            sm_gemm_f32(false, false, outd, in, in, set->w[i], in, s[i], in, 0.0f, wp[i], in);
            continue;
        }
        memcpy(wp[i], set->w[i], (size_t)(outd * in) * sizeof(float));
        cblas_strmm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, (int)outd,
                    (int)in, 1.0f, s[i], (int)in, wp[i], (int)in);
    }
    sm_matset white = {n, outd, in, (const float *const *)wp};
    sm_monitor_span span;
    if (sm_usvd_basis_compute(&white, rank, o ? &o->usvd : NULL,
                              sm_monitor_span_init(&span, mon, 0.1, 0.9), &basis) != 0)
        goto done;
    rank = basis.rank;
    out->rank = rank;
    out->solver = basis.solver;
    out->a = sm_alloc_f32((size_t)(outd * rank));
    out->b = sm_zalloc((size_t)(rank * in), sizeof(float));
    if (!out->a || !out->b)
        goto done;
    if (basis.side == SM_USVD_RIGHT) {
        /* A = W'_cat V'_r; B = Σ_i w_i V'_{i,r}ᵀ S_i⁻¹ (triangular solve X S_i = V'_{i,r}ᵀ). */
        if (sm_usvd_cat_times_basis(&white, &basis, out->a) != 0)
            goto done;
        float *bi = sm_alloc_f32((size_t)(rank * in));
        if (!bi)
            goto done;
        for (int i = 0; i < n; i++) {
            for (int64_t c = 0; c < rank; c++)
                memcpy(bi + c * in, basis.vec + c * basis.dim + (int64_t)i * in,
                       (size_t)in * sizeof(float));
            cblas_strsm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit,
                        (int)rank, (int)in, 1.0f, s[i], (int)in, bi, (int)in);
            cblas_saxpy((int)(rank * in), (float)w[i], bi, 1, out->b, 1);
        }
        free(bi);
    } else {
        /* A = U'_r (row-major copy of the column-major basis); B = U'_rᵀ W̄. */
        float *wbar = sm_alloc_f32((size_t)(outd * in));
        if (!wbar)
            goto done;
        sm_weighted_sum(set, w, wbar);
        for (int64_t r = 0; r < outd; r++)
            for (int64_t c = 0; c < rank; c++)
                out->a[r * rank + c] = basis.vec[c * outd + r];
        sm_gemm_f32(false, false, rank, in, outd, basis.vec, outd, wbar, in, 0.0f, out->b, in);
        free(wbar);
    }
    rc = 0;
    goto done;
fail_gram:
    sm_err("submoe-whitened needs the input Gram of every member");
done:
    sm_usvd_basis_free(&basis);
    for (int i = 0; s && i < n; i++)
        free(s[i]);
    for (int i = 0; wp && i < n; i++)
        free(wp[i]);
    free(s);
    free(wp);
    return rc;
}

/* ---- factors ------------------------------------------------------------------------------- */

/* Plain Sub-MoE at rank r as two factors with A·B = U_r U_rᵀ W̄ (what sm_usvd_project forms):
 * on the Gram's right side A = W_cat V_r = U_r Σ_r and B = Σ_i w_i V_{i,r}ᵀ (the paper's
 * U_r Σ_r (V_mᵀ)_r); on the left A = U_r and B = U_rᵀ W̄. */
static int submoe_factors(const sm_matset *set, const double *w, const sm_usvd_basis *basis,
                          sm_merged *out)
{
    const int64_t outd = set->out, in = set->in, rank = basis->rank;
    out->rank = rank;
    out->a = sm_alloc_f32((size_t)(outd * rank));
    out->b = sm_zalloc((size_t)(rank * in), sizeof(float));
    if (!out->a || !out->b)
        return -1;
    if (basis->side == SM_USVD_RIGHT) {
        if (sm_usvd_cat_times_basis(set, basis, out->a) != 0)
            return -1;
        for (int i = 0; i < set->n; i++)
            for (int64_t c = 0; c < rank; c++)
                cblas_saxpy((int)in, (float)w[i], basis->vec + c * basis->dim + (int64_t)i * in, 1,
                            out->b + c * in, 1);
        return 0;
    }
    float *wbar = sm_alloc_f32((size_t)(outd * in));
    if (!wbar)
        return -1;
    sm_weighted_sum(set, w, wbar);
    for (int64_t r = 0; r < outd; r++)
        for (int64_t c = 0; c < rank; c++)
            out->a[r * rank + c] = basis->vec[c * outd + r];
    sm_gemm_f32(false, false, rank, in, outd, basis->vec, outd, wbar, in, 0.0f, out->b, in);
    free(wbar);
    return 0;
}

int sm_merged_densify(sm_merged *m)
{
    if (m->rank == 0)
        return 0;
    float *w = sm_alloc_f32((size_t)(m->out * m->in));
    if (!w || sm_merged_to_dense(m, w) != 0) {
        free(w);
        return -1;
    }
    free(m->a);
    free(m->b);
    m->a = m->b = NULL;
    m->rank = 0;
    m->w = w;
    return 0;
}

/* Factors no smaller than the matrix are stored as the matrix (sm_rank_factored). */
static int densify_if_larger(sm_merged *m)
{
    return m->rank == 0 || sm_rank_factored(m->rank, m->out, m->in) ? 0 : sm_merged_densify(m);
}

/* sm_weighted_sum in panels of rows with monitor checks between them (elementwise, so the same
 * bytes): at Mixtral's shape a matrix is 59 M values, most of a second of memory traffic. */
static int weighted_sum_checked(const sm_matset *set, const double *wts, float *dst, const sm_monitor *mon)
{
    const int64_t rows = set->in > 0 && ((int64_t)1 << 22) / set->in > 0 ? ((int64_t)1 << 22) / set->in : 1;
    const float **p = sm_alloc((size_t)set->n, sizeof *p);
    int rc = p ? 0 : -1;
    for (int64_t r0 = 0; rc == 0 && r0 < set->out; r0 += rows) {
        if ((rc = sm_monitor_check(mon)) != 0)
            break;
        for (int i = 0; i < set->n; i++)
            p[i] = set->w[i] + r0 * set->in;
        const sm_matset sub = {set->n, set->out - r0 < rows ? set->out - r0 : rows, set->in, p};
        sm_weighted_sum(&sub, wts, dst + r0 * set->in);
    }
    free(p);
    return rc;
}

/* ---- entry point --------------------------------------------------------------------------- */

int sm_merge_matrix_single(sm_merge_method m, const sm_matset *set, const double *freq, const sm_merge_opts *o,
                           sm_merged *out)
{
    memset(out, 0, sizeof *out);
    int64_t rank;
    if (set->n != 1 || !sm_merge_method_merges(m) || sm_matset_check(set) != 0 ||
        sm_rank_resolve(o ? &o->rank : NULL, m, set->out, set->in, set->n, &rank) != 0 || rank != 0)
        return 1; /* sm_merge_matrix merges it, or says what is wrong */
    out->out = set->out;
    out->in = set->in;
    out->n_members = 1;
    out->weights = sm_alloc(1, sizeof(double));
    out->member_err = sm_alloc(1, sizeof(double));
    if (!out->weights || !out->member_err || sm_merge_weights(m, freq, 1, out->weights) != 0) {
        sm_merged_free(out);
        return -1;
    }
    /* the weight is f/f = 1 and the weighted sum a copy; its error against the member is 0 */
    out->w = (float *)set->w[0];
    out->w_borrowed = true;
    out->member_err[0] = 0.0;
    return 0;
}

int sm_merge_matrix(sm_merge_method m, const sm_matset *set, const double *freq,
                    const float *const *gram, const sm_merge_opts *o, const sm_monitor *mon,
                    sm_merged *out)
{
    memset(out, 0, sizeof *out);
    if (!sm_merge_method_merges(m))
        return sm_err("'%s' is not a per-cluster merge method", sm_merge_method_name(m));
    if (sm_matset_check(set) != 0)
        return -1;
    int64_t rank;
    if (sm_rank_resolve(o ? &o->rank : NULL, m, set->out, set->in, set->n, &rank) != 0)
        return -1;
    out->out = set->out;
    out->in = set->in;
    out->n_members = set->n;
    out->weights = sm_alloc((size_t)set->n, sizeof(double));
    out->member_err = sm_alloc((size_t)set->n, sizeof(double));
    if (!out->weights || !out->member_err ||
        sm_merge_weights(m, freq, set->n, out->weights) != 0)
        goto fail;

    sm_monitor_span span;
    if (rank == 0) {
        /* Exact: full-rank Sub-MoE is W̄ itself (U U ᵀ = identity on W_cat's column space). */
        if (!(out->w = sm_alloc_f32((size_t)(set->out * set->in))) ||
            weighted_sum_checked(set, out->weights, out->w, mon) != 0)
            goto fail;
    } else if (m == SM_MERGE_SUBMOE) {
        sm_usvd_basis basis;
        if (sm_usvd_basis_compute(set, rank, o ? &o->usvd : NULL,
                                  sm_monitor_span_init(&span, mon, 0.0, 0.85), &basis) != 0)
            goto fail;
        out->solver = basis.solver;
        int rc;
        if (sm_rank_factored(basis.rank, set->out, set->in)) {
            rc = submoe_factors(set, out->weights, &basis, out);
        } else {
            out->w = sm_alloc_f32((size_t)(set->out * set->in));
            rc = out->w ? sm_usvd_project(set, &basis, out->weights, out->w) : -1;
        }
        sm_usvd_basis_free(&basis);
        if (rc != 0)
            goto fail;
    } else if (merge_whitened(set, out->weights, gram, rank, o, mon, out) != 0 || densify_if_larger(out) != 0) {
        goto fail;
    }
    if (sm_monitor_check(mon) != 0)
        goto fail;

    /* Member errors against the dense result (formed temporarily when factored). */
    const float *dense = out->w;
    float *tmp = NULL;
    if (!dense) {
        if (!(tmp = sm_alloc_f32((size_t)(set->out * set->in))) || sm_merged_to_dense(out, tmp)) {
            free(tmp);
            goto fail;
        }
        dense = tmp;
    }
    sm_member_errors(set, dense, out->member_err);
    free(tmp);
    sm_monitor_report(mon, 1.0, "merged");
    return 0;
fail:
    sm_merged_free(out);
    return -1;
}

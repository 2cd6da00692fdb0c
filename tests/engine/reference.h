/* reference: straightforward double-precision references for the engine tests (LAPACK dgesdd
 * on the literal matrices, naive products), plus random test matrices. Header-only. */
#ifndef SM_TEST_ENGINE_REFERENCE_H
#define SM_TEST_ENGINE_REFERENCE_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/lapack.h"
#include "util/rng.h"

/* Fill with standard normal floats. */
static inline void ref_randn(sm_rng *r, float *x, int64_t n, double scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(scale * sm_rng_normal(r));
}

/* Thin SVD of the row-major m×n matrix a (double): u (m×k col-major), s (k), vt (k×n
 * col-major), k = min(m, n). Returns LAPACK's info. */
static inline int ref_svd(int m, int n, const double *a_rowmajor, double *u, double *s,
                          double *vt)
{
    int k = m < n ? m : n, info = 0, lwork = -1;
    double *a = malloc(sizeof(double) * (size_t)m * n), wq;
    int *iwork = malloc(sizeof(int) * 8 * (size_t)k);
    for (int r = 0; r < m; r++)
        for (int c = 0; c < n; c++)
            a[(size_t)c * m + r] = a_rowmajor[(size_t)r * n + c];
    dgesdd_("S", &m, &n, a, &m, s, u, &m, vt, &k, &wq, &lwork, iwork, &info, 1);
    lwork = (int)wq + 16;
    double *work = malloc(sizeof(double) * (size_t)lwork);
    dgesdd_("S", &m, &n, a, &m, s, u, &m, vt, &k, work, &lwork, iwork, &info, 1);
    free(work);
    free(iwork);
    free(a);
    return info;
}

/* Row-major W_cat (out × n·in, double) from n row-major out×in float matrices. */
static inline double *ref_concat(int n, int out, int in, float *const *w)
{
    double *cat = malloc(sizeof(double) * (size_t)out * in * n);
    for (int i = 0; i < n; i++)
        for (int r = 0; r < out; r++)
            for (int c = 0; c < in; c++)
                cat[(size_t)r * in * n + (size_t)i * in + c] = w[i][(size_t)r * in + c];
    return cat;
}

/* dst (out×in, double) = U_r U_rᵀ src with U (out × k col-major), r ≤ k. */
static inline void ref_project(int out, int in, const double *u, int r, const double *src,
                               double *dst)
{
    double *t = calloc((size_t)r * in, sizeof(double));
    for (int j = 0; j < r; j++)
        for (int row = 0; row < out; row++) {
            double ujr = u[(size_t)j * out + row];
            for (int c = 0; c < in; c++)
                t[(size_t)j * in + c] += ujr * src[(size_t)row * in + c];
        }
    memset(dst, 0, sizeof(double) * (size_t)out * in);
    for (int j = 0; j < r; j++)
        for (int row = 0; row < out; row++) {
            double ujr = u[(size_t)j * out + row];
            for (int c = 0; c < in; c++)
                dst[(size_t)row * in + c] += ujr * t[(size_t)j * in + c];
        }
    free(t);
}

/* ||a − b||_F / ||b||_F (float a, double b). */
static inline double ref_rel_diff(const float *a, const double *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = a[i] - b[i];
        num += d * d;
        den += b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static inline double ref_rel_diff_ff(const float *a, const float *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

#endif

#include "engine/dense.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/lapack.h"
#include "util/diag.h"
#include "util/mem.h"

int sm_dense_fits_int(const int64_t *dims, int n, const char *what)
{
    for (int i = 0; i < n; i++)
        if (dims[i] < 0 || dims[i] > INT_MAX)
            return sm_err("%s: dimension %lld exceeds the LAPACK integer range", what,
                          (long long)dims[i]);
    return 0;
}

/* A workspace size returned by a query (as a float) to a safe int, rounded up. */
static int lwork_from(double q, int *out)
{
    double v = ceil(q * (1.0 + 1e-6)) + 16;
    if (!(v < (double)INT_MAX))
        return sm_err("LAPACK workspace of %.0f elements exceeds the integer range", v);
    *out = (int)v;
    return 0;
}

int sm_eigh_f32(int n, float *a, bool vectors, float *w)
{
    const char *jobz = vectors ? "V" : "N";
    int lwork = -1, liwork = -1, info = 0, iq = 0;
    float wq = 0;
    if (n <= 0)
        return 0;
    ssyevd_(jobz, "L", &n, a, &n, w, &wq, &lwork, &iq, &liwork, &info, 1, 1);
    if (info != 0)
        return sm_err("ssyevd workspace query failed (info %d)", info);
    /* The query's float can round the (exact) integer size down for large n: recompute. */
    double need = vectors ? 1.0 + 6.0 * n + 2.0 * (double)n * n : 2.0 * n + 1;
    if (lwork_from(fmax(wq, need), &lwork) != 0)
        return -1;
    liwork = iq > 0 ? iq : 1;
    float *work = sm_alloc_f32((size_t)lwork);
    int *iwork = sm_alloc((size_t)liwork, sizeof(int));
    if (!work || !iwork) {
        free(work);
        free(iwork);
        return -1;
    }
    ssyevd_(jobz, "L", &n, a, &n, w, work, &lwork, iwork, &liwork, &info, 1, 1);
    free(work);
    free(iwork);
    if (info != 0)
        return sm_err("ssyevd failed to converge (info %d, n %d)", info, n);
    return 0;
}

int sm_eigh_f64(int n, double *a, bool vectors, double *w)
{
    const char *jobz = vectors ? "V" : "N";
    int lwork = -1, liwork = -1, info = 0, iq = 0;
    double wq = 0;
    if (n <= 0)
        return 0;
    dsyevd_(jobz, "L", &n, a, &n, w, &wq, &lwork, &iq, &liwork, &info, 1, 1);
    if (info != 0)
        return sm_err("dsyevd workspace query failed (info %d)", info);
    if (lwork_from(wq, &lwork) != 0)
        return -1;
    liwork = iq > 0 ? iq : 1;
    double *work = sm_alloc((size_t)lwork, sizeof(double));
    int *iwork = sm_alloc((size_t)liwork, sizeof(int));
    if (!work || !iwork) {
        free(work);
        free(iwork);
        return -1;
    }
    dsyevd_(jobz, "L", &n, a, &n, w, work, &lwork, iwork, &liwork, &info, 1, 1);
    free(work);
    free(iwork);
    if (info != 0)
        return sm_err("dsyevd failed to converge (info %d, n %d)", info, n);
    return 0;
}

int sm_orth_f32(int m, int n, float *a)
{
    int lwork = -1, info = 0;
    float q1 = 0, q2 = 0;
    if (n <= 0)
        return 0;
    if (m < n)
        return sm_err("orthonormalisation of %d columns in dimension %d", n, m);
    float *tau = sm_alloc_f32((size_t)n);
    if (!tau)
        return -1;
    sgeqrf_(&m, &n, a, &m, tau, &q1, &lwork, &info);
    if (info == 0)
        sorgqr_(&m, &n, &n, a, &m, tau, &q2, &lwork, &info);
    if (info != 0 || lwork_from(fmax(fmax(q1, q2), (double)n * 64), &lwork) != 0) {
        free(tau);
        return info ? sm_err("QR workspace query failed (info %d)", info) : -1;
    }
    float *work = sm_alloc_f32((size_t)lwork);
    if (!work) {
        free(tau);
        return -1;
    }
    sgeqrf_(&m, &n, a, &m, tau, work, &lwork, &info);
    if (info == 0)
        sorgqr_(&m, &n, &n, a, &m, tau, work, &lwork, &info);
    free(work);
    free(tau);
    if (info != 0)
        return sm_err("Householder QR failed (info %d)", info);
    return 0;
}

int sm_lu_basis_f32(int m, int n, float *a)
{
    if (n <= 0)
        return 0;
    if (m < n)
        return sm_err("LU basis of %d columns in dimension %d", n, m);
    int *ipiv = sm_alloc((size_t)n, sizeof(int)), info = 0;
    if (!ipiv)
        return -1;
    sgetrf_(&m, &n, a, &m, ipiv, &info);
    if (info < 0) {
        free(ipiv);
        return sm_err("sgetrf: invalid argument %d", -info);
    }
    /* info > 0 (an exactly zero pivot) leaves L valid: its columns still span a basis. */
    for (int64_t j = 0; j < n; j++) {
        memset(a + j * m, 0, sizeof(float) * (size_t)j);
        a[j * m + j] = 1.0f;
    }
    const int one = 1, back = -1;
    slaswp_(&n, a, &m, &one, &n, ipiv, &back); /* undo the interchanges: P·L */
    free(ipiv);
    return 0;
}

int sm_chol_f64(int n, double *a)
{
    int info = 0;
    if (n <= 0)
        return 0;
    dpotrf_("L", &n, a, &n, &info, 1);
    if (info > 0)
        return sm_err("matrix is not positive definite (Cholesky pivot %d of %d)", info, n);
    if (info < 0)
        return sm_err("dpotrf: invalid argument %d", -info);
    for (int64_t j = 1; j < n; j++)
        for (int64_t i = 0; i < j; i++)
            a[j * n + i] = 0.0;
    return 0;
}

int sm_chol_solve_f64(int n, const double *l, int nrhs, double *b)
{
    int info = 0;
    if (n <= 0 || nrhs <= 0)
        return 0;
    dpotrs_("L", &n, &nrhs, l, &n, b, &n, &info, 1);
    if (info != 0)
        return sm_err("dpotrs: invalid argument %d", -info);
    return 0;
}

void sm_symmetrize_upper_f32(int64_t n, float *a)
{
    /* Blocked so both the read and the write stay in cache for large n. */
    const int64_t B = 64;
    for (int64_t i0 = 0; i0 < n; i0 += B)
        for (int64_t j0 = i0; j0 < n; j0 += B) {
            int64_t i1 = i0 + B < n ? i0 + B : n, j1 = j0 + B < n ? j0 + B : n;
            for (int64_t i = i0; i < i1; i++)
                for (int64_t j = (j0 > i + 1 ? j0 : i + 1); j < j1; j++)
                    a[j * n + i] = a[i * n + j];
        }
}

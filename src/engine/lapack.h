/* lapack: the Fortran LAPACK routines the engine calls, as OpenBLAS exports them.
 *
 * Column-major, every argument by pointer, trailing hidden lengths for CHARACTER arguments
 * (gfortran's ABI; passing them keeps the call well-defined under LTO and tail calls).
 * Only src/engine and src/forward include this header or cblas.h (and util/limits.c, which makes
 * OpenBLAS map its buffer early). A row-major symmetric
 * matrix is its own column-major transpose, so upper (row-major) = 'L' (column-major). */
#ifndef SM_LAPACK_H
#define SM_LAPACK_H

#include <stddef.h>

typedef size_t sm_fstrlen;

/* Symmetric eigensolvers (divide and conquer): eigenvalues ascending, vectors in columns. */
void ssyevd_(const char *jobz, const char *uplo, const int *n, float *a, const int *lda,
             float *w, float *work, const int *lwork, int *iwork, const int *liwork, int *info,
             sm_fstrlen, sm_fstrlen);
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
             double *w, double *work, const int *lwork, int *iwork, const int *liwork, int *info,
             sm_fstrlen, sm_fstrlen);

/* SVD (divide and conquer). */
void sgesdd_(const char *jobz, const int *m, const int *n, float *a, const int *lda, float *s,
             float *u, const int *ldu, float *vt, const int *ldvt, float *work, const int *lwork,
             int *iwork, int *info, sm_fstrlen);
void dgesdd_(const char *jobz, const int *m, const int *n, double *a, const int *lda, double *s,
             double *u, const int *ldu, double *vt, const int *ldvt, double *work,
             const int *lwork, int *iwork, int *info, sm_fstrlen);

/* Cholesky factorisation and solve. */
void spotrf_(const char *uplo, const int *n, float *a, const int *lda, int *info, sm_fstrlen);
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, sm_fstrlen);
void dpotrs_(const char *uplo, const int *n, const int *nrhs, const double *a, const int *lda,
             double *b, const int *ldb, int *info, sm_fstrlen);

/* LU with partial pivoting and the row interchanges it made. */
void sgetrf_(const int *m, const int *n, float *a, const int *lda, int *ipiv, int *info);
void slaswp_(const int *n, float *a, const int *lda, const int *k1, const int *k2,
             const int *ipiv, const int *incx);

/* Householder QR and the explicit Q. */
void sgeqrf_(const int *m, const int *n, float *a, const int *lda, float *tau, float *work,
             const int *lwork, int *info);
void sorgqr_(const int *m, const int *n, const int *k, float *a, const int *lda,
             const float *tau, float *work, const int *lwork, int *info);

#endif

/* dense: checked wrappers over the LAPACK routines the engine uses.
 *
 * They do the workspace queries, check that dimensions fit LAPACK's 32-bit integers, and turn
 * info codes into sm_err messages. Column-major, like LAPACK. */
#ifndef SM_DENSE_H
#define SM_DENSE_H

#include <stdbool.h>
#include <stdint.h>

/* 0 if every value in dims[0..n) fits a LAPACK int, else -1 naming `what`. */
int sm_dense_fits_int(const int64_t *dims, int n, const char *what);

/* Symmetric eigendecomposition of the n×n matrix a (lower triangle referenced; a row-major
 * upper triangle is the same memory). w receives eigenvalues ascending; with vectors, a is
 * overwritten by the orthonormal eigenvectors (column j for w[j]). */
int sm_eigh_f32(int n, float *a, bool vectors, float *w);
int sm_eigh_f64(int n, double *a, bool vectors, double *w);

/* Replace the m×n (m ≥ n) column-major a by an orthonormal basis of its columns (Householder
 * QR, explicit Q). */
int sm_orth_f32(int m, int n, float *a);

/* Replace the m×n (m ≥ n) column-major a by P·L from its LU factorisation a = P L U: a
 * well-conditioned basis of the same column space (|L_ij| ≤ 1), ~10× cheaper than QR. Used
 * to renormalise power iterations, where orthonormality is not needed. */
int sm_lu_basis_f32(int m, int n, float *a);

/* Cholesky a = L Lᵀ of the n×n column-major SPD a in place (lower triangle holds L; the strict
 * upper triangle is zeroed). */
int sm_chol_f64(int n, double *a);
/* Solve (L Lᵀ) X = B for nrhs right-hand sides, B n×nrhs column-major, L from sm_chol_f64. */
int sm_chol_solve_f64(int n, const double *l, int nrhs, double *b);

/* Make the n×n row-major (or column-major) matrix symmetric by copying the upper row-major
 * triangle (= lower column-major) into the other. */
void sm_symmetrize_upper_f32(int64_t n, float *a);

#endif

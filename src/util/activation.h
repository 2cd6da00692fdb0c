/* activation: the forward pass's elementwise steps over rows, vectorized: SwiGLU's SiLU(g)·u and
 * attention's softmax in bf16, written straight as the source of the product that follows (the
 * down product's, P·V's); a row's maximum, and the LM head's sum of exponentials in bf16. */
#ifndef SM_ACTIVATION_H
#define SM_ACTIVATION_H

#include <stddef.h>
#include <stdint.h>

/* dst[i] = bf16(g[i] / (1 + exp(-g[i])) · u[i]), rounded as sm_bf16_pack rounds. exp is glibc's
 * vector expf (libmvec: within 1 ulp of expf, in the clone the CPU runs), so the fp32 value may
 * differ from the scalar formula in its last bit, and its bf16 rounding in rare cases: the bf16
 * pass is already approximate by design (submoe(1) PRECISION); the fp32 pass keeps expf. */
void sm_swiglu_bf16(uint16_t *restrict dst, const float *restrict g, const float *restrict u, size_t n);

/* The largest of row[0..n), n ≥ 1: exactly the value of one running `r > mx ? r : mx`. */
float sm_row_max(const float *row, int n);

/* Σ exp(row[j] − mx) over j < n, with libmvec's expf, summed in 16 double lanes added in a fixed
 * order: the bf16 pass's log-sum-exp (the fp32 pass keeps its double exp). */
double sm_expsum(const float *row, int n, float mx);

/* dst[0..valid) = bf16(softmax(scale · row[0..valid))), dst[valid..n) = 0 (the causal mask); row
 * is overwritten. exp is libmvec's expf, as above; the sum runs in 16 float lanes added in a fixed
 * order (the same bits in every clone). scale > 0, valid ≥ 1. */
void sm_softmax_bf16(uint16_t *restrict dst, float *restrict row, int valid, int n, float scale);

#endif

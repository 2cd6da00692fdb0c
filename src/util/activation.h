/* activation: the bf16 forward pass's elementwise steps, written straight as the bf16 source of
 * the product that follows: SwiGLU's SiLU(g)·u (the down product's), attention's softmax (P·V's). */
#ifndef SM_ACTIVATION_H
#define SM_ACTIVATION_H

#include <stddef.h>
#include <stdint.h>

/* dst[i] = bf16(g[i] / (1 + exp(-g[i])) · u[i]), rounded as sm_bf16_pack rounds. exp is glibc's
 * vector expf (libmvec: within 1 ulp of expf, in the clone the CPU runs), so the fp32 value may
 * differ from the scalar formula in its last bit, and its bf16 rounding in rare cases: the bf16
 * pass is already approximate by design (submoe(1) PRECISION); the fp32 pass keeps expf. */
void sm_swiglu_bf16(uint16_t *restrict dst, const float *restrict g, const float *restrict u, size_t n);

/* dst[0..valid) = bf16(softmax(scale · row[0..valid))), dst[valid..n) = 0 (the causal mask); row
 * is overwritten. exp is libmvec's expf, as above; the sum runs in 16 float lanes added in a fixed
 * order (the same bits in every clone). scale > 0, valid ≥ 1. */
void sm_softmax_bf16(uint16_t *restrict dst, float *restrict row, int valid, int n, float scale);

#endif

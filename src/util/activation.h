/* activation: SwiGLU's SiLU(g)·u for the bf16 forward pass, written straight as the bf16 source of
 * the down product. */
#ifndef SM_ACTIVATION_H
#define SM_ACTIVATION_H

#include <stddef.h>
#include <stdint.h>

/* dst[i] = bf16(g[i] / (1 + exp(-g[i])) · u[i]), rounded as sm_bf16_pack rounds. exp is glibc's
 * vector expf (libmvec: within 1 ulp of expf, in the clone the CPU runs), so the fp32 value may
 * differ from the scalar formula in its last bit, and its bf16 rounding in rare cases: the bf16
 * pass is already approximate by design (submoe(1) PRECISION); the fp32 pass keeps expf. */
void sm_swiglu_bf16(uint16_t *restrict dst, const float *restrict g, const float *restrict u, size_t n);

#endif

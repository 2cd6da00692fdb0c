/* activation: vectorized SwiGLU into bf16 (see activation.h). */
#include "util/activation.h"
#include "util/matmul.h"
#include "util/vectorize.h"

#include <math.h>

/* glibc's <math.h> declares expf's vector versions only under -ffast-math; declared here, the loop
 * vectorizer calls libmvec's (_ZGVeN16v_expf in the AVX-512 clone, ...), which libm.so pulls in. */
__attribute__((simd("notinbranch"))) float expf(float);

/* In blocks of values: SiLU(g)·u into a block (the expf loop vectorizes only without the
 * rounding in it), then the block rounded by sm_bf16_pack. */
SM_VECTORIZED_MATH void sm_swiglu_bf16(uint16_t *restrict dst, const float *restrict g, const float *restrict u,
                                       size_t n)
{
    enum { BLOCK = 512 };
    float v[BLOCK];
    for (size_t i0 = 0; i0 < n; i0 += BLOCK) {
        const size_t len = n - i0 < BLOCK ? n - i0 : BLOCK;
        const float *gi = g + i0, *ui = u + i0;
#pragma GCC ivdep
        for (size_t i = 0; i < len; i++)
            v[i] = gi[i] / (1.0f + expf(-gi[i])) * ui[i];
        sm_bf16_pack(dst + i0, v, len);
    }
}

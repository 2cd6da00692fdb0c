/* activation: vectorized SwiGLU into bf16 (see activation.h). */
#include "util/activation.h"
#include "util/vectorize.h"

#include <math.h>
#include <string.h>

/* glibc's <math.h> declares expf's vector versions only under -ffast-math; declared here, the loop
 * vectorizer calls libmvec's (_ZGVeN16v_expf in the AVX-512 clone, ...), which libm.so pulls in. */
__attribute__((simd("notinbranch"))) float expf(float);

/* SM_VECTORIZED, and without math-errno so that the expf calls may be vectorized (errno is never
 * read after them). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VECTORIZED_MATH __attribute__((target_clones("avx512f", "avx2", "default"), optimize("tree-vectorize", "no-math-errno")))
#else
#define VECTORIZED_MATH SM_VECTORIZED
#endif

/* In blocks: the vectorizer takes the expf loop only without the rounding's select in it. */
VECTORIZED_MATH void sm_swiglu_bf16(uint16_t *restrict dst, const float *restrict g, const float *restrict u, size_t n)
{
    enum { BLOCK = 512 };
    float v[BLOCK];
    for (size_t i0 = 0; i0 < n; i0 += BLOCK) {
        const size_t len = n - i0 < BLOCK ? n - i0 : BLOCK;
        const float *gi = g + i0, *ui = u + i0;
#pragma GCC ivdep
        for (size_t i = 0; i < len; i++)
            v[i] = gi[i] / (1.0f + expf(-gi[i])) * ui[i];
        for (size_t i = 0; i < len; i++) {
            uint32_t b;
            memcpy(&b, &v[i], sizeof b);
            uint32_t rne = (b + 0x7fffu + ((b >> 16) & 1u)) >> 16, quiet = (b >> 16) | 0x40u;
            dst[i0 + i] = (uint16_t)((b & 0x7fffffffu) > 0x7f800000u ? quiet : rne); /* as sm_bf16_pack */
        }
    }
}

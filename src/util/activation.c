/* activation: vectorized SwiGLU and softmax into bf16 (see activation.h). */
#include "util/activation.h"
#include "util/matmul.h"
#include "util/vectorize.h"

#include <math.h>
#include <string.h>

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

/* In 16 lanes: one running maximum was a chain of dependent compares. The maximum is exact, so
 * the lanes give the same value as one running maximum (a NaN first stays, later NaNs are
 * skipped, as `r > mx ? r : mx` does). */
enum { LANES = 16 };

SM_VECTORIZED float sm_row_max(const float *row, int n)
{
    float lane[LANES], mx = row[0];
    int j = 0;
    for (int l = 0; l < LANES; l++)
        lane[l] = row[0];
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++)
            lane[l] = row[j + l] > lane[l] ? row[j + l] : lane[l];
    for (int l = 0; l < LANES; l++)
        mx = lane[l] > mx ? lane[l] : mx;
    for (; j < n; j++)
        mx = row[j] > mx ? row[j] : mx;
    return mx;
}

/* In blocks: the exponentials into a block (the expf loop vectorizes only on its own), then the
 * block summed into the lanes. */
SM_VECTORIZED_MATH double sm_expsum(const float *row, int n, float mx)
{
    enum { BLOCK = 512 };
    float e[BLOCK];
    double lane[LANES] = {0}, sum = 0;
    for (int j0 = 0; j0 < n; j0 += BLOCK) {
        const int len = n - j0 < BLOCK ? n - j0 : BLOCK;
        const float *r = row + j0;
#pragma GCC ivdep
        for (int j = 0; j < len; j++)
            e[j] = expf(r[j] - mx);
        int j = 0;
        for (; j + LANES <= len; j += LANES)
            for (int l = 0; l < LANES; l++)
                lane[l] += e[j + l];
        for (; j < len; j++) /* (only the row's last block has a rest) */
            lane[j % LANES] += e[j];
    }
    for (int l = 0; l < LANES; l++)
        sum += lane[l];
    return sum;
}

SM_VECTORIZED_MATH void sm_softmax_bf16(uint16_t *restrict dst, float *restrict row, int valid, int n, float scale)
{
    const float shift = scale * sm_row_max(row, valid);
#pragma GCC ivdep
    for (int j = 0; j < valid; j++)
        row[j] = expf(scale * row[j] - shift);
    float lane[LANES] = {0}, sum = 0; /* (in lanes, as the maximum) */
    int j = 0;
    for (; j + LANES <= valid; j += LANES)
        for (int l = 0; l < LANES; l++)
            lane[l] += row[j + l];
    for (int l = 0; l < LANES; l++)
        sum += lane[l];
    for (; j < valid; j++)
        sum += row[j];
    const float inv = 1.0f / sum;
    for (j = 0; j < valid; j++)
        row[j] *= inv;
    sm_bf16_pack(dst, row, (size_t)valid);
    memset(dst + valid, 0, sizeof *dst * (size_t)(n - valid));
}

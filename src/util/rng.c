#include "util/rng.h"

#include <math.h>

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void sm_rng_seed(sm_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

uint64_t sm_rng_u64(sm_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double sm_rng_uniform(sm_rng *r) { return (double)(sm_rng_u64(r) >> 11) * 0x1.0p-53; }

uint64_t sm_rng_below(sm_rng *r, uint64_t n)
{
    if (n == 0)
        return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = sm_rng_u64(r);
    while (x >= limit);
    return x % n;
}

double sm_rng_normal(sm_rng *r)
{
    double u1 = sm_rng_uniform(r), u2 = sm_rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

void sm_rng_fill_normal(sm_rng *r, float *dst, uint64_t n, float scale)
{
    /* Sum of four 16-bit uniforms, centred and scaled to unit variance: close enough to a
     * gaussian for synthetic weights and ~10x cheaper than Box-Muller. */
    const float k = scale * (float)(1.0 / (65536.0 * sqrt(4.0 / 12.0)));
    for (uint64_t i = 0; i < n; i++) {
        uint64_t x = sm_rng_u64(r);
        int32_t s = (int32_t)(x & 0xffff) + (int32_t)((x >> 16) & 0xffff) +
                    (int32_t)((x >> 32) & 0xffff) + (int32_t)(x >> 48) - 2 * 65536;
        dst[i] = (float)s * k;
    }
}

/* rng: small deterministic generator (xoshiro256**) so seeds mean the same on every machine. */
#ifndef SM_RNG_H
#define SM_RNG_H

#include <stdint.h>

typedef struct { uint64_t s[4]; } sm_rng;

void sm_rng_seed(sm_rng *r, uint64_t seed);
uint64_t sm_rng_u64(sm_rng *r);
double sm_rng_uniform(sm_rng *r);            /* [0, 1) */
uint64_t sm_rng_below(sm_rng *r, uint64_t n); /* [0, n) */
double sm_rng_normal(sm_rng *r);             /* standard normal (Box-Muller) */
/* Fast approximate normal fill for bulk synthetic weights: n values * scale. */
void sm_rng_fill_normal(sm_rng *r, float *dst, uint64_t n, float scale);

#endif

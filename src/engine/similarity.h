/* similarity: how alike a layer's experts are (DESIGN §2.1).
 *
 *   output   S_ij = (1/m) Σ_t cos(E_i(x_t), E_j(x_t))  (paper Eq. 2) on m sampled tokens
 *   weight   cosine of the flattened gate|up|down weights
 *   logit    Pearson correlation over tokens of router logits z_i and z_j
 * plus the centroid cosines k-means needs, all streamed over token blocks so that scratch
 * memory is bounded (~64 MB) whatever m is. A zero vector has cosine 0 with everything. */
#ifndef SM_SIMILARITY_H
#define SM_SIMILARITY_H

#include <stdbool.h>
#include <stdint.h>

#include "util/monitor.h"

/* Expert outputs on m sampled tokens: n blocks of m×hidden floats, expert i's at
 * y + i·m·hidden (row t of block i is Y_i(t) = E_i(x_t)). */
typedef struct sm_outputs {
    int n;
    int64_t m, hidden;
    const float *y;
    /* Optional (NULL: normalised block by block): y with every row scaled to unit length, in the
     * same layout, from sm_outputs_normalise; centroid cosines then read it in place. */
    const float *yn;
    /* Optional (NULL: from the rows): the per-token Grams of the outputs, m blocks of n×n
     * doubles, gram[t·n·n + i·n + j] = <Y_i(t), Y_j(t)>, from sm_outputs_gram. Centroid cosines
     * then cost O(m·n²) instead of O(m·n·hidden): cos(Y_i, Σ_{j∈c} Y_j) needs only these dot
     * products. Equal to the row path up to float rounding (not bit for bit). */
    const double *gram;
} sm_outputs;

int sm_outputs_check(const sm_outputs *o);

/* A copy of o->y with every row at unit length (n·m·hidden floats, the caller frees), so that
 * repeated centroid cosines (k-means iterations, restarts, a cost curve's k) do not normalise
 * the same rows again: the results are bit-identical. NULL, without a message, when it would
 * exceed `max_bytes` or cannot be allocated: callers then go on without it. */
float *sm_outputs_normalise(const sm_outputs *o, size_t max_bytes);

/* The per-token Grams of o (m·n·n doubles, the caller frees; see sm_outputs.gram): m products
 * of n×hidden by its transpose, checked against `mon` between tokens. NULL on failure (with a
 * message) or cancellation. */
double *sm_outputs_gram(const sm_outputs *o, const sm_monitor *mon);

/* s (n×n, row-major, symmetric, diagonal 1 unless an expert's outputs are all zero). */
int sm_similarity_output(const sm_outputs *o, const sm_monitor *mon, double *s);

/* Experts as concatenations of up to 4 segments (e.g. gate, up, down): segment g of expert i
 * is seg[g][i] with len[g] floats, or where that (or seg[g]) is NULL seg16[g][i] with len[g]
 * bf16 values (read as their exact fp32 values: the similarity of the unpacked floats). */
typedef struct sm_flat_experts {
    int n, n_seg;
    const float *const *seg[4];
    int64_t len[4];
    const uint16_t *const *seg16[4];
} sm_flat_experts;

int sm_similarity_weight(const sm_flat_experts *e, const sm_monitor *mon, double *s);

/* z: m×n router logits (row-major). Constant logits correlate 0 (1 with themselves). */
int sm_similarity_logit(const float *z, int64_t m, int n, double *s);

/* For a partition assign[0..n) into k clusters with centroids C_c(t) = mean of the members'
 * outputs: acc[i·k + c] = (1/m) Σ_t cos(Y_i(t), C_c(t)). With own_only, only the entries
 * c = assign[i] are computed (others are set to 0): that is all a clustering cost needs. */
int sm_outputs_centroid_cos(const sm_outputs *o, const int *assign, int k, bool own_only,
                            const sm_monitor *mon, double *acc);

#endif

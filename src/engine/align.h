/* align: neuron alignment of experts before merging (DESIGN §2.5b).
 *
 * The union SVD pairs intermediate neuron j of every member (row j of gate/up, column j of
 * down). Experts trained from scratch compute the same kind of features in different neuron
 * orders, so before merging a cluster each member is permuted to match a reference member:
 *   h(x) = silu(W_gate x) ⊙ (W_up x)   (m × I activations on calibration inputs)
 * every neuron's activation column is standardised (zero mean, unit variance; a constant
 * neuron correlates 0 with everything), C = H_refᵀ H_mem / m is the I × I correlation matrix,
 * and the permutation maximising Σ_i C[i, π(i)] is found:
 *   - exactly (Hungarian method with potentials, O(I³) in double) for I ≤ SM_ALIGN_EXACT_MAX;
 *   - above that, by a greedy matching on each reference neuron's best SM_ALIGN_CANDIDATES
 *     candidates in descending correlation, the leftovers solved exactly (they are few; should
 *     more than SM_ALIGN_EXACT_MAX remain, they are paired in index order), which
 *     is O(I² · m) for C plus O(I² log) for the candidates — seconds at Mixtral's I = 14336.
 * The permuted expert computes exactly the same function (rows of gate/up and columns of down
 * move together). */
#ifndef SM_ALIGN_H
#define SM_ALIGN_H

#include <stdbool.h>
#include <stdint.h>

#include "util/monitor.h"
#include "moe/moe.h"

#define SM_ALIGN_EXACT_MAX 4096
#define SM_ALIGN_CANDIDATES 16
#define SM_ALIGN_MAX_ROWS 2048 /* calibration rows used for the correlations: the matching is as
                                * good as with 4096 (demo-scratch aligned merges 17.84 vs 17.77 at
                                * 50%) and the activations, most of the time, cost half */

/* Minimum-cost perfect assignment of an n × n cost matrix (row-major): assign[i] = column of row i.
 * Exact. 0, or -1 with a message. */
int sm_assignment_solve(const double *cost, int n, int *assign);

/* The matching of an n × n correlation matrix c (row-major, float): perm[i] = the column matched
 * to row i, maximising Σ_i c[i, perm[i]]. exact: the Hungarian method (cost 1 − c); otherwise
 * the candidate matching described above (what sm_align_pair uses above SM_ALIGN_EXACT_MAX).
 * Cancellable (checked every row of the Hungarian method and every 1024 candidate rows). perm
 * is written only on success: 0, or -1 with a message ("cancelled" when cancelled). */
int sm_align_match(const float *c, int n, bool exact, const sm_monitor *mon, int *perm);

/* perm[i] = the member neuron placed at position i (matched to reference neuron i), from the
 * correlation of their activations on x (m × hidden; at most SM_ALIGN_MAX_ROWS evenly spaced
 * rows are used). Both experts dense with the same intermediate size. mean_corr (optional): the
 * mean correlation of matched pairs.
 * mon: progress (activations, correlations, matching) and cancellation between blocks of
 * 256 rows, of 1024 correlation columns and (matching) between assignment rows; a cancelled
 * call returns -1 with the message "cancelled". perm is written only on success.
 * Memory: 2·rows·I + I² floats (plus I² doubles for the exact matching). */
int sm_align_pair(const sm_expert *ref, const sm_expert *mem, const float *x, int64_t m, const sm_monitor *mon,
                  int *perm, double *mean_corr);

/* Alignments already computed on one layer, by (reference, member) expert index: method auto
 * aligns the same pairs on the same rows for several candidates (on k-means and on dominant
 * groups, for the merge it builds to score and again for the winner), and each pair costs two
 * activation passes and an I×I matching. A memo serves one source layer and one x/m only; the
 * caller keeps it with them. */
typedef struct sm_align_memo sm_align_memo;
/* A memo also keeps each expert's standardised activations (large shapes: an expert is in pairs
 * of several groupings), up to this many bytes per layer. */
#define SM_ALIGN_MEMO_ACT_BYTES (512ll << 20)
sm_align_memo *sm_align_memo_new(int n_experts);
void sm_align_memo_free(sm_align_memo *memo);

/* sm_align_pair of experts ref_i and mem_i of `block`, through memo (NULL: computed each time).
 * *moved: whether perm differs from the identity (the aligned copy would equal the source). */
int sm_align_pair_memo(sm_align_memo *memo, const sm_moe_block *block, int ref_i, int mem_i, const float *x,
                       int64_t m, const sm_monitor *mon, int *perm, double *mean_corr, bool *moved);

/* The member of cluster c (of assign, n experts) the others are aligned to: the most frequent
 * (freq NULL: the first). */
int sm_align_reference(const double *freq, const int *assign, int n, int c);

/* The alignments an aligned merge of block on assign (k clusters) makes, computed into memo
 * (which it needs; freq as sm_align_reference), and *moved, how many members they permute: with
 * none, the aligned merge is the unaligned one, byte for byte. 0, or -1 with a message
 * ("cancelled" when cancelled). */
int sm_align_moves(const sm_moe_block *block, const double *freq, const int *assign, int k, const float *x,
                   int64_t m, sm_align_memo *memo, const sm_monitor *mon, int *moved);

/* Dense permuted copies: gate/up (I×H) rows i = src rows perm[i]; down (H×I) columns i = src
 * columns perm[i]. */
void sm_expert_permute(const sm_expert *src, const int *perm, float *gate, float *up, float *down);
/* The same with monitor checks every 1024 rows of gate/up and 256 rows of down (a Mixtral
 * expert's copies take about a second): 0, or -1 ("cancelled"; the copies are then partial). */
int sm_expert_permute_mon(const sm_expert *src, const int *perm, float *gate, float *up, float *down,
                          const sm_monitor *mon);

#endif

/* prune: which experts a pruned layer keeps (DESIGN §2.5).
 *
 *   prune-frequency  the k most-routed experts (ties: lower index).
 *   prune-reap       the k most salient experts by REAP saliency (saliency.h; ties: lower index):
 *                    sm_prune_frequency on the saliencies.
 *   prune-output     the k-subset with the least MoE-block output error, evaluated by a
 *                    caller-supplied callback (this module knows nothing about the block):
 *                    exhaustive over all C(N, k) subsets when that is at most
 *                    `exhaustive_limit`, otherwise greedy backward elimination (drop, one at a
 *                    time, the expert whose removal raises the error least; N²/2 evaluations).
 * Kept indices are returned ascending. */
#ifndef SM_PRUNE_H
#define SM_PRUNE_H

#include <stdint.h>

#include "util/monitor.h"

#define SM_PRUNE_EXHAUSTIVE_LIMIT 5000

int sm_prune_frequency(const double *freq, int n, int k, int *keep);

/* Error of keeping exactly keep[0..k) (ascending); 0 or -1 with a message (aborts the search). */
typedef int (*sm_subset_error_fn)(void *ctx, const int *keep, int k, double *err);

/* Errors of `count` subsets of k experts, keeps[i·k .. i·k + k) (each ascending) into errs[i]: the
 * figures `count` calls of an sm_subset_error_fn in that order give. Cancellable (mon). */
typedef int (*sm_subset_errors_fn)(void *ctx, const int *keeps, int count, int k, const sm_monitor *mon,
                                   double *errs);

typedef struct sm_prune_result {
    double error;        /* error of the chosen subset */
    int64_t evaluations; /* callback calls made */
    int exhaustive;      /* 1 when every subset was tried */
} sm_prune_result;

/* exhaustive_limit 0 = SM_PRUNE_EXHAUSTIVE_LIMIT. */
int sm_prune_output(int n, int k, sm_subset_error_fn fn, void *ctx, int64_t exhaustive_limit,
                    const sm_monitor *mon, int *keep, sm_prune_result *res);

/* The same search with a batch callback: a greedy step's subsets (or up to 256 of the exhaustive
 * search's, in lexicographic order) in one call, which may score them on several threads. The
 * choice is the one-at-a-time search's. */
int sm_prune_output_batch(int n, int k, sm_subset_errors_fn fn, void *ctx, int64_t exhaustive_limit,
                          const sm_monitor *mon, int *keep, sm_prune_result *res);

/* C(n, k), or -1 when it exceeds `cap` (so huge counts never overflow). */
int64_t sm_binomial_capped(int n, int k, int64_t cap);

#endif

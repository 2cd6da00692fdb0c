#include "engine/prune.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/diag.h"
#include "util/mem.h"

int sm_prune_frequency(const double *freq, int n, int k, int *keep)
{
    if (n <= 0 || k < 1 || k > n)
        return sm_err("cannot keep %d of %d experts", k, n);
    char *taken = sm_zalloc((size_t)n, 1);
    if (!taken)
        return -1;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (!taken[i] && (best < 0 || freq[i] > freq[best]))
                best = i; /* strict '>' keeps the lower index on ties */
        taken[best] = 1;
    }
    for (int i = 0, j = 0; i < n; i++)
        if (taken[i])
            keep[j++] = i;
    free(taken);
    return 0;
}

int64_t sm_binomial_capped(int n, int k, int64_t cap)
{
    if (k < 0 || k > n)
        return 0;
    if (k > n - k)
        k = n - k;
    /* c = C(n - k + j, j) grows monotonically; exact integer arithmetic at each step. */
    int64_t c = 1;
    for (int j = 1; j <= k; j++) {
        __int128 next = (__int128)c * (n - k + j) / j;
        if (next > cap)
            return -1;
        c = (int64_t)next;
    }
    return c;
}

/* Subsets evaluated per batch by the exhaustive search (the greedy one hands over a whole step). */
#define EXHAUSTIVE_BATCH 256

static int prune_exhaustive(int n, int k, int64_t total, sm_subset_errors_fn fn, void *ctx,
                            const sm_monitor *mon, int *keep, sm_prune_result *res)
{
    int *cur = sm_alloc((size_t)k, sizeof(int)), *subsets = sm_alloc((size_t)k * EXHAUSTIVE_BATCH, sizeof(int));
    double *errs = sm_alloc(EXHAUSTIVE_BATCH, sizeof(double));
    int rc = cur && subsets && errs ? 0 : -1, have = 0;
    for (int j = 0; cur && j < k; j++)
        cur[j] = j;
    for (bool more = rc == 0; more;) {
        int nb = 0;
        for (; more && nb < EXHAUSTIVE_BATCH; nb++) { /* the next subsets in lexicographic order */
            memcpy(subsets + (size_t)nb * k, cur, (size_t)k * sizeof(int));
            int j = k - 1;
            while (j >= 0 && cur[j] == n - k + j)
                j--;
            more = j >= 0;
            if (!more)
                continue;
            cur[j]++;
            for (int t = j + 1; t < k; t++)
                cur[t] = cur[t - 1] + 1;
        }
        if ((rc = sm_monitor_check(mon)) != 0 || (rc = fn(ctx, subsets, nb, k, mon, errs)) != 0)
            break;
        for (int b = 0; b < nb; b++)
            if (!have || errs[b] < res->error) { /* lexicographically first among equals */
                res->error = errs[b];
                memcpy(keep, subsets + (size_t)b * k, (size_t)k * sizeof(int));
                have = 1;
            }
        res->evaluations += nb;
        sm_monitor_report(mon, (double)res->evaluations / total, "prune-output (exhaustive)");
    }
    free(cur), free(subsets), free(errs);
    res->exhaustive = 1;
    return rc;
}

static int prune_greedy(int n, int k, sm_subset_errors_fn fn, void *ctx, const sm_monitor *mon,
                        int *keep, sm_prune_result *res)
{
    int *cur = sm_alloc((size_t)n, sizeof(int)), *trials = sm_alloc((size_t)n * (size_t)n, sizeof(int));
    double *errs = sm_alloc((size_t)n, sizeof(double));
    if (!cur || !trials || !errs) {
        free(cur), free(trials), free(errs);
        return -1;
    }
    for (int i = 0; i < n; i++)
        cur[i] = i;
    int size = n, rc = 0;
    const double total = (double)(n - k) * (n + k + 1) / 2.0;
    double best_e = 0.0;
    while (rc == 0 && size > k) {
        for (int d = 0; d < size; d++) { /* every expert dropped in turn: one batch */
            int *trial = trials + (size_t)d * (size - 1);
            for (int i = 0, t = 0; i < size; i++)
                if (i != d)
                    trial[t++] = cur[i];
        }
        if ((rc = sm_monitor_check(mon)) != 0 || (rc = fn(ctx, trials, size, size - 1, mon, errs)) != 0)
            break;
        int drop = -1;
        for (int d = 0; d < size; d++)
            if (drop < 0 || errs[d] < best_e) {
                best_e = errs[d];
                drop = d;
            }
        res->evaluations += size;
        sm_monitor_report(mon, res->evaluations / total, "prune-output (greedy)");
        memmove(cur + drop, cur + drop + 1, (size_t)(size - drop - 1) * sizeof(int));
        size--;
    }
    if (rc == 0) {
        memcpy(keep, cur, (size_t)k * sizeof(int));
        res->error = best_e;
        if (size == n) /* k == n: nothing dropped, evaluate the full set once */
            rc = fn(ctx, keep, 1, k, mon, &res->error), res->evaluations++;
    }
    free(cur), free(trials), free(errs);
    return rc;
}

/* A one-subset callback as a batch one: the subsets in order, cancellable between them. */
typedef struct one_by_one {
    sm_subset_error_fn fn;
    void *ctx;
} one_by_one;

static int errors_one_by_one(void *ctx, const int *keeps, int count, int k, const sm_monitor *mon, double *errs)
{
    const one_by_one *o = ctx;
    for (int i = 0; i < count; i++)
        if ((i > 0 && sm_monitor_check(mon) != 0) || o->fn(o->ctx, keeps + (size_t)i * k, k, &errs[i]) != 0)
            return -1;
    return 0;
}

int sm_prune_output_batch(int n, int k, sm_subset_errors_fn fn, void *ctx, int64_t exhaustive_limit,
                          const sm_monitor *mon, int *keep, sm_prune_result *res)
{
    memset(res, 0, sizeof *res);
    if (n <= 0 || k < 1 || k > n)
        return sm_err("cannot keep %d of %d experts", k, n);
    if (!fn)
        return sm_err("prune-output needs an error callback");
    int64_t limit = exhaustive_limit > 0 ? exhaustive_limit : SM_PRUNE_EXHAUSTIVE_LIMIT;
    int64_t total = sm_binomial_capped(n, k, limit);
    if (total > 0)
        return prune_exhaustive(n, k, total, fn, ctx, mon, keep, res);
    return prune_greedy(n, k, fn, ctx, mon, keep, res);
}

int sm_prune_output(int n, int k, sm_subset_error_fn fn, void *ctx, int64_t exhaustive_limit,
                    const sm_monitor *mon, int *keep, sm_prune_result *res)
{
    if (!fn) {
        memset(res, 0, sizeof *res);
        return sm_err("prune-output needs an error callback");
    }
    one_by_one o = {fn, ctx};
    return sm_prune_output_batch(n, k, errors_one_by_one, &o, exhaustive_limit, mon, keep, res);
}

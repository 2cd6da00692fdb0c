#include "engine/prune.h"

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

static int prune_exhaustive(int n, int k, int64_t total, sm_subset_error_fn fn, void *ctx,
                            const sm_monitor *mon, int *keep, sm_prune_result *res)
{
    int *cur = sm_alloc((size_t)k, sizeof(int));
    if (!cur)
        return -1;
    for (int j = 0; j < k; j++)
        cur[j] = j;
    int64_t done = 0;
    int rc = 0, have = 0;
    for (;;) {
        double e;
        if ((rc = sm_monitor_check(mon)) != 0 || (rc = fn(ctx, cur, k, &e)) != 0)
            break;
        res->evaluations++;
        if (!have || e < res->error) { /* lexicographically first among equals */
            res->error = e;
            memcpy(keep, cur, (size_t)k * sizeof(int));
            have = 1;
        }
        sm_monitor_report(mon, (double)++done / total, "prune-output (exhaustive)");
        /* Next k-subset in lexicographic order. */
        int j = k - 1;
        while (j >= 0 && cur[j] == n - k + j)
            j--;
        if (j < 0)
            break;
        cur[j]++;
        for (int t = j + 1; t < k; t++)
            cur[t] = cur[t - 1] + 1;
    }
    free(cur);
    res->exhaustive = 1;
    return rc;
}

static int prune_greedy(int n, int k, sm_subset_error_fn fn, void *ctx, const sm_monitor *mon,
                        int *keep, sm_prune_result *res)
{
    int *cur = sm_alloc((size_t)n, sizeof(int)), *trial = sm_alloc((size_t)n, sizeof(int));
    if (!cur || !trial) {
        free(cur);
        free(trial);
        return -1;
    }
    for (int i = 0; i < n; i++)
        cur[i] = i;
    int size = n, rc = 0;
    const double total = (double)(n - k) * (n + k + 1) / 2.0;
    double best_e = 0.0;
    while (rc == 0 && size > k) {
        int drop = -1;
        for (int d = 0; d < size; d++) {
            int t = 0;
            for (int i = 0; i < size; i++)
                if (i != d)
                    trial[t++] = cur[i];
            double e;
            if ((rc = sm_monitor_check(mon)) != 0 || (rc = fn(ctx, trial, size - 1, &e)) != 0)
                break;
            res->evaluations++;
            if (drop < 0 || e < best_e) {
                best_e = e;
                drop = d;
            }
            sm_monitor_report(mon, res->evaluations / total, "prune-output (greedy)");
        }
        if (rc != 0)
            break;
        memmove(cur + drop, cur + drop + 1, (size_t)(size - drop - 1) * sizeof(int));
        size--;
    }
    if (rc == 0) {
        memcpy(keep, cur, (size_t)k * sizeof(int));
        res->error = best_e;
        if (size == n) /* k == n: nothing dropped, evaluate the full set once */
            rc = fn(ctx, keep, k, &res->error), res->evaluations++;
    }
    free(cur);
    free(trial);
    return rc;
}

int sm_prune_output(int n, int k, sm_subset_error_fn fn, void *ctx, int64_t exhaustive_limit,
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

#include "engine/cluster.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/diag.h"
#include "util/mem.h"
#include "util/rng.h"

#define KMEANS_MAX_ITER 100
#define KMEANS_RESTARTS 4
/* Normalised outputs kept across k-means iterations up to this size (256 MiB at OLMoE's shape,
 * 512 sampled rows); larger ones are normalised block by block every iteration as before. */
#define KMEANS_NORMALISED_MAX ((size_t)512 << 20)
/* From this many output floats (n·m·hidden: OLMoE's 64 experts × 512 rows × 2048 are 2^26) the
 * centroid cosines come from per-token Grams (sm_outputs_gram): an iteration then costs
 * m·n² instead of m·n·hidden, and the Grams cost about one iteration of the row path. Below it,
 * and so on the demo and the test shapes, the row path's arithmetic is kept exactly. */
#define KMEANS_GRAM_MIN ((int64_t)1 << 25)

/* o with what repeated centroid cosines reuse (*own_yn / *own_gram, freed by the caller): the
 * per-token Grams at real sizes (when they fit the same budget: 64 MiB at 128 experts and 512
 * rows), else the normalised rows when they fit. -1 on cancellation. */
static int prepare_outputs(const sm_outputs *o, const sm_monitor *mon, sm_outputs *on, float **own_yn,
                           double **own_gram)
{
    *on = *o;
    *own_yn = NULL, *own_gram = NULL;
    if (o->gram || o->yn)
        return 0;
    bool gram_fits = (double)o->m * o->n * o->n * sizeof(double) <= (double)KMEANS_NORMALISED_MAX;
    if ((int64_t)o->n * o->m * o->hidden >= KMEANS_GRAM_MIN && gram_fits) {
        if (!(*own_gram = sm_outputs_gram(o, mon)))
            return -1;
        on->gram = *own_gram;
    } else if ((*own_yn = sm_outputs_normalise(o, KMEANS_NORMALISED_MAX))) {
        on->yn = *own_yn;
    }
    return 0;
}

static const char *const algo_names[] = {"kmeans", "hierarchical", "kmedoids", "dominant", "reap"};

const char *sm_cluster_algo_name(sm_cluster_algo a)
{
    return (unsigned)a < sizeof algo_names / sizeof algo_names[0] ? algo_names[a] : "?";
}

int sm_cluster_algo_parse(const char *name, sm_cluster_algo *out)
{
    for (int a = 0; a < (int)(sizeof algo_names / sizeof algo_names[0]); a++)
        if (name && strcmp(name, algo_names[a]) == 0) {
            *out = (sm_cluster_algo)a;
            return 0;
        }
    return sm_err("unknown clustering '%s' (expected kmeans, hierarchical, kmedoids, dominant or reap)",
                  name ? name : "");
}

int sm_cluster_canonical(int *assign, int n)
{
    int *map = sm_alloc((size_t)n + 1, sizeof(int));
    if (!map)
        return -1;
    /* Labels may be arbitrary ints in [0, n]; anything else is mapped through a slow path. */
    for (int i = 0; i <= n; i++)
        map[i] = -1;
    int next = 0;
    for (int i = 0; i < n; i++) {
        int l = assign[i];
        if (l < 0 || l > n) {
            free(map);
            return sm_err("cluster label %d out of range", l);
        }
        if (map[l] < 0)
            map[l] = next++;
        assign[i] = map[l];
    }
    free(map);
    return next;
}

/* ---- k-means++ seeding (shared by k-means and k-medoids) -------------------------------- */

static void seed_plus_plus(const double *s, int n, int k, sm_rng *rng, int *seeds)
{
    double *dmin = xmalloc(sizeof(double) * (size_t)n);
    bool *chosen = xcalloc((size_t)n, sizeof(bool));
    seeds[0] = (int)sm_rng_below(rng, (uint64_t)n);
    chosen[seeds[0]] = true;
    for (int i = 0; i < n; i++)
        dmin[i] = fmax(0.0, 1.0 - s[(size_t)i * n + seeds[0]]);
    for (int c = 1; c < k; c++) {
        double total = 0.0;
        for (int i = 0; i < n; i++)
            if (!chosen[i])
                total += dmin[i] * dmin[i];
        int pick = -1;
        if (total > 0.0) {
            double u = sm_rng_uniform(rng) * total, cum = 0.0;
            for (int i = 0; i < n; i++) {
                if (chosen[i] || dmin[i] <= 0.0)
                    continue;
                cum += dmin[i] * dmin[i];
                pick = i;
                if (cum > u)
                    break;
            }
        }
        for (int i = 0; pick < 0 && i < n; i++)
            if (!chosen[i])
                pick = i; /* all remaining experts coincide with a seed */
        seeds[c] = pick;
        chosen[pick] = true;
        for (int i = 0; i < n; i++)
            dmin[i] = fmin(dmin[i], fmax(0.0, 1.0 - s[(size_t)i * n + pick]));
    }
    free(dmin);
    free(chosen);
}

/* ---- k-means on outputs ------------------------------------------------------------------ */

/* new_assign = nearest centroid by d = 1 − cos (ties: lower cluster), then refill clusters
 * left empty with the farthest expert of a cluster that has two or more. */
static void assign_nearest(const double *cosv, int n, int k, int *new_assign, int *count)
{
    memset(count, 0, sizeof(int) * (size_t)k);
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int c = 1; c < k; c++)
            if (cosv[(size_t)i * k + c] > cosv[(size_t)i * k + best])
                best = c;
        new_assign[i] = best;
        count[best]++;
    }
    for (int c = 0; c < k; c++) {
        if (count[c] > 0)
            continue;
        int far = -1;
        for (int i = 0; i < n; i++) {
            int ci = new_assign[i];
            if (count[ci] < 2)
                continue;
            if (far < 0 || cosv[(size_t)i * k + ci] < cosv[(size_t)far * k + new_assign[far]])
                far = i;
        }
        count[new_assign[far]]--;
        new_assign[far] = c;
        count[c] = 1;
    }
}

static int kmeans_once(const sm_outputs *o, const double *s, int k, int max_iter, sm_rng *rng,
                       const sm_monitor *mon, int *assign, double *cost, int *iters)
{
    const int n = o->n;
    int *seeds = sm_alloc((size_t)k, sizeof(int)), *next = sm_alloc((size_t)n, sizeof(int));
    int *count = sm_alloc((size_t)k, sizeof(int));
    double *cosv = sm_alloc((size_t)n * k, sizeof(double));
    int rc = -1;
    if (!seeds || !next || !count || !cosv)
        goto done;
    seed_plus_plus(s, n, k, rng, seeds);
    /* Initial partition: nearest seed (a seed's centroid is its own output). */
    for (int i = 0; i < n; i++)
        for (int c = 0; c < k; c++)
            cosv[(size_t)i * k + c] = s[(size_t)i * n + seeds[c]];
    assign_nearest(cosv, n, k, assign, count);
    for (int c = 0; c < k; c++)
        assign[seeds[c]] = c; /* duplicates of a seed must not steal it */
    bool converged = false;
    int it = 0;
    while (it < max_iter) {
        if (sm_outputs_centroid_cos(o, assign, k, false, mon, cosv) != 0)
            goto done;
        it++;
        assign_nearest(cosv, n, k, next, count);
        if (memcmp(next, assign, sizeof(int) * (size_t)n) == 0) {
            converged = true;
            break;
        }
        memcpy(assign, next, sizeof(int) * (size_t)n);
    }
    if (converged) {
        *cost = 0.0;
        for (int i = 0; i < n; i++)
            *cost += 1.0 - cosv[(size_t)i * k + assign[i]];
    } else if (sm_cluster_cost(o, assign, k, mon, cost) != 0) {
        goto done;
    }
    *iters = it;
    rc = 0;
done:
    free(seeds), free(next), free(count), free(cosv);
    return rc;
}

int sm_kmeans_outputs(const sm_outputs *o, const double *s, int k, const sm_kmeans_opts *opts,
                      const sm_monitor *mon, int *assign, sm_kmeans_result *res)
{
    if (sm_outputs_check(o) != 0)
        return -1;
    const int n = o->n;
    if (k < 1 || k > n)
        return sm_err("cannot make %d clusters of %d experts", k, n);
    const int max_iter = opts && opts->max_iter > 0 ? opts->max_iter : KMEANS_MAX_ITER;
    const int restarts = opts && opts->restarts > 0 ? opts->restarts : KMEANS_RESTARTS;
    double *own_s = NULL;
    if (!s) {
        if (!(own_s = sm_alloc((size_t)n * n, sizeof(double))) ||
            sm_similarity_output(o, mon, own_s) != 0) {
            free(own_s);
            return -1;
        }
        s = own_s;
    }
    int *cur = sm_alloc((size_t)n, sizeof(int));
    if (!cur) {
        free(own_s);
        return -1;
    }
    /* every iteration of every restart reads the same outputs: prepare them once */
    sm_outputs on;
    float *own_yn;
    double *own_gram;
    if (prepare_outputs(o, mon, &on, &own_yn, &own_gram) != 0) {
        free(cur), free(own_s);
        return -1;
    }
    o = &on;
    sm_rng rng;
    sm_rng_seed(&rng, opts ? opts->seed : 0);
    sm_kmeans_result best = {INFINITY, 0};
    int rc = 0;
    for (int r = 0; r < restarts; r++) {
        double cost;
        int iters;
        if ((rc = kmeans_once(o, s, k, max_iter, &rng, mon, cur, &cost, &iters)) != 0)
            break;
        if (r == 0 || cost < best.cost) {
            best.cost = cost;
            best.iterations = iters;
            memcpy(assign, cur, sizeof(int) * (size_t)n);
        }
        sm_monitor_report(mon, (r + 1.0) / restarts, "k-means");
    }
    free(cur);
    free(own_s);
    free(own_yn);
    free(own_gram);
    if (rc != 0)
        return -1;
    sm_cluster_canonical(assign, n);
    if (res)
        *res = best;
    return 0;
}

/* ---- k-medoids on a similarity ----------------------------------------------------------- */

int sm_kmedoids(const double *s, int n, int k, const sm_kmeans_opts *opts, int *assign,
                sm_kmeans_result *res)
{
    if (!s || n <= 0 || k < 1 || k > n)
        return sm_err("cannot make %d clusters of %d experts", k, n);
    const int max_iter = opts && opts->max_iter > 0 ? opts->max_iter : KMEANS_MAX_ITER;
    const int restarts = opts && opts->restarts > 0 ? opts->restarts : 1;
    int *med = sm_alloc((size_t)k, sizeof(int)), *cur = sm_alloc((size_t)n, sizeof(int));
    if (!med || !cur) {
        free(med), free(cur);
        return -1;
    }
    sm_rng rng;
    sm_rng_seed(&rng, opts ? opts->seed : 0);
    sm_kmeans_result best = {INFINITY, 0};
    for (int r = 0; r < restarts; r++) {
        seed_plus_plus(s, n, k, &rng, med);
        int it = 0;
        double cost = 0.0;
        for (;;) {
            for (int i = 0; i < n; i++) {
                int b = 0;
                for (int c = 1; c < k; c++)
                    if (s[(size_t)i * n + med[c]] > s[(size_t)i * n + med[b]])
                        b = c;
                cur[i] = b;
            }
            for (int c = 0; c < k; c++)
                cur[med[c]] = c;
            bool changed = false;
            for (int c = 0; c < k; c++) {
                int bj = med[c];
                double bsum = INFINITY;
                for (int j = 0; j < n; j++) {
                    if (cur[j] != c)
                        continue;
                    double sum = 0.0;
                    for (int i = 0; i < n; i++)
                        if (cur[i] == c)
                            sum += 1.0 - s[(size_t)i * n + j];
                    if (sum < bsum - 1e-12) {
                        bsum = sum;
                        bj = j;
                    }
                }
                changed |= bj != med[c];
                med[c] = bj;
            }
            if (!changed || ++it >= max_iter)
                break;
        }
        for (int i = 0; i < n; i++)
            cost += 1.0 - s[(size_t)i * n + med[cur[i]]];
        if (r == 0 || cost < best.cost) {
            best.cost = cost;
            best.iterations = it + 1;
            memcpy(assign, cur, sizeof(int) * (size_t)n);
        }
    }
    free(med), free(cur);
    sm_cluster_canonical(assign, n);
    if (res)
        *res = best;
    return 0;
}

/* ---- average-linkage hierarchical -------------------------------------------------------- */

int sm_hcluster_tree(const double *s, int n, sm_hjoin *joins)
{
    if (!s || n <= 0)
        return sm_err("hierarchical clustering of no experts");
    /* Cluster ids are their smallest member; sum[a·n + b] = Σ S over a × b. */
    double *sum = sm_alloc((size_t)n * n, sizeof(double));
    int *size = sm_alloc((size_t)n, sizeof(int));
    if (!sum || !size) {
        free(sum), free(size);
        return -1;
    }
    memcpy(sum, s, sizeof(double) * (size_t)n * n);
    for (int i = 0; i < n; i++)
        size[i] = 1;
    for (int step = 0; step < n - 1; step++) {
        int ba = -1, bb = -1;
        double bv = -INFINITY;
        for (int a = 0; a < n; a++) {
            if (!size[a])
                continue;
            for (int b = a + 1; b < n; b++) {
                if (!size[b])
                    continue;
                double v = 0.5 * (sum[(size_t)a * n + b] + sum[(size_t)b * n + a]) /
                           ((double)size[a] * size[b]);
                if (v > bv) { /* strict: the lowest (a, b) wins ties */
                    bv = v;
                    ba = a;
                    bb = b;
                }
            }
        }
        joins[step] = (sm_hjoin){ba, bb, bv};
        for (int c = 0; c < n; c++) {
            sum[(size_t)ba * n + c] += sum[(size_t)bb * n + c];
            sum[(size_t)c * n + ba] += sum[(size_t)c * n + bb];
        }
        size[ba] += size[bb];
        size[bb] = 0;
    }
    free(sum), free(size);
    return 0;
}

int sm_hcluster_cut(const sm_hjoin *joins, int n, int k, int *assign)
{
    if (k < 1 || k > n)
        return sm_err("cannot make %d clusters of %d experts", k, n);
    for (int i = 0; i < n; i++)
        assign[i] = i;
    /* Joins keep the smaller id, so relabelling members of b as a is a union. */
    for (int step = 0; step < n - k; step++) {
        int a = joins[step].a, b = joins[step].b;
        for (int i = 0; i < n; i++)
            if (assign[i] == b)
                assign[i] = a;
    }
    return sm_cluster_canonical(assign, n) < 0 ? -1 : 0;
}

int sm_hcluster_average(const double *s, int n, int k, int *assign)
{
    if (n <= 0 || k < 1 || k > n)
        return sm_err("cannot make %d clusters of %d experts", k, n);
    sm_hjoin *joins = sm_alloc((size_t)n, sizeof(sm_hjoin));
    if (!joins)
        return -1;
    int rc = sm_hcluster_tree(s, n, joins);
    if (rc == 0)
        rc = sm_hcluster_cut(joins, n, k, assign);
    free(joins);
    return rc;
}

/* ---- costs ------------------------------------------------------------------------------- */

int sm_cluster_cost(const sm_outputs *o, const int *assign, int k, const sm_monitor *mon,
                    double *cost)
{
    if (sm_outputs_check(o) != 0)
        return -1;
    double *cosv = sm_alloc((size_t)o->n * k, sizeof(double));
    if (!cosv || sm_outputs_centroid_cos(o, assign, k, true, mon, cosv) != 0) {
        free(cosv);
        return -1;
    }
    *cost = 0.0;
    for (int i = 0; i < o->n; i++)
        *cost += 1.0 - cosv[(size_t)i * k + assign[i]];
    free(cosv);
    return 0;
}

int sm_cluster_cost_curve(const sm_outputs *o, const double *s, sm_cluster_algo algo, int k_lo,
                          int k_hi, const sm_kmeans_opts *opts, const sm_monitor *mon, double *j)
{
    if (sm_outputs_check(o) != 0)
        return -1;
    const int n = o->n;
    if (k_lo < 1 || k_hi > n || k_lo > k_hi)
        return sm_err("cost curve range %d..%d invalid for %d experts", k_lo, k_hi, n);
    if (algo == SM_CLUSTER_KMEDOIDS)
        return sm_err("cost curves are defined for k-means and hierarchical clustering");
    /* each k's clustering is seconds of work at real shapes: cancellable, its progress silent */
    sm_monitor quiet = {NULL, NULL, mon ? mon->cancel : NULL};
    int *assign = sm_alloc((size_t)n, sizeof(int));
    sm_hjoin *joins = sm_alloc((size_t)n, sizeof(sm_hjoin));
    double *own_s = NULL;
    float *own_yn = NULL;
    double *own_gram = NULL;
    int rc = -1;
    if (!assign || !joins)
        goto done;
    if (!s) {
        if (!(own_s = sm_alloc((size_t)n * n, sizeof(double))) ||
            sm_similarity_output(o, &quiet, own_s) != 0)
            goto done;
        s = own_s;
    }
    if (algo == SM_CLUSTER_HIERARCHICAL && sm_hcluster_tree(s, n, joins) != 0)
        goto done;
    sm_outputs on; /* every k reads the same outputs */
    if (prepare_outputs(o, &quiet, &on, &own_yn, &own_gram) != 0)
        goto done;
    o = &on;
    for (int k = k_lo; k <= k_hi; k++) {
        if (sm_monitor_check(mon) != 0)
            goto done;
        if (algo == SM_CLUSTER_HIERARCHICAL) {
            if (sm_hcluster_cut(joins, n, k, assign) != 0 ||
                sm_cluster_cost(o, assign, k, &quiet, &j[k]) != 0)
                goto done;
        } else {
            sm_kmeans_result r;
            if (sm_kmeans_outputs(o, s, k, opts, &quiet, assign, &r) != 0)
                goto done;
            j[k] = r.cost;
        }
        sm_monitor_report(mon, (double)(k - k_lo + 1) / (k_hi - k_lo + 1), "clustering cost");
    }
    rc = 0;
done:
    free(assign), free(joins), free(own_s), free(own_yn), free(own_gram);
    return rc;
}

/* ---- adjusted Rand index ----------------------------------------------------------------- */

static double pairs(double x) { return x * (x - 1.0) / 2.0; }

double sm_adjusted_rand(const int *a, const int *b, int n)
{
    if (n <= 1)
        return 1.0;
    int ka = 0, kb = 0;
    for (int i = 0; i < n; i++) {
        if (a[i] < 0 || a[i] >= n || b[i] < 0 || b[i] >= n)
            return NAN;
        ka = a[i] + 1 > ka ? a[i] + 1 : ka;
        kb = b[i] + 1 > kb ? b[i] + 1 : kb;
    }
    int *table = xcalloc((size_t)ka * kb, sizeof(int));
    int *ra = xcalloc((size_t)ka, sizeof(int)), *rb = xcalloc((size_t)kb, sizeof(int));
    for (int i = 0; i < n; i++) {
        table[(size_t)a[i] * kb + b[i]]++;
        ra[a[i]]++;
        rb[b[i]]++;
    }
    double index = 0.0, sa = 0.0, sb = 0.0;
    for (int64_t e = 0; e < (int64_t)ka * kb; e++)
        index += pairs(table[e]);
    for (int i = 0; i < ka; i++)
        sa += pairs(ra[i]);
    for (int i = 0; i < kb; i++)
        sb += pairs(rb[i]);
    free(table), free(ra), free(rb);
    double expected = sa * sb / pairs(n), max = 0.5 * (sa + sb);
    if (max == expected) { /* both all-singletons or both one cluster */
        bool same = true;
        for (int i = 0; i < n && same; i++)
            for (int j = i + 1; j < n && same; j++)
                same = (a[i] == a[j]) == (b[i] == b[j]);
        return same ? 1.0 : 0.0;
    }
    return (index - expected) / (max - expected);
}

int sm_cluster_dominant(const double *freq, const double *s, int n, int k, int *assign)
{
    if (n <= 0 || k < 1 || k > n)
        return sm_err("cannot make %d clusters of %d experts", k, n);
    int *order = sm_alloc((size_t)n, sizeof *order);
    if (!order)
        return -1;
    /* centres: the k most-routed experts (a stable insertion sort: ties keep the lower index) */
    for (int i = 0; i < n; i++) {
        int j = i;
        while (j > 0 && freq[order[j - 1]] < freq[i]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    for (int i = 0; i < n; i++)
        assign[i] = -1;
    for (int c = 0; c < k; c++)
        assign[order[c]] = order[c]; /* labelled by the centre, made canonical below */
    for (int i = 0; i < n; i++) {
        if (assign[i] >= 0)
            continue;
        int best = order[0];
        for (int c = 1; c < k; c++) {
            int e = order[c];
            if (s[i * n + e] > s[i * n + best] || (s[i * n + e] == s[i * n + best] && e < best))
                best = e;
        }
        assign[i] = best;
    }
    free(order);
    return sm_cluster_canonical(assign, n) < 0 ? -1 : 0;
}

int sm_cluster_reap(const double *saliency, const double *s, int n, int k, int *assign)
{
    return sm_cluster_dominant(saliency, s, n, k, assign);
}

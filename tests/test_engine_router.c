/* Router after merging (DESIGN §2.6): collapse-lstsq reproduces the summed member
 * probabilities better than collapse-mean on held-out inputs; collapse-mean, remap and prune
 * against hand cases; pruning selections (prune-frequency, prune-output search). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/prune.h"
#include "engine/router.h"
#include "moe/route.h"
#include "testutil.h"
#include "util/diag.h"
#include "util/rng.h"

enum { N = 8, H = 16, K = 3, M_FIT = 2000, M_TEST = 1000 };
static const int cluster_of[N] = {0, 1, 0, 2, 1, 0, 2, 1};

/* Mean total-variation distance between softmax over cluster rows and the summed member
 * probabilities of the original router. */
static double mean_tv(const float *router, const float *rows, const float *x, int m)
{
    double tv = 0;
    float z[N], p[N], zc[K], q[K];
    for (int t = 0; t < m; t++) {
        sm_route_logits(x + (int64_t)t * H, 1, H, router, N, z);
        sm_route_softmax(z, N, p);
        sm_route_logits(x + (int64_t)t * H, 1, H, rows, K, zc);
        sm_route_softmax(zc, K, q);
        double target[K] = {0};
        for (int i = 0; i < N; i++)
            target[cluster_of[i]] += p[i];
        double d = 0;
        for (int c = 0; c < K; c++)
            d += fabs(q[c] - target[c]);
        tv += 0.5 * d;
    }
    return tv / m;
}

static void test_collapse(void)
{
    sm_rng r;
    sm_rng_seed(&r, 2024);
    /* Router rows of scale ~1 with a shared direction per cluster plus member-specific parts,
     * so member logits differ and lse over a cluster is clearly non-linear in x. */
    static float router[N * H], xf[M_FIT * H], xt[M_TEST * H];
    float dir[K][H], mu[H];
    for (int c = 0; c < K; c++)
        for (int h = 0; h < H; h++)
            dir[c][h] = (float)(0.6 * sm_rng_normal(&r));
    for (int i = 0; i < N; i++)
        for (int h = 0; h < H; h++)
            router[i * H + h] = dir[cluster_of[i]][h] + (float)(0.5 * sm_rng_normal(&r));
    for (int h = 0; h < H; h++)
        mu[h] = (float)sm_rng_normal(&r);
    const double freq[N] = {0.3, 0.1, 0.2, 0.25, 0.05, 0.4, 0.1, 0.2};
    float mean[K * H], lsq[K * H];
    CHECK(sm_router_collapse_mean(router, N, H, cluster_of, K, freq, mean) == 0, "collapse-mean");

    /* Zero-mean inputs, then inputs with a mean like post-norm hidden states (the mean
     * direction lets a bias-free row carry logsumexp's per-cluster offsets). */
    for (int shifted = 0; shifted <= 1; shifted++) {
        for (int e = 0; e < M_FIT * H; e++)
            xf[e] = (shifted ? mu[e % H] : 0.0f) + (float)sm_rng_normal(&r);
        for (int e = 0; e < M_TEST * H; e++)
            xt[e] = (shifted ? mu[e % H] : 0.0f) + (float)sm_rng_normal(&r);
        int rc = sm_router_collapse_lstsq(router, N, H, cluster_of, K, freq, xf, M_FIT, 0, lsq);
        CHECK(rc == 0, "collapse-lstsq %s", rc ? sm_errmsg() : "");
        double tv_mean = mean_tv(router, mean, xt, M_TEST);
        double tv_lsq = mean_tv(router, lsq, xt, M_TEST);
        CHECK(tv_lsq < tv_mean, "%s inputs, held-out mean total variation to the summed member "
              "probabilities: collapse-lstsq %.4f < collapse-mean %.4f (ratio %.2f)",
              shifted ? "shifted" : "zero-mean", tv_lsq, tv_mean, tv_lsq / tv_mean);
        if (shifted)
            CHECK(tv_lsq < 0.7 * tv_mean, "shifted inputs: by a clear margin");
    }

    /* Streaming in two halves gives the same rows as one call. */
    float two[K * H];
    sm_router_fit *f = sm_router_fit_new(router, N, H, cluster_of, K);
    sm_router_fit_add(f, xf, 700);
    sm_router_fit_add(f, xf + 700 * H, M_FIT - 700);
    sm_router_fit_solve(f, freq, 0, two);
    sm_router_fit_free(f);
    double dmax = 0;
    for (int e = 0; e < K * H; e++)
        dmax = fmax(dmax, fabs(two[e] - lsq[e]));
    CHECK(dmax < 1e-4, "streamed fit = one-shot fit (max diff %.2e)", dmax);

    /* Huge ridge shrinks to the collapse-mean rows. */
    float big[K * H];
    sm_router_collapse_lstsq(router, N, H, cluster_of, K, freq, xf, M_FIT, 1e9, big);
    dmax = 0;
    for (int e = 0; e < K * H; e++)
        dmax = fmax(dmax, fabs(big[e] - mean[e]));
    CHECK(dmax < 1e-4, "ridge → ∞ gives collapse-mean (max diff %.2e)", dmax);

    /* Singleton clusters: lse of one logit is linear, so the fit recovers the rows up to the
     * softmax-invariant common shift, which the ridge pins to the mean row: exact. */
    int ident[N];
    for (int i = 0; i < N; i++)
        ident[i] = i;
    float rows[N * H];
    sm_router_collapse_lstsq(router, N, H, ident, N, NULL, xf, M_FIT, 1e-8, rows);
    dmax = 0;
    for (int e = 0; e < N * H; e++)
        dmax = fmax(dmax, fabs(rows[e] - router[e]));
    CHECK(dmax < 1e-3, "singleton clusters: lstsq recovers the router (max diff %.2e)", dmax);
}

static void test_hand(void)
{
    /* collapse-mean: rows (1,0), (0,1), (2,2) with f 1, 3, 0 in clusters {0,1}, {2}:
     * cluster 0 = (1·(1,0) + 3·(0,1)) / 4 = (0.25, 0.75); cluster 1 = (2, 2). */
    const float router[6] = {1, 0, 0, 1, 2, 2};
    const int part[3] = {0, 0, 1};
    const double f[3] = {1, 3, 0};
    float rows[4];
    CHECK(sm_router_collapse_mean(router, 3, 2, part, 2, f, rows) == 0 && rows[0] == 0.25f &&
              rows[1] == 0.75f && rows[2] == 2 && rows[3] == 2,
          "collapse-mean hand case (%.2f %.2f | %.0f %.0f)", rows[0], rows[1], rows[2], rows[3]);
    const double f0[3] = {0, 0, 0};
    sm_router_collapse_mean(router, 3, 2, part, 2, f0, rows);
    CHECK(rows[0] == 0.5f && rows[1] == 0.5f, "zero frequencies → uniform mean");
    int map[3];
    const int bad[3] = {0, 0, 0};
    CHECK(sm_router_remap(part, 3, 2, map) == 0 && map[2] == 1, "remap");
    CHECK(sm_router_remap(bad, 3, 2, map) == -1, "empty cluster rejected: %s", sm_errmsg());
    const int keep[2] = {0, 2};
    CHECK(sm_router_prune(router, 3, 2, keep, 2, rows) == 0 && rows[2] == 2 && rows[1] == 0,
          "prune keeps rows 0 and 2");
    sm_router_mode m;
    CHECK(sm_router_mode_parse("collapse-lstsq", &m) == 0 && m == SM_ROUTER_COLLAPSE_LSTSQ &&
              sm_router_mode_parse("nope", &m) == -1,
          "router mode names");
}

/* A toy subset error: the sum of "damage" of dropped experts plus a pair interaction, so
 * greedy and exhaustive can be checked by hand. */
typedef struct {
    double damage[6];
    int calls;
} toy;

static int toy_error(void *ctx, const int *keep, int k, double *err)
{
    toy *t = ctx;
    int kept[6] = {0};
    for (int j = 0; j < k; j++)
        kept[keep[j]] = 1;
    double e = 0;
    for (int i = 0; i < 6; i++)
        if (!kept[i])
            e += t->damage[i];
    if (!kept[0] && !kept[1]) /* dropping both 0 and 1 is much worse than their sum */
        e += 10;
    *err = e;
    t->calls++;
    return 0;
}

static void test_prune(void)
{
    const double f[6] = {0.1, 0.4, 0.1, 0.3, 0.05, 0.4};
    int keep[6];
    CHECK(sm_prune_frequency(f, 6, 3, keep) == 0 && keep[0] == 1 && keep[1] == 3 && keep[2] == 5,
          "prune-frequency keeps 1, 3, 5 (ties 1/5 and 0/2 to the lower index)");
    CHECK(sm_prune_frequency(f, 6, 4, keep) == 0 && keep[0] == 0 && keep[3] == 5,
          "prune-frequency k=4 keeps 0 (tied with 2, lower index)");

    /* Damage 1, 1, 2, 5, 3, 4; keep 4 of 6 → drop 2 with least error: dropping {0, 1} costs
     * 1 + 1 + 10 = 12, so the best is dropping {1, 2} or {0, 2} at 3; the lexicographically
     * first kept set among them is {0, 3, 4, 5}. */
    toy t = {{1, 1, 2, 5, 3, 4}, 0};
    sm_prune_result res;
    CHECK(sm_prune_output(6, 4, toy_error, &t, 0, NULL, keep, &res) == 0 && res.exhaustive &&
              res.evaluations == 15 && t.calls == 15 && res.error == 3,
          "exhaustive: C(6,4) = 15 subsets, best error %.0f", res.error);
    CHECK(keep[0] == 0 && keep[1] == 3 && keep[2] == 4 && keep[3] == 5, "keeps {0,3,4,5}");

    /* Greedy (limit 1 forces it): drop 0 (err 1; tied with dropping 1 → first), then dropping
     * 1 would cost 12 → drop 2 (err 3): keeps {1, 3, 4, 5}, 6 + 5 = 11 evaluations. */
    t.calls = 0;
    CHECK(sm_prune_output(6, 4, toy_error, &t, 1, NULL, keep, &res) == 0 && !res.exhaustive &&
              res.evaluations == 11 && res.error == 3 && keep[0] == 1 && keep[1] == 3,
          "greedy backward elimination: %lld evaluations, error %.0f",
          (long long)res.evaluations, res.error);
    CHECK(sm_binomial_capped(60, 30, 1000000) == -1 && sm_binomial_capped(8, 4, 100) == 70 &&
              sm_binomial_capped(128, 2, 1 << 30) == 8128,
          "binomials");
    volatile int stop = 1;
    sm_monitor mon = {NULL, NULL, &stop};
    CHECK(sm_prune_output(6, 4, toy_error, &t, 0, &mon, keep, &res) == -1, "cancellable");
}

int main(void)
{
    test_collapse();
    test_hand();
    test_prune();
    return tu_done();
}

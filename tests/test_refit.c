/* test_refit: output-preserving refit of merged down projections (engine/refit.h, DESIGN §2.10).
 *   - a cluster of identical experts refits to itself (relative difference ≤ 1e-4), at widths of
 *     one and of three Cholesky panels;
 *   - each cluster's own fit residual never grows (its objective at D⁰ bounds it);
 *   - the MoE-block output error on the fit rows never grows, on a random layer (clusters of
 *     distinct experts, full and reduced rank) and on every demo layer (remap, so the routing is
 *     the source's); the held-out errors are printed beside;
 *   - with fewer routed rows than neurons the row-space solve gives the I × I solve's D (1e-4
 *     relative) and fit residual (1e-5 of ‖y‖), and identical members still refit to themselves;
 *   - a factored down projection (submoe-whitened below full rank) is refused with a message;
 *   - refit in a plan (defaults, layer, cluster, auto's recorded choice) reaches the engine job
 *     through the resolver, and its inverse writes it back. */
#include "engine/engine.h"
#include "forward/moelayer.h"
#include "pipeline/build.h"
#include "pipeline/resolve.h"
#include "util/diag.h"
#include "util/mem.h"
#include "util/rng.h"
#include "fixture.h"
#include "testutil.h"

#define H 32
static int64_t I = 48; /* intermediate width: 300 runs the refit's Cholesky over several panels */
#define N 6
#define M 900

typedef struct {
    float *w; /* N × 3 × I × H */
    float *router;
    sm_expert e[N];
    sm_moe_block b;
} rand_layer;

/* A random layer; experts twin[i] >= 0 copy expert twin[i]'s weights. */
static void rand_layer_init(rand_layer *l, uint64_t seed, const int *twin)
{
    sm_rng r;
    sm_rng_seed(&r, seed);
    l->w = sm_alloc_f32((size_t)N * 3 * I * H);
    l->router = sm_alloc_f32((size_t)N * H);
    sm_rng_fill_normal(&r, l->w, (size_t)N * 3 * I * H, 0.2f);
    sm_rng_fill_normal(&r, l->router, (size_t)N * H, 0.3f);
    for (int i = 0; i < N; i++) {
        if (twin && twin[i] >= 0)
            memcpy(l->w + (size_t)i * 3 * I * H, l->w + (size_t)twin[i] * 3 * I * H, sizeof(float) * 3 * I * H);
        float *g = l->w + (size_t)i * 3 * I * H;
        l->e[i] = sm_expert_dense(H, I, g, g + I * H, g + 2 * I * H);
    }
    memset(&l->b, 0, sizeof l->b);
    l->b.hidden = H;
    l->b.n_router = l->b.n_experts = N;
    l->b.router = l->router;
    l->b.rule = (sm_route_rule){2, true, 1.0f};
    l->b.experts = l->e;
}

static sm_layer_spec spec_of(bool refit, sm_rank rank)
{
    sm_layer_spec s;
    memset(&s, 0, sizeof s);
    s.method = SM_MERGE_SUBMOE;
    for (int j = 0; j < 3; j++)
        s.matrix[j].rank = rank;
    s.router = SM_ROUTER_REMAP;
    s.refit = refit;
    return s;
}

static double rel_diff(const float *a, const float *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t q = 0; q < n; q++)
        num += ((double)a[q] - b[q]) * ((double)a[q] - b[q]), den += (double)b[q] * b[q];
    return sqrt(num / (den > 0 ? den : 1));
}

static void test_identical(const float *x)
{
    int twin[N] = {-1, 0, -1, 2, 2, -1}, assign[N] = {0, 0, 1, 1, 1, 2};
    rand_layer l;
    rand_layer_init(&l, 3, twin);
    double freq[N] = {0.3, 0.1, 0.2, 0.15, 0.05, 0.2};
    sm_layer_analysis a = {.n = N, .hidden = H, .inter = I, .freq = freq};
    sm_layer_spec s = spec_of(true, (sm_rank){SM_RANK_FULL, 0, 0});
    sm_merged_layer out;
    int rc = sm_engine_merge(&l.b, &a, assign, 3, &s, x, M, NULL, &out);
    CHECK(rc == 0, "merge with refit of identical members %s", rc ? sm_errmsg() : "");
    if (!rc) {
        double d0 = rel_diff(out.experts[0].down.w, l.e[0].down.w, (int64_t)H * I);
        double d1 = rel_diff(out.experts[1].down.w, l.e[2].down.w, (int64_t)H * I);
        CHECK(out.refit_clusters == 2 && d0 <= 1e-4 && d1 <= 1e-4,
              "I = %lld: identical members refit to themselves (%d clusters refitted; relative change %.2g and %.2g, "
              "bound 1e-4)", (long long)I, out.refit_clusters, d0, d1);
        double err;
        CHECK(sm_engine_error(&l.b, &out, x, M, NULL, &err) == 0 && err <= 1e-5,
              "and the refitted layer reproduces the block (error %.2g)", err);
        sm_merged_layer_free(&out);
    }
    free(l.w), free(l.router);
}

/* Distinct experts in clusters of two: the refit lowers every cluster's residual and the block
 * error on the fit rows; the held-out error is printed. */
static void test_monotone(const float *x, const float *xh, sm_rank rank, const char *what)
{
    int assign[N] = {0, 1, 2, 0, 1, 2};
    rand_layer l;
    rand_layer_init(&l, 9, NULL);
    double freq[N] = {0.3, 0.1, 0.2, 0.15, 0.05, 0.2};
    sm_layer_analysis a = {.n = N, .hidden = H, .inter = I, .freq = freq};
    sm_layer_spec s0 = spec_of(false, rank), s1 = spec_of(true, rank);
    sm_merged_layer m0, m1;
    int rc = sm_engine_merge(&l.b, &a, assign, 3, &s0, x, M, NULL, &m0);
    rc |= sm_engine_merge(&l.b, &a, assign, 3, &s1, x, M, NULL, &m1);
    CHECK(rc == 0, "%s: merges %s", what, rc ? sm_errmsg() : "");
    if (rc)
        return;
    /* each cluster's own residual, from the refit itself */
    sm_refit_routes routes;
    int ok = sm_refit_route(&l.b, x, M, NULL, &routes) == 0, down_ok = 1;
    for (int c = 0; ok && c < 3; c++) {
        sm_merged d = m0.mats[c][2];
        float *w = sm_alloc_f32((size_t)H * I);
        ok &= sm_merged_to_dense(&d, w) == 0; /* below break-even a plain merge is factored (issue 19) */
        d.w = w, d.rank = 0, d.a = d.b = NULL;
        sm_refit_info info;
        ok &= sm_refit_down(&l.b, assign, c, &m0.experts[c], &d, x, &routes, 0, NULL, &info) == 0;
        ok &= info.rows > 0 && info.resid_after <= info.resid_before;
        down_ok &= rel_diff(w, m1.experts[c].down.w, (int64_t)H * I) <= 1e-6;
        printf("# %s cluster %d: %lld rows, fit residual %.4f -> %.4f\n", what, c, (long long)info.rows,
               info.resid_before, info.resid_after);
        free(w);
    }
    sm_refit_routes_free(&routes);
    CHECK(ok, "%s: every cluster's fit residual falls", what);
    CHECK(down_ok, "%s: the engine's refit is sm_refit_down's", what);
    double f0, f1, h0, h1;
    rc = sm_engine_error(&l.b, &m0, x, M, NULL, &f0) | sm_engine_error(&l.b, &m1, x, M, NULL, &f1);
    rc |= sm_engine_error(&l.b, &m0, xh, 300, NULL, &h0) | sm_engine_error(&l.b, &m1, xh, 300, NULL, &h1);
    CHECK(rc == 0 && f1 <= f0 && f1 < 0.9 * f0,
          "%s: the block error on the fit rows falls (%.4f -> %.4f); held out %.4f -> %.4f", what, f0, f1, h0, h1);
    sm_merged_layer_free(&m0), sm_merged_layer_free(&m1);
    free(l.w), free(l.router);
}

/* The row-space solve (fewer routed rows than neurons: I = 1200 against ~540 rows a cluster, the
 * products on oneDNN's sizes) against the I × I double one, cluster by cluster: the same D to 1e-4
 * relative, the same fit residual to 1e-5, and auto takes it. A cluster of identical
 * members refits to itself through it too. */
static void test_dual(const float *x)
{
    int twin[N] = {-1, -1, -1, 0, -1, -1}, assign[N] = {0, 1, 2, 0, 1, 2};
    rand_layer l;
    rand_layer_init(&l, 11, twin);
    double freq[N] = {0.3, 0.1, 0.2, 0.15, 0.05, 0.2};
    sm_layer_analysis a = {.n = N, .hidden = H, .inter = I, .freq = freq};
    sm_layer_spec s0 = spec_of(false, (sm_rank){SM_RANK_FULL, 0, 0});
    sm_merged_layer m0;
    int rc = sm_engine_merge(&l.b, &a, assign, 3, &s0, x, M, NULL, &m0);
    sm_refit_routes routes;
    rc |= sm_refit_route(&l.b, x, M, NULL, &routes);
    CHECK(rc == 0, "I = %lld: merge and routes %s", (long long)I, rc ? sm_errmsg() : "");
    if (rc)
        return;
    for (int c = 0; c < 3; c++) {
        float *dp = sm_alloc_f32((size_t)H * I), *dd = sm_alloc_f32((size_t)H * I), *d0 = m0.mats[c][2].w;
        memcpy(dp, d0, sizeof(float) * H * I), memcpy(dd, d0, sizeof(float) * H * I);
        sm_merged mp = m0.mats[c][2], md = m0.mats[c][2];
        mp.w = dp, md.w = dd;
        sm_refit_info ip, id;
        int r1 = sm_refit_down_solve(&l.b, assign, c, &m0.experts[c], &mp, x, &routes, 0, SM_REFIT_SOLVE_PRIMAL, NULL,
                                     &ip);
        int r2 = sm_refit_down(&l.b, assign, c, &m0.experts[c], &md, x, &routes, 0, NULL, &id);
        CHECK(r1 == 0 && r2 == 0 && !ip.dual && id.dual && id.rows == ip.rows && id.rows < I,
              "cluster %d: %lld routed rows < I = %lld: auto solves in the row space %s", c, (long long)id.rows,
              (long long)I, r1 || r2 ? sm_errmsg() : "");
        double dd_p = rel_diff(dd, dp, (int64_t)H * I), moved = rel_diff(dp, d0, (int64_t)H * I);
        /* the residuals are relative to ‖y‖: 1e-5 of them, or of 1 where they are ~0 (identical members) */
        double res = fabs(id.resid_after - ip.resid_after), res0 = fabs(id.resid_before - ip.resid_before);
        CHECK(!r1 && !r2 && dd_p <= 1e-4 && res <= 1e-5 * fmax(ip.resid_after, 1) &&
                  res0 <= 1e-5 * fmax(ip.resid_before, 1),
              "cluster %d: row-space D = I x I D to %.2g relative (bound 1e-4; the refit moved D by %.2g); fit "
              "residual %.6g -> %.6g (I x I: %.6g -> %.6g, difference %.2g, bound 1e-5)", c, dd_p, moved,
              id.resid_before, id.resid_after, ip.resid_before, ip.resid_after, res);
        if (c == 0)
            CHECK(!r2 && rel_diff(dd, l.e[0].down.w, (int64_t)H * I) <= 1e-4,
                  "identical members refit to themselves in the row space (relative change %.2g, bound 1e-4)",
                  rel_diff(dd, l.e[0].down.w, (int64_t)H * I));
        free(dp), free(dd);
    }
    sm_refit_routes_free(&routes);
    sm_merged_layer_free(&m0);
    free(l.w), free(l.router);
}

static void test_factored_refused(const float *x)
{
    int assign[N] = {0, 1, 2, 0, 1, 2};
    rand_layer l;
    rand_layer_init(&l, 4, NULL);
    sm_layer_analysis a;
    sm_analysis_opts ao = {.grams = true};
    int rc = sm_engine_analyse(&l.b, x, M, &ao, NULL, &a);
    sm_layer_spec s = spec_of(true, (sm_rank){SM_RANK_FRACTION, 0, 0.5});
    s.method = SM_MERGE_SUBMOE_WHITENED;
    sm_merged_layer out;
    rc = rc ? rc : sm_engine_merge(&l.b, &a, assign, 3, &s, x, M, NULL, &out);
    CHECK(rc == -1 && strstr(sm_errmsg(), "refit: down needs a dense down projection"),
          "a factored down projection is refused: %s", sm_errmsg());
    /* full rank on the down projection: dense, refitted */
    s.matrix[2].rank = (sm_rank){SM_RANK_FULL, 0, 0};
    rc = sm_engine_merge(&l.b, &a, assign, 3, &s, x, M, NULL, &out);
    CHECK(rc == 0 && out.refit_clusters == 3, "submoe-whitened with a full-rank down projection refits %s",
          rc ? sm_errmsg() : "");
    if (!rc)
        sm_merged_layer_free(&out);
    sm_layer_analysis_free(&a);
    free(l.w), free(l.router);
}

/* Every MoE layer of the demo, 8 -> 4 and 8 -> 6, remap router: the block error on the fit rows
 * never grows with the refit; the held-out error is printed. */
static void test_demo(void)
{
    sm_model *m = fx_demo_open();
    if (!m) {
        CHECK(0, "demo opens: %s", sm_errmsg());
        return;
    }
    char *tokens = fx_srcpath("data/calib.u32");
    sm_calib_spec s;
    fx_calib_spec(&s, tokens, 8, 128);
    s.keep = 800, s.heldout = 200, s.sample = 128;
    sm_calib *c = sm_calib_capture(m, &s, NULL, NULL, NULL);
    CHECK(c != NULL, "capture %s", c ? "" : sm_errmsg());
    const sm_config *cfg = sm_model_config(m);
    for (int L = 0; c && L < cfg->n_layers; L++) {
        if (!cfg->is_moe[L])
            continue;
        for (int k = 4; k <= 6; k += 2) {
            sm_layer_job j;
            memset(&j, 0, sizeof j);
            j.layer = L, j.k = k, j.algo = SM_CLUSTER_KMEANS, j.sim = SM_SIM_OUTPUT, j.seed = 1;
            j.spec = spec_of(false, (sm_rank){SM_RANK_FULL, 0, 0});
            sm_layer_build b0, b1;
            int rc = sm_layer_build_run(m, c, &j, NULL, &b0);
            j.spec.refit = true;
            rc |= sm_layer_build_run(m, c, &j, NULL, &b1);
            const float *fit, *held;
            int64_t mf, mh;
            double f0 = -1, f1 = -1;
            rc |= sm_calib_inputs(c, L, &fit, &mf, &held, &mh);
            rc |= sm_engine_error(&b0.src.block, &b0.merged, fit, mf, NULL, &f0);
            rc |= sm_engine_error(&b1.src.block, &b1.merged, fit, mf, NULL, &f1);
            CHECK(rc == 0 && f1 <= f0 * (1 + 1e-9) && b1.merged.refit_clusters > 0,
                  "demo layer %d, 8 -> %d: fit-row block error %.4f -> %.4f with refit (%d clusters); held out "
                  "%.4f -> %.4f", L, k, f0, f1, b1.merged.refit_clusters, b0.output_error, b1.output_error);
            sm_layer_build_free(&b0), sm_layer_build_free(&b1);
        }
    }
    sm_calib_free(c);
    sm_model_close(m);
    free(tokens);
}

static void test_plan_resolve(void)
{
    const char *text = "submoe_plan: 1\nmodel: {path: x}\ndefaults: {method: submoe, refit: down}\nlayers:\n"
                       "  1:\n    groups: [[0, 1], [2, 3], [4, 5], [6, 7]]\n    clusters: {2: {refit: none}}\n"
                       "  2: {refit: none}\n"
                       "  3: {method: auto, chosen: \"submoe+align+refit/dominant (held-out loss: submoe 0.3)\"}\n";
    sm_plan p;
    int rc = sm_plan_parse(text, strlen(text), "refit.yaml", &p);
    CHECK(rc == 0, "a plan with refit parses %s", rc ? sm_errmsg() : "");
    if (rc)
        return;
    sm_resolved_layer r[4];
    for (int L = 0; L < 4; L++)
        sm_resolve_layer(&p, sm_plan_find_layer(&p, L), L, 8, 4, NULL, &r[L]);
    const sm_layer_spec *s1 = &r[1].job.spec;
    CHECK(s1->refit && s1->cluster_refit && s1->n_cluster == 4 && s1->cluster_refit[0] && s1->cluster_refit[3] &&
              !s1->cluster_refit[2],
          "layer 1: refit from the defaults, cluster 2's own refit: none");
    CHECK(!r[2].job.spec.refit && r[0].job.spec.refit && !r[0].job.spec.cluster_refit,
          "layer 2: refit: none; layer 0 (no entry): the defaults' down");
    CHECK(!r[3].is_auto && r[3].job.spec.refit && r[3].job.spec.align && !r[3].job.spec.cluster_refit,
          "auto's recorded choice submoe+align+refit is built with refit");
    CHECK(sm_auto_choice_refit("submoe+refit (held-out loss: submoe 0.3)") &&
              !sm_auto_choice_refit("submoe (held-out loss: submoe 0.3, submoe+refit 0.4)"),
          "sm_auto_choice_refit reads the choice, not the scores");
    sm_plan q;
    sm_plan_init(&q);
    q.model_path = xstrdup("x");
    q.n_layers = 2;
    q.layers = xcalloc(2, sizeof *q.layers);
    sm_resolve_layer_entry(&r[1], false, NULL, false, &q.layers[0]);
    sm_resolve_layer_entry(&r[2], false, NULL, false, &q.layers[1]);
    char *out = NULL;
    size_t len = 0;
    sm_plan_format(&q, &out, &len);
    CHECK(out && strstr(out, "  1:\n    experts: 4\n    method: submoe\n    align: false\n    refit: down\n") &&
              strstr(out, "      2: {refit: none}\n") && strstr(out, "  2:\n") &&
              strstr(strstr(out, "  2:\n"), "refit: none\n"),
          "the inverse writes the layers' and the cluster's refit back:\n%s", out ? out : "");
    free(out);
    sm_plan_free(&q);
    for (int L = 0; L < 4; L++)
        sm_resolved_layer_free(&r[L]);
    sm_plan_free(&p);
}

int main(void)
{
    sm_rng r;
    sm_rng_seed(&r, 1);
    float *x = sm_alloc_f32((size_t)M * H), *xh = sm_alloc_f32((size_t)300 * H);
    sm_rng_fill_normal(&r, x, (size_t)M * H, 1.0f);
    sm_rng_fill_normal(&r, xh, (size_t)300 * H, 1.0f);
    test_identical(x);
    I = 300;
    test_identical(x);
    I = 48;
    test_monotone(x, xh, (sm_rank){SM_RANK_FULL, 0, 0}, "full rank");
    test_monotone(x, xh, (sm_rank){SM_RANK_FRACTION, 0, 0.5}, "rank 0.5");
    test_factored_refused(x);
    I = 1200;
    test_dual(x);
    I = 48;
    test_plan_resolve();
    free(x), free(xh);
    if (getenv("DEMO"))
        test_demo();
    else
        CHECK(0, "DEMO must be set");
    return tu_done();
}

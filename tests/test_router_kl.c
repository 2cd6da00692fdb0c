/* collapse-kl (DESIGN §2.9, engine/router_kl.h):
 *   - the gradient of the objective agrees with central finite differences;
 *   - when every cluster is one expert the fit is the original router: KL ≈ 0 (below 1e-6
 *     nats per row) and the rows equal the router's;
 *   - the validated ridge is the one of lowest validation KL among those tried and collapse-lstsq's
 *     own rows (which are then the result, exactly);
 *   - on every MoE layer of both demo models, with the planner's clusters at 25% and 50% fewer
 *     experts, with this test's capture (16 × 256 tokens, 3072 rows kept, 1024 held out) and with
 *     the capture `submoe plan` makes by default (sm_calib_spec_default: 32 × 256, 4096 kept, a
 *     quarter held out): the held-out KL of collapse-kl is strictly below collapse-lstsq's, or,
 *     where the validation found collapse-lstsq's rows best, the rows are collapse-lstsq's and the
 *     KL the same (demo layer 1 at 25% with this test's capture: there no ridge gives a lower
 *     held-out KL, DESIGN-NOTES §2.9). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/router.h"
#include "engine/router_kl.h"
#include "forward/moelayer.h"
#include "pipeline/calib.h"
#include "pipeline/planner.h"
#include "fixture.h"
#include "testutil.h"
#include "util/diag.h"
#include "util/rng.h"

enum { N = 8, H = 12, K = 3, M = 600 };
static const int cluster_of[N] = {0, 1, 0, 2, 1, 0, 2, 1};

static void synth(float *router, float *x, int m, uint64_t seed)
{
    sm_rng r;
    sm_rng_seed(&r, seed);
    for (int e = 0; e < N * H; e++)
        router[e] = (float)(0.7 * sm_rng_normal(&r));
    for (int e = 0; e < m * H; e++)
        x[e] = (float)(0.3 + sm_rng_normal(&r));
}

/* (c) ∇f against central differences along random directions and single coordinates. */
static void test_gradient(void)
{
    static float router[N * H], x[M * H];
    synth(router, x, M, 7);
    const double freq[N] = {0.3, 0.1, 0.2, 0.25, 0.05, 0.4, 0.1, 0.2};
    sm_router_kl *p = sm_router_kl_new(router, N, H, cluster_of, K, freq, NULL, x, M, 0.05);
    CHECK(p != NULL, "problem: %s", p ? "" : sm_errmsg());
    if (!p)
        return;
    double w[K * H], g[K * H], wp[K * H], wm[K * H], d[K * H], f, fp, fm;
    sm_rng r;
    sm_rng_seed(&r, 11);
    for (int e = 0; e < K * H; e++)
        w[e] = 0.5 * sm_rng_normal(&r);
    CHECK(sm_router_kl_eval(p, w, g, NULL, &f) == 0 && f > 0, "f = %g", f);
    double worst = 0;
    for (int trial = 0; trial < 8; trial++) {
        /* trials 0..3: random directions; 4..7: coordinates */
        for (int e = 0; e < K * H; e++)
            d[e] = trial < 4 ? sm_rng_normal(&r) : e == (trial * 7) % (K * H);
        const double eps = 1e-2;
        for (int e = 0; e < K * H; e++)
            wp[e] = w[e] + eps * d[e], wm[e] = w[e] - eps * d[e];
        sm_router_kl_eval(p, wp, NULL, NULL, &fp);
        sm_router_kl_eval(p, wm, NULL, NULL, &fm);
        double fd = (fp - fm) / (2 * eps), an = 0, dn = 0;
        for (int e = 0; e < K * H; e++)
            an += g[e] * d[e], dn += d[e] * d[e];
        double gg = 0;
        for (int e = 0; e < K * H; e++)
            gg += g[e] * g[e];
        double rel = fabs(fd - an) / (sqrt(gg) * sqrt(dn)); /* relative to |∇f|·|d| */
        worst = fmax(worst, rel);
    }
    CHECK(worst < 1e-4, "gradient vs central differences: worst relative error %.2e", worst);
    /* the objective is KL + ridge: at the prior the ridge is 0 and f ≥ 0; f(W) − f(W̄) changes
     * with W, so a solve from far away must come down */
    float start[K * H], rows[K * H];
    for (int e = 0; e < K * H; e++)
        start[e] = (float)w[e];
    sm_router_kl_info info;
    CHECK(sm_router_kl_solve(p, start, NULL, rows, &info) == 0 && info.f_end < info.f_start &&
              info.iterations > 1,
          "solve: f %.6g -> %.6g in %d iterations", info.f_start, info.f_end, info.iterations);
    double gfin[K * H], ffin, gn = 0;
    for (int e = 0; e < K * H; e++)
        w[e] = rows[e];
    sm_router_kl_eval(p, w, gfin, NULL, &ffin);
    for (int e = 0; e < K * H; e++)
        gn += gfin[e] * gfin[e];
    double g0 = 0;
    for (int e = 0; e < K * H; e++)
        g0 += g[e] * g[e];
    CHECK(sqrt(gn) < 1e-4 * sqrt(g0), "stationary: |grad| %.2e (start %.2e)", sqrt(gn), sqrt(g0));
    sm_router_kl_free(p);
}

/* (b) singleton clusters: the summed probabilities are the router's own, reproduced exactly. */
static void test_singletons(void)
{
    static float router[N * H], x[M * H];
    synth(router, x, M, 3);
    int ident[N];
    for (int i = 0; i < N; i++)
        ident[i] = i;
    float rows[N * H];
    CHECK(sm_router_collapse_kl(router, N, H, ident, N, NULL, x, M, 0, NULL, rows) == 0, "fit: %s", sm_errmsg());
    double kl, agree, maxdiff = 0;
    CHECK(sm_router_collapse_measure(router, N, H, ident, N, rows, x, M, 2, &kl, &agree) == 0, "measure");
    for (int e = 0; e < N * H; e++)
        maxdiff = fmax(maxdiff, fabs(rows[e] - router[e]));
    CHECK(kl < 1e-6 && agree == 1.0 && maxdiff < 1e-3,
          "one expert per cluster: KL %.2e (< 1e-6), top-2 agreement %.4f, max |row - router| %.2e", kl, agree,
          maxdiff);
    /* measure against a hand case: two experts of equal logits in one of two clusters */
    const float r2[3 * 1] = {1, 1, 0}, rows2[2] = {1, 0}, x2[1] = {2};
    const int part[3] = {0, 0, 1};
    /* p = (2e², 1)/(2e²+1), q = (e², 1)/(e²+1) */
    double e2 = exp(2.0), pa = 2 * e2 / (2 * e2 + 1), qa = e2 / (e2 + 1);
    double want = pa * log(pa / qa) + (1 - pa) * log((1 - pa) / (1 - qa));
    CHECK(sm_router_collapse_measure(r2, 3, 1, part, 2, rows2, x2, 1, 1, &kl, &agree) == 0 &&
              fabs(kl - want) < 1e-6 && agree == 1.0,
          "hand case: KL %.8f (want %.8f), agreement %.2f", kl, want, agree);
}

/* The validation's choice: every ridge tried, the lowest validation KL chosen (collapse-lstsq's
 * rows when none is below theirs), and a given ridge skips it. */
static void check_choice(const sm_router_kl_choice *ch, const char *what)
{
    double best = ch->val_kl_lstsq;
    for (int i = 0; i < ch->tried; i++)
        best = fmin(best, ch->val_kl[i]);
    int chosen = -1;
    for (int i = 0; i < ch->tried; i++)
        if (ch->ridges[i] == ch->ridge)
            chosen = i;
    CHECK(ch->validated && ch->tried == SM_ROUTER_KL_RIDGES && ch->m_val >= SM_ROUTER_KL_VAL_MIN &&
              (ch->lstsq ? isinf(ch->ridge) && ch->val_kl_lstsq == best
                         : chosen >= 0 && ch->val_kl[chosen] == best && best < ch->val_kl_lstsq),
          "%s: ridge %g chosen on %lld validation rows (lstsq %.4e, best %.4e)", what, ch->ridge,
          (long long)ch->m_val, ch->val_kl_lstsq, best);
}

static void test_validation(void)
{
    static float router[N * H], x[M * H];
    synth(router, x, M, 5);
    float rows[K * H], fixed[K * H];
    sm_router_kl_choice ch, chf;
    CHECK(sm_router_collapse_kl_choose(router, N, H, cluster_of, K, NULL, x, M, 0, NULL, rows, &ch) == 0,
          "validated fit: %s", sm_errmsg());
    check_choice(&ch, "synthetic");
    CHECK(sm_router_collapse_kl_choose(router, N, H, cluster_of, K, NULL, x, M, 0.05, NULL, fixed, &chf) == 0 &&
              !chf.validated && chf.ridge == 0.05 && chf.evaluations > 1,
          "a given ridge is used as it is: validated %d, ridge %g", chf.validated, chf.ridge);
    /* too few rows to hold out SM_ROUTER_KL_VAL_MIN: the default ridge */
    CHECK(sm_router_collapse_kl_choose(router, N, H, cluster_of, K, NULL, x, 5 * SM_ROUTER_KL_VAL_MIN - 1, 0, NULL,
                                       fixed, &chf) == 0 &&
              !chf.validated && chf.ridge == SM_ROUTER_KL_RIDGE_DEFAULT,
          "%d rows: not validated (%d), ridge %g", 5 * SM_ROUTER_KL_VAL_MIN - 1, chf.validated, chf.ridge);
}

/* (a) every MoE layer of a demo model: held-out KL of collapse-kl < collapse-lstsq's, or the
 * same rows where the validation chose them. samples, keep, heldout: the capture (keep and
 * heldout < 0: sm_calib_spec_default's). */
static void test_demo(const char *dir, const char *tokens, int samples, int64_t keep, int64_t heldout)
{
    sm_model *m = sm_model_open(dir);
    CHECK(m != NULL, "%s opens: %s", dir, m ? "" : sm_errmsg());
    if (!m)
        return;
    const sm_config *cfg = sm_model_config(m);
    sm_calib_spec s;
    fx_calib_spec(&s, tokens, samples, 256);
    if (keep >= 0)
        s.keep = keep, s.heldout = heldout;
    sm_calib *c = sm_calib_capture(m, &s, NULL, NULL, NULL);
    CHECK(c != NULL, "%s capture: %s", dir, c ? "" : sm_errmsg());
    int ties = 0, cells = 0;
    for (int r = 0; c && r < 2; r++) {
        sm_planned_layer pl[64];
        sm_planner_opts po = {.ratio = r ? 0.5 : 0.25, .window = 2, .algo = SM_CLUSTER_KMEANS, .sim = SM_SIM_OUTPUT,
                              .seed = 1};
        if (cfg->n_layers > 64 || sm_planner_run(m, c, &po, NULL, pl)) {
            CHECK(0, "planner: %s", sm_errmsg());
            break;
        }
        for (int l = 0; l < cfg->n_layers; l++) {
            if (pl[l].layer < 0)
                continue;
            sm_moe_layer ml;
            const float *fit, *held;
            int64_t mf, mh;
            if (sm_moe_layer_load(m, l, &ml) || sm_calib_inputs(c, l, &fit, &mf, &held, &mh)) {
                CHECK(0, "layer %d: %s", l, sm_errmsg());
                continue;
            }
            const int n = pl[l].n, k = pl[l].k;
            const int64_t h = ml.block.hidden;
            float *lsq = malloc(sizeof(float) * (size_t)(k * h)), *kl = malloc(sizeof(float) * (size_t)(k * h));
            double kl_l, kl_k, ag_l, ag_k;
            sm_router_kl_choice ch = {0};
            int rc = sm_router_collapse_lstsq(ml.block.router, n, h, pl[l].assign, k, pl[l].freq, fit, mf, 0, lsq);
            rc = rc ? rc
                    : sm_router_collapse_kl_choose(ml.block.router, n, h, pl[l].assign, k, pl[l].freq, fit, mf, 0,
                                                   NULL, kl, &ch);
            rc = rc ? rc
                    : sm_router_collapse_measure(ml.block.router, n, h, pl[l].assign, k, lsq, held, mh, cfg->top_k,
                                                 &kl_l, &ag_l);
            rc = rc ? rc
                    : sm_router_collapse_measure(ml.block.router, n, h, pl[l].assign, k, kl, held, mh, cfg->top_k,
                                                 &kl_k, &ag_k);
            char what[160];
            snprintf(what, sizeof what, "%s (%d samples) layer %d, %d -> %d experts", dir, samples, l, n, k);
            if (rc == 0)
                check_choice(&ch, what);
            /* strictly lower; where the validation kept collapse-lstsq's rows, exactly those */
            CHECK(rc == 0 && (ch.lstsq ? memcmp(kl, lsq, sizeof(float) * (size_t)(k * h)) == 0 && kl_k == kl_l
                                       : kl_k < kl_l),
                  "%s: held-out KL collapse-kl %.7e (ridge %g) vs collapse-lstsq %.7e (top-%d agreement %.3f vs "
                  "%.3f)",
                  what, kl_k, ch.ridge, kl_l, cfg->top_k, ag_k, ag_l);
            ties += ch.lstsq, cells++;
            free(lsq), free(kl);
            sm_moe_layer_free(&ml);
        }
        for (int l = 0; l < cfg->n_layers; l++)
            sm_planned_layer_free(&pl[l]);
    }
    /* the exception stays one: a capture where collapse-kl mostly ties has stopped improving */
    CHECK(ties <= 1 && cells > 0, "%s (%d samples): collapse-kl equals collapse-lstsq on %d of %d layers", dir, samples,
          ties, cells);
    sm_calib_free(c);
    sm_model_close(m);
}

int main(void)
{
    test_gradient();
    test_singletons();
    if (!getenv("SRCDIR")) {
        CHECK(0, "SRCDIR must be set");
        return tu_done();
    }
    char *tokens = fx_srcpath("data/calib.u32"), *demo = fx_srcpath("data/demo"),
         *scratch = fx_srcpath("data/demo-scratch");
    test_validation();
    test_demo(demo, tokens, 16, 3072, 1024);
    test_demo(scratch, tokens, 16, 3072, 1024);
    test_demo(demo, tokens, 32, -1, -1);
    test_demo(scratch, tokens, 32, -1, -1);
    free(tokens), free(demo), free(scratch);
    return tu_done();
}

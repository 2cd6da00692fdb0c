/* Routing rules and the MoE block (DESIGN §2.6) against hand-computed small cases.
 *
 * Logits z = [0.5, −1, 2, 1] throughout (from router rows [.5 0], [−1 0], [0 1], [1 0] and
 * x = (1, 2)):  Σ e^z = e^.5 + e^−1 + e^2 + e^1 = 1.6487212707 + 0.3678794412 + 7.3890560989
 * + 2.7182818285 = 12.1239386393, so p = [0.1359889158, 0.0303432286, 0.6094600376,
 * 0.2242078180]. Top-2 = experts 2, 3. Renormalised: e^2 / (e^2 + e^1) = 1/(1 + e^−1) =
 * 0.7310585786 and 0.2689414214.
 * Experts (H = 2, I = 1): gate [1 0], up [0 1], down [(i+1); −(i+1)], so
 * E_i(x) = (i+1)·silu(x1)·x2·[1, −1] = (i+1)·2·silu(1)·[1, −1], silu(1) = 0.7310585786. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "moe/moe.h"
#include "moe/route.h"
#include "testutil.h"
#include "util/diag.h"

#define SILU1 0.7310585786300049
static const float x_tok[2] = {1.0f, 2.0f};
static const float router[4 * 2] = {0.5f, 0, -1, 0, 0, 1, 1, 0};
static float gate[4][2], up[4][2], down[4][2];
static sm_expert experts[4];

static void make_experts(void)
{
    for (int i = 0; i < 4; i++) {
        gate[i][0] = 1, gate[i][1] = 0;
        up[i][0] = 0, up[i][1] = 1;
        down[i][0] = (float)(i + 1), down[i][1] = (float)-(i + 1);
        experts[i] = sm_expert_dense(2, 1, gate[i], up[i], down[i]);
    }
}

static void check_weights(const sm_route_rule *r, const float *z, int n, const int *want_idx,
                          const double *want_w, const char *what)
{
    int idx[8];
    float w[8];
    CHECK(sm_route_select(r, z, 1, n, idx, w) == 0, "%s: select", what);
    for (int j = 0; j < r->top_k; j++) {
        CHECK(idx[j] == want_idx[j], "%s: slot %d is expert %d (want %d)", what, j, idx[j],
              want_idx[j]);
        CHECK_NEAR(w[j], want_w[j], 1e-6, what);
    }
}

static void test_rules(void)
{
    const float z[4] = {0.5f, -1.0f, 2.0f, 1.0f};
    const int top2[2] = {2, 3};
    float p[4];
    sm_route_softmax(z, 4, p);
    CHECK_NEAR(p[0], 0.1359889158, 1e-7, "softmax p0");
    CHECK_NEAR(p[2], 0.6094600376, 1e-7, "softmax p2");

    sm_config c = {0};
    c.top_k = 2;
    c.routed_scaling = 1.0;

    c.arch = SM_ARCH_MIXTRAL; /* renormalises whatever norm_topk_prob says */
    sm_route_rule r = sm_route_rule_from_config(&c);
    const double mix[2] = {0.7310585786, 0.2689414214};
    check_weights(&r, z, 4, top2, mix, "mixtral top-2 renormalised");

    c.arch = SM_ARCH_QWEN2_MOE; /* norm_topk_prob false: raw probabilities */
    r = sm_route_rule_from_config(&c);
    const double raw[2] = {0.6094600376, 0.2242078180};
    check_weights(&r, z, 4, top2, raw, "qwen2_moe top-2, no renorm");

    c.arch = SM_ARCH_QWEN3_MOE;
    c.renorm_topk = true;
    r = sm_route_rule_from_config(&c);
    check_weights(&r, z, 4, top2, mix, "qwen3_moe norm_topk_prob");

    /* OLMoE top-3 of z5 = [.1 .3 −.2 .3 1.2]: experts 1 and 3 tie at .3 → 1 first. Renormalised:
     * e^1.2 / (e^1.2 + 2e^.3) = 3.3201169227 / 6.0198345379 = 0.5515295980; e^.3 / … =
     * 0.2242352010 each. */
    const float z5[5] = {0.1f, 0.3f, -0.2f, 0.3f, 1.2f};
    c.arch = SM_ARCH_OLMOE;
    c.top_k = 3;
    r = sm_route_rule_from_config(&c);
    const int top3[3] = {4, 1, 3};
    const double olm[3] = {0.5515295980, 0.2242352010, 0.2242352010};
    check_weights(&r, z5, 5, top3, olm, "olmoe top-3 renorm, tie to the lower index");

    /* DeepSeek: norm_topk_prob with top-1 does not renormalise (its code tests top_k > 1);
     * routed_scaling_factor 2.5 multiplies: 0.6094600376 · 2.5 = 1.5236500940. */
    c.arch = SM_ARCH_DEEPSEEK;
    c.top_k = 1;
    c.routed_scaling = 2.5;
    r = sm_route_rule_from_config(&c);
    const int top1[1] = {2};
    const double ds1[1] = {1.5236500940};
    check_weights(&r, z, 4, top1, ds1, "deepseek top-1 × 2.5, no renorm");
    c.top_k = 2;
    r = sm_route_rule_from_config(&c);
    const double ds2[2] = {0.7310585786 * 2.5, 0.2689414214 * 2.5};
    check_weights(&r, z, 4, top2, ds2, "deepseek top-2 renorm × 2.5");

    /* Exact ties everywhere: [1 1 1 1] top-2 → experts 0, 1 with 0.25 each (no renorm). */
    const float flat[4] = {1, 1, 1, 1};
    sm_route_rule plain = {2, false, 1.0f};
    const int low[2] = {0, 1};
    const double quarter[2] = {0.25, 0.25};
    check_weights(&plain, flat, 4, low, quarter, "all tied → lowest indices");

    /* Frequencies: tokens' top-2 sets {2,3}, {0,1}, {2,0} → counts [2 1 2 1] / 3 tokens. */
    const int idx[6] = {2, 3, 0, 1, 2, 0};
    int64_t counts[4] = {0};
    double f[4];
    sm_route_count(idx, 3, 2, 4, counts);
    sm_route_frequencies(counts, 3, 4, f);
    CHECK(counts[0] == 2 && counts[1] == 1 && counts[2] == 2 && counts[3] == 1 &&
              fabs(f[0] - 2.0 / 3) < 1e-12,
          "routing frequencies");
    /* Folding onto slots: rows 0, 1 run slot 0 and rows 2, 3 slot 1; a token's selections
     * 3, 1, 2, 0 give slot 1 (first selected) with 0.4 + 0.2 and slot 0 with 0.3 + 0.1; without
     * a map every row is its own slot, in selection order. */
    const int sel[4] = {3, 1, 2, 0}, pairs[4] = {0, 0, 1, 1}, one[4] = {0, 0, 0, 0};
    const float sel_w[4] = {0.4f, 0.3f, 0.2f, 0.1f};
    int fs[4];
    float fw[4];
    int d = sm_route_fold(sel, sel_w, 4, pairs, fs, fw);
    CHECK(d == 2 && fs[0] == 1 && fs[1] == 0 && fw[0] == 0.4f + 0.2f && fw[1] == 0.3f + 0.1f,
          "fold onto two slots: %d slots (%d: %.2f, %d: %.2f)", d, fs[0], fw[0], fs[1], fw[1]);
    d = sm_route_fold(sel, sel_w, 4, NULL, fs, fw);
    CHECK(d == 4 && fs[0] == 3 && fs[1] == 1 && fs[2] == 2 && fs[3] == 0 && fw[0] == 0.4f && fw[3] == 0.1f,
          "fold without a map: every row its own slot (%d slots)", d);
    d = sm_route_fold(sel, sel_w, 4, one, fs, fw);
    CHECK(d == 1 && fs[0] == 0 && fw[0] == ((0.4f + 0.3f) + 0.2f) + 0.1f, "fold onto one slot: the weights summed in order (%.9g)",
          fw[0]);
    sm_route_rule bad = {5, false, 1.0f};
    int bi[5];
    float bw[5];
    CHECK(sm_route_select(&bad, z, 1, 4, bi, bw) == -1, "top-5 of 4 rejected: %s", sm_errmsg());
}

static void check_block(const sm_moe_block *b, double y0, double y1, const char *what)
{
    float y[2];
    int rc = sm_moe_forward(b, x_tok, 1, y, NULL);
    CHECK(rc == 0, "%s: forward %s", what, rc ? sm_errmsg() : "");
    CHECK_NEAR(y[0], y0, 2e-6, what);
    CHECK_NEAR(y[1], y1, 2e-6, what);
}

static void test_blocks(void)
{
    make_experts();
    /* Mixtral: y = (3·0.7310585786 + 4·0.2689414214)·2·silu(1)·[1, −1] = 4.7795753383·[1, −1]. */
    sm_moe_block mix = {2, 4, router, {2, true, 1.0f}, 4, experts, NULL, 0, NULL, NULL};
    check_block(&mix, 4.7795753383, -4.7795753383, "mixtral block");

    /* Qwen2-MoE: raw p, plus the shared expert S(x) = silu(x1)·x1·[1, 1] = silu(1)·[1, 1]
     * scaled by sigmoid(g·x), g = [.5 −.5] → g·x = −0.5 → 0.3775406688.
     * routed = (3·0.6094600376 + 4·0.2242078180)·1.4621171573 = 3.9845783232;
     * shared = 0.3775406688·0.7310585786 = 0.2760043447;
     * y = [3.9845783232 + 0.2760043447, −3.9845783232 + 0.2760043447]. */
    float sg[2] = {1, 0}, su[2] = {1, 0}, sd[2] = {1, 1}, gsh[2] = {0.5f, -0.5f};
    sm_expert shared = sm_expert_dense(2, 1, sg, su, sd);
    sm_moe_block qw = {2, 4, router, {2, false, 1.0f}, 4, experts, NULL, 1, &shared, gsh};
    check_block(&qw, 4.2605826679, -3.7085739784, "qwen2_moe block with gated shared expert");

    /* DeepSeek: top-2 renorm × 2 plus two always-on shared experts S1 = silu(1)·[1, 1] and
     * S2 (up [0 1], down [1; 0]) = silu(1)·2·[1, 0]:
     * y = [2·4.7795753383 + 0.7310585786 + 1.4621171573, −2·4.7795753383 + 0.7310585786]. */
    float s2u[2] = {0, 1}, s2d[2] = {1, 0};
    sm_expert two[2] = {shared, sm_expert_dense(2, 1, sg, s2u, s2d)};
    sm_moe_block ds = {2, 4, router, {2, true, 2.0f}, 4, experts, NULL, 2, two, NULL};
    check_block(&ds, 11.7523264124, -8.8280920979, "deepseek block with shared experts");

    /* Remap: rows 2 and 3 run slot 1 (expert 3's weights) once with the summed weight:
     * (0.7310585786 + 0.2689414214)·4·1.4621171573 = 5.8484686290. */
    const int map[4] = {0, 0, 1, 1};
    sm_expert slots[2] = {experts[0], experts[3]};
    sm_moe_block rm = {2, 4, router, {2, true, 1.0f}, 2, slots, map, 0, NULL, NULL};
    check_block(&rm, 5.8484686290, -5.8484686290, "remap: two selected rows, one slot");

    /* A factored expert (W = a·b) computes the same as its dense product. */
    float fa[4][2], fb[4][2]; /* gate [1 0] = [2]·[.5 0]; up [0 1] = [1]·[0 1] */
    sm_expert fact[4];
    for (int i = 0; i < 4; i++) {
        fact[i] = experts[i];
        fa[i][0] = 2.0f, fb[i][0] = 0.5f, fb[i][1] = 0.0f;
        fact[i].gate = (sm_linear){.out = 1, .in = 2, .a = fa[i], .b = fb[i], .rank = 1};
    }
    sm_moe_block fm = mix;
    fm.experts = fact;
    check_block(&fm, 4.7795753383, -4.7795753383, "factored gate = dense gate");

    /* Output error: identical blocks → 0; mix vs remap on one token → |5.848 − 4.780|/4.780. */
    double rel;
    CHECK(sm_moe_output_error(&mix, &fm, x_tok, 1, 0, &rel) == 0 && rel < 1e-7,
          "output error of identical blocks %.2e", rel);
    CHECK(sm_moe_output_error(&mix, &rm, x_tok, 1, 0, &rel) == 0 &&
              fabs(rel - (5.8484686290 - 4.7795753383) / 4.7795753383) < 1e-6,
          "relative output error %.6f", rel);

    /* Trace outputs and a bad map. */
    float z[4], w[2];
    int idx[2];
    sm_moe_trace tr = {z, idx, w};
    float y[2];
    CHECK(sm_moe_forward(&mix, x_tok, 1, y, &tr) == 0 && idx[0] == 2 && idx[1] == 3 &&
              fabsf(z[1] + 1.0f) < 1e-7,
          "trace logits and selection");
    const int badmap[4] = {0, 0, 2, 1};
    rm.expert_map = badmap;
    CHECK(sm_moe_forward(&rm, x_tok, 1, y, NULL) == -1, "bad expert map: %s", sm_errmsg());
}

/* Many tokens: the gathered forward equals per-token evaluation. */
static void test_gather(void)
{
    enum { H = 6, I = 5, E = 5, M = 37 };
    float wg[E][I * H], wu[E][I * H], wd[E][H * I], r[E * H], x[M * H];
    unsigned s = 1;
#define RND() ((float)((s = s * 1103515245u + 12345u) >> 8 & 0xffff) / 32768.0f - 1.0f)
    for (int e = 0; e < E; e++)
        for (int k = 0; k < I * H; k++)
            wg[e][k] = RND(), wu[e][k] = RND(), wd[e][k] = RND();
    for (int k = 0; k < E * H; k++)
        r[k] = RND();
    for (int k = 0; k < M * H; k++)
        x[k] = RND();
    sm_expert ex[E];
    for (int e = 0; e < E; e++)
        ex[e] = sm_expert_dense(H, I, wg[e], wu[e], wd[e]);
    sm_moe_block b = {H, E, r, {2, true, 1.0f}, E, ex, NULL, 0, NULL, NULL};
    float y[M * H], yt[H], ye[H];
    CHECK(sm_moe_forward(&b, x, M, y, NULL) == 0, "block forward on %d tokens", M);
    double worst = 0;
    for (int t = 0; t < M; t++) {
        float z[E], w[2];
        int idx[2];
        sm_route_logits(x + t * H, 1, H, r, E, z);
        sm_route_select(&b.rule, z, 1, E, idx, w);
        memset(yt, 0, sizeof yt);
        for (int j = 0; j < 2; j++) {
            sm_expert_forward(&ex[idx[j]], x + t * H, 1, ye);
            for (int h = 0; h < H; h++)
                yt[h] += w[j] * ye[h];
        }
        for (int h = 0; h < H; h++)
            worst = fmax(worst, fabs(yt[h] - y[t * H + h]));
    }
    CHECK(worst < 1e-5, "gathered block = per-token evaluation (max diff %.2e)", worst);
}

/* Row panels (sm_moe_panel_flop; a monitor check between panels): with a budget of one row's
 * work every panel has 48 rows, so 200 tokens' slots (~130 rows each, top-2 of 3) and the
 * shared expert (200 rows) run in 3 to 5 panels. The block gives what it gives in one product
 * per slot. */
static void test_panels(void)
{
    enum { H = 6, I = 5, E = 3, M = 200 };
    static float wg[E + 1][I * H], wu[E + 1][I * H], wd[E + 1][H * I], r[E * H], x[M * H], y1[M * H], y2[M * H];
    unsigned s = 7;
    for (int e = 0; e <= E; e++)
        for (int k = 0; k < I * H; k++)
            wg[e][k] = RND(), wu[e][k] = RND(), wd[e][k] = RND();
    for (int k = 0; k < E * H; k++)
        r[k] = RND();
    for (int k = 0; k < M * H; k++)
        x[k] = RND();
    sm_expert ex[E + 1];
    for (int e = 0; e <= E; e++)
        ex[e] = sm_expert_dense(H, I, wg[e], wu[e], wd[e]);
    sm_moe_block b = {H, E, r, {2, true, 1.0f}, E, ex, NULL, 1, ex + E, NULL};
    volatile int cancel = 0;
    sm_monitor mon = {NULL, NULL, &cancel};
    double saved = sm_moe_panel_flop;
    CHECK(sm_moe_forward_mon(&b, x, M, y1, NULL, &mon) == 0, "block forward in one product per slot");
    sm_moe_panel_flop = 1;
    CHECK(sm_moe_forward_mon(&b, x, M, y2, NULL, &mon) == 0, "block forward in panels of 48 rows");
    double worst = 0, scale = 0;
    for (int k = 0; k < M * H; k++)
        worst = fmax(worst, fabs(y1[k] - y2[k])), scale = fmax(scale, fabs(y1[k]));
    CHECK(worst <= 1e-6 * scale, "panels give the same block output (max diff %.2e of %.2e)", worst, scale);
    cancel = 1;
    CHECK(sm_moe_forward_mon(&b, x, M, y2, NULL, &mon) == -1, "a cancelled monitor stops the panels");
    sm_err_clear();
    sm_moe_panel_flop = saved;
}

/* sm_route_rank's one-pass ranking gives what k passes of a strict '>' scan give (the lower index
 * first among equal probabilities), on values with many ties, for every k, and with a NaN. */
static void test_rank(void)
{
    enum { N = 48, TRIALS = 2000 };
    unsigned seed = 12345;
    int bad = 0;
    for (int trial = 0; trial < TRIALS; trial++) {
        float p[N];
        const int n = 1 + trial % N, levels = 1 + trial % 7;
        for (int i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            p[i] = (float)((seed >> 16) % (unsigned)levels) / (float)levels;
        }
        if (trial % 97 == 5)
            p[trial % n] = NAN;
        for (int k = 1; k <= n && k <= 12; k++) {
            unsigned char taken[N] = {0};
            int got[N], want[N];
            sm_route_rank(p, n, k, taken, got);
            memset(taken, 0, sizeof taken);
            for (int j = 0; j < k; j++) { /* the reference: k passes of a strict '>' scan */
                int best = -1;
                for (int i = 0; i < n; i++)
                    if (!taken[i] && (best < 0 || p[i] > p[best]))
                        best = i;
                taken[best] = 1, want[j] = best;
            }
            bad += memcmp(got, want, sizeof(int) * (size_t)k) != 0;
        }
    }
    CHECK(bad == 0, "sm_route_rank = k passes of a strict scan on %d tied and NaN rows (%d differ)", TRIALS, bad);
}

int main(void)
{
    test_rank();
    test_rules();
    test_blocks();
    test_gather();
    test_panels();
    return tu_done();
}

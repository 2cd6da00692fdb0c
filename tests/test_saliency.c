/* REAP saliency (DESIGN §2.8, engine/saliency.h) against hand-computed cases, one per routing rule
 * of §2.6: softmax + renormalised (mixtral), not renormalised (qwen2/qwen3 without
 * norm_topk_prob), with shared experts (qwen2's gated one, deepseek's always-on: they do not
 * count), deepseek's routed_scaling_factor. Then the analysis carries the same numbers.
 *
 * The layer: H = 2, three experts of width 1, gate (a_j, b_j), up (1, 1), down (3, 4)ᵀ, so on
 * x = e1 expert j outputs (3, 4)·silu(a_j) and ‖E_j(e1)‖ = 5·|silu(a_j)| (e2: b_j). Router rows
 * (ln p_j, ln q_j): on e1 the softmax is p = (0.5, 0.3, 0.2), on e2 q = (0.1, 0.6, 0.3); top 2
 * picks {0, 1} on e1 and {1, 2} on e2. */
#include <math.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/saliency.h"
#include "testutil.h"
#include "util/diag.h"

enum { N = 3, H = 2 };
static const double P[N] = {0.5, 0.3, 0.2}, Q[N] = {0.1, 0.6, 0.3};
static const float A[N] = {1.0f, -2.0f, 0.5f}, B[N] = {3.0f, 0.25f, -1.0f};

static double silu(double v) { return v / (1.0 + exp(-v)); }
static double norm_e1(int j) { return 5.0 * fabs(silu(A[j])); }
static double norm_e2(int j) { return 5.0 * fabs(silu(B[j])); }

typedef struct {
    float router[N * H], gate[N][H], up[N][H], down[N][H];
    sm_expert ex[N];
    float sgate[H], sup[H], sdown[H], sg[H];
    sm_expert shared;
    sm_moe_block b;
} layer;

static void make_layer(layer *l, bool renorm, float scaling, bool shared)
{
    memset(l, 0, sizeof *l);
    for (int j = 0; j < N; j++) {
        l->router[j * H] = (float)log(P[j]), l->router[j * H + 1] = (float)log(Q[j]);
        l->gate[j][0] = A[j], l->gate[j][1] = B[j];
        l->up[j][0] = l->up[j][1] = 1.0f;
        l->down[j][0] = 3.0f, l->down[j][1] = 4.0f;
        l->ex[j] = sm_expert_dense(H, 1, l->gate[j], l->up[j], l->down[j]);
    }
    l->b = (sm_moe_block){.hidden = H, .n_router = N, .router = l->router, .rule = {2, renorm, scaling},
                          .n_experts = N, .experts = l->ex};
    if (shared) { /* a large always-on expert with a gate: it must change nothing */
        l->sgate[0] = l->sgate[1] = 4.0f, l->sup[0] = l->sup[1] = 2.0f, l->sdown[0] = 50.0f, l->sdown[1] = -70.0f;
        l->sg[0] = 0.5f, l->sg[1] = -0.25f;
        l->shared = sm_expert_dense(H, 1, l->sgate, l->sup, l->sdown);
        l->b.n_shared = 1, l->b.shared = &l->shared, l->b.shared_gate = l->sg;
    }
}

/* The rows: e1 twice, e2 once. */
static const float X[3 * H] = {1, 0, 0, 1, 1, 0};

/* Hand expectation: weights g from the rule on each row, means over the rows selecting j. */
static void expected(bool renorm, double scaling, double *s)
{
    double ga0 = P[0], ga1 = P[1], gb1 = Q[1], gb2 = Q[2];
    if (renorm) {
        ga0 = 0.5 / 0.8, ga1 = 0.3 / 0.8; /* e1: {0, 1} */
        gb1 = 0.6 / 0.9, gb2 = 0.3 / 0.9; /* e2: {1, 2} */
    }
    ga0 *= scaling, ga1 *= scaling, gb1 *= scaling, gb2 *= scaling;
    s[0] = (2 * ga0 * norm_e1(0)) / 2;                      /* rows 0, 2 */
    s[1] = (2 * ga1 * norm_e1(1) + gb1 * norm_e2(1)) / 3;   /* rows 0, 1, 2 */
    s[2] = gb2 * norm_e2(2) / 1;                           /* row 1 */
}

static void check_rule(const char *what, bool renorm, float scaling, bool shared)
{
    layer l;
    make_layer(&l, renorm, scaling, shared);
    double got[N], want[N];
    expected(renorm, scaling, want);
    int rc = sm_saliency(&l.b, X, 3, got);
    CHECK(rc == 0, "%s: computed (%s)", what, rc ? sm_errmsg() : "");
    for (int j = 0; j < N; j++) {
        char name[96];
        snprintf(name, sizeof name, "%s: S_%d", what, j);
        CHECK_NEAR(got[j], want[j], 1e-6, name);
    }
    /* the analysis computes the same saliencies in its routing pass */
    sm_layer_analysis a;
    sm_analysis_opts ao = {.block = 2, .sample = 3};
    rc = sm_engine_analyse(&l.b, X, 3, &ao, NULL, &a);
    CHECK(rc == 0 && a.saliency && !memcmp(a.saliency, got, sizeof got), "%s: the analysis carries them", what);
    if (rc == 0)
        sm_layer_analysis_free(&a);
}

/* prune-reap keeps the most salient experts (not the most routed), ties to the lower index; reap
 * groups make them the centres; both refuse an analysis without saliencies. */
static void check_selection(void)
{
    layer l;
    make_layer(&l, true, 1.0f, false);
    double freq[N] = {0.6, 0.3, 0.1}, sal[N] = {0.1, 0.5, 0.9};
    double sim[N * N] = {1, 0.2, 0.7, 0.2, 1, 0.3, 0.7, 0.3, 1};
    int64_t counts[N] = {6, 3, 1};
    sm_layer_analysis a = {.n = N, .hidden = H, .inter = 1, .tokens = 10, .counts = counts, .freq = freq,
                           .sim_output = sim, .sim_logit = sim, .saliency = sal};
    sm_layer_spec spec = {.method = SM_MERGE_PRUNE_REAP};
    sm_merged_layer m;
    int rc = sm_engine_merge(&l.b, &a, NULL, 2, &spec, NULL, 0, NULL, &m);
    CHECK(rc == 0 && m.n_experts == 2 && m.source[0] == 1 && m.source[1] == 2 && m.cluster_of[0] == -1,
          "prune-reap k=2 keeps experts 1 and 2 (saliency .5, .9), not the most routed 0");
    if (rc == 0)
        sm_merged_layer_free(&m);
    sal[0] = 0.5; /* a tie between 0 and 1: the lower index */
    rc = sm_engine_merge(&l.b, &a, NULL, 2, &spec, NULL, 0, NULL, &m);
    CHECK(rc == 0 && m.source[0] == 0 && m.source[1] == 2, "prune-reap ties go to the lower index (keeps 0, 2)");
    if (rc == 0)
        sm_merged_layer_free(&m);
    sal[0] = 0.1;
    int assign[N];
    rc = sm_engine_cluster(&a, SM_CLUSTER_REAP, SM_SIM_OUTPUT, 2, 1, NULL, assign);
    CHECK(rc == 0 && assign[0] == 0 && assign[2] == 0 && assign[1] == 1,
          "reap groups: centres 2 and 1, expert 0 joins 2 (similarity .7 > .2): %d %d %d", assign[0], assign[1],
          assign[2]);
    rc = sm_engine_cluster(&a, SM_CLUSTER_DOMINANT, SM_SIM_OUTPUT, 2, 1, NULL, assign);
    CHECK(rc == 0 && assign[0] == 0 && assign[1] == 1 && assign[2] == 0,
          "dominant groups for contrast: centres 0 and 1, expert 2 joins 0");
    sm_merge_method mm;
    sm_cluster_algo ca;
    CHECK(sm_merge_method_parse("prune-reap", &mm) == 0 && mm == SM_MERGE_PRUNE_REAP &&
              !strcmp(sm_merge_method_name(mm), "prune-reap") && !sm_merge_method_merges(mm),
          "prune-reap parses, names itself, is not a merge");
    CHECK(sm_cluster_algo_parse("reap", &ca) == 0 && ca == SM_CLUSTER_REAP && !strcmp(sm_cluster_algo_name(ca), "reap"),
          "clustering reap parses and names itself");
    a.saliency = NULL;
    CHECK(sm_engine_merge(&l.b, &a, NULL, 2, &spec, NULL, 0, NULL, &m) != 0 && strstr(sm_errmsg(), "saliencies"),
          "prune-reap without saliencies: %s", sm_errmsg());
    CHECK(sm_engine_cluster(&a, SM_CLUSTER_REAP, SM_SIM_OUTPUT, 2, 1, NULL, assign) != 0 &&
              strstr(sm_errmsg(), "saliencies"),
          "reap groups without saliencies: %s", sm_errmsg());
}

/* Many rows (several of the accumulator's blocks): equal to a row-by-row computation with the
 * formula, and the same bits whether rows arrive in one call or in chunks of 7 (the analysis). */
static void check_many_rows(void)
{
    enum { M = 1000 };
    layer l;
    make_layer(&l, true, 2.5f, true);
    static float x[M * H];
    uint64_t st = 12345;
    for (int i = 0; i < M * H; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(st >> 11) / 9007199254740992.0 * 4.0 - 2.0);
    }
    double want[N] = {0}, cnt[N] = {0}, got[N];
    for (int t = 0; t < M; t++) {
        float z[N], w[2], y[H];
        int idx[2];
        sm_route_logits(x + t * H, 1, H, l.router, N, z);
        sm_route_select(&l.b.rule, z, 1, N, idx, w);
        for (int j = 0; j < 2; j++) {
            sm_expert_forward(&l.ex[idx[j]], x + t * H, 1, y);
            want[idx[j]] += w[j] * sqrt((double)y[0] * y[0] + (double)y[1] * y[1]);
            cnt[idx[j]]++;
        }
    }
    int rc = sm_saliency(&l.b, x, M, got);
    for (int j = 0; j < N; j++) {
        char name[64];
        snprintf(name, sizeof name, "%d rows, row by row: S_%d", M, j);
        CHECK_NEAR(rc == 0 ? got[j] : NAN, cnt[j] ? want[j] / cnt[j] : 0.0, 1e-5, name);
    }
    sm_layer_analysis a;
    sm_analysis_opts ao = {.block = 7, .sample = 16};
    rc = sm_engine_analyse(&l.b, x, M, &ao, NULL, &a);
    CHECK(rc == 0 && !memcmp(a.saliency, got, sizeof got), "%d rows in chunks of 7: the same bits", M);
    if (rc == 0)
        sm_layer_analysis_free(&a);
}

int main(void)
{
    /* hand values spelled out once, so the expectation is not only the formula above */
    layer l;
    make_layer(&l, true, 1.0f, false);
    double s[N];
    CHECK(sm_saliency(&l.b, X, 3, s) == 0 && fabs(s[2] - (1.0 / 3.0) * 5.0 * 1.0 / (1.0 + exp(1.0))) < 1e-6,
          "mixtral S_2 = (0.3/0.9)·5·|silu(-1)| = %.6f", s[2]);
    check_rule("softmax, top-2, renormalised (mixtral)", true, 1.0f, false);
    check_rule("softmax, top-2, not renormalised (qwen2/qwen3 without norm_topk_prob)", false, 1.0f, false);
    check_rule("shared gated expert (qwen2_moe) does not count", false, 1.0f, true);
    check_rule("shared expert, renormalised (deepseek with norm_topk_prob) does not count", true, 1.0f, true);
    check_rule("deepseek routed_scaling_factor 2.5, renormalised", true, 2.5f, true);
    check_rule("deepseek routed_scaling_factor 16, not renormalised", false, 16.0f, false);

    /* an expert no row selects has saliency 0 */
    make_layer(&l, true, 1.0f, false);
    CHECK(sm_saliency(&l.b, X, 1, s) == 0 && s[2] == 0.0 && s[0] > 0 && s[1] > 0,
          "only e1: expert 2 is never selected, saliency 0 (%g)", s[2]);
    check_selection();
    check_many_rows();
    /* a remapped block is refused with a message */
    int map[N] = {0, 0, 1};
    l.b.expert_map = map, l.b.n_experts = 2;
    CHECK(sm_saliency(&l.b, X, 3, s) != 0, "a remapped block is refused: %s", sm_errmsg());
    printf("%d checks, %d failed\n", tu_checks, tu_failures);
    return tu_failures != 0;
}

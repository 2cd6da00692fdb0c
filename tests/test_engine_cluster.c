/* Clustering (DESIGN §2.2): planted expert groups are recovered exactly by k-means (10 seeds),
 * hierarchical and k-medoids; the same seed gives the same clusters; similarities, costs and
 * the adjusted Rand index against hand-computed values. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cluster.h"
#include "engine/similarity.h"
#include "testutil.h"
#include "util/diag.h"
#include "util/rng.h"

enum { N = 14, K = 4, M = 48, H = 24 };
/* Planted partition with uneven sizes, members interleaved so labels are not trivially ordered. */
static const int planted[N] = {0, 1, 2, 3, 0, 1, 2, 0, 1, 0, 3, 2, 0, 1};

/* Y_i(t) = scale_i · base_{c(i)}(t) + noise: same direction per token within a group (cosine
 * near 1), independent directions across groups (cosine near 0). */
static float *planted_outputs(uint64_t seed, double noise)
{
    sm_rng r;
    sm_rng_seed(&r, seed);
    float *base = malloc(sizeof(float) * K * M * H), *y = malloc(sizeof(float) * N * M * H);
    for (int e = 0; e < K * M * H; e++)
        base[e] = (float)sm_rng_normal(&r);
    for (int i = 0; i < N; i++) {
        double scale = 0.5 + sm_rng_uniform(&r) * 2.0;
        for (int e = 0; e < M * H; e++)
            y[i * M * H + e] =
                (float)(scale * base[planted[i] * M * H + e] + noise * sm_rng_normal(&r));
    }
    free(base);
    return y;
}

static double naive_output_sim(const float *y, int i, int j)
{
    double acc = 0;
    for (int t = 0; t < M; t++) {
        const float *a = y + (i * M + t) * H, *b = y + (j * M + t) * H;
        double ab = 0, aa = 0, bb = 0;
        for (int h = 0; h < H; h++)
            ab += (double)a[h] * b[h], aa += (double)a[h] * a[h], bb += (double)b[h] * b[h];
        acc += ab / sqrt(aa * bb);
    }
    return acc / M;
}

/* Noise 1.0 against unit-variance group signals scaled 0.5..2.5: Lloyd iterations and
 * restarts matter (single k-means++ runs fail for some seeds), yet the optimum is the plant. */
static const double planted_noise = 1.0;

static void test_planted(void)
{
    float *y = planted_outputs(11, planted_noise);
    sm_outputs o = {N, M, H, y, NULL, NULL};
    double s[N * N];
    CHECK(sm_similarity_output(&o, NULL, s) == 0, "output similarity");
    double worst = 0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            worst = fmax(worst, fabs(s[i * N + j] - naive_output_sim(y, i, j)));
    CHECK(worst < 1e-5, "output similarity = (1/m) Σ_t cos, max deviation %.2e", worst);

    int assign[N];
    for (uint64_t seed = 0; seed < 10; seed++) {
        sm_kmeans_opts opts = {.seed = seed};
        sm_kmeans_result res;
        CHECK(sm_kmeans_outputs(&o, s, K, &opts, NULL, assign, &res) == 0, "k-means seed %llu",
              (unsigned long long)seed);
        double ari = sm_adjusted_rand(assign, planted, N);
        CHECK(ari == 1.0, "k-means seed %llu recovers the planted partition: ARI %.4f, cost %.4f, "
              "%d iterations", (unsigned long long)seed, ari, res.cost, res.iterations);
    }
    /* Same seed → same clusters (on a harder, noisier problem where seeds matter). */
    float *yn = planted_outputs(12, 3.0);
    sm_outputs on = {N, M, H, yn, NULL, NULL};
    int a1[N], a2[N], a3[N];
    sm_kmeans_opts o7 = {.seed = 7}, o8 = {.seed = 8, .restarts = 3};
    sm_kmeans_outputs(&on, NULL, K, &o7, NULL, a1, NULL);
    sm_kmeans_outputs(&on, NULL, K, &o7, NULL, a2, NULL);
    sm_kmeans_outputs(&on, NULL, K, &o8, NULL, a3, NULL);
    CHECK(memcmp(a1, a2, sizeof a1) == 0, "same seed, same clusters");
    CHECK(a1[0] == 0 && sm_cluster_canonical(a3, N) == K && a3[0] == 0,
          "labels are canonical (first expert in cluster 0)");
    free(yn);

    CHECK(sm_hcluster_average(s, N, K, assign) == 0 && sm_adjusted_rand(assign, planted, N) == 1.0,
          "hierarchical (average linkage) recovers the planted partition");
    sm_kmeans_opts om = {.seed = 1};
    CHECK(sm_kmedoids(s, N, K, &om, assign, NULL) == 0 &&
              sm_adjusted_rand(assign, planted, N) == 1.0,
          "k-medoids on the similarity recovers the planted partition");

    /* Cost curve: J drops sharply up to the planted k, slowly after it; J(N) = 0. */
    double j[N + 1];
    CHECK(sm_cluster_cost_curve(&o, s, SM_CLUSTER_HIERARCHICAL, 1, N, NULL, NULL, j) == 0,
          "hierarchical cost curve");
    CHECK(fabs(j[N]) < 1e-5, "J(N) = %.2e (every expert its own centroid)", j[N]);
    double before = j[K - 1] - j[K], after = j[K] - j[K + 1];
    CHECK(before > 3 * after && before > 0.5,
          "marginal cost of the merge below planted k (%.3f) dwarfs the one above (%.4f)", before,
          after);
    double jk[N + 1];
    CHECK(sm_cluster_cost_curve(&o, s, SM_CLUSTER_KMEANS, K, K, NULL, NULL, jk) == 0 &&
              fabs(jk[K] - j[K]) < 1e-6,
          "k-means and hierarchical agree on J(%d) = %.4f", K, jk[K]);
    /* The cost of a partition is Σ_i (1 − mean cos to its centroid): a singleton costs 0. */
    double c;
    int single[N];
    for (int i = 0; i < N; i++)
        single[i] = i;
    CHECK(sm_cluster_cost(&o, single, N, NULL, &c) == 0 && fabs(c) < 1e-5, "singletons cost 0");
    free(y);
}

static void test_similarities(void)
{
    /* Weight similarity: expert 1 = 3·expert 0 (cos 1), expert 2 orthogonal (cos 0), expert 3
     * = −expert 0 (cos −1), over two segments. */
    float g[4][4] = {{1, 2, 0, 0}, {3, 6, 0, 0}, {0, 0, 5, 0}, {-1, -2, 0, 0}};
    float d[4][2] = {{2, 0}, {6, 0}, {0, 1}, {-2, 0}};
    const float *gs[4] = {g[0], g[1], g[2], g[3]}, *ds[4] = {d[0], d[1], d[2], d[3]};
    sm_flat_experts fe = {.n = 4, .n_seg = 2, .seg = {gs, ds}, .len = {4, 2}};
    double s[16];
    CHECK(sm_similarity_weight(&fe, NULL, s) == 0, "weight similarity");
    CHECK(fabs(s[1] - 1) < 1e-7 && fabs(s[2]) < 1e-7 && fabs(s[3] + 1) < 1e-7 && s[5] == 1.0,
          "weight cos: %.3f %.3f %.3f", s[1], s[2], s[3]);
    /* Hand case: w0 = (1,2,0,0 | 2,0), w2 = (0,0,5,0 | 0,1): dot 0. w1·w2 = 0. */

    /* Router-logit correlation: z1 = 2·z0 + 1 (r = 1), z2 = −z0 (r = −1), z3 constant (0). */
    float z[5 * 4];
    const float z0[5] = {0.5f, -1.0f, 2.0f, 0.0f, 1.5f};
    for (int t = 0; t < 5; t++) {
        z[t * 4 + 0] = z0[t];
        z[t * 4 + 1] = 2 * z0[t] + 1;
        z[t * 4 + 2] = -z0[t];
        z[t * 4 + 3] = 7;
    }
    CHECK(sm_similarity_logit(z, 5, 4, s) == 0, "logit correlation");
    CHECK(fabs(s[1] - 1) < 1e-6 && fabs(s[2] + 1) < 1e-6 && s[3] == 0 && s[15] == 1,
          "Pearson: %.4f %.4f %.4f", s[1], s[2], s[3]);
    /* Hand case: x = (1,2,3), y = (1,3,2): r = 0.5. */
    float z2[6] = {1, 1, 2, 3, 3, 2};
    sm_similarity_logit(z2, 3, 2, s);
    CHECK_NEAR(s[1], 0.5, 1e-6, "Pearson((1,2,3),(1,3,2)) = 0.5");
}

static void test_ari(void)
{
    int a[4] = {0, 0, 1, 1}, b[4] = {0, 0, 1, 2}, c[4] = {1, 1, 0, 0};
    CHECK_NEAR(sm_adjusted_rand(a, b, 4), 4.0 / 7.0, 1e-12, "ARI([0,0,1,1],[0,0,1,2]) = 4/7");
    CHECK(sm_adjusted_rand(a, c, 4) == 1.0, "ARI is label-invariant");
    int x[6] = {0, 0, 0, 1, 1, 1}, y[6] = {0, 1, 2, 0, 1, 2};
    /* Contingency all ones: index 0; sa = 2·C(3,2) = 6, sb = 3·C(2,2) = 3; expected
     * 6·3/C(6,2) = 1.2; max 4.5 → ARI = −1.2 / 3.3 = −0.3636… (worse than chance). */
    CHECK_NEAR(sm_adjusted_rand(x, y, 6), -1.2 / 3.3, 1e-12, "ARI of crossed partitions < 0");
    /* x vs [0,0,1,1,2,2]: n_ij = 2,1,1,2 → index 2; sa = 6, sb = 3; expected 18/15 = 1.2;
     * max 4.5 → ARI = 0.8 / 3.3 = 0.242424… */
    int w[6] = {0, 0, 1, 1, 2, 2};
    CHECK_NEAR(sm_adjusted_rand(x, w, 6), 0.8 / 3.3, 1e-12, "ARI hand case 0.2424");
}

static void test_hier_hand(void)
{
    /* 4 experts; S: (0,1) 0.9, (2,3) 0.8, cross pairs 0.1/0.3. Joins: (0,1) at 0.9, (2,3) at
     * 0.8, then {0,1}-{2,3} at the mean of the four cross similarities = (0.1+0.3+0.3+0.1)/4. */
    double s[16] = {1, .9, .1, .3, .9, 1, .3, .1, .1, .3, 1, .8, .3, .1, .8, 1};
    sm_hjoin j[3];
    CHECK(sm_hcluster_tree(s, 4, j) == 0, "tree");
    CHECK(j[0].a == 0 && j[0].b == 1 && fabs(j[0].similarity - 0.9) < 1e-12 && j[1].a == 2 &&
              j[1].b == 3 && fabs(j[2].similarity - 0.2) < 1e-12,
          "joins (%d,%d)@%.2f (%d,%d)@%.2f (%d,%d)@%.2f", j[0].a, j[0].b, j[0].similarity, j[1].a,
          j[1].b, j[1].similarity, j[2].a, j[2].b, j[2].similarity);
    int assign[4];
    sm_hcluster_cut(j, 4, 3, assign);
    CHECK(assign[0] == 0 && assign[1] == 0 && assign[2] == 1 && assign[3] == 2, "cut at 3");
    sm_cluster_algo a;
    CHECK(sm_cluster_algo_parse("hierarchical", &a) == 0 && a == SM_CLUSTER_HIERARCHICAL &&
              sm_cluster_algo_parse("dbscan", &a) == -1,
          "algorithm names");
}

/* Normalised outputs read in place (sm_outputs_normalise, what k-means keeps across its
 * iterations) give the same centroid cosines, bit for bit, as normalising block by block, over
 * more than one token block (the block budget is 16 Mi floats: here 6 rows of 4096 per token
 * fit 682 tokens, and there are 700). */
static void test_normalised_in_place(void)
{
    enum { n = 4, k = 2, m = 700, h = 4096 };
    sm_rng r;
    sm_rng_seed(&r, 3);
    float *y = malloc(sizeof(float) * n * m * h);
    for (size_t e = 0; e < (size_t)n * m * h; e++)
        y[e] = (float)sm_rng_normal(&r) + (e / ((size_t)m * h) % 2 ? 0.5f : 0.0f);
    sm_outputs o = {n, m, h, y, NULL, NULL};
    float *yn = sm_outputs_normalise(&o, (size_t)1 << 30);
    CHECK(yn != NULL, "normalised copy");
    CHECK(sm_outputs_normalise(&o, 1000) == NULL, "a copy over its byte budget is refused");
    sm_outputs on = o;
    on.yn = yn;
    int assign[n] = {0, 1, 0, 1};
    double a[n * k], b[n * k], ao[n * k], bo[n * k];
    CHECK(sm_outputs_centroid_cos(&o, assign, k, false, NULL, a) == 0 &&
              sm_outputs_centroid_cos(&on, assign, k, false, NULL, b) == 0 &&
              sm_outputs_centroid_cos(&o, assign, k, true, NULL, ao) == 0 &&
              sm_outputs_centroid_cos(&on, assign, k, true, NULL, bo) == 0,
          "centroid cosines with and without the normalised copy");
    CHECK(memcmp(a, b, sizeof a) == 0 && memcmp(ao, bo, sizeof ao) == 0,
          "the same centroid cosines bit for bit (%.17g, %.17g)", a[0], b[0]);
    free(yn);
    free(y);
}

/* The per-token Gram path (sm_outputs_gram, what k-means uses at real sizes) gives the row
 * path's centroid cosines up to float rounding, including an expert whose outputs are all zero
 * (cosine 0), sets the others to 0 with own_only, and k-means on it finds the same partitions on
 * the planted problem and on a noisier one. */
static void test_gram_path(void)
{
    float *y = planted_outputs(21, 3.0);
    memset(y + 5 * M * H, 0, sizeof(float) * M * H); /* expert 5: silent */
    sm_outputs o = {N, M, H, y, NULL, NULL};
    double *g = sm_outputs_gram(&o, NULL);
    CHECK(g != NULL, "per-token Grams");
    sm_outputs og = o;
    og.gram = g;
    int assign[N];
    for (int i = 0; i < N; i++)
        assign[i] = (i * 7) % K;
    double a[N * K], b[N * K], bo[N * K], worst = 0;
    CHECK(sm_outputs_centroid_cos(&o, assign, K, false, NULL, a) == 0 &&
              sm_outputs_centroid_cos(&og, assign, K, false, NULL, b) == 0 &&
              sm_outputs_centroid_cos(&og, assign, K, true, NULL, bo) == 0,
          "centroid cosines from rows and from Grams");
    bool own = true;
    for (int e = 0; e < N * K; e++) {
        worst = fmax(worst, fabs(a[e] - b[e]));
        own = own && bo[e] == (assign[e / K] == e % K ? b[e] : 0.0);
    }
    CHECK(worst < 1e-6, "the same centroid cosines up to float rounding (worst difference %.2e)", worst);
    CHECK(own, "own_only keeps the own cluster's entries and zeroes the others");
    CHECK(b[5 * K] == 0.0 && b[5 * K + 1] == 0.0, "a silent expert has cosine 0 with every centroid");
    for (uint64_t seed = 1; seed <= 5; seed++) {
        int p1[N], p2[N];
        sm_kmeans_opts ko = {.seed = seed};
        sm_kmeans_result r1, r2;
        CHECK(sm_kmeans_outputs(&o, NULL, K, &ko, NULL, p1, &r1) == 0 &&
                  sm_kmeans_outputs(&og, NULL, K, &ko, NULL, p2, &r2) == 0 && memcmp(p1, p2, sizeof p1) == 0 &&
                  fabs(r1.cost - r2.cost) < 1e-6,
              "k-means seed %llu: the same partition from Grams (cost %.6f and %.6f)", (unsigned long long)seed,
              r1.cost, r2.cost);
    }
    free(g);
    free(y);
}

int main(void)
{
    test_planted();
    test_normalised_in_place();
    test_gram_path();
    test_similarities();
    test_ari();
    test_hier_hand();
    return tu_done();
}

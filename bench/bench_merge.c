/* bench_merge: Sub-MoE union-SVD merge of one Mixtral-8x7B-shaped cluster of 2 experts
 * (gate/up 14336×4096, down 4096×14336) against the Gram product it is built on and against a
 * full LAPACK sgesdd of W_cat (DESIGN §5 "Speed": merge within 2× of the Gram product and
 * ≥ 5× faster than gesdd).
 *
 *   bench/bench_merge [--scale S] [--ranks full,2048,512] [--gesdd gate|all|none] [--exact]
 *                     [--model DIR [--layer L] [--pair A,B]]
 *
 * --scale divides every dimension (and integer ranks) for a quick run; --gesdd picks which
 * matrices get the (slow: minutes each at full size) reference SVD; --exact also times the
 * dense-eigensolver path and reports how far the AUTO result is from it.
 *
 * Weights: by default random N(0, 0.02²) matrices (two unrelated experts: a flat spectrum, the
 * hardest case for a randomized basis). --model takes experts A and B of MoE layer L (default:
 * the first MoE layer) of a model, converted to fp32, at the model's real shapes. For a model
 * made by `submoe synth`, the default pair is the first two experts of one planted cluster
 * (genuinely similar, like upcycled experts). A Mixtral-8x7B-shaped synth model with one MoE
 * layer of two experts in one cluster (1.4 GB of expert weights in f32):
 *   submoe synth --arch mixtral --layers 1 --hidden 4096 --intermediate 14336 --heads 32 \
 *       --kv-heads 8 --experts 2 --clusters 1 --out /tmp/mixtral-synth
 *   bench/bench_merge --model /tmp/mixtral-synth
 * The first line of the output says which weights were used. */
#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/lapack.h"
#include "engine/merge.h"
#include "engine/unionsvd.h"
#include "model/model.h"
#include "util/diag.h"
#include "util/mem.h"
#include "util/progress.h"
#include "util/rng.h"

#define MAX_RANKS 8

typedef struct {
    const char *name;
    int64_t out, in;
    float *w[2];
    double t_gram, t_gesdd, t_merge[MAX_RANKS], err[MAX_RANKS], exact_err[MAX_RANKS];
    double t_exact[MAX_RANKS];
    const char *solver[MAX_RANKS];
} matrix;

/* The planted cluster of every expert of layer L recorded by `submoe synth` in config.json
 * ("submoe_synth": {"assignment": {"L": [...]}}), into cl[n]; also its noise and whether neurons
 * are permuted. 0 for a synth model, -1 otherwise. */
static int synth_planted(const char *dir, int layer, int n, int *cl, double *noise, int *permuted)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t e;
    json_t *root = json_load_file(path, 0, &e);
    json_t *s = root ? json_object_get(root, "submoe_synth") : NULL;
    char key[16];
    snprintf(key, sizeof key, "%d", layer);
    json_t *arr = s ? json_object_get(json_object_get(s, "assignment"), key) : NULL;
    int rc = -1;
    if (json_is_array(arr) && (int)json_array_size(arr) == n) {
        for (int i = 0; i < n; i++)
            cl[i] = (int)json_integer_value(json_array_get(arr, (size_t)i));
        *noise = json_number_value(json_object_get(s, "noise"));
        *permuted = json_is_true(json_object_get(s, "permuted_neurons"));
        rc = 0;
    }
    json_decref(root);
    return rc;
}

static double time_gram(const sm_matset *s)
{
    int64_t dim = sm_usvd_max_rank(s);
    float *g = sm_alloc_f32((size_t)(dim * dim));
    if (!g)
        sm_die("%s", sm_errmsg());
    double t = sm_now();
    if (sm_usvd_gram(s, NULL, g) != 0)
        sm_die("%s", sm_errmsg());
    t = sm_now() - t;
    free(g);
    return t;
}

/* Full thin SVD of W_cat with sgesdd (JOBZ = 'S'). The row-major out × n·in W_cat is the
 * column-major n·in × out matrix W_catᵀ, which has the same singular values and costs the
 * same. */
static double time_gesdd(const matrix *mx)
{
    const int64_t cat = 2 * mx->in, out = mx->out;
    const int m = (int)cat, n = (int)out, k = m < n ? m : n;
    float *a = sm_alloc_f32((size_t)(cat * out)), *s = sm_alloc_f32((size_t)k);
    float *u = sm_alloc_f32((size_t)m * k), *vt = sm_alloc_f32((size_t)k * n);
    int *iwork = sm_alloc((size_t)8 * k, sizeof(int));
    if (!a || !s || !u || !vt || !iwork)
        sm_die("%s", sm_errmsg());
    for (int64_t r = 0; r < out; r++)
        for (int i = 0; i < 2; i++)
            memcpy(a + r * cat + i * mx->in, mx->w[i] + r * mx->in, sizeof(float) * (size_t)mx->in);
    float wq;
    int lwork = -1, info = 0;
    sgesdd_("S", &m, &n, a, &m, s, u, &m, vt, &k, &wq, &lwork, iwork, &info, 1);
    /* The float query can round down for big sizes: use the documented minimum if larger. */
    double need = 3.0 * k * k + fmax((double)(m > n ? m : n), 4.0 * k * k + 4.0 * k);
    lwork = (int)fmin(fmax((double)wq * 1.0001 + 64, need), 2147483647.0);
    float *work = sm_alloc_f32((size_t)lwork);
    if (!work)
        sm_die("%s", sm_errmsg());
    double t = sm_now();
    sgesdd_("S", &m, &n, a, &m, s, u, &m, vt, &k, work, &lwork, iwork, &info, 1);
    t = sm_now() - t;
    if (info != 0)
        sm_die("sgesdd failed (info %d)", info);
    free(a), free(s), free(u), free(vt), free(iwork), free(work);
    return t;
}

static double rel_diff(const float *a, const float *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t e = 0; e < n; e++) {
        double d = (double)a[e] - b[e];
        num += d * d;
        den += (double)b[e] * b[e];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

int main(int argc, char **argv)
{
    int scale = 1, n_ranks = 0, exact = 0;
    const char *gesdd = "gate";
    sm_rank ranks[MAX_RANKS];
    const char *rank_text = "full,2048,512", *model_dir = NULL;
    int layer = -1, pair[2] = {0, 1}, pair_given = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--scale") && i + 1 < argc)
            scale = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ranks") && i + 1 < argc)
            rank_text = argv[++i];
        else if (!strcmp(argv[i], "--gesdd") && i + 1 < argc)
            gesdd = argv[++i];
        else if (!strcmp(argv[i], "--exact"))
            exact = 1;
        else if (!strcmp(argv[i], "--model") && i + 1 < argc)
            model_dir = argv[++i];
        else if (!strcmp(argv[i], "--layer") && i + 1 < argc)
            layer = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--pair") && i + 1 < argc && sscanf(argv[i + 1], "%d,%d", &pair[0], &pair[1]) == 2)
            i++, pair_given = 1;
        else {
            fprintf(stderr, "usage: %s [--scale S] [--ranks full,2048,512] "
                            "[--gesdd gate|all|none] [--exact] [--model DIR [--layer L] [--pair A,B]]\n", argv[0]);
            return 2;
        }
    }
    if (scale < 1)
        scale = 1;
    char *rt = xstrdup(rank_text);
    for (char *tok = strtok(rt, ","); tok && n_ranks < MAX_RANKS; tok = strtok(NULL, ",")) {
        if (sm_rank_parse(tok, &ranks[n_ranks]) != 0)
            sm_die("%s", sm_errmsg());
        if (ranks[n_ranks].kind == SM_RANK_COUNT)
            ranks[n_ranks].count = ranks[n_ranks].count / scale > 0 ? ranks[n_ranks].count / scale : 1;
        n_ranks++;
    }
    free(rt);

    int64_t hidden = 4096 / scale, inter = 14336 / scale;
    sm_model *model = NULL;
    char origin[8192];
    snprintf(origin, sizeof origin, "random N(0, 0.02^2) matrices, not a model's experts (--model DIR for a synth "
                                    "model's planted pair)");
    if (model_dir) {
        if (!(model = sm_model_open(model_dir)))
            sm_die("%s", sm_errmsg());
        const sm_config *c = sm_model_config(model);
        for (int l = 0; layer < 0 && l < c->n_layers; l++)
            if (c->is_moe[l])
                layer = l;
        if (layer < 0 || layer >= c->n_layers || !c->is_moe[layer])
            sm_die("%s: layer %d is not a MoE layer", model_dir, layer);
        int ne = sm_model_layer_experts(model, layer);
        int *cl = xmalloc(sizeof(int) * (size_t)(ne > 0 ? ne : 1));
        double noise = 0;
        int permuted = 0, synth = ne > 0 && synth_planted(model_dir, layer, ne, cl, &noise, &permuted) == 0;
        for (int a = 0; synth && !pair_given && a < ne; a++) /* first two experts of one planted cluster */
            for (int b = a + 1; b < ne; b++)
                if (cl[a] == cl[b]) {
                    pair[0] = a, pair[1] = b, pair_given = 1;
                    break;
                }
        if (pair[0] < 0 || pair[1] < 0 || pair[0] >= ne || pair[1] >= ne || pair[0] == pair[1])
            sm_die("%s layer %d has %d experts: --pair %d,%d is not two of them", model_dir, layer, ne, pair[0],
                   pair[1]);
        if (synth)
            snprintf(origin, sizeof origin,
                     "synth model %s: experts %d and %d of layer %d, planted clusters %d and %d (%s; noise %g%s)",
                     model_dir, pair[0], pair[1], layer, cl[pair[0]], cl[pair[1]],
                     cl[pair[0]] == cl[pair[1]] ? "the same cluster" : "different clusters", noise,
                     permuted ? ", neurons permuted" : "");
        else
            snprintf(origin, sizeof origin, "model %s (not made by submoe synth): experts %d and %d of layer %d",
                     model_dir, pair[0], pair[1], layer);
        free(cl);
        sm_weight w;
        if (sm_model_weight(model, SM_W_EXPERT_GATE, layer, pair[0], &w))
            sm_die("%s", sm_errmsg());
        inter = w.rows;
        hidden = w.cols;
        scale = 1;
    }
    matrix mats[3] = {{.name = "gate", .out = inter, .in = hidden},
                      {.name = "up", .out = inter, .in = hidden},
                      {.name = "down", .out = hidden, .in = inter}};
    sm_rng rng;
    sm_rng_seed(&rng, 2025);
    const sm_wrole roles[3] = {SM_W_EXPERT_GATE, SM_W_EXPERT_UP, SM_W_EXPERT_DOWN};
    for (int j = 0; j < 3; j++)
        for (int i = 0; i < 2; i++) {
            size_t len = (size_t)(mats[j].out * mats[j].in);
            if (!(mats[j].w[i] = sm_alloc_f32(len)))
                sm_die("%s", sm_errmsg());
            sm_weight w;
            if (!model)
                sm_rng_fill_normal(&rng, mats[j].w[i], len, 0.02f);
            else if (sm_model_weight(model, roles[j], layer, pair[i], &w) == 0)
                sm_weight_to_f32(&w, mats[j].w[i]);
            else
                sm_die("%s", sm_errmsg());
        }
    sm_model_close(model);
    printf("bench_merge: weights: %s\n", origin);
    if (model_dir)
        printf("2-expert cluster, H=%lld I=%lld (the model's shapes), OpenBLAS %s\n", (long long)hidden,
               (long long)inter, openblas_get_config());
    else
        printf("2-expert cluster, H=%lld I=%lld (Mixtral-8x7B / %d), OpenBLAS %s\n", (long long)hidden,
               (long long)inter, scale, openblas_get_config());
    printf("threads %d; gesdd on: %s\n\n", openblas_get_num_threads(), gesdd);

    for (int j = 0; j < 3; j++) {
        matrix *mx = &mats[j];
        sm_matset set = {2, mx->out, mx->in, (const float *const *)mx->w};
        mx->t_gram = time_gram(&set);
        const double wts[2] = {0.6, 0.4};
        for (int q = 0; q < n_ranks; q++) {
            sm_merge_opts o = {.rank = ranks[q]};
            double freq[2] = {0.6, 0.4};
            sm_merged res;
            double t = sm_now();
            if (sm_merge_matrix(SM_MERGE_SUBMOE, &set, freq, NULL, &o, NULL, &res) != 0)
                sm_die("%s", sm_errmsg());
            mx->t_merge[q] = sm_now() - t;
            mx->solver[q] = res.rank == 0 && res.solver == SM_USVD_AUTO
                                ? "none" : sm_usvd_solver_name(res.solver);
            /* Distance from W̄ (the full-rank merge): how much the rank cut removes. */
            float *wbar = sm_alloc_f32((size_t)(mx->out * mx->in));
            sm_weighted_sum(&set, wts, wbar);
            mx->err[q] = rel_diff(res.w, wbar, mx->out * mx->in);
            free(wbar);
            mx->exact_err[q] = -1;
            if (exact && ranks[q].kind != SM_RANK_FULL && res.solver == SM_USVD_RANDOMIZED) {
                sm_merge_opts oe = o;
                oe.usvd.solver = SM_USVD_EIGEN;
                sm_merged ex;
                double te = sm_now();
                if (sm_merge_matrix(SM_MERGE_SUBMOE, &set, freq, NULL, &oe, NULL, &ex) != 0)
                    sm_die("%s", sm_errmsg());
                mx->t_exact[q] = sm_now() - te;
                float *wb = sm_alloc_f32((size_t)(mx->out * mx->in));
                sm_weighted_sum(&set, wts, wb);
                mx->exact_err[q] = rel_diff(ex.w, wb, mx->out * mx->in);
                free(wb);
                sm_merged_free(&ex);
            }
            sm_merged_free(&res);
            fprintf(stderr, "  %s rank %d: %.2f s\n", mx->name, q, mx->t_merge[q]);
        }
        mx->t_gesdd = -1;
        if (!strcmp(gesdd, "all") || (!strcmp(gesdd, "gate") && j == 0)) {
            fprintf(stderr, "  %s: sgesdd of %lld x %lld …\n", mx->name, (long long)mx->out,
                    (long long)(2 * mx->in));
            mx->t_gesdd = time_gesdd(mx);
        }
    }

    printf("%-5s %-13s %8s", "mat", "W_cat", "Gram s");
    for (int q = 0; q < n_ranks; q++) {
        char b[32];
        sm_rank_format(&ranks[q], b, sizeof b);
        printf(" | r=%-5s merge s  /Gram  solver     cut", b);
    }
    printf(" | gesdd s  gesdd/merge(each r)\n");
    double tot_gram = 0, tot_merge[MAX_RANKS] = {0};
    for (int j = 0; j < 3; j++) {
        matrix *mx = &mats[j];
        char shape[32];
        snprintf(shape, sizeof shape, "%lldx%lld", (long long)mx->out, (long long)(2 * mx->in));
        printf("%-5s %-13s %8.2f", mx->name, shape, mx->t_gram);
        tot_gram += mx->t_gram;
        for (int q = 0; q < n_ranks; q++) {
            printf(" |       %8.2f %5.2fx  %-10s %.3f", mx->t_merge[q], mx->t_merge[q] / mx->t_gram,
                   mx->solver[q], mx->err[q]);
            tot_merge[q] += mx->t_merge[q];
        }
        if (mx->t_gesdd > 0) {
            printf(" | %7.1f ", mx->t_gesdd);
            for (int q = 0; q < n_ranks; q++)
                printf(" %6.1fx", mx->t_gesdd / mx->t_merge[q]);
        } else {
            printf(" |       -");
        }
        printf("\n");
    }
    printf("%-5s %-13s %8.2f", "all", "", tot_gram);
    for (int q = 0; q < n_ranks; q++)
        printf(" |       %8.2f %5.2fx  %-10s %5s", tot_merge[q], tot_merge[q] / tot_gram, "", "");
    printf("\n\n'cut' = ||W_merged − W̄||_F / ||W̄||_F (0 at full rank). Targets (DESIGN §5): "
           "merge ≤ 2× Gram, gesdd ≥ 5× merge.\n");
    if (exact)
        for (int j = 0; j < 3; j++)
            for (int q = 0; q < n_ranks; q++)
                if (mats[j].exact_err[q] >= 0)
                    printf("%s rank #%d: cut randomized %.4f vs exact (dense eigensolver, "
                           "%.2f s) %.4f\n", mats[j].name, q, mats[j].err[q], mats[j].t_exact[q],
                           mats[j].exact_err[q]);
    for (int j = 0; j < 3; j++)
        free(mats[j].w[0]), free(mats[j].w[1]);
    return 0;
}

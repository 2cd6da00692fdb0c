/* bench_align: neuron alignment of one cluster of 2 experts next to the Sub-MoE merge of the same
 * cluster (issue 8: alignment at most as long as the merge at Qwen3-30B-A3B shape, under a
 * minute at Mixtral-8x7B shape). Random N(0, 0.02²) weights; the second expert is a
 * neuron-permuted copy of the first plus N(0, s²) noise (--noise s, default 0.02: as much noise
 * as signal, so matched neurons correlate well below 1 as in experts trained from scratch).
 * SM_ALIGN_MAX_ROWS (4096) random calibration rows, the number production alignment uses.
 *
 * "The merge" is reported twice, because the two differ by an order of magnitude: the default
 * full-rank merge (a frequency-weighted sum, no SVD) and a rank-512 merge (union SVD). Both merge
 * gate, up and down of the cluster with submoe; the alignment time covers sm_align_pair
 * (activations, correlations, matching) and, separately, the permuted copy of the member.
 *
 *   bench/bench_align [--only mixtral|qwen3] [--noise S] */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/align.h"
#include "engine/merge.h"
#include "util/diag.h"
#include "util/mem.h"
#include "util/progress.h"
#include "util/rng.h"

static double noise = 0.02;

/* Time spent in each phase of sm_align_pair, from its progress labels. */
typedef struct {
    double t0, t_act, t_corr; /* start, end of activations, end of correlations */
} phases;

static void on_progress(void *ctx, double f, const char *what)
{
    phases *ph = ctx;
    (void)f;
    if (strstr(what, "activations"))
        ph->t_act = sm_now();
    else if (strstr(what, "correlations"))
        ph->t_corr = sm_now();
}

static void run(const char *name, int64_t H, int64_t ni)
{
    const int64_t m = SM_ALIGN_MAX_ROWS;
    sm_rng r;
    sm_rng_seed(&r, 7);
    float *w = sm_alloc_f32((size_t)(3 * ni * H)), *p = sm_alloc_f32((size_t)(3 * ni * H));
    float *pc = sm_alloc_f32((size_t)(3 * ni * H)), *x = sm_alloc_f32((size_t)(m * H));
    int *perm = sm_alloc((size_t)ni, sizeof *perm), *got = sm_alloc((size_t)ni, sizeof *got);
    if (!w || !p || !pc || !x || !perm || !got)
        sm_die("%s", sm_errmsg());
    sm_rng_fill_normal(&r, w, (size_t)(3 * ni * H), 0.02f);
    sm_rng_fill_normal(&r, x, (size_t)(m * H), 1.0f);
    for (int64_t i = 0; i < ni; i++)
        perm[i] = (int)i;
    for (int64_t i = ni - 1; i > 0; i--) {
        int64_t j = (int64_t)sm_rng_below(&r, (uint64_t)i + 1);
        int t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    sm_expert a = sm_expert_dense(H, ni, w, w + ni * H, w + 2 * ni * H);
    sm_expert_permute(&a, perm, p, p + ni * H, p + 2 * ni * H);
    if (noise > 0) {
        float *nz = pc; /* pc is scratch until the permuted copy below */
        sm_rng_fill_normal(&r, nz, (size_t)(3 * ni * H), (float)noise);
        for (int64_t q = 0; q < 3 * ni * H; q++)
            p[q] += nz[q];
    }
    sm_expert b = sm_expert_dense(H, ni, p, p + ni * H, p + 2 * ni * H);
    double t = sm_now(), corr = 0;
    phases ph = {t, t, t};
    sm_monitor mon = {on_progress, &ph, NULL};
    if (sm_align_pair(&a, &b, x, m, &mon, got, &corr))
        sm_die("%s", sm_errmsg());
    double t_align = sm_now() - t;
    t = sm_now();
    sm_expert_permute(&b, got, pc, pc + ni * H, pc + 2 * ni * H);
    double t_permute = sm_now() - t;
    free(p); /* the aligned copy pc is what gets merged */
    p = NULL;
    int right = 0;
    for (int64_t i = 0; i < ni; i++)
        right += perm[got[i]] == i;
    /* the merge of the same cluster: gate, up, down at full rank and at rank 512 */
    double t_merge[2];
    const sm_rank ranks[2] = {{SM_RANK_FULL, 0, 0}, {SM_RANK_COUNT, 512, 0}};
    char solver[2][48] = {"", ""}; /* the union-basis paths taken by gate, up, down */
    for (int q = 0; q < 2; q++) {
        t = sm_now();
        for (int j = 0; j < 3; j++) {
            const float *ws[2] = {w + j * ni * H, pc + j * ni * H};
            sm_matset set = {2, j == 2 ? H : ni, j == 2 ? ni : H, ws};
            double f[2] = {0.5, 0.5};
            sm_merge_opts o = {.rank = ranks[q]};
            sm_merged mm;
            if (sm_merge_matrix(SM_MERGE_SUBMOE, &set, f, NULL, &o, NULL, &mm))
                sm_die("%s", sm_errmsg());
            const char *sv = mm.rank == 0 && mm.solver == SM_USVD_AUTO ? "weighted sum, no SVD" : sm_usvd_solver_name(mm.solver);
            if (!strstr(solver[q], sv))
                snprintf(solver[q] + strlen(solver[q]), sizeof solver[q] - strlen(solver[q]), "%s%s",
                         *solver[q] ? "/" : "", sv);
            sm_merged_free(&mm);
        }
        t_merge[q] = sm_now() - t;
    }
    double t_al = t_align + t_permute;
    printf("%s H=%lld I=%lld\n", name, (long long)H, (long long)ni);
    printf("  align         %7.2f s  activations %.2f s, correlations %.2f s, %s %.2f s, permuted copy %.2f s\n"
           "                           (%d/%lld neurons right, mean matched corr %.3f)\n",
           t_al, ph.t_act - ph.t0, ph.t_corr - ph.t_act, ni <= SM_ALIGN_EXACT_MAX ? "Hungarian" : "candidate matching",
           t_align - (ph.t_corr - ph.t0), t_permute, right, (long long)ni, corr);
    char d[2][96];
    snprintf(d[0], sizeof d[0], "(the default full-rank merge: %s)", solver[0]);
    snprintf(d[1], sizeof d[1], "(a rank-512 merge: union SVD, %s)", solver[1]);
    for (int q = 0; q < 2; q++)
        printf("  merge %-7s %7.2f s  %-52s align/merge %6.2fx\n", q ? "r=512" : "full", t_merge[q], d[q],
               t_al / t_merge[q]);
    fflush(stdout);
    free(w), free(p), free(pc), free(x), free(perm), free(got);
}

int main(int argc, char **argv)
{
    const char *only = "";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--noise") && i + 1 < argc)
            noise = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--only mixtral|qwen3] [--noise S]\n", argv[0]);
            return 2;
        }
    }
    printf("bench_align: one cluster of 2 experts, random N(0, 0.02^2) weights, the second a permuted copy + "
           "N(0, %g^2);\n%d calibration rows (SM_ALIGN_MAX_ROWS), %d BLAS threads\n",
           noise, SM_ALIGN_MAX_ROWS, openblas_get_num_threads());
    if (!*only || !strcmp(only, "qwen3"))
        run("qwen3", 2048, 768);
    if (!*only || !strcmp(only, "mixtral"))
        run("mixtral", 4096, 14336);
    return 0;
}

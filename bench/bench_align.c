/* bench_align: neuron alignment of one cluster of 2 experts next to the Sub-MoE merge of the same
 * cluster (issue 8: alignment at most as long as the merge at Qwen3-30B-A3B shape, under a
 * minute at Mixtral-8x7B shape). Random N(0, 0.02²) weights, the second expert a permuted noisy
 * copy of the first; 2048 random calibration rows.
 *
 *   bench/bench_align [--only mixtral|qwen3] */
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

static void run(const char *name, int64_t H, int64_t ni)
{
    const int64_t m = 2048;
    sm_rng r;
    sm_rng_seed(&r, 7);
    float *w = sm_alloc_f32((size_t)(3 * ni * H)), *p = sm_alloc_f32((size_t)(3 * ni * H));
    float *x = sm_alloc_f32((size_t)(m * H));
    int *perm = sm_alloc((size_t)ni, sizeof *perm), *got = sm_alloc((size_t)ni, sizeof *got);
    if (!w || !p || !x || !perm || !got)
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
    sm_expert b = sm_expert_dense(H, ni, p, p + ni * H, p + 2 * ni * H);
    double t = sm_now(), corr = 0;
    if (sm_align_pair(&a, &b, x, m, NULL, got, &corr))
        sm_die("%s", sm_errmsg());
    double t_align = sm_now() - t;
    int right = 0;
    for (int64_t i = 0; i < ni; i++)
        right += perm[got[i]] == i;
    /* the merge of the same cluster: gate, up, down, full rank and rank 512 */
    double t_merge[2];
    const sm_rank ranks[2] = {{SM_RANK_FULL, 0, 0}, {SM_RANK_COUNT, 512, 0}};
    for (int q = 0; q < 2; q++) {
        t = sm_now();
        for (int j = 0; j < 3; j++) {
            const float *ws[2] = {w + j * ni * H, p + j * ni * H};
            sm_matset set = {2, j == 2 ? H : ni, j == 2 ? ni : H, ws};
            double f[2] = {0.5, 0.5};
            sm_merge_opts o = {.rank = ranks[q]};
            sm_merged mm;
            if (sm_merge_matrix(SM_MERGE_SUBMOE, &set, f, NULL, &o, NULL, &mm))
                sm_die("%s", sm_errmsg());
            sm_merged_free(&mm);
        }
        t_merge[q] = sm_now() - t;
    }
    printf("%-8s H=%-5lld I=%-6lld align %7.2f s (%s, %d/%lld neurons right) | merge full %6.2f s, r=512 %6.2f s | "
           "align/merge(r=512) %.2fx\n",
           name, (long long)H, (long long)ni, t_align, ni <= SM_ALIGN_EXACT_MAX ? "Hungarian" : "candidates", right,
           (long long)ni, t_merge[0], t_merge[1], t_align / t_merge[1]);
    fflush(stdout);
    free(w), free(p), free(x), free(perm), free(got);
}

int main(int argc, char **argv)
{
    const char *only = argc > 2 && !strcmp(argv[1], "--only") ? argv[2] : "";
    printf("bench_align: one cluster of 2 experts, 2048 calibration rows, %d BLAS threads\n",
           openblas_get_num_threads());
    if (!*only || !strcmp(only, "qwen3"))
        run("qwen3", 2048, 768);
    if (!*only || !strcmp(only, "mixtral"))
        run("mixtral", 4096, 14336);
    return 0;
}

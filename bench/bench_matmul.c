/* bench_matmul: GFLOP/s of y = x·Wᵀ (x m×k, W n×k) through util/matmul (oneDNN fp32 and bf16)
 * against OpenBLAS sgemm, at issue 16's shape 4096×2048 · 2048×1024 by default.
 *
 *   bench/bench_matmul [--m M] [--n N] [--k K] [--reps R]
 *
 * Each variant runs once to warm up (primitive creation, JIT), then R times; the best time is
 * reported, with oneDNN's implementation name and the largest error against the fp64 product
 * relative to the largest |y| (bf16 rounds x and W to 8 significant bits). Threads: the
 * process's OpenMP / OpenBLAS defaults (both 2 here). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/matmul.h"
#include "util/mem.h"
#include "util/rng.h"

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
static double now(void) { return clock_s(CLOCK_MONOTONIC); }

typedef enum { V_BLAS, V_DNNL_F32, V_DNNL_BF16 } variant;

/* Best wall time; *cpu: the CPU seconds (all threads) of that run, which a loaded machine
 * inflates far less than the wall time. */
static double run(variant v, int64_t m, int64_t n, int64_t k, const float *x, const float *w,
                  const uint16_t *wb, float *y, int reps, double *cpu)
{
    double best = 1e30;
    for (int r = 0; r <= reps; r++) { /* r == 0: warm-up */
        double t0 = now(), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        if (v == V_BLAS)
            sm_matmul_blas(m, n, k, x, w, NULL, 0.0f, y);
        else
            sm_matmul(m, n, k, x, v == V_DNNL_F32 ? w : NULL, v == V_DNNL_BF16 ? wb : NULL, 0.0f, y);
        double t = now() - t0, c = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
        if (r > 0 && t < best) {
            best = t;
            *cpu = c;
        }
    }
    return best;
}

/* max |y − y_ref| / max |y_ref| over a sample of rows, y_ref in fp64 */
static double error(int64_t m, int64_t n, int64_t k, const float *x, const float *w, const float *y)
{
    double emax = 0, ymax = 0;
    for (int64_t i = 0; i < m; i += m / 16 > 0 ? m / 16 : 1)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++)
                s += (double)x[i * k + p] * w[j * k + p];
            emax = fmax(emax, fabs(s - y[i * n + j]));
            ymax = fmax(ymax, fabs(s));
        }
    return ymax > 0 ? emax / ymax : emax;
}

int main(int argc, char **argv)
{
    int64_t m = 4096, n = 1024, k = 2048;
    int reps = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        int64_t v = strtoll(argv[i + 1], NULL, 10);
        if (!strcmp(argv[i], "--m")) m = v;
        else if (!strcmp(argv[i], "--n")) n = v;
        else if (!strcmp(argv[i], "--k")) k = v;
        else if (!strcmp(argv[i], "--reps")) reps = (int)v;
        else {
            fprintf(stderr, "usage: bench_matmul [--m M] [--n N] [--k K] [--reps R]\n");
            return 2;
        }
    }
    if (m < 1 || n < 1 || k < 1 || reps < 1) {
        fprintf(stderr, "bench_matmul: sizes and --reps must be positive\n");
        return 2;
    }
    float *x = sm_alloc_f32((size_t)(m * k)), *w = sm_alloc_f32((size_t)(n * k)), *y = sm_alloc_f32((size_t)(m * n));
    uint16_t *wb = xmalloc(sizeof *wb * (size_t)(n * k));
    if (!x || !w || !y)
        return 1;
    sm_rng rng;
    sm_rng_seed(&rng, 1);
    for (int64_t i = 0; i < m * k; i++)
        x[i] = (float)sm_rng_normal(&rng);
    for (int64_t i = 0; i < n * k; i++)
        w[i] = (float)(0.02 * sm_rng_normal(&rng));
    sm_bf16_pack(wb, w, (size_t)(n * k));
    double flop = 2.0 * m * n * k;
    printf("y = x·Wᵀ, x %lld×%lld, W %lld×%lld (%.1f GFLOP), best of %d; bf16 %s on this CPU\n",
           (long long)m, (long long)k, (long long)n, (long long)k, flop * 1e-9, reps,
           sm_matmul_bf16_supported() ? "supported" : "not supported");
    double load[3] = {0};
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) {
        if (fscanf(la, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3)
            load[0] = load[1] = load[2] = 0;
        fclose(la);
    }
    printf("load average %.1f %.1f %.1f; GFLOP per CPU-second counts every thread's time\n", load[0], load[1],
           load[2]);
    printf("%-16s %-22s %9s %9s %12s %10s\n", "variant", "implementation", "ms", "GFLOP/s", "GFLOP/CPU-s",
           "rel. error");
    const char *names[] = {"OpenBLAS sgemm", "oneDNN fp32", "oneDNN bf16"};
    double base = 0;
    for (int v = V_BLAS; v <= V_DNNL_BF16; v++) {
        if (v == V_DNNL_BF16 && !sm_matmul_bf16_supported())
            continue;
        double cpu = 0, t = run((variant)v, m, n, k, x, w, wb, y, reps, &cpu);
        const char *impl = v == V_BLAS ? "openblas" : sm_matmul_impl(n, k, v == V_DNNL_BF16);
        if (v == V_BLAS)
            base = t;
        printf("%-16s %-22s %9.2f %9.1f %12.1f %10.2e   %.2f× OpenBLAS\n", names[v], impl, t * 1e3,
               flop / t * 1e-9, cpu > 0 ? flop / cpu * 1e-9 : 0.0, error(m, n, k, x, w, y), base / t);
    }
    free(x), free(w), free(y), free(wb);
    return 0;
}

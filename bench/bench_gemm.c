/* bench_gemm: the machine's matmul rate, for make bench-real's roof (issue 16).
 *
 *   bench/bench_gemm [M K N] [SECONDS]
 *
 * Times C[M,N] = A[M,K] · W[N,K]^T (the shape of a linear layer: W stored as the model stores it)
 * through oneDNN's dnnl_matmul with bf16 inputs and fp32 accumulation and output, through
 * oneDNN's fp32 matmul, and through OpenBLAS's sgemm; default 4096 2048 1024, the shapes issue 16
 * measured. Each rate is the best of three rounds of about SECONDS/3 (1 s) after a warm-up, in
 * GFLOP/s (2·M·N·K per product). One line per engine:
 *
 *   dnnl_bf16 GFLOPS IMPL      (IMPL: oneDNN's implementation, e.g. brg:avx512_core_bf16)
 *   dnnl_f32 GFLOPS IMPL
 *   openblas_sgemm GFLOPS
 *
 * A oneDNN line says "absent" when the build has no oneDNN and "failed" when it cannot make the
 * primitive. oneDNN's threads are OpenMP's (OMP_NUM_THREADS), OpenBLAS's its own. */
#include "config.h"

#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef HAVE_DNNL_BENCH
#include <oneapi/dnnl/dnnl.h>
#endif

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *random_floats(size_t n, unsigned seed)
{
    float *p = malloc(n * sizeof *p);
    if (!p) {
        fprintf(stderr, "bench_gemm: out of memory\n");
        exit(1);
    }
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)((s >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
    return p;
}

typedef void (*run_fn)(void *ctx);

/* Best rate over three rounds of about `seconds`/3 each, after one warm-up call. */
static double best_gflops(run_fn run, void *ctx, double flops, double seconds)
{
    run(ctx);
    double best = 0;
    for (int round = 0; round < 3; round++) {
        int reps = 0;
        double t0 = now(), dt;
        do {
            run(ctx);
            reps++;
            dt = now() - t0;
        } while (dt < seconds / 3);
        double rate = flops * reps / dt / 1e9;
        if (rate > best)
            best = rate;
    }
    return best;
}

typedef struct {
    int m, k, n;
    const float *a, *w;
    float *c;
} sgemm_ctx;

static void run_sgemm(void *p)
{
    sgemm_ctx *g = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->m, g->n, g->k, 1.0f, g->a, g->k, g->w, g->k, 0.0f, g->c,
                g->n);
}

#ifdef HAVE_DNNL_BENCH
typedef struct {
    dnnl_primitive_t prim;
    dnnl_stream_t stream;
    dnnl_exec_arg_t args[3];
} dnnl_ctx;

static void run_dnnl(void *p)
{
    dnnl_ctx *d = p;
    dnnl_primitive_execute(d->prim, d->stream, 3, d->args);
    dnnl_stream_wait(d->stream);
}

/* Copy fp32 values into a memory of data type dt (bf16: round to nearest even). */
static void fill(dnnl_memory_t mem, dnnl_data_type_t dt, const float *src, size_t n)
{
    void *h = NULL;
    dnnl_memory_get_data_handle(mem, &h);
    if (dt == dnnl_f32) {
        memcpy(h, src, n * sizeof *src);
        return;
    }
    uint16_t *dst = h;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], sizeof u);
        dst[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
}

/* One engine line for oneDNN matmul with inputs of type dt. */
static void bench_dnnl(const char *name, dnnl_data_type_t dt, const sgemm_ctx *g, double seconds)
{
    dnnl_engine_t eng = NULL;
    dnnl_stream_t stream = NULL;
    dnnl_memory_desc_t a_md, w_md, c_md;
    dnnl_matmul_desc_t desc;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_memory_t a = NULL, w = NULL, c = NULL;
    dnnl_dims_t ad = {g->m, g->k}, wd = {g->k, g->n}, cd = {g->m, g->n};
    const char *impl = "?";
    /* weights as stored by a model, [N, K] row-major: a K x N matrix in layout "ba" */
    if (dnnl_engine_create(&eng, dnnl_cpu, 0) || dnnl_stream_create(&stream, eng, dnnl_stream_default_flags) ||
        dnnl_memory_desc_init_by_tag(&a_md, 2, ad, dt, dnnl_ab) ||
        dnnl_memory_desc_init_by_tag(&w_md, 2, wd, dt, dnnl_ba) ||
        dnnl_memory_desc_init_by_tag(&c_md, 2, cd, dnnl_f32, dnnl_ab) ||
        dnnl_matmul_desc_init(&desc, &a_md, &w_md, NULL, &c_md) ||
        dnnl_primitive_desc_create(&pd, &desc, NULL, eng, NULL) ||
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) || dnnl_primitive_create(&prim, pd) ||
        dnnl_memory_create(&a, &a_md, eng, DNNL_MEMORY_ALLOCATE) ||
        dnnl_memory_create(&w, &w_md, eng, DNNL_MEMORY_ALLOCATE) ||
        dnnl_memory_create(&c, &c_md, eng, DNNL_MEMORY_ALLOCATE)) {
        printf("%s failed\n", name);
    } else {
        fill(a, dt, g->a, (size_t)g->m * (size_t)g->k);
        fill(w, dt, g->w, (size_t)g->n * (size_t)g->k);
        dnnl_ctx d = {prim, stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, c}}};
        double flops = 2.0 * g->m * g->n * g->k;
        printf("%s %.1f %s\n", name, best_gflops(run_dnnl, &d, flops, seconds), impl);
    }
    fflush(stdout);
    dnnl_memory_destroy(a);
    dnnl_memory_destroy(w);
    dnnl_memory_destroy(c);
    dnnl_primitive_destroy(prim);
    dnnl_primitive_desc_destroy(pd);
    dnnl_stream_destroy(stream);
    dnnl_engine_destroy(eng);
}
#endif

static int arg_int(const char *s, int lo, int hi)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || end == s || v < lo || v > hi) {
        fprintf(stderr, "bench_gemm: '%s' is not an integer in [%d, %d]\n", s, lo, hi);
        exit(2);
    }
    return (int)v;
}

int main(int argc, char **argv)
{
    if (argc != 1 && argc != 4 && argc != 5) {
        fprintf(stderr, "usage: bench_gemm [M K N [SECONDS]]\n");
        return 2;
    }
    sgemm_ctx g = {4096, 2048, 1024, NULL, NULL, NULL};
    double seconds = 3;
    if (argc >= 4) {
        g.m = arg_int(argv[1], 1, 65536);
        g.k = arg_int(argv[2], 1, 65536);
        g.n = arg_int(argv[3], 1, 65536);
    }
    if (argc == 5)
        seconds = arg_int(argv[4], 1, 600);
    float *a = random_floats((size_t)g.m * (size_t)g.k, 1);
    float *w = random_floats((size_t)g.n * (size_t)g.k, 2);
    float *c = random_floats((size_t)g.m * (size_t)g.n, 3);
    g.a = a, g.w = w, g.c = c;
#ifdef HAVE_DNNL_BENCH
    bench_dnnl("dnnl_bf16", dnnl_bf16, &g, seconds);
    bench_dnnl("dnnl_f32", dnnl_f32, &g, seconds);
#else
    printf("dnnl_bf16 absent\ndnnl_f32 absent\n");
#endif
    printf("openblas_sgemm %.1f\n", best_gflops(run_sgemm, &g, 2.0 * g.m * g.n * g.k, seconds));
    free(a);
    free(w);
    free(c);
    return 0;
}

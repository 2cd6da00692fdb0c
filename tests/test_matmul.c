/* util/matmul: y = x·Wᵀ through oneDNN against an fp64 reference.
 *
 * fp32: every element within 1e-5 of the largest |y| (the same bound OpenBLAS meets), for shapes
 * that take oneDNN (n·k ≥ 2^20) with full row blocks, a padded last block and accumulation
 * (beta 1), and for small shapes (OpenBLAS). bf16: the product of the bf16-rounded x and W,
 * accumulated in fp32, so within 1e-5 of the fp64 product of the rounded operands, and about 2^-9
 * from the fp32 product. Also the rounding of sm_bf16_pack (nearest even, NaN kept) and the
 * OpenBLAS fallback with bf16 weights. And sm_gemm_f32, the general fp32 product (check_gemm);
 * sm_gemm_bf16 and sm_softmax_bf16, attention's bf16 steps; the LM head's row maximum and sum of
 * exponentials. */
#include <cblas.h>
#include <stdbool.h>
#include <stdint.h>

#include "testutil.h"
#include "util/activation.h"
#include "util/matmul.h"
#include "util/mem.h"
#include "util/rng.h"

/* max |y − x·Wᵀ − beta·y0| / max |x·Wᵀ| in fp64 over every element */
static double rel_error(int64_t m, int64_t n, int64_t k, const float *x, const float *w, float beta,
                        const float *y0, const float *y)
{
    double emax = 0, ymax = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++)
                s += (double)x[i * k + p] * w[j * k + p];
            ymax = fmax(ymax, fabs(s));
            emax = fmax(emax, fabs(s + beta * y0[i * n + j] - y[i * n + j]));
        }
    return emax / ymax;
}

static void fill(sm_rng *r, float *v, int64_t n, double scale)
{
    for (int64_t i = 0; i < n; i++)
        v[i] = (float)(scale * sm_rng_normal(r));
}

static void rounded(float *dst, const float *src, int64_t n)
{
    uint16_t *b = xmalloc(sizeof *b * (size_t)n);
    sm_bf16_pack(b, src, (size_t)n);
    sm_bf16_unpack(dst, b, (size_t)n);
    free(b);
}

static void check_shape(sm_rng *r, int64_t m, int64_t n, int64_t k, float beta)
{
    float *x = sm_alloc_f32((size_t)(m * k)), *w = sm_alloc_f32((size_t)(n * k));
    float *y0 = sm_alloc_f32((size_t)(m * n)), *y = sm_alloc_f32((size_t)(m * n));
    float *xr = sm_alloc_f32((size_t)(m * k)), *wr = sm_alloc_f32((size_t)(n * k));
    uint16_t *wb = xmalloc(sizeof *wb * (size_t)(n * k));
    fill(r, x, m * k, 1.0), fill(r, w, n * k, 0.02), fill(r, y0, m * n, 1.0);
    sm_bf16_pack(wb, w, (size_t)(n * k));
    rounded(xr, x, m * k), rounded(wr, w, n * k);

    memcpy(y, y0, sizeof *y * (size_t)(m * n));
    sm_matmul(m, n, k, x, w, NULL, beta, y);
    double e = rel_error(m, n, k, x, w, beta, y0, y);
    CHECK(e < 1e-5, "fp32 %lld×%lld·%lld×%lld beta %g: error %.2e (%s)", (long long)m, (long long)k, (long long)n,
          (long long)k, beta, e, sm_matmul_impl(n, k, false));

    if (sm_matmul_bf16_supported()) {
        memcpy(y, y0, sizeof *y * (size_t)(m * n));
        sm_matmul(m, n, k, x, NULL, wb, beta, y);
        double eb = rel_error(m, n, k, xr, wr, beta, y0, y), ef = rel_error(m, n, k, x, w, beta, y0, y);
        CHECK(eb < 1e-5, "bf16 %lld×%lld·%lld×%lld: error %.2e against the rounded operands (%s)", (long long)m,
              (long long)k, (long long)n, (long long)k, eb, sm_matmul_impl(n, k, true));
        CHECK(ef > 1e-5 && ef < 2e-2, "bf16: error %.2e against fp32 operands (bf16 rounding, not garbage)", ef);
        /* a source rounded beforehand (the MoE block's gathered rows): the same bits */
        uint16_t *xb = sm_zalloc_lines((size_t)(sm_matmul_bf16_rows(m) * k), sizeof *xb);
        float *yb = sm_alloc_f32((size_t)(m * n));
        sm_bf16_pack(xb, x, (size_t)(m * k));
        memcpy(yb, y0, sizeof *yb * (size_t)(m * n));
        sm_matmul_bf16(m, n, k, xb, wb, beta, yb);
        CHECK(!memcmp(y, yb, sizeof *y * (size_t)(m * n)), "bf16 %lld rows from a rounded source: the same bits",
              (long long)m);
        if (beta == 0.0f) { /* into a y with room for the pad rows */
            float *yq = sm_alloc_f32((size_t)(sm_matmul_bf16_rows(m) * n));
            sm_matmul_bf16_pad(m, n, k, xb, wb, yq);
            CHECK(!memcmp(y, yq, sizeof *y * (size_t)(m * n)), "bf16 %lld rows into a padded y: the same bits",
                  (long long)m);
            free(yq);
        }
        free(xb), free(yb);
    }
    /* the fallback widens bf16 weights: the product of x and the rounded W */
    memcpy(y, y0, sizeof *y * (size_t)(m * n));
    sm_matmul_blas(m, n, k, x, NULL, wb, beta, y);
    double el = rel_error(m, n, k, x, wr, beta, y0, y);
    CHECK(el < 1e-5, "OpenBLAS with bf16 weights: error %.2e", el);
    free(x), free(w), free(y0), free(y), free(xr), free(wr), free(wb);
}

/* sm_gemm_f32 (the union SVD's products): every transpose pair, leading dimensions wider than the
 * matrices, beta 0 and 1, against fp64 within 1e-5 of the largest |C|; below 2^24 multiply-adds
 * bit-identical to cblas_sgemm (the demo's merges keep their exact results). */
static void check_gemm(sm_rng *r, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float beta)
{
    const int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 7;
    const int64_t arows = ta ? k : m, brows = tb ? n : k;
    float *a = sm_alloc_f32((size_t)(arows * lda)), *b = sm_alloc_f32((size_t)(brows * ldb));
    float *c0 = sm_alloc_f32((size_t)(m * ldc)), *c = sm_alloc_f32((size_t)(m * ldc));
    fill(r, a, arows * lda, 1.0), fill(r, b, brows * ldb, 0.05), fill(r, c0, m * ldc, 1.0);
    memcpy(c, c0, sizeof *c * (size_t)(m * ldc));
    sm_gemm_f32(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
    double emax = 0, cmax = 0, pad = 0;
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++)
                s += (double)(ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
            cmax = fmax(cmax, fabs(s));
            emax = fmax(emax, fabs(s + beta * c0[i * ldc + j] - c[i * ldc + j]));
        }
        for (int64_t j = n; j < ldc; j++) /* the columns past n are not C's */
            pad = fmax(pad, fabs(c[i * ldc + j] - c0[i * ldc + j]));
    }
    const char *impl = sm_gemm_impl(ta, tb, m, n, k, lda, ldb, ldc);
    CHECK(emax / cmax < 1e-5 && pad == 0, "gemm %c%c %lld×%lld·%lld beta %g: error %.2e, past ldc %g (%s)",
          ta ? 'T' : 'N', tb ? 'T' : 'N', (long long)m, (long long)n, (long long)k, beta, emax / cmax, pad, impl);
    if (m * n * k < (int64_t)1 << 24) {
        float *cb = sm_alloc_f32((size_t)(m * ldc));
        memcpy(cb, c0, sizeof *cb * (size_t)(m * ldc));
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n,
                    (int)k, 1.0f, a, (int)lda, b, (int)ldb, beta, cb, (int)ldc);
        CHECK(!strcmp(impl, "openblas") && !memcmp(cb, c, sizeof *c * (size_t)(m * ldc)),
              "gemm below 2^24 multiply-adds is OpenBLAS's, bit for bit (%s)", impl);
        free(cb);
    } else if (sm_gemm_dnnl(m, n, k)) {
        CHECK(strcmp(impl, "openblas") != 0, "gemm %lld×%lld·%lld runs on oneDNN (%s)", (long long)m, (long long)n,
              (long long)k, impl);
    }
    free(a), free(b), free(c0), free(c);
}

static void check_rounding(void)
{
    float in[6] = {1.0f, 1.00390625f /* 1 + 2^-8: a tie, to even (1) */, 1.01171875f /* 1 + 3·2^-8: tie, up */,
                   -2.5f, NAN, 3.0e38f};
    uint16_t out[6];
    sm_bf16_pack(out, in, 6);
    CHECK(out[0] == 0x3f80 && out[1] == 0x3f80 && out[2] == 0x3f82, "ties round to even: %04x %04x %04x", out[0],
          out[1], out[2]);
    CHECK(out[3] == 0xc020, "-2.5 is exact: %04x", out[3]);
    float back[6];
    sm_bf16_unpack(back, out, 6);
    CHECK(isnan(back[4]), "NaN stays NaN (%04x)", out[4]);
    CHECK(isfinite(back[5]) && fabs(back[5] - 3.0e38) < 3.0e38 / 128, "large finite values stay finite: %g", back[5]);

    /* the vectorized rounding against the rule spelled out one value at a time, on random bit
     * patterns (every exponent: subnormals, Inf, NaN payloads, ties) at every vector offset */
    enum { N = 100003 };
    uint32_t *bits = xmalloc(sizeof *bits * N);
    uint16_t *got = xmalloc(sizeof *got * N);
    uint64_t st = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < N; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        bits[i] = (uint32_t)(st >> 32);
        if (i % 7 == 0)
            bits[i] = (bits[i] & 0xffff0000u) | 0x8000u; /* exact ties */
    }
    int bad = 0;
    for (int off = 0; off < 3; off++) {
        sm_bf16_pack(got + off, (const float *)(const void *)(bits + off), (size_t)(N - off));
        for (int i = off; i < N; i++) {
            uint32_t u = bits[i];
            uint16_t want = (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)((u >> 16) | 0x40u)
                                                            : (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
            bad += got[i] != want;
        }
    }
    CHECK(bad == 0, "sm_bf16_pack rounds %d random bit patterns as the scalar rule does (%d differ)", N, bad);
    free(bits), free(got);
}

/* sm_swiglu_bf16 (vector expf) against the scalar formula rounded by sm_bf16_pack: within one
 * bf16 step everywhere, the same bits almost everywhere (expf's vector version is within 1 ulp),
 * and Inf/NaN inputs give what the scalar formula gives, at every vector offset. */
static void check_swiglu(sm_rng *r)
{
    enum { N = 100003 };
    float *g = xmalloc(sizeof *g * N), *u = xmalloc(sizeof *u * N), *v = xmalloc(sizeof *v * N);
    uint16_t *got = xmalloc(sizeof *got * N), *want = xmalloc(sizeof *want * N);
    for (int i = 0; i < N; i++) {
        g[i] = (float)(sm_rng_uniform(r) * 40.0 - 20.0);
        u[i] = (float)(sm_rng_uniform(r) * 8.0 - 4.0);
    }
    const float special[] = {INFINITY, -INFINITY, NAN, 0.0f, -0.0f, 100.0f, -100.0f, 88.0f, -88.0f};
    for (int i = 0; i < 9; i++)
        g[i * 1000 + 3] = special[i], g[i * 1000 + 4] = 1.0f, u[i * 1000 + 4] = special[i];
    for (int i = 0; i < N; i++)
        v[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    sm_bf16_pack(want, v, N);
    int differ = 0, far = 0, nan_bad = 0;
    for (int off = 0; off < 3; off++) {
        sm_swiglu_bf16(got + off, g + off, u + off, (size_t)(N - off));
        for (int i = off; i < N; i++) {
            float a, b;
            uint32_t ua = (uint32_t)got[i] << 16, ub = (uint32_t)want[i] << 16;
            memcpy(&a, &ua, sizeof a), memcpy(&b, &ub, sizeof b);
            if (isnan(a) || isnan(b)) {
                nan_bad += isnan(a) != isnan(b);
                continue;
            }
            differ += got[i] != want[i];
            far += got[i] != want[i] && (a != a || fabs(a - b) > fabs(b) / 128.0 + 1e-30);
        }
    }
    CHECK(nan_bad == 0 && far == 0, "sm_swiglu_bf16 is within one bf16 step of the scalar formula (%d NaN mismatches, %d further)",
          nan_bad, far);
    CHECK(differ <= 3 * N / 1000, "sm_swiglu_bf16 gives the scalar formula's bits in all but %d of %d values", differ, 3 * N);
    free(g), free(u), free(v), free(got), free(want);
}

/* sm_gemm_bf16 (attention's per-head products): both B layouts, dense and with leading
 * dimensions wider than the matrices, against the fp64 product of the bf16 values within 1e-5 of
 * the largest |C| (fp32 accumulation), the columns past n untouched. */
static void check_gemm_bf16(sm_rng *r, bool tb, int64_t m, int64_t n, int64_t k, int64_t pad)
{
    const int64_t lda = k + pad, ldb = (tb ? k : n) + pad, ldc = n + pad, brows = tb ? n : k;
    float *af = sm_alloc_f32((size_t)(m * lda)), *bf = sm_alloc_f32((size_t)(brows * ldb));
    float *c = sm_alloc_f32((size_t)(m * ldc));
    uint16_t *a = xmalloc(sizeof *a * (size_t)(m * lda)), *b = xmalloc(sizeof *b * (size_t)(brows * ldb));
    fill(r, af, m * lda, 1.0), fill(r, bf, brows * ldb, 0.1), fill(r, c, m * ldc, 1.0);
    sm_bf16_pack(a, af, (size_t)(m * lda)), sm_bf16_pack(b, bf, (size_t)(brows * ldb));
    sm_bf16_unpack(af, a, (size_t)(m * lda)), sm_bf16_unpack(bf, b, (size_t)(brows * ldb));
    const float sentinel = c[n];
    sm_gemm_bf16(tb, m, n, k, a, lda, b, ldb, c, ldc);
    double emax = 0, cmax = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++)
                s += (double)af[i * lda + p] * (tb ? bf[j * ldb + p] : bf[p * ldb + j]);
            cmax = fmax(cmax, fabs(s));
            emax = fmax(emax, fabs(s - c[i * ldc + j]));
        }
    CHECK(emax / cmax < 1e-5 && (pad == 0 || c[n] == sentinel), "gemm bf16 N%c %lld×%lld·%lld ld +%lld: error %.2e",
          tb ? 'T' : 'N', (long long)m, (long long)n, (long long)k, (long long)pad, emax / cmax);
    free(af), free(bf), free(c), free(a), free(b);
}

/* sm_softmax_bf16 against softmax in fp64: every probability within one bf16 step (plus the fp32
 * sum's error), exact zeros past the valid length, and stable for scores in the thousands. */
static void check_softmax(sm_rng *r)
{
    enum { N = 300 };
    float row[N], src[N];
    uint16_t got[N];
    int far = 0, masked = 0;
    const int valids[] = {1, 2, 15, 16, 17, 255, 256, 300};
    const double spreads[] = {0.1, 3.0, 3000.0};
    for (int vi = 0; vi < 8; vi++)
        for (int si = 0; si < 3; si++) {
            int valid = valids[vi];
            for (int j = 0; j < N; j++)
                src[j] = (float)(spreads[si] * sm_rng_normal(r));
            memcpy(row, src, sizeof row);
            const float scale = 0.125f;
            sm_softmax_bf16(got, row, valid, N, scale);
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < valid; j++)
                mx = fmax(mx, (double)scale * src[j]);
            for (int j = 0; j < valid; j++)
                sum += exp((double)scale * src[j] - mx);
            for (int j = 0; j < N; j++) {
                uint32_t u = (uint32_t)got[j] << 16;
                float p;
                memcpy(&p, &u, sizeof p);
                if (j >= valid) {
                    masked += got[j] != 0;
                    continue;
                }
                double want = exp((double)scale * src[j] - mx) / sum;
                far += !(fabs(p - want) <= want / 128.0 + 1e-6 * want + 1e-30);
            }
        }
    CHECK(far == 0 && masked == 0,
          "sm_softmax_bf16 within one bf16 step of fp64 (%d further), zeros past valid (%d not)", far, masked);
}

/* sm_row_max: the value of one running `r > mx ? r : mx`, bit for bit, NaNs included; sm_expsum:
 * the sum of exponentials within 1e-6 of fp64 (libmvec's expf is within an ulp or so). */
static void check_row_reductions(sm_rng *r)
{
    enum { N = 50304 + 5 };
    float *row = xmalloc(sizeof *row * N);
    int wrong_max = 0;
    double worst = 0;
    const int lens[] = {1, 7, 16, 33, 512, 513, 50304, N};
    for (int li = 0; li < 8; li++)
        for (int nan_at = -1; nan_at < 3; nan_at++) {
            int n = lens[li];
            for (int j = 0; j < n; j++)
                row[j] = (float)(8.0 * sm_rng_normal(r));
            if (nan_at >= 0 && nan_at < n)
                row[nan_at == 2 ? n - 1 : nan_at] = NAN;
            float want = row[0];
            for (int j = 1; j < n; j++)
                want = row[j] > want ? row[j] : want;
            float got = sm_row_max(row, n);
            wrong_max += memcmp(&got, &want, sizeof got) != 0;
            if (nan_at >= 0 || isnan(want))
                continue;
            double ref = 0;
            for (int j = 0; j < n; j++)
                ref += exp((double)row[j] - want);
            worst = fmax(worst, fabs(sm_expsum(row, n, want) - ref) / ref);
        }
    CHECK(wrong_max == 0, "sm_row_max gives one running maximum's bits (%d rows differ)", wrong_max);
    CHECK(worst < 1e-6, "sm_expsum within %.1e of the fp64 sum", worst);
    free(row);
}

int main(void)
{
    sm_rng r;
    sm_rng_seed(&r, 7);
    check_rounding();
    check_swiglu(&r);
    check_softmax(&r);
    check_row_reductions(&r);
    printf("# bf16 %s on this CPU\n", sm_matmul_bf16_supported() ? "supported" : "not supported (fp32 only)");
    check_shape(&r, 1024 + 37, 1024, 1024, 0.0f); /* a full row block and a padded one */
    check_shape(&r, 19, 1100, 1000, 1.0f);       /* few rows, accumulate */
    check_shape(&r, 300, 1024, 1024, 1.0f);       /* accumulate, padded block */
    check_shape(&r, 50, 64, 48, 0.0f);            /* small: OpenBLAS in fp32 */
    for (int t = 0; t < 4; t++) {
        check_gemm(&r, t & 1, t & 2, 1024 + 40, 300, 256, t & 1 ? 1.0f : 0.0f); /* a full row block and a rest */
        check_gemm(&r, t & 1, t & 2, 60, 70, 80, t & 2 ? 1.0f : 0.0f);       /* small: OpenBLAS */
    }
    if (sm_matmul_bf16_supported()) {
        check_gemm_bf16(&r, true, 256, 256, 128, 0);  /* attention's scores */
        check_gemm_bf16(&r, false, 256, 128, 256, 0); /* and weighted values */
        check_gemm_bf16(&r, true, 37, 70, 50, 5);
        check_gemm_bf16(&r, false, 37, 70, 50, 3);
    }
    sm_precision p;
    CHECK(sm_precision_parse("fp32", &p) == 0 && p == SM_PRECISION_FP32, "fp32 parses");
    CHECK(sm_precision_parse("auto", &p) == 0 &&
              p == (sm_matmul_bf16_pays() ? SM_PRECISION_BF16 : SM_PRECISION_FP32),
          "auto is bf16 exactly where it pays (%s here)", sm_precision_name(p));
    CHECK(!sm_matmul_bf16_pays() || sm_matmul_bf16_supported(), "bf16 pays only where supported");
    CHECK(sm_precision_parse("fp16", &p) != 0, "fp16 is refused");
    printf("%d checks, %d failed\n", tu_checks, tu_failures);
    return tu_failures ? 1 : 0;
}

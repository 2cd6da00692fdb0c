/* matmul: y = x·Wᵀ through oneDNN's matmul (issue 16 item 4), in fp32 or in bf16 with fp32
 * accumulation, with OpenBLAS sgemm as the fallback when oneDNN refuses a shape.
 *
 * x is m×k fp32 row-major, W is n×k row-major (the layout of a Hugging Face weight), stored fp32
 * or bf16; y is m×n fp32. The precision is the weights' storage: bf16 weights (converted once when
 * a layer is loaded, or read straight from a bf16 checkpoint) run bf16 × bf16 → fp32, where x is
 * rounded to bf16 per call; fp32 weights run oneDNN's fp32 kernels. Primitives are created once
 * per (n, k, precision, accumulate, threads) with a runtime M and kept for the process.
 * Threads: each calling thread uses its own OpenMP thread count (sm_matmul_set_threads), so the
 * forward pass's workers run single-threaded like their OpenBLAS calls. */
#ifndef SM_MATMUL_H
#define SM_MATMUL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { SM_PRECISION_FP32, SM_PRECISION_BF16 } sm_precision;

/* The CPU runs bf16 dot products natively (oneDNN's ISA: AVX512-BF16 or AMX). */
bool sm_matmul_bf16_supported(void);
/* bf16 is supported and faster than fp32: AMX, or AVX512-BF16 on AMD (on Intel without AMX its
 * dot products run at the fp32 FMA rate, and rounding x costs extra). */
bool sm_matmul_bf16_pays(void);
/* "auto" (bf16 where it pays, else fp32), "fp32" or "bf16" (refused, with a message naming the
 * missing instructions, where unsupported): 0, or -1 with a message. */
int sm_precision_parse(const char *s, sm_precision *out);
const char *sm_precision_name(sm_precision p);

/* Round to nearest even (NaN stays NaN). */
void sm_bf16_pack(uint16_t *restrict dst, const float *restrict src, size_t n);
void sm_bf16_unpack(float *dst, const uint16_t *src, size_t n);

/* y (m×n) = x (m×k) · Wᵀ + beta·y, beta 0 or 1; W is w (fp32) or, when wb is non-NULL, wb
 * (bf16, computed in bf16). */
void sm_matmul(int64_t m, int64_t n, int64_t k, const float *x, const float *w, const uint16_t *wb,
               float beta, float *y);

/* y (m×n) = xb (m×k) · Wᵀ + beta·y in bf16, the source already rounded to bf16 (sm_bf16_pack): for
 * a source that several products share, or that a loop can write as bf16 directly. xb must be
 * readable for sm_matmul_bf16_rows(m) rows (whatever the extra rows hold: they only pad the
 * kernel's fixed row count). The result is bit-identical to sm_matmul on the unrounded rows. */
void sm_matmul_bf16(int64_t m, int64_t n, int64_t k, const uint16_t *xb, const uint16_t *wb, float beta, float *y);
int64_t sm_matmul_bf16_rows(int64_t m);
/* The same with beta 0 into a y that has room for sm_matmul_bf16_rows(m) rows: the kernel writes
 * its pad rows there (scratch, whatever they hold after) instead of into a buffer copied back. */
void sm_matmul_bf16_pad(int64_t m, int64_t n, int64_t k, const uint16_t *xb, const uint16_t *wb, float *y);

/* The same on OpenBLAS sgemm (the fallback; bf16 weights widened in panels). For benchmarks and
 * tests that compare the two. */
void sm_matmul_blas(int64_t m, int64_t n, int64_t k, const float *x, const float *w,
                    const uint16_t *wb, float beta, float *y);

/* Whether bf16 products may run inside util/parallel's items (on OpenMP's pooled threads): yes,
 * except in sanitizer builds, where LeakSanitizer (GCC 12) crashes at exit scanning the dynamic
 * TLS oneDNN leaves in pooled threads (matmul.c's product_state); callers then run their items
 * serially. */
bool sm_matmul_on_pool_threads(void);

/* oneDNN threads of the calling thread (OpenMP's per-thread count); returns the previous one. */
int sm_matmul_set_threads(int n);
/* The implementation oneDNN picks for this shape and precision ("brg:avx512_core_bf16", ...),
 * or "openblas" when it refuses. */
const char *sm_matmul_impl(int64_t n, int64_t k, bool bf16);

/* C (m×n, row-major, leading dimension ldc) = op(A)·op(B) + beta·C in fp32, beta 0 or 1, with
 * cblas_sgemm's row-major conventions (op(A) m×k, op(B) k×n; trans_a: A is stored k×m). Products
 * of at least 2^24 multiply-adds run on oneDNN's fp32 kernels, the rest (and any shape oneDNN
 * refuses) on OpenBLAS sgemm. For the union SVD's Grams and projections (issue 16 item 4). */
void sm_gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                 const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
/* C (m×n, leading dimension ldc) = A (m×k, lda) · op(B) in bf16 with fp32 accumulation (beta 0):
 * op(B) is B stored k×n (ldb), or with trans_b Bᵀ of a B stored n×k (ldb). For attention's
 * per-head products on strided rows: exactly m rows are read and written (no padding; a
 * primitive per m, which attention keeps to a few values). oneDNN, or OpenBLAS on the widened
 * values where oneDNN refuses. */
void sm_gemm_bf16(bool trans_b, int64_t m, int64_t n, int64_t k, const uint16_t *a, int64_t lda, const uint16_t *b,
                  int64_t ldb, float *c, int64_t ldc);
/* sm_gemm_f32 runs this size on oneDNN (it is large enough and oneDNN is loaded): a caller with a
 * symmetric product then computes it whole there instead of half of it with OpenBLAS ssyrk. */
bool sm_gemm_dnnl(int64_t m, int64_t n, int64_t k);
/* The implementation sm_gemm_f32 uses for this shape (a block of its first rows). */
const char *sm_gemm_impl(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb,
                         int64_t ldc);

#endif

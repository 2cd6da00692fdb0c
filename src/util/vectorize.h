/* vectorize: SM_VECTORIZED, for the few simple loops over whole weights or activations whose
 * speed matters (rounding to bf16, converting and checking stored weights): the function is
 * compiled with the loop vectorizer (GCC's -O2 leaves most loops scalar) in clones for AVX-512,
 * AVX2 and the baseline, and the loader picks the clone the CPU runs (GNU ifunc). Results are the
 * same bits in every clone: integer operations, or float ones without reassociation. */
#ifndef SM_VECTORIZE_H
#define SM_VECTORIZE_H

/* SM_VECTORIZED_MATH: the same, and without math-errno, so that calls to math functions declared
 * with a vector version (util/activation.c's expf) may be vectorized: for loops that never read
 * errno after them. Their results may differ from the scalar function's in the last bit. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SM_VECTORIZED __attribute__((target_clones("avx512f", "avx2", "default"), optimize("tree-vectorize")))
#define SM_VECTORIZED_MATH                                                                                   \
    __attribute__((target_clones("avx512f", "avx2", "default"), optimize("tree-vectorize", "no-math-errno")))
#elif defined(__GNUC__) && !defined(__clang__)
#define SM_VECTORIZED __attribute__((optimize("tree-vectorize")))
#define SM_VECTORIZED_MATH __attribute__((optimize("tree-vectorize", "no-math-errno")))
#else
#define SM_VECTORIZED
#define SM_VECTORIZED_MATH
#endif

#endif

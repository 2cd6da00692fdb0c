#include "model/dtype.h"

#include <string.h>
#include <strings.h>

#include "util/vectorize.h"

static const char *const names[SM_DT_COUNT] = {"F32", "F16", "BF16"};
static const size_t sizes[SM_DT_COUNT] = {4, 2, 2};

const char *sm_dtype_name(sm_dtype t) { return (unsigned)t < SM_DT_COUNT ? names[t] : "?"; }
size_t sm_dtype_size(sm_dtype t) { return (unsigned)t < SM_DT_COUNT ? sizes[t] : 0; }

int sm_dtype_parse(const char *s, sm_dtype *out)
{
    for (int i = 0; i < SM_DT_COUNT; i++)
        if (!strcasecmp(s, names[i])) {
            *out = (sm_dtype)i;
            return 0;
        }
    return -1;
}

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* Exponent and mantissa move into place with one shift and one add; only Inf/NaN and
 * zero/subnormal inputs need more (the subnormal renormalised by one float subtraction, exact).
 * Few branches, all predictable on real weights: conversion stays cheap enough that the finite
 * check riding along in sm_to_f32 costs nothing measurable. */
float sm_f16_to_f32(uint16_t h)
{
    uint32_t o = (uint32_t)(h & 0x7fff) << 13, exp = o & 0x0f800000u;
    o += (uint32_t)(127 - 15) << 23;
    if (exp == 0x0f800000u) /* Inf/NaN: all exponent bits, payload kept */
        o += (uint32_t)(128 - 16) << 23;
    else if (exp == 0) /* zero or subnormal: value = man * 2^-24, exact in float */
        o = f2u(u2f(o + (1u << 23)) - u2f(113u << 23));
    return u2f(o | (uint32_t)(h & 0x8000) << 16);
}

uint16_t sm_f32_to_f16(float f)
{
    uint32_t u = f2u(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t exp = (u >> 23) & 0xff;
    uint32_t man = u & 0x7fffff;
    if (exp == 0xff) {
        if (man == 0)
            return sign | 0x7c00;
        uint16_t m = (uint16_t)(man >> 13);
        return sign | 0x7c00 | (m ? m : 0x200); /* keep it a NaN */
    }
    int e = (int)exp - 127 + 15;
    if (e >= 0x1f)
        return sign | 0x7c00; /* overflow -> inf */
    if (e <= 0) {
        /* subnormal or zero in half: shift the full mantissa (with hidden bit) */
        if (e < -10)
            return sign;
        uint32_t m = man | 0x800000;
        int shift = 14 - e;          /* 24-bit mantissa down to 10-bit subnormal field */
        uint32_t half = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1)))
            half++;
        return sign | (uint16_t)half; /* carry into the exponent field is correct */
    }
    uint32_t half = ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1)))
        half++; /* may carry into exponent, up to inf: correct */
    return sign | (uint16_t)half;
}

float sm_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t sm_f32_to_bf16(float f)
{
    uint32_t u = f2u(f);
    if ((u & 0x7fffffff) > 0x7f800000)
        return (uint16_t)((u >> 16) | 0x40); /* quiet NaN, sign kept */
    uint32_t rounding = 0x7fff + ((u >> 16) & 1);
    return (uint16_t)((u + rounding) >> 16);
}

/* A stored element is non-finite when all its exponent bits are set (Inf or NaN). */
static inline unsigned f32_bad(uint32_t u) { return (u & 0x7f800000u) == 0x7f800000u; }
static inline unsigned f16_bad(uint16_t h) { return (h & 0x7c00u) == 0x7c00u; }
static inline unsigned bf16_bad(uint16_t h) { return (h & 0x7f80u) == 0x7f80u; }

/* Index of the first non-finite element, element by element: only run once one is known to exist. */
static size_t locate_nonfinite(sm_dtype t, const void *src, size_t n)
{
    const unsigned char *p = src;
    size_t es = sm_dtype_size(t);
    for (size_t i = 0; i < n; i++) {
        uint32_t u = 0;
        uint16_t h = 0;
        if (t == SM_DT_F32)
            memcpy(&u, p + 4 * i, 4);
        else if (es == 2)
            memcpy(&h, p + 2 * i, 2);
        if (t == SM_DT_F32 ? f32_bad(u) : t == SM_DT_F16 ? f16_bad(h) : t == SM_DT_BF16 ? bf16_bad(h) : 0)
            return i;
    }
    return n;
}

/* The finite check rides along with the conversion: per 64-bit word of stored elements, mask
 * each element's exponent and add its lowest bit, which carries into the element's top bit
 * exactly when the exponent is all ones (Inf or NaN); OR-ing the words keeps that bit. Two
 * integer operations per word, no compare or branch, so converting costs about what it did;
 * the index is looked up only when something was found. */
#define F32_EXP2 0x7f8000007f800000ull /* two F32 exponents per word */
#define F32_LOW2 0x0080000000800000ull
#define F32_TOP2 0x8000000080000000ull
#define BF16_EXP4 0x7f807f807f807f80ull /* four BF16 exponents */
#define BF16_LOW4 0x0080008000800080ull
#define H16_TOP4 0x8000800080008000ull
#define F16_EXP 0x7c00u
#define F16_LOW 0x0400u

SM_VECTORIZED size_t sm_to_f32(sm_dtype t, const void *src, float *dst, size_t n)
{
    const unsigned char *p = src;
    uint64_t acc = 0, top = 0;
    size_t i = 0;
    switch (t) {
    case SM_DT_F32: {
        /* 16-byte vectors (plain SSE2/NEON): a copy at memcpy speed with the check riding along */
        typedef uint64_t u64x2 __attribute__((vector_size(16)));
        u64x2 vacc = {0, 0};
        for (; i + 4 <= n; i += 4) {
            u64x2 w;
            memcpy(&w, p + 4 * i, 16);
            memcpy(dst + i, &w, 16);
            vacc |= (w & F32_EXP2) + F32_LOW2;
        }
        acc = vacc[0] | vacc[1];
        for (; i < n; i++) {
            uint32_t u;
            memcpy(&u, p + 4 * i, 4);
            acc |= (u & 0x7f800000u) + 0x00800000u;
            dst[i] = u2f(u);
        }
        top = F32_TOP2;
        break;
    }
    case SM_DT_F16:
        for (; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            acc |= (h & F16_EXP) + F16_LOW;
            dst[i] = sm_f16_to_f32(h);
        }
        top = H16_TOP4;
        break;
    case SM_DT_BF16: {
        uint32_t acc16 = 0; /* one element a step: the loop vectorizes */
        for (; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            acc16 |= (h & 0x7f80u) + 0x0080u;
            dst[i] = u2f((uint32_t)h << 16);
        }
        acc = acc16;
        top = 0x8000u;
        break;
    }
    default:
        break;
    }
    return acc & top ? locate_nonfinite(t, src, n) : n;
}

SM_VECTORIZED size_t sm_first_nonfinite(sm_dtype t, const void *src, size_t n)
{
    /* the same word-wise test as sm_to_f32, without the conversion (raw copies, written data) */
    const unsigned char *p = src;
    size_t es = sm_dtype_size(t), per = es ? 8 / es : 0, i = 0;
    uint64_t exp = t == SM_DT_F32 ? F32_EXP2 : t == SM_DT_F16 ? 0x7c007c007c007c00ull : BF16_EXP4;
    uint64_t low = t == SM_DT_F32 ? F32_LOW2 : t == SM_DT_F16 ? 0x0400040004000400ull : BF16_LOW4;
    uint64_t top = t == SM_DT_F32 ? F32_TOP2 : H16_TOP4, acc = 0;
    if (!per)
        return n;
    size_t words = n / per; /* a counted loop: it vectorizes */
    for (size_t j = 0; j < words; j++) {
        uint64_t w;
        memcpy(&w, p + 8 * j, 8);
        acc |= (w & exp) + low;
    }
    i = words * per;
    if (acc & top || locate_nonfinite(t, p + es * i, n - i) < n - i)
        return locate_nonfinite(t, src, n);
    return n;
}

size_t sm_from_f32(sm_dtype t, const float *src, void *dst, size_t n)
{
    unsigned char *p = dst;
    switch (t) {
    case SM_DT_F32:
        memcpy(dst, src, n * 4);
        break;
    case SM_DT_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = sm_f32_to_f16(src[i]);
            memcpy(p + 2 * i, &h, 2);
        }
        break;
    case SM_DT_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = sm_f32_to_bf16(src[i]);
            memcpy(p + 2 * i, &h, 2);
        }
        break;
    default:
        return n;
    }
    return sm_first_nonfinite(t, dst, n); /* on the stored values: F16 overflow counts */
}

const char *sm_nonfinite_name(float v)
{
    return v != v ? "nan" : v > 0 ? "inf" : v < 0 ? "-inf" : "finite";
}

#include "model/dtype.h"

#include <string.h>
#include <strings.h>

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

float sm_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0x1f) /* inf / NaN: keep the payload */
        return u2f(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0)
            return u2f(sign);
        /* subnormal: value = man * 2^-24, exact in float */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return u2f(sign | ((exp + 112) << 23) | (man << 13));
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

size_t sm_first_nonfinite(sm_dtype t, const void *src, size_t n)
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

/* The finite check rides along with the conversion: a branch-free OR per element in the same
 * loop (which stays vectorisable), and a second look only when something was found. */
size_t sm_to_f32(sm_dtype t, const void *src, float *dst, size_t n)
{
    const unsigned char *p = src;
    unsigned bad = 0;
    switch (t) {
    case SM_DT_F32:
        for (size_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, p + 4 * i, 4);
            bad |= f32_bad(u);
            dst[i] = u2f(u);
        }
        break;
    case SM_DT_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            bad |= f16_bad(h);
            dst[i] = sm_f16_to_f32(h);
        }
        break;
    case SM_DT_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            bad |= bf16_bad(h);
            dst[i] = u2f((uint32_t)h << 16);
        }
        break;
    default:
        break;
    }
    return bad ? sm_first_nonfinite(t, src, n) : n;
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

/* F16 / BF16 conversion: exhaustive round trips and the edge cases (subnormals, inf, NaN,
 * rounding ties, overflow). */
#include "model/dtype.h"
#include "testutil.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float fl(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

int main(void)
{
    /* Every half value survives f16 -> f32 -> f16 exactly (NaNs stay NaN). */
    int bad = 0, badnan = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = sm_f16_to_f32((uint16_t)h);
        uint16_t back = sm_f32_to_f16(f);
        bool is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (is_nan)
            badnan += !isnan(f) || (back & 0x7c00) != 0x7c00 || !(back & 0x3ff);
        else
            bad += back != h;
    }
    CHECK(bad == 0, "f16 round trip exact for all non-NaN values (%d mismatches)", bad);
    CHECK(badnan == 0, "f16 NaNs stay NaN (%d mismatches)", badnan);
    bad = badnan = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = sm_bf16_to_f32((uint16_t)h);
        uint16_t back = sm_f32_to_bf16(f);
        bool is_nan = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
        if (is_nan)
            badnan += !isnan(f) || !isnan(sm_bf16_to_f32(back));
        else
            bad += back != h;
    }
    CHECK(bad == 0, "bf16 round trip exact for all non-NaN values (%d mismatches)", bad);
    CHECK(badnan == 0, "bf16 NaNs stay NaN (%d mismatches)", badnan);

    /* Known values. */
    CHECK(sm_f16_to_f32(0x3c00) == 1.0f, "f16 0x3c00 = 1");
    CHECK(sm_f16_to_f32(0xc000) == -2.0f, "f16 0xc000 = -2");
    CHECK(sm_f16_to_f32(0x7bff) == 65504.0f, "f16 max = 65504");
    CHECK(sm_f16_to_f32(0x0001) == 0x1p-24f, "smallest f16 subnormal = 2^-24");
    CHECK(sm_f16_to_f32(0x03ff) == 1023 * 0x1p-24f, "largest f16 subnormal");
    CHECK(sm_f16_to_f32(0x0400) == 0x1p-14f, "smallest f16 normal");
    CHECK(isinf(sm_f16_to_f32(0x7c00)) && sm_f16_to_f32(0x7c00) > 0, "f16 +inf");
    CHECK(isinf(sm_f16_to_f32(0xfc00)) && sm_f16_to_f32(0xfc00) < 0, "f16 -inf");
    CHECK(bits(sm_f16_to_f32(0x8000)) == 0x80000000u, "f16 -0 keeps its sign");
    CHECK(sm_bf16_to_f32(0x3f80) == 1.0f, "bf16 0x3f80 = 1");
    CHECK(sm_bf16_to_f32(0x0001) == fl(0x00010000u), "bf16 subnormal");

    /* f32 -> f16 rounding: to nearest, ties to even; overflow to inf; underflow to (signed) zero. */
    CHECK(sm_f32_to_f16(65520.0f) == 0x7c00, "65520 rounds up to inf (tie at max+ulp/2 goes to even = inf)");
    CHECK(sm_f32_to_f16(65519.0f) == 0x7bff, "65519 rounds down to 65504");
    CHECK(sm_f32_to_f16(1e10f) == 0x7c00, "overflow -> +inf");
    CHECK(sm_f32_to_f16(-1e10f) == 0xfc00, "overflow -> -inf");
    CHECK(sm_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00, "1 + half ulp ties to even (down)");
    CHECK(sm_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02, "1 + 1.5 ulp ties to even (up)");
    CHECK(sm_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f) == 0x3c01, "just above the tie rounds up");
    CHECK(sm_f32_to_f16(0x1p-25f) == 0x0000, "2^-25 (tie) rounds to even zero");
    CHECK(sm_f32_to_f16(0x1p-25f + 0x1p-30f) == 0x0001, "just above 2^-25 rounds to the smallest subnormal");
    CHECK(sm_f32_to_f16(3 * 0x1p-25f) == 0x0002, "1.5 x smallest subnormal ties to even (2)");
    CHECK(sm_f32_to_f16(1e-10f) == 0x0000, "deep underflow -> 0");
    CHECK(sm_f32_to_f16(-1e-10f) == 0x8000, "deep underflow keeps the sign");
    CHECK(sm_f32_to_f16(0x1p-14f - 0x1p-25f) == 0x0400, "rounding carries from subnormal into the smallest normal");
    CHECK(isnan(sm_f16_to_f32(sm_f32_to_f16(NAN))), "NaN -> f16 NaN");
    /* bf16 */
    CHECK(sm_f32_to_bf16(fl(0x3f808000u)) == 0x3f80, "bf16 tie to even (down)");
    CHECK(sm_f32_to_bf16(fl(0x3f818000u)) == 0x3f82, "bf16 tie to even (up)");
    CHECK(sm_f32_to_bf16(fl(0x3f808001u)) == 0x3f81, "bf16 above tie rounds up");
    CHECK(sm_f32_to_bf16(fl(0x7f7fffffu)) == 0x7f80, "bf16 overflow of max float -> inf");
    CHECK(sm_f32_to_bf16(INFINITY) == 0x7f80 && sm_f32_to_bf16(-INFINITY) == 0xff80, "bf16 inf");
    CHECK(isnan(sm_bf16_to_f32(sm_f32_to_bf16(fl(0x7f800001u)))), "signalling NaN stays NaN in bf16");
    CHECK(sm_f32_to_bf16(fl(0x00000001u)) == 0x0000, "smallest f32 subnormal rounds to bf16 zero");
    CHECK(sm_f32_to_bf16(fl(0x00018000u)) == 0x0002, "bf16 subnormal tie to even");

    /* Bulk converters agree with the scalar ones. */
    float src[5] = {1.5f, -0.0f, 0x1p-20f, 70000.0f, -3.25f}, dst[5];
    uint16_t h[5];
    sm_from_f32(SM_DT_F16, src, h, 5);
    sm_to_f32(SM_DT_F16, h, dst, 5);
    CHECK(dst[0] == 1.5f && bits(dst[1]) == 0x80000000u && dst[2] == 0x1p-20f && isinf(dst[3]) && dst[4] == -3.25f,
          "bulk f16 conversion");
    sm_from_f32(SM_DT_BF16, src, h, 5);
    sm_to_f32(SM_DT_BF16, h, dst, 5);
    CHECK(dst[0] == 1.5f && dst[2] == 0x1p-20f && dst[3] == 70144.0f && dst[4] == -3.25f, "bulk bf16 conversion");
    /* The converters report the first non-finite element (issue 14 §5): found in the
     * conversion pass itself, in every dtype, and F16 overflow of a finite float counts. */
    CHECK(sm_from_f32(SM_DT_F16, src, h, 5) == 3, "70000 overflows F16: index 3 reported");
    CHECK(sm_to_f32(SM_DT_F16, h, dst, 5) == 3, "reading it back reports index 3");
    CHECK(sm_from_f32(SM_DT_BF16, src, h, 5) == 5 && sm_to_f32(SM_DT_BF16, h, dst, 5) == 5, "finite BF16: n");
    float big[4] = {1.0f, 3e38f, NAN, -INFINITY}, got[4];
    CHECK(sm_to_f32(SM_DT_F32, big, got, 4) == 2 && got[1] == 3e38f && isnan(got[2]) && isinf(got[3]),
          "F32: 3e38 is finite, the NaN at 2 is the first non-finite; all converted");
    CHECK(sm_to_f32(SM_DT_F32, big, got, 2) == 2, "F32 all finite: n");
    uint16_t bf[3] = {0x3f80, 0x3f80, 0xff80}; /* 1, 1, -inf */
    CHECK(sm_to_f32(SM_DT_BF16, bf, got, 3) == 2 && isinf(got[2]) && got[2] < 0, "BF16 -inf at 2");
    uint16_t hf[3] = {0x7e00, 0x3c00, 0x7c00}; /* NaN, 1, inf */
    CHECK(sm_to_f32(SM_DT_F16, hf, got, 3) == 0 && sm_first_nonfinite(SM_DT_F16, hf + 1, 2) == 1, "F16 NaN, inf");
    CHECK(sm_from_f32(SM_DT_F32, big, got, 4) == 2, "F32 store reports the NaN");
    /* Long arrays (the vectorized loops and their tails): one Inf or NaN at each of several
     * places, in each stored dtype, is the index reported by the check and by the conversion,
     * which also converts every value (bf16: exactly). */
    enum { LONG = 1037 };
    static const int at[] = {0, 1, 3, 63, 64, 517, LONG - 4, LONG - 1};
    static const sm_dtype dts[] = {SM_DT_BF16, SM_DT_F16, SM_DT_F32};
    float *vals = malloc(sizeof *vals * LONG), *back = malloc(sizeof *back * LONG);
    unsigned char *raw = malloc(4 * LONG);
    int wrong = 0;
    for (int i = 0; i < LONG; i++)
        vals[i] = (float)((i * 37) % 101 - 50) / 8.0f; /* exact in every dtype */
    for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
        size_t es = sm_dtype_size(dts[d]);
        sm_from_f32(dts[d], vals, raw, LONG);
        wrong += sm_first_nonfinite(dts[d], raw, LONG) != LONG || sm_to_f32(dts[d], raw, back, LONG) != LONG ||
                 memcmp(back, vals, sizeof *vals * LONG) != 0;
        for (size_t j = 0; j < sizeof at / sizeof at[0]; j++) {
            float saved = vals[at[j]];
            vals[at[j]] = j % 2 ? NAN : -INFINITY;
            sm_from_f32(dts[d], vals, raw, LONG);
            wrong += sm_first_nonfinite(dts[d], raw, LONG) != (size_t)at[j] ||
                     sm_to_f32(dts[d], raw, back, LONG) != (size_t)at[j] ||
                     sm_first_nonfinite(dts[d], raw + es * (size_t)(at[j] + 1), LONG - (size_t)at[j] - 1) !=
                         LONG - (size_t)at[j] - 1;
            vals[at[j]] = saved;
        }
    }
    CHECK(wrong == 0, "long arrays: the first non-finite index in every dtype and place (%d wrong)", wrong);
    free(vals), free(back), free(raw);
    CHECK(!strcmp(sm_nonfinite_name(NAN), "nan") && !strcmp(sm_nonfinite_name(-INFINITY), "-inf"), "names");
    sm_dtype t;
    CHECK(sm_dtype_parse("bf16", &t) == 0 && t == SM_DT_BF16, "dtype parse bf16");
    CHECK(sm_dtype_parse("I8", &t) != 0, "dtype parse rejects I8");
    return tu_done();
}

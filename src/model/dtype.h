/* dtype: element types of tensors on disk and exact conversion to/from float. */
#ifndef SM_DTYPE_H
#define SM_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum { SM_DT_F32 = 0, SM_DT_F16, SM_DT_BF16, SM_DT_COUNT } sm_dtype;

const char *sm_dtype_name(sm_dtype t);       /* "F32", "F16", "BF16" */
int sm_dtype_parse(const char *s, sm_dtype *out); /* safetensors spelling; case-insensitive for CLI use */
size_t sm_dtype_size(sm_dtype t);

float sm_f16_to_f32(uint16_t h);
uint16_t sm_f32_to_f16(float f);   /* round to nearest even; overflow -> inf; NaN stays NaN */
float sm_bf16_to_f32(uint16_t h);
uint16_t sm_f32_to_bf16(float f);  /* round to nearest even; NaN stays NaN */

/* Convert n elements of type t at src (little-endian) to float. Returns the index of the first
 * non-finite element (Inf or NaN), or n when all are finite: the check is fused with the
 * conversion, so callers get it for free instead of a second pass over large weights. */
size_t sm_to_f32(sm_dtype t, const void *src, float *dst, size_t n);
/* Convert n floats to type t at dst (little-endian). Returns the index of the first element
 * whose stored value is non-finite (a NaN or Inf, or a finite float beyond the F16 range), or n. */
size_t sm_from_f32(sm_dtype t, const float *src, void *dst, size_t n);
/* Index of the first non-finite of n stored elements of type t, or n. */
size_t sm_first_nonfinite(sm_dtype t, const void *src, size_t n);
/* "nan", "inf" or "-inf": how messages name a non-finite value. */
const char *sm_nonfinite_name(float v);

#endif

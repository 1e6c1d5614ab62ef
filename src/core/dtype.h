/* dtype.h - element types of checkpoint tensors and scalar conversions. */
#ifndef RMU_DTYPE_H
#define RMU_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum rmu_dtype {
    RMU_DT_INVALID = 0,
    RMU_DT_F32,
    RMU_DT_F16,
    RMU_DT_BF16,
    RMU_DT_F8_E4M3, /* OCP FP8 E4M3FN (torch.float8_e4m3fn): no infinities, max 448, 0x7f NaN */
} rmu_dtype;

/* Size in bytes of one element (0 for invalid). */
size_t rmu_dtype_size(rmu_dtype t);
/* Safetensors spelling: "F32", "F16", "BF16", "F8_E4M3". */
const char *rmu_dtype_name(rmu_dtype t);
/* Parses "F32"/"F16"/"BF16"/"F8_E4M3" (safetensors) and "float32"/"float16"/"bfloat16"/
 * "float8_e4m3fn" (torch_dtype, --dtype). Returns RMU_DT_INVALID when unknown. */
rmu_dtype rmu_dtype_parse(const char *s);
/* config.json's torch_dtype spelling: "float32", "float16", "bfloat16" (NULL if none). */
const char *rmu_dtype_torch_name(rmu_dtype t);

static inline float rmu_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest even, as torch does when casting float32 -> bfloat16. */
static inline uint16_t rmu_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float rmu_f16_to_f32(uint16_t h);
uint16_t rmu_f32_to_f16(float f);

/* FP8 E4M3FN: 1 sign, 4 exponent (bias 7), 3 mantissa bits; subnormals below 2^-6. */
float rmu_f8e4m3_to_f32(uint8_t c);
/* Round to nearest even as torch's .to(torch.float8_e4m3fn) after clamping to +-448:
 * finite inputs saturate at +-448 (never the NaN code), NaN stays NaN. */
uint8_t rmu_f32_to_f8e4m3(float f);

/* Convert n elements of type t at src to float32. */
void rmu_to_f32(float *dst, const void *src, rmu_dtype t, size_t n);
/* Convert n float32 values to type t at dst (rounding to nearest even). */
void rmu_from_f32(void *dst, const float *src, rmu_dtype t, size_t n);

#endif

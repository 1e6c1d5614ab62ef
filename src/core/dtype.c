#include "dtype.h"

#include <math.h>
#include <strings.h>

size_t rmu_dtype_size(rmu_dtype t) {
    switch (t) {
    case RMU_DT_F32: return 4;
    case RMU_DT_F16:
    case RMU_DT_BF16: return 2;
    default: return 0;
    }
}

const char *rmu_dtype_name(rmu_dtype t) {
    switch (t) {
    case RMU_DT_F32: return "F32";
    case RMU_DT_F16: return "F16";
    case RMU_DT_BF16: return "BF16";
    default: return "INVALID";
    }
}

const char *rmu_dtype_torch_name(rmu_dtype t) {
    switch (t) {
    case RMU_DT_F32: return "float32";
    case RMU_DT_F16: return "float16";
    case RMU_DT_BF16: return "bfloat16";
    default: return NULL;
    }
}

rmu_dtype rmu_dtype_parse(const char *s) {
    if (!s) return RMU_DT_INVALID;
    if (!strcasecmp(s, "F32") || !strcmp(s, "float32") || !strcmp(s, "fp32")) return RMU_DT_F32;
    if (!strcasecmp(s, "F16") || !strcmp(s, "float16") || !strcmp(s, "fp16")) return RMU_DT_F16;
    if (!strcasecmp(s, "BF16") || !strcmp(s, "bfloat16")) return RMU_DT_BF16;
    return RMU_DT_INVALID;
}

float rmu_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t rmu_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00); /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* overflow -> inf */
    if (a < 0x38800000u) { /* subnormal or zero in f16: units of 2^-24 */
        if (a < 0x33000000u) return (uint16_t)sign; /* below half the smallest subnormal */
        uint32_t man = (a & 0x7fffff) | 0x800000;
        int shift = 126 - (int)(a >> 23); /* 14..24 */
        uint32_t q = man >> shift;
        uint32_t dropped = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (dropped > half || (dropped == half && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t q = ((a - 0x38000000u) >> 13);
    uint32_t dropped = a & 0x1fff;
    if (dropped > 0x1000 || (dropped == 0x1000 && (q & 1))) q++;
    return (uint16_t)(sign | q);
}

void rmu_to_f32(float *dst, const void *src, rmu_dtype t, size_t n) {
    if (t == RMU_DT_F32) {
        memcpy(dst, src, n * 4);
    } else if (t == RMU_DT_BF16) {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = rmu_bf16_to_f32(s[i]);
    } else if (t == RMU_DT_F16) {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = rmu_f16_to_f32(s[i]);
    }
}

void rmu_from_f32(void *dst, const float *src, rmu_dtype t, size_t n) {
    if (t == RMU_DT_F32) {
        memcpy(dst, src, n * 4);
    } else if (t == RMU_DT_BF16) {
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = rmu_f32_to_bf16(src[i]);
    } else if (t == RMU_DT_F16) {
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = rmu_f32_to_f16(src[i]);
    }
}

#include "dtype.h"

#include <math.h>
#include <strings.h>

size_t rmu_dtype_size(rmu_dtype t) {
    switch (t) {
    case RMU_DT_F32: return 4;
    case RMU_DT_F16:
    case RMU_DT_BF16: return 2;
    case RMU_DT_F8_E4M3: return 1;
    default: return 0;
    }
}

const char *rmu_dtype_name(rmu_dtype t) {
    switch (t) {
    case RMU_DT_F32: return "F32";
    case RMU_DT_F16: return "F16";
    case RMU_DT_BF16: return "BF16";
    case RMU_DT_F8_E4M3: return "F8_E4M3";
    default: return "INVALID";
    }
}

const char *rmu_dtype_torch_name(rmu_dtype t) {
    switch (t) {
    case RMU_DT_F32: return "float32";
    case RMU_DT_F16: return "float16";
    case RMU_DT_BF16: return "bfloat16";
    case RMU_DT_F8_E4M3: return "float8_e4m3fn";
    default: return NULL;
    }
}

rmu_dtype rmu_dtype_parse(const char *s) {
    if (!s) return RMU_DT_INVALID;
    if (!strcasecmp(s, "F32") || !strcmp(s, "float32") || !strcmp(s, "fp32")) return RMU_DT_F32;
    if (!strcasecmp(s, "F16") || !strcmp(s, "float16") || !strcmp(s, "fp16")) return RMU_DT_F16;
    if (!strcasecmp(s, "BF16") || !strcmp(s, "bfloat16")) return RMU_DT_BF16;
    if (!strcmp(s, "F8_E4M3") || !strcmp(s, "float8_e4m3fn")) return RMU_DT_F8_E4M3;
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

float rmu_f8e4m3_to_f32(uint8_t c) {
    uint32_t sign = (uint32_t)(c >> 7) << 31, exp = (c >> 3) & 0xf, man = c & 7, u;
    if (exp == 0xf && man == 7) {
        u = sign | 0x7fc00000u; /* the only NaN codes: S.1111.111 */
    } else if (exp == 0) { /* subnormal: man x 2^-9 */
        float f = (float)man * (1.0f / 512.0f);
        return sign ? -f : f;
    } else {
        u = sign | ((exp + 127 - 7) << 23) | (man << 20);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint8_t rmu_f32_to_f8e4m3(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7f;      /* NaN */
    if (a >= 0x43e00000u) return sign | 0x7e;     /* >= 448 (and inf): saturate at 448 */
    if (a < 0x3c800000u) {                        /* below 2^-6: subnormal steps of 2^-9 */
        float x;
        memcpy(&x, &a, 4);
        x *= 512.0f;                              /* exact: a power of two */
        uint32_t q = (uint32_t)x;                 /* 0..8 after rounding (8 = the smallest normal) */
        float frac = x - (float)q;
        if (frac > 0.5f || (frac == 0.5f && (q & 1))) q++;
        return sign | (uint8_t)q;
    }
    /* normal: rebias the exponent (127 -> 7) and round the mantissa to 3 bits, letting the
     * carry run into the exponent */
    uint32_t v = a - ((127u - 7u) << 23);
    uint32_t q = (v + 0x7ffffu + ((v >> 20) & 1u)) >> 20;
    return sign | (uint8_t)(q > 0x7e ? 0x7e : q);
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
    } else if (t == RMU_DT_F8_E4M3) {
        const uint8_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = rmu_f8e4m3_to_f32(s[i]);
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
    } else if (t == RMU_DT_F8_E4M3) {
        uint8_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = rmu_f32_to_f8e4m3(src[i]);
    }
}

/* test_dtype.c - float32 <-> float16/bfloat16 conversions against exact references:
 * round to nearest even (ties included), subnormals, overflow to inf, inf and NaN. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/dtype.h"

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static uint64_t rng(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Exact value of a finite f16 bit pattern (no sign), computed independently of dtype.c. */
static double f16_value(uint16_t h) {
    int ex = (h >> 10) & 0x1f, man = h & 0x3ff;
    return ex ? ldexp(1024 + man, ex - 25) : ldexp(man, -24);
}

/* Reference f32 -> f16: nearest of the two neighbouring f16 values, ties to even. */
static uint16_t ref_f16(float x) {
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    double a = fabs((double)x);
    if (isnan(x)) return 0x7e00;
    if (a >= 65520.0) return sign | 0x7c00; /* halfway to 2^16 and beyond round to inf */
    int lo = 0, hi = 0x7bff;                 /* finite patterns are ordered by value */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (f16_value((uint16_t)mid) <= a) lo = mid;
        else hi = mid - 1;
    }
    if (lo == 0x7bff) return sign | 0x7bff;
    double d0 = a - f16_value((uint16_t)lo), d1 = f16_value((uint16_t)(lo + 1)) - a;
    int up = d1 < d0 || (d1 == d0 && (lo & 1));
    return sign | (uint16_t)(lo + up);
}

static uint16_t ref_bf16(float x) {
    if (isnan(x)) return 0x7fc0;
    uint32_t u = bits(x);
    uint16_t t = (uint16_t)(u >> 16);
    double lo = fabs((double)from_bits((uint32_t)t << 16));
    /* past the largest finite bf16 the next step is 2^128, which encodes as inf */
    double hi = ((t + 1) & 0x7fff) == 0x7f80 ? ldexp(1, 128) : fabs((double)from_bits((uint32_t)(t + 1) << 16));
    double a = fabs((double)x);
    if ((t & 0x7fff) == 0x7f80) return t; /* inf stays inf */
    double d0 = a - lo, d1 = hi - a;
    return (uint16_t)(t + (d1 < d0 || (d1 == d0 && (t & 1))));
}

static void test_f16_specials(void **state) {
    (void)state;
    assert_int_equal(rmu_f32_to_f16(0.0f), 0x0000);
    assert_int_equal(rmu_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(rmu_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(rmu_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(rmu_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(rmu_f32_to_f16(65519.996f), 0x7bff);
    assert_int_equal(rmu_f32_to_f16(65520.0f), 0x7c00); /* tie rounds to even: inf */
    assert_int_equal(rmu_f32_to_f16(1e10f), 0x7c00);
    assert_int_equal(rmu_f32_to_f16(-1e10f), 0xfc00);
    assert_int_equal(rmu_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(rmu_f32_to_f16(-INFINITY), 0xfc00);
    uint16_t n = rmu_f32_to_f16(NAN);
    assert_int_equal(n & 0x7c00, 0x7c00);
    assert_true((n & 0x3ff) != 0);
    /* subnormals: 2^-24 is the smallest; half of it ties to even (zero) */
    assert_int_equal(rmu_f32_to_f16(ldexpf(1, -24)), 0x0001);
    assert_int_equal(rmu_f32_to_f16(ldexpf(1, -25)), 0x0000);
    assert_int_equal(rmu_f32_to_f16(nextafterf(ldexpf(1, -25), 1)), 0x0001);
    assert_int_equal(rmu_f32_to_f16(ldexpf(3, -25)), 0x0002); /* 1.5 ulp: tie to even */
    assert_int_equal(rmu_f32_to_f16(ldexpf(5, -25)), 0x0002); /* 2.5 ulp: tie to even */
    assert_int_equal(rmu_f32_to_f16(ldexpf(1023, -24)), 0x03ff);
    assert_int_equal(rmu_f32_to_f16(ldexpf(1, -14)), 0x0400);
    assert_int_equal(rmu_f32_to_f16(ldexpf(2047, -25)), 0x0400); /* largest subnormal + half ulp rounds up */
    assert_int_equal(rmu_f32_to_f16(1e-10f), 0x0000);
    /* ties in the normal range */
    assert_int_equal(rmu_f32_to_f16(1.0f + ldexpf(1, -11)), 0x3c00);
    assert_int_equal(rmu_f32_to_f16(1.0f + ldexpf(3, -11)), 0x3c02);
}

static void test_f16_to_f32_exhaustive(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = rmu_f16_to_f32((uint16_t)h);
        int ex = (h >> 10) & 0x1f;
        if (ex == 31) {
            if (h & 0x3ff) assert_true(isnan(f));
            else assert_true(isinf(f) && (signbit(f) != 0) == ((h & 0x8000) != 0));
            continue;
        }
        double want = f16_value((uint16_t)(h & 0x7fff)) * ((h & 0x8000) ? -1 : 1);
        if ((double)f != want || (signbit(f) != 0) != ((h & 0x8000) != 0))
            fail_msg("f16 0x%04x -> %g, want %g", h, f, want);
        /* and back: every f16 value survives the round trip */
        if (rmu_f32_to_f16(f) != h) fail_msg("f16 0x%04x round trip gives 0x%04x", h, rmu_f32_to_f16(f));
    }
}

static void test_f32_to_f16_reference(void **state) {
    (void)state;
    /* every midpoint between neighbouring f16 values, and one float ulp either side */
    for (uint32_t h = 0; h < 0x7bff; h++) {
        double mid = (f16_value((uint16_t)h) + f16_value((uint16_t)(h + 1))) / 2;
        float m = (float)mid; /* exact: 12 significant bits */
        assert_true((double)m == mid);
        float xs[3] = {m, nextafterf(m, 0), nextafterf(m, INFINITY)};
        for (int k = 0; k < 3; k++)
            for (int s = 0; s < 2; s++) {
                float x = s ? -xs[k] : xs[k];
                if (rmu_f32_to_f16(x) != ref_f16(x))
                    fail_msg("f32 %a -> f16 0x%04x, want 0x%04x", x, rmu_f32_to_f16(x), ref_f16(x));
            }
    }
    uint64_t s = 1;
    for (int i = 0; i < 300000; i++) {
        /* exponents around the f16 range, random mantissa and sign */
        uint32_t r = (uint32_t)rng(&s);
        uint32_t ex = 95 + (uint32_t)(rng(&s) % 50);
        float x = from_bits((r & 0x807fffffu) | (ex << 23));
        if (rmu_f32_to_f16(x) != ref_f16(x)) fail_msg("f32 %a -> f16 0x%04x, want 0x%04x", x, rmu_f32_to_f16(x), ref_f16(x));
    }
}

static void test_bf16(void **state) {
    (void)state;
    assert_int_equal(rmu_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(rmu_f32_to_bf16(-0.0f), 0x8000);
    assert_int_equal(rmu_f32_to_bf16(from_bits(0x3f808000)), 0x3f80); /* tie, even stays */
    assert_int_equal(rmu_f32_to_bf16(from_bits(0x3f818000)), 0x3f82); /* tie, odd rounds up */
    assert_int_equal(rmu_f32_to_bf16(from_bits(0x3f808001)), 0x3f81);
    assert_int_equal(rmu_f32_to_bf16(from_bits(0x3f807fff)), 0x3f80);
    assert_int_equal(rmu_f32_to_bf16(INFINITY), 0x7f80);
    assert_int_equal(rmu_f32_to_bf16(-INFINITY), 0xff80);
    assert_int_equal(rmu_f32_to_bf16(FLT_MAX), 0x7f80); /* rounds past the largest bf16 */
    assert_int_equal(rmu_f32_to_bf16(from_bits(0x7f7f7fff)), 0x7f7f);
    uint16_t n = rmu_f32_to_bf16(NAN);
    assert_true((n & 0x7f80) == 0x7f80 && (n & 0x7f));
    /* a NaN whose payload sits only in the low bits must not become inf */
    n = rmu_f32_to_bf16(from_bits(0x7f800001));
    assert_true((n & 0x7f80) == 0x7f80 && (n & 0x7f));
    n = rmu_f32_to_bf16(from_bits(0xff800001));
    assert_true((n & 0xff80) == 0xff80 && (n & 0x7f));
    /* subnormals round like normals */
    assert_int_equal(rmu_f32_to_bf16(from_bits(0x00010000)), 0x0001);
    assert_int_equal(rmu_f32_to_bf16(from_bits(0x00008000)), 0x0000);
    assert_int_equal(rmu_f32_to_bf16(from_bits(0x00018000)), 0x0002);
    assert_int_equal(rmu_f32_to_bf16(from_bits(0x007fffff)), 0x0080); /* up into the normals */
    /* bf16 -> f32 is exact for every pattern */
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = rmu_bf16_to_f32((uint16_t)h);
        assert_int_equal(bits(f), h << 16);
        if (!isnan(f)) assert_int_equal(rmu_f32_to_bf16(f), h);
    }
    uint64_t s = 7;
    for (int i = 0; i < 1000000; i++) {
        float x = from_bits((uint32_t)rng(&s));
        if (isnan(x)) continue;
        if (rmu_f32_to_bf16(x) != ref_bf16(x))
            fail_msg("f32 %a -> bf16 0x%04x, want 0x%04x", x, rmu_f32_to_bf16(x), ref_bf16(x));
    }
}

static void test_arrays_and_names(void **state) {
    (void)state;
    float src[5] = {1.0f, -2.5f, 0.1f, 65504.0f, 1e-8f}, back[5];
    uint16_t h[5], b[5];
    float f[5];
    rmu_from_f32(h, src, RMU_DT_F16, 5);
    rmu_from_f32(b, src, RMU_DT_BF16, 5);
    rmu_from_f32(f, src, RMU_DT_F32, 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(h[i], rmu_f32_to_f16(src[i]));
        assert_int_equal(b[i], rmu_f32_to_bf16(src[i]));
    }
    assert_memory_equal(f, src, sizeof src);
    rmu_to_f32(back, h, RMU_DT_F16, 5);
    for (int i = 0; i < 5; i++) assert_true(back[i] == rmu_f16_to_f32(h[i]));
    rmu_to_f32(back, b, RMU_DT_BF16, 5);
    for (int i = 0; i < 5; i++) assert_true(back[i] == rmu_bf16_to_f32(b[i]));
    assert_int_equal(rmu_dtype_size(RMU_DT_F32), 4);
    assert_int_equal(rmu_dtype_size(RMU_DT_BF16), 2);
    assert_int_equal(rmu_dtype_size(RMU_DT_INVALID), 0);
    assert_string_equal(rmu_dtype_name(RMU_DT_BF16), "BF16");
    assert_int_equal(rmu_dtype_parse("bfloat16"), RMU_DT_BF16);
    assert_int_equal(rmu_dtype_parse("bf16"), RMU_DT_BF16);
    assert_int_equal(rmu_dtype_parse("F16"), RMU_DT_F16);
    assert_int_equal(rmu_dtype_parse("float32"), RMU_DT_F32);
    assert_int_equal(rmu_dtype_parse("I64"), RMU_DT_INVALID);
    assert_int_equal(rmu_dtype_parse(NULL), RMU_DT_INVALID);
}

/* E4M3FN from its definition, in double: (-1)^s 2^(e-7) (1 + m/8), subnormals 2^-6 m/8. */
static double f8_ref(int c) {
    int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
    if (e == 15 && m == 7) return NAN;
    double v = e ? ldexp(1.0 + m / 8.0, e - 7) : ldexp(m / 8.0, -6);
    return s ? -v : v;
}

static void test_f8_e4m3_exhaustive(void **state) {
    (void)state;
    int nan = 0;
    for (int c = 0; c < 256; c++) {
        float f = rmu_f8e4m3_to_f32((uint8_t)c);
        double r = f8_ref(c);
        if (isnan(r)) {
            assert_true(isnan(f));
            nan++;
            continue;
        }
        if ((double)f != r) fail_msg("code 0x%02x decodes to %g, want %g", c, f, r);
        /* every finite code encodes back to itself (-0 keeps its sign bit) */
        if (rmu_f32_to_f8e4m3(f) != c) fail_msg("code 0x%02x: %g encodes to 0x%02x", c, f, rmu_f32_to_f8e4m3(f));
    }
    assert_int_equal(nan, 2);                           /* 0x7f and 0xff */
    assert_true(rmu_f8e4m3_to_f32(0x7e) == 448.0f);     /* the largest finite value */
    assert_true(rmu_f8e4m3_to_f32(0x01) == 0x1p-9f);    /* the smallest subnormal */
    assert_int_equal(rmu_dtype_size(RMU_DT_F8_E4M3), 1);
    assert_string_equal(rmu_dtype_name(RMU_DT_F8_E4M3), "F8_E4M3");
    assert_int_equal(rmu_dtype_parse("F8_E4M3"), RMU_DT_F8_E4M3);
    assert_int_equal(rmu_dtype_parse("float8_e4m3fn"), RMU_DT_F8_E4M3);
}

/* Nearest finite code by brute force, ties to the even code; beyond +-448 saturates. */
static int f8_nearest(float x) {
    if (x >= 448.0f) return 0x7e;
    if (x <= -448.0f) return 0xfe;
    int best = -1;
    double bd = INFINITY;
    for (int c = 0; c < 256; c++) {
        double v = f8_ref(c);
        if (isnan(v) || ((c & 0x80) != 0) != (signbit(x) != 0)) continue; /* same sign (zero too) */
        double d = fabs((double)x - v);
        if (d < bd || (d == bd && !(c & 1))) bd = d, best = c;
    }
    return best;
}

static void test_f8_e4m3_rounding(void **state) {
    (void)state;
    uint64_t s = 12345;
    for (int i = 0; i < 200000; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        /* log-uniform magnitudes over the whole range, both signs, incl. exact midpoints */
        double mag = ldexp(1.0 + (double)((s >> 11) & 0xffff) / 65536.0, (int)((s >> 40) % 24) - 14);
        float x = (float)(((s >> 63) ? -1 : 1) * mag);
        if (i % 4 == 0) { /* an exact midpoint between two neighbouring codes */
            int c = (int)((s >> 32) % 0x7e);
            x = (float)((f8_ref(c) + f8_ref(c + 1)) / 2);
        }
        int got = rmu_f32_to_f8e4m3(x), want = f8_nearest(x);
        if (got != want) fail_msg("%.9g encodes to 0x%02x, want 0x%02x", x, got, want);
    }
    assert_int_equal(rmu_f32_to_f8e4m3(1e30f), 0x7e); /* saturates, never NaN */
    assert_int_equal(rmu_f32_to_f8e4m3(-INFINITY), 0xfe);
    assert_int_equal(rmu_f32_to_f8e4m3(463.9f), 0x7e);
    assert_int_equal(rmu_f32_to_f8e4m3(NAN) & 0x7f, 0x7f);
    assert_int_equal(rmu_f32_to_f8e4m3(0x1p-11f), 0x00); /* a quarter of the smallest subnormal */
    assert_int_equal(rmu_f32_to_f8e4m3(0x1p-10f), 0x00); /* half: ties to even (0) */
    assert_int_equal(rmu_f32_to_f8e4m3(0x3p-10f), 0x02); /* 1.5 steps: ties to even (2) */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_specials),
        cmocka_unit_test(test_f16_to_f32_exhaustive),
        cmocka_unit_test(test_f32_to_f16_reference),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_arrays_and_names),
        cmocka_unit_test(test_f8_e4m3_exhaustive),
        cmocka_unit_test(test_f8_e4m3_rounding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

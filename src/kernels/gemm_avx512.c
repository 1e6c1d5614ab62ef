/* gemm_avx512.c - AVX-512 path of gemm.c (compiled with -mavx512*; used only after the
 * runtime CPU check). Same structure as gemm_avx2.c at twice the width: a 12x32 fp32
 * micro-kernel (24 zmm accumulators), and for BF16 precision on AVX512-BF16 CPUs a 12x32
 * vdpbf16ps micro-kernel over bf16 k-pair panels (A and B rounded to bf16 while packing;
 * products exact, sums fp32: twice the fp32 FMA rate). Packers convert B while packing.
 *
 * Built a second time against SIMDe (-DRMU_GEMM_SIMDE, `make simde`) so that the unit
 * tests run these kernels on CPUs without AVX-512; hence only intrinsics SIMDe 0.7.4 has
 * (bf16 rounding with integer ops, no _mm512_cvtne2ps_pbh) and __m512bh made by memcpy. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "gemm_impl.h"

#ifdef RMU_GEMM_SIMDE
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
/* What SIMDe 0.7.4 lacks, spelled out lane by lane with the instructions' semantics. */
static inline __m512 rmu_simde_maskz_loadu_ps(__mmask16 k, const void *p) {
    float t[16];
    for (int i = 0; i < 16; i++) t[i] = k >> i & 1 ? ((const float *)p)[i] : 0.0f;
    return _mm512_loadu_ps(t);
}
static inline void rmu_simde_mask_storeu_32(void *p, __mmask16 k, __m512i v) {
    uint32_t t[16];
    _mm512_storeu_si512(t, v);
    for (int i = 0; i < 16; i++)
        if (k >> i & 1) memcpy((char *)p + 4 * i, &t[i], 4);
}
static inline __m256i rmu_simde_cvtepi32_epi16(__m512i v) {
    uint32_t t[16];
    uint16_t o[16];
    _mm512_storeu_si512(t, v);
    for (int i = 0; i < 16; i++) o[i] = (uint16_t)t[i];
    return _mm256_loadu_si256((const void *)o);
}
static inline __m512i rmu_simde_cvtepu16_epi32(__m256i h) {
    uint16_t t[16];
    uint32_t o[16];
    _mm256_storeu_si256((void *)t, h);
    for (int i = 0; i < 16; i++) o[i] = t[i];
    return _mm512_loadu_si512(o);
}
static inline __m512 rmu_simde_cvtph_ps(__m256i h) {
    uint16_t t[16];
    float o[16];
    _mm256_storeu_si256((void *)t, h);
    for (int i = 0; i < 16; i++) o[i] = rmu_f16_to_f32(t[i]);
    return _mm512_loadu_ps(o);
}
#define _mm512_maskz_loadu_ps(k, p) rmu_simde_maskz_loadu_ps(k, p)
#define _mm512_mask_storeu_ps(p, k, v) rmu_simde_mask_storeu_32(p, k, _mm512_castps_si512(v))
#define _mm512_mask_storeu_epi32(p, k, v) rmu_simde_mask_storeu_32(p, k, v)
#define _mm512_cvtepi32_epi16(v) rmu_simde_cvtepi32_epi16(v)
#define _mm512_cvtepu16_epi32(h) rmu_simde_cvtepu16_epi32(h)
#define _mm512_cvtph_ps(h) rmu_simde_cvtph_ps(h)
#define _mm512_shuffle_f32x4(a, b, imm) simde_mm512_shuffle_f32x4(a, b, imm)
#else
#include <immintrin.h>
#endif

#define AI static inline __attribute__((always_inline))
#define MR 12
#define NR 32
#define KC_F32 128   /* slice depths of the two tables (the rows kernels follow them) */
#define KC_PAIRS 256

AI __m512 round_bf16(__m512 v) {
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    __m512i u = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_and_si512(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), hi);
    __m512i q = _mm512_and_si512(_mm512_or_si512(u, _mm512_set1_epi32(0x00400000)), hi);
    __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_castsi512_ps(_mm512_mask_blend_epi32(nan, r, q));
}

AI __mmask16 mask_n(int n) { return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

AI __m512bh as_bh(__m512i v) {
    __m512bh r;
    memcpy(&r, &v, sizeof r);
    return r;
}

/* ---- micro-kernels: C[12, 32] (+)= Ap * Bp */

AI void store_c(__m512 c[MR][2], float *C, long ldc, int mr, int nr, int acc) {
    __mmask16 m0 = mask_n(nr), m1 = mask_n(nr - 16);
    for (int i = 0; i < mr; i++) {
        float *ci = C + i * ldc;
        if (acc) {
            c[i][0] = _mm512_add_ps(c[i][0], _mm512_maskz_loadu_ps(m0, ci));
            c[i][1] = _mm512_add_ps(c[i][1], _mm512_maskz_loadu_ps(m1, ci + 16));
        }
        _mm512_mask_storeu_ps(ci, m0, c[i][0]);
        _mm512_mask_storeu_ps(ci + 16, m1, c[i][1]);
    }
}

/* Named accumulators (with an array GCC keeps them in memory); AOP is the multiply-add. */
#define ACC_DECL(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = _mm512_setzero_ps();
#define ACC_ALL(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define ACC_OUT(i) c[i][0] = c##i##0, c[i][1] = c##i##1;
#define ACC_F32(i)                                                                                                 \
    {                                                                                                              \
        __m512 ai = _mm512_set1_ps(a[i]);                                                                          \
        c##i##0 = _mm512_fmadd_ps(ai, b0, c##i##0);                                                                \
        c##i##1 = _mm512_fmadd_ps(ai, b1, c##i##1);                                                                \
    }
#define ACC_BF16(i)                                                                                                \
    {                                                                                                              \
        __m512bh ai = as_bh(_mm512_set1_epi32((int)a[i]));                                                         \
        c##i##0 = _mm512_dpbf16_ps(c##i##0, ai, b0);                                                               \
        c##i##1 = _mm512_dpbf16_ps(c##i##1, ai, b1);                                                               \
    }

/* C comes from L3 (each tile of C is revisited once per kc slice): start it early. */
AI void prefetch_c(const float *C, long ldc) {
    for (int i = 0; i < MR; i++) {
        _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(C + i * ldc + 16), _MM_HINT_T0);
        _mm_prefetch((const char *)(C + i * ldc + NR - 1), _MM_HINT_T0);
    }
}

/* fp32: Ap[ks][12] fp32, Bp[ks][32] fp32 */
static void ukernel_f32(int ks, const void *Ap, const void *Bp, float *C, long ldc, int mr, int nr, int acc) {
    const float *a = Ap, *b = Bp;
    prefetch_c(C, ldc);
    ACC_ALL(ACC_DECL)
#pragma GCC unroll 2
    for (int k = 0; k < ks; k++) {
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
        ACC_ALL(ACC_F32)
        a += MR;
        b += NR;
    }
    __m512 c[MR][2];
    ACC_ALL(ACC_OUT)
    store_c(c, C, ldc, mr, nr, acc);
}

/* bf16 pairs: Ap[ks][12] u32, Bp[ks][32] u32, one u32 = bf16 of k (low half) and k+1 */
static void ukernel_bf16(int ks, const void *Ap, const void *Bp, float *C, long ldc, int mr, int nr, int acc) {
    const uint32_t *a = Ap, *b = Bp;
    prefetch_c(C, ldc);
    ACC_ALL(ACC_DECL)
#pragma GCC unroll 2
    for (int k = 0; k < ks; k++) {
        __m512bh b0 = as_bh(_mm512_load_si512((const void *)b));
        __m512bh b1 = as_bh(_mm512_load_si512((const void *)(b + 16)));
        ACC_ALL(ACC_BF16)
        a += MR;
        b += NR;
    }
    __m512 c[MR][2];
    ACC_ALL(ACC_OUT)
    store_c(c, C, ldc, mr, nr, acc);
}

/* ---- packers */

/* r[t] <- column t of the 16x16 block r (rows r[0..15]). */
AI void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        __m512 *x = r + 4 * g;
        t[4 * g + 0] = _mm512_unpacklo_ps(x[0], x[1]);
        t[4 * g + 1] = _mm512_unpackhi_ps(x[0], x[1]);
        t[4 * g + 2] = _mm512_unpacklo_ps(x[2], x[3]);
        t[4 * g + 3] = _mm512_unpackhi_ps(x[2], x[3]);
        /* u[4g + c], 128-bit lane L: column 4L + c of rows 4g..4g+3 */
        u[4 * g + 0] = _mm512_shuffle_ps(t[4 * g + 0], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g + 0], t[4 * g + 2], 0xEE);
        u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44), v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
        __m512 v2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44);
        __m512 v3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
        r[c] = _mm512_shuffle_f32x4(v0, v2, 0x88);
        r[4 + c] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
        r[8 + c] = _mm512_shuffle_f32x4(v1, v3, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
    }
}

/* 16 bf16 values (as 16-bit lanes) of 16 rounded fp32 lanes. */
AI __m256i to_bf16x16(__m512 v) {
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(round_bf16(v)), 16));
}

/* 16 k-pairs (u32 lanes) from 32 consecutive fp32 values. */
AI __m512i pairs_of(__m512 lo16, __m512 hi16) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(to_bf16x16(lo16)), to_bf16x16(hi16), 1);
}

/* A micro-panel, fp32 [kc][12]: rows contiguous in k are transposed 16 k at a time, columns
 * contiguous (A read transposed) copied 12 at a time. */
static void pack_a_f32(int mr, int kc, const float *A, long rsa, long csa, int MRx, int rnd, void *Ap_) {
    float *Ap = Ap_;
    (void)MRx;
    const __mmask16 m12 = mask_n(MR);
    int k = 0;
    if (csa == 1) {
        for (; k + 16 <= kc; k += 16) {
            __m512 r[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) {
                r[i] = i < mr ? _mm512_loadu_ps(A + i * rsa + k) : _mm512_setzero_ps();
                if (rnd) r[i] = round_bf16(r[i]);
            }
            transpose16(r);
#pragma GCC unroll 16
            for (int t = 0; t < 16; t++) _mm512_mask_storeu_ps(Ap + (size_t)(k + t) * MR, m12, r[t]);
        }
    } else if (rsa == 1) {
        __mmask16 m = mask_n(mr);
        for (; k < kc; k++) {
            __m512 v = _mm512_maskz_loadu_ps(m, A + k * csa);
            if (rnd) v = round_bf16(v);
            _mm512_mask_storeu_ps(Ap + (size_t)k * MR, m12, v);
        }
    }
    if (k < kc) rmu_gemm_pack_a_generic(mr, kc - k, A + k * csa, rsa, csa, MR, rnd, Ap + (size_t)k * MR);
}

/* A micro-panel, bf16 pairs [kc/2][12] u32. */
static void pack_a_bf16(int mr, int kc, const float *A, long rsa, long csa, int MRx, int rnd, void *Ap_) {
    uint32_t *Ap = Ap_;
    (void)MRx, (void)rnd;
    const __mmask16 m12 = mask_n(MR);
    int k = 0;
    if (csa == 1) {
        for (; k + 32 <= kc; k += 32) {
            __m512 r[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++)
                r[i] = i < mr ? _mm512_castsi512_ps(pairs_of(_mm512_loadu_ps(A + i * rsa + k),
                                                             _mm512_loadu_ps(A + i * rsa + k + 16)))
                              : _mm512_setzero_ps();
            transpose16(r);
#pragma GCC unroll 16
            for (int t = 0; t < 16; t++)
                _mm512_mask_storeu_epi32(Ap + (size_t)(k / 2 + t) * MR, m12, _mm512_castps_si512(r[t]));
        }
    } else if (rsa == 1) {
        __mmask16 m = mask_n(mr);
        const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
        for (; k + 2 <= kc; k += 2) {
            __m512i lo = _mm512_castps_si512(round_bf16(_mm512_maskz_loadu_ps(m, A + k * csa)));
            __m512i up = _mm512_castps_si512(round_bf16(_mm512_maskz_loadu_ps(m, A + (k + 1) * csa)));
            __m512i p = _mm512_or_si512(_mm512_srli_epi32(lo, 16), _mm512_and_si512(up, hi));
            _mm512_mask_storeu_epi32(Ap + (size_t)(k / 2) * MR, m12, p);
        }
    }
    if (k < kc) rmu_gemm_pack_a2_generic(mr, kc - k, A + k * csa, rsa, csa, MR, 1, Ap + (size_t)(k / 2) * MR);
}

/* 16 FP8 codes -> the fp16 patterns of e4m3(code) * 2^-8 (gemm_impl.h; as gemm_avx2.c):
 * sign-extended codes shifted so the sign lands in bit 15 and the magnitude in bits 13..7.
 * NaN codes come out as +-1.875 * 2^-8; f8_nan16 gives them the NaN exponent. */
AI __m256i f8_half16(__m128i codes) {
    return _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(codes), 7), _mm256_set1_epi16((short)0xbfff));
}
AI __m256i f8_nan16(__m256i h) {
    __m256i nan = _mm256_cmpeq_epi16(_mm256_and_si256(h, _mm256_set1_epi16(0x3f80)), _mm256_set1_epi16(0x3f80));
    return _mm256_or_si256(h, _mm256_and_si256(nan, _mm256_set1_epi16(0x7c00)));
}
/* 16 FP8 codes as fp32 times 2^-8, NaN codes included. */
AI __m512 f8_to_ps(__m128i codes) { return _mm512_cvtph_ps(f8_nan16(f8_half16(codes))); }

/* 16 elements of dtype dt at p as fp32 (F8: times 2^-8). */
AI __m512 load16(rmu_dtype dt, const void *p) {
    if (dt == RMU_DT_F32) return _mm512_loadu_ps(p);
    if (dt == RMU_DT_F8_E4M3) return f8_to_ps(_mm_loadu_si128(p));
    __m256i h = _mm256_loadu_si256(p);
    if (dt == RMU_DT_BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

/* the vocabulary of gemm_simd.h at 16 lanes */
#define VL 16
typedef __m512 vf;
#define vf_load load16
#define vf_load_panel load16 /* BF16: 16 elements of a panel */
/* 4 k of an F8 panel's 16 rows (gemm.h: the 64 bytes at p, row t's codes in word t; never
 * NaN) as fp32 e4m3(code) * 2^-8, in w[0..3] (k order). As the AVX2 file's f8q_tiny and
 * f8q_unit: 16-bit arithmetic shifts put each code's sign at bit 31 and its magnitude at bits
 * 26..20 (e4m3 * 2^-120, denormal codes fp32 denormals), then an FMA scales by 2^112 exactly
 * (with -0: zeros keep their sign). */
AI void f8q_unit(const char *p, __m512 w[4]) {
    const __m512i d = _mm512_loadu_si512(p), m = _mm512_set1_epi32((int)0x87f00000);
    const __m512i hi = _mm512_srai_epi16(d, 4), lo = _mm512_srai_epi16(_mm512_slli_epi16(d, 8), 4);
    const __m512i t[4] = {_mm512_slli_epi32(lo, 16), _mm512_slli_epi32(hi, 16), lo, hi};
    const __m512 s = _mm512_set1_ps(0x1p112f), z = _mm512_set1_ps(-0.0f);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) w[j] = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(t[j], m)), s, z);
}
#define vf_f8q_unit f8q_unit
#define vf_round round_bf16
#define vf_store _mm512_store_ps
#define vf_storeu _mm512_storeu_ps
#define vf_mul _mm512_mul_ps
#define vf_set1 _mm512_set1_ps
#include "gemm_simd.h"

/* fp32 B panel [kc][32]: stored [N,K]: 16x16 transposes; stored [K,N]: rows as they are.
 * F8 (gemm_impl.h): stored [N,K] the values x 2^-8 (the scales come after the sums), stored
 * [K,N] times the row's scale. */
AI void pack_b_dt(const rmu_dtype dt, const rmu_gemm_b *B, int k0, int kc, int n0, int nr, int rnd, float *Bp) {
    if (pack_b_panels(dt, B, k0, kc, n0, nr, Bp)) return;
    const size_t es = ESIZE(dt);
    const char *base = B->data;
    int k = 0;
    if (B->trans) {
        for (; k + 16 <= kc; k += 16) {
            for (int jb = 0; jb < NR; jb += 16) {
                __m512 r[16];
#pragma GCC unroll 16
                for (int t = 0; t < 16; t++) {
                    r[t] = jb + t < nr ? load16(dt, base + ((size_t)(n0 + jb + t) * B->ld + k0 + k) * es)
                                       : _mm512_setzero_ps();
                    if (rnd) r[t] = round_bf16(r[t]);
                }
                transpose16(r);
#pragma GCC unroll 16
                for (int t = 0; t < 16; t++) _mm512_store_ps(Bp + (size_t)(k + t) * NR + jb, r[t]);
            }
        }
    } else if (nr == NR) {
        k = pack_b_kn(dt, B, k0, kc, n0, rnd, Bp);
    }
    if (k < kc) rmu_gemm_pack_b_generic(B, k0 + k, kc - k, n0, nr, NR, rnd, Bp + (size_t)k * NR);
}

/* 16 bf16 bit patterns (u32 lanes, upper half 0) of 16 elements of dtype dt at p. */
AI __m512i bits16(rmu_dtype dt, const void *p) {
    if (dt == RMU_DT_BF16) return _mm512_cvtepu16_epi32(_mm256_loadu_si256(p));
    return _mm512_srli_epi32(_mm512_castps_si512(round_bf16(load16(dt, p))), 16);
}

/* 16 k-pairs (u32 lanes) of 32 consecutive elements of dtype dt at p. */
AI __m512i pairs16(rmu_dtype dt, const void *p) {
    if (dt == RMU_DT_BF16) return _mm512_loadu_si512(p);
    const size_t es = dt == RMU_DT_F32 ? 4 : 2;
    return pairs_of(load16(dt, p), load16(dt, (const char *)p + 16 * es));
}

/* bf16 pair B panel [kc/2][32] u32. Stored [N,K]: a pair is 2 adjacent elements of a row,
 * so 16 rows x 16 pairs are one 16x16 u32 transpose; stored [K,N]: rows k and k+1
 * interleaved. */
AI void pack_b2_dt(const rmu_dtype dt, const rmu_gemm_b *B, int k0, int kc, int n0, int nr, uint32_t *Bp) {
    const size_t es = dt == RMU_DT_F32 ? 4 : 2;
    const char *base = B->data;
    int k = 0;
    if (B->trans) {
        for (; k + 32 <= kc; k += 32) {
            for (int jb = 0; jb < NR; jb += 16) {
                __m512 r[16];
#pragma GCC unroll 16
                for (int t = 0; t < 16; t++) {
                    const char *row = base + ((size_t)(n0 + jb + t) * B->ld + k0 + k) * es;
                    r[t] = jb + t < nr ? _mm512_castsi512_ps(pairs16(dt, row)) : _mm512_setzero_ps();
                }
                transpose16(r);
#pragma GCC unroll 16
                for (int t = 0; t < 16; t++)
                    _mm512_store_si512((void *)(Bp + (size_t)(k / 2 + t) * NR + jb), _mm512_castps_si512(r[t]));
            }
        }
    } else if (nr == NR) {
        for (; k + 2 <= kc; k += 2) {
            const char *r0 = base + ((size_t)(k0 + k) * B->ld + n0) * es, *r1 = r0 + (size_t)B->ld * es;
            for (int jb = 0; jb < NR; jb += 16) {
                __m512i p = _mm512_or_si512(bits16(dt, r0 + jb * es), _mm512_slli_epi32(bits16(dt, r1 + jb * es), 16));
                _mm512_store_si512((void *)(Bp + (size_t)(k / 2) * NR + jb), p);
            }
        }
    }
    if (k < kc) rmu_gemm_pack_b2_generic(B, k0 + k, kc - k, n0, nr, NR, Bp + (size_t)(k / 2) * NR);
}

SIMD_TYPE_FNS(f32, RMU_DT_F32)
SIMD_TYPE_FNS(f16, RMU_DT_F16)
SIMD_TYPE_FNS(bf16, RMU_DT_BF16)
SIMD_TYPE_FNS(f8, RMU_DT_F8_E4M3)

/* the bf16 k-pair packers (FP8 never runs on the pair kernel: gemm.c keeps it on fp32) */
#define PACK_B2(NAME, DT)                                                                                         \
    static void pack_b2_##NAME(const rmu_gemm_b *B, int k0, int kc, int n0, int nr, int NRx, uint32_t *Bp) {      \
        (void)NRx;                                                                                                \
        pack_b2_dt(DT, B, k0, kc, n0, nr, Bp);                                                                    \
    }
PACK_B2(f32, RMU_DT_F32)
PACK_B2(f16, RMU_DT_F16)
PACK_B2(bf16, RMU_DT_BF16)

/* ---- rows (decode, small batches): the blocked path's order without packing, as in
 * gemm_avx2.c at twice the width. Sixteen weight rows form a group (one zmm of outputs per row
 * of x); 128-bit loads of rows t, t+4, t+8, t+12 fill the four lanes of a zmm, then 4x4
 * in-lane transposes give the 16 rows' element (or, on vdpbf16ps, k-pair) j. */

/* v[t] = [rows t | t+4 | t+8 | t+12] (4 x 32-bit each) -> v[j] = element j of rows 0..15. */
AI void tr4x4(__m512 v[4]) {
    __m512 t0 = _mm512_unpacklo_ps(v[0], v[1]), t1 = _mm512_unpackhi_ps(v[0], v[1]);
    __m512 t2 = _mm512_unpacklo_ps(v[2], v[3]), t3 = _mm512_unpackhi_ps(v[2], v[3]);
    v[0] = _mm512_shuffle_ps(t0, t2, 0x44);
    v[1] = _mm512_shuffle_ps(t0, t2, 0xEE);
    v[2] = _mm512_shuffle_ps(t1, t3, 0x44);
    v[3] = _mm512_shuffle_ps(t1, t3, 0xEE);
}

/* The 128 bits at r[t], r[t+4], r[t+8], r[t+12] (+ off bytes) as one zmm. */
AI __m512i load4x128(const char *const r[16], int t, size_t off) {
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(r[t] + off)));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(r[t + 4] + off)), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(r[t + 8] + off)), 2);
    return _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(r[t + 12] + off)), 3);
}

/* 8 bf16 (k..k+7, rounded) of a row of dtype dt: 4 k-pairs. */
AI __m128i pairs8(rmu_dtype dt, const char *row, size_t k) {
    if (dt == RMU_DT_BF16) return _mm_loadu_si128((const __m128i *)(row + 2 * k));
    uint16_t t[8];
    for (int i = 0; i < 8; i++) t[i] = rmu_f32_to_bf16(rmu_gemm_load_f32(row, dt, k + i));
    return _mm_loadu_si128((const __m128i *)t);
}

/* fp32 lanes (kp = 1): v[j] = the 16 rows' element k + 4h + j (F8: x 2^-8, no scale). */
AI void quad_f32(const rmu_dtype dt, const int rnd, const int h, const char *const r[16], size_t k, __m512 v[4]) {
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++) {
        if (dt == RMU_DT_BF16) {
            __m512i raw = load4x128(r, t, 2 * k), z = _mm512_setzero_si512();
            v[t] = _mm512_castsi512_ps(h ? _mm512_unpackhi_epi16(z, raw) : _mm512_unpacklo_epi16(z, raw));
        } else if (dt == RMU_DT_F32) {
            v[t] = _mm512_castsi512_ps(load4x128(r, t, 4 * (k + 4 * h)));
        } else if (dt == RMU_DT_F8_E4M3) { /* 4 codes of rows t, t+4, t+8, t+12 */
            int c[4];
            for (int i = 0; i < 4; i++) memcpy(&c[i], r[t + 4 * i] + k + 4 * h, 4);
            v[t] = f8_to_ps(_mm_setr_epi32(c[0], c[1], c[2], c[3]));
        } else {
            size_t off = 2 * (k + 4 * h);
            __m128i a = _mm_unpacklo_epi64(_mm_loadl_epi64((const __m128i *)(r[t] + off)),
                                           _mm_loadl_epi64((const __m128i *)(r[t + 4] + off)));
            __m128i b = _mm_unpacklo_epi64(_mm_loadl_epi64((const __m128i *)(r[t + 8] + off)),
                                           _mm_loadl_epi64((const __m128i *)(r[t + 12] + off)));
            v[t] = _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(a), b, 1));
        }
        if (rnd) v[t] = round_bf16(v[t]);
    }
    tr4x4(v);
}

/* k-pairs (kp = 2): v[j] = the 16 rows' pair (k + 2j, k + 2j + 1). */
AI void quad_pairs(const rmu_dtype dt, const char *const r[16], size_t k, __m512 v[4]) {
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++) {
        __m512i x = _mm512_castsi128_si512(pairs8(dt, r[t], k));
        x = _mm512_inserti32x4(x, pairs8(dt, r[t + 4], k), 1);
        x = _mm512_inserti32x4(x, pairs8(dt, r[t + 8], k), 2);
        v[t] = _mm512_castsi512_ps(_mm512_inserti32x4(x, pairs8(dt, r[t + 12], k), 3));
    }
    tr4x4(v);
}

/* The 16 rows' element k (fp32) or pair (k, k+1 if k+1 < end, else 0), one at a time (tails;
 * F8 x 2^-8, as the generic packer has it). */
AI __m512 column16(const rmu_dtype dt, const int rnd, const int pairs, const char *const r[16], size_t k, size_t end) {
    uint32_t t[16];
    for (int i = 0; i < 16; i++) {
        float f = rmu_gemm_load_f32(r[i], dt, k);
        if (dt == RMU_DT_F8_E4M3) f *= 1.0f / RMU_GEMM_F8_UNIT;
        if (pairs) {
            uint32_t hi = k + 1 < end ? rmu_f32_to_bf16(rmu_gemm_load_f32(r[i], dt, k + 1)) : 0;
            t[i] = rmu_f32_to_bf16(f) | hi << 16;
        } else {
            if (rnd) f = rmu_gemm_round_bf16(f);
            memcpy(&t[i], &f, 4);
        }
    }
    return _mm512_castsi512_ps(_mm512_loadu_si512(t));
}

/* y[0..nr) = s (add 0) or y + s (add 1). */
AI void store16(float *y, __m512 s, int nr, int add) {
    __mmask16 m = mask_n(nr);
    if (add) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(m, y));
    _mm512_mask_storeu_ps(y, m, s);
}

#define RACC(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define R_DECL(m) __m512 c##m = _mm512_setzero_ps();
/* one multiply-add of x row m's element (or pair) kk with the lane vector w */
#define R_OP(m)                                                                                                    \
    if (m < M) {                                                                                                   \
        if (pairs)                                                                                                 \
            c##m = _mm512_dpbf16_ps(c##m, as_bh(_mm512_set1_epi32((int)xp[(m) * ldx + kk / 2])),                 \
                                    as_bh(_mm512_castps_si512(w)));                                                \
        else                                                                                                       \
            c##m = _mm512_fmadd_ps(_mm512_set1_ps(xf[(m) * ldx + kk]), w, c##m);                                   \
    }
#define R_STORE(m)                                                                                                 \
    if (m < M) store16(y + (m) * ldy, dt == RMU_DT_F8_E4M3 ? _mm512_mul_ps(c##m, sv) : c##m, nr, add);

/* One kc slice [k0, k0+kc) of a group for M rows of x, then into y. pairs: x and the lanes
 * are k-pairs (vdpbf16ps), x as u32 pairs. */
AI void group_slice(const rmu_dtype dt, const int M, const int rnd, const int pairs, const char *const r[16],
                    const float *su, int nr, int k0, int kc, const void *x, long ldx, float *y, long ldy, int add) {
    const __m512 sv = _mm512_loadu_ps(su); /* F8: the rows' scales x 2^8 */
    const float *xf = x;
    const uint32_t *xp = x;
    RACC(R_DECL)
    int k = k0, end = k0 + kc;
    for (; k + 8 <= end; k += 8) {
        if (pairs) {
            __m512 v[4];
            quad_pairs(dt, r, (size_t)k, v);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                __m512 w = v[j];
                int kk = k + 2 * j;
                RACC(R_OP)
            }
            continue;
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m512 v[4];
            quad_f32(dt, rnd, h, r, (size_t)k, v);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                __m512 w = v[j];
                int kk = k + 4 * h + j;
                RACC(R_OP)
            }
        }
    }
    for (; k < end; k += pairs ? 2 : 1) {
        __m512 w = column16(dt, rnd, pairs, r, (size_t)k, (size_t)end);
        int kk = k;
        RACC(R_OP)
    }
    RACC(R_STORE)
}

/* F8 or BF16 from panels (gemm.h): a panel's element k is one load and one lane vector, no
 * transposes and (F8) no NaN fix-up; the order per output is group_slice's. */
AI void panel_slice(const rmu_dtype dt, const int M, const char *p, const float *su, int nr, int k0, int kc,
                    const float *xf, long ldx, float *y, long ldy, int add) {
    const int pairs = 0;
    const uint32_t *xp = NULL;
    const __m512 sv = _mm512_loadu_ps(su);
    const size_t es = ESIZE(dt);
    (void)xp;
    RACC(R_DECL)
    if (dt == RMU_DT_F8_E4M3)
        F8Q_FOR_K(p, k0, kc, RACC(R_OP))
    else
        for (int kk = k0; kk < k0 + kc; kk++) {
            __m512 w = load16(dt, p + (size_t)kk * 16 * es);
            RACC(R_OP)
        }
    RACC(R_STORE)
}

AI void rows_dt(const rmu_dtype dt, const int M, const int rnd, const int pairs, int n0, int n1, int K, const void *x,
                long ldx, const rmu_gemm_b *B, float *y, long ldy, int acc) {
    const size_t rs = (size_t)B->ld * ESIZE(dt);
    const int KCS = pairs ? KC_PAIRS : KC_F32;
    for (int n = n0; n < n1; n += 16) {
        const char *r[16];
        float su[16] = {0}; /* F8: the rows' scales x 2^8, applied to each slice's sums */
        int nr = n1 - n < 16 ? n1 - n : 16; /* rows past n1 repeat the last one; their lanes are dropped */
        for (int t = 0; t < 16; t++) {
            int i = n + (t < nr ? t : nr - 1);
            r[t] = (const char *)B->data + (size_t)i * rs;
            if (dt == RMU_DT_F8_E4M3) su[t] = rmu_gemm_f8_scale(B, i) * RMU_GEMM_F8_UNIT;
        }
        if ((dt == RMU_DT_F8_E4M3 || dt == RMU_DT_BF16) && B->panels && !pairs && n0 % 16 == 0) {
            const char *p = (const char *)B->panels + (size_t)(n / 16) * rmu_gemm_panel_bytes(dt, B->ld);
            for (int k0 = 0; k0 < K; k0 += KCS)
                panel_slice(dt, M, p, su, nr, k0, K - k0 < KCS ? K - k0 : KCS, x, ldx, y + n, ldy, acc || k0 > 0);
            continue;
        }
        for (int k0 = 0; k0 < K; k0 += KCS)
            group_slice(dt, M, rnd, pairs, r, su, nr, k0, K - k0 < KCS ? K - k0 : KCS, x, ldx, y + n, ldy,
                        acc || k0 > 0);
    }
}

/* fp32 lanes (the avx512 table: FP32 precision, or BF16 precision without AVX512-BF16 -
 * rnd rounds F32/F16 weights) and k-pair lanes (the avx512bf16 table, BF16 precision: pairs
 * are always rounded). F8 has no pair kernel: gemm.c runs it on the fp32 table. */
#define ROWS_AT(MM) rows_dt(dt_, MM, rnd_, PAIRS_, n0, n1, K, x, ldx, B, y, ldy, acc)
#define PAIRS_ 0
SIMD_ROWS_FN(rows_f32, RMU_DT_F32)
SIMD_ROWS_FN(rows_f16, RMU_DT_F16)
SIMD_ROWS_FN(rows_bf16, RMU_DT_BF16)
SIMD_ROWS_FN(rows_f8, RMU_DT_F8_E4M3)
#undef PAIRS_
#define PAIRS_ 1
#define ROWS_FN_PAIRS(NAME, DT)                                                                                    \
    static void NAME(int M, int n0, int n1, int K, const void *x, long ldx, const rmu_gemm_b *B, int rnd,       \
                     float *y, long ldy, int acc) {                                                              \
        (void)rnd;                                                                                                \
        const rmu_dtype dt_ = DT;                                                                                 \
        const int rnd_ = 0;                                                                                       \
        SIMD_SWITCH_M(M)                                                                                          \
    }
ROWS_FN_PAIRS(rows_f32_pairs, RMU_DT_F32)
ROWS_FN_PAIRS(rows_f16_pairs, RMU_DT_F16)
ROWS_FN_PAIRS(rows_bf16_pairs, RMU_DT_BF16)

void rmu_gemm_isa_avx512(rmu_gemm_isa *isa, int bf16) {
    memset(isa, 0, sizeof *isa);
    isa->name = bf16 ? "avx512bf16" : "avx512";
    isa->mr = MR;
    isa->nr = NR;
    isa->kp = bf16 ? 2 : 1;
    isa->kc = bf16 ? KC_PAIRS : KC_F32; /* 128 slots: a 16 KiB B micro-panel */
    isa->mc = 384;
    isa->nc = 1024;
    isa->rows_max = 8;
    /* the pair table (BF16 precision) reads BF16 weights as stored; F8 runs on the fp32 table */
    isa->panels = bf16 ? 1u << RMU_DT_F8_E4M3 : 1u << RMU_DT_F8_E4M3 | 1u << RMU_DT_BF16;
    isa->ukernel = bf16 ? ukernel_bf16 : ukernel_f32;
    isa->pack_a = bf16 ? pack_a_bf16 : pack_a_f32;
    isa->type[RMU_DT_F32] = (rmu_gemm_type){4, to_f32_f32, pack_b_f32, pack_b2_f32, bf16 ? rows_f32_pairs : rows_f32};
    isa->type[RMU_DT_F16] = (rmu_gemm_type){2, to_f32_f16, pack_b_f16, pack_b2_f16, bf16 ? rows_f16_pairs : rows_f16};
    isa->type[RMU_DT_BF16] =
        (rmu_gemm_type){2, to_f32_bf16, pack_b_bf16, pack_b2_bf16, bf16 ? rows_bf16_pairs : rows_bf16};
    isa->type[RMU_DT_F8_E4M3] = (rmu_gemm_type){1, to_f32_f8, pack_b_f8, rmu_gemm_pack_b2_generic, rows_f8};
}

/* gemm_avx512.c - AVX-512 path of gemm.c (compiled with -mavx512*; used only after the
 * runtime CPU check). Same structure as gemm_avx2.c at twice the width: a 12x32 fp32
 * micro-kernel (24 zmm accumulators), and for BF16 precision on AVX512-BF16 CPUs a 12x32
 * vdpbf16ps micro-kernel over bf16 k-pair panels (A and B rounded to bf16 while packing;
 * products exact, sums fp32: twice the fp32 FMA rate). Packers convert B while packing.
 *
 * Built a second time against SIMDe (-DRMU_GEMM_SIMDE, `make simde`) so that the unit
 * tests run these kernels on CPUs without AVX-512; hence only intrinsics SIMDe 0.7.4 has
 * (bf16 rounding with integer ops, no _mm512_cvtne2ps_pbh) and __m512bh made by memcpy. */
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
static inline float rmu_simde_reduce_add_ps(__m512 v) {
    float t[16];
    _mm512_storeu_ps(t, v);
    for (int w = 8; w >= 1; w /= 2) /* the halving tree of the real sequence */
        for (int i = 0; i < w; i++) t[i] += t[i + w];
    return t[0];
}
#define _mm512_maskz_loadu_ps(k, p) rmu_simde_maskz_loadu_ps(k, p)
#define _mm512_mask_storeu_ps(p, k, v) rmu_simde_mask_storeu_32(p, k, _mm512_castps_si512(v))
#define _mm512_mask_storeu_epi32(p, k, v) rmu_simde_mask_storeu_32(p, k, v)
#define _mm512_cvtepi32_epi16(v) rmu_simde_cvtepi32_epi16(v)
#define _mm512_cvtepu16_epi32(h) rmu_simde_cvtepu16_epi32(h)
#define _mm512_cvtph_ps(h) rmu_simde_cvtph_ps(h)
#define _mm512_reduce_add_ps(v) rmu_simde_reduce_add_ps(v)
#define _mm512_shuffle_f32x4(a, b, imm) simde_mm512_shuffle_f32x4(a, b, imm)
#else
#include <immintrin.h>
#endif

#define AI static inline __attribute__((always_inline))
#define MR 12
#define NR 32

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

/* 16 elements of dtype dt at p as fp32. */
AI __m512 load16(rmu_dtype dt, const void *p) {
    if (dt == RMU_DT_F32) return _mm512_loadu_ps(p);
    __m256i h = _mm256_loadu_si256(p);
    if (dt == RMU_DT_BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

/* fp32 B panel [kc][32]: stored [N,K]: 16x16 transposes; stored [K,N]: rows as they are. */
AI void pack_b_dt(const rmu_dtype dt, const rmu_gemm_b *B, int k0, int kc, int n0, int nr, int rnd, float *Bp) {
    const size_t es = dt == RMU_DT_F32 ? 4 : 2;
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
        for (; k < kc; k++) {
            const char *row = base + ((size_t)(k0 + k) * B->ld + n0) * es;
            __m512 v0 = load16(dt, row), v1 = load16(dt, row + 16 * es);
            if (rnd) v0 = round_bf16(v0), v1 = round_bf16(v1);
            _mm512_store_ps(Bp + (size_t)k * NR, v0);
            _mm512_store_ps(Bp + (size_t)k * NR + 16, v1);
        }
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

#define PACKERS(NAME, DT)                                                                                         \
    static void pack_b_##NAME(const rmu_gemm_b *B, int k0, int kc, int n0, int nr, int NRx, int rnd, float *Bp) { \
        (void)NRx;                                                                                                \
        pack_b_dt(DT, B, k0, kc, n0, nr, DT == RMU_DT_BF16 ? 0 : rnd, Bp);                                        \
    }                                                                                                             \
    static void pack_b2_##NAME(const rmu_gemm_b *B, int k0, int kc, int n0, int nr, int NRx, uint32_t *Bp) {      \
        (void)NRx;                                                                                                \
        pack_b2_dt(DT, B, k0, kc, n0, nr, Bp);                                                                    \
    }                                                                                                             \
    static void to_f32_##NAME(float *dst, const void *src, long n) {                                              \
        const size_t es = DT == RMU_DT_F32 ? 4 : 2;                                                               \
        long i = 0;                                                                                               \
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load16(DT, (const char *)src + i * es));           \
        if (i < n) rmu_to_f32(dst + i, (const char *)src + i * es, DT, (size_t)(n - i));                          \
    }
PACKERS(f32, RMU_DT_F32)
PACKERS(f16, RMU_DT_F16)
PACKERS(bf16, RMU_DT_BF16)

/* ---- GEMV rows (decode) */

AI void rows_dt(const rmu_dtype dt, const int M, const int rnd, int n0, int n1, int K, const float *x, long ldx,
                const void *W, long ldw, float *y, long ldy, int acc) {
    const size_t es = dt == RMU_DT_F32 ? 4 : 2;
    for (int n = n0; n < n1; n++) {
        const char *row = (const char *)W + (size_t)n * ldw * es;
        __m512 s0[4], s1[4];
#pragma GCC unroll 4
        for (int m = 0; m < M; m++) s0[m] = s1[m] = _mm512_setzero_ps();
        int k = 0;
        for (; k + 32 <= K; k += 32) {
            __m512 w0 = load16(dt, row + (size_t)k * es), w1 = load16(dt, row + (size_t)(k + 16) * es);
            if (rnd) w0 = round_bf16(w0), w1 = round_bf16(w1);
#pragma GCC unroll 4
            for (int m = 0; m < M; m++) {
                s0[m] = _mm512_fmadd_ps(_mm512_loadu_ps(x + m * ldx + k), w0, s0[m]);
                s1[m] = _mm512_fmadd_ps(_mm512_loadu_ps(x + m * ldx + k + 16), w1, s1[m]);
            }
        }
        float tail[4] = {0, 0, 0, 0};
        for (; k < K; k++) {
            float w = rmu_gemm_load_f32(row, dt, k);
            if (rnd) w = rmu_gemm_round_bf16(w);
            for (int m = 0; m < M; m++) tail[m] += x[m * ldx + k] * w;
        }
#pragma GCC unroll 4
        for (int m = 0; m < M; m++) {
            float v = _mm512_reduce_add_ps(_mm512_add_ps(s0[m], s1[m])) + tail[m];
            y[m * ldy + n] = acc ? y[m * ldy + n] + v : v;
        }
    }
}

#define ROWS_FN(NAME, DT)                                                                                          \
    static void NAME(int M, int n0, int n1, int K, const float *x, long ldx, const void *W, long ldw, int rnd,    \
                     float *y, long ldy, int acc) {                                                              \
        if (rnd && DT != RMU_DT_BF16) {                                                                           \
            switch (M) {                                                                                          \
            case 1: rows_dt(DT, 1, 1, n0, n1, K, x, ldx, W, ldw, y, ldy, acc); break;                             \
            case 2: rows_dt(DT, 2, 1, n0, n1, K, x, ldx, W, ldw, y, ldy, acc); break;                             \
            case 3: rows_dt(DT, 3, 1, n0, n1, K, x, ldx, W, ldw, y, ldy, acc); break;                             \
            default: rows_dt(DT, 4, 1, n0, n1, K, x, ldx, W, ldw, y, ldy, acc); break;                            \
            }                                                                                                     \
        } else {                                                                                                  \
            switch (M) {                                                                                          \
            case 1: rows_dt(DT, 1, 0, n0, n1, K, x, ldx, W, ldw, y, ldy, acc); break;                             \
            case 2: rows_dt(DT, 2, 0, n0, n1, K, x, ldx, W, ldw, y, ldy, acc); break;                             \
            case 3: rows_dt(DT, 3, 0, n0, n1, K, x, ldx, W, ldw, y, ldy, acc); break;                             \
            default: rows_dt(DT, 4, 0, n0, n1, K, x, ldx, W, ldw, y, ldy, acc); break;                            \
            }                                                                                                     \
        }                                                                                                         \
    }
ROWS_FN(rows_f32, RMU_DT_F32)
ROWS_FN(rows_f16, RMU_DT_F16)
ROWS_FN(rows_bf16, RMU_DT_BF16)

void rmu_gemm_isa_avx512(rmu_gemm_isa *isa, int bf16) {
    memset(isa, 0, sizeof *isa);
    isa->name = bf16 ? "avx512bf16" : "avx512";
    isa->mr = MR;
    isa->nr = NR;
    isa->kp = bf16 ? 2 : 1;
    isa->kc = bf16 ? 256 : 128; /* 128 slots: a 16 KiB B micro-panel */
    isa->mc = 384;
    isa->nc = 1024;
    isa->ukernel = bf16 ? ukernel_bf16 : ukernel_f32;
    isa->pack_a = bf16 ? pack_a_bf16 : pack_a_f32;
    isa->type[RMU_DT_F32] = (rmu_gemm_type){4, to_f32_f32, pack_b_f32, pack_b2_f32, rows_f32};
    isa->type[RMU_DT_F16] = (rmu_gemm_type){2, to_f32_f16, pack_b_f16, pack_b2_f16, rows_f16};
    isa->type[RMU_DT_BF16] = (rmu_gemm_type){2, to_f32_bf16, pack_b_bf16, pack_b2_bf16, rows_bf16};
}

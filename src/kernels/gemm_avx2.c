/* gemm_avx2.c - AVX2+FMA path of gemm.c for CPUs without AVX-512 (compiled with -mavx2
 * -mfma -mf16c; used only after the runtime CPU check): a 6x16 fp32 micro-kernel (12 ymm
 * accumulators, 2 FMA per broadcast of A), packers that convert B to fp32 (and round to
 * bf16 in BF16 precision) while packing, and the GEMV row kernels. gemm_avx512.c has the
 * same structure at twice the width. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "gemm_impl.h"

#define AI static inline __attribute__((always_inline))
#define MR 6
#define NR 16
#define KC 256 /* the slice depth: the rows kernels follow it too */

/* Round fp32 lanes to the nearest-even bf16 value (kept as fp32); NaN stays a quiet NaN. */
AI __m256 round_bf16(__m256 v) {
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
    __m256i u = _mm256_castps_si256(v);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_and_si256(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), hi);
    __m256i q = _mm256_and_si256(_mm256_or_si256(u, _mm256_set1_epi32(0x00400000)), hi);
    return _mm256_blendv_ps(_mm256_castsi256_ps(r), _mm256_castsi256_ps(q), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
}

/* ---- micro-kernel: C[6, 16] (+)= Ap[ks][6] * Bp[ks][16] */

/* Named accumulators: with an array GCC keeps them in memory. Rows i >= R (a short last
 * micro-panel: M = 16 is 6 + 6 + 4) are not computed at all. */
#define ACC_DECL(i) __m256 c##i##0 = _mm256_setzero_ps(), c##i##1 = _mm256_setzero_ps();
#define ACC_FMA(i)                                                                                                 \
    if (i < R) {                                                                                                   \
        __m256 ai = _mm256_broadcast_ss(a + i);                                                                    \
        c##i##0 = _mm256_fmadd_ps(ai, b0, c##i##0);                                                                \
        c##i##1 = _mm256_fmadd_ps(ai, b1, c##i##1);                                                                \
    }
#define ACC_OUT(i) c[i][0] = c##i##0, c[i][1] = c##i##1;

/* C[R, nr] (+)= the accumulators c (a full 16-wide tile straight, a partial one through t) */
AI void store_tile(const int R, __m256 c[MR][2], float *C, long ldc, int nr, int acc) {
    if (nr == NR) {
        for (int i = 0; i < R; i++) {
            float *ci = C + i * ldc;
            if (acc) {
                c[i][0] = _mm256_add_ps(c[i][0], _mm256_loadu_ps(ci));
                c[i][1] = _mm256_add_ps(c[i][1], _mm256_loadu_ps(ci + 8));
            }
            _mm256_storeu_ps(ci, c[i][0]);
            _mm256_storeu_ps(ci + 8, c[i][1]);
        }
        return;
    }
    float t[MR][NR];
    for (int i = 0; i < R; i++) {
        _mm256_storeu_ps(t[i], c[i][0]);
        _mm256_storeu_ps(t[i] + 8, c[i][1]);
    }
    for (int i = 0; i < R; i++)
        for (int j = 0; j < nr; j++) C[i * ldc + j] = acc ? C[i * ldc + j] + t[i][j] : t[i][j];
}

AI void ukernel_r(const int R, int ks, const void *Ap, const void *Bp, float *C, long ldc, int nr, int acc) {
    const float *a = Ap, *b = Bp;
    /* C comes from L3 (each tile of C is revisited once per kc slice): start it early */
    for (int i = 0; i < R; i++) {
        _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(C + i * ldc + NR - 1), _MM_HINT_T0);
    }
    ACC_DECL(0) ACC_DECL(1) ACC_DECL(2) ACC_DECL(3) ACC_DECL(4) ACC_DECL(5)
#pragma GCC unroll 4
    for (int k = 0; k < ks; k++) {
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
        ACC_FMA(0) ACC_FMA(1) ACC_FMA(2) ACC_FMA(3) ACC_FMA(4) ACC_FMA(5)
        a += MR;
        b += NR;
    }
    __m256 c[MR][2];
    ACC_OUT(0) ACC_OUT(1) ACC_OUT(2) ACC_OUT(3) ACC_OUT(4) ACC_OUT(5)
    store_tile(R, c, C, ldc, nr, acc);
}

/* mr (1..6) as a compile-time row count, so rows past it cost nothing */
#define SWITCH_R(mr, CALL)                                                                                         \
    switch (mr) {                                                                                                  \
    case 6: CALL(6); break;                                                                                        \
    case 5: CALL(5); break;                                                                                        \
    case 4: CALL(4); break;                                                                                        \
    case 3: CALL(3); break;                                                                                        \
    case 2: CALL(2); break;                                                                                        \
    default: CALL(1); break;                                                                                       \
    }
static void ukernel(int ks, const void *Ap, const void *Bp, float *C, long ldc, int mr, int nr, int acc) {
#define UK(R) ukernel_r(R, ks, Ap, Bp, C, ldc, nr, acc)
    SWITCH_R(mr, UK)
#undef UK
}

/* C[mr, 16] (+)= Ap[ks][6] * W^T straight from a BF16 panel (gemm.h; no packed B): at k the
 * panel's 32 bytes are the 16 rows' bf16 pairs, so one load gives two fp32 vectors - the even
 * rows (<< 16) and the odd rows (the high halves) - two integer operations the FMA pipes do not
 * need. The products and their order are the packed kernel's (gemm_impl.h "Order"); only the
 * lanes are permuted, put back at the store. Few rows of A (serving batches) spent ~10% of a
 * product packing B. next: a later panel's bytes to pull into L2 meanwhile (0: none). */
#define PACC_DECL(i) __m256 e##i = _mm256_setzero_ps(), o##i = _mm256_setzero_ps();
#define PACC_FMA(i)                                                                                                \
    if (i < R) {                                                                                                   \
        __m256 ai = _mm256_broadcast_ss(a + i);                                                                    \
        e##i = _mm256_fmadd_ps(ai, we, e##i);                                                                      \
        o##i = _mm256_fmadd_ps(ai, wo, o##i);                                                                      \
    }
#define PACC_OUT(i)                                                                                                \
    if (i < R) {                                                                                                   \
        __m256 lo = _mm256_unpacklo_ps(e##i, o##i), hi = _mm256_unpackhi_ps(e##i, o##i);                           \
        c[i][0] = _mm256_permute2f128_ps(lo, hi, 0x20), c[i][1] = _mm256_permute2f128_ps(lo, hi, 0x31);            \
    }
AI void ukernel_pbf16_r(const int R, int ks, const void *Ap, const void *panel, uintptr_t next, float *C, long ldc,
                        int acc) {
    const float *a = Ap;
    const __m256i *w = panel;
    const __m256i hi16 = _mm256_set1_epi32((int)0xffff0000u);
    PACC_DECL(0) PACC_DECL(1) PACC_DECL(2) PACC_DECL(3) PACC_DECL(4) PACC_DECL(5)
#pragma GCC unroll 4
    for (int k = 0; k < ks; k++, a += MR) {
        if (next && !(k & 1)) _mm_prefetch((const char *)(next + (size_t)k * 32), _MM_HINT_T1); /* a line per 2 k */
        __m256i v = _mm256_loadu_si256(w + k);
        __m256 we = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
        __m256 wo = _mm256_castsi256_ps(_mm256_and_si256(v, hi16));
        PACC_FMA(0) PACC_FMA(1) PACC_FMA(2) PACC_FMA(3) PACC_FMA(4) PACC_FMA(5)
    }
    __m256 c[MR][2];
    PACC_OUT(0) PACC_OUT(1) PACC_OUT(2) PACC_OUT(3) PACC_OUT(4) PACC_OUT(5)
    store_tile(R, c, C, ldc, NR, acc);
}
static void ukernel_pbf16(int ks, const void *Ap, const void *panel, uintptr_t next, float *C, long ldc, int mr,
                          int acc) {
#define UKP(R) ukernel_pbf16_r(R, ks, Ap, panel, next, C, ldc, acc)
    SWITCH_R(mr, UKP)
#undef UKP
}

/* ---- packers */

/* r[t] <- column t of the 8x8 block r (rows r[0..7]). */
AI void transpose8(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* Stores the first 6 lanes of v at p: 8 wide when the next 2 floats are written later. */
AI void store6(float *p, __m256 v, int last) {
    if (!last) {
        _mm256_storeu_ps(p, v);
    } else {
        _mm_storeu_ps(p, _mm256_castps256_ps128(v));
        _mm_storel_pi((__m64 *)(p + 4), _mm256_extractf128_ps(v, 1));
    }
}

/* A micro-panel [kc][6]: rows contiguous in k (x W^T, dY W) are transposed 8 k at a time;
 * columns contiguous (dY^T X: A read transposed) are copied 6 at a time. */
static void pack_a(int mr, int kc, const float *A, long rsa, long csa, int MRx, int rnd, void *Ap_) {
    float *Ap = Ap_;
    (void)MRx;
    int k = 0;
    if (csa == 1 && mr == MR) {
        for (; k + 8 <= kc; k += 8) {
            __m256 r[8];
#pragma GCC unroll 6
            for (int i = 0; i < MR; i++) {
                r[i] = _mm256_loadu_ps(A + i * rsa + k);
                if (rnd) r[i] = round_bf16(r[i]);
            }
            r[6] = r[7] = _mm256_setzero_ps();
            transpose8(r);
#pragma GCC unroll 8
            for (int t = 0; t < 8; t++) store6(Ap + (size_t)(k + t) * MR, r[t], k + t == kc - 1);
        }
    } else if (rsa == 1) {
        const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(mr), lanes);
        for (; k < kc; k++) {
            __m256 v = _mm256_maskload_ps(A + k * csa, mask);
            if (rnd) v = round_bf16(v);
            store6(Ap + (size_t)k * MR, v, k == kc - 1);
        }
    }
    if (k < kc) rmu_gemm_pack_a_generic(mr, kc - k, A + k * csa, rsa, csa, MR, rnd, Ap + (size_t)k * MR);
}

/* FP8 codes (sign-extended to 16-bit lanes) -> the fp16 patterns of e4m3(code) * 2^-8
 * (gemm_impl.h): sign to bit 15, magnitude to bits 13..7. The NaN codes come out as
 * +-1.875 * 2^-8 here; f8_nan8 gives them the NaN exponent. */
AI __m128i f8_half8(__m128i s16) { return _mm_and_si128(_mm_slli_epi16(s16, 7), _mm_set1_epi16((short)0xbfff)); }
AI __m128i f8_nan8(__m128i h) {
    __m128i nan = _mm_cmpeq_epi16(_mm_and_si128(h, _mm_set1_epi16(0x3f80)), _mm_set1_epi16(0x3f80));
    return _mm_or_si128(h, _mm_and_si128(nan, _mm_set1_epi16(0x7c00)));
}
/* The same for 16 codes (sign-extended in 256 bits). */
AI __m256i f8_half16(__m256i s16) {
    return _mm256_and_si256(_mm256_slli_epi16(s16, 7), _mm256_set1_epi16((short)0xbfff));
}
AI __m256i f8_nan16(__m256i h) {
    __m256i nan = _mm256_cmpeq_epi16(_mm256_and_si256(h, _mm256_set1_epi16(0x3f80)), _mm256_set1_epi16(0x3f80));
    return _mm256_or_si256(h, _mm256_and_si256(nan, _mm256_set1_epi16(0x7c00)));
}
/* 8 FP8 codes (bytes) as fp32 times 2^-8, NaN codes included. */
AI __m256 f8_to_ps(__m128i codes) { return _mm256_cvtph_ps(f8_nan8(f8_half8(_mm_cvtepi8_epi16(codes)))); }

/* 4 k of 8 rows of an F8 panel (gemm.h: the 32 bytes at p, row t's 4 codes in word t, k in
 * byte order; never NaN) as the fp32 patterns of e4m3(code) * 2^-120, in w[0..3] (k order):
 * sign to bit 31, the 7 magnitude bits to bits 26..20, so the E4M3 exponent becomes the low
 * bits of the fp32 exponent field and denormal codes fp32 denormals, exactly. A 16-bit
 * arithmetic shift by 4 does that for the high byte of each 16-bit half (the word's top half
 * is then in place, its low half is shifted up by 16); the low bytes are first moved up by 8.
 * 5 shifts and 4 ands per 32 weights, where a byte per k costs a vpmovsxbd and a vpslld per 8
 * (shuffle and shift pipes: what bounds one-row FP8 decode on Zen 3). */
AI void f8q_tiny(const char *p, __m256 w[4]) {
    const __m256i d = _mm256_loadu_si256((const __m256i *)p), m = _mm256_set1_epi32((int)0x87f00000);
    const __m256i hi = _mm256_srai_epi16(d, 4), lo = _mm256_srai_epi16(_mm256_slli_epi16(d, 8), 4);
    w[0] = _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(lo, 16), m));
    w[1] = _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(hi, 16), m));
    w[2] = _mm256_castsi256_ps(_mm256_and_si256(lo, m));
    w[3] = _mm256_castsi256_ps(_mm256_and_si256(hi, m));
}
#define F8_X_SCALE 0x1p112f
/* The same times 2^112: e4m3(code) * 2^-8, the values every path multiplies (gemm_impl.h). An
 * FMA with -0 (exact, and zeros keep their sign): Zen 3 multiplies denormal inputs slowly,
 * FMAs do not mind them. */
AI void f8q_unit(const char *p, __m256 w[4]) {
    const __m256 s = _mm256_set1_ps(F8_X_SCALE), z = _mm256_set1_ps(-0.0f);
    f8q_tiny(p, w);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) w[j] = _mm256_fmadd_ps(w[j], s, z);
}

/* 8 elements of dtype dt at p as fp32 (F8: times 2^-8). */
AI __m256 load8(rmu_dtype dt, const void *p) {
    if (dt == RMU_DT_F32) return _mm256_loadu_ps(p);
    if (dt == RMU_DT_F8_E4M3) return f8_to_ps(_mm_loadl_epi64(p));
    __m128i h = _mm_loadu_si128(p);
    if (dt == RMU_DT_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

/* the vocabulary of gemm_simd.h at 8 lanes */
#define VL 8
typedef __m256 vf;
#define vf_load load8
#define vf_load_panel load8 /* BF16: 8 elements of a panel */
#define vf_f8q_unit f8q_unit /* F8: 4 k of 8 rows of a panel */
#define vf_round round_bf16
#define vf_store _mm256_store_ps
#define vf_storeu _mm256_storeu_ps
#define vf_mul _mm256_mul_ps
#define vf_set1 _mm256_set1_ps
#include "gemm_simd.h"

/* ---- weight rows, 8 at a time, transposed in registers */

/* v[t] = [row t | row t+4] (4 floats each) -> v[j] = [rows 0..3 | rows 4..7] of float j. */
AI void tr4x2(__m256 v[4]) {
    __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
    __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
    v[0] = _mm256_shuffle_ps(t0, t2, 0x44);
    v[1] = _mm256_shuffle_ps(t0, t2, 0xEE);
    v[2] = _mm256_shuffle_ps(t1, t3, 0x44);
    v[3] = _mm256_shuffle_ps(t1, t3, 0xEE);
}

AI __m256i load2x128(const char *a, const char *b) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)a)),
                                   _mm_loadu_si128((const __m128i *)b), 1);
}

/* v[j] = the 8 rows' element k + 4h + j as fp32 (rounded to bf16 when rnd), h = 0 or 1; r[t]
 * points at row t (element 0). 128-bit loads of rows t and t+4 side by side, converted
 * in-lane, then 4x4 in-lane transposes: no lane-crossing shuffle (the B packer and the rows
 * kernels both transpose weight rows this way). F8: the values x 2^-8, without scales. */
AI void quad(const rmu_dtype dt, const int rnd, const int h, const char *const r[8], size_t k, __m256 v[4]) {
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++) {
        if (dt == RMU_DT_BF16) { /* 8 bf16 of rows t and t+4; unpacking with 0 widens in-lane */
            __m256i raw = load2x128(r[t] + 2 * k, r[t + 4] + 2 * k);
            __m256i z = _mm256_setzero_si256();
            v[t] = _mm256_castsi256_ps(h ? _mm256_unpackhi_epi16(z, raw) : _mm256_unpacklo_epi16(z, raw));
        } else if (dt == RMU_DT_F32) {
            v[t] = _mm256_castsi256_ps(load2x128(r[t] + 4 * (k + 4 * h), r[t + 4] + 4 * (k + 4 * h)));
        } else if (dt == RMU_DT_F8_E4M3) { /* 4 codes of rows t and t+4 */
            int a, b;
            memcpy(&a, r[t] + k + 4 * h, 4);
            memcpy(&b, r[t + 4] + k + 4 * h, 4);
            v[t] = f8_to_ps(_mm_setr_epi32(a, b, 0, 0));
        } else { /* F16: 4 halves of each row, converted together */
            __m128i a = _mm_loadl_epi64((const __m128i *)(r[t] + 2 * (k + 4 * h)));
            __m128i b = _mm_loadl_epi64((const __m128i *)(r[t + 4] + 2 * (k + 4 * h)));
            v[t] = _mm256_cvtph_ps(_mm_unpacklo_epi64(a, b));
        }
        if (rnd) v[t] = round_bf16(v[t]);
    }
    tr4x2(v);
}

/* v[j] = the 8 rows' element k + j, j < 8 (quad for h = 0 and 1). BF16 is transposed as 16-bit
 * data first (two unpack stages of row pairs), then widened by unpacking with 0: 20 shuffles
 * for 64 weights instead of 28. The same values as quad, so packer and rows kernels agree. */
AI void cols8(const rmu_dtype dt, const int rnd, const char *const r[8], size_t k, __m256 v[8]) {
    if (dt == RMU_DT_F8_E4M3) { /* an 8x8 byte transpose (12 unpacks), then 16 codes per decode */
        __m128i q[8];
#pragma GCC unroll 8
        for (int t = 0; t < 8; t++) q[t] = _mm_loadl_epi64((const __m128i *)(r[t] + k));
        __m128i p0 = _mm_unpacklo_epi8(q[0], q[1]), p1 = _mm_unpacklo_epi8(q[2], q[3]);
        __m128i p2 = _mm_unpacklo_epi8(q[4], q[5]), p3 = _mm_unpacklo_epi8(q[6], q[7]);
        __m128i s0 = _mm_unpacklo_epi16(p0, p1), s1 = _mm_unpackhi_epi16(p0, p1); /* rows 0..3: k0..3, k4..7 */
        __m128i s2 = _mm_unpacklo_epi16(p2, p3), s3 = _mm_unpackhi_epi16(p2, p3); /* rows 4..7 */
        __m128i c[4] = {_mm_unpacklo_epi32(s0, s2), _mm_unpackhi_epi32(s0, s2), _mm_unpacklo_epi32(s1, s3),
                        _mm_unpackhi_epi32(s1, s3)}; /* c[i]: rows 0..7 of k 2i, then of k 2i+1 */
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            __m256i h = f8_nan16(f8_half16(_mm256_cvtepi8_epi16(c[i])));
            v[2 * i] = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
            v[2 * i + 1] = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
        }
        return;
    }
    if (dt != RMU_DT_BF16) {
        quad(dt, rnd, 0, r, k, v);
        quad(dt, rnd, 1, r, k, v + 4);
        return;
    }
    __m256i raw[4];
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++) raw[t] = load2x128(r[t] + 2 * k, r[t + 4] + 2 * k);
    /* a: (row 2i, row 2i+1) pairs of k0..3 (lo) / k4..7 (hi); b: rows 0..3 of two k per lane */
    __m256i a0 = _mm256_unpacklo_epi16(raw[0], raw[1]), a1 = _mm256_unpackhi_epi16(raw[0], raw[1]);
    __m256i a2 = _mm256_unpacklo_epi16(raw[2], raw[3]), a3 = _mm256_unpackhi_epi16(raw[2], raw[3]);
    __m256i b[4] = {_mm256_unpacklo_epi32(a0, a2), _mm256_unpackhi_epi32(a0, a2), _mm256_unpacklo_epi32(a1, a3),
                    _mm256_unpackhi_epi32(a1, a3)};
    const __m256i z = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        v[2 * i] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, b[i]));
        v[2 * i + 1] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, b[i]));
    }
}

/* fp32 B panel [kc][16]. Stored [N,K] (weights, forward): 8x8 transposes; stored [K,N]:
 * rows converted as they are. F8 (gemm_impl.h): stored [N,K] the values x 2^-8 (the scales
 * come after the sums), stored [K,N] times the row's scale. Tails (k % 8, odd nr) take the
 * generic packer. */
AI void pack_b_dt(const rmu_dtype dt, const rmu_gemm_b *B, int k0, int kc, int n0, int nr, int rnd, float *Bp) {
    if (pack_b_panels(dt, B, k0, kc, n0, nr, Bp)) return;
    const size_t es = ESIZE(dt);
    const char *base = B->data;
    int k = 0;
    if (B->trans) {
        /* 8 rows at a time over all of kc: rows ld apart often share an L1 set, and 8 of
         * them is what an 8-way L1 holds while each line is read in pieces. Rows past nr
         * read zeros. Loops unrolled by hand-held pragmas: the 8 vectors must stay in
         * registers. */
        static const float zero_row[1024];
        int kk = kc * es <= sizeof zero_row ? kc / 8 * 8 : 0;
        for (int jb = 0; jb < NR && kk; jb += 8) {
            const char *rp[8];
#pragma GCC unroll 8
            for (int t = 0; t < 8; t++)
                rp[t] = jb + t < nr ? base + ((size_t)(n0 + jb + t) * B->ld + k0) * es : (const char *)zero_row;
            for (k = 0; k < kk; k += 8) {
                __m256 v[8];
                cols8(dt, rnd, rp, (size_t)k, v);
#pragma GCC unroll 8
                for (int j = 0; j < 8; j++) _mm256_store_ps(Bp + (size_t)(k + j) * NR + jb, v[j]);
            }
        }
    } else if (nr == NR) {
        k = pack_b_kn(dt, B, k0, kc, n0, rnd, Bp);
    }
    if (k < kc) rmu_gemm_pack_b_generic(B, k0 + k, kc - k, n0, nr, NR, rnd, Bp + (size_t)k * NR);
}

SIMD_TYPE_FNS(f32, RMU_DT_F32)
SIMD_TYPE_FNS(bf16, RMU_DT_BF16)
SIMD_TYPE_FNS(f16, RMU_DT_F16)
SIMD_TYPE_FNS(f8, RMU_DT_F8_E4M3)

/* ---- rows (decode, small batches): the blocked path's order without packing
 *
 * Eight weight rows form a group: its 8 outputs of one row of x are one ymm accumulator that
 * takes k in order, one FMA per k with x[m][k] broadcast - what the 6x16 micro-kernel does
 * to them. The k-th lane vector (the 8 rows' element k) comes from an in-register transpose:
 * 128-bit loads of rows t and t+4 side by side, converted in-lane, then 4x4 in-lane
 * transposes, no lane-crossing shuffle. Per kc slice an accumulator starts at 0 and is then
 * added to y, as the micro-kernel adds its tile to C. */

/* The 8 rows' element k, one at a time (slice tails; F8 x 2^-8, as the generic packer). */
AI __m256 column(const rmu_dtype dt, const int rnd, const char *const r[8], size_t k) {
    float t[8];
    for (int i = 0; i < 8; i++) t[i] = rmu_gemm_load_f32(r[i], dt, k);
    __m256 v = _mm256_loadu_ps(t);
    if (dt == RMU_DT_F8_E4M3) return _mm256_mul_ps(v, _mm256_set1_ps(1.0f / RMU_GEMM_F8_UNIT));
    return rnd ? round_bf16(v) : v;
}

/* Named accumulators c0..c7 for up to 8 rows of x (GCC keeps an array in memory). */
#define RACC(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define R_DECL(m) __m256 c##m = _mm256_setzero_ps();
#define R_FMA(m)                                                                                                   \
    if (m < M) c##m = _mm256_fmadd_ps(_mm256_broadcast_ss(x + (m) * ldx + kk), w, c##m);
#define R_STORE(m)                                                                                                 \
    if (m < M) store8(y + (m) * ldy, dt == RMU_DT_F8_E4M3 ? _mm256_mul_ps(c##m, sv) : c##m, nr, add);

/* y[0..nr) = s (add 0) or y + s (add 1). */
AI void store8(float *y, __m256 s, int nr, int add) {
    if (nr == 8) {
        _mm256_storeu_ps(y, add ? _mm256_add_ps(_mm256_loadu_ps(y), s) : s);
        return;
    }
    float t[8];
    _mm256_storeu_ps(t, s);
    for (int i = 0; i < nr; i++) y[i] = add ? y[i] + t[i] : t[i];
}

/* One kc slice [k0, k0+kc) of a group for M rows of x, then into y. */
AI void group_slice(const rmu_dtype dt, const int M, const int rnd, const char *const r[8], __m256 sv, int nr, int k0,
                    int kc, const float *x, long ldx, float *y, long ldy, int add) {
    RACC(R_DECL)
    int k = k0, end = k0 + kc;
    for (; k + 8 <= end; k += 8) {
        __m256 v[8];
        cols8(dt, rnd, r, (size_t)k, v);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            __m256 w = v[j];
            int kk = k + j;
            RACC(R_FMA)
        }
    }
    for (; k < end; k++) {
        __m256 w = column(dt, rnd, r, (size_t)k);
        int kk = k;
        RACC(R_FMA)
    }
    RACC(R_STORE)
}

/* Row pointers of the group at n (rows past n1 repeat the last row; their lanes are dropped)
 * and, for F8, their scales x 2^8. */
AI int group_rows(const rmu_dtype dt, const rmu_gemm_b *B, size_t rs, int n, int n1, const char *r[8], __m256 *sv) {
    int nr = n1 - n < 8 ? n1 - n : 8;
    float sc[8] = {0};
    for (int t = 0; t < 8; t++) {
        int i = n + (t < nr ? t : nr - 1);
        r[t] = (const char *)B->data + (size_t)i * rs;
        if (dt == RMU_DT_F8_E4M3) sc[t] = rmu_gemm_f8_scale(B, i) * RMU_GEMM_F8_UNIT;
    }
    *sv = _mm256_loadu_ps(sc);
    return nr;
}

/* One x row and one group is a single FMA chain, bound by the FMA latency (one 8-lane FMA
 * per 4 cycles: below memory speed). So for M <= 2 two groups run side by side, the second
 * one kc slice behind: their loads at the same k would fall into the same L1 set (weight
 * rows are often a multiple of 4 KiB apart), a slice apart they do not. */
AI void two_groups(const rmu_dtype dt, const int M, const int rnd, const char *const ra[8], const char *const rb[8],
                   __m256 sa, __m256 sb, int K, const float *x, long ldx, float *y, long ldy, int acc) {
    int ns = (K + KC - 1) / KC;
    for (int s = 0; s <= ns; s++) {
        int ka = s * KC, kb = ka - KC;
        int a = s < ns, b = s > 0;
        if (a && b && ka + KC <= K) { /* both full slices: interleaved (two chains per x row) */
            __m256 c0 = _mm256_setzero_ps(), c1 = c0, d0 = c0, d1 = c0;
            for (int k = 0; k < KC; k += 8) {
                /* one group's columns and FMAs, then the other's: fewer live registers than
                 * both at once; out-of-order execution overlaps the two chains */
                __m256 v[8];
                cols8(dt, rnd, ra, (size_t)(ka + k), v);
#pragma GCC unroll 8
                for (int j = 0; j < 8; j++) {
                    c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + ka + k + j), v[j], c0);
                    if (M > 1) c1 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + ldx + ka + k + j), v[j], c1);
                }
                cols8(dt, rnd, rb, (size_t)(kb + k), v);
#pragma GCC unroll 8
                for (int j = 0; j < 8; j++) {
                    d0 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + kb + k + j), v[j], d0);
                    if (M > 1) d1 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + ldx + kb + k + j), v[j], d1);
                }
            }
            if (dt == RMU_DT_F8_E4M3) /* the slices' sums times the scales (gemm_impl.h) */
                c0 = _mm256_mul_ps(c0, sa), c1 = _mm256_mul_ps(c1, sa), d0 = _mm256_mul_ps(d0, sb),
                d1 = _mm256_mul_ps(d1, sb);
            store8(y, c0, 8, acc || s > 0);
            store8(y + 8, d0, 8, acc || s > 1);
            if (M > 1) {
                store8(y + ldy, c1, 8, acc || s > 0);
                store8(y + ldy + 8, d1, 8, acc || s > 1);
            }
            continue;
        }
        if (a) group_slice(dt, M, rnd, ra, sa, 8, ka, K - ka < KC ? K - ka : KC, x, ldx, y, ldy, acc || s > 0);
        if (b) group_slice(dt, M, rnd, rb, sb, 8, kb, K - kb < KC ? K - kb : KC, x, ldx, y + 8, ldy, acc || s > 1);
    }
}

/* x * 2^112 stays finite: every |x| < 2^16 (NaN fails the test, so such rows take f8q_unit,
 * whose products are the same numbers) */
AI int f8_x_fits(int M, int K, const float *x, long ldx) {
    const __m256 lim = _mm256_set1_ps(65536.0f), mag = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int m = 0; m < M; m++) {
        int k = 0;
        __m256 ok = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
        for (; k + 8 <= K; k += 8) {
            __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + m * ldx + k), mag);
            ok = _mm256_and_ps(ok, _mm256_cmp_ps(a, lim, _CMP_LT_OQ));
        }
        if (_mm256_movemask_ps(ok) != 0xff) return 0;
        for (; k < K; k++)
            if (!(fabsf(x[m * ldx + k]) < 65536.0f)) return 0;
    }
    return 1;
}
/* BF16 from panels (gemm.h): the 16 rows' element k is one 32-byte load, two lane vectors, no
 * transposes. Up to 4 rows of x take both halves at once (8 accumulators); more rows take the
 * halves one after the other (the slice's panel elements are then in L1). The order per
 * output is the groups' (k in order per slice). */
#define P_DECL(m) __m256 a##m = _mm256_setzero_ps(), b##m = a##m;
#define P_FMA(m)                                                                                                   \
    if (m < M) {                                                                                                   \
        __m256 xm = _mm256_broadcast_ss(x + (m) * ldx + k);                                                        \
        a##m = _mm256_fmadd_ps(xm, w0, a##m), b##m = _mm256_fmadd_ps(xm, w1, b##m);                               \
    }
#define P_STORE(m)                                                                                                 \
    if (m < M) {                                                                                                   \
        store8(y + (m) * ldy, dt == RMU_DT_F8_E4M3 ? _mm256_mul_ps(a##m, s0) : a##m, nr < 8 ? nr : 8, add);        \
        if (nr > 8) store8(y + (m) * ldy + 8, dt == RMU_DT_F8_E4M3 ? _mm256_mul_ps(b##m, s1) : b##m, nr - 8, add); \
    }
#define RACC4(X) X(0) X(1) X(2) X(3)
/* 8 of a panel's rows (p: the first one's element 0, 16 elements per k) for up to 8 rows of x */
AI void half_slice(const rmu_dtype dt, const int M, const char *p, __m256 sv, int nr, int k0, int kc, const float *x,
                   long ldx, float *y, long ldy, int add) {
    RACC(R_DECL)
    for (int kk = k0; kk < k0 + kc; kk++) {
        __m256 w = load8(dt, p + (size_t)kk * 32);
        RACC(R_FMA)
    }
    RACC(R_STORE)
}
AI void panel_slice(const int M, const char *p, int nr, int k0, int kc, const float *x, long ldx, float *y, long ldy,
                    int add) {
    const rmu_dtype dt = RMU_DT_BF16;
    const __m256 sv = _mm256_setzero_ps(), s0 = sv, s1 = sv; /* no scales (R_STORE, P_STORE) */
    if (M <= 4) {
        RACC4(P_DECL)
        for (int k = k0; k < k0 + kc; k++) {
            __m256 w0 = load8(dt, p + (size_t)k * 32), w1 = load8(dt, p + (size_t)k * 32 + 16);
            RACC4(P_FMA)
        }
        RACC4(P_STORE)
        return;
    }
    for (int half = 0; half < 2 && 8 * half < nr; half++)
        half_slice(dt, M, p + 16 * half, sv, half ? nr - 8 : nr < 8 ? nr : 8, k0, kc, x, ldx, y + 8 * half, ldy, add);
}

/* Two whole BF16 panels for one or two rows of x: with one panel a row of x is two FMA chains,
 * bound by the FMA latency; two panels give four (eight for two rows). */
AI void panel2_slice(const int M, const char *p, const char *q, int k0, int kc, const float *x, long ldx, float *y,
                     long ldy, int add) {
    const rmu_dtype dt = RMU_DT_BF16;
    __m256 a0 = _mm256_setzero_ps(), b0 = a0, c0 = a0, d0 = a0, a1 = a0, b1 = a0, c1 = a0, d1 = a0;
    for (int k = k0; k < k0 + kc; k++) {
        __m256 w0 = load8(dt, p + (size_t)k * 32), w1 = load8(dt, p + (size_t)k * 32 + 16);
        __m256 w2 = load8(dt, q + (size_t)k * 32), w3 = load8(dt, q + (size_t)k * 32 + 16);
        __m256 x0 = _mm256_broadcast_ss(x + k);
        a0 = _mm256_fmadd_ps(x0, w0, a0), b0 = _mm256_fmadd_ps(x0, w1, b0);
        c0 = _mm256_fmadd_ps(x0, w2, c0), d0 = _mm256_fmadd_ps(x0, w3, d0);
        if (M > 1) {
            __m256 x1 = _mm256_broadcast_ss(x + ldx + k);
            a1 = _mm256_fmadd_ps(x1, w0, a1), b1 = _mm256_fmadd_ps(x1, w1, b1);
            c1 = _mm256_fmadd_ps(x1, w2, c1), d1 = _mm256_fmadd_ps(x1, w3, d1);
        }
    }
    store8(y, a0, 8, add), store8(y + 8, b0, 8, add), store8(y + 16, c0, 8, add), store8(y + 24, d0, 8, add);
    if (M > 1) {
        store8(y + ldy, a1, 8, add), store8(y + ldy + 8, b1, 8, add);
        store8(y + ldy + 16, c1, 8, add), store8(y + ldy + 24, d1, 8, add);
    }
}

/* F8 from panels (gemm.h: 4 k of 8 rows per 32-byte load). The order per output is the
 * groups' (k in order per slice, the scale x 2^8 after the slice's sum), so a slice is groups
 * of 4 k in order and then the K % 4 left (the panel's zero padding is not multiplied: x has
 * no elements there).
 * One row of x against NP whole panels (4: eight FMA chains, which one row's decode needs to
 * run at its pipes' rate rather than the FMA latency; 2 for the chunk's rest). tiny: the
 * weights as f8q_tiny and x scaled by 2^112 (one multiply per k), so each product is
 * x * (e4m3 * 2^-8) exactly as on every other path; else f8q_unit. Accumulator 2q + h: panel
 * q, rows 8h..8h+7. */
#define F8_ACC(i) __m256 a##i = _mm256_setzero_ps();
#define F8_GRP(i)                                                                                                  \
    if ((i) < 2 * NP) {                                                                                            \
        __m256 w[4];                                                                                               \
        if (tiny) f8q_tiny(p + (size_t)((i) / 2) * ps + (i) % 2 * 32 + g, w);                                     \
        else f8q_unit(p + (size_t)((i) / 2) * ps + (i) % 2 * 32 + g, w);                                          \
        _Pragma("GCC unroll 4") for (int j = 0; j < nk; j++) a##i = _mm256_fmadd_ps(xv[j], w[j], a##i);          \
    }
#define F8_STORE(i)                                                                                                \
    if ((i) < 2 * NP) store8(y + 8 * (i), _mm256_mul_ps(a##i, _mm256_loadu_ps(sc + 8 * (i))), 8, add);
#define F8_8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
/* nk (<= 4) k at k of one row of x (tiny: times 2^112) */
AI void f8_x4(const int nk, const float *x, int k, const int tiny, __m256 xv[4]) {
#pragma GCC unroll 4
    for (int j = 0; j < nk; j++) {
        xv[j] = _mm256_broadcast_ss(x + k + j);
        if (tiny) xv[j] = _mm256_mul_ps(xv[j], _mm256_set1_ps(F8_X_SCALE));
    }
}
AI void f8_panels_slice(const int NP, const char *p, size_t ps, const float *sc, int k0, int kc, const float *x,
                        float *y, int add, const int tiny) {
    F8_8(F8_ACC)
    for (int k = k0; k < k0 + kc; k += 4) {
        __m256 xv[4];
        const size_t g = (size_t)k * 16;
        if (k0 + kc - k >= 4) {
            const int nk = 4;
            f8_x4(nk, x, k, tiny, xv);
            F8_8(F8_GRP)
        } else { /* the slice's last k, K % 4 of them */
            const int nk = k0 + kc - k;
            f8_x4(nk, x, k, tiny, xv);
            F8_8(F8_GRP)
        }
    }
    F8_8(F8_STORE)
}

/* An F8 panel (p: its slice's first group) for up to 4 rows of x, both halves per group (x
 * broadcast from memory twice; one row takes this for a chunk's last panel), or 8 of its rows
 * (p: their first word) for up to 8 rows of x. More rows share each decode, so the weights are
 * decoded to their unit values (f8q_unit); the two-row panel2 layout of BF16 measured no faster
 * here. */
#define F8_FMA2(m)                                                                                                 \
    if (m < M) {                                                                                                   \
        __m256 xm = _mm256_broadcast_ss(x + (m) * ldx + k + j);                                                    \
        a##m = _mm256_fmadd_ps(xm, v[j], a##m), b##m = _mm256_fmadd_ps(xm, u[j], b##m);                           \
    }
AI void f8_panel_slice4(const int M, const char *p, const float *sc, int k0, int kc, const float *x, long ldx,
                        float *y, long ldy, int add) {
    const int nr = 16; /* P_STORE: whole panels only */
    const rmu_dtype dt = RMU_DT_F8_E4M3;
    const __m256 s0 = _mm256_loadu_ps(sc), s1 = _mm256_loadu_ps(sc + 8);
    RACC4(P_DECL)
    for (int k = k0; k < k0 + kc; k += 4) {
        __m256 v[4], u[4];
        f8q_unit(p + (size_t)k * 16, v), f8q_unit(p + (size_t)k * 16 + 32, u);
        const int nk = k0 + kc - k < 4 ? k0 + kc - k : 4;
#pragma GCC unroll 4
        for (int j = 0; j < nk; j++) {
            RACC4(F8_FMA2)
        }
    }
    RACC4(P_STORE)
}
AI void f8_half_slice(const int M, const char *p, __m256 sv, int nr, int k0, int kc, const float *x, long ldx,
                      float *y, long ldy, int add) {
    const rmu_dtype dt = RMU_DT_F8_E4M3; /* R_STORE applies the scales */
    RACC(R_DECL)
    F8Q_FOR_K(p, k0, kc, RACC(R_FMA))
    RACC(R_STORE)
}

/* F8: the rows' scales x 2^8 (gemm_impl.h) */
AI void panel_scales(const rmu_gemm_b *B, int n, int nr, float *sc) {
    for (int t = 0; t < nr; t++) sc[t] = rmu_gemm_f8_scale(B, n + t) * RMU_GEMM_F8_UNIT;
}

AI void rows_panels(const rmu_dtype dt, const int M, int n0, int n1, int K, const float *x, long ldx,
                    const rmu_gemm_b *B, float *y, long ldy, int acc) {
    const size_t ps = rmu_gemm_panel_bytes(dt, B->ld);
    int n = n0;
    if (dt == RMU_DT_F8_E4M3) {
        const int tiny = M == 1 && f8_x_fits(M, K, x, ldx);
        for (int np = 4; np >= 2 && M == 1; np -= 2)
            for (; n + 16 * np <= n1; n += 16 * np) {
                const char *p = (const char *)B->panels + (size_t)(n / 16) * ps;
                float sc[64];
                panel_scales(B, n, 16 * np, sc);
                for (int k0 = 0; k0 < K; k0 += KC) {
                    int kc = K - k0 < KC ? K - k0 : KC, add = acc || k0 > 0;
                    if (np == 4 && tiny) f8_panels_slice(4, p, ps, sc, k0, kc, x, y + n, add, 1);
                    else if (np == 4) f8_panels_slice(4, p, ps, sc, k0, kc, x, y + n, add, 0);
                    else if (tiny) f8_panels_slice(2, p, ps, sc, k0, kc, x, y + n, add, 1);
                    else f8_panels_slice(2, p, ps, sc, k0, kc, x, y + n, add, 0);
                }
            }
        for (; n < n1; n += 16) {
            const char *p = (const char *)B->panels + (size_t)(n / 16) * ps;
            int nr = n1 - n < 16 ? n1 - n : 16;
            float sc[16] = {0};
            panel_scales(B, n, nr, sc);
            if (M <= 4 && nr == 16) {
                for (int k0 = 0; k0 < K; k0 += KC)
                    f8_panel_slice4(M, p, sc, k0, K - k0 < KC ? K - k0 : KC, x, ldx, y + n, ldy, acc || k0 > 0);
                continue;
            }
            for (int k0 = 0; k0 < K; k0 += KC)
                for (int h = 0; h < 2 && 8 * h < nr; h++)
                    f8_half_slice(M, p + 32 * h, _mm256_loadu_ps(sc + 8 * h), h ? nr - 8 : nr < 8 ? nr : 8, k0,
                                  K - k0 < KC ? K - k0 : KC, x, ldx, y + n + 8 * h, ldy, acc || k0 > 0);
        }
        return;
    }
    if (M <= 2)
        for (; n + 32 <= n1; n += 32) {
            const char *p = (const char *)B->panels + (size_t)(n / 16) * ps;
            for (int k0 = 0; k0 < K; k0 += KC)
                panel2_slice(M, p, p + ps, k0, K - k0 < KC ? K - k0 : KC, x, ldx, y + n, ldy, acc || k0 > 0);
        }
    for (; n < n1; n += 16) {
        const char *p = (const char *)B->panels + (size_t)(n / 16) * ps;
        int nr = n1 - n < 16 ? n1 - n : 16;
        for (int k0 = 0; k0 < K; k0 += KC)
            panel_slice(M, p, nr, k0, K - k0 < KC ? K - k0 : KC, x, ldx, y + n, ldy, acc || k0 > 0);
    }
}

AI void rows_dt(const rmu_dtype dt, const int M, const int rnd, int n0, int n1, int K, const float *x, long ldx,
                const rmu_gemm_b *B, float *y, long ldy, int acc) {
    if ((dt == RMU_DT_F8_E4M3 || dt == RMU_DT_BF16) && B->panels && n0 % 16 == 0) {
        rows_panels(dt, M, n0, n1, K, x, ldx, B, y, ldy, acc);
        return;
    }
    const size_t rs = (size_t)B->ld * ESIZE(dt);
    int n = n0;
    if (M <= 2)
        for (; n + 16 <= n1; n += 16) {
            const char *ra[8], *rb[8];
            __m256 sa, sb;
            group_rows(dt, B, rs, n, n1, ra, &sa);
            group_rows(dt, B, rs, n + 8, n1, rb, &sb);
            two_groups(dt, M, rnd, ra, rb, sa, sb, K, x, ldx, y + n, ldy, acc);
        }
    for (; n < n1; n += 8) {
        const char *r[8];
        __m256 sv;
        int nr = group_rows(dt, B, rs, n, n1, r, &sv);
        for (int k0 = 0; k0 < K; k0 += KC)
            group_slice(dt, M, rnd, r, sv, nr, k0, K - k0 < KC ? K - k0 : KC, x, ldx, y + n, ldy, acc || k0 > 0);
    }
}

#define ROWS_AT(MM) rows_dt(dt_, MM, rnd_, n0, n1, K, (const float *)x, ldx, B, y, ldy, acc)
SIMD_ROWS_FN(rows_f32, RMU_DT_F32)
SIMD_ROWS_FN(rows_f16, RMU_DT_F16)
SIMD_ROWS_FN(rows_bf16, RMU_DT_BF16)
SIMD_ROWS_FN(rows_f8, RMU_DT_F8_E4M3)

void rmu_gemm_isa_avx2(rmu_gemm_isa *isa) {
    memset(isa, 0, sizeof *isa);
    isa->name = "avx2";
    isa->mr = MR;
    isa->nr = NR;
    isa->kp = 1;
    isa->kc = KC;
    isa->mc = 144;
    isa->nc = 1024;
    isa->rows_max = 8;
    isa->panels = 1u << RMU_DT_F8_E4M3 | 1u << RMU_DT_BF16;
    isa->ukernel = ukernel;
    isa->ukernel_pbf16 = ukernel_pbf16;
    isa->pack_a = pack_a;
    isa->type[RMU_DT_F32] = (rmu_gemm_type){4, to_f32_f32, pack_b_f32, rmu_gemm_pack_b2_generic, rows_f32};
    isa->type[RMU_DT_F16] = (rmu_gemm_type){2, to_f32_f16, pack_b_f16, rmu_gemm_pack_b2_generic, rows_f16};
    isa->type[RMU_DT_BF16] = (rmu_gemm_type){2, to_f32_bf16, pack_b_bf16, rmu_gemm_pack_b2_generic, rows_bf16};
    isa->type[RMU_DT_F8_E4M3] = (rmu_gemm_type){1, to_f32_f8, pack_b_f8, rmu_gemm_pack_b2_generic, rows_f8};
}

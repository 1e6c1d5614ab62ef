/* gemm_avx2.c - AVX2+FMA path of gemm.c for CPUs without AVX-512 (compiled with -mavx2
 * -mfma -mf16c; used only after the runtime CPU check): a 6x16 fp32 micro-kernel (12 ymm
 * accumulators, 2 FMA per broadcast of A), packers that convert B to fp32 (and round to
 * bf16 in BF16 precision) while packing, and the GEMV row kernels. gemm_avx512.c has the
 * same structure at twice the width. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "gemm_impl.h"

#define AI static inline __attribute__((always_inline))
#define MR 6
#define NR 16

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

/* Named accumulators: with an array GCC keeps them in memory. */
#define ACC_DECL(i) __m256 c##i##0 = _mm256_setzero_ps(), c##i##1 = _mm256_setzero_ps();
#define ACC_FMA(i)                                                                                                 \
    {                                                                                                              \
        __m256 ai = _mm256_broadcast_ss(a + i);                                                                    \
        c##i##0 = _mm256_fmadd_ps(ai, b0, c##i##0);                                                                \
        c##i##1 = _mm256_fmadd_ps(ai, b1, c##i##1);                                                                \
    }
#define ACC_OUT(i) c[i][0] = c##i##0, c[i][1] = c##i##1;

static void ukernel(int ks, const void *Ap, const void *Bp, float *C, long ldc, int mr, int nr, int acc) {
    const float *a = Ap, *b = Bp;
    /* C comes from L3 (each tile of C is revisited once per kc slice): start it early */
    for (int i = 0; i < MR; i++) {
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
    if (mr == MR && nr == NR) {
        for (int i = 0; i < MR; i++) {
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
    for (int i = 0; i < MR; i++) {
        _mm256_storeu_ps(t[i], c[i][0]);
        _mm256_storeu_ps(t[i] + 8, c[i][1]);
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) C[i * ldc + j] = acc ? C[i * ldc + j] + t[i][j] : t[i][j];
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

/* 8 elements of dtype dt at p as fp32. */
AI __m256 load8(rmu_dtype dt, const void *p) {
    if (dt == RMU_DT_F32) return _mm256_loadu_ps(p);
    __m128i h = _mm_loadu_si128(p);
    if (dt == RMU_DT_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

/* fp32 B panel [kc][16]. Stored [N,K] (weights, forward): 8x8 transposes; stored [K,N]:
 * rows converted as they are. Tails (k % 8, odd nr) take the generic packer. */
AI void pack_b_dt(const rmu_dtype dt, const rmu_gemm_b *B, int k0, int kc, int n0, int nr, int rnd, float *Bp) {
    const size_t es = dt == RMU_DT_F32 ? 4 : 2;
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
                __m256 r[8];
#pragma GCC unroll 8
                for (int t = 0; t < 8; t++) {
                    r[t] = load8(dt, rp[t] + (size_t)k * es);
                    if (rnd) r[t] = round_bf16(r[t]);
                }
                transpose8(r);
#pragma GCC unroll 8
                for (int t = 0; t < 8; t++) _mm256_store_ps(Bp + (size_t)(k + t) * NR + jb, r[t]);
            }
        }
    } else if (nr == NR) {
        for (; k < kc; k++) {
            const char *row = base + ((size_t)(k0 + k) * B->ld + n0) * es;
            __m256 v0 = load8(dt, row), v1 = load8(dt, row + 8 * es);
            if (rnd) v0 = round_bf16(v0), v1 = round_bf16(v1);
            _mm256_store_ps(Bp + (size_t)k * NR, v0);
            _mm256_store_ps(Bp + (size_t)k * NR + 8, v1);
        }
    }
    if (k < kc) rmu_gemm_pack_b_generic(B, k0 + k, kc - k, n0, nr, NR, rnd, Bp + (size_t)k * NR);
}

static void pack_b_f32(const rmu_gemm_b *B, int k0, int kc, int n0, int nr, int NRx, int rnd, float *Bp) {
    (void)NRx;
    pack_b_dt(RMU_DT_F32, B, k0, kc, n0, nr, rnd, Bp);
}
static void pack_b_bf16(const rmu_gemm_b *B, int k0, int kc, int n0, int nr, int NRx, int rnd, float *Bp) {
    (void)NRx, (void)rnd; /* bf16 values need no rounding */
    pack_b_dt(RMU_DT_BF16, B, k0, kc, n0, nr, 0, Bp);
}
static void pack_b_f16(const rmu_gemm_b *B, int k0, int kc, int n0, int nr, int NRx, int rnd, float *Bp) {
    (void)NRx;
    pack_b_dt(RMU_DT_F16, B, k0, kc, n0, nr, rnd, Bp);
}

/* ---- row conversion */

AI void to_f32_dt(const rmu_dtype dt, float *dst, const void *src, long n) {
    const size_t es = dt == RMU_DT_F32 ? 4 : 2;
    long i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load8(dt, (const char *)src + i * es));
    if (i < n) rmu_to_f32(dst + i, (const char *)src + i * es, dt, (size_t)(n - i));
}
static void to_f32_f32(float *d, const void *s, long n) { to_f32_dt(RMU_DT_F32, d, s, n); }
static void to_f32_bf16(float *d, const void *s, long n) { to_f32_dt(RMU_DT_BF16, d, s, n); }
static void to_f32_f16(float *d, const void *s, long n) { to_f32_dt(RMU_DT_F16, d, s, n); }

/* ---- GEMV rows (decode): each weight row read once for the M <= 4 rows of x */

AI float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Two accumulators per row of x (16 k per step): one FMA chain per row would be bound by
 * the FMA latency, not by memory, for M = 1. */
AI void rows_dt(const rmu_dtype dt, const int M, const int rnd, int n0, int n1, int K, const float *x, long ldx,
                const void *W, long ldw, float *y, long ldy, int acc) {
    const size_t es = dt == RMU_DT_F32 ? 4 : 2;
    for (int n = n0; n < n1; n++) {
        const char *row = (const char *)W + (size_t)n * ldw * es;
        __m256 s0[4], s1[4];
        float tail[4] = {0, 0, 0, 0};
#pragma GCC unroll 4
        for (int m = 0; m < M; m++) s0[m] = s1[m] = _mm256_setzero_ps();
        int k = 0;
        for (; k + 16 <= K; k += 16) {
            __m256 w0 = load8(dt, row + (size_t)k * es), w1 = load8(dt, row + (size_t)(k + 8) * es);
            if (rnd) w0 = round_bf16(w0), w1 = round_bf16(w1);
#pragma GCC unroll 4
            for (int m = 0; m < M; m++) {
                s0[m] = _mm256_fmadd_ps(_mm256_loadu_ps(x + m * ldx + k), w0, s0[m]);
                s1[m] = _mm256_fmadd_ps(_mm256_loadu_ps(x + m * ldx + k + 8), w1, s1[m]);
            }
        }
        for (; k + 8 <= K; k += 8) {
            __m256 w = load8(dt, row + (size_t)k * es);
            if (rnd) w = round_bf16(w);
#pragma GCC unroll 4
            for (int m = 0; m < M; m++) s0[m] = _mm256_fmadd_ps(_mm256_loadu_ps(x + m * ldx + k), w, s0[m]);
        }
        for (; k < K; k++) {
            float w = rmu_gemm_load_f32(row, dt, k);
            if (rnd) w = rmu_gemm_round_bf16(w);
            for (int m = 0; m < M; m++) tail[m] += x[m * ldx + k] * w;
        }
#pragma GCC unroll 4
        for (int m = 0; m < M; m++) {
            float v = hsum8(_mm256_add_ps(s0[m], s1[m])) + tail[m];
            y[m * ldy + n] = acc ? y[m * ldy + n] + v : v;
        }
    }
}

#define ROWS_FN(NAME, DT)                                                                                          \
    static void NAME(int M, int n0, int n1, int K, const float *x, long ldx, const void *W, long ldw, int rnd,    \
                     float *y, long ldy, int acc) {                                                              \
        if (rnd) {                                                                                                \
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

static void rows_bf16(int M, int n0, int n1, int K, const float *x, long ldx, const void *W, long ldw, int rnd,
                      float *y, long ldy, int acc) {
    (void)rnd; /* bf16 values need no rounding */
    switch (M) {
    case 1: rows_dt(RMU_DT_BF16, 1, 0, n0, n1, K, x, ldx, W, ldw, y, ldy, acc); break;
    case 2: rows_dt(RMU_DT_BF16, 2, 0, n0, n1, K, x, ldx, W, ldw, y, ldy, acc); break;
    case 3: rows_dt(RMU_DT_BF16, 3, 0, n0, n1, K, x, ldx, W, ldw, y, ldy, acc); break;
    default: rows_dt(RMU_DT_BF16, 4, 0, n0, n1, K, x, ldx, W, ldw, y, ldy, acc); break;
    }
}

void rmu_gemm_isa_avx2(rmu_gemm_isa *isa) {
    memset(isa, 0, sizeof *isa);
    isa->name = "avx2";
    isa->mr = MR;
    isa->nr = NR;
    isa->kp = 1;
    isa->kc = 256;
    isa->mc = 144;
    isa->nc = 1024;
    isa->ukernel = ukernel;
    isa->pack_a = pack_a;
    isa->type[RMU_DT_F32] = (rmu_gemm_type){4, to_f32_f32, pack_b_f32, rmu_gemm_pack_b2_generic, rows_f32};
    isa->type[RMU_DT_F16] = (rmu_gemm_type){2, to_f32_f16, pack_b_f16, rmu_gemm_pack_b2_generic, rows_f16};
    isa->type[RMU_DT_BF16] = (rmu_gemm_type){2, to_f32_bf16, pack_b_bf16, rmu_gemm_pack_b2_generic, rows_bf16};
}

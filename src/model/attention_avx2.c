/* attention_avx2.c - AVX2+FMA tile kernels for attention.c (compiled with -mavx2 -mfma;
 * called only after a runtime CPU check). Contracts: attention_impl.h. */
#include <immintrin.h>

#include "attention_impl.h"

#define AI static inline __attribute__((always_inline))

/* 2^x for x <= 127, 0 for x < -126 (and for -inf): x = n + f, |f| <= 1/2, 2^f by its
 * degree-7 Taylor polynomial in f*ln2 (truncation < 4e-9 relative, below fp32 rounding). */
AI __m256 exp2_ps(__m256 x) {
    __m256 keep = _mm256_cmp_ps(x, _mm256_set1_ps(-126.0f), _CMP_GE_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-126.0f)), _mm256_set1_ps(127.0f));
    __m256 n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 f = _mm256_sub_ps(x, n);
    __m256 p = _mm256_set1_ps(1.5252733804059840e-05f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.5403530393381608e-04f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.3333558146428443e-03f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.6181291076284772e-03f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.5504108664821580e-02f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.4022650695910071e-01f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.9314718055994531e-01f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), keep);
}

/* MR rows x NV vectors of 8 columns, accumulators in registers for the whole k loop
 * (MR = 6, NV = 2: 12 of the 16 ymm registers). The unroll pragmas matter: at -O2 GCC
 * leaves constant-trip loops rolled and the accumulator array on the stack. */
AI void micro(const int MR, const int NV, int K, const float *A, long rsa, long csa, const float *B, long ldb, float *C,
              long ldc, int acc) {
    __m256 c[6][2];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        c[r][0] = _mm256_setzero_ps();
        c[r][1] = _mm256_setzero_ps();
    }
    for (int k = 0; k < K; k++) {
        const float *a = A + k * csa, *b = B + k * ldb;
        __m256 b0 = _mm256_loadu_ps(b), b1 = NV > 1 ? _mm256_loadu_ps(b + 8) : b0;
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            __m256 x = _mm256_broadcast_ss(a + r * rsa);
            c[r][0] = _mm256_fmadd_ps(x, b0, c[r][0]);
            if (NV > 1) c[r][1] = _mm256_fmadd_ps(x, b1, c[r][1]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        float *cp = C + r * ldc;
        _mm256_storeu_ps(cp, acc ? _mm256_add_ps(_mm256_loadu_ps(cp), c[r][0]) : c[r][0]);
        if (NV > 1) _mm256_storeu_ps(cp + 8, acc ? _mm256_add_ps(_mm256_loadu_ps(cp + 8), c[r][1]) : c[r][1]);
    }
}

#define MICRO_ROWS(NV)                                                                 \
    switch (mr) {                                                                      \
    case 6: micro(6, NV, K, a, rsa, csa, b, ldb, c, ldc, acc); break;                  \
    case 5: micro(5, NV, K, a, rsa, csa, b, ldb, c, ldc, acc); break;                  \
    case 4: micro(4, NV, K, a, rsa, csa, b, ldb, c, ldc, acc); break;                  \
    case 3: micro(3, NV, K, a, rsa, csa, b, ldb, c, ldc, acc); break;                  \
    case 2: micro(2, NV, K, a, rsa, csa, b, ldb, c, ldc, acc); break;                  \
    default: micro(1, NV, K, a, rsa, csa, b, ldb, c, ldc, acc); break;                 \
    }

static void gemm_avx2(int M, int N, int K, const float *A, long rsa, long csa, const float *B, long ldb, float *C,
                      long ldc, int acc) {
    int n0 = 0;
    /* column panels outermost: a [K, 16] panel of B stays in L1 for every row block */
    for (; n0 + 16 <= N; n0 += 16)
        for (int m0 = 0; m0 < M; m0 += 6) {
            int mr = M - m0 < 6 ? M - m0 : 6;
            const float *a = A + m0 * rsa, *b = B + n0;
            float *c = C + m0 * ldc + n0;
            MICRO_ROWS(2)
        }
    if (n0 + 8 <= N) {
        for (int m0 = 0; m0 < M; m0 += 6) {
            int mr = M - m0 < 6 ? M - m0 : 6;
            const float *a = A + m0 * rsa, *b = B + n0;
            float *c = C + m0 * ldc + n0;
            MICRO_ROWS(1)
        }
        n0 += 8;
    }
    /* fewer than 8 columns left (head dims that are not a multiple of 8) */
    for (int m = 0; m < M && n0 < N; m++)
        for (int n = n0; n < N; n++) {
            float s = 0;
            for (int k = 0; k < K; k++) s = _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(A[m * rsa + k * csa]),
                                                                      _mm_set_ss(B[k * ldb + n]), _mm_set_ss(s)));
            C[m * ldc + n] = acc ? C[m * ldc + n] + s : s;
        }
}

static void softmax_avx2(int nj, int ni, float *st, long ld, float *m, float *l, float *corr) {
    const __m256 ninf = _mm256_set1_ps(-__builtin_inff());
    for (int i = 0; i < ni; i += 8) {
        __m256 m0 = _mm256_loadu_ps(m + i), mx = m0;
        for (int j = 0; j < nj; j++) mx = _mm256_max_ps(mx, _mm256_loadu_ps(st + j * ld + i));
        __m256 mu = _mm256_andnot_ps(_mm256_cmp_ps(mx, ninf, _CMP_EQ_OQ), mx);
        __m256 sum = _mm256_setzero_ps();
        for (int j = 0; j < nj; j++) {
            __m256 p = exp2_ps(_mm256_sub_ps(_mm256_loadu_ps(st + j * ld + i), mu));
            _mm256_storeu_ps(st + j * ld + i, p);
            sum = _mm256_add_ps(sum, p);
        }
        __m256 cr = exp2_ps(_mm256_sub_ps(m0, mu));
        _mm256_storeu_ps(corr + i, cr);
        _mm256_storeu_ps(l + i, _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(l + i), cr), sum));
        _mm256_storeu_ps(m + i, mx);
    }
}

static void dsoftmax_avx2(int nj, int ni, float *st, float *dpt, long ld, const float *lse2, const float *D) {
    for (int i = 0; i < ni; i += 8) {
        __m256 L = _mm256_loadu_ps(lse2 + i), d = _mm256_loadu_ps(D + i);
        for (int j = 0; j < nj; j++) {
            __m256 p = exp2_ps(_mm256_sub_ps(_mm256_loadu_ps(st + j * ld + i), L));
            _mm256_storeu_ps(st + j * ld + i, p);
            _mm256_storeu_ps(dpt + j * ld + i, _mm256_mul_ps(p, _mm256_sub_ps(_mm256_loadu_ps(dpt + j * ld + i), d)));
        }
    }
}

static void scale_avx2(float *y, const float *x, int n, float a) {
    __m256 va = _mm256_set1_ps(a);
    int k = 0;
    for (; k + 8 <= n; k += 8) _mm256_storeu_ps(y + k, _mm256_mul_ps(va, _mm256_loadu_ps(x + k)));
    for (; k < n; k++) y[k] = a * x[k];
}

static float dot_avx2(const float *x, const float *y, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int k = 0;
    for (; k + 16 <= n; k += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), _mm256_loadu_ps(y + k), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 8), _mm256_loadu_ps(y + k + 8), s1);
    }
    for (; k + 8 <= n; k += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), _mm256_loadu_ps(y + k), s0);
    __m256 v = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float s = _mm_cvtss_f32(h);
    for (; k < n; k++) s += x[k] * y[k];
    return s;
}

/* 8 x 8 transpose in registers (r[i] = row i on entry, column i on exit). */
AI void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

static void transpose_avx2(int m, int n, const float *src, int rg, long gs, long rs, float a, float *dst, long ld) {
    __m256 va = _mm256_set1_ps(a);
    for (int i0 = 0; i0 < m; i0 += 8) {
        const float *row[8];
        for (int i = 0; i < 8; i++) row[i] = i0 + i < m ? src + ((i0 + i) / rg) * gs + ((i0 + i) % rg) * rs : NULL;
        int k0 = 0;
        for (; k0 + 8 <= n; k0 += 8) {
            __m256 r[8];
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) r[i] = row[i] ? _mm256_loadu_ps(row[i] + k0) : _mm256_setzero_ps();
            transpose8(r);
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) _mm256_storeu_ps(dst + (k0 + k) * ld + i0, _mm256_mul_ps(va, r[k]));
        }
        for (int k = k0; k < n; k++)
            for (int i = 0; i < 8; i++) dst[k * ld + i0 + i] = row[i] ? a * row[i][k] : 0.0f;
    }
}

const rmu_att_kernels rmu_att_kernels_avx2 = {gemm_avx2, softmax_avx2,   dsoftmax_avx2, scale_avx2,
                                              dot_avx2,  transpose_avx2, "avx2"};

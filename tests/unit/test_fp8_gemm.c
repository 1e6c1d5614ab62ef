/* test_fp8_gemm.c - rmu_gemm with F8_E4M3 weights and fp32 scales on every kernel path this
 * build can run (the SIMDe build, build-simde/tests/test_fp8_gemm, runs the AVX-512 ones
 * too): every code decoded exactly at every lane position (GEMV and GEMM, both layouts);
 * NaN codes give NaN; random products at awkward shapes against a double reference
 * (per-channel and per-tensor scales, both B layouts, A transposed, beta 0/1, both
 * precisions: in bf16 precision A is rounded, the FP8 value and its scale are not);
 * the multi-matrix GEMV equal to one product per job; thread-count independence; errors;
 * weights read through FP8 panels (rmu_gemm_panels) give bitwise the products read from
 * [N,K] (rows kernels and blocked path, partial panels, kc slices); NaN codes are counted. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kernels/gemm.h"
#include "kernels/gemm_impl.h" /* rmu_gemm_f8_lut */
#include "testutil.h"

static float round_bf16(float f) { return rmu_bf16_to_f32(rmu_f32_to_bf16(f)); }

/* A random finite code (NaN codes 0x7f / 0xff drawn again). */
static uint8_t rand_code(uint64_t *seed) {
    for (;;) {
        *seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
        uint8_t c = (uint8_t)(*seed >> 56);
        if ((c & 0x7f) != 0x7f) return c;
    }
}

/* The kernels' table is the exhaustively tested scalar decoder (tests/unit/test_dtype.c). */
static void test_lut(void **st) {
    (void)st;
    for (int c = 0; c < 256; c++) {
        float a = rmu_gemm_f8_lut[c], b = rmu_f8e4m3_to_f32((uint8_t)c);
        if (isnan(b)) assert_true(isnan(a));
        else assert_memory_equal(&a, &b, 4);
    }
}

/* Each code at each position: W[n][k] = code (n + 3k) mod 256 (NaN codes -> 0), scales
 * powers of two, A one-hot rows: every output is exactly code value x scale (no rounding
 * anywhere), on GEMV (M <= 4) and GEMM (M > 4) with W stored [N,K] and [K,N]. */
static void exact_path(rmu_gemm_path_id p) {
    enum { N = 256, K = 80, M = 7 };
    uint8_t *W = malloc(N * K), *WT = malloc(N * K);
    float sc[N], sck[K], A[M * K], C[M * N];
    for (int k = 0; k < K; k++) sck[k] = ldexpf(1.0f, k % 5 - 2);
    for (int n = 0; n < N; n++) {
        sc[n] = ldexpf(1.0f, n % 7 - 3);
        for (int k = 0; k < K; k++) {
            uint8_t c = (uint8_t)((n + 3 * k) & 255);
            if ((c & 0x7f) == 0x7f) c = 0;
            W[n * K + k] = WT[k * N + n] = c;
        }
    }
    rmu_err e;
    for (int prec = RMU_PREC_AUTO; prec <= RMU_PREC_FP32; prec++)
        for (int tr = 0; tr < 2; tr++)
            for (int rows = 1; rows <= M; rows += M - 1) /* 1: GEMV (when trans), 7: blocked */
                for (int k0 = 0; k0 < K; k0 += rows) {
                    memset(A, 0, sizeof A);
                    for (int i = 0; i < rows; i++)
                        if (k0 + i < K) A[i * K + k0 + i] = 1.0f;
                    /* stored [N,K]: a scale per n; stored [K,N]: a scale per k */
                    rmu_gemm_b b = {tr ? (void *)W : (void *)WT, RMU_DT_F8_E4M3, tr, tr ? K : N, (rmu_prec)prec,
                                    tr ? sc : sck, tr ? N : K, NULL};
                    if (rmu_gemm_ex(p, 1, rows, N, K, A, K, 1, &b, C, N, 0, &e)) fail_msg("%s", e.msg);
                    for (int i = 0; i < rows && k0 + i < K; i++)
                        for (int n = 0; n < N; n++) {
                            int k = k0 + i;
                            float want = rmu_gemm_f8_lut[W[n * K + k]] * (tr ? sc[n] : sck[k]);
                            if (memcmp(&C[i * N + n], &want, 4) && !(want == 0 && C[i * N + n] == 0))
                                fail_msg("path %s trans %d prec %d M=%d: code 0x%02x at k=%d n=%d -> %.9g, want %.9g",
                                         rmu_gemm_path_name(p), tr, prec, rows, W[n * K + k], k, n, C[i * N + n],
                                         want);
                        }
                }
    free(W), free(WT);
}

static void test_exact(void **st) {
    (void)st;
    for (int p = RMU_GEMM_PORTABLE; p < RMU_GEMM_NPATHS; p++)
        if (rmu_gemm_path_available(p)) exact_path(p);
}

/* A NaN code poisons its output (row n when trans), as the scalar decoder says it should. */
static void test_nan_codes(void **st) {
    (void)st;
    enum { N = 40, K = 78 };
    uint8_t W[N * K];
    float sc[N], A[6 * K], C[6 * N];
    uint64_t seed = 3;
    for (int i = 0; i < N * K; i++) W[i] = rand_code(&seed);
    for (int n = 0; n < N; n++) sc[n] = 0.01f;
    for (int i = 0; i < 6 * K; i++) A[i] = tu_frand(&seed);
    /* k = 17, 66, 75: the 16- or 32-wide body, AVX2's 8-wide step, the scalar tail */
    W[5 * K + 17] = 0x7f, W[12 * K + 66] = 0xff, W[33 * K + 75] = 0x7f;
    rmu_err e;
    for (int p = RMU_GEMM_PORTABLE; p < RMU_GEMM_NPATHS; p++) {
        if (!rmu_gemm_path_available(p)) continue;
        for (int M = 1; M <= 6; M += 5) {
            rmu_gemm_b b = {W, RMU_DT_F8_E4M3, 1, K, RMU_PREC_AUTO, sc, N, NULL};
            if (rmu_gemm_ex(p, 1, M, N, K, A, K, 1, &b, C, N, 0, &e)) fail_msg("%s", e.msg);
            for (int i = 0; i < M; i++)
                for (int n = 0; n < N; n++)
                    if ((n == 5 || n == 12 || n == 33) != (isnan(C[i * N + n]) != 0))
                        fail_msg("path %s M=%d: C(%d,%d) = %g", rmu_gemm_path_name(p), M, i, n, C[i * N + n]);
        }
    }
}

/* One random product on path p, checked element by element against double precision. */
static void check_case(rmu_gemm_path_id p, int M, int N, int K, int trans, int transA, int per_row, float beta,
                       rmu_prec prec) {
    uint64_t seed = (uint64_t)M * 1000003 + N * 1009 + K * 7 + trans + 17 * transA + 5 * per_row;
    long lda = (transA ? M : K) + 3, ldc = N + 5, ldb = (trans ? K : N) + 2;
    long srows = trans ? N : K; /* stored rows: one scale each */
    size_t asz = (size_t)lda * (transA ? K : M), bsz = (size_t)ldb * srows, csz = (size_t)ldc * M;
    float *A = malloc(sizeof(float) * asz), *C = malloc(sizeof(float) * csz), *C0 = malloc(sizeof(float) * csz);
    float *sc = malloc(sizeof(float) * srows);
    uint8_t *B = malloc(bsz);
    for (size_t i = 0; i < asz; i++) A[i] = tu_frand(&seed);
    for (size_t i = 0; i < bsz; i++) B[i] = rand_code(&seed);
    for (long r = 0; r < srows; r++) sc[r] = (1.0f + tu_frand(&seed)) * 1e-3f; /* not powers of two */
    for (size_t i = 0; i < csz; i++) C0[i] = C[i] = tu_frand(&seed);
    if (beta == 0)
        for (int i = 0; i < M; i++)
            for (int n = 0; n < N; n++) C[(size_t)i * ldc + n] = NAN;
    rmu_gemm_b b = {B, RMU_DT_F8_E4M3, trans, ldb, prec, sc, per_row ? srows : 1, NULL};
    long rsa = transA ? 1 : lda, csa = transA ? lda : 1;
    rmu_err e;
    if (rmu_gemm_ex(p, 0, M, N, K, A, rsa, csa, &b, C, ldc, beta, &e)) fail_msg("rmu_gemm_ex: %s", e.msg);
    int bf16 = prec == RMU_PREC_BF16;
    for (int i = 0; i < M; i++)
        for (int n = 0; n < N; n++) {
            double ref = beta ? C0[(size_t)i * ldc + n] : 0, mag = fabs(ref);
            for (int k = 0; k < K; k++) {
                double av = A[i * rsa + k * csa];
                long r = trans ? n : k;
                double bv = (double)rmu_gemm_f8_lut[trans ? B[(size_t)n * ldb + k] : B[(size_t)k * ldb + n]] *
                            sc[per_row ? r : 0];
                if (bf16) av = round_bf16((float)av);
                ref += av * bv;
                mag += fabs(av * bv);
            }
            /* fp32 summation bound plus one rounding of value x scale (per element or per output) */
            double got = C[(size_t)i * ldc + n], tol = (K + 6) * ldexp(1.0, -24) * mag + 1e-30;
            if (!(fabs(got - ref) <= tol))
                fail_msg("path %s M=%d N=%d K=%d trans=%d transA=%d per_row=%d beta=%g prec=%s at (%d,%d): %.9g vs "
                         "%.9g", rmu_gemm_path_name(p), M, N, K, trans, transA, per_row, beta, rmu_prec_name(prec), i,
                         n, got, ref);
        }
    free(A), free(B), free(C), free(C0), free(sc);
}

static const int SHAPES[][3] = {
    {1, 1, 1},     {1, 7, 31},    {2, 33, 7},     {3, 31, 33},   {4, 40, 64},    {1, 100, 1000},
    {7, 31, 33},   {33, 33, 33},  {6, 16, 256},   {12, 32, 257}, {13, 70, 513},  {5, 33, 4097},
    {2, 4097, 31}, {4097, 7, 33}, {150, 40, 300}, {145, 97, 129}, {4, 65, 100},
};

static void random_path(rmu_gemm_path_id p) {
    static const rmu_prec precs[] = {RMU_PREC_AUTO, RMU_PREC_BF16, RMU_PREC_FP32};
    for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
        int M = SHAPES[s][0], N = SHAPES[s][1], K = SHAPES[s][2];
        int large = (double)M * N * K > 2e5;
        for (int tr = 0; tr < 2; tr++)
            for (int ta = 0; ta < 2; ta++)
                for (int pr = 0; pr < 3; pr++)
                    for (int per_row = 0; per_row < 2; per_row++) {
                        if (large && (ta + tr + pr + per_row) % 2) continue; /* time */
                        check_case(p, M, N, K, tr, ta, per_row, (float)((s + pr + per_row) % 2), precs[pr]);
                    }
    }
}

static void path_test(rmu_gemm_path_id p) {
    if (!rmu_gemm_path_available(p)) {
        print_message("skipping: this CPU has no %s\n", rmu_gemm_path_name(p));
        skip();
    }
    random_path(p);
}

static void test_portable(void **st) { (void)st, path_test(RMU_GEMM_PORTABLE); }
static void test_avx2(void **st) { (void)st, path_test(RMU_GEMM_AVX2); }
static void test_avx512(void **st) { (void)st, path_test(RMU_GEMM_AVX512); }
static void test_avx512bf16(void **st) { (void)st, path_test(RMU_GEMM_AVX512BF16); }

/* rmu_gemm_multi with F8 jobs (channel and tensor scales, next to a BF16 one) == one
 * rmu_gemm per job, bit for bit; and 1 vs 2 threads bit for bit. */
static void test_multi_threads(void **st) {
    (void)st;
    enum { K = 200 };
    int Ns[3] = {70, 33, 129};
    uint64_t seed = 11;
    float A[6 * K], sc0[70], sc1 = 0.003f;
    for (int i = 0; i < 6 * K; i++) A[i] = tu_frand(&seed);
    for (int i = 0; i < 70; i++) sc0[i] = (1.0f + tu_frand(&seed)) * 1e-2f;
    uint8_t *W0 = malloc(70 * K), *W1 = malloc(33 * K);
    uint16_t *W2 = malloc(2 * 129 * K);
    for (int i = 0; i < 70 * K; i++) W0[i] = rand_code(&seed);
    for (int i = 0; i < 33 * K; i++) W1[i] = rand_code(&seed);
    for (int i = 0; i < 129 * K; i++) W2[i] = rmu_f32_to_bf16(tu_frand(&seed));
    float *C[3], *R[3];
    rmu_gemm_job jobs[3] = {
        {{W0, RMU_DT_F8_E4M3, 1, K, RMU_PREC_AUTO, sc0, 70, NULL}, 70, NULL, 70, 0.0f},
        {{W1, RMU_DT_F8_E4M3, 1, K, RMU_PREC_BF16, &sc1, 1, NULL}, 33, NULL, 33, 1.0f},
        {{W2, RMU_DT_BF16, 1, K, RMU_PREC_AUTO, NULL, 0, NULL}, 129, NULL, 129, 0.0f},
    };
    for (int j = 0; j < 3; j++) {
        C[j] = malloc(sizeof(float) * 6 * Ns[j]);
        R[j] = malloc(sizeof(float) * 6 * Ns[j]);
        jobs[j].C = C[j];
    }
    rmu_err e;
    for (int M = 1; M <= 6; M++) {
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < 6 * Ns[j]; i++) C[j][i] = R[j][i] = (float)i;
        OK(rmu_gemm_multi(M, K, A, K, jobs, 3, &e));
        for (int j = 0; j < 3; j++) {
            OK(rmu_gemm(M, Ns[j], K, A, K, 1, &jobs[j].B, R[j], Ns[j], jobs[j].beta, &e));
            assert_memory_equal(C[j], R[j], sizeof(float) * M * Ns[j]);
        }
    }
    for (int p = RMU_GEMM_PORTABLE; p < RMU_GEMM_NPATHS; p++) {
        if (!rmu_gemm_path_available(p)) continue;
        for (int M = 1; M <= 6; M += 5) {
            OK(rmu_gemm_ex(p, 1, M, 70, K, A, K, 1, &jobs[0].B, C[0], 70, 0, &e));
            OK(rmu_gemm_ex(p, 2, M, 70, K, A, K, 1, &jobs[0].B, R[0], 70, 0, &e));
            assert_memory_equal(C[0], R[0], sizeof(float) * M * 70);
        }
    }
    for (int j = 0; j < 3; j++) free(C[j]), free(R[j]);
    free(W0), free(W1), free(W2);
}

/* The panel layout itself, and every path's products through panels == through data, bit for
 * bit: M = 1..9 (rows kernels, both halves or one by one) and 17, 40
 * (blocked), N with partial panels, K across kc slices, a row stride past K, 1 and 2 threads;
 * x of unit size, tiny (products below fp32's normal range) and past 2^16 (where AVX2's one-
 * and two-row kernels cannot scale x by 2^112 and take the vcvtph2ps decode). */
static void test_panels(void **st) {
    (void)st;
    static const int NK[][2] = {{100, 300}, {37, 33}, {64, 512}, {16, 1}, {130, 1030}};
    int Ms[] = {1, 2, 3, 4, 5, 8, 9, 17, 40};
    for (size_t s = 0; s < sizeof NK / sizeof NK[0]; s++) {
        int N = NK[s][0], K = NK[s][1];
        long ld = K + 5;
        uint64_t seed = (uint64_t)N * 77 + K;
        uint8_t *W = malloc((size_t)N * ld), *P = malloc(rmu_gemm_panels_bytes(RMU_DT_F8_E4M3, N, ld));
        float *sc = malloc(sizeof(float) * N), *A = malloc(sizeof(float) * 40 * K);
        float *C0 = malloc(sizeof(float) * 40 * N), *C1 = malloc(sizeof(float) * 40 * N);
        for (size_t i = 0; i < (size_t)N * ld; i++) W[i] = rand_code(&seed);
        for (int n = 0; n < N; n++) sc[n] = (1.0f + tu_frand(&seed)) * 1e-2f;
        for (int i = 0; i < 40 * K; i++) A[i] = tu_frand(&seed);
        memset(P, 0xaa, rmu_gemm_panels_bytes(RMU_DT_F8_E4M3, N, ld));
        assert_int_equal(rmu_gemm_panels(RMU_DT_F8_E4M3, W, N, K, ld, P), 0);
        /* 4 k per word of a row, rows side by side; depth ld rounded up to 4 */
        const long L = (ld + 3) / 4 * 4;
        assert_int_equal(rmu_gemm_panels_bytes(RMU_DT_F8_E4M3, N, ld), (size_t)(N + 15) / 16 * 16 * L);
        for (int p = 0; p < (N + 15) / 16; p++)
            for (long k = 0; k < L; k++)
                for (int r = 0; r < 16; r++) {
                    int n = p * 16 + r;
                    uint8_t want = n < N && k < K ? W[(size_t)n * ld + k] : 0;
                    if (P[(size_t)p * L * 16 + (size_t)k / 4 * 64 + r * 4 + k % 4] != want)
                        fail_msg("panel %d k %ld row %d", p, k, r);
                }
        rmu_err e;
        static const float xscale[] = {1.0f, 1e-36f, 9e4f};
        for (int path = RMU_GEMM_PORTABLE; path < RMU_GEMM_NPATHS; path++) {
            if (!rmu_gemm_path_available(path)) continue;
            for (size_t xs = 0; xs < 3; xs++) {
                for (int i = 0; i < 40 * K; i++) A[i] = tu_frand(&seed) * xscale[xs];
                for (size_t t = 0; t < sizeof Ms / sizeof Ms[0]; t++)
                    for (int prec = RMU_PREC_BF16; prec <= RMU_PREC_FP32; prec++) {
                        int M = Ms[t], nth = 1 + (int)(t % 2);
                        rmu_gemm_b b = {W, RMU_DT_F8_E4M3, 1, ld, (rmu_prec)prec, sc, N, NULL};
                        if (rmu_gemm_ex(path, nth, M, N, K, A, K, 1, &b, C0, N, 0, &e)) fail_msg("%s", e.msg);
                        b.panels = P;
                        if (rmu_gemm_ex(path, nth, M, N, K, A, K, 1, &b, C1, N, 0, &e)) fail_msg("%s", e.msg);
                        for (int i = 0; i < M * N; i++)
                            if (memcmp(&C0[i], &C1[i], 4))
                                fail_msg("path %s N %d K %d M %d prec %d x scale %g: C[%d] %.9g through "
                                         "panels, %.9g through data",
                                         rmu_gemm_path_name(path), N, K, M, prec, xscale[xs], i, C1[i], C0[i]);
                    }
            }
        }
        /* NaN codes are counted (panels hold none: the loader rejects such weights) */
        W[(size_t)(N / 2) * ld + K - 1] = 0xff, W[0] = 0x7f, W[K] = 0x7e;
        assert_int_equal(rmu_gemm_panels(RMU_DT_F8_E4M3, W, N, K, ld, P), N > 1 ? 2 : 1);
        free(W), free(P), free(sc), free(A), free(C0), free(C1);
    }
}

static void test_errors(void **st) {
    (void)st;
    uint8_t W[12] = {0};
    float A[4] = {0}, C[12], sc[3] = {1, 1, 1};
    rmu_err e;
    rmu_gemm_b b = {W, RMU_DT_F8_E4M3, 1, 4, RMU_PREC_AUTO, NULL, 3, NULL};
    assert_int_equal(rmu_gemm(1, 3, 4, A, 4, 1, &b, C, 3, 0, &e), -1);
    assert_non_null(strstr(e.msg, "no scale array"));
    b.scale = sc, b.nscale = 2; /* neither 1 nor N = 3 */
    assert_int_equal(rmu_gemm(1, 3, 4, A, 4, 1, &b, C, 3, 0, &e), -1);
    assert_non_null(strstr(e.msg, "needs 1 or 3 fp32 scales, got 2"));
    b.trans = 0, b.ld = 3, b.nscale = 3; /* stored [K=4, N=3]: 4 rows, one scale each */
    assert_int_equal(rmu_gemm(1, 3, 4, A, 4, 1, &b, C, 3, 0, &e), -1);
    assert_non_null(strstr(e.msg, "needs 1 or 4"));
    rmu_gemm_job job = {{W, RMU_DT_F8_E4M3, 1, 4, RMU_PREC_AUTO, NULL, 1, NULL}, 3, C, 3, 0.0f};
    assert_int_equal(rmu_gemm_multi(1, 4, A, 4, &job, 1, &e), -1);
    assert_non_null(strstr(e.msg, "F8_E4M3"));
    job.B.scale = sc;
    OK(rmu_gemm_multi(1, 4, A, 4, &job, 1, &e));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lut),
        cmocka_unit_test(test_exact),
        cmocka_unit_test(test_nan_codes),
        cmocka_unit_test(test_portable),
        cmocka_unit_test(test_avx2),
        cmocka_unit_test(test_avx512),
        cmocka_unit_test(test_avx512bf16),
        cmocka_unit_test(test_multi_threads),
        cmocka_unit_test(test_panels),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests_name("fp8_gemm", tests, NULL, NULL);
}

/* test_gemm.c - rmu_gemm on every kernel path this build can run (called explicitly), against
 * a double-precision reference: awkward shapes (1, 7, 31, 33, 4097 and the block edges), all
 * B dtypes, both B layouts, A read transposed, padded strides, beta 0/1, both precisions.
 * FP32 must match the exact product within fp32 summation bounds; BF16 must match the exact
 * product of the bf16-rounded inputs within the same bounds (products are exact in fp32).
 * Also: thread-count independence, row invariance of the forward product (row i of an
 * M-row product = its 1-row product, bitwise), the multi-matrix GEMV, argument errors. The same source
 * runs in the SIMDe build (build-simde/tests/test_gemm), where the AVX-512 paths run too. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kernels/gemm.h"
#include "testutil.h"

static float round_bf16(float f) { return rmu_bf16_to_f32(rmu_f32_to_bf16(f)); }

/* One case: C = beta*C + op(A) op(B) on path p, checked element by element. */
static void check_case(rmu_gemm_path_id p, int M, int N, int K, rmu_dtype dt, int trans, int transA, float beta,
                       rmu_prec prec) {
    uint64_t seed = (uint64_t)M * 1000003 + N * 1009 + K * 7 + dt * 3 + trans + 17 * transA;
    long lda = (transA ? M : K) + 3, ldc = N + 5, ldb = (trans ? K : N) + 2;
    size_t asz = (size_t)lda * (transA ? K : M), bsz = (size_t)ldb * (trans ? N : K), csz = (size_t)ldc * M;
    float *A = malloc(sizeof(float) * asz), *Bf = malloc(sizeof(float) * bsz);
    void *B = malloc(4 * bsz);
    float *C = malloc(sizeof(float) * csz), *C0 = malloc(sizeof(float) * csz);
    for (size_t i = 0; i < asz; i++) A[i] = tu_frand(&seed);
    for (size_t i = 0; i < bsz; i++) Bf[i] = tu_frand(&seed);
    rmu_from_f32(B, Bf, dt, bsz);
    rmu_to_f32(Bf, B, dt, bsz); /* the reference uses the stored values */
    for (size_t i = 0; i < csz; i++) C0[i] = C[i] = tu_frand(&seed);
    if (beta == 0)
        for (int i = 0; i < M; i++)
            for (int n = 0; n < N; n++) C[(size_t)i * ldc + n] = NAN; /* beta 0 overwrites, NaN included */
    int bf16 = prec == RMU_PREC_BF16 || (prec == RMU_PREC_AUTO && dt == RMU_DT_BF16);
    rmu_gemm_b b = {B, dt, trans, ldb, prec, NULL, 0, NULL};
    long rsa = transA ? 1 : lda, csa = transA ? lda : 1;
    rmu_err e;
    if (rmu_gemm_ex(p, 0, M, N, K, A, rsa, csa, &b, C, ldc, beta, &e)) fail_msg("rmu_gemm_ex: %s", e.msg);
    for (int i = 0; i < M; i++) {
        for (int n = 0; n < N; n++) {
            double ref = beta ? C0[(size_t)i * ldc + n] : 0, mag = fabs(ref);
            for (int k = 0; k < K; k++) {
                double av = A[i * rsa + k * csa], bv = trans ? Bf[(size_t)n * ldb + k] : Bf[(size_t)k * ldb + n];
                if (bf16) av = round_bf16((float)av), bv = round_bf16((float)bv);
                ref += av * bv;
                mag += fabs(av * bv);
            }
            /* |fl(sum) - sum| <= ~n u sum|terms| for n additions in fp32 (u = 2^-24) */
            double got = C[(size_t)i * ldc + n], tol = (K + 4) * ldexp(1.0, -24) * mag + 1e-30;
            if (!(fabs(got - ref) <= tol))
                fail_msg("path %s M=%d N=%d K=%d dt=%s trans=%d transA=%d beta=%g prec=%s at (%d,%d): %.9g vs %.9g",
                         rmu_gemm_path_name(p), M, N, K, rmu_dtype_name(dt), trans, transA, beta, rmu_prec_name(prec),
                         i, n, got, ref);
        }
        for (long n = N; n < ldc; n++) /* padding between rows untouched */
            if (i * ldc + n < (long)csz && memcmp(&C[i * ldc + n], &C0[i * ldc + n], 4))
                fail_msg("path %s M=%d N=%d K=%d: wrote C(%d, %ld) outside the product", rmu_gemm_path_name(p), M, N,
                         K, i, n);
    }
    free(A), free(Bf), free(B), free(C), free(C0);
}

static const int SHAPES[][3] = {
    {1, 1, 1},      {1, 7, 31},   {2, 33, 7},   {3, 31, 33},  {4, 40, 64},   {7, 1, 33},    {7, 31, 33},
    {31, 33, 7},    {33, 7, 31},  {33, 33, 33}, {6, 16, 256}, {12, 32, 257}, {13, 70, 513}, {5, 33, 4097},
    {2, 4097, 31},  {4097, 7, 33}, {150, 40, 300}, {145, 97, 129},
};

static void run_path(rmu_gemm_path_id p, int big) {
    static const rmu_dtype dts[] = {RMU_DT_F32, RMU_DT_BF16, RMU_DT_F16};
    static const rmu_prec precs[] = {RMU_PREC_FP32, RMU_PREC_BF16, RMU_PREC_AUTO};
    for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
        int M = SHAPES[s][0], N = SHAPES[s][1], K = SHAPES[s][2];
        int large = (double)M * N * K > 2e5;
        if (large && !big) continue;
        for (int d = 0; d < 3; d++)
            for (int tr = 0; tr < 2; tr++)
                for (int ta = 0; ta < 2; ta++)
                    for (int pr = 0; pr < 3; pr++) {
                        /* the big shapes: fewer combinations (time) */
                        if (large && (ta + tr + d + pr) % 2) continue;
                        check_case(p, M, N, K, dts[d], tr, ta, (float)((s + d + pr) % 2), precs[pr]);
                    }
    }
}

static void path_test(rmu_gemm_path_id p) {
    if (!rmu_gemm_path_available(p)) {
        print_message("skipping: this CPU has no %s\n", rmu_gemm_path_name(p));
        skip();
    }
    run_path(p, 1);
}

static void test_portable(void **st) { (void)st, path_test(RMU_GEMM_PORTABLE); }
static void test_avx2(void **st) { (void)st, path_test(RMU_GEMM_AVX2); }
static void test_avx512(void **st) { (void)st, path_test(RMU_GEMM_AVX512); }
static void test_avx512bf16(void **st) { (void)st, path_test(RMU_GEMM_AVX512BF16); }

/* BEST resolves to an available path; names are stable. */
static void test_paths(void **st) {
    (void)st;
    assert_true(rmu_gemm_path_available(RMU_GEMM_PORTABLE));
    assert_string_equal(rmu_gemm_path_name(RMU_GEMM_PORTABLE), "portable");
    assert_string_equal(rmu_gemm_path_name(RMU_GEMM_AVX512BF16), "avx512bf16");
    const char *best = rmu_gemm_path();
    int found = 0;
    for (int p = RMU_GEMM_PORTABLE; p < RMU_GEMM_NPATHS; p++)
        if (!strcmp(best, rmu_gemm_path_name(p))) found = rmu_gemm_path_available(p);
    assert_true(found);
    rmu_prec pr;
    rmu_err e;
    assert_int_equal(rmu_prec_parse("bf16", &pr, &e), 0);
    assert_int_equal(pr, RMU_PREC_BF16);
    assert_int_equal(rmu_prec_parse("fp16", &pr, &e), -1);
    assert_non_null(strstr(e.msg, "fp16"));
}

/* The same product with 1 and 2 threads, on every path: bit-identical (training relies on
 * it). A shape with several tiles in both directions. */
static void test_threads_bitwise(void **st) {
    (void)st;
    int M = 70, N = 200, K = 300;
    uint64_t seed = 5;
    float *A = malloc(sizeof(float) * M * K), *C1 = malloc(sizeof(float) * M * N), *C2 = malloc(sizeof(float) * M * N);
    uint16_t *B = malloc(2 * (size_t)N * K);
    for (int i = 0; i < M * K; i++) A[i] = tu_frand(&seed);
    for (int i = 0; i < N * K; i++) B[i] = rmu_f32_to_bf16(tu_frand(&seed));
    rmu_err e;
    for (int p = RMU_GEMM_PORTABLE; p < RMU_GEMM_NPATHS; p++) {
        if (!rmu_gemm_path_available(p)) continue;
        for (int tr = 0; tr < 2; tr++) {
            rmu_gemm_b b = {B, RMU_DT_BF16, tr, tr ? K : N, RMU_PREC_AUTO, NULL, 0, NULL};
            OK(rmu_gemm_ex(p, 1, M, N, K, A, K, 1, &b, C1, N, 0, &e));
            OK(rmu_gemm_ex(p, 2, M, N, K, A, K, 1, &b, C2, N, 0, &e));
            assert_memory_equal(C1, C2, sizeof(float) * M * N);
        }
    }
    free(A), free(C1), free(C2), free(B);
}

/* Row invariance of the forward product (y = x W^T, B stored [N, K]): row i of an M-row
 * product is bitwise the 1-row product of row i, for M = 1..70 (the rows kernels below
 * rows_max, the blocked path above), every dtype (F8_E4M3 with per-row scales that are not
 * powers of two) and precision, beta 0 and 1, K crossing the
 * kc slices of every path, N with partial groups of 8 and 16, A read through strides, and
 * 1 or 2 threads; BF16 and F8 also with the M-row products read through panels
 * (rmu_gemm_panels). This is what makes rmu serve's batching invisible in its outputs. */
static void rows_case(rmu_gemm_path_id p, int N, int K, rmu_dtype dt, rmu_prec prec, float beta, int transA,
                      const int *Ms, int nM, int nth, int panels) {
    enum { MMAX = 70 };
    uint64_t seed = (uint64_t)N * 31 + K * 7 + dt + 11 * prec;
    long lda = transA ? MMAX + 1 : K + 3, rsa = transA ? 1 : lda, csa = transA ? lda : 1;
    size_t asz = (size_t)lda * (transA ? K : MMAX), bsz = (size_t)N * K;
    float *A = malloc(sizeof(float) * asz), *Bf = malloc(sizeof(float) * bsz), *C0 = malloc(sizeof(float) * MMAX * N);
    float *ref = malloc(sizeof(float) * MMAX * N), *C = malloc(sizeof(float) * MMAX * N);
    void *B = malloc(4 * bsz);
    for (size_t i = 0; i < asz; i++) A[i] = tu_frand(&seed);
    for (size_t i = 0; i < bsz; i++) Bf[i] = tu_frand(&seed);
    for (int i = 0; i < MMAX * N; i++) C0[i] = tu_frand(&seed);
    rmu_from_f32(B, Bf, dt, bsz);
    float *sc = malloc(sizeof(float) * N);
    for (int n = 0; n < N; n++) sc[n] = (1.0f + tu_frand(&seed)) * 1e-2f;
    rmu_gemm_b b = {B, dt, 1, K, prec, dt == RMU_DT_F8_E4M3 ? sc : NULL, dt == RMU_DT_F8_E4M3 ? N : 0, NULL};
    rmu_err e;
    memcpy(ref, C0, sizeof(float) * MMAX * N);
    for (int i = 0; i < MMAX; i++) OK(rmu_gemm_ex(p, 1, 1, N, K, A + i * rsa, rsa, csa, &b, ref + (size_t)i * N, N, beta, &e));
    /* panels: the M-row products read them, the 1-row references read the stored rows */
    void *P = panels ? malloc(rmu_gemm_panels_bytes(dt, N, K)) : NULL;
    if (P) assert_int_equal(rmu_gemm_panels(dt, B, N, K, K, P), 0);
    b.panels = P;
    for (int t = 0; t < nM; t++) {
        int M = Ms[t];
        memcpy(C, C0, sizeof(float) * MMAX * N);
        OK(rmu_gemm_ex(p, nth, M, N, K, A, rsa, csa, &b, C, N, beta, &e));
        for (int i = 0; i < M; i++)
            if (memcmp(C + (size_t)i * N, ref + (size_t)i * N, sizeof(float) * N))
                fail_msg("path %s %s prec %s N %d K %d beta %g transA %d threads %d panels %d: row %d of an M=%d "
                         "product differs from its 1-row product",
                         rmu_gemm_path_name(p), rmu_dtype_name(dt), rmu_prec_name(prec), N, K, beta, transA, nth,
                         panels, i, M);
    }
    free(A), free(Bf), free(C0), free(ref), free(C), free(B), free(sc), free(P);
}

static void test_rows_invariant(void **st) {
    (void)st;
    static const rmu_dtype dts[] = {RMU_DT_F32, RMU_DT_BF16, RMU_DT_F16, RMU_DT_F8_E4M3};
    static const rmu_prec precs[] = {RMU_PREC_FP32, RMU_PREC_BF16};
    int all[70], few[] = {1, 2, 3, 8, 9, 17};
    for (int i = 0; i < 70; i++) all[i] = i + 1;
    for (int p = RMU_GEMM_PORTABLE; p < RMU_GEMM_NPATHS; p++) {
        if (!rmu_gemm_path_available(p)) continue;
        for (int d = 0; d < 4; d++)
            for (int pr = 0; pr < 2; pr++) {
                float beta = (float)((d + pr) % 2);
                rows_case(p, 100, 300, dts[d], precs[pr], beta, 0, all, 70, 1, 0);
                rows_case(p, 37, 33, dts[d], precs[pr], 1 - beta, 1, all, 70, 1, 0);
                rows_case(p, 300, 1100, dts[d], precs[pr], beta, d == 1, few, 6, 2, 0);
                if (dts[d] == RMU_DT_BF16 || dts[d] == RMU_DT_F8_E4M3) { /* through panels */
                    rows_case(p, 100, 300, dts[d], precs[pr], beta, 0, all, 70, 1, 1);
                    rows_case(p, 37, 33, dts[d], precs[pr], 1 - beta, 1, all, 70, 1, 1);
                    rows_case(p, 300, 1100, dts[d], precs[pr], beta, 0, few, 6, 2, 1);
                }
            }
    }
}

/* rmu_gemm_multi == one rmu_gemm per job, bit for bit (same kernels, same order). */
static void test_multi(void **st) {
    (void)st;
    int K = 100, Ns[3] = {70, 33, 129};
    rmu_dtype dts[3] = {RMU_DT_BF16, RMU_DT_F32, RMU_DT_F16};
    rmu_prec precs[3] = {RMU_PREC_AUTO, RMU_PREC_BF16, RMU_PREC_FP32};
    uint64_t seed = 9;
    float *A = malloc(sizeof(float) * 10 * K);
    for (int i = 0; i < 10 * K; i++) A[i] = tu_frand(&seed);
    void *W[3];
    float *C[3], *R[3];
    rmu_gemm_job jobs[3];
    for (int j = 0; j < 3; j++) {
        size_t n = (size_t)Ns[j] * K;
        float *tmp = malloc(sizeof(float) * n);
        for (size_t i = 0; i < n; i++) tmp[i] = tu_frand(&seed);
        W[j] = malloc(4 * n);
        rmu_from_f32(W[j], tmp, dts[j], n);
        free(tmp);
        C[j] = malloc(sizeof(float) * 10 * Ns[j]);
        R[j] = malloc(sizeof(float) * 10 * Ns[j]);
        jobs[j] = (rmu_gemm_job){{W[j], dts[j], 1, K, precs[j], NULL, 0, NULL}, Ns[j], C[j], Ns[j], (float)(j == 1)};
    }
    rmu_err e;
    for (int M = 1; M <= 10; M++) { /* the rows kernels, then the blocked path */
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < 10 * Ns[j]; i++) C[j][i] = R[j][i] = (float)i;
        OK(rmu_gemm_multi(M, K, A, K, jobs, 3, &e));
        for (int j = 0; j < 3; j++) {
            OK(rmu_gemm(M, Ns[j], K, A, K, 1, &jobs[j].B, R[j], Ns[j], jobs[j].beta, &e));
            assert_memory_equal(C[j], R[j], sizeof(float) * M * Ns[j]);
        }
    }
    jobs[1].B.trans = 0;
    assert_int_equal(rmu_gemm_multi(2, K, A, K, jobs, 3, &e), -1);
    assert_non_null(strstr(e.msg, "job 1"));
    for (int j = 0; j < 3; j++) free(W[j]), free(C[j]), free(R[j]);
    free(A);
}

static void test_edges_and_errors(void **st) {
    (void)st;
    float C[4] = {1, 2, 3, 4}, A[1] = {0}, Bv[1] = {0};
    rmu_gemm_b b = {Bv, RMU_DT_F32, 1, 1, RMU_PREC_AUTO, NULL, 0, NULL};
    rmu_err e;
    OK(rmu_gemm(2, 2, 0, A, 0, 1, &b, C, 2, 1, &e)); /* K = 0: C unchanged with beta 1 */
    assert_true(C[0] == 1 && C[3] == 4);
    OK(rmu_gemm(2, 2, 0, A, 0, 1, &b, C, 2, 0, &e)); /* ... zeroed with beta 0 */
    assert_true(C[0] == 0 && C[3] == 0);
    OK(rmu_gemm(0, 2, 3, A, 0, 1, &b, C, 2, 0, &e));
    assert_int_equal(rmu_gemm(1, 1, 1, A, 1, 1, &b, C, 1, 0.5f, &e), -1);
    assert_non_null(strstr(e.msg, "beta"));
    rmu_gemm_b bad = {Bv, RMU_DT_INVALID, 1, 1, RMU_PREC_AUTO, NULL, 0, NULL};
    assert_int_equal(rmu_gemm(1, 1, 1, A, 1, 1, &bad, C, 1, 0, &e), -1);
    assert_non_null(strstr(e.msg, "dtype"));
    assert_int_equal(rmu_gemm(-1, 1, 1, A, 1, 1, &b, C, 1, 0, &e), -1);
    for (int p = RMU_GEMM_PORTABLE; p < RMU_GEMM_NPATHS; p++)
        if (!rmu_gemm_path_available(p)) {
            assert_int_equal(rmu_gemm_ex(p, 0, 1, 1, 1, A, 1, 1, &b, C, 1, 0, &e), -1);
            assert_non_null(strstr(e.msg, "not available"));
        }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_portable),
        cmocka_unit_test(test_avx2),
        cmocka_unit_test(test_avx512),
        cmocka_unit_test(test_avx512bf16),
        cmocka_unit_test(test_threads_bitwise),
        cmocka_unit_test(test_rows_invariant),
        cmocka_unit_test(test_multi),
        cmocka_unit_test(test_edges_and_errors),
    };
    return cmocka_run_group_tests_name("gemm", tests, NULL, NULL);
}

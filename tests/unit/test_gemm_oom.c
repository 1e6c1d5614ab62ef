/* test_gemm_oom.c - an allocation failure in the GEMM path is an error, not a wrong result:
 * rmu_gemm (blocked and few-row paths), rmu_linear_*, rmu_model_forward and the trainer all
 * return -1 with "out of memory" in the message. Linked with -Wl,--wrap=aligned_alloc (see
 * the Makefile), so the library's packing-buffer allocations can be made to fail at the Nth
 * call without any hook in the library. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kernels/gemm.h"
#include "model/init.h"
#include "model/layers.h"
#include "model/model.h"
#include "train/trainer.h"
#include "testutil.h"

/* fail_at < 0: never fail; else the call with index fail_at (0-based, counted from the
 * last arm()) and every later one returns NULL. */
static long fail_at = -1, ncalls;

void *__real_aligned_alloc(size_t align, size_t size);
void *__wrap_aligned_alloc(size_t align, size_t size) {
    if (fail_at >= 0 && ncalls++ >= fail_at) return NULL;
    return __real_aligned_alloc(align, size);
}

static void arm(long n) { fail_at = n, ncalls = 0; }

static void test_gemm_oom(void **st) {
    (void)st;
    int M = 40, N = 50, K = 60;
    uint64_t seed = 1;
    float *A = malloc(sizeof(float) * M * K), *C = malloc(sizeof(float) * M * N);
    uint16_t *B = malloc(2 * (size_t)N * K);
    for (int i = 0; i < M * K; i++) A[i] = tu_frand(&seed);
    for (int i = 0; i < N * K; i++) B[i] = rmu_f32_to_bf16(tu_frand(&seed));
    rmu_err e;
    for (int p = RMU_GEMM_PORTABLE; p < RMU_GEMM_NPATHS; p++) {
        if (!rmu_gemm_path_available(p)) continue;
        for (int m = 1; m <= M; m += M - 1) { /* the few-row path (bf16 rounds A into a buffer) and the blocked one */
            rmu_gemm_b b = {B, RMU_DT_BF16, 1, K, RMU_PREC_BF16, NULL, 0, NULL};
            arm(0);
            int rc = rmu_gemm_ex(p, 0, m, N, K, A, K, 1, &b, C, N, 0, &e);
            long calls = ncalls;
            arm(-1);
            assert_int_equal(rc, -1);
            assert_true(calls >= 1);
            assert_non_null(strstr(e.msg, "out of memory"));
            OK(rmu_gemm_ex(p, 0, m, N, K, A, K, 1, &b, C, N, 0, &e)); /* and fine again afterwards */
        }
    }
    /* rmu_gemm_multi and the linear layer */
    rmu_gemm_job job = {{B, RMU_DT_BF16, 1, K, RMU_PREC_AUTO, NULL, 0, NULL}, N, C, N, 0};
    arm(0);
    assert_int_equal(rmu_gemm_multi(2, K, A, K, &job, 1, &e), -1);
    rmu_weight w = {.data = B, .dtype = RMU_DT_BF16, .rows = N, .cols = K};
    assert_int_equal(rmu_linear_forward(C, A, &w, M, 0, RMU_PREC_AUTO, &e), -1);
    float *dx = malloc(sizeof(float) * M * K), *dW = calloc((size_t)N * K, sizeof(float));
    assert_int_equal(rmu_linear_backward(dx, 0, dW, C, A, &w, M, RMU_PREC_AUTO, &e), -1);
    arm(1); /* dx succeeds, dW fails */
    assert_int_equal(rmu_linear_backward(dx, 0, dW, C, A, &w, M, RMU_PREC_AUTO, &e), -1);
    assert_non_null(strstr(e.msg, "out of memory"));
    arm(-1);
    free(A), free(C), free(B), free(dx), free(dW);
}

static void make_model(const char *dir) {
    rmu_config c;
    rmu_err e;
    OK(rmu_cfg_preset(&c, "tiny", &e));
    c.n_layers = 2;
    rmu_init_opts o = {.dtype = RMU_DT_BF16, .seed = 3, .shards = 1};
    OK(rmu_init_model_opts(dir, &c, &o, &e));
}

static void test_model_forward_oom(void **st) {
    const char *dir = tu_path(*st, "m");
    make_model(dir);
    rmu_model m;
    rmu_state s;
    rmu_err e;
    OK(rmu_model_load(&m, dir, &e));
    OK(rmu_state_init(&s, &m, 64, 16, &e));
    int V = m.cfg.vocab_size, ids[12] = {1, 5, 9, 33, 7, 7, 12, 3, 38, 20, 4, 2};
    float *lg = malloc(sizeof(float) * V * 12), *ref = malloc(sizeof(float) * V * 12);
    OK(rmu_model_forward(&m, &s, ids, 12, ref, 1, &e));
    /* fail the first, a middle and the last allocation of the pass (prefill and decode) */
    long total;
    rmu_state_reset(&s);
    arm(1L << 40);
    OK(rmu_model_forward(&m, &s, ids, 12, lg, 1, &e));
    total = ncalls;
    assert_true(total > 2);
    long at[3] = {0, total / 2, total - 1};
    for (int i = 0; i < 3; i++) {
        rmu_state_reset(&s);
        arm(at[i]);
        int rc = rmu_model_forward(&m, &s, ids, 12, lg, 1, &e);
        arm(-1);
        assert_int_equal(rc, -1);
        assert_non_null(strstr(e.msg, "out of memory"));
    }
    rmu_state_reset(&s);
    OK(rmu_model_forward(&m, &s, ids, 11, lg, 0, &e));
    arm(0);
    assert_int_equal(rmu_model_forward(&m, &s, ids + 11, 1, lg, 0, &e), -1); /* decode step */
    arm(-1);
    /* after the failures, the same numbers as before */
    rmu_state_reset(&s);
    OK(rmu_model_forward(&m, &s, ids, 12, lg, 1, &e));
    assert_memory_equal(lg, ref, sizeof(float) * V * 12);
    /* the trainer propagates it too */
    rmu_tr tr;
    rmu_tr_opts o = {.trainable = "model.layers.1.mlp.down_proj.weight", .max_batch = 1, .max_seq = 12,
                     .last_layer = -1};
    OK(rmu_tr_init(&tr, &m, &o, &e));
    OK(rmu_tr_set_batch(&tr, ids, NULL, 1, 12, &e));
    double loss;
    arm(0);
    assert_int_equal(rmu_tr_loss_and_grad(&tr, &loss, &e), -1);
    assert_non_null(strstr(e.msg, "out of memory"));
    arm(-1);
    OK(rmu_tr_loss_and_grad(&tr, &loss, &e));
    assert_true(isfinite(loss));
    rmu_tr_free(&tr);
    free(lg), free(ref);
    rmu_state_free(&s);
    rmu_model_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_oom),
        cmocka_unit_test(test_model_forward_oom),
    };
    return cmocka_run_group_tests_name("gemm_oom", tests, tu_setup_tmp, tu_teardown_tmp);
}

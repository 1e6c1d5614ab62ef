/* test_train_prec.c - the trainer's precision plumbing on a BF16 model: a trainable BF16
 * tensor computes from its fp32 master rounded to bf16 while packing, so in bf16 precision
 * the live model computes exactly what the frozen one does while they hold the same values
 * (RMU's retain loss at step 1 is exactly 0, as in PyTorch), in the GEMM and the few-row
 * paths; in fp32 precision both compute exactly in fp32. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "model/init.h"
#include "model/model.h"
#include "train/trainer.h"
#include "testutil.h"

static const int TOK[2 * 10] = {1, 5, 9, 33, 7, 7, 12, 3, 38, 20, 1, 17, 4, 4, 4, 30, 2, 22, 6, 11};

/* Residual after layer `layer` on the live and the frozen weights. */
static void run_both(rmu_tr *tr, int layer, float *live, float *frozen) {
    rmu_err e;
    rmu_tr_embed(tr, 1, frozen);
    OK(rmu_tr_forward_range_frozen(tr, frozen, 0, layer, frozen, &e));
    rmu_tr_embed(tr, 0, live);
    OK(rmu_tr_forward_range(tr, live, 0, 0, live, 0, &e)); /* below the trainable layer: no saving */
    OK(rmu_tr_forward_range(tr, live, 1, layer, live, 1, &e));
}

static void test_live_equals_frozen(void **st) {
    const char *dir = tu_path(*st, "bf16");
    rmu_config c;
    rmu_err e;
    OK(rmu_cfg_preset(&c, "tiny", &e));
    c.n_layers = 3;
    rmu_init_opts io = {.dtype = RMU_DT_BF16, .seed = 7, .shards = 1, .jitter_norms = 1, .std = 0.2f};
    OK(rmu_init_model_opts(dir, &c, &io, &e));
    rmu_model m;
    OK(rmu_model_load(&m, dir, &e));
    int C = m.cfg.hidden_size;
    /* RMU's setup: down_proj (and here q_proj) of layer 1 trainable, loss after layer 1 */
    rmu_tr tr;
    rmu_tr_opts o = {.trainable = "model.layers.1.mlp.down_proj.weight,model.layers.1.self_attn.q_proj.weight",
                     .max_batch = 2, .max_seq = 10, .last_layer = 1};
    OK(rmu_tr_init(&tr, &m, &o, &e));
    float *live = malloc(sizeof(float) * 20 * C), *frz = malloc(sizeof(float) * 20 * C);
    static const rmu_prec precs[3] = {RMU_PREC_AUTO, RMU_PREC_BF16, RMU_PREC_FP32};
    /* 20 tokens: the blocked GEMM; 3 tokens: the few-row (GEMV) path */
    static const int shapes[2][2] = {{2, 10}, {1, 3}};
    for (int sh = 0; sh < 2; sh++) {
        int B = shapes[sh][0], T = shapes[sh][1], N = B * T;
        OK(rmu_tr_set_batch(&tr, TOK, NULL, B, T, &e));
        for (int p = 0; p < 3; p++) {
            rmu_model_set_precision(&m, precs[p]);
            run_both(&tr, 1, live, frz);
            assert_memory_equal(live, frz, sizeof(float) * N * C);
        }
    }
    /* bf16 precision really is bf16 arithmetic: differs from fp32 */
    OK(rmu_tr_set_batch(&tr, TOK, NULL, 2, 10, &e));
    rmu_model_set_precision(&m, RMU_PREC_FP32);
    run_both(&tr, 1, live, frz);
    rmu_model_set_precision(&m, RMU_PREC_AUTO);
    float *bf = malloc(sizeof(float) * 20 * C);
    run_both(&tr, 1, bf, frz);
    assert_memory_not_equal(bf, live, sizeof(float) * 20 * C);
    /* a master change below bf16 resolution: invisible in bf16 precision, seen in fp32 */
    rmu_tr_param *pd = rmu_tr_find(&tr, "model.layers.1.mlp.down_proj.weight");
    assert_non_null(pd);
    for (size_t i = 0; i < pd->numel; i += 3) pd->master[i] += pd->master[i] * 0x1p-12f;
    run_both(&tr, 1, live, frz);
    assert_memory_equal(live, frz, sizeof(float) * 20 * C);
    rmu_model_set_precision(&m, RMU_PREC_FP32);
    run_both(&tr, 1, live, frz);
    assert_memory_not_equal(live, frz, sizeof(float) * 20 * C);
    /* the backward runs in bf16 too and gives finite gradients */
    rmu_model_set_precision(&m, RMU_PREC_AUTO);
    rmu_tr_zero_grad(&tr);
    double loss;
    OK(rmu_tr_loss_and_grad(&tr, &loss, &e));
    assert_true(isfinite(loss));
    double g2 = 0;
    for (size_t i = 0; i < pd->numel; i++) g2 += (double)pd->grad[i] * pd->grad[i];
    assert_true(g2 > 0 && isfinite(g2));
    free(live), free(frz), free(bf);
    rmu_tr_free(&tr);
    rmu_model_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_live_equals_frozen),
    };
    return cmocka_run_group_tests_name("train_prec", tests, tu_setup_tmp, tu_teardown_tmp);
}

/* test_fp8_model.c - FP8 quantization (src/model/quantize.h) and FP8 folders in the loader:
 * the scale and code rules, a quantized tiny model (dtypes, scale shapes, config, every
 * dequantized weight within E4M3's rounding of the original), per-tensor scales, and the
 * loader's errors for broken FP8 folders (no quantization_config, missing / mis-shaped /
 * non-finite scales, FP8 where it may not be, a scale of a weight that is not FP8), the
 * quantizer's for an already quantized model and a non-finite weight (nothing written). */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "core/fileio.h"
#include "model/init.h"
#include "model/model.h"
#include "model/quantize.h"
#include "testutil.h"

static const char *tmpdir;

static void test_scale_and_encode(void **st) {
    (void)st;
    assert_true(rmu_quant_fp8_scale(448.0f) == 1.0f);
    assert_true(rmu_quant_fp8_scale(0.0f) == FLT_EPSILON);
    assert_true(rmu_quant_fp8_scale(1.0f) == 1.0f / 448.0f);
    /* every finite code survives value x scale -> encode, for a scale that is no power of two */
    float scale = 0.0123f;
    for (int c = 0; c < 256; c++) {
        if ((c & 0x7f) == 0x7f) continue;
        float v = rmu_f8e4m3_to_f32((uint8_t)c) * scale;
        uint8_t got;
        rmu_quant_fp8_encode(&got, &v, 1, scale);
        if (got != c) fail_msg("code 0x%02x -> %g -> 0x%02x", c, v, got);
    }
    /* saturation (never NaN), the sign of zero, ties to the even code (1.0625 is between
     * 1.0 = 0x38 and 1.125 = 0x39: 0x38) */
    float x[6] = {1e9f, -1e9f, 449.0f, -0.0f, 1.0625f, 1.1875f};
    uint8_t q[6];
    rmu_quant_fp8_encode(q, x, 6, 1.0f);
    assert_int_equal(q[0], 0x7e);
    assert_int_equal(q[1], 0xfe);
    assert_int_equal(q[2], 0x7e);
    assert_int_equal(q[3], 0x80);
    assert_int_equal(q[4], 0x38);
    assert_int_equal(q[5], 0x3a); /* between 0x39 (1.125) and 0x3a (1.25): even */
}

static void make_model(const char *dir, rmu_dtype dt) {
    rmu_config c;
    rmu_err e;
    OK(rmu_cfg_preset(&c, "tiny", &e));
    c.hidden_size = 32, c.intermediate_size = 48, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 8;
    c.vocab_size = 64, c.max_position_embeddings = 64, c.bos_id = 1, c.eos_id = 2, c.pad_id = -1;
    rmu_init_opts o = {.dtype = dt, .seed = 5, .shards = 1, .jitter_norms = 1, .std = 0.3f};
    OK(rmu_init_model_opts(dir, &c, &o, &e));
}

static const char *const LIN[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                   "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

/* Quantize base into out with scheme; every linear weight F8 with its scales, every
 * dequantized element within half an E4M3 step of the original. */
static void check_quantized(const char *base, const char *out, rmu_quant scheme) {
    rmu_err e;
    rmu_quant_opts o = {.model_dir = base, .out_dir = out, .scheme = scheme};
    rmu_quant_stats s;
    OK(rmu_quant_fp8(&o, &s, &e));
    assert_int_equal(s.n_tensors, 14);
    assert_true(s.bytes_out < s.bytes_in);
    rmu_model a, b;
    OK(rmu_model_load(&a, base, &e));
    OK(rmu_model_load(&b, out, &e));
    assert_int_equal(b.cfg.quant, scheme);
    assert_string_equal(b.cfg.quant_method, "compressed-tensors");
    assert_int_equal(b.embed.dtype, a.embed.dtype);
    assert_int_equal(b.lm_head.dtype, a.lm_head.dtype);
    assert_int_equal(b.layers[1].mlp_norm.dtype, a.layers[1].mlp_norm.dtype);
    float *x = malloc(sizeof(float) * 64), *y = malloc(sizeof(float) * 64);
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 7; k++) {
            char name[96];
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, LIN[k]);
            const rmu_weight *wa = rmu_model_weight(&a, name), *wb = rmu_model_weight(&b, name);
            assert_int_equal(wb->dtype, RMU_DT_F8_E4M3);
            assert_int_equal(wb->nscale, scheme == RMU_QUANT_FP8_TENSOR ? 1 : wb->rows);
            float tmax = 0;
            for (int64_t r = 0; r < wa->rows; r++) {
                rmu_weight_row_f32(wa, r, x);
                for (int64_t c = 0; c < wa->cols; c++) tmax = fmaxf(tmax, fabsf(x[c]));
            }
            for (int64_t r = 0; r < wa->rows; r++) {
                rmu_weight_row_f32(wa, r, x);
                rmu_weight_row_f32(wb, r, y);
                float amax = 0;
                for (int64_t c = 0; c < wa->cols; c++) amax = fmaxf(amax, fabsf(x[c]));
                float sc = wb->scale[wb->nscale == 1 ? 0 : r];
                assert_true(sc == (scheme == RMU_QUANT_FP8_TENSOR ? tmax : amax) / 448.0f);
                for (int64_t c = 0; c < wa->cols; c++) {
                    /* E4M3 keeps 3 mantissa bits: half a step is 2^-4 relative; below 2^-6
                     * (subnormals) steps are 2^-9, times the scale */
                    double tol = fmax(fabs(x[c]) * 0x1p-4, sc * 0x1p-10) * (1 + 1e-6);
                    if (!(fabs(y[c] - x[c]) <= tol))
                        fail_msg("%s[%lld, %lld]: %g -> %g (scale %g)", name, (long long)r, (long long)c, x[c], y[c],
                                 sc);
                }
            }
        }
    free(x), free(y);
    rmu_model_free(&a);
    rmu_model_free(&b);
}

static void test_quantize_channel_and_tensor(void **st) {
    (void)st;
    char base[512], out[512], out2[512];
    snprintf(base, sizeof base, "%s/base", tmpdir);
    snprintf(out, sizeof out, "%s/fp8c", tmpdir);
    snprintf(out2, sizeof out2, "%s/fp8t", tmpdir);
    make_model(base, RMU_DT_BF16);
    check_quantized(base, out, RMU_QUANT_FP8_CHANNEL);
    check_quantized(base, out2, RMU_QUANT_FP8_TENSOR);
    rmu_err e;
    /* an FP8 model is not quantized again; an existing OUT is refused */
    rmu_quant_opts o = {.model_dir = out, .out_dir = tu_path(tmpdir, "again"), .scheme = RMU_QUANT_FP8_CHANNEL};
    assert_int_equal(rmu_quant_fp8(&o, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "model_dir: "));
    assert_non_null(strstr(e.msg, "is already quantized (quantization_config compressed-tensors)"));
    o.model_dir = base, o.out_dir = out;
    assert_int_equal(rmu_quant_fp8(&o, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "out_dir: "));
    assert_non_null(strstr(e.msg, "option overwrite"));
    o.overwrite = 1;
    OK(rmu_quant_fp8(&o, NULL, &e));
}

/* ---- broken FP8 folders: the quantized folder rewritten with one change */

typedef struct {
    const char *drop;    /* tensor left out */
    const char *reshape; /* this tensor becomes F32 of shape {d0, d1} (ndim) */
    int ndim;
    int64_t d0, d1;
    int nan_scale;       /* the first scale of layer 0's q_proj becomes NaN */
    int plain_config;    /* config.json of the unquantized model */
} edit;

static float g_buf[4096];

static void write_variant(const char *dst, const edit *ed) {
    rmu_err e;
    rmu_st_set s;
    OK(rmu_st_open_dir(&s, tu_path(tmpdir, "fp8c"), &e));
    rmu_st_out *t = calloc((size_t)s.ntensors + 1, sizeof *t);
    int n = 0;
    float *nanbuf = NULL;
    for (int i = 0; i < s.ntensors; i++) {
        const rmu_st_tensor *x = &s.tensors[i];
        if (ed->drop && !strcmp(x->name, ed->drop)) continue;
        rmu_st_out *o = &t[n++];
        o->name = x->name;
        o->dtype = x->dtype, o->ndim = x->ndim, o->data = x->data;
        memcpy(o->shape, x->shape, sizeof o->shape);
        if (ed->reshape && !strcmp(x->name, ed->reshape)) {
            o->ndim = ed->ndim, o->shape[0] = ed->d0, o->shape[1] = ed->d1, o->data = g_buf;
            o->dtype = RMU_DT_F32;
        }
        if (ed->nan_scale && !strcmp(x->name, "model.layers.0.self_attn.q_proj.weight_scale")) {
            nanbuf = malloc(x->nbytes);
            memcpy(nanbuf, x->data, x->nbytes);
            nanbuf[0] = NAN;
            o->data = nanbuf;
        }
    }
    mkdir(dst, 0755);
    OK(rmu_st_write_dir(dst, t, n, &e));
    char cfg[600];
    snprintf(cfg, sizeof cfg, "%s/%s/config.json", tmpdir, ed->plain_config ? "base" : "fp8c");
    OK(rmu_file_copy(cfg, tu_path(dst, "config.json"), &e));
    free(t), free(nanbuf);
    rmu_st_close(&s);
}

static void expect_load_error(const char *name, const edit *ed, const char *want) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, name);
    write_variant(dir, ed);
    rmu_model m;
    rmu_err e;
    if (rmu_model_load(&m, dir, &e) == 0) {
        rmu_model_free(&m);
        fail_msg("%s: loaded; expected an error with '%s'", name, want);
    }
    if (!strstr(e.msg, want)) fail_msg("%s: error '%s' lacks '%s'", name, e.msg, want);
}

static void test_load_errors(void **st) {
    (void)st;
    const char *q = "model.layers.0.self_attn.q_proj.weight", *qs = "model.layers.0.self_attn.q_proj.weight_scale";
    edit ok = {0};
    write_variant(tu_path(tmpdir, "same"), &ok); /* the rewrite itself loads */
    rmu_model m;
    rmu_err e;
    OK(rmu_model_load(&m, tu_path(tmpdir, "same"), &e));
    rmu_model_free(&m);
    expect_load_error("noconfig", &(edit){.plain_config = 1},
                      "tensor model.layers.0.self_attn.q_proj.weight is FP8 (F8_E4M3) but config.json has no FP8 "
                      "quantization_config");
    expect_load_error("noscale", &(edit){.drop = qs}, "missing tensor model.layers.0.self_attn.q_proj.weight_scale "
                                                      "(the scales of FP8 weight " "model.layers.0.self_attn.q_proj.weight)");
    expect_load_error("shortscale", &(edit){.reshape = qs, .ndim = 2, .d0 = 31, .d1 = 1},
                      "weight_scale has shape [31, 1]; quantization_config (per-channel scales) implies [32, 1]");
    expect_load_error("tensorscale", &(edit){.reshape = qs, .ndim = 1, .d0 = 1},
                      "weight_scale has shape [1]; quantization_config (per-channel scales) implies [32, 1]");
    expect_load_error("nanscale", &(edit){.nan_scale = 1}, "q_proj.weight_scale[0] is nan; FP8 scales must be finite");
    (void)q;
}

/* Shapes that fit but dtypes that may not be FP8, and a scale beside a non-FP8 weight. */
static void test_load_errors_placement(void **st) {
    (void)st;
    rmu_err e;
    char base[512], out[512];
    snprintf(base, sizeof base, "%s/base32", tmpdir);
    snprintf(out, sizeof out, "%s/fp8x", tmpdir);
    make_model(base, RMU_DT_F32);
    rmu_quant_opts o = {.model_dir = base, .out_dir = out, .scheme = RMU_QUANT_FP8_TENSOR};
    OK(rmu_quant_fp8(&o, NULL, &e));
    /* embed_tokens as FP8 with the right shape and a scale: refused by placement */
    rmu_st_set s;
    OK(rmu_st_open_dir(&s, out, &e));
    rmu_st_out t[64];
    memset(t, 0, sizeof t);
    int n = 0;
    static uint8_t codes[64 * 32];
    static float one = 1.0f;
    memset(codes, 0x38, sizeof codes);
    for (int i = 0; i < s.ntensors && n < 62; i++) {
        const rmu_st_tensor *x = &s.tensors[i];
        rmu_st_out *w = &t[n++];
        w->name = x->name, w->dtype = x->dtype, w->ndim = x->ndim, w->data = x->data;
        memcpy(w->shape, x->shape, sizeof w->shape);
        if (!strcmp(x->name, "model.embed_tokens.weight")) w->dtype = RMU_DT_F8_E4M3, w->data = codes;
    }
    t[n++] = (rmu_st_out){.name = "model.embed_tokens.weight_scale", .dtype = RMU_DT_F32, .ndim = 1, .shape = {1},
                          .data = &one};
    char d1[512], d2[512];
    snprintf(d1, sizeof d1, "%s/f8embed2", tmpdir);
    snprintf(d2, sizeof d2, "%s/f32scale", tmpdir);
    mkdir(d1, 0755);
    OK(rmu_st_write_dir(d1, t, n, &e));
    OK(rmu_file_copy(tu_path(out, "config.json"), tu_path(d1, "config.json"), &e));
    rmu_model m;
    assert_int_equal(rmu_model_load(&m, d1, &e), -1);
    assert_non_null(strstr(e.msg, "tensor model.embed_tokens.weight is FP8 (F8_E4M3); only the decoder layers' "
                                  "linear weights and lm_head may be"));
    /* the same scale beside the F32 embedding: named as belonging to a weight that is not FP8 */
    for (int i = 0; i < s.ntensors; i++)
        if (!strcmp(t[i].name, "model.embed_tokens.weight")) {
            t[i].dtype = RMU_DT_F32;
            t[i].data = s.tensors[i].data;
        }
    mkdir(d2, 0755);
    OK(rmu_st_write_dir(d2, t, n, &e));
    OK(rmu_file_copy(tu_path(out, "config.json"), tu_path(d2, "config.json"), &e));
    assert_int_equal(rmu_model_load(&m, d2, &e), -1);
    assert_non_null(strstr(e.msg, "unexpected tensor model.embed_tokens.weight_scale: model.embed_tokens.weight is "
                                  "F32, not FP8 (F8_E4M3)"));
    rmu_st_close(&s);
}

/* A NaN weight: the quantizer names it and writes nothing. */
static void test_quantize_nan_weight(void **st) {
    (void)st;
    rmu_err e;
    char base[512], bad[512];
    snprintf(base, sizeof base, "%s/base32", tmpdir);
    snprintf(bad, sizeof bad, "%s/nanw", tmpdir);
    rmu_st_set s;
    OK(rmu_st_open_dir(&s, base, &e));
    rmu_st_out t[64];
    int n = 0;
    float *w = NULL;
    for (int i = 0; i < s.ntensors; i++) {
        const rmu_st_tensor *x = &s.tensors[i];
        t[n] = (rmu_st_out){.name = x->name, .dtype = x->dtype, .ndim = x->ndim, .data = x->data};
        memcpy(t[n].shape, x->shape, sizeof t[n].shape);
        if (!strcmp(x->name, "model.layers.1.mlp.up_proj.weight")) {
            w = malloc(x->nbytes);
            memcpy(w, x->data, x->nbytes);
            w[3 * 32 + 7] = INFINITY; /* [3, 7] of [48, 32] */
            t[n].data = w;
        }
        n++;
    }
    mkdir(bad, 0755);
    OK(rmu_st_write_dir(bad, t, n, &e));
    OK(rmu_file_copy(tu_path(base, "config.json"), tu_path(bad, "config.json"), &e));
    rmu_quant_opts o = {.model_dir = bad, .out_dir = tu_path(tmpdir, "nanw_out")};
    assert_int_equal(rmu_quant_fp8(&o, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "model.layers.1.mlp.up_proj.weight[3, 7] is inf: FP8 cannot represent it"));
    struct stat sb;
    assert_int_equal(stat(tu_path(tmpdir, "nanw_out"), &sb), -1);
    free(w);
    rmu_st_close(&s);
}

static int setup(void **state) {
    if (tu_setup_tmp(state)) return -1;
    tmpdir = *state;
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scale_and_encode),
        cmocka_unit_test(test_quantize_channel_and_tensor),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_load_errors_placement),
        cmocka_unit_test(test_quantize_nan_weight),
    };
    return cmocka_run_group_tests_name("fp8_model", tests, setup, tu_teardown_tmp);
}

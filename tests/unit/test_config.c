/* test_config.c - HF config.json parsing (real files, defaults, nulls, lists, errors),
 * writing back, presets and parameter counts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "testutil.h"
#include "core/fileio.h"
#include "model/config.h"

/* Minimal valid Mistral config with one extra fragment spliced in before the end. */
static int parse_with(rmu_config *c, const char *extra, rmu_err *e) {
    char txt[2048];
    snprintf(txt, sizeof txt,
             "{\"model_type\":\"mistral\",\"hidden_size\":64,\"intermediate_size\":128,"
             "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100%s%s}",
             extra && *extra ? "," : "", extra ? extra : "");
    return rmu_cfg_parse(c, txt, "/m/config.json", e);
}

static void expect_error(const char *extra, const char *frag1, const char *frag2) {
    rmu_config c;
    rmu_err e = {{0}};
    if (parse_with(&c, extra, &e) == 0) fail_msg("accepted: %s", extra);
    if (!strstr(e.msg, "/m/config.json")) fail_msg("message does not name the file: %s", e.msg);
    if (frag1 && !strstr(e.msg, frag1)) fail_msg("message lacks '%s': %s", frag1, e.msg);
    if (frag2 && !strstr(e.msg, frag2)) fail_msg("message lacks '%s': %s", frag2, e.msg);
}

static void test_real_mistral(void **state) {
    (void)state;
    TU_NEED_SHARED(d, "data/mistral-7b-v0.1");
    rmu_config c;
    rmu_err e = {{0}};
    if (rmu_cfg_load(&c, d, &e)) fail_msg("%s", e.msg);
    assert_string_equal(c.model_type, "mistral");
    assert_int_equal(c.hidden_size, 4096);
    assert_int_equal(c.intermediate_size, 14336);
    assert_int_equal(c.n_layers, 32);
    assert_int_equal(c.n_heads, 32);
    assert_int_equal(c.n_kv_heads, 8);
    assert_int_equal(c.head_dim, 128);
    assert_int_equal(c.vocab_size, 32000);
    assert_int_equal(c.max_position_embeddings, 32768);
    assert_int_equal(c.sliding_window, 4096);
    assert_true(c.rope_theta == 10000.0f);
    assert_true(c.rms_norm_eps == 1e-5f);
    assert_int_equal(c.tie_word_embeddings, 0);
    assert_int_equal(c.bos_id, 1);
    assert_int_equal(c.eos_id, 2);
    assert_int_equal(c.pad_id, -1);
    assert_int_equal(c.torch_dtype, RMU_DT_BF16);
    /* the preset is exactly this file */
    rmu_config p;
    if (rmu_cfg_preset(&p, "mistral-7b", &e)) fail_msg("%s", e.msg);
    assert_memory_equal(&p, &c, sizeof c);
    assert_int_equal(rmu_cfg_n_params(&c), 7241732096LL);
}

static void test_real_stories(void **state) {
    (void)state;
    TU_NEED_SHARED(d, "models/stories260K");
    rmu_config c;
    rmu_err e = {{0}};
    if (rmu_cfg_load(&c, d, &e)) fail_msg("%s", e.msg);
    assert_string_equal(c.model_type, "llama");
    assert_int_equal(c.hidden_size, 64);
    assert_int_equal(c.intermediate_size, 172);
    assert_int_equal(c.n_layers, 5);
    assert_int_equal(c.n_heads, 8);
    assert_int_equal(c.n_kv_heads, 4);
    assert_int_equal(c.head_dim, 8);
    assert_int_equal(c.vocab_size, 512);
    assert_int_equal(c.sliding_window, 0);
    assert_int_equal(c.tie_word_embeddings, 1);
    assert_int_equal(c.torch_dtype, RMU_DT_F32);
    rmu_config p;
    if (rmu_cfg_preset(&p, "stories260k", &e)) fail_msg("%s", e.msg);
    assert_memory_equal(&p, &c, sizeof c);
}

static void test_defaults(void **state) {
    (void)state;
    rmu_config c;
    rmu_err e = {{0}};
    if (parse_with(&c, NULL, &e)) fail_msg("%s", e.msg);
    assert_int_equal(c.n_kv_heads, 4);
    assert_int_equal(c.head_dim, 16);
    assert_true(c.rope_theta == 10000.0f);
    assert_true(c.rms_norm_eps == 1e-6f);
    assert_int_equal(c.sliding_window, 0);
    assert_int_equal(c.tie_word_embeddings, 0);
    assert_int_equal(c.bos_id, -1);
    assert_int_equal(c.eos_id, -1);
    assert_int_equal(c.pad_id, -1);
    assert_int_equal(c.max_position_embeddings, 4096 * 32);
    assert_int_equal(c.torch_dtype, RMU_DT_INVALID);
    /* llama's own default context */
    if (rmu_cfg_parse(&c,
                      "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":128,"
                      "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100,\"sliding_window\":7}",
                      "x", &e))
        fail_msg("%s", e.msg);
    assert_int_equal(c.max_position_embeddings, 2048);
    assert_int_equal(c.sliding_window, 0); /* LlamaConfig ignores it */
}

static void test_nulls_and_lists(void **state) {
    (void)state;
    rmu_config c;
    rmu_err e = {{0}};
    if (parse_with(&c, "\"sliding_window\":null,\"head_dim\":null,\"pad_token_id\":null,\"num_key_value_heads\":null,"
                       "\"rope_scaling\":null,\"attention_bias\":false,\"hidden_act\":\"silu\"",
                   &e))
        fail_msg("%s", e.msg);
    assert_int_equal(c.sliding_window, 0);
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.pad_id, -1);
    assert_int_equal(c.n_kv_heads, 4);
    if (parse_with(&c, "\"eos_token_id\":[2,32000],\"bos_token_id\":1,\"pad_token_id\":0,\"sliding_window\":32", &e))
        fail_msg("%s", e.msg);
    assert_int_equal(c.eos_id, 2);
    assert_int_equal(c.bos_id, 1);
    assert_int_equal(c.pad_id, 0);
    assert_int_equal(c.sliding_window, 32);
    /* explicit head_dim different from hidden / heads (Mistral-Nemo style) */
    if (parse_with(&c, "\"head_dim\":32,\"num_key_value_heads\":2,\"rope_theta\":1000000.0,"
                       "\"rms_norm_eps\":1e-05,\"tie_word_embeddings\":true,\"torch_dtype\":\"float16\"",
                   &e))
        fail_msg("%s", e.msg);
    assert_int_equal(c.head_dim, 32);
    assert_int_equal(c.n_kv_heads, 2);
    assert_true(c.rope_theta == 1e6f);
    assert_true(c.rms_norm_eps == 1e-5f);
    assert_int_equal(c.tie_word_embeddings, 1);
    assert_int_equal(c.torch_dtype, RMU_DT_F16);
    /* newer transformers spell it "dtype" */
    if (parse_with(&c, "\"dtype\":\"bfloat16\"", &e)) fail_msg("%s", e.msg);
    assert_int_equal(c.torch_dtype, RMU_DT_BF16);
}

/* quantization_config: FP8 layouts vLLM loads, and clear errors for the rest */
static void test_quantization(void **state) {
    (void)state;
    rmu_config c;
    rmu_err e = {{0}};
    OK(parse_with(&c, "\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": "
                      "\"float-quantized\", \"config_groups\": {\"group_0\": {\"targets\": [\"Linear\"], "
                      "\"weights\": {\"num_bits\": 8, \"type\": \"float\", \"strategy\": \"channel\", "
                      "\"symmetric\": true, \"dynamic\": false}, \"input_activations\": null}}, "
                      "\"ignore\": [\"lm_head\"]}", &e));
    assert_int_equal(c.quant, RMU_QUANT_FP8_CHANNEL);
    assert_string_equal(c.quant_method, "compressed-tensors");
    assert_string_equal(c.quant_note, "");
    OK(parse_with(&c, "\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": "
                      "\"float-quantized\", \"config_groups\": {\"g\": {\"weights\": {\"num_bits\": 8, "
                      "\"type\": \"float\", \"strategy\": \"tensor\", \"symmetric\": true, \"dynamic\": false}, "
                      "\"input_activations\": {\"num_bits\": 8, \"type\": \"float\", \"dynamic\": true}}}}", &e));
    assert_int_equal(c.quant, RMU_QUANT_FP8_TENSOR);
    assert_string_equal(c.quant_note, ""); /* dynamic activations: nothing stored to ignore */
    OK(parse_with(&c, "\"quantization_config\": {\"quant_method\": \"fp8\", \"activation_scheme\": \"static\"}",
                  &e));
    assert_int_equal(c.quant, RMU_QUANT_FP8_TENSOR);
    assert_non_null(strstr(c.quant_note, "input_scale tensors are ignored"));
    OK(parse_with(&c, "\"quantization_config\": null", &e));
    assert_int_equal(c.quant, RMU_QUANT_NONE);
    expect_error("\"quantization_config\": {\"quant_method\": \"awq\", \"bits\": 4}", "quant_method 'awq' is not supported",
                 NULL);
    expect_error("\"quantization_config\": {\"quant_method\": \"gptq\"}", "'gptq'", NULL);
    expect_error("\"quantization_config\": {\"quant_method\": \"fp8\", \"weight_block_size\": [128, 128]}",
                 "block-wise FP8", NULL);
    expect_error("\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": "
                 "\"float-quantized\", \"config_groups\": {\"g\": {\"weights\": {\"num_bits\": 8, \"type\": "
                 "\"float\", \"strategy\": \"block\", \"symmetric\": true, \"dynamic\": false}}}}",
                 "strategy 'block'", "block-wise FP8 is not");
    expect_error("\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": "
                 "\"pack-quantized\"}", "format 'pack-quantized'", NULL);
    expect_error("\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": "
                 "\"float-quantized\", \"config_groups\": {\"g\": {\"weights\": {\"num_bits\": 4, \"type\": "
                 "\"int\", \"strategy\": \"channel\"}}}}", "only 8-bit float weights", NULL);
    expect_error("\"quantization_config\": 7", "quant_method", NULL);
}

static void test_errors(void **state) {
    (void)state;
    rmu_config c;
    rmu_err e = {{0}};
    assert_int_equal(rmu_cfg_parse(&c, "{\"model_type\":\"mistral\"", "/m/config.json", &e), -1);
    assert_non_null(strstr(e.msg, "/m/config.json: invalid JSON"));
    assert_int_equal(rmu_cfg_parse(&c, "[1]", "/m/config.json", &e), -1);
    assert_non_null(strstr(e.msg, "not a JSON object"));
    assert_int_equal(rmu_cfg_parse(&c, "{\"hidden_size\":4}", "/m/config.json", &e), -1);
    assert_non_null(strstr(e.msg, "\"model_type\" is missing"));
    assert_int_equal(rmu_cfg_parse(&c,
                                   "{\"model_type\":\"mistral\",\"intermediate_size\":128,\"num_hidden_layers\":2,"
                                   "\"num_attention_heads\":4,\"vocab_size\":100}",
                                   "/m/config.json", &e),
                     -1);
    assert_non_null(strstr(e.msg, "/m/config.json: required key \"hidden_size\" is missing"));
    expect_error("\"model_type\":\"gpt2\"", NULL, NULL); /* duplicate key: last one wins in jansson */
    expect_error("\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}", "rope_scaling", "unsupported");
    expect_error("\"attention_bias\":true", "attention_bias", "unsupported");
    expect_error("\"mlp_bias\":true", "mlp_bias", "unsupported");
    expect_error("\"hidden_act\":\"gelu\"", "hidden_act", "'gelu'");
    expect_error("\"num_key_value_heads\":3", "num_attention_heads", "num_key_value_heads");
    expect_error("\"eos_token_id\":100", "eos_token_id", "vocab_size");
    expect_error("\"bos_token_id\":\"1\"", "bos_token_id", "a string");
    expect_error("\"eos_token_id\":[\"x\"]", "eos_token_id", NULL);
    expect_error("\"sliding_window\":-1", "sliding_window", "out of range");
    expect_error("\"sliding_window\":true", "sliding_window", "must be an integer");
    expect_error("\"tie_word_embeddings\":1", "tie_word_embeddings", "true or false");
    expect_error("\"rope_theta\":\"big\"", "rope_theta", "must be a number");
    expect_error("\"rms_norm_eps\":0", "rms_norm_eps", "out of range");
    expect_error("\"head_dim\":15", "head_dim", "even");
    expect_error("\"max_position_embeddings\":0", "max_position_embeddings", NULL);
    expect_error("\"torch_dtype\":5", "torch_dtype", "string");
    assert_int_equal(rmu_cfg_parse(&c,
                                   "{\"model_type\":\"mistral\",\"hidden_size\":\"64\",\"intermediate_size\":128,"
                                   "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100}",
                                   "/m/config.json", &e),
                     -1);
    assert_non_null(strstr(e.msg, "\"hidden_size\" must be an integer, got a string"));
    assert_int_equal(rmu_cfg_parse(&c,
                                   "{\"model_type\":\"mistral\",\"hidden_size\":65,\"intermediate_size\":128,"
                                   "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100}",
                                   "/m/config.json", &e),
                     -1);
    assert_non_null(strstr(e.msg, "not divisible"));
    assert_int_equal(rmu_cfg_parse(&c,
                                   "{\"model_type\":\"mistral\",\"hidden_size\":99999999999,\"intermediate_size\":128,"
                                   "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100}",
                                   "/m/config.json", &e),
                     -1);
    assert_non_null(strstr(e.msg, "hidden_size"));
    assert_int_equal(rmu_cfg_load(&c, "/nonexistent-dir", &e), -1);
    assert_non_null(strstr(e.msg, "/nonexistent-dir/config.json"));
}

static void test_model_type(void **state) {
    (void)state;
    rmu_config c;
    rmu_err e = {{0}};
    assert_int_equal(rmu_cfg_parse(&c,
                                   "{\"model_type\":\"gpt2\",\"hidden_size\":64,\"intermediate_size\":128,"
                                   "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100}",
                                   "/m/config.json", &e),
                     -1);
    assert_non_null(strstr(e.msg, "'gpt2' is not supported"));
}

/* Every preset survives save + load unchanged, and the file reads like HF's. */
static void test_save_roundtrip(void **state) {
    const char *dir = *state;
    const char *names[] = {"mistral-7b", "tiny", "small", "stories260k"};
    for (int i = 0; i < 4; i++) {
        rmu_config p, c;
        rmu_err e = {{0}};
        if (rmu_cfg_preset(&p, names[i], &e)) fail_msg("%s", e.msg);
        if (rmu_cfg_save(&p, dir, &e)) fail_msg("%s", e.msg);
        if (rmu_cfg_load(&c, dir, &e)) fail_msg("%s: %s", names[i], e.msg);
        assert_memory_equal(&p, &c, sizeof c);
    }
    rmu_config p;
    rmu_err e = {{0}};
    rmu_cfg_preset(&p, "tiny", &e);
    p.sliding_window = 0;
    p.pad_id = 0;
    if (rmu_cfg_save(&p, dir, &e)) fail_msg("%s", e.msg);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *txt = rmu_file_read_all(path, NULL, &e);
    assert_non_null(txt);
    assert_non_null(strstr(txt, "\"architectures\": [\n    \"MistralForCausalLM\"\n  ]"));
    assert_non_null(strstr(txt, "\"sliding_window\": null"));
    /* jansson spells it 1e-5 where Python writes 1e-05: the same number */
    assert_true(strstr(txt, "\"rms_norm_eps\": 1e-5,") || strstr(txt, "\"rms_norm_eps\": 1e-05,"));
    assert_non_null(strstr(txt, "\"rope_theta\": 10000.0"));
    assert_non_null(strstr(txt, "\"torch_dtype\": \"float32\""));
    assert_non_null(strstr(txt, "\"tie_word_embeddings\": false"));
    assert_non_null(strstr(txt, "\"pad_token_id\": 0"));
    assert_non_null(strstr(txt, "\"hidden_act\": \"silu\""));
    free(txt);
    rmu_cfg_preset(&p, "stories260k", &e);
    if (rmu_cfg_save(&p, dir, &e)) fail_msg("%s", e.msg);
    txt = rmu_file_read_all(path, NULL, &e);
    assert_non_null(strstr(txt, "\"LlamaForCausalLM\""));
    assert_null(strstr(txt, "sliding_window"));
    free(txt);
    /* invalid configs are refused, not written */
    p.n_kv_heads = 3;
    assert_int_equal(rmu_cfg_save(&p, dir, &e), -1);
    assert_non_null(strstr(e.msg, "num_key_value_heads"));
}

static void test_presets(void **state) {
    (void)state;
    rmu_config c;
    rmu_err e = {{0}};
    if (rmu_cfg_preset(&c, "tiny", &e)) fail_msg("%s", e.msg);
    assert_string_equal(c.model_type, "mistral");
    assert_int_equal(c.hidden_size, 64);
    assert_int_equal(c.intermediate_size, 176);
    assert_int_equal(c.n_layers, 4);
    assert_int_equal(c.n_heads, 4);
    assert_int_equal(c.n_kv_heads, 2);
    assert_int_equal(c.vocab_size, 512);
    assert_int_equal(c.sliding_window, 16);
    assert_int_equal(c.max_position_embeddings, 512);
    assert_int_equal(c.tie_word_embeddings, 0);
    if (rmu_cfg_preset(&c, "small", &e)) fail_msg("%s", e.msg);
    assert_int_equal(c.hidden_size, 256);
    assert_int_equal(c.intermediate_size, 688);
    assert_int_equal(c.n_layers, 8);
    assert_int_equal(c.n_kv_heads, 4);
    assert_int_equal(c.vocab_size, 2048);
    assert_int_equal(c.sliding_window, 256);
    assert_int_equal(rmu_cfg_validate(&c, "small", &e), 0);
    if (rmu_cfg_preset(&c, "stories260k", &e)) fail_msg("%s", e.msg);
    /* llama2.c's stories260K: 260K parameters, tied head */
    assert_int_equal(rmu_cfg_n_params(&c), 260032);
    assert_int_equal(rmu_cfg_preset(&c, "gpt-7", &e), -1);
    assert_non_null(strstr(e.msg, "unknown shape 'gpt-7'"));
    assert_non_null(strstr(e.msg, "tiny"));
    /* untied adds a second V x C matrix */
    rmu_cfg_preset(&c, "tiny", &e);
    long long untied = rmu_cfg_n_params(&c);
    c.tie_word_embeddings = 1;
    assert_int_equal(untied - rmu_cfg_n_params(&c), 512 * 64);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_mistral),
        cmocka_unit_test(test_real_stories),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_nulls_and_lists),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_quantization),
        cmocka_unit_test(test_model_type),
        cmocka_unit_test_setup_teardown(test_save_roundtrip, tu_setup_tmp, tu_teardown_tmp),
        cmocka_unit_test(test_presets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

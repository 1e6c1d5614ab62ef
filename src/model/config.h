/* config.h - the model description read from a Hugging Face config.json. Prefix rmu_cfg_. */
#ifndef RMU_CONFIG_H
#define RMU_CONFIG_H

#include "core/dtype.h"
#include "core/err.h"

/* Weight quantization a config.json declares (quantization_config). FP8 E4M3 weights of
 * the decoder's linear layers with fp32 scales, per output channel ([out, 1]) or per tensor;
 * every other tensor keeps its dtype. Weight-only: activations stay in bf16/fp32. */
typedef enum rmu_quant {
    RMU_QUANT_NONE = 0,
    RMU_QUANT_FP8_CHANNEL, /* compressed-tensors "float-quantized", strategy "channel" */
    RMU_QUANT_FP8_TENSOR,  /* compressed-tensors strategy "tensor", or quant_method "fp8" */
} rmu_quant;

typedef struct rmu_config {
    char model_type[32];   /* "mistral" or "llama" */
    int hidden_size;       /* C */
    int intermediate_size; /* F */
    int n_layers;
    int n_heads;
    int n_kv_heads;        /* defaults to n_heads */
    int head_dim;          /* defaults to hidden_size / n_heads */
    int vocab_size;
    int max_position_embeddings;
    float rope_theta;      /* default 10000 */
    float rms_norm_eps;    /* default 1e-6 as HF */
    int sliding_window;    /* 0 = none (null or absent) */
    int tie_word_embeddings;
    int bos_id, eos_id;    /* -1 when absent */
    int pad_id;            /* -1 when absent */
    rmu_dtype torch_dtype; /* RMU_DT_INVALID when absent */
    rmu_quant quant;       /* from quantization_config */
    char quant_method[32]; /* its quant_method, "" when none */
    char quant_note[160];  /* what the loader ignores of it (e.g. static input scales), "" when nothing */
} rmu_config;

/* Parse DIR/config.json text (path used in messages). Validates: model_type mistral|llama,
 * hidden_act silu, positive sizes, heads divisible by kv heads, ids within vocab, and a
 * quantization_config that rmu can run (FP8 E4M3 weight quantization, channel or tensor
 * scales): AWQ, GPTQ, bitsandbytes, block-wise FP8 ... are errors naming the method. */
int rmu_cfg_parse(rmu_config *c, const char *json_text, const char *path, rmu_err *e);
int rmu_cfg_load(rmu_config *c, const char *dir, rmu_err *e);
/* Write config.json (atomic) in HF layout for this config. */
int rmu_cfg_save(const rmu_config *c, const char *dir, rmu_err *e);
/* Named shapes for `rmu init --shape`: "mistral-7b", "tiny", "stories260k", "small". */
int rmu_cfg_preset(rmu_config *c, const char *name, rmu_err *e);
/* The invariants rmu_cfg_parse enforces (supported model_type, positive sizes within
 * limits, heads divisible by kv heads, even head_dim, ids below vocab), for configs built
 * in code (presets with overrides). path names the config in messages. */
int rmu_cfg_validate(const rmu_config *c, const char *path, rmu_err *e);
/* Total parameter count. */
long long rmu_cfg_n_params(const rmu_config *c);

#endif

/* model.h - a Mistral/Llama decoder loaded from a Hugging Face folder, and its inference
 * forward pass with a KV cache. Prefix rmu_model_ (weights) and rmu_state_ (run state).
 *
 * Weights are pointers into the safetensors mmap (no copy); every matmul reads them in
 * their file dtype (F32/F16/BF16, or F8_E4M3 with fp32 scales) and computes in the model's
 * precision (bf16 products with fp32 sums for BF16 weights by default, or exact fp32;
 * rmu_model_set_precision).
 *
 * FP8 folders (config.json quantization_config: compressed-tensors "float-quantized" with
 * channel or tensor weight scales, or quant_method "fp8"): a linear weight W stored as
 * F8_E4M3 needs W's "<name>_scale" tensor (model.layers.0.mlp.up_proj.weight_scale): [out, 1]
 * or [out] for channel scales, [] or [1] per tensor, in F32/F16/BF16; the scales are kept
 * as fp32 (rmu_model.scales) and the kernels apply them. Static "input_scale" tensors are
 * ignored (weight-only: activations stay fp32/bf16; rmu_config.quant_note says so). Only the
 * decoder layers' linear weights and an untied lm_head may be FP8. */
#ifndef RMU_MODEL_H
#define RMU_MODEL_H

#include <stdint.h>

#include "core/dtype.h"
#include "core/err.h"
#include "io/safetensors.h"
#include "kernels/gemm.h"
#include "model/config.h"

/* A 2-D weight [rows, cols] row-major; a linear layer y = x W^T has rows = out, cols = in.
 * 1-D weights (norms) have rows = 1. */
typedef struct rmu_weight {
    const void *data;
    rmu_dtype dtype;
    int64_t rows, cols;
    const float *scale; /* F8_E4M3 only: nscale fp32 scales, one per row (nscale = rows) or one */
    int64_t nscale;
    const void *panels;    /* F8_E4M3/BF16 matrices, optional: data as panels (kernels/gemm.h) */
    const void *panels_of; /* valid while data is still this (training swaps data for masters) */
} rmu_weight;

typedef struct rmu_layer {
    rmu_weight attn_norm;           /* input_layernorm [C] */
    rmu_weight wq, wk, wv, wo;      /* q [H*hd, C], k/v [KV*hd, C], o [C, H*hd] */
    rmu_weight mlp_norm;            /* post_attention_layernorm [C] */
    rmu_weight w_gate, w_up, w_down;/* gate/up [F, C], down [C, F] */
} rmu_layer;

typedef struct rmu_model {
    rmu_config cfg;
    rmu_st_set st;
    rmu_weight embed;       /* [V, C] */
    rmu_weight final_norm;  /* [C] */
    rmu_weight lm_head;     /* [V, C]; == embed when tied */
    rmu_layer *layers;      /* [n_layers] */
    rmu_prec precision;     /* of every matmul; AUTO (the default): bf16 iff the weight is BF16 */
    float *scales;          /* the FP8 weights' scales as fp32 (NULL without FP8 weights) */
    unsigned char *panels;  /* the FP8/BF16 matrices as panels, one allocation (NULL: none made) */
    char dir[4096];
} rmu_model;

/* Load DIR (config.json + safetensors) to run it. Every expected tensor must be present with
 * the configured shape; missing, extra and mis-shaped tensors are reported by name. FP8 and
 * BF16 matrices are then copied once into panels when the kernels read them (kernels/gemm.h:
 * FP8 decode ~1.8x faster per core, BF16 products of 9-64 rows cheaper to pack), and their
 * mapped pages released, so resident memory stays the size of the weights. A weight whose
 * data is later swapped (training's fp32 masters) is read from its new data. */
int rmu_model_load(rmu_model *m, const char *dir, rmu_err *e);
/* The same without panels: for commands that read the weights but do not run the model
 * (info, export, quantize) and for training, which reads the stored layout for dX and swaps
 * weights for masters: panels there would only cost time and memory. */
int rmu_model_open(rmu_model *m, const char *dir, rmu_err *e);
void rmu_model_free(rmu_model *m);
/* Arithmetic of the matmuls (kernels/gemm.h): RMU_PREC_AUTO (bf16 for BF16 weights, what a
 * bf16 PyTorch run computes), RMU_PREC_BF16 or RMU_PREC_FP32 (exact fp32 everywhere). */
void rmu_model_set_precision(rmu_model *m, rmu_prec p);
/* HF name of a weight, e.g. "model.layers.3.mlp.down_proj.weight"; returns a pointer into
 * the model (lets train/unlearn swap a weight's data for an fp32 master copy). */
rmu_weight *rmu_model_weight(rmu_model *m, const char *hf_name);
/* Bytes of all weights, FP8 scales included. */
size_t rmu_model_weight_bytes(const rmu_model *m);
/* Bytes of weights one decode step reads: all but the embedding table, of which one row (all
 * of it when tied: it is then the lm_head too). */
size_t rmu_model_decode_bytes(const rmu_model *m);
/* Row `row` of w as fp32 values (an FP8 row times its scale): dst[w->cols]. */
void rmu_weight_row_f32(const rmu_weight *w, int64_t row, float *dst);

/* Phases of an inference forward pass, for profiling (rmu_state.prof). The matmul phases
 * (QKV, WO, GATE_UP, DOWN, LOGITS) are GEMVs in decode; the rest is everything else. */
typedef enum {
    RMU_PH_EMBED,   /* embedding row lookup */
    RMU_PH_NORM,    /* RMSNorms (two per layer, the final one) */
    RMU_PH_QKV,     /* q/k/v projections */
    RMU_PH_ROPE,    /* RoPE of q and k, new keys/values into the cache */
    RMU_PH_ATTN,    /* attention over the cache */
    RMU_PH_WO,      /* o projection + residual add */
    RMU_PH_GATE_UP, /* gate/up projections */
    RMU_PH_SWIGLU,  /* SwiGLU */
    RMU_PH_DOWN,    /* down projection + residual add */
    RMU_PH_LOGITS,  /* LM head */
    RMU_PH_COUNT
} rmu_phase;

/* Seconds per phase, summed over forward calls: wall clock and the calling thread's CPU
 * time (with one thread, CPU time is what the phase cost, whatever else the machine runs). */
typedef struct rmu_prof {
    double wall[RMU_PH_COUNT], cpu[RMU_PH_COUNT];
} rmu_prof;

const char *rmu_phase_name(rmu_phase p);
int rmu_phase_is_matmul(rmu_phase p);

/* Run state: KV cache for one sequence of up to ctx tokens and scratch for up to
 * max_batch tokens per forward call. All memory is allocated by rmu_state_init: a forward
 * call allocates nothing. */
typedef struct rmu_state {
    int ctx, max_batch, pos;
    float *kcache, *vcache;   /* [n_layers, KV, ctx, hd]: head-major, so attention streams one
                               * head's keys/values from contiguous memory */
    float *x, *xb, *q, *k, *v, *att_out, *hb, *hb2; /* scratch [max_batch, ...] */
    float *att;               /* attention scratch (rmu_attention_scratch_floats) */
    float *rope_cos, *rope_sin; /* [ctx, hd/2] */
    int *pos_ids;             /* [max_batch] */
    int nthreads;
    rmu_prof *prof;           /* NULL, or forward calls add their phase times here */
} rmu_state;

int rmu_state_init(rmu_state *s, const rmu_model *m, int ctx, int max_batch, rmu_err *e);
void rmu_state_free(rmu_state *s);
/* Forget the cached sequence (pos = 0). */
void rmu_state_reset(rmu_state *s);

/* Feed n tokens at positions s->pos .. s->pos+n-1 (n may exceed max_batch: processed in
 * chunks) and advance s->pos. logits: [V] for the last token, or [n, V] when all != 0;
 * may be NULL to only fill the cache. Errors when the context would overflow. */
int rmu_model_forward(const rmu_model *m, rmu_state *s, const int *tokens, int n, float *logits, int all,
                      rmu_err *e);

/* Scratch for rmu_model_forward_rows: up to max_rows rows in all, from up to max_slots
 * slots. */
typedef struct rmu_batch_ws {
    int max_rows, max_slots, nthreads;
    float *x, *xb, *q, *k, *v, *att_out, *hb, *hb2; /* [max_rows, ...] */
    float *att;     /* attention scratch (rmu_attention_scratch_floats) */
    int *pos_ids;   /* [max_rows] */
    int *r0;        /* [max_slots] each slot's first row */
    rmu_prof *prof; /* NULL, or forward calls add their phase times here */
} rmu_batch_ws;

int rmu_batch_ws_init(rmu_batch_ws *ws, const rmu_model *m, int max_rows, int max_slots, rmu_err *e);
void rmu_batch_ws_free(rmu_batch_ws *ws);

/* One forward over several sequences at once (continuous batching): slot i feeds nrows[i]
 * tokens (tokens: slot 0's, then slot 1's, ...) at positions slots[i]->pos.. and advances
 * its pos. Norms and products run on all rows together; RoPE, the K/V cache and attention
 * are each slot's own. Only the slots' KV caches, positions and RoPE tables are used (a
 * slot state may be made with max_batch 1). logits (may be NULL): per slot, want[i] = 0
 * nothing, 1 the last row, 2 every row (want NULL: the last row of each), [rows, V] in slot
 * order. Every product runs once over all rows (one read of each weight per call).
 * Batch invariance: a row's numbers depend only on its own sequence, never on the other
 * slots, nor on how a sequence was split into calls (prefill chunks of any size, decode
 * steps): K/V and logits are bitwise those of one rmu_model_forward of the whole sequence,
 * so cached rows - prompts and generated tokens alike - can be reused anywhere. */
int rmu_model_forward_rows(const rmu_model *m, rmu_state *const *slots, const int *tokens, const int *nrows,
                           int nslots, float *logits, const int *want, rmu_batch_ws *ws, rmu_err *e);

/* Residual stream after decoder layer `layer` (0-based; HF hidden_states[layer+1]) for a
 * fresh sequence: out [n, C]. Stops computing after that layer. Resets the state. */
int rmu_model_hidden(const rmu_model *m, rmu_state *s, const int *tokens, int n, int layer, float *out,
                     rmu_err *e);

#endif

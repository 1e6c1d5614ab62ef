/* trainer.h - the training engine: selective fp32 master weights, gradients, saved
 * activations and the layer-range forward/backward that `rmu train` and RMU unlearning are
 * built from. Prefix rmu_tr_.
 *
 * Trainable tensors (glob patterns on HF names, src/train/glob.h, or explicit names) get an
 * fp32 master copy,
 * a gradient and AdamW moments, all in one allocation each; the model's rmu_weight for
 * such a tensor is repointed at its master (dtype F32), so every forward reads the
 * current values. Frozen tensors stay in the safetensors mmap in their file dtype.
 *
 * Two views of the weights run side by side (RMU needs both):
 *   live   - the model passed to rmu_tr_init, trainable tensors on their masters;
 *   frozen - a shallow copy taken before repointing: the original file weights for every
 *            tensor (same mmap, no extra memory).
 *
 * A batch is B rows of T tokens, LEFT padded: mask[b*T+t] = 1 for real tokens, 0 for pad.
 * Position ids are 0..T-1 in every row (HF's forward without explicit position_ids), so
 * a row with p pads has its first real token at position p. Pad keys are never attended,
 * pad query rows produce a zero attention output, and the loss only counts targets t+1
 * where both t and t+1 are real tokens.
 *
 * Typical use (one optimizer step of causal-LM training):
 *     rmu_tr_set_batch(tr, tokens, mask, B, T, e);
 *     rmu_tr_zero_grad(tr);
 *     rmu_tr_loss_and_grad(tr, &loss, e);      // forward + backward
 *     ... clip, rmu_adamw_step over tr->params ...
 *
 * RMU (loss on the residual after layer l, trainable layers l0..l1 <= l):
 *     rmu_tr_embed(tr, 1, x);  rmu_tr_forward_range_frozen(tr, x, 0, l, h_frozen, e);
 *     rmu_tr_embed(tr, 0, x);  rmu_tr_forward_range(tr, x, 0, l0 - 1, x, 0, e);   // no save
 *                              rmu_tr_forward_range(tr, x, l0, l, h_live, 1, e);  // saves
 *     ... dL/dh_live ...
 *     rmu_tr_backward_range(tr, dh, l, l0, NULL, e);   // accumulates trainable grads
 * Saved activations exist only for layers [tr->save_lo, tr->save_hi] (set at init from the
 * trainable set and opts.last_layer); saving or backpropagating outside them is an error. */
#ifndef RMU_TRAINER_H
#define RMU_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "model/model.h"

/* Trainable tensors: the union of the glob patterns and the explicit names; with neither,
 * every tensor. Selection errors (a pattern or name matching nothing, a tensor the loss
 * cannot reach) start with `field`, the option name the caller knows the selection by. */
typedef struct rmu_tr_opts {
    const char *trainable;    /* comma-separated glob patterns (src/train/glob.h), or NULL/"" */
    const char *const *names; /* n_names exact HF tensor names, e.g. built from layer ids */
    int n_names;
    const char *field;        /* NULL = "trainable" */
    int max_batch;         /* B capacity */
    int max_seq;           /* T capacity (<= max_position_embeddings) */
    int last_layer;        /* highest layer any loss needs; -1 = all layers + LM head */
} rmu_tr_opts;

/* One trainable tensor. master/grad/m/v point into the trainer's shared buffers. */
typedef struct rmu_tr_param {
    char name[128];         /* HF name */
    rmu_weight *w;          /* the live model's slot (data = master) */
    const void *orig;       /* the original file data (mmap) */
    rmu_dtype orig_dtype;
    int64_t rows, cols;     /* rows = 1 for 1-D tensors */
    size_t numel;
    int layer;              /* -1 embedding, n_layers: final norm / lm_head */
    float *master, *grad, *m, *v;
} rmu_tr_param;

/* Gradient buffers of one decoder layer; NULL for a frozen tensor. */
typedef struct rmu_tr_lgrads {
    float *attn_norm, *wq, *wk, *wv, *wo, *mlp_norm, *w_gate, *w_up, *w_down;
} rmu_tr_lgrads;

/* Activations one layer's backward needs (shapes for N = B*T tokens). */
typedef struct rmu_tr_acts {
    float *x_in;      /* [N, C] residual entering the layer */
    float *rstd1;     /* [N] */
    float *q, *k, *v; /* [N, H*hd], [N, KV*hd] x2, after RoPE */
    float *lse;       /* [N, H] */
    float *att;       /* [N, H*hd] attention output before o_proj */
    float *x_mid;     /* [N, C] residual after the attention block */
    float *rstd2;     /* [N] */
    float *gate, *up; /* [N, F] */
} rmu_tr_acts;

typedef struct rmu_tr {
    rmu_model *m;       /* live */
    rmu_model frozen;   /* original weights; shares m->st and must not be freed as a model */
    rmu_tr_opts opts;
    int nparams;
    rmu_tr_param *params;
    size_t n_trainable; /* total trainable elements */
    float *master_mem, *grad_mem, *m_mem, *v_mem;
    rmu_tr_lgrads *lg;  /* [n_layers] */
    float *g_embed, *g_final_norm, *g_lm_head; /* g_lm_head == g_embed when tied */
    int lowest_trainable;  /* lowest layer with a trainable tensor (-1: the embedding; n_layers: none) */
    int save_lo, save_hi;  /* layers with saved activations (save_lo > save_hi: none) */
    /* current batch */
    int B, T, N;
    int *tokens, *mask, *pos, *targets, *emb_ids; /* [max N] */
    int n_targets;
    /* memory: saved activations (one allocation) and scratch (one allocation) */
    float *act_mem, *scr_mem;
    rmu_tr_acts *acts; /* [n_layers]; valid for save_lo..save_hi */
    float *s_x, *s_xb, *s_dres, *s_dxb, *s_q, *s_k, *s_v, *s_lse, *s_att, *s_gate, *s_up, *s_h, *s_dh, *s_dup;
    float *s_dq, *s_dk, *s_dv, *s_datt, *s_rstd, *s_attn, *s_logits, *s_losses, *s_xf, *s_rstdf;
    float *rope_cos, *rope_sin; /* [max_seq, hd/2] */
    int nthreads, lm_chunk;
} rmu_tr;

/* Selects the trainable tensors (an unmatched pattern is an error naming it), makes the
 * masters and repoints the live model's weights, allocates grads, AdamW state, saved
 * activations and scratch. On error nothing is changed in m. */
int rmu_tr_init(rmu_tr *tr, rmu_model *m, const rmu_tr_opts *o, rmu_err *e);
/* Restores the model's weight pointers to the file data and frees everything. */
void rmu_tr_free(rmu_tr *tr);
/* Trainable parameter by HF name, or NULL. */
rmu_tr_param *rmu_tr_find(rmu_tr *tr, const char *name);
/* Bytes held by masters + grads + AdamW state, activations, scratch. */
size_t rmu_tr_bytes(const rmu_tr *tr);

/* Sets the current batch: tokens/mask [B*T] (mask NULL = all real; pads must be left).
 * Computes positions 0..T-1 and the causal-LM targets. Errors on bad shapes, ids out of
 * range, right padding, or a row with no real token. */
int rmu_tr_set_batch(rmu_tr *tr, const int *tokens, const int *mask, int B, int T, rmu_err *e);

void rmu_tr_zero_grad(rmu_tr *tr);

/* x_out[N, C] = embedding of the current batch (frozen != 0: original weights). */
void rmu_tr_embed(rmu_tr *tr, int frozen, float *x_out);
/* Adds dx[N, C] (grad w.r.t. the embedding output) into the embedding grad, if trainable. */
void rmu_tr_embed_backward(rmu_tr *tr, const float *dx);

/* Decoder layers l0..l1 (inclusive) on the live weights. x_in[N, C] is the residual
 * entering layer l0, x_out[N, C] the residual after layer l1 (may alias x_in). save != 0
 * keeps what rmu_tr_backward_range needs (layers must lie in [save_lo, save_hi]).
 * l1 < l0 copies x_in to x_out. */
int rmu_tr_forward_range(rmu_tr *tr, const float *x_in, int l0, int l1, float *x_out, int save, rmu_err *e);
/* Same on the frozen original weights, never saving. */
int rmu_tr_forward_range_frozen(rmu_tr *tr, const float *x_in, int l0, int l1, float *x_out, rmu_err *e);
/* Backward from the residual after layer l1 down to layer l0 (both saved by the last
 * forward_range with save). dx_out[N, C] = dL/d(residual after l1). Accumulates into the
 * trainable grads. dx_in[N, C] gets dL/d(residual entering l0); dx_in NULL skips what only
 * that needs (layer l0 stops once its own trainable grads are done). dx_in may alias dx_out. */
int rmu_tr_backward_range(rmu_tr *tr, const float *dx_out, int l1, int l0, float *dx_in, rmu_err *e);

/* Causal-LM head on the residual after the last layer: final norm, lm_head in row chunks,
 * mean cross-entropy over the batch targets. dx (may be NULL: loss only) gets dL/dx and
 * the final-norm / lm_head (or tied embedding) grads accumulate. *loss = mean loss
 * (NaN when the batch has no target). Needs opts.last_layer = -1 (else no logits scratch). */
int rmu_tr_lm_loss(rmu_tr *tr, const float *x, float *dx, double *loss, rmu_err *e);

/* Whole step for causal-LM training on the current batch (opts.last_layer = -1) or the
 * MSE-to-zero proxy loss mean(h^2) on the real tokens of the residual after
 * opts.last_layer (benchmarks). Forward without saving below the lowest trainable layer,
 * saved forward above it, loss, backward down to it. Grads accumulate (zero them first). */
int rmu_tr_loss_and_grad(rmu_tr *tr, double *loss, rmu_err *e);

/* Loss only, no grads (evaluation). */
int rmu_tr_loss(rmu_tr *tr, double *loss, rmu_err *e);

#endif

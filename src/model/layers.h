/* layers.h - the operations of a Mistral/Llama decoder. Each *_forward has its *_backward
 * beside it in layers.c (backward: the training engine). Shapes are in the comments:
 * N = tokens (batch x time, flattened), C = hidden, F = intermediate, H/KV = query/key-value
 * heads, hd = head dim. All activations are fp32; weights are read in their file dtype.
 * Attention (forward, backward, cached inference) is its own module: model/attention.h. */
#ifndef RMU_LAYERS_H
#define RMU_LAYERS_H

#include <stddef.h>

#include "kernels/gemm.h"
#include "model/model.h"

/* embedding: out[N,C] = E[ids[n]] */
void rmu_embedding_forward(float *out, const int *ids, int N, const rmu_weight *E);

/* RMSNorm: out[N,C] = x / sqrt(mean(x^2) + eps) * w[C]; rstd[N] (may be NULL) is kept
 * for the backward pass. out may alias x. */
void rmu_rmsnorm_forward(float *out, float *rstd, const float *x, const rmu_weight *w, int N, int C, float eps);

/* linear: y[N,out] = x[N,in] W^T (beta 0), or y += x W^T (beta 1: fuses a residual add).
 * prec: the arithmetic (kernels/gemm.h; AUTO = bf16 iff W is BF16). Errors (out of memory
 * in the GEMM) return -1 with e filled. */
int rmu_linear_forward(float *y, const float *x, const rmu_weight *W, int N, float beta, rmu_prec prec, rmu_err *e);
/* nw linear layers on the same input, ys[j][N, out_j] = x W_j^T, in one pass over x and one
 * parallel region when N is small (decode's Q/K/V and gate/up: rmu_gemm_multi). */
int rmu_linear_forward_multi(float *const *ys, const rmu_weight *const *Ws, int nw, const float *x, int N,
                             rmu_prec prec, rmu_err *e);

/* RoPE tables: cos/sin[npos, hd/2] for positions 0..npos-1 (angles in double precision). */
void rmu_rope_table(float *cos_t, float *sin_t, int npos, int hd, float theta);
/* RoPE in place in the Hugging Face rotate_half layout: for each head, pairs (i, i+hd/2)
 * rotate by pos * theta^(-2i/hd). x[N, nh*hd], pos[N] indexes the tables. */
void rmu_rope_forward(float *x, const int *pos, int N, int nh, int hd, const float *cos_t, const float *sin_t);

/* SwiGLU: h[n] = silu(gate[n]) * up[n] over n elements. h may alias gate. */
void rmu_swiglu_forward(float *h, const float *gate, const float *up, size_t n);

/* ==== backward passes and training-only ops (the training engine, src/train/).
 * Conventions: weight grads (dW, dw: fp32, the weight's shape) always ACCUMULATE (+=) and
 * may be NULL (frozen weight: skipped); activation grads say per function. Every reduction
 * runs in a fixed order whatever the thread count, so training is bit-reproducible. */

/* embedding: dE[ids[n]] += dout[n] (dE [V,C] fp32); rows with ids[n] < 0 are skipped. */
void rmu_embedding_backward(float *dE, const float *dout, const int *ids, int N, int C);

/* RMSNorm: dx[N,C] += dL/dx, dw[C] += dL/dw; x and rstd[N] are the forward's input and
 * saved rstd. dx may be NULL (only dw). */
void rmu_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *rstd,
                          const rmu_weight *w, int N, int C);

/* linear y[N,out] = x[N,in] W^T: dx[N,in] = dy W (dx_beta 0) or dx += dy W (dx_beta 1);
 * dW[out,in] += dy^T x. dx or dW may be NULL. prec as the forward's: in bf16 precision both
 * products round their inputs (dy, and W or x) to bf16. Returns 0 or -1 (e filled). */
int rmu_linear_backward(float *dx, float dx_beta, float *dW, const float *dy, const float *x, const rmu_weight *W,
                        int N, rmu_prec prec, rmu_err *e);

/* RoPE backward in place: dx[N, nh*hd] (grad w.r.t. the rotated values) becomes the grad
 * w.r.t. the values before rotation (the inverse rotation). */
void rmu_rope_backward(float *dx, const int *pos, int N, int nh, int hd, const float *cos_t, const float *sin_t);

/* SwiGLU backward: dgate[n], dup[n] = dL/dgate, dL/dup (overwritten) from dh. dgate may
 * alias dh. */
void rmu_swiglu_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up, size_t n);

/* Softmax cross-entropy over V classes: losses[n] = logsumexp(logits[n]) - logits[n][t[n]]
 * (0 where targets[n] < 0: ignored). */
void rmu_crossentropy_forward(float *losses, const float *logits, const int *targets, int N, int V);
/* dlogits[n] = scale * (softmax(logits[n]) - onehot(targets[n])); rows with targets < 0
 * get 0. dlogits may alias logits. */
void rmu_crossentropy_backward(float *dlogits, const float *logits, const int *targets, int N, int V, float scale);

#endif

/* layers.h - the operations of a Mistral/Llama decoder. Each *_forward has its *_backward
 * beside it in layers.c (backward: the training engine). Shapes are in the comments:
 * N = tokens (batch x time, flattened), C = hidden, F = intermediate, H/KV = query/key-value
 * heads, hd = head dim. All activations are fp32; weights are read in their file dtype. */
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

/* RoPE tables: cos/sin[npos, hd/2] for positions 0..npos-1 (angles in double precision). */
void rmu_rope_table(float *cos_t, float *sin_t, int npos, int hd, float theta);
/* RoPE in place in the Hugging Face rotate_half layout: for each head, pairs (i, i+hd/2)
 * rotate by pos * theta^(-2i/hd). x[N, nh*hd], pos[N] indexes the tables. */
void rmu_rope_forward(float *x, const int *pos, int N, int nh, int hd, const float *cos_t, const float *sin_t);

/* SwiGLU: h[n] = silu(gate[n]) * up[n] over n elements. h may alias gate. */
void rmu_swiglu_forward(float *h, const float *gate, const float *up, size_t n);

/* Causal grouped-query attention against a KV cache (inference).
 * q[N, H*hd] for positions pos0..pos0+N-1; kc/vc[ctx, KV*hd] hold keys/values for
 * positions 0..pos0+N-1; out[N, H*hd]. Keys older than the sliding window (window > 0:
 * key j visible from query i iff i - j < window) are skipped. scratch: [nthreads, ctx]. */
void rmu_attention_cached_forward(float *out, const float *q, const float *kc, const float *vc, int N, int pos0, int H,
                                  int KV, int hd, int window, float *scratch, int nthreads);


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

/* Training attention: B sequences of T tokens, causal, grouped-query, sliding window
 * (window > 0: key j visible from query i iff 0 <= i - j < window), padding mask.
 * q[B*T, H*hd], k/v[B*T, KV*hd] (RoPE already applied), mask[B*T] (1 real token, 0 pad;
 * NULL = all real): pad keys are never attended; a pad query row (nothing to attend) gets
 * out = 0 and lse = 0 rather than NaN. out[B*T, H*hd]; lse[B*T, H] = log-sum-exp of the
 * scaled scores, kept so the backward recomputes the probabilities instead of storing
 * [B,H,T,T]. scratch: [nthreads, T]. */
void rmu_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v, const int *mask,
                           int B, int T, int H, int KV, int hd, int window, float *scratch, int nthreads);
/* dq[B*T, H*hd], dk/dv[B*T, KV*hd] are overwritten. Work is split over (sequence, kv head)
 * so every dk/dv row has one writer and a fixed summation order. scratch: [nthreads, 2*T]. */
void rmu_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                            const float *v, const float *lse, const int *mask, int B, int T, int H, int KV, int hd,
                            int window, float *scratch, int nthreads);

/* Softmax cross-entropy over V classes: losses[n] = logsumexp(logits[n]) - logits[n][t[n]]
 * (0 where targets[n] < 0: ignored). */
void rmu_crossentropy_forward(float *losses, const float *logits, const int *targets, int N, int V);
/* dlogits[n] = scale * (softmax(logits[n]) - onehot(targets[n])); rows with targets < 0
 * get 0. dlogits may alias logits. */
void rmu_crossentropy_backward(float *dlogits, const float *logits, const int *targets, int N, int V, float scale);

#endif

/* attention.h - causal grouped-query attention of a Mistral/Llama decoder: the training
 * forward and backward (B sequences of T tokens) and the inference forward against a KV
 * cache (prefill chunks and decode). Prefix rmu_attention_.
 *
 * All three are fused, flash-attention style: blocks of query rows (the H/KV query heads
 * that share one KV head, over several positions) meet tiles of keys; the softmax is
 * computed online, so no [T, T] scores are stored, and each K/V tile is read once per
 * block for all heads of its group. The backward recomputes the probabilities per tile from
 * the forward's log-sum-exp. Work is split into tasks that never depend on the thread count,
 * and every sum runs in a fixed order: results are bit-identical for any nthreads.
 *
 * Shapes: H/KV = query/key-value heads (KV divides H), hd = head dim; rows of q/out are
 * [H*hd] (head h at h*hd), rows of k/v are [KV*hd]; query head h uses KV head h/(H/KV).
 * Visibility: key j is visible from the query at position i iff j <= i and, when
 * window > 0, i - j < window. */
#ifndef RMU_ATTENTION_H
#define RMU_ATTENTION_H

#include <stddef.h>

/* Floats of scratch that any of the functions below needs for these head shapes with
 * nthreads threads (independent of the sequence length). */
size_t rmu_attention_scratch_floats(int H, int KV, int hd, int nthreads);

/* Training forward: B sequences of T tokens, causal, grouped-query, sliding window,
 * padding mask. q[B*T, H*hd], k/v[B*T, KV*hd] (RoPE already applied), mask[B*T] (1 real
 * token, 0 pad; NULL = all real): pad keys are never attended; a pad query row (nothing to
 * attend) gets out = 0 and lse = 0 rather than NaN. out[B*T, H*hd]; lse[B*T, H] =
 * log-sum-exp of the scaled scores q.k/sqrt(hd), kept so the backward recomputes the
 * probabilities instead of storing [B,H,T,T]. */
void rmu_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v, const int *mask,
                           int B, int T, int H, int KV, int hd, int window, float *scratch, int nthreads);

/* Training backward: dout[B*T, H*hd] = dL/dout; out and lse are the forward's outputs.
 * dq[B*T, H*hd], dk/dv[B*T, KV*hd] are overwritten (pad rows get 0). Work is split over
 * (sequence, kv head), so every dk/dv row has one writer and sums its query blocks in
 * order. */
void rmu_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                            const float *v, const float *out, const float *lse, const int *mask, int B, int T, int H,
                            int KV, int hd, int window, float *scratch, int nthreads);

/* Inference forward against a KV cache: q[N, H*hd] for positions pos0..pos0+N-1;
 * kc/vc[KV, cap, hd] hold the keys/values of positions 0..pos0+N-1 (cap >= pos0+N), head
 * by head: the key of KV head h at position j is kc + (h*cap + j)*hd, so a tile of one
 * head's keys is one contiguous stretch of memory. out[N, H*hd]. N = 1 is decode, larger
 * N a prefill chunk. A row's output is bitwise the same for any N, pos0 split or thread
 * count: decode rows equal prefill rows. */
void rmu_attention_cached_forward(float *out, const float *q, const float *kc, const float *vc, int cap, int N,
                                  int pos0, int H, int KV, int hd, int window, float *scratch, int nthreads);

/* Which kernels run on this CPU: "avx2" or "portable" (RMU_SIMD=portable forces the
 * latter). */
const char *rmu_attention_path(void);

#endif

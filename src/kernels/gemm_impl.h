/* gemm_impl.h - internal interface between gemm.c (the one blocking driver: tiles, threads,
 * packing buffers, the GEMV path) and the per-ISA parts gemm_portable.c, gemm_avx2.c and
 * gemm_avx512.c, which provide only micro-kernels, packers and GEMV row kernels. Not
 * installed.
 *
 * Blocking (GotoBLAS/BLIS): C is cut into tiles (threads take tiles dynamically); per tile
 * and per kc-deep slice of K, B's kc x nt block is packed once (converted from its dtype,
 * zero padded to NR-wide micro-panels), then for each mc-row block of A, A is packed into
 * MR-row micro-panels and the micro-kernel runs over every (micro-panel of A, micro-panel of
 * B) pair. A B micro-panel (kc x NR) stays in L1, the A block (mc x kc) in L2.
 *
 * Packed layouts use "k slots" of kp consecutive k values: kp = 1 for fp32 panels, kp = 2
 * for bf16 pair panels (vdpbf16ps: one u32 = two bf16 of consecutive k). A slot of an A
 * micro-panel holds MR 4-byte elements, a slot of a B micro-panel NR; panels are
 * ceil(kc / kp) slots long, odd tails zero padded. */
#ifndef RMU_GEMM_IMPL_H
#define RMU_GEMM_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "kernels/gemm.h"

#define RMU_GEMM_NDT 4 /* rows of the type table: indexed by rmu_dtype (F32, F16, BF16; 0 unused) */

/* Per element type (ggml's type traits): how B is read. A NULL entry: type unsupported.
 * rnd != 0 rounds the fp32 values to bf16 (BF16 precision with non-BF16 storage). */
typedef struct rmu_gemm_type {
    size_t size; /* bytes per element */
    /* dst[0..n) = src[0..n) as fp32 */
    void (*to_f32)(float *dst, const void *src, long n);
    /* fp32 panel: B(k0..k0+kc, n0..n0+nr) -> Bp[kc][NR], columns nr..NR zero */
    void (*pack_b)(const rmu_gemm_b *B, int k0, int kc, int n0, int nr, int NR, int rnd, float *Bp);
    /* bf16 pair panel: -> Bp[ceil(kc/2)][NR] u32 = (B(k, n), B(k+1, n)) rounded to bf16 */
    void (*pack_b2)(const rmu_gemm_b *B, int k0, int kc, int n0, int nr, int NR, uint32_t *Bp);
    /* GEMV: y[m, n0..n1) (+)= x[m, 0..K) . W[n, 0..K) for m < M <= 4 (W stored [N, K]) */
    void (*rows)(int M, int n0, int n1, int K, const float *x, long ldx, const void *W, long ldw, int rnd, float *y,
                 long ldy, int acc);
} rmu_gemm_type;

/* One kernel path. */
typedef struct rmu_gemm_isa {
    const char *name;
    int mr, nr; /* register block */
    int kp;     /* k values per packed slot: 1 fp32, 2 bf16 pairs */
    int kc, mc; /* cache blocking (kc a multiple of kp, mc of mr) */
    int nc;     /* widest tile: kc x nc of packed B per thread */
    /* C[0..mr, 0..nr) (+)= Ap * Bp over ks k slots (acc 0: overwrite, 1: add) */
    void (*ukernel)(int ks, const void *Ap, const void *Bp, float *C, long ldc, int mr, int nr, int acc);
    /* A(0..mr, 0..kc) (mr <= MR) -> the MR-row micro-panel Ap (rows mr..MR zero); kp = 1:
     * fp32 (rnd: rounded to bf16), kp = 2: bf16 pairs (always rounded) */
    void (*pack_a)(int mr, int kc, const float *A, long rsa, long csa, int MR, int rnd, void *Ap);
    rmu_gemm_type type[RMU_GEMM_NDT];
} rmu_gemm_isa;

/* Fill the tables (ISA files; the AVX ones are compiled with their -m flags and only
 * called after the CPU check). */
void rmu_gemm_isa_portable(rmu_gemm_isa *isa);
void rmu_gemm_isa_avx2(rmu_gemm_isa *isa);
void rmu_gemm_isa_avx512(rmu_gemm_isa *isa, int bf16);

/* Portable building blocks the ISA files fall back on for rare cases (odd strides, tails). */
void rmu_gemm_pack_a_generic(int mr, int kc, const float *A, long rsa, long csa, int MR, int rnd, void *Ap);
void rmu_gemm_pack_a2_generic(int mr, int kc, const float *A, long rsa, long csa, int MR, int rnd, void *Ap);
void rmu_gemm_pack_b_generic(const rmu_gemm_b *B, int k0, int kc, int n0, int nr, int NR, int rnd, float *Bp);
void rmu_gemm_pack_b2_generic(const rmu_gemm_b *B, int k0, int kc, int n0, int nr, int NR, uint32_t *Bp);

/* fp32 -> nearest-even bf16 -> fp32 (quiet NaN kept), as rmu_f32_to_bf16. */
static inline float rmu_gemm_round_bf16(float f) { return rmu_bf16_to_f32(rmu_f32_to_bf16(f)); }

/* Element i of a B row of type dt as fp32. */
static inline float rmu_gemm_load_f32(const void *p, rmu_dtype dt, size_t i) {
    if (dt == RMU_DT_F32) return ((const float *)p)[i];
    if (dt == RMU_DT_BF16) return rmu_bf16_to_f32(((const uint16_t *)p)[i]);
    return rmu_f16_to_f32(((const uint16_t *)p)[i]);
}

#endif

/* gemm_impl.h - internal interface between gemm.c (the one blocking driver: tiles, threads,
 * packing buffers, the GEMV path) and the per-ISA parts gemm_portable.c, gemm_avx2.c and
 * gemm_avx512.c, which provide only micro-kernels, packers and GEMV row kernels. Not
 * installed.
 *
 * Blocking (GotoBLAS/BLIS): C is cut into tiles (threads take tiles dynamically); per tile
 * and per kc-deep slice of K, B's kc x nt block is packed once (converted from its dtype,
 * zero padded to NR-wide micro-panels), then for each mc-row block of A, A is packed into
 * MR-row micro-panels and the micro-kernel runs over every (micro-panel of A, micro-panel of
 * B) pair. A B micro-panel (kc x NR) stays in L1, the A block (mc x kc) in L2. When a tile's
 * rows fit one A block each B micro-panel is packed right before its use, or (ukernel_pbf16)
 * not packed at all: read from the BF16 panels as they are.
 *
 * Packed layouts use "k slots" of kp consecutive k values: kp = 1 for fp32 panels, kp = 2
 * for bf16 pair panels (vdpbf16ps: one u32 = two bf16 of consecutive k). A slot of an A
 * micro-panel holds MR 4-byte elements, a slot of a B micro-panel NR; panels are
 * ceil(kc / kp) slots long, odd tails zero padded.
 *
 * Order (what makes forward rows batch-invariant): every output C(i, j) of a path is, per
 * kc-deep slice of K taken from k = 0 (kc = min(isa->kc, K) whatever M and N), one
 * accumulator starting at 0 that takes the slice's k slots in increasing order (an fp32 FMA
 * per k on the SIMD paths, a dot of one k-pair per slot on vdpbf16ps, a product then a sum
 * in portable C), then C = s for the first slice (beta 0) or C = C + s. Tiles, threads and
 * register blocking only decide which outputs are computed together, never an output's
 * order; the GEMV rows kernels follow the same order through in-register transposes of the
 * weight rows. So rmu_gemm's row i of an M-row product is bitwise its 1-row product. */
#ifndef RMU_GEMM_IMPL_H
#define RMU_GEMM_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "kernels/gemm.h"

#define RMU_GEMM_NDT 5 /* rows of the type table: indexed by rmu_dtype (F32, F16, BF16, F8_E4M3; 0 unused) */

/* Per element type (ggml's type traits): how B is read. A NULL entry: type unsupported.
 * rnd != 0 rounds the fp32 values to bf16 (BF16 precision with non-BF16 storage); F8_E4M3
 * ignores it (its values are exact in bf16). to_f32 converts F8 codes without a scale.
 *
 * F8 scales: B stored [N,K] (forward, trans = 1): the packers and the rows kernels give the
 * codes' values x 2^-8 (what the SIMD decoders produce; exact), and each output's sum of a kc
 * slice is multiplied by its row's scale x 2^8 (RMU_GEMM_F8_UNIT) before it is added to C -
 * gemm.c's ukernel_f8 and the rows kernels alike, so F8 forward rows are row-invariant and a
 * GEMV multiplies once per output and slice, not per weight. B stored [K,N] (trans = 0, a
 * scale per k): the packers multiply each element by its scale. */
typedef struct rmu_gemm_type {
    size_t size; /* bytes per element */
    /* dst[0..n) = src[0..n) as fp32 */
    void (*to_f32)(float *dst, const void *src, long n);
    /* fp32 panel: B(k0..k0+kc, n0..n0+nr) -> Bp[kc][NR], columns nr..NR zero */
    void (*pack_b)(const rmu_gemm_b *B, int k0, int kc, int n0, int nr, int NR, int rnd, float *Bp);
    /* bf16 pair panel: -> Bp[ceil(kc/2)][NR] u32 = (B(k, n), B(k+1, n)) rounded to bf16 */
    void (*pack_b2)(const rmu_gemm_b *B, int k0, int kc, int n0, int nr, int NR, uint32_t *Bp);
    /* Few-row forward product (decode, small batches), W = B stored [N, K]: y[m, n0..n1) (+)=
     * x[m, :] . W[n, :] for m < M <= rows_max, reading each weight row once for all M rows.
     * Row-invariant: every output is computed exactly as the blocked path computes it (see
     * "Order" above), so a row's result is bitwise independent of M and of the other rows. x: M
     * rows of K fp32 (already rounded in BF16 precision), or on a kp = 2 path in BF16 precision
     * bf16 k-pairs (u32, ceil(K/2) per row, the odd tail's upper half 0; never for F8, whose
     * products run on the fp32 table). acc 0: y = x W^T, 1: y += x W^T. */
    void (*rows)(int M, int n0, int n1, int K, const void *x, long ldx, const rmu_gemm_b *B, int rnd, float *y,
                 long ldy, int acc);
} rmu_gemm_type;

#define RMU_GEMM_MAX_MR 12 /* the largest register block of any path (AVX-512: 12 x 32) */
#define RMU_GEMM_MAX_NR 32

/* One kernel path. */
typedef struct rmu_gemm_isa {
    const char *name;
    int mr, nr; /* register block */
    int kp;     /* k values per packed slot: 1 fp32, 2 bf16 pairs */
    int kc, mc; /* cache blocking (kc a multiple of kp, mc of mr) */
    int nc;     /* widest tile: kc x nc of packed B per thread */
    int rows_max; /* forward products with M <= rows_max take the rows kernels */
    unsigned panels; /* bit dt set: its dtype-dt rows kernel and B packer read rmu_gemm_b.panels */
    /* C[0..mr, 0..nr) (+)= Ap * Bp over ks k slots (acc 0: overwrite, 1: add) */
    void (*ukernel)(int ks, const void *Ap, const void *Bp, float *C, long ldc, int mr, int nr, int acc);
    /* Optional (kp = 1, NR = 16): as ukernel with nr = 16, but B read from a BF16 panel at
     * its first k (gemm.h) instead of a packed micro-panel; next: an address to prefetch a
     * later panel's slice from (0: none) */
    void (*ukernel_pbf16)(int ks, const void *Ap, const void *panel, uintptr_t next, float *C, long ldc, int mr,
                          int acc);
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

/* The 256 FP8 E4M3 codes as fp32 (0x7f and 0xff: NaN); read-only, defined in gemm_portable.c. */
extern const float rmu_gemm_f8_lut[256];

/* Element i of a B row of type dt as fp32 (F8: the code's value, without its scale). */
static inline float rmu_gemm_load_f32(const void *p, rmu_dtype dt, size_t i) {
    if (dt == RMU_DT_F32) return ((const float *)p)[i];
    if (dt == RMU_DT_BF16) return rmu_bf16_to_f32(((const uint16_t *)p)[i]);
    if (dt == RMU_DT_F8_E4M3) return rmu_gemm_f8_lut[((const uint8_t *)p)[i]];
    return rmu_f16_to_f32(((const uint16_t *)p)[i]);
}

/* Bytes per 16-row panel (gemm.h): F8 panels keep 4 k per 32-bit word, so their depth is ld
 * rounded up to 4 (the extra k zero). */
static inline size_t rmu_gemm_panel_bytes(rmu_dtype dt, long ld) {
    return dt == RMU_DT_F8_E4M3 ? (size_t)(ld + 3) / 4 * 64 : (size_t)ld * 32;
}

/* Scale of stored row r of an F8 B (per row, or the one per-tensor scale). */
static inline float rmu_gemm_f8_scale(const rmu_gemm_b *B, long r) { return B->scale[B->nscale == 1 ? 0 : r]; }

/* The SIMD paths decode FP8 from [N,K] storage through the FP16 converter: code c (sign s, 7
 * magnitude bits m) as the fp16 bit pattern s << 15 | m << 7 is exactly e4m3(c) * 2^-8,
 * subnormals included (the 4-bit exponent sits in fp16's 5-bit field, bias 15 instead of 7);
 * 0x7f gets fp16's NaN exponent. From panels (no NaN there) they build the fp32 pattern
 * s << 31 | m << 20 = e4m3(c) * 2^-120 with integer shifts and scale x or the weight by 2^112
 * (gemm_avx2.c, f8q_tiny). Either way the weight is e4m3(c) * 2^-8 and the 2^8 is folded into
 * the scale (RMU_GEMM_F8_UNIT), so no extra multiply per weight. */
#define RMU_GEMM_F8_UNIT 256.0f

#endif

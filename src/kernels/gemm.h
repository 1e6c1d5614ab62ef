/* gemm.h - the one matrix product every layer uses, forward and backward:
 *   C[M,N] = beta*C + A[M,K] * op(B)
 * A is fp32 with arbitrary row/column strides (so A^T needs no copy); B is F32, BF16, F16 or
 * F8_E4M3 with fp32 scales, stored either as [N,K] rows (trans = 1: a linear layer's weight,
 * y = x W^T) or as [K,N] (trans = 0). Threads: OpenMP. Kernels: AVX-512 (fp32 FMA, and vdpbf16ps where the CPU has
 * AVX512-BF16), AVX2+FMA or portable C, chosen once per process (see rmu_gemm_path).
 *
 * Precision (rmu_prec): FP32 = exact fp32 products and sums; BF16 = A and B rounded to bf16
 * (nearest even), products exact, sums in fp32 - what vdpbf16ps computes and what PyTorch
 * computes on a bf16 model. AUTO = BF16 iff B's dtype is BF16. The numbers depend on the
 * precision, not on the CPU: every path implements both, up to summation order.
 *
 * Row invariance: for the forward product (B stored [N,K]), row i of C is bitwise the same
 * whatever M, the other rows of A and the thread count (for a given path, dtype and
 * precision): each output's sum runs in a fixed order on every code path, and threads split
 * N, never K. So a batch of sequences gives each one what it gets alone (rmu serve).
 *
 * F8_E4M3 (FP8 weight-only quantization): element (r, c) of the stored matrix is
 * e4m3(code) * scale[r] (one scale per stored row: per output channel when trans = 1) or
 * e4m3(code) * scale[0] (one per tensor). The codes are converted inside the kernels, so a
 * few-row product reads one byte per weight. Stored [N,K] (the forward product), each
 * output's sum over a kc slice of K is multiplied by its row's scale before it is added to C,
 * on the blocked path and in the rows kernels alike, so F8 rows are row-invariant too;
 * stored [K,N] each element is scaled while B is packed. AUTO precision is FP32 for F8; in
 * BF16 precision A is rounded to bf16 and the FP8 values (exact in bf16) and the fp32 scale
 * are used as they are, so F8 products always run on the fp32 micro-kernels (never the
 * bf16-pair one, which would round code x scale).
 * Prefix rmu_gemm_. */
#ifndef RMU_GEMM_H
#define RMU_GEMM_H

#include <stddef.h>

#include "core/dtype.h"
#include "core/err.h"

typedef enum rmu_prec {
    RMU_PREC_AUTO = 0, /* bf16 arithmetic iff the weight is BF16 */
    RMU_PREC_BF16,
    RMU_PREC_FP32,
} rmu_prec;

/* "auto", "bf16", "fp32" -> *out; -1 (e filled) when unknown. */
int rmu_prec_parse(const char *s, rmu_prec *out, rmu_err *e);
const char *rmu_prec_name(rmu_prec p);

typedef struct rmu_gemm_b {
    const void *data;
    rmu_dtype dtype;
    int trans;     /* 1: B stored [N,K] (ld = row stride); 0: stored [K,N] */
    long ld;       /* row stride in elements */
    rmu_prec prec; /* of the product (0 = AUTO) */
    /* F8_E4M3 only: fp32 scale of each stored row (nscale = N when trans, K otherwise) or of
     * the whole matrix (nscale = 1); ignored for other dtypes */
    const float *scale;
    long nscale;
    /* F8_E4M3 or BF16 stored [N,K] only, optional: the same weights as rmu_gemm_panels lays
     * them out. The paths with panel kernels then read these instead of data (the others
     * read data); the results are bitwise the same either way. */
    const void *panels;
} rmu_gemm_b;

/* beta must be 0 (overwrite) or 1 (accumulate). Returns 0, or -1 with e filled (bad
 * arguments, out of memory for the packing buffers: C is then unspecified). */
int rmu_gemm(int M, int N, int K, const float *A, long rsa, long csa, const rmu_gemm_b *B, float *C, long ldc,
             float beta, rmu_err *e);

/* Kernel paths. BEST is what rmu_gemm uses: the fastest this CPU runs, unless the
 * environment variable RMU_SIMD=portable|avx2|avx512 asked for a lower one (read once). */
typedef enum rmu_gemm_path_id {
    RMU_GEMM_BEST = 0,
    RMU_GEMM_PORTABLE,
    RMU_GEMM_AVX2,       /* AVX2 + FMA + F16C, 6x16 fp32 micro-kernel */
    RMU_GEMM_AVX512,     /* AVX-512F/BW/VL, 12x32 fp32 micro-kernel */
    RMU_GEMM_AVX512BF16, /* as AVX512, with BF16 precision on vdpbf16ps (12x32, k pairs) */
    RMU_GEMM_NPATHS
} rmu_gemm_path_id;

/* Whether this process can run path p (CPU features; an emulated build runs them all). */
int rmu_gemm_path_available(rmu_gemm_path_id p);
/* Name of path p ("portable", "avx2", "avx512", "avx512bf16"); BEST resolves first. */
const char *rmu_gemm_path_name(rmu_gemm_path_id p);
/* Name of the path rmu_gemm uses. */
const char *rmu_gemm_path(void);

/* rmu_gemm on an explicit path (tests and benchmarks compare them); nthreads 0 = OpenMP's
 * default. Errors when the path is not available. */
int rmu_gemm_ex(rmu_gemm_path_id path, int nthreads, int M, int N, int K, const float *A, long rsa, long csa,
                const rmu_gemm_b *B, float *C, long ldc, float beta, rmu_err *e);

/* Several products sharing one input, in one threaded pass when M is small (decode's
 * Q/K/V and gate/up): for each job j, C_j[M, N_j] = beta_j*C_j + A B_j^T, where B_j must be
 * stored [N_j, K] (trans = 1). With few rows (M <= 8) each weight row is read once for all
 * rows of A; larger M runs the jobs one after another through rmu_gemm. Bitwise the same as
 * one rmu_gemm per job. */
typedef struct rmu_gemm_job {
    rmu_gemm_b B;
    int N;
    float *C;
    long ldc;
    float beta;
} rmu_gemm_job;
int rmu_gemm_multi(int M, int K, const float *A, long lda, const rmu_gemm_job *jobs, int njobs, rmu_err *e);

/* Panels: an F8_E4M3 or BF16 weight [N,K] (row stride ld) laid out so that rows 16p .. 16p+15
 * at k are side by side. BF16: element k of the 16 rows is 16 consecutive elements,
 * out[(p * ld + k) * 16 + r] = W[16p + r][k]. F8: 4 k per 32-bit word, one 64-byte line per
 * 4 k of the 16 rows, out[p * L * 16 + k / 4 * 64 + r * 4 + k % 4] = W[16p + r][k] with L = ld
 * rounded up to 4 (the AVX2 kernels decode a 32-byte load, 4 k of 8 rows, with 16-bit shifts:
 * fewer shuffle-port operations than a byte per k). Rows past N and columns past K are zero
 * (rmu_gemm_panels_bytes(dt, N, ld) bytes). On [N,K] storage the kernels must transpose
 * weight rows in registers, to keep each output's fixed summation order in the rows kernels
 * and to pack B for the blocked path; from panels one load gives the 16 rows' element k (F8:
 * 4 k). That makes FP8 decode ~1.8x faster per core (its transposes cost more than the memory
 * read) and BF16 products of 9-64 rows (batched serving) cheaper to pack.
 * F8 panels hold no NaN codes (0x7f, 0xff): their kernels decode without the NaN fix-up, so a
 * weight with NaN codes (a corrupt checkpoint; quantizers saturate at +-448) has no panel
 * form. Made once at load (rmu_model_load). Returns the number of NaN codes in an F8 w (0 for
 * BF16); when it is not 0, out is unspecified. OpenMP threads. */
size_t rmu_gemm_panels_bytes(rmu_dtype dt, long N, long ld);
long rmu_gemm_panels(rmu_dtype dt, const void *w, long N, long K, long ld, void *out);
/* Whether rmu_gemm's path (BEST) reads panels of dtype dt in its default precision: when
 * not, making them is wasted memory. No when the environment has RMU_PANELS=0. */
int rmu_gemm_panels_used(rmu_dtype dt);

/* dot product of n fp32 values (vectorised portable loop). */
float rmu_dot(const float *a, const float *b, int n);

#endif

/* attention_impl.h - internal interface between attention.c (tiling, masks, threads) and
 * the per-ISA tile kernels (portable C in attention.c, AVX2+FMA in attention_avx2.c). Not
 * installed.
 *
 * Score tiles are kept transposed, st[j][i] (key j, query row i, row stride ld, ld a
 * multiple of 8): a softmax over the keys of query row i is then a column operation, and
 * the kernels vectorise it across 8 query rows at once. Scores are in log2 units (the
 * queries are pre-multiplied by log2(e)/sqrt(hd)), so probabilities are exp2(s - m). */
#ifndef RMU_ATTENTION_IMPL_H
#define RMU_ATTENTION_IMPL_H

typedef struct rmu_att_kernels {
    /* C[M,N] (ldc) = (acc ? C : 0) + sum_k A[m*rsa + k*csa] * B[k*ldb + n]. The sum over k
     * runs in increasing k for every element: results never depend on the tiling above. */
    void (*gemm)(int M, int N, int K, const float *A, long rsa, long csa, const float *B, long ldb, float *C, long ldc,
                 int acc);
    /* Online-softmax step over a tile st[nj][ni] (ni a multiple of 8): per column i,
     * mn = max(m[i], max_j st[j][i]); mu = mn, or 0 when mn = -inf (a row with nothing
     * visible yet: keeps exp2(-inf - mu) = 0, never NaN); st[j][i] = exp2(st[j][i] - mu);
     * corr[i] = exp2(m[i] - mu); l[i] = l[i] * corr[i] + sum_j st[j][i] (j in order);
     * m[i] = mn. */
    void (*softmax)(int nj, int ni, float *st, long ld, float *m, float *l, float *corr);
    /* Backward tile: p = exp2(st[j][i] - lse2[i]) into st, ds = p * (dpt[j][i] - D[i])
     * into dpt. */
    void (*dsoftmax)(int nj, int ni, float *st, float *dpt, long ld, const float *lse2, const float *D);
    /* y[k] = a * x[k] for k < n (y may be x). */
    void (*scale)(float *y, const float *x, int n, float a);
    /* sum_k x[k] * y[k], k < n. */
    float (*dot)(const float *x, const float *y, int n);
    /* Transposes m rows of n floats, scaled by a, into dst[k][i] (row stride ld) for
     * i < round8(m): row i starts at src + (i / rg) * gs + (i % rg) * rs (the query heads
     * of one KV head, position by position); columns m.. up to round8(m) get 0. */
    void (*transpose)(int m, int n, const float *src, int rg, long gs, long rs, float a, float *dst, long ld);
    const char *name;
} rmu_att_kernels;

#ifndef RMU_NO_SIMD
extern const rmu_att_kernels rmu_att_kernels_avx2;
#endif

#endif

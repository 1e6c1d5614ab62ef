/* gemm_simd.h - the parts of gemm_avx2.c and gemm_avx512.c that are the same at any vector
 * width, written once. Not a public header: each SIMD file includes it after defining
 *   AI           its always-inline function qualifier
 *   NR           the B panel width (two vectors)
 *   VL           lanes per vector; vf the fp32 vector type
 *   vf_load(dt, p)        VL elements of dtype dt at p as fp32 (F8: times 2^-8)
 *   vf_load_panel(dt, p)  VL elements of a BF16 panel (gemm.h) as fp32
 *   vf_f8q_unit(p, w)     4 k of VL rows of an F8 panel (VL 4-code words at p) as fp32 x 2^-8
 *   vf_round(v)           fp32 lanes rounded to bf16 values
 *   vf_store(p, v), vf_storeu(p, v), vf_mul(a, b), vf_set1(x)
 * and, for the rows entry points, rows_dt() and ROWS_AT(MM) (its call with MM rows). */
#ifndef RMU_GEMM_SIMD_H
#define RMU_GEMM_SIMD_H

/* Bytes per element of the dtypes the SIMD files read. */
#define ESIZE(dt) ((dt) == RMU_DT_F32 ? 4 : (dt) == RMU_DT_F8_E4M3 ? 1 : 2)

/* B stored [K,N] (activations: dX = dY W), a full NR-wide panel: each stored row converted as
 * it is (rounded to bf16 when rnd; F8: times that row's scale x 2^8). Returns kc. */
AI int pack_b_kn(const rmu_dtype dt, const rmu_gemm_b *B, int k0, int kc, int n0, int rnd, float *Bp) {
    const size_t es = ESIZE(dt);
    for (int k = 0; k < kc; k++) {
        const char *row = (const char *)B->data + ((size_t)(k0 + k) * B->ld + n0) * es;
        vf v0 = vf_load(dt, row), v1 = vf_load(dt, row + VL * es);
        if (rnd) v0 = vf_round(v0), v1 = vf_round(v1);
        if (dt == RMU_DT_F8_E4M3) {
            vf sv = vf_set1(rmu_gemm_f8_scale(B, k0 + k) * RMU_GEMM_F8_UNIT);
            v0 = vf_mul(v0, sv), v1 = vf_mul(v1, sv);
        }
        vf_store(Bp + (size_t)k * NR, v0);
        vf_store(Bp + (size_t)k * NR + VL, v1);
    }
    return kc;
}

/* The rows kernels' k loop over a slice [k0, k0 + kc) of VL rows of an F8 panel (gemm.h; p: the
 * rows' first word, k0 % 4 == 0): 4 k per vf_f8q_unit, the slice's K % 4 last k from its last group (the
 * panel's zero padding is never used: x has no elements there). BODY runs once per k, in
 * order, with w (the VL rows' element kk as fp32 x 2^-8). */
#define F8Q_FOR_K(p, k0, kc, BODY)                                                                                 \
    for (int k_ = (k0); k_ < (k0) + (kc); k_ += 4) {                                                               \
        vf v_[4];                                                                                                  \
        vf_f8q_unit((p) + (size_t)k_ * 16, v_);                                                                    \
        const int nk_ = (k0) + (kc) - k_ < 4 ? (k0) + (kc) - k_ : 4;                                               \
        _Pragma("GCC unroll 4") for (int j_ = 0; j_ < nk_; j_++) {                                                 \
            const vf w = v_[j_];                                                                                   \
            const int kk = k_ + j_;                                                                                \
            BODY                                                                                                   \
        }                                                                                                          \
    }

/* F8 or BF16 stored [N,K] with panels (gemm.h), a full NR-wide panel starting on a panel row:
 * each k slot of Bp is the converted 16 elements of k of NR / 16 panels, no transpose (F8: 4 k
 * per decode; slices start on a multiple of 4, the blocked path's kc being one). Returns 1
 * when it packed, 0 when this B or block has no panel form (pack_b_dt then reads data). */
AI int pack_b_panels(const rmu_dtype dt, const rmu_gemm_b *B, int k0, int kc, int n0, int nr, float *Bp) {
    if ((dt != RMU_DT_F8_E4M3 && dt != RMU_DT_BF16) || !B->panels || !B->trans || nr != NR || n0 % 16) return 0;
    if (dt == RMU_DT_F8_E4M3 && k0 % 4) return 0;
    const size_t pb = rmu_gemm_panel_bytes(dt, B->ld);
    for (int jb = 0; jb < NR; jb += 16) {
        /* the slice: 16 (F8: 64 / 4) bytes per k either way */
        const char *p = (const char *)B->panels + (size_t)(n0 + jb) / 16 * pb + (size_t)k0 * 16 * ESIZE(dt);
        /* The next panel's slice, packed next (gemm.c's column loop), is pulled into L2
         * meanwhile: otherwise each pack starts a cold DRAM stream and waits on it (16 rows of
         * the 4-layer model: +14% tok/s). An integer address: past the last panel it is outside
         * the weights, fine for a prefetch (it never faults), not for pointer arithmetic. */
        const uintptr_t next = (uintptr_t)p + pb;
        const size_t kb = 16 * ESIZE(dt); /* bytes per k */
        if (dt == RMU_DT_F8_E4M3) { /* k outer: both of AVX2's 8-row halves from one line */
            for (int k = 0; k < kc; k += 4) {
                _mm_prefetch((const char *)(next + (size_t)k * kb), _MM_HINT_T1);
                for (int v = 0; v < 16; v += VL) {
                    vf w[4];
                    vf_f8q_unit(p + (size_t)k * kb + v * 4, w);
                    const int nk = kc - k < 4 ? kc - k : 4;
#pragma GCC unroll 4
                    for (int j = 0; j < nk; j++) vf_store(Bp + (size_t)(k + j) * NR + jb + v, w[j]);
                }
            }
            continue;
        }
        for (int k = 0; k < kc; k++) {
            if ((k * kb) % 64 == 0) _mm_prefetch((const char *)(next + (size_t)k * kb), _MM_HINT_T1);
            for (int v = 0; v < 16; v += VL) vf_store(Bp + (size_t)k * NR + jb + v, vf_load_panel(dt, p + k * kb + v * 2));
        }
    }
    return 1;
}

/* The per-dtype entry points of the table's rows: the B packer (no bf16 rounding for BF16 and
 * F8, whose values are exact in bf16; an F8 scale stays fp32) and the row conversion (F8 through
 * the scalar table, which keeps its NaN codes). */
#define SIMD_TYPE_FNS(NAME, DT)                                                                                   \
    static void pack_b_##NAME(const rmu_gemm_b *B, int k0, int kc, int n0, int nr, int NRx, int rnd, float *Bp) { \
        (void)NRx;                                                                                                \
        pack_b_dt(DT, B, k0, kc, n0, nr, DT == RMU_DT_BF16 || DT == RMU_DT_F8_E4M3 ? 0 : rnd, Bp);                \
    }                                                                                                             \
    static void to_f32_##NAME(float *dst, const void *src, long n) {                                              \
        long i = 0;                                                                                               \
        if (DT != RMU_DT_F8_E4M3)                                                                                 \
            for (; i + VL <= n; i += VL) vf_storeu(dst + i, vf_load(DT, (const char *)src + i * ESIZE(DT)));      \
        if (i < n) rmu_to_f32(dst + i, (const char *)src + i * ESIZE(DT), DT, (size_t)(n - i));                   \
    }

/* The rows kernels are compiled per row count: ROWS_AT(MM) for MM = M (1..8; the driver never
 * passes more), with dt_ and rnd_ the compile-time dtype and rounding of the entry point. */
#define SIMD_SWITCH_M(M)                                                                                           \
    switch (M) {                                                                                                   \
    case 1: ROWS_AT(1); break;                                                                                     \
    case 2: ROWS_AT(2); break;                                                                                     \
    case 3: ROWS_AT(3); break;                                                                                     \
    case 4: ROWS_AT(4); break;                                                                                     \
    case 5: ROWS_AT(5); break;                                                                                     \
    case 6: ROWS_AT(6); break;                                                                                     \
    case 7: ROWS_AT(7); break;                                                                                     \
    default: ROWS_AT(8); break;                                                                                    \
    }

/* An fp32-lane rows entry point: F32/F16 weights are rounded to bf16 when rnd (BF16 and F8
 * values already are bf16 values). */
#define SIMD_ROWS_FN(NAME, DT)                                                                                     \
    static void NAME(int M, int n0, int n1, int K, const void *x, long ldx, const rmu_gemm_b *B, int rnd,       \
                     float *y, long ldy, int acc) {                                                              \
        const rmu_dtype dt_ = DT;                                                                                 \
        if (rnd && DT != RMU_DT_BF16 && DT != RMU_DT_F8_E4M3) {                                                   \
            const int rnd_ = 1;                                                                                   \
            SIMD_SWITCH_M(M)                                                                                      \
        } else {                                                                                                  \
            const int rnd_ = 0;                                                                                   \
            SIMD_SWITCH_M(M)                                                                                      \
        }                                                                                                         \
    }

#endif

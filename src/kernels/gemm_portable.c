/* gemm_portable.c - the portable C path of gemm.c (any CPU), and the generic packers the
 * SIMD paths fall back on for odd strides and tails. Plain loops the compiler may
 * vectorise; same blocking and packed layouts as the SIMD paths. */
#include <math.h>
#include <string.h>

#include "gemm_impl.h"

#define PMR 6
#define PNR 16
#define PKC 256 /* slice depth (the rows kernel follows it) */

/* E4M3 code b as fp32, a constant expression: (8 + m) 2^e / 1024 for exponent field e > 0
 * ((1 + m/8) 2^(e-7)), m / 512 for subnormals (m/8 2^-6); 0x7f / 0xff are NaN. */
#define F8_MAG(b)                                                                        \
    ((((b) >> 3) & 15) ? (float)(8 + ((b) & 7)) * (float)(1u << (((b) >> 3) & 15)) / 1024.0f \
                       : (float)((b) & 7) / 512.0f)
#define F8_VAL(b) (((b) & 0x7f) == 0x7f ? NAN : ((b) & 0x80) ? -F8_MAG(b) : F8_MAG(b))
#define F8_4(b) F8_VAL(b), F8_VAL((b) + 1), F8_VAL((b) + 2), F8_VAL((b) + 3)
#define F8_16(b) F8_4(b), F8_4((b) + 4), F8_4((b) + 8), F8_4((b) + 12)
#define F8_64(b) F8_16(b), F8_16((b) + 16), F8_16((b) + 32), F8_16((b) + 48)
const float rmu_gemm_f8_lut[256] = {F8_64(0), F8_64(64), F8_64(128), F8_64(192)};

static void ukernel_portable(int ks, const void *Ap_, const void *Bp_, float *C, long ldc, int mr, int nr, int acc) {
    const float *Ap = Ap_, *Bp = Bp_;
    float c[PMR][PNR];
    memset(c, 0, sizeof c);
    for (int k = 0; k < ks; k++) {
        const float *a = Ap + (size_t)k * PMR, *b = Bp + (size_t)k * PNR;
        for (int i = 0; i < PMR; i++)
            for (int j = 0; j < PNR; j++) c[i][j] += a[i] * b[j];
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) C[i * ldc + j] = acc ? C[i * ldc + j] + c[i][j] : c[i][j];
}

void rmu_gemm_pack_a_generic(int mr, int kc, const float *A, long rsa, long csa, int MR, int rnd, void *Ap_) {
    float *Ap = Ap_;
    for (int k = 0; k < kc; k++) {
        float *d = Ap + (size_t)k * MR;
        for (int i = 0; i < mr; i++) {
            float v = A[i * rsa + k * csa];
            d[i] = rnd ? rmu_gemm_round_bf16(v) : v;
        }
        for (int i = mr; i < MR; i++) d[i] = 0;
    }
}

void rmu_gemm_pack_a2_generic(int mr, int kc, const float *A, long rsa, long csa, int MR, int rnd, void *Ap_) {
    (void)rnd; /* pairs are bf16: always rounded */
    uint32_t *Ap = Ap_;
    int ks = (kc + 1) / 2;
    for (int p = 0; p < ks; p++) {
        uint32_t *d = Ap + (size_t)p * MR;
        int k = 2 * p;
        for (int i = 0; i < mr; i++) {
            uint32_t lo = rmu_f32_to_bf16(A[i * rsa + k * csa]);
            uint32_t hi = k + 1 < kc ? rmu_f32_to_bf16(A[i * rsa + (k + 1) * csa]) : 0;
            d[i] = lo | hi << 16;
        }
        for (int i = mr; i < MR; i++) d[i] = 0;
    }
}

/* B(k, n) as fp32; F8 (gemm_impl.h): stored [N,K] the value x 2^-8 (its scale comes after
 * the sums), stored [K,N] the value times its k's scale. */
static inline float load_b(const rmu_gemm_b *B, long k, long n) {
    size_t i = B->trans ? (size_t)n * B->ld + k : (size_t)k * B->ld + n;
    float v = rmu_gemm_load_f32(B->data, B->dtype, i);
    if (B->dtype != RMU_DT_F8_E4M3) return v;
    return B->trans ? v * (1.0f / RMU_GEMM_F8_UNIT) : v * rmu_gemm_f8_scale(B, k);
}

void rmu_gemm_pack_b_generic(const rmu_gemm_b *B, int k0, int kc, int n0, int nr, int NR, int rnd, float *Bp) {
    if (B->dtype == RMU_DT_F8_E4M3) rnd = 0; /* the FP8 value (and its scale) are used as they are */
    for (int k = 0; k < kc; k++) {
        float *d = Bp + (size_t)k * NR;
        for (int j = 0; j < nr; j++) {
            float v = load_b(B, k0 + k, n0 + j);
            d[j] = rnd ? rmu_gemm_round_bf16(v) : v;
        }
        for (int j = nr; j < NR; j++) d[j] = 0;
    }
}

void rmu_gemm_pack_b2_generic(const rmu_gemm_b *B, int k0, int kc, int n0, int nr, int NR, uint32_t *Bp) {
    int ks = (kc + 1) / 2;
    for (int p = 0; p < ks; p++) {
        uint32_t *d = Bp + (size_t)p * NR;
        int k = k0 + 2 * p;
        for (int j = 0; j < nr; j++) {
            uint32_t lo = rmu_f32_to_bf16(load_b(B, k, n0 + j));
            uint32_t hi = 2 * p + 1 < kc ? rmu_f32_to_bf16(load_b(B, k + 1, n0 + j)) : 0;
            d[j] = lo | hi << 16;
        }
        for (int j = nr; j < NR; j++) d[j] = 0;
    }
}

/* Rows (see gemm_impl.h, "Order"): per output and kc slice, a product then a sum per k in
 * order, as ukernel_portable; a slice of the weight row is converted once for all rows of x
 * (F8: values x 2^-8 as load_b packs them, each slice's sum times the scale x 2^8, as
 * gemm.c's ukernel_f8). */
static void rows_generic(rmu_dtype dt, int M, int n0, int n1, int K, const float *x, long ldx, const rmu_gemm_b *B,
                         int rnd, float *y, long ldy, int acc) {
    float w[PKC];
    size_t es = rmu_dtype_size(dt);
    int f8 = dt == RMU_DT_F8_E4M3;
    for (int n = n0; n < n1; n++)
        for (int k0 = 0; k0 < K; k0 += PKC) {
            int kc = K - k0 < PKC ? K - k0 : PKC;
            const char *src = (const char *)B->data + ((size_t)n * B->ld + k0) * es;
            if (f8) {
                for (int k = 0; k < kc; k++)
                    w[k] = rmu_gemm_f8_lut[((const uint8_t *)src)[k]] * (1.0f / RMU_GEMM_F8_UNIT);
            } else {
                rmu_to_f32(w, src, dt, kc);
                if (rnd)
                    for (int k = 0; k < kc; k++) w[k] = rmu_gemm_round_bf16(w[k]);
            }
            for (int m = 0; m < M; m++) {
                const float *xm = x + m * ldx + k0;
                float s = 0, *ym = y + m * ldy + n;
                for (int k = 0; k < kc; k++) s += xm[k] * w[k];
                if (f8) s *= rmu_gemm_f8_scale(B, n) * RMU_GEMM_F8_UNIT;
                *ym = acc || k0 ? *ym + s : s;
            }
        }
}

#define TYPE_FNS(NAME, DT)                                                                                       \
    static void to_f32_##NAME(float *dst, const void *src, long n) { rmu_to_f32(dst, src, DT, (size_t)n); }     \
    static void rows_##NAME(int M, int n0, int n1, int K, const void *x, long ldx, const rmu_gemm_b *B,         \
                            int rnd, float *y, long ldy, int acc) {                                             \
        rows_generic(DT, M, n0, n1, K, x, ldx, B, rnd, y, ldy, acc);                                            \
    }
TYPE_FNS(f32, RMU_DT_F32)
TYPE_FNS(f16, RMU_DT_F16)
TYPE_FNS(bf16, RMU_DT_BF16)
TYPE_FNS(f8, RMU_DT_F8_E4M3)

void rmu_gemm_isa_portable(rmu_gemm_isa *isa) {
    memset(isa, 0, sizeof *isa);
    isa->name = "portable";
    isa->mr = PMR;
    isa->nr = PNR;
    isa->kp = 1;
    isa->kc = PKC;
    isa->mc = 96;
    isa->nc = 1024;
    isa->rows_max = 8;
    isa->ukernel = ukernel_portable;
    isa->pack_a = rmu_gemm_pack_a_generic;
    isa->type[RMU_DT_F32] = (rmu_gemm_type){4, to_f32_f32, rmu_gemm_pack_b_generic, rmu_gemm_pack_b2_generic, rows_f32};
    isa->type[RMU_DT_F16] = (rmu_gemm_type){2, to_f32_f16, rmu_gemm_pack_b_generic, rmu_gemm_pack_b2_generic, rows_f16};
    isa->type[RMU_DT_BF16] =
        (rmu_gemm_type){2, to_f32_bf16, rmu_gemm_pack_b_generic, rmu_gemm_pack_b2_generic, rows_bf16};
    isa->type[RMU_DT_F8_E4M3] =
        (rmu_gemm_type){1, to_f32_f8, rmu_gemm_pack_b_generic, rmu_gemm_pack_b2_generic, rows_f8};
}

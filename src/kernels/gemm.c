/* gemm.c - dispatch and the one blocking driver for every kernel path (see gemm_impl.h
 * for the blocking scheme and the per-ISA tables). */
#include "gemm.h"

#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "gemm_impl.h"

/* ---- dispatch: the kernel tables and the CPU check, filled once per process
 * (pthread_once) and read-only afterwards - the library's only static state. RMU_SIMD, if
 * set, caps the best path, and RMU_PANELS=0 turns weight panels off (read once, here). */

typedef struct {
    rmu_gemm_isa isa[RMU_GEMM_NPATHS]; /* AVX512BF16's entry is its bf16 table */
    int avail[RMU_GEMM_NPATHS];
    rmu_gemm_path_id best;
    int no_panels; /* RMU_PANELS=0: rmu_gemm_panels_used says no (benchmarks side by side) */
} gemm_dispatch;

static gemm_dispatch g_disp;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static const char *const PATH_NAMES[RMU_GEMM_NPATHS] = {"best", "portable", "avx2", "avx512", "avx512bf16"};

static void dispatch_init(void) {
    gemm_dispatch *d = &g_disp;
    rmu_gemm_isa_portable(&d->isa[RMU_GEMM_PORTABLE]);
    d->avail[RMU_GEMM_PORTABLE] = 1;
#if defined(RMU_GEMM_EMULATED)
    /* test build: the AVX-512 file is compiled against SIMDe, so every path runs here */
    d->avail[RMU_GEMM_AVX2] = d->avail[RMU_GEMM_AVX512] = d->avail[RMU_GEMM_AVX512BF16] = 1;
#elif defined(__x86_64__) && !defined(RMU_NO_SIMD)
    __builtin_cpu_init();
    d->avail[RMU_GEMM_AVX2] =
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    d->avail[RMU_GEMM_AVX512] = d->avail[RMU_GEMM_AVX2] && __builtin_cpu_supports("avx512f") &&
                                __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                                __builtin_cpu_supports("avx512dq");
    d->avail[RMU_GEMM_AVX512BF16] = d->avail[RMU_GEMM_AVX512] && __builtin_cpu_supports("avx512bf16");
#endif
#if !defined(RMU_NO_SIMD)
    if (d->avail[RMU_GEMM_AVX2]) rmu_gemm_isa_avx2(&d->isa[RMU_GEMM_AVX2]);
    if (d->avail[RMU_GEMM_AVX512]) rmu_gemm_isa_avx512(&d->isa[RMU_GEMM_AVX512], 0);
    if (d->avail[RMU_GEMM_AVX512BF16]) rmu_gemm_isa_avx512(&d->isa[RMU_GEMM_AVX512BF16], 1);
#endif
    rmu_gemm_path_id cap = RMU_GEMM_AVX512BF16;
    const char *force = getenv("RMU_SIMD");
    if (force && !strcmp(force, "portable")) cap = RMU_GEMM_PORTABLE;
    else if (force && !strcmp(force, "avx2")) cap = RMU_GEMM_AVX2;
    else if (force && !strcmp(force, "avx512")) cap = RMU_GEMM_AVX512;
    const char *pn = getenv("RMU_PANELS");
    d->no_panels = pn && !strcmp(pn, "0");
    d->best = RMU_GEMM_PORTABLE;
    for (int p = RMU_GEMM_PORTABLE; p <= (int)cap; p++)
        if (d->avail[p]) d->best = (rmu_gemm_path_id)p;
}

static const gemm_dispatch *dispatch(void) {
    pthread_once(&g_once, dispatch_init);
    return &g_disp;
}

int rmu_gemm_path_available(rmu_gemm_path_id p) {
    if (p == RMU_GEMM_BEST) return 1;
    return p > 0 && p < RMU_GEMM_NPATHS && dispatch()->avail[p];
}

const char *rmu_gemm_path_name(rmu_gemm_path_id p) {
    if (p == RMU_GEMM_BEST) p = dispatch()->best;
    return p > 0 && p < RMU_GEMM_NPATHS ? PATH_NAMES[p] : "?";
}

const char *rmu_gemm_path(void) { return rmu_gemm_path_name(RMU_GEMM_BEST); }

int rmu_prec_parse(const char *s, rmu_prec *out, rmu_err *e) {
    if (!strcmp(s, "auto")) *out = RMU_PREC_AUTO;
    else if (!strcmp(s, "bf16")) *out = RMU_PREC_BF16;
    else if (!strcmp(s, "fp32")) *out = RMU_PREC_FP32;
    else return rmu_errf(e, "unknown precision '%s' (expected auto, bf16 or fp32)", s);
    return 0;
}

const char *rmu_prec_name(rmu_prec p) { return p == RMU_PREC_BF16 ? "bf16" : p == RMU_PREC_FP32 ? "fp32" : "auto"; }

size_t rmu_gemm_panels_bytes(rmu_dtype dt, long N, long ld) {
    return (size_t)((N + 15) / 16) * rmu_gemm_panel_bytes(dt, ld);
}

long rmu_gemm_panels(rmu_dtype dt, const void *w, long N, long K, long ld, void *out) {
    long np = (N + 15) / 16, nan = 0;
    const int f8 = dt == RMU_DT_F8_E4M3;
    const size_t pb = rmu_gemm_panel_bytes(dt, ld);
    /* 64 columns of 16 rows at a time: 16 cache lines in, 16 (32) out */
#pragma omp parallel for schedule(static) reduction(+ : nan)
    for (long p = 0; p < np; p++) {
        unsigned char *o8 = (unsigned char *)out + (size_t)p * pb;
        uint16_t *o16 = (uint16_t *)o8;
        if (f8) memset(o8 + (size_t)K / 4 * 64, 0, pb - (size_t)K / 4 * 64); /* from the group holding K */
        else memset(o16 + (size_t)K * 16, 0, (size_t)(ld - K) * 16 * 2);
        for (long k0 = 0; k0 < K; k0 += 64) {
            long kn = K - k0 < 64 ? K - k0 : 64;
            for (int r = 0; r < 16; r++) {
                long n = p * 16 + r;
                if (f8) { /* k's code in byte k % 4 of row r's word of group k / 4 */
                    const unsigned char *src = (const unsigned char *)w + (size_t)n * ld + k0;
                    for (long k = 0; k < kn; k++) {
                        unsigned char c = n < N ? src[k] : 0;
                        nan += (c & 0x7f) == 0x7f;
                        o8[(size_t)(k0 + k) / 4 * 64 + r * 4 + (k0 + k) % 4] = c;
                    }
                } else {
                    const uint16_t *src = (const uint16_t *)w + (size_t)n * ld + k0;
                    for (long k = 0; k < kn; k++) o16[(size_t)(k0 + k) * 16 + r] = n < N ? src[k] : 0;
                }
            }
        }
    }
    return nan;
}

float rmu_dot(const float *a, const float *b, int n) {
    /* 8 partial sums: vectorisable without -ffast-math, and less rounding drift. */
    float s[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += a[i + j] * b[i + j];
    for (; i < n; i++) s[0] += a[i] * b[i];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

/* ---- the driver */

static int is_bf16(const rmu_gemm_b *B) {
    return B->prec == RMU_PREC_BF16 || (B->prec == RMU_PREC_AUTO && B->dtype == RMU_DT_BF16);
}

static const rmu_gemm_isa *pick_isa(const gemm_dispatch *d, rmu_gemm_path_id p, int bf16) {
    if (p == RMU_GEMM_BEST) p = d->best;
    /* the bf16-pair table only differs in BF16 precision */
    if (p == RMU_GEMM_AVX512BF16 && !bf16) p = RMU_GEMM_AVX512;
    return &d->isa[p];
}

int rmu_gemm_panels_used(rmu_dtype dt) {
    const gemm_dispatch *d = dispatch();
    /* the table a product of dt takes in its default precision (BF16: bf16; F8: fp32) */
    const rmu_gemm_isa *isa = pick_isa(d, RMU_GEMM_BEST, dt == RMU_DT_BF16);
    return !d->no_panels && (int)dt > 0 && (int)dt < RMU_GEMM_NDT && (isa->panels >> dt & 1);
}

static int imin(int a, int b) { return a < b ? a : b; }
static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; } /* aligned_alloc wants size % align == 0 */

/* Threads pay off only past ~1 MFLOP: a parallel region costs microseconds and tiny
 * models run thousands of small products per step. */
static int threads_for(double flops, int nthreads) { return flops > 1e6 ? nthreads : 1; }

/* Few-row forward products (B stored [N,K]: decode, small batches): the rows kernels read
 * every weight row once for all M <= rows_max rows of A and compute each output exactly as
 * the blocked path does (gemm_impl.h, "Order"). A is first copied when the kernels cannot
 * read it as it is: rows not contiguous, rounding to bf16 (BF16 precision), or bf16 k-pairs
 * (the vdpbf16ps path). */
#define ROWS_CHUNK 64 /* weight rows per task: a multiple of the kernels' groups of 8 and 16 */

/* How a rows job reads A: fp32 as it is (FP32 precision), rounded to bf16 (BF16 precision on
 * a kp = 1 table, and always for F8, whose products run on the fp32 table), or as bf16
 * k-pairs (BF16 precision on the vdpbf16ps table). */
enum { X_F32, X_RND, X_PAIRS };
static int x_form(const rmu_gemm_isa *isa_b, const rmu_gemm_b *B) {
    if (!is_bf16(B)) return X_F32;
    return isa_b->kp == 2 && B->dtype != RMU_DT_F8_E4M3 ? X_PAIRS : X_RND;
}

static int gemv(const rmu_gemm_isa *isa, const rmu_gemm_isa *isa_b, int nth, int M, int K, const float *A, long rsa,
                long csa, int njobs, const rmu_gemm_job *jobs, rmu_err *e) {
    int any[3] = {0, 0, 0}, nchunks = 0;
    for (int j = 0; j < njobs; j++) {
        any[x_form(isa_b, &jobs[j].B)] = 1;
        nchunks += (jobs[j].N + ROWS_CHUNK - 1) / ROWS_CHUNK;
    }
    /* X_F32 jobs read (xf, ldf), X_RND (xr, K), X_PAIRS (xp, ldp) */
    const void *xf = A, *xr = NULL, *xp = NULL;
    long ldf = rsa, ldp = (K + 1) / 2;
    int copy = csa != 1 && any[X_F32];
    size_t nf = (size_t)M * K, np = (size_t)M * ldp;
    float *buf = NULL;
    if (copy || any[X_RND] || any[X_PAIRS]) {
        size_t bytes = sizeof(float) * ((copy ? nf : 0) + (any[X_RND] ? nf : 0) + (any[X_PAIRS] ? np : 0));
        buf = aligned_alloc(64, round64(bytes));
        if (!buf) return rmu_errf(e, "gemm: out of memory (%zu bytes for the rows of A)", bytes);
        float *p = buf;
        if (copy) {
            for (int m = 0; m < M; m++)
                for (int k = 0; k < K; k++) p[(size_t)m * K + k] = A[m * rsa + k * csa];
            xf = p, ldf = K, p += nf;
        }
        if (any[X_RND]) {
            for (int m = 0; m < M; m++)
                for (int k = 0; k < K; k++) p[(size_t)m * K + k] = rmu_gemm_round_bf16(A[m * rsa + k * csa]);
            xr = p, p += nf;
        }
        if (any[X_PAIRS]) { /* u32 = bf16 of k (low half), of k+1 (high; 0 past K) */
            uint32_t *q = (uint32_t *)p;
            for (int m = 0; m < M; m++)
                for (int k = 0; k < K; k += 2) {
                    uint32_t lo = rmu_f32_to_bf16(A[m * rsa + k * csa]);
                    uint32_t hi = k + 1 < K ? rmu_f32_to_bf16(A[m * rsa + (k + 1) * csa]) : 0;
                    q[(size_t)m * ldp + k / 2] = lo | hi << 16;
                }
            xp = p;
        }
    }
#pragma omp parallel for schedule(dynamic, 4) num_threads(nth) if (nth > 1)
    for (int c = 0; c < nchunks; c++) {
        int j = 0, cc = c;
        while (cc >= (jobs[j].N + ROWS_CHUNK - 1) / ROWS_CHUNK) cc -= (jobs[j].N + ROWS_CHUNK - 1) / ROWS_CHUNK, j++;
        const rmu_gemm_job *jb = &jobs[j];
        int f = x_form(isa_b, &jb->B), f8 = jb->B.dtype == RMU_DT_F8_E4M3;
        int n0 = cc * ROWS_CHUNK, n1 = imin(n0 + ROWS_CHUNK, jb->N);
        const rmu_gemm_isa *t = f == X_F32 || f8 ? isa : isa_b;
        t->type[jb->B.dtype].rows(M, n0, n1, K, f == X_F32 ? xf : f == X_RND ? xr : xp,
                                  f == X_F32 ? ldf : f == X_RND ? K : ldp, &jb->B,
                                  f != X_F32 && jb->B.dtype != RMU_DT_BF16 && !f8, jb->C, jb->ldc, jb->beta != 0.0f);
    }
    free(buf);
    return 0;
}

static void pack_b(const rmu_gemm_type *ty, const rmu_gemm_b *B, int kp, int k0, int kc, int n0, int nr, int NR,
                   int rnd, char *dst) {
    if (kp == 2) ty->pack_b2(B, k0, kc, n0, nr, NR, (uint32_t *)dst);
    else ty->pack_b(B, k0, kc, n0, nr, NR, rnd, (float *)dst);
}

/* The micro-kernel for an F8 weight stored [N,K]: the packed panel holds the codes' values
 * x 2^-8 without their scales (gemm_impl.h, "F8"), so the slice's sums come out in t and each
 * is multiplied by its column's scale x 2^8 before it is added to C - the order the rows
 * kernels follow, so F8 forward rows are row-invariant and a GEMV needs no multiply per
 * weight. */
static void ukernel_f8(const rmu_gemm_isa *isa, int ks, const void *Ap, const void *Bp, float *C, long ldc, int mr,
                       int nr, int acc, const rmu_gemm_b *B, int j0) {
    float t[RMU_GEMM_MAX_MR * RMU_GEMM_MAX_NR], sc[RMU_GEMM_MAX_NR];
    isa->ukernel(ks, Ap, Bp, t, isa->nr, mr, nr, 0);
    for (int j = 0; j < nr; j++) sc[j] = rmu_gemm_f8_scale(B, j0 + j) * RMU_GEMM_F8_UNIT;
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float v = t[i * isa->nr + j] * sc[j], *c = C + i * ldc + j;
            *c = acc ? *c + v : v;
        }
}

/* The blocked product (see gemm_impl.h). */
static int blocked(const rmu_gemm_isa *isa, int nth, int M, int N, int K, const float *A, long rsa, long csa,
                   const rmu_gemm_b *B, int bf16, float *C, long ldc, int acc0, rmu_err *e) {
    const rmu_gemm_type *ty = &isa->type[B->dtype];
    const int MR = isa->mr, NR = isa->nr, kp = isa->kp;
    const int KC = imin(isa->kc, (K + kp - 1) / kp * kp);
    const int MC = imin(isa->mc, (M + MR - 1) / MR * MR);
    const int rnd_a = bf16, rnd_b = bf16 && B->dtype != RMU_DT_BF16;
    const int f8t = B->dtype == RMU_DT_F8_E4M3 && B->trans; /* scales applied per slice (ukernel_f8) */
    /* Tiles: columns first (B, the weight, is then converted once per call); enough tiles
     * for dynamic balancing across threads; rows split too only when N is narrow. */
    int npan = (N + NR - 1) / NR;
    int tn = (N + isa->nc - 1) / isa->nc;
    if (nth > 1 && tn < 2 * nth) tn = imin(npan, 2 * nth);
    int NT = (npan + tn - 1) / tn * NR;
    tn = (N + NT - 1) / NT;
    int tm = 1;
    if (nth > 1 && tn < 2 * nth) tm = imin((M + MC - 1) / MC, (2 * nth + tn - 1) / tn);
    int MT = ((M + tm - 1) / tm + MR - 1) / MR * MR;
    tm = (M + MT - 1) / MT;
    int ntiles = tn * tm;
    if (nth > ntiles) nth = ntiles;
    /* Rows of a tile in one A block: each B micro-panel is used once, so it is packed right
     * before use and stays in L1 (reading the weights overlaps the arithmetic). */
    int fused = MT <= MC;
    /* BF16 panels on a path with ukernel_pbf16: full micro-panels of B are read from the
     * panels themselves, no packing (partial last panels are packed) */
    const int direct = fused && isa->ukernel_pbf16 && B->dtype == RMU_DT_BF16 && B->trans && B->panels;
    size_t slots = (size_t)(KC / kp);
    size_t abytes = round64(slots * MC * 4), bbytes = round64(slots * (fused ? NR : imin(NT, npan * NR)) * 4);
    size_t per = abytes + bbytes;
    char *ws = aligned_alloc(64, per * nth);
    if (!ws) return rmu_errf(e, "gemm: out of memory (%zu bytes of packing buffers)", per * nth);
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        char *Ap = ws + per * omp_get_thread_num(), *Bp = Ap + abytes;
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < ntiles; t++) {
            int m0 = (t / tn) * MT, m1 = imin(m0 + MT, M), n0 = (t % tn) * NT, n1 = imin(n0 + NT, N);
            for (int k0 = 0; k0 < K; k0 += KC) {
                int kc = imin(KC, K - k0), ks = (kc + kp - 1) / kp, acc = acc0 || k0 > 0;
                size_t bpan = (size_t)ks * NR * 4, apan = (size_t)ks * MR * 4; /* bytes per micro-panel */
                if (!fused)
                    for (int j = n0; j < n1; j += NR)
                        pack_b(ty, B, kp, k0, kc, j, imin(NR, n1 - j), NR, rnd_b, Bp + (size_t)(j - n0) / NR * bpan);
                for (int i0 = m0; i0 < m1; i0 += MC) {
                    int mc = imin(MC, m1 - i0);
                    for (int i = 0; i < mc; i += MR)
                        isa->pack_a(imin(MR, mc - i), kc, A + (i0 + i) * rsa + (long)k0 * csa, rsa, csa, MR, rnd_a,
                                    Ap + (size_t)i / MR * apan);
                    for (int j = n0; j < n1; j += NR) {
                        char *bp = Bp;
                        if (direct && n1 - j >= NR) {
                            /* this slice of panel j / 16 read as it is; the next panel's is
                             * prefetched by the first micro-panel of A (an integer address:
                             * past the last panel it is outside the weights) */
                            const char *pn = (const char *)B->panels + ((size_t)j / 16 * B->ld + k0) * 32;
                            uintptr_t next = (uintptr_t)pn + (uintptr_t)B->ld * 32;
                            for (int i = 0; i < mc; i += MR)
                                isa->ukernel_pbf16(ks, Ap + (size_t)i / MR * apan, pn, i ? 0 : next,
                                                   C + (size_t)(i0 + i) * ldc + j, ldc, imin(MR, mc - i), acc);
                            continue;
                        }
                        if (fused) pack_b(ty, B, kp, k0, kc, j, imin(NR, n1 - j), NR, rnd_b, bp);
                        else bp += (size_t)(j - n0) / NR * bpan;
                        for (int i = 0; i < mc; i += MR)
                            if (f8t)
                                ukernel_f8(isa, ks, Ap + (size_t)i / MR * apan, bp, C + (size_t)(i0 + i) * ldc + j,
                                           ldc, imin(MR, mc - i), imin(NR, n1 - j), acc, B, j);
                            else
                                isa->ukernel(ks, Ap + (size_t)i / MR * apan, bp, C + (size_t)(i0 + i) * ldc + j, ldc,
                                             imin(MR, mc - i), imin(NR, n1 - j), acc);
                    }
                }
            }
        }
    }
    free(ws);
    return 0;
}

/* B's dtype is known; an F8 B has one scale or one per stored row (N when trans, else K). */
static int check_b(const gemm_dispatch *d, const rmu_gemm_b *B, int N, int K, rmu_err *e) {
    if ((int)B->dtype <= 0 || (int)B->dtype >= RMU_GEMM_NDT || !d->isa[RMU_GEMM_PORTABLE].type[B->dtype].size)
        return rmu_errf(e, "gemm: unsupported weight dtype %d", (int)B->dtype);
    long rows = B->trans ? N : K;
    if (B->dtype == RMU_DT_F8_E4M3 && (!B->scale || (B->nscale != 1 && B->nscale != rows)))
        return rmu_errf(e, "gemm: an F8_E4M3 weight needs 1 or %ld fp32 scales, got %ld%s", rows, B->nscale,
                        B->scale ? "" : " (no scale array)");
    return 0;
}

int rmu_gemm_ex(rmu_gemm_path_id path, int nthreads, int M, int N, int K, const float *A, long rsa, long csa,
                const rmu_gemm_b *B, float *C, long ldc, float beta, rmu_err *e) {
    const gemm_dispatch *d = dispatch();
    if (M < 0 || N < 0 || K < 0) return rmu_errf(e, "gemm: negative size %d x %d x %d", M, N, K);
    if (beta != 0.0f && beta != 1.0f) return rmu_errf(e, "gemm: beta must be 0 or 1, got %g", beta);
    if ((int)path < 0 || path >= RMU_GEMM_NPATHS || !rmu_gemm_path_available(path))
        return rmu_errf(e, "gemm: kernel path %s is not available on this CPU", rmu_gemm_path_name(path));
    if (check_b(d, B, N, K, e)) return -1;
    if (M == 0 || N == 0) return 0;
    int acc0 = beta != 0.0f;
    if (K == 0) {
        if (!acc0)
            for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, sizeof(float) * N);
        return 0;
    }
    int bf16 = is_bf16(B);
    /* F8: the fp32 micro-kernel also in bf16 precision (gemm.h) */
    const rmu_gemm_isa *isa = pick_isa(d, path, bf16 && B->dtype != RMU_DT_F8_E4M3);
    int nth = threads_for(2.0 * M * N * K, nthreads > 0 ? nthreads : omp_get_max_threads());
    if (B->trans && M <= isa->rows_max) {
        rmu_gemm_job job = {*B, N, C, ldc, beta};
        return gemv(pick_isa(d, path, 0), pick_isa(d, path, 1), nth, M, K, A, rsa, csa, 1, &job, e);
    }
    return blocked(isa, nth, M, N, K, A, rsa, csa, B, bf16, C, ldc, acc0, e);
}

int rmu_gemm(int M, int N, int K, const float *A, long rsa, long csa, const rmu_gemm_b *B, float *C, long ldc,
             float beta, rmu_err *e) {
    return rmu_gemm_ex(RMU_GEMM_BEST, 0, M, N, K, A, rsa, csa, B, C, ldc, beta, e);
}

int rmu_gemm_multi(int M, int K, const float *A, long lda, const rmu_gemm_job *jobs, int njobs, rmu_err *e) {
    const gemm_dispatch *d = dispatch();
    if (M < 0 || K < 0) return rmu_errf(e, "gemm: negative size %d x %d", M, K);
    for (int j = 0; j < njobs; j++) {
        if (!jobs[j].B.trans) return rmu_errf(e, "gemm_multi: job %d: B must be stored [N, K]", j);
        if (jobs[j].N < 0) return rmu_errf(e, "gemm_multi: job %d: negative N", j);
        if (jobs[j].beta != 0.0f && jobs[j].beta != 1.0f)
            return rmu_errf(e, "gemm_multi: job %d: beta must be 0 or 1, got %g", j, jobs[j].beta);
        if (check_b(d, &jobs[j].B, jobs[j].N, K, e)) return -1;
    }
    /* the rows threshold of the path in use (the same for both of its tables) */
    if (M > pick_isa(d, RMU_GEMM_BEST, 0)->rows_max || K == 0) {
        for (int j = 0; j < njobs; j++)
            if (rmu_gemm(M, jobs[j].N, K, A, lda, 1, &jobs[j].B, jobs[j].C, jobs[j].ldc, jobs[j].beta, e)) return -1;
        return 0;
    }
    if (M == 0) return 0;
    double flops = 0;
    for (int j = 0; j < njobs; j++) flops += 2.0 * M * jobs[j].N * K;
    return gemv(pick_isa(d, RMU_GEMM_BEST, 0), pick_isa(d, RMU_GEMM_BEST, 1), threads_for(flops, omp_get_max_threads()),
                M, K, A, lda, 1, njobs, jobs, e);
}

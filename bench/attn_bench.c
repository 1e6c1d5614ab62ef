/* attn_bench.c - speed of the attention kernels (src/model/attention.c) at the Mistral-7B
 * head shape (32 query heads, 8 KV heads, head dim 128, window 4096), next to the
 * row-at-a-time kernels they replaced (kept below as the "before" baseline).
 * Built and run by bench/attn_bench.sh. Not a test.
 *
 * Reported per case: single-thread CPU time (CLOCK_THREAD_CPUTIME_ID, the figure to tune
 * against on a shared machine) and GFLOP/s from it, then 2-thread wall time (indicative). */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util.h"
#include "kernels/gemm.h"
#include "model/attention.h"

enum { H = 32, KV = 8, HD = 128, WINDOW = 4096 };

/* ---- before: the row-at-a-time kernels of layers.c (commit 3003b21), unchanged apart
 * from names: a [T]-long score row per (query, head), rmu_dot, scalar softmax. */
static void old_cached(float *out, const float *q, const float *kc, const float *vc, int N, int pos0, float *scratch,
                       int nthreads) {
    int group = H / KV, kvdim = KV * HD, window = WINDOW, hd = HD;
    float scale = 1.0f / sqrtf((float)hd);
    int ctx_stride = pos0 + N;
    int par = (double)N * H * (pos0 + N) * hd > 2e5;
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(nthreads) if (par)
    for (int i = 0; i < N; i++) {
        for (int h = 0; h < H; h++) {
            float *att = scratch + (size_t)omp_get_thread_num() * ctx_stride;
            int p = pos0 + i;
            int j0 = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
            const float *qh = q + ((size_t)i * H + h) * hd;
            int kvh = h / group;
            float mx = -INFINITY;
            for (int j = j0; j <= p; j++) {
                float s = rmu_dot(qh, kc + (size_t)j * kvdim + kvh * hd, hd) * scale;
                att[j] = s;
                if (s > mx) mx = s;
            }
            float sum = 0;
            for (int j = j0; j <= p; j++) {
                att[j] = expf(att[j] - mx);
                sum += att[j];
            }
            float inv = 1.0f / sum;
            float *o = out + ((size_t)i * H + h) * hd;
            memset(o, 0, sizeof(float) * hd);
            for (int j = j0; j <= p; j++) {
                const float *vj = vc + (size_t)j * kvdim + kvh * hd;
                float a = att[j] * inv;
                for (int d = 0; d < hd; d++) o[d] += a * vj[d];
            }
        }
    }
}

static void old_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                         const float *v, const float *lse, int T, float *scratch, int nthreads) {
    int group = H / KV, kvdim = KV * HD, qdim = H * HD, hd = HD, window = WINDOW;
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int g = 0; g < KV; g++) {
        float *p = scratch + (size_t)omp_get_thread_num() * 2 * T, *dp = p + T;
        const float *kb = k + (size_t)g * hd, *vb = v + (size_t)g * hd;
        float *dkb = dk + (size_t)g * hd, *dvb = dv + (size_t)g * hd;
        for (int j = 0; j < T; j++) {
            memset(dkb + (size_t)j * kvdim, 0, sizeof(float) * hd);
            memset(dvb + (size_t)j * kvdim, 0, sizeof(float) * hd);
        }
        for (int h = g * group; h < (g + 1) * group; h++) {
            for (int i = 0; i < T; i++) {
                float *dqh = dq + (size_t)i * qdim + (size_t)h * hd;
                memset(dqh, 0, sizeof(float) * hd);
                const float *qh = q + (size_t)i * qdim + (size_t)h * hd, *doh = dout + (size_t)i * qdim + (size_t)h * hd;
                float L = lse[(size_t)i * H + h];
                int j0 = window > 0 && i - window + 1 > 0 ? i - window + 1 : 0;
                float D = 0;
                for (int j = j0; j <= i; j++) {
                    p[j] = expf(rmu_dot(qh, kb + (size_t)j * kvdim, hd) * scale - L);
                    dp[j] = rmu_dot(doh, vb + (size_t)j * kvdim, hd);
                    D += p[j] * dp[j];
                }
                for (int j = j0; j <= i; j++) {
                    float ds = p[j] * (dp[j] - D) * scale;
                    const float *kj = kb + (size_t)j * kvdim;
                    float *dkj = dkb + (size_t)j * kvdim, *dvj = dvb + (size_t)j * kvdim;
                    for (int d = 0; d < hd; d++) {
                        dqh[d] += ds * kj[d];
                        dkj[d] += ds * qh[d];
                        dvj[d] += p[j] * doh[d];
                    }
                }
            }
        }
    }
}

/* ---- cases */

typedef struct {
    const char *name;
    double flops;
    double cpu1, wall2; /* seconds per call */
} result;

static float *rnd(size_t n, uint64_t *s) {
    float *p = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (float)((*s >> 40) / (double)(1 << 24) * 2.0 - 1.0);
    }
    return p;
}

/* visible (query, key) pairs of a causal window-limited block of n queries at pos0.. */
static double pairs(int pos0, int n) {
    double s = 0;
    for (int i = pos0; i < pos0 + n; i++) s += (i + 1 < WINDOW ? i + 1 : WINDOW);
    return s;
}

typedef void (*case_fn)(void *ctx, int nthreads);

static const char *only; /* run only the cases whose name contains this (bench-local) */

static result timeit(const char *name, double flops, case_fn f, void *ctx, double min_s) {
    result r = {name, flops, 0, 0};
    if (only && !strstr(name, only)) return r;
    f(ctx, 1); /* warm */
    int reps = 0;
    double c0 = rmu_thread_cpu_s();
    do {
        f(ctx, 1);
        reps++;
    } while (rmu_thread_cpu_s() - c0 < min_s);
    r.cpu1 = (rmu_thread_cpu_s() - c0) / reps;
    reps = 0;
    double w0 = rmu_now_s();
    do {
        f(ctx, 2);
        reps++;
    } while (rmu_now_s() - w0 < min_s);
    r.wall2 = (rmu_now_s() - w0) / reps;
    printf("%-44s %10.3f ms %8.1f GFLOP/s %10.3f ms\n", name, r.cpu1 * 1e3, flops / r.cpu1 / 1e9, r.wall2 * 1e3);
    fflush(stdout);
    return r;
}

typedef struct {
    int ctx, cap, N, pos0; /* ctx: tokens to prefill; cap: cache rows (head-major [KV, cap, hd]) */
    float *q, *kc, *vc, *out, *scr, *old_scr;
} cached_ctx;

static void run_cached(void *c, int nt) {
    cached_ctx *x = c;
    rmu_attention_cached_forward(x->out, x->q, x->kc, x->vc, x->cap, x->N, x->pos0, H, KV, HD, WINDOW, x->scr, nt);
}
static void run_old_cached(void *c, int nt) {
    cached_ctx *x = c;
    old_cached(x->out, x->q, x->kc, x->vc, x->N, x->pos0, x->old_scr, nt);
}
/* decode over 8 different caches in turn (8 layers' worth: 256 MB at context 4096), so
 * the keys/values come from memory as in a real decode step, not from L3 */
typedef struct {
    cached_ctx *c;
    float *kcs[8], *vcs[8];
    int turn;
} cold_ctx;

static void run_cold(void *p, int nt) {
    cold_ctx *x = p;
    cached_ctx *c = x->c;
    int t = x->turn++ % 8;
    rmu_attention_cached_forward(c->out, c->q, x->kcs[t], x->vcs[t], c->cap, 1, c->pos0, H, KV, HD, WINDOW, c->scr, nt);
}

/* a whole prefill of ctx tokens in 512-token chunks (what rmu_model_forward does) */
static void run_prefill(void *c, int nt) {
    cached_ctx *x = c;
    for (int p = 0; p < x->ctx; p += 512)
        rmu_attention_cached_forward(x->out, x->q + (size_t)p * H * HD, x->kc, x->vc, x->cap, 512, p, H, KV, HD, WINDOW,
                                     x->scr, nt);
}
static void run_old_prefill(void *c, int nt) {
    cached_ctx *x = c;
    for (int p = 0; p < x->ctx; p += 512)
        old_cached(x->out, x->q + (size_t)p * H * HD, x->kc, x->vc, 512, p, x->old_scr, nt);
}

typedef struct {
    int T;
    float *q, *k, *v, *out, *lse, *dout, *dq, *dk, *dv, *scr, *old_scr;
} train_ctx;

static void run_fwd(void *c, int nt) {
    train_ctx *x = c;
    rmu_attention_forward(x->out, x->lse, x->q, x->k, x->v, NULL, 1, x->T, H, KV, HD, WINDOW, x->scr, nt);
}
static void run_bwd(void *c, int nt) {
    train_ctx *x = c;
    rmu_attention_backward(x->dq, x->dk, x->dv, x->dout, x->q, x->k, x->v, x->out, x->lse, NULL, 1, x->T, H, KV, HD,
                           WINDOW, x->scr, nt);
}
static void run_old_bwd(void *c, int nt) {
    train_ctx *x = c;
    old_backward(x->dq, x->dk, x->dv, x->dout, x->q, x->k, x->v, x->lse, x->T, x->old_scr, nt);
}

int main(int argc, char **argv) {
    int with_old = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--new-only")) with_old = 0;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
    }
    double min_s = getenv("MIN_S") ? atof(getenv("MIN_S")) : 0.5;
    printf("attention kernels: %s; H %d, KV %d, hd %d, window %d\n", rmu_attention_path(), H, KV, HD, WINDOW);
    printf("%-44s %13s %16s %13s\n", "case", "1-thread CPU", "", "2-thread wall");
    uint64_t s = 1;
    int ctx = 4096;
    size_t qd = (size_t)H * HD, kvd = (size_t)KV * HD;
    cached_ctx c = {.ctx = ctx, .cap = ctx, .q = rnd(ctx * qd, &s), .kc = rnd(ctx * kvd, &s), .vc = rnd(ctx * kvd, &s)};
    c.out = malloc(sizeof(float) * ctx * qd);
    c.scr = malloc(sizeof(float) * rmu_attention_scratch_floats(H, KV, HD, 2));
    c.old_scr = malloc(sizeof(float) * 2 * ctx);
    char name[96];
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1 && !with_old) break;
        const char *tag = pass ? "before" : "fused";
        case_fn dec = pass ? run_old_cached : run_cached, pre = pass ? run_old_prefill : run_prefill;
        static const int dec_at[] = {512, 4096};
        for (int i = 0; i < 2; i++) {
            c.N = 1, c.pos0 = dec_at[i] - 1;
            snprintf(name, sizeof name, "%s decode, 1 token at context %d", tag, dec_at[i]);
            timeit(name, 4.0 * HD * H * pairs(c.pos0, 1), dec, &c, min_s);
        }
        if (pass == 0) {
            cold_ctx cc = {.c = &c};
            for (int i = 0; i < 8; i++) cc.kcs[i] = rnd(ctx * kvd, &s), cc.vcs[i] = rnd(ctx * kvd, &s);
            c.N = 1, c.pos0 = ctx - 1;
            result r = timeit("fused decode, context 4096, cold cache", 4.0 * HD * H * pairs(c.pos0, 1), run_cold, &cc,
                              min_s);
            if (r.cpu1 > 0)
                printf("%-44s %10.2f GB/s (1 thread) %8.2f GB/s (2 threads)\n", "  K/V read rate", 2.0 * ctx * kvd * 4 / r.cpu1 / 1e9,
                       2.0 * ctx * kvd * 4 / r.wall2 / 1e9);
            for (int i = 0; i < 8; i++) free(cc.kcs[i]), free(cc.vcs[i]);
        }
        static const int pre_len[] = {512, 4096};
        for (int i = 0; i < 2; i++) {
            c.ctx = pre_len[i];
            snprintf(name, sizeof name, "%s prefill %d (512-token chunks)", tag, pre_len[i]);
            timeit(name, 4.0 * HD * H * pairs(0, pre_len[i]), pre, &c, min_s);
        }
        c.ctx = ctx;
    }
    int T = 512;
    train_ctx t = {.T = T, .q = rnd(T * qd, &s), .k = rnd(T * kvd, &s), .v = rnd(T * kvd, &s), .dout = rnd(T * qd, &s)};
    t.out = malloc(sizeof(float) * T * qd), t.lse = malloc(sizeof(float) * T * H);
    t.dq = malloc(sizeof(float) * T * qd), t.dk = malloc(sizeof(float) * T * kvd), t.dv = malloc(sizeof(float) * T * kvd);
    t.scr = c.scr, t.old_scr = malloc(sizeof(float) * 2 * 2 * T);
    run_fwd(&t, 1);
    timeit("fused training forward, T 512", 4.0 * HD * H * pairs(0, T), run_fwd, &t, min_s);
    timeit("fused training backward, T 512", 10.0 * HD * H * pairs(0, T), run_bwd, &t, min_s);
    if (with_old) timeit("before training backward, T 512", 10.0 * HD * H * pairs(0, T), run_old_bwd, &t, min_s);
    return 0;
}

#include "attention.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attention_impl.h"

/* Query rows per block (positions x the heads of one KV group) and keys per tile: a block's
 * packed queries, a score tile and the output accumulators (64 x 128 fp32 each at hd 128)
 * stay in L2 next to the K/V tile being read. */
#define RQ 64
#define BK 64
#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

/* ---- portable tile kernels (contracts: attention_impl.h) */

static void gemm_portable(int M, int N, int K, const float *A, long rsa, long csa, const float *B, long ldb,
                          float *C, long ldc, int acc) {
    for (int m = 0; m < M; m++) {
        float *restrict c = C + m * ldc;
        if (!acc) memset(c, 0, sizeof(float) * N);
        for (int k = 0; k < K; k++) {
            float a = A[m * rsa + k * csa];
            const float *restrict b = B + k * ldb;
            for (int n = 0; n < N; n++) c[n] += a * b[n];
        }
    }
}

static void softmax_portable(int nj, int ni, float *st, long ld, float *m, float *l, float *corr) {
    for (int i = 0; i < ni; i++) {
        float mx = m[i];
        for (int j = 0; j < nj; j++) mx = fmaxf(mx, st[j * ld + i]);
        float mu = mx == -INFINITY ? 0.0f : mx, sum = 0;
        for (int j = 0; j < nj; j++) {
            float p = exp2f(st[j * ld + i] - mu);
            st[j * ld + i] = p;
            sum += p;
        }
        corr[i] = exp2f(m[i] - mu);
        l[i] = l[i] * corr[i] + sum;
        m[i] = mx;
    }
}

static void dsoftmax_portable(int nj, int ni, float *st, float *dpt, long ld, const float *lse2, const float *D) {
    for (int j = 0; j < nj; j++)
        for (int i = 0; i < ni; i++) {
            float p = exp2f(st[j * ld + i] - lse2[i]);
            st[j * ld + i] = p;
            dpt[j * ld + i] = p * (dpt[j * ld + i] - D[i]);
        }
}

static const rmu_att_kernels kernels_portable = {gemm_portable, softmax_portable, dsoftmax_portable, "portable"};

static const rmu_att_kernels *pick_kernels(void) {
#ifndef RMU_NO_SIMD
    const char *force = getenv("RMU_SIMD");
    __builtin_cpu_init();
    if (!(force && !strcmp(force, "portable")) && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return &rmu_att_kernels_avx2;
#endif
    return &kernels_portable;
}

const char *rmu_attention_path(void) { return pick_kernels()->name; }

/* ---- blocks and tiles */

typedef struct {
    int H, G, hd, window; /* G = H/KV query heads per KV head */
    int np;               /* positions per block: np * G ~ RQ query rows */
    int ld, hdp;          /* row strides of the tile buffers: rows, hd rounded up to 8 */
    long qdim, kvdim;     /* row strides of q/out and k/v */
    float scale, c2;      /* 1/sqrt(hd); log2(e)/sqrt(hd) (scores in log2 units) */
    size_t ws;            /* floats of one thread's workspace */
} geom;

static int round8(int n) { return (n + 7) & ~7; }

static geom make_geom(int H, int KV, int hd, int window) {
    geom g = {.H = H, .G = H / KV, .hd = hd, .window = window};
    g.np = RQ / g.G > 1 ? RQ / g.G : 1;
    g.ld = round8(g.np * g.G);
    g.hdp = round8(hd);
    g.qdim = (long)H * hd;
    g.kvdim = (long)KV * hd;
    g.scale = 1.0f / sqrtf((float)hd);
    g.c2 = g.scale * LOG2E;
    size_t mq = (size_t)g.np * g.G, tile = (size_t)BK * g.ld, qt = (size_t)hd * g.ld, rows = mq * g.hdp;
    size_t fwd = qt + tile + rows + 3 * (size_t)g.ld;
    size_t bwd = 2 * qt + 3 * rows + 2 * tile + 2 * (size_t)g.ld;
    g.ws = (fwd > bwd ? fwd : bwd) + 16; /* + 16: room to align the start to 64 bytes */
    return g;
}

size_t rmu_attention_scratch_floats(int H, int KV, int hd, int nthreads) {
    return make_geom(H, KV, hd, 0).ws * (size_t)(nthreads > 0 ? nthreads : 1);
}

static float *thread_ws(float *scratch, const geom *g) {
    uintptr_t p = (uintptr_t)(scratch + g->ws * (size_t)omp_get_thread_num());
    return (float *)((p + 63) & ~(uintptr_t)63);
}

/* One block: np positions of one sequence (absolute positions p0..p0+np-1) x the G heads
 * of KV head g. Row i of the block = position i / G, head i % G. Pointers are already at
 * the block's first position and head (q, out, dq, dout, lse) or at position 0 of the
 * sequence / cache and KV head g (k, v, dk, dv, mask). */
typedef struct {
    const float *q, *k, *v, *out, *dout;
    float *o, *lse, *dq, *dk, *dv;
    const float *lse_in;
    const int *mask;
    int p0, np;
} blk;

/* Offset of block row i in q/out/dq/dout, and in lse. */
static size_t roff(const geom *g, int i) { return (size_t)(i / g->G) * g->qdim + (size_t)(i % g->G) * g->hd; }
static size_t loff(const geom *g, int i) { return (size_t)(i / g->G) * g->H + i % g->G; }

/* Pad query rows of the block (mask 0): returns how many. */
static int count_pad_queries(const blk *b) {
    int n = 0;
    if (b->mask)
        for (int p = 0; p < b->np; p++) n += !b->mask[b->p0 + p];
    return n;
}

/* Keys that a block sees: [jlo, p0 + np - 1]. */
static int first_key(const geom *g, const blk *b) {
    return g->window > 0 && b->p0 - g->window + 1 > 0 ? b->p0 - g->window + 1 : 0;
}

/* A tile [j0, j0+nj) with no real key is skipped; *pad says whether some key is a pad. */
static int tile_has_real_keys(const blk *b, int j0, int nj, int *pad) {
    int real = 0;
    if (!b->mask) {
        *pad = 0;
        return 1;
    }
    for (int j = j0; j < j0 + nj; j++) real += b->mask[j] != 0;
    *pad = real < nj;
    return real > 0;
}

/* Sets st[j][i] = -inf where key j0+j is not visible from row i; only tiles that cross
 * the diagonal, the window edge or a pad need it. */
static void mask_tile(const geom *g, const blk *b, float *st, int j0, int nj, int pads) {
    int plast = b->p0 + b->np - 1;
    if (!pads && j0 + nj - 1 <= b->p0 && !(g->window > 0 && plast - j0 >= g->window)) return;
    for (int j = 0; j < nj; j++) {
        int kj = j0 + j, kreal = !b->mask || b->mask[kj];
        float *row = st + (size_t)j * g->ld;
        for (int pl = 0; pl < b->np; pl++) {
            int p = b->p0 + pl;
            int vis = kreal && kj <= p && (g->window <= 0 || p - kj < g->window) && (!b->mask || b->mask[p]);
            if (!vis)
                for (int h = 0; h < g->G; h++) row[pl * g->G + h] = -INFINITY;
        }
    }
}

/* Forward of one block.
 * ws: qt[hd][ld] (queries x log2(e)/sqrt(hd), transposed), st[BK][ld] (scores, then
 * probabilities), o[mq][hdp] (unnormalised output), m, l, corr [ld] (running max, sum,
 * rescale factor). out rows / lse entries of pad queries get 0. */
static void fwd_block(const rmu_att_kernels *kr, const geom *g, const blk *b, float *ws) {
    int mq = b->np * g->G, ld = g->ld, hd = g->hd, hdp = g->hdp;
    float *qt = ws, *st = qt + (size_t)hd * ld, *o = st + (size_t)BK * ld, *m = o + (size_t)mq * hdp, *l = m + ld,
          *corr = l + ld;
    int npad = count_pad_queries(b);
    if (npad < b->np) {
        for (int i = 0; i < ld; i++) {
            const float *qr = i < mq ? b->q + roff(g, i) : NULL;
            for (int d = 0; d < hd; d++) qt[(size_t)d * ld + i] = qr ? qr[d] * g->c2 : 0.0f;
            m[i] = -INFINITY;
            l[i] = 0;
        }
        memset(o, 0, sizeof(float) * mq * hdp);
        int plast = b->p0 + b->np - 1;
        for (int j0 = first_key(g, b); j0 <= plast; j0 += BK) {
            int nj = plast - j0 + 1 < BK ? plast - j0 + 1 : BK, kpad;
            if (!tile_has_real_keys(b, j0, nj, &kpad)) continue;
            /* st[j][i] = k_j . q_i (log2 units) */
            kr->gemm(nj, ld, hd, b->k + j0 * g->kvdim, g->kvdim, 1, qt, ld, st, ld, 0);
            mask_tile(g, b, st, j0, nj, kpad || npad);
            kr->softmax(nj, ld, st, ld, m, l, corr);
            for (int i = 0; i < mq; i++)
                if (corr[i] != 1.0f)
                    for (int d = 0; d < hd; d++) o[(size_t)i * hdp + d] *= corr[i];
            /* o[i] += sum_j p[j][i] v_j */
            kr->gemm(mq, hd, nj, st, 1, ld, b->v + j0 * g->kvdim, g->kvdim, o, hdp, 1);
        }
    }
    for (int i = 0; i < mq; i++) {
        float *orow = b->o + roff(g, i);
        int real = npad < b->np && l[i] > 0;
        for (int d = 0; d < hd; d++) orow[d] = real ? o[(size_t)i * hdp + d] / l[i] : 0.0f;
        if (b->lse) b->lse[loff(g, i)] = real ? (m[i] + log2f(l[i])) * LN2 : 0.0f;
    }
}

/* Backward of one block; dk/dv of the sequence accumulate, dq rows of the block are
 * written. ws: qst[hd][ld] (as qt above), qb[mq][hdp] (q / sqrt(hd)), dot[hd][ld] (dout
 * transposed), dob[mq][hdp] (dout), st and dpt [BK][ld] (p and dp, then ds), dqb[mq][hdp],
 * lse2 and D [ld] (lse in log2 units; D_i = dout_i . out_i = sum_j p_ij dp_ij). */
static void bwd_block(const rmu_att_kernels *kr, const geom *g, const blk *b, float *ws) {
    int mq = b->np * g->G, ld = g->ld, hd = g->hd, hdp = g->hdp;
    size_t qt = (size_t)hd * ld, rows = (size_t)mq * hdp, tile = (size_t)BK * ld;
    float *qst = ws, *qb = qst + qt, *dot = qb + rows, *dob = dot + qt, *st = dob + rows, *dpt = st + tile,
          *dqb = dpt + tile, *lse2 = dqb + rows, *D = lse2 + ld;
    int npad = count_pad_queries(b);
    if (npad < b->np) {
        for (int i = 0; i < ld; i++) {
            const float *qr = i < mq ? b->q + roff(g, i) : NULL, *dr = i < mq ? b->dout + roff(g, i) : NULL;
            for (int d = 0; d < hd; d++) {
                qst[(size_t)d * ld + i] = qr ? qr[d] * g->c2 : 0.0f;
                dot[(size_t)d * ld + i] = dr ? dr[d] : 0.0f;
            }
            lse2[i] = D[i] = 0;
            if (!qr) continue;
            const float *orow = b->out + roff(g, i);
            float s = 0;
            for (int d = 0; d < hd; d++) {
                qb[(size_t)i * hdp + d] = qr[d] * g->scale;
                dob[(size_t)i * hdp + d] = dr[d];
                s += dr[d] * orow[d];
            }
            D[i] = s;
            lse2[i] = b->lse_in[loff(g, i)] * LOG2E;
        }
        memset(dqb, 0, sizeof(float) * rows);
        int plast = b->p0 + b->np - 1;
        for (int j0 = first_key(g, b); j0 <= plast; j0 += BK) {
            int nj = plast - j0 + 1 < BK ? plast - j0 + 1 : BK, kpad;
            if (!tile_has_real_keys(b, j0, nj, &kpad)) continue;
            const float *kt = b->k + j0 * g->kvdim, *vt = b->v + j0 * g->kvdim;
            kr->gemm(nj, ld, hd, kt, g->kvdim, 1, qst, ld, st, ld, 0);  /* s[j][i] */
            mask_tile(g, b, st, j0, nj, kpad || npad);
            kr->gemm(nj, ld, hd, vt, g->kvdim, 1, dot, ld, dpt, ld, 0); /* dp[j][i] = v_j . dout_i */
            kr->dsoftmax(nj, ld, st, dpt, ld, lse2, D);                 /* p, ds */
            /* dv_j += sum_i p[j][i] dout_i; dk_j += sum_i ds[j][i] q_i / sqrt(hd);
             * dq_i += sum_j ds[j][i] k_j (times 1/sqrt(hd) at the end) */
            kr->gemm(nj, hd, mq, st, ld, 1, dob, hdp, b->dv + j0 * g->kvdim, g->kvdim, 1);
            kr->gemm(nj, hd, mq, dpt, ld, 1, qb, hdp, b->dk + j0 * g->kvdim, g->kvdim, 1);
            kr->gemm(mq, hd, nj, dpt, 1, ld, kt, g->kvdim, dqb, hdp, 1);
        }
    } else {
        memset(dqb, 0, sizeof(float) * rows);
    }
    for (int i = 0; i < mq; i++) {
        float *dr = b->dq + roff(g, i);
        for (int d = 0; d < hd; d++) dr[d] = dqb[(size_t)i * hdp + d] * g->scale;
    }
}

/* ---- the three entry points */

/* Threads only for enough work: a parallel region costs microseconds, and tiny models
 * run attention thousands of times a second. */
static int worth_threads(double rows, double keys, int hd) { return rows * keys * hd > 2e5; }

void rmu_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v, const int *mask,
                           int B, int T, int H, int KV, int hd, int window, float *scratch, int nthreads) {
    const rmu_att_kernels *kr = pick_kernels();
    geom g = make_geom(H, KV, hd, window);
    int nb = (T + g.np - 1) / g.np, ntask = B * KV * nb;
    int span = window > 0 && window < T ? window : T;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) if (worth_threads((double)B * T * H, span, hd))
    for (int t = 0; t < ntask; t++) {
        /* last query blocks first: they see the most keys */
        int qb = nb - 1 - t % nb, kvh = t / nb % KV, s = t / nb / KV;
        size_t r0 = (size_t)s * T + (size_t)qb * g.np, seq = (size_t)s * T;
        blk b = {.q = q + r0 * g.qdim + (size_t)kvh * g.G * hd,
                 .o = out + r0 * g.qdim + (size_t)kvh * g.G * hd,
                 .lse = lse + r0 * H + (size_t)kvh * g.G,
                 .k = k + seq * g.kvdim + (size_t)kvh * hd,
                 .v = v + seq * g.kvdim + (size_t)kvh * hd,
                 .mask = mask ? mask + seq : NULL,
                 .p0 = qb * g.np,
                 .np = T - qb * g.np < g.np ? T - qb * g.np : g.np};
        fwd_block(kr, &g, &b, thread_ws(scratch, &g));
    }
}

void rmu_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                            const float *v, const float *out, const float *lse, const int *mask, int B, int T, int H,
                            int KV, int hd, int window, float *scratch, int nthreads) {
    const rmu_att_kernels *kr = pick_kernels();
    geom g = make_geom(H, KV, hd, window);
    int nb = (T + g.np - 1) / g.np, span = window > 0 && window < T ? window : T;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) if (worth_threads((double)B * T * H, span, hd))
    for (int t = 0; t < B * KV; t++) {
        int kvh = t % KV, s = t / KV;
        size_t seq = (size_t)s * T;
        float *dkb = dk + seq * g.kvdim + (size_t)kvh * hd, *dvb = dv + seq * g.kvdim + (size_t)kvh * hd;
        for (int j = 0; j < T; j++) {
            memset(dkb + j * g.kvdim, 0, sizeof(float) * hd);
            memset(dvb + j * g.kvdim, 0, sizeof(float) * hd);
        }
        float *ws = thread_ws(scratch, &g);
        for (int qb = 0; qb < nb; qb++) {
            size_t r0 = seq + (size_t)qb * g.np, qoff = r0 * g.qdim + (size_t)kvh * g.G * hd;
            blk b = {.q = q + qoff, .out = out + qoff, .dout = dout + qoff, .dq = dq + qoff,
                     .lse_in = lse + r0 * H + (size_t)kvh * g.G,
                     .k = k + seq * g.kvdim + (size_t)kvh * hd, .v = v + seq * g.kvdim + (size_t)kvh * hd,
                     .dk = dkb, .dv = dvb,
                     .mask = mask ? mask + seq : NULL,
                     .p0 = qb * g.np,
                     .np = T - qb * g.np < g.np ? T - qb * g.np : g.np};
            bwd_block(kr, &g, &b, ws);
        }
    }
}

void rmu_attention_cached_forward(float *out, const float *q, const float *kc, const float *vc, int N, int pos0, int H,
                                  int KV, int hd, int window, float *scratch, int nthreads) {
    const rmu_att_kernels *kr = pick_kernels();
    geom g = make_geom(H, KV, hd, window);
    int nb = (N + g.np - 1) / g.np, ntask = KV * nb;
    int span = window > 0 && window < pos0 + N ? window : pos0 + N;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) if (worth_threads((double)N * H, span, hd))
    for (int t = 0; t < ntask; t++) {
        int qb = nb - 1 - t % nb, kvh = t / nb;
        size_t qoff = (size_t)qb * g.np * g.qdim + (size_t)kvh * g.G * hd;
        blk b = {.q = q + qoff, .o = out + qoff,
                 .k = kc + (size_t)kvh * hd, .v = vc + (size_t)kvh * hd,
                 .p0 = pos0 + qb * g.np,
                 .np = N - qb * g.np < g.np ? N - qb * g.np : g.np};
        fwd_block(kr, &g, &b, thread_ws(scratch, &g));
    }
}

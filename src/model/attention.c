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

static void scale_portable(float *y, const float *x, int n, float a) {
    for (int k = 0; k < n; k++) y[k] = a * x[k];
}

static float dot_portable(const float *x, const float *y, int n) {
    float s = 0;
    for (int k = 0; k < n; k++) s += x[k] * y[k];
    return s;
}

static void transpose_portable(int m, int n, const float *src, int rg, long gs, long rs, float a, float *dst,
                               long ld) {
    int ni = (m + 7) & ~7;
    for (int i = 0; i < ni; i++) {
        const float *row = i < m ? src + (i / rg) * gs + (i % rg) * rs : NULL;
        for (int k = 0; k < n; k++) dst[k * ld + i] = row ? a * row[k] : 0.0f;
    }
}

static const rmu_att_kernels kernels_portable = {gemm_portable, softmax_portable,   dsoftmax_portable, scale_portable,
                                                 dot_portable,  transpose_portable, "portable"};

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
    int ld, hdp;          /* row strides: most query rows of a block, hd (padded: pad_stride) */
    long qdim, kvs;       /* row strides of q/out and of k/v (and dk/dv) */
    float scale, c2;      /* 1/sqrt(hd); log2(e)/sqrt(hd) (scores in log2 units) */
    size_t ws;            /* floats of one thread's workspace */
} geom;

/* A row stride of at least n floats: a multiple of 8 (whole vectors), plus 8 more when it
 * would be a multiple of 128 bytes. Rows 256 or 512 bytes apart fall into a few of the 64
 * L1 sets, and a [64, 16] panel of them then misses L1 on every row (measured: the P.V
 * product at 67 GFLOP/s with strides 64/128, 92 with 72/136). */
static int pad_stride(int n) {
    n = (n + 7) & ~7;
    return n % 32 ? n : n + 8;
}

/* Blocks with at least this many query rows copy each K/V tile into padded rows once
 * (kp, vp) for all their products; smaller ones (decode) read it in place, once. */
#define PACK_ROWS 16

static geom make_geom(int H, int KV, int hd, int window, long kv_row_stride) {
    geom g = {.H = H, .G = H / KV, .hd = hd, .window = window};
    g.np = RQ / g.G > 1 ? RQ / g.G : 1;
    g.ld = pad_stride(g.np * g.G);
    g.hdp = pad_stride(hd);
    g.qdim = (long)H * hd;
    g.kvs = kv_row_stride;
    g.scale = 1.0f / sqrtf((float)hd);
    g.c2 = g.scale * LOG2E;
    size_t mq = (size_t)g.np * g.G, tile = (size_t)BK * g.ld, qt = (size_t)hd * g.ld, rows = mq * g.hdp;
    size_t kv = 2 * (size_t)BK * g.hdp; /* kp, vp */
    size_t fwd = qt + tile + rows + 3 * (size_t)g.ld + kv;
    size_t bwd = 2 * qt + 3 * rows + 2 * tile + 2 * (size_t)g.ld + kv;
    g.ws = (fwd > bwd ? fwd : bwd) + 16; /* + 16: room to align the start to 64 bytes */
    return g;
}

size_t rmu_attention_scratch_floats(int H, int KV, int hd, int nthreads) {
    return make_geom(H, KV, hd, 0, 0).ws * (size_t)(nthreads > 0 ? nthreads : 1);
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

/* Asks for the K/V rows of the next tile while this one computes (forward only: in
 * decode, reading the cache is most of the work). */
static void prefetch_tile(const geom *g, const float *k, const float *v, int j0, int nj) {
    for (int j = j0; j < j0 + nj; j++)
        for (int d = 0; d < g->hd; d += 16) {
            __builtin_prefetch(k + j * g->kvs + d, 0, 3);
            __builtin_prefetch(v + j * g->kvs + d, 0, 3);
        }
}

/* The K/V rows of tile [j0, j0+nj): in place (row stride kvs) or copied into kp/vp
 * [BK][hdp] (see PACK_ROWS). */
typedef struct {
    const float *k, *v;
    long rs;
} kv_tile;

static kv_tile load_tile(const geom *g, const blk *b, int j0, int nj, int pack, float *kp, float *vp) {
    const float *k = b->k + j0 * g->kvs, *v = b->v + j0 * g->kvs;
    if (!pack) return (kv_tile){k, v, g->kvs};
    for (int j = 0; j < nj; j++) {
        memcpy(kp + (size_t)j * g->hdp, k + j * g->kvs, sizeof(float) * g->hd);
        memcpy(vp + (size_t)j * g->hdp, v + j * g->kvs, sizeof(float) * g->hd);
    }
    return (kv_tile){kp, vp, g->hdp};
}

/* Sets st[j][i] = -inf where key j0+j is not visible from row i; only tiles that cross
 * the diagonal, the window edge or a pad need it. */
static void mask_tile(const geom *g, const blk *b, float *st, int ld, int j0, int nj, int pads) {
    int plast = b->p0 + b->np - 1;
    if (!pads && j0 + nj - 1 <= b->p0 && !(g->window > 0 && plast - j0 >= g->window)) return;
    for (int j = 0; j < nj; j++) {
        int kj = j0 + j, kreal = !b->mask || b->mask[kj];
        float *row = st + (size_t)j * ld;
        for (int pl = 0; pl < b->np; pl++) {
            int p = b->p0 + pl;
            int vis = kreal && kj <= p && (g->window <= 0 || p - kj < g->window) && (!b->mask || b->mask[p]);
            if (!vis)
                for (int h = 0; h < g->G; h++) row[pl * g->G + h] = -INFINITY;
        }
    }
}

/* Forward of one block. A query row's output does not depend on the block it is in (the
 * other rows, p0, np): tiles sit on multiples of BK whatever the block's first visible key
 * (keys before it are masked), every kernel treats rows alike, and keys a row does not see
 * contribute exact zeros. So a row computed in a decode step, a prefill chunk of any size
 * or a training batch is the same bits (rmu serve's batch invariance relies on it).
 * ws: qt[hd][ld] (queries x log2(e)/sqrt(hd), transposed), st[BK][ld] (scores, then
 * probabilities), o[mq][hdp] (unnormalised output), m, l, corr [ld] (running max, sum,
 * rescale factor), kp, vp [BK][hdp]. out rows / lse entries of pad queries get 0. */
static void fwd_block(const rmu_att_kernels *kr, const geom *g, const blk *b, float *ws) {
    /* ni: this block's rows rounded up to whole vectors (columns of the score tiles); ld:
     * their row stride */
    int mq = b->np * g->G, ni = (mq + 7) & ~7, ld = pad_stride(mq), hd = g->hd, hdp = g->hdp;
    float *qt = ws, *st = qt + (size_t)hd * ld, *o = st + (size_t)BK * ld, *m = o + (size_t)mq * hdp, *l = m + ld,
          *corr = l + ld, *kp = corr + ld, *vp = kp + (size_t)BK * hdp;
    int npad = count_pad_queries(b);
    if (npad < b->np) {
        kr->transpose(mq, hd, b->q, g->G, g->qdim, hd, g->c2, qt, ld);
        for (int i = 0; i < ni; i++) {
            m[i] = -INFINITY;
            l[i] = 0;
        }
        memset(o, 0, sizeof(float) * mq * hdp);
        int plast = b->p0 + b->np - 1;
        for (int j0 = first_key(g, b) / BK * BK; j0 <= plast; j0 += BK) {
            int nj = plast - j0 + 1 < BK ? plast - j0 + 1 : BK, kpad;
            if (j0 + BK <= plast) prefetch_tile(g, b->k, b->v, j0 + BK, plast - j0 - BK + 1 < BK ? plast - j0 - BK + 1 : BK);
            if (!tile_has_real_keys(b, j0, nj, &kpad)) continue;
            kv_tile t = load_tile(g, b, j0, nj, mq >= PACK_ROWS, kp, vp);
            /* st[j][i] = k_j . q_i (log2 units) */
            kr->gemm(nj, ni, hd, t.k, t.rs, 1, qt, ld, st, ld, 0);
            mask_tile(g, b, st, ld, j0, nj, kpad || npad);
            kr->softmax(nj, ni, st, ld, m, l, corr);
            for (int i = 0; i < mq; i++)
                if (corr[i] != 1.0f) kr->scale(o + (size_t)i * hdp, o + (size_t)i * hdp, hd, corr[i]);
            /* o[i] += sum_j p[j][i] v_j */
            kr->gemm(mq, hd, nj, st, 1, ld, t.v, t.rs, o, hdp, 1);
        }
    }
    for (int i = 0; i < mq; i++) {
        float *orow = b->o + roff(g, i);
        int real = npad < b->np && l[i] > 0;
        if (real) kr->scale(orow, o + (size_t)i * hdp, hd, 1.0f / l[i]);
        else memset(orow, 0, sizeof(float) * hd);
        if (b->lse) b->lse[loff(g, i)] = real ? (m[i] + log2f(l[i])) * LN2 : 0.0f;
    }
}

/* Backward of one block; dk/dv of the sequence accumulate, dq rows of the block are
 * written. ws: qst[hd][ld] (as qt above), qb[mq][hdp] (q / sqrt(hd)), dot[hd][ld] (dout
 * transposed), dob[mq][hdp] (dout), st and dpt [BK][ld] (p and dp, then ds), dqb[mq][hdp],
 * lse2 and D [ld] (lse in log2 units; D_i = dout_i . out_i = sum_j p_ij dp_ij). */
static void bwd_block(const rmu_att_kernels *kr, const geom *g, const blk *b, float *ws) {
    /* ni: this block's rows rounded up to whole vectors (columns of the score tiles); ld:
     * their row stride */
    int mq = b->np * g->G, ni = (mq + 7) & ~7, ld = pad_stride(mq), hd = g->hd, hdp = g->hdp;
    size_t qt = (size_t)hd * ld, rows = (size_t)mq * hdp, tile = (size_t)BK * ld;
    float *qst = ws, *qb = qst + qt, *dot = qb + rows, *dob = dot + qt, *st = dob + rows, *dpt = st + tile,
          *dqb = dpt + tile, *lse2 = dqb + rows, *D = lse2 + ld, *kp = D + ld, *vp = kp + (size_t)BK * hdp;
    int npad = count_pad_queries(b);
    if (npad < b->np) {
        kr->transpose(mq, hd, b->q, g->G, g->qdim, hd, g->c2, qst, ld);
        kr->transpose(mq, hd, b->dout, g->G, g->qdim, hd, 1.0f, dot, ld);
        for (int i = 0; i < ni; i++) {
            lse2[i] = D[i] = 0;
            if (i >= mq) continue;
            const float *qr = b->q + roff(g, i), *dr = b->dout + roff(g, i);
            kr->scale(qb + (size_t)i * hdp, qr, hd, g->scale);
            memcpy(dob + (size_t)i * hdp, dr, sizeof(float) * hd);
            D[i] = kr->dot(dr, b->out + roff(g, i), hd);
            lse2[i] = b->lse_in[loff(g, i)] * LOG2E;
        }
        memset(dqb, 0, sizeof(float) * rows);
        int plast = b->p0 + b->np - 1;
        for (int j0 = first_key(g, b); j0 <= plast; j0 += BK) {
            int nj = plast - j0 + 1 < BK ? plast - j0 + 1 : BK, kpad;
            if (!tile_has_real_keys(b, j0, nj, &kpad)) continue;
            kv_tile t = load_tile(g, b, j0, nj, mq >= PACK_ROWS, kp, vp);
            kr->gemm(nj, ni, hd, t.k, t.rs, 1, qst, ld, st, ld, 0);  /* s[j][i] */
            mask_tile(g, b, st, ld, j0, nj, kpad || npad);
            kr->gemm(nj, ni, hd, t.v, t.rs, 1, dot, ld, dpt, ld, 0); /* dp[j][i] = v_j . dout_i */
            kr->dsoftmax(nj, ni, st, dpt, ld, lse2, D);                 /* p, ds */
            /* dv_j += sum_i p[j][i] dout_i; dk_j += sum_i ds[j][i] q_i / sqrt(hd);
             * dq_i += sum_j ds[j][i] k_j (times 1/sqrt(hd) at the end) */
            kr->gemm(nj, hd, mq, st, ld, 1, dob, hdp, b->dv + j0 * g->kvs, g->kvs, 1);
            kr->gemm(nj, hd, mq, dpt, ld, 1, qb, hdp, b->dk + j0 * g->kvs, g->kvs, 1);
            kr->gemm(mq, hd, nj, dpt, 1, ld, t.k, t.rs, dqb, hdp, 1);
        }
    } else {
        memset(dqb, 0, sizeof(float) * rows);
    }
    for (int i = 0; i < mq; i++) kr->scale(b->dq + roff(g, i), dqb + (size_t)i * hdp, hd, g->scale);
}

/* ---- the three entry points */

/* Threads only for enough work: a parallel region costs microseconds, and tiny models
 * run attention thousands of times a second. */
static int worth_threads(double rows, double keys, int hd) { return rows * keys * hd > 2e5; }

void rmu_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v, const int *mask,
                           int B, int T, int H, int KV, int hd, int window, float *scratch, int nthreads) {
    const rmu_att_kernels *kr = pick_kernels();
    geom g = make_geom(H, KV, hd, window, (long)KV * hd);
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
                 .k = k + seq * g.kvs + (size_t)kvh * hd,
                 .v = v + seq * g.kvs + (size_t)kvh * hd,
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
    geom g = make_geom(H, KV, hd, window, (long)KV * hd);
    int nb = (T + g.np - 1) / g.np, span = window > 0 && window < T ? window : T;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) if (worth_threads((double)B * T * H, span, hd))
    for (int t = 0; t < B * KV; t++) {
        int kvh = t % KV, s = t / KV;
        size_t seq = (size_t)s * T;
        float *dkb = dk + seq * g.kvs + (size_t)kvh * hd, *dvb = dv + seq * g.kvs + (size_t)kvh * hd;
        for (int j = 0; j < T; j++) {
            memset(dkb + j * g.kvs, 0, sizeof(float) * hd);
            memset(dvb + j * g.kvs, 0, sizeof(float) * hd);
        }
        float *ws = thread_ws(scratch, &g);
        for (int qb = 0; qb < nb; qb++) {
            size_t r0 = seq + (size_t)qb * g.np, qoff = r0 * g.qdim + (size_t)kvh * g.G * hd;
            blk b = {.q = q + qoff, .out = out + qoff, .dout = dout + qoff, .dq = dq + qoff,
                     .lse_in = lse + r0 * H + (size_t)kvh * g.G,
                     .k = k + seq * g.kvs + (size_t)kvh * hd, .v = v + seq * g.kvs + (size_t)kvh * hd,
                     .dk = dkb, .dv = dvb,
                     .mask = mask ? mask + seq : NULL,
                     .p0 = qb * g.np,
                     .np = T - qb * g.np < g.np ? T - qb * g.np : g.np};
            bwd_block(kr, &g, &b, ws);
        }
    }
}

void rmu_attention_cached_forward(float *out, const float *q, const float *kc, const float *vc, int cap, int N,
                                  int pos0, int H, int KV, int hd, int window, float *scratch, int nthreads) {
    const rmu_att_kernels *kr = pick_kernels();
    geom g = make_geom(H, KV, hd, window, hd);
    int nb = (N + g.np - 1) / g.np, ntask = KV * nb;
    int span = window > 0 && window < pos0 + N ? window : pos0 + N;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) if (worth_threads((double)N * H, span, hd))
    for (int t = 0; t < ntask; t++) {
        int qb = nb - 1 - t % nb, kvh = t / nb;
        size_t qoff = (size_t)qb * g.np * g.qdim + (size_t)kvh * g.G * hd, hoff = (size_t)kvh * cap * hd;
        blk b = {.q = q + qoff, .o = out + qoff,
                 .k = kc + hoff, .v = vc + hoff,
                 .p0 = pos0 + qb * g.np,
                 .np = N - qb * g.np < g.np ? N - qb * g.np : g.np};
        fwd_block(kr, &g, &b, thread_ws(scratch, &g));
    }
}

/* test_attention.c - the fused attention kernels (src/model/attention.c) against a
 * straightforward reference kept here: scores, softmax and gradients in double over the
 * visible keys, one query row at a time. Awkward shapes (T = 1, 7, 33, 130; windows
 * shorter and longer than T; MHA and GQA 4; head dims with and without a SIMD tail; left
 * padding and an all-pad sequence), both kernel paths (RMU_SIMD=portable and the CPU's),
 * and bit-identical results for 1 and 2 threads. Gradients are also checked against finite
 * differences in test_layers_grad.c. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "model/attention.h"
#include "testutil.h"

typedef struct {
    int B, T, H, KV, hd, window;
    const int *mask; /* [B*T] or NULL */
} shape;

static float *rnd(size_t n, uint64_t *s, float amp) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) p[i] = amp * tu_frand(s);
    return p;
}

static int visible(const shape *z, int b, int i, int j) {
    if (j > i || (z->window > 0 && i - j >= z->window)) return 0;
    return !z->mask || (z->mask[b * z->T + i] && z->mask[b * z->T + j]);
}

/* Reference forward and backward of one (sequence, head, query row) in double. Fills
 * out/lse; with dout, accumulates dq/dk/dv (double). */
static void ref_row(const shape *z, const float *q, const float *k, const float *v, int b, int h, int i, double *out,
                    double *lse, const float *dout, double *dq, double *dk, double *dv) {
    int T = z->T, hd = z->hd, H = z->H, KV = z->KV, g = h / (H / KV);
    size_t qi = ((size_t)(b * T + i) * H + h) * hd;
    double *s = malloc(sizeof(double) * T), mx = -INFINITY, sum = 0;
    for (int j = 0; j < T; j++) {
        s[j] = -INFINITY;
        if (!visible(z, b, i, j)) continue;
        double d = 0;
        for (int c = 0; c < hd; c++) d += (double)q[qi + c] * k[((size_t)(b * T + j) * KV + g) * hd + c];
        s[j] = d / sqrt(hd);
        mx = fmax(mx, s[j]);
    }
    for (int c = 0; c < hd; c++) out[c] = 0;
    *lse = 0;
    if (mx == -INFINITY) { /* nothing visible: a pad query */
        free(s);
        return;
    }
    for (int j = 0; j < T; j++) sum += s[j] > -INFINITY ? exp(s[j] - mx) : 0;
    *lse = mx + log(sum);
    for (int j = 0; j < T; j++) {
        if (s[j] == -INFINITY) continue;
        double p = exp(s[j] - *lse);
        for (int c = 0; c < hd; c++) out[c] += p * v[((size_t)(b * T + j) * KV + g) * hd + c];
    }
    if (dout) {
        const float *dO = dout + qi;
        double D = 0;
        for (int c = 0; c < hd; c++) D += dO[c] * out[c];
        for (int j = 0; j < T; j++) {
            if (s[j] == -INFINITY) continue;
            size_t kj = ((size_t)(b * T + j) * KV + g) * hd;
            double p = exp(s[j] - *lse), dp = 0;
            for (int c = 0; c < hd; c++) dp += dO[c] * v[kj + c];
            double ds = p * (dp - D) / sqrt(hd);
            for (int c = 0; c < hd; c++) {
                dq[qi + c] += ds * k[kj + c];
                dk[kj + c] += ds * q[qi + c];
                dv[kj + c] += p * dO[c];
            }
        }
    }
    free(s);
}

/* |got - ref| <= tol * (max |ref| over the tensor + 0.1): fp32 rounding of sums of up to
 * T terms of order 1, measured against the tensor's scale (+ 0.1 for tensors that are
 * all but zero, such as dq with a single visible key). */
static void expect_close(const char *what, const float *got, const double *ref, size_t n, double tol) {
    double mx = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(ref[i]));
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) fail_msg("%s[%zu] = %g is not finite", what, i, got[i]);
        if (fabs(got[i] - ref[i]) > tol * (mx + 0.1))
            fail_msg("%s[%zu]: got %.9g, reference %.9g (max |ref| %.3g)", what, i, got[i], ref[i], mx);
    }
}

typedef struct {
    float *q, *k, *v, *dout, *out, *lse, *dq, *dk, *dv, *scr;
} bufs;

static void run_fused(const shape *z, bufs *x, int nth) {
    size_t nk = (size_t)z->B * z->T * z->KV * z->hd;
    rmu_attention_forward(x->out, x->lse, x->q, x->k, x->v, z->mask, z->B, z->T, z->H, z->KV, z->hd, z->window,
                          x->scr, nth);
    for (size_t i = 0; i < nk; i++) x->dk[i] = x->dv[i] = NAN; /* outputs are overwritten */
    rmu_attention_backward(x->dq, x->dk, x->dv, x->dout, x->q, x->k, x->v, x->out, x->lse, z->mask, z->B, z->T, z->H,
                           z->KV, z->hd, z->window, x->scr, nth);
}

/* Fused forward + backward against the reference, then 1 vs 2 threads bit for bit. */
static void check_shape(const shape *z, uint64_t seed) {
    size_t rows = (size_t)z->B * z->T, nq = rows * z->H * z->hd, nk = rows * z->KV * z->hd;
    uint64_t s = seed;
    bufs x = {.q = rnd(nq, &s, 1.5f), .k = rnd(nk, &s, 1.5f), .v = rnd(nk, &s, 1), .dout = rnd(nq, &s, 1)};
    x.out = malloc(sizeof(float) * nq), x.lse = malloc(sizeof(float) * rows * z->H);
    x.dq = malloc(sizeof(float) * nq), x.dk = malloc(sizeof(float) * nk), x.dv = malloc(sizeof(float) * nk);
    x.scr = malloc(sizeof(float) * rmu_attention_scratch_floats(z->H, z->KV, z->hd, 2));
    double *ro = calloc(nq, sizeof(double)), *rl = calloc(rows * z->H, sizeof(double));
    double *rdq = calloc(nq, sizeof(double)), *rdk = calloc(nk, sizeof(double)), *rdv = calloc(nk, sizeof(double));
    for (int b = 0; b < z->B; b++)
        for (int h = 0; h < z->H; h++)
            for (int i = 0; i < z->T; i++) {
                size_t r = (size_t)b * z->T + i;
                ref_row(z, x.q, x.k, x.v, b, h, i, ro + (r * z->H + h) * z->hd, rl + r * z->H + h, x.dout, rdq, rdk,
                        rdv);
            }
    run_fused(z, &x, 1);
    expect_close("out", x.out, ro, nq, 2e-6);
    expect_close("lse", x.lse, rl, rows * z->H, 2e-6);
    expect_close("dq", x.dq, rdq, nq, 2e-5);
    expect_close("dk", x.dk, rdk, nk, 2e-5);
    expect_close("dv", x.dv, rdv, nk, 2e-5);
    if (z->mask) /* pad rows: exactly 0 out, lse and gradients */
        for (size_t r = 0; r < rows; r++) {
            if (z->mask[r]) continue;
            for (int c = 0; c < z->H * z->hd; c++) assert_true(x.out[r * z->H * z->hd + c] == 0);
            for (int c = 0; c < z->H * z->hd; c++) assert_true(x.dq[r * z->H * z->hd + c] == 0);
            for (int c = 0; c < z->KV * z->hd; c++) assert_true(x.dk[r * z->KV * z->hd + c] == 0);
            for (int c = 0; c < z->KV * z->hd; c++) assert_true(x.dv[r * z->KV * z->hd + c] == 0);
            for (int h = 0; h < z->H; h++) assert_true(x.lse[r * z->H + h] == 0);
        }
    /* two threads: the same bits */
    bufs y = x;
    y.out = malloc(sizeof(float) * nq), y.lse = malloc(sizeof(float) * rows * z->H);
    y.dq = malloc(sizeof(float) * nq), y.dk = malloc(sizeof(float) * nk), y.dv = malloc(sizeof(float) * nk);
    run_fused(z, &y, 2);
    assert_memory_equal(x.out, y.out, sizeof(float) * nq);
    assert_memory_equal(x.lse, y.lse, sizeof(float) * rows * z->H);
    assert_memory_equal(x.dq, y.dq, sizeof(float) * nq);
    assert_memory_equal(x.dk, y.dk, sizeof(float) * nk);
    assert_memory_equal(x.dv, y.dv, sizeof(float) * nk);
    free(y.out), free(y.lse), free(y.dq), free(y.dk), free(y.dv);
    free(x.q), free(x.k), free(x.v), free(x.dout), free(x.out), free(x.lse), free(x.dq), free(x.dk), free(x.dv);
    free(x.scr), free(ro), free(rl), free(rdq), free(rdk), free(rdv);
}

/* Left padding: sequence b gets pads[b] pad tokens first. */
static int *left_pad_mask(int B, int T, const int *pads) {
    int *m = malloc(sizeof(int) * B * T);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) m[b * T + t] = t >= pads[b];
    return m;
}

static void sweep(void) {
    static const int Ts[] = {1, 7, 33, 130};
    static const int heads[][2] = {{4, 4}, {8, 2}}; /* GQA ratios 1 and 4 */
    static const int hds[] = {16, 12};              /* 12: a head dim with a SIMD tail */
    int case_no = 0;
    for (int ti = 0; ti < 4; ti++)
        for (int hi = 0; hi < 2; hi++)
            for (int wi = 0; wi < 4; wi++) {
                int T = Ts[ti];
                /* no window, window 1, a window shorter than T, one longer than T */
                int windows[4] = {0, 1, T > 3 ? T / 3 : 2, T + 5};
                int hd = hds[(ti + wi) % 2];
                int pads[3] = {0, T / 2, T}; /* none, half, all: the last sequence is all pad */
                int *mask = wi % 2 ? left_pad_mask(3, T, pads) : NULL;
                shape z = {mask ? 3 : 2, T, heads[hi][0], heads[hi][1], hd, windows[wi], mask};
                check_shape(&z, 100 + case_no++);
                free(mask);
            }
}

static void test_training_native(void **st) {
    (void)st;
    unsetenv("RMU_SIMD");
    sweep();
}

static void test_training_portable(void **st) {
    (void)st;
    setenv("RMU_SIMD", "portable", 1);
    sweep();
    unsetenv("RMU_SIMD");
}

/* A Mistral-shaped head (hd 128, 32/8 heads) over more than one key tile and query block. */
static void test_training_mistral_head(void **st) {
    (void)st;
    int pads[2] = {0, 37};
    int *mask = left_pad_mask(2, 130, pads);
    shape z = {2, 130, 8, 2, 128, 100, mask};
    check_shape(&z, 7);
    free(mask);
}

/* The cached forward for queries pos0..pos0+N-1 (prefill chunks and decode) equals the
 * training forward's rows of a sequence of length pos0+N, 1 vs 2 threads agree, and every
 * row is bitwise the row of one call over the whole sequence, whatever the chunking (what
 * rmu serve's batch invariance needs: a decode row is a prefill row). */
static void check_cached(int H, int KV, int hd, int window, int ctx, const int *chunks, int nchunks, uint64_t seed) {
    uint64_t s = seed;
    size_t qd = (size_t)H * hd, kvd = (size_t)KV * hd;
    float *q = rnd(ctx * qd, &s, 1.5f), *k = rnd(ctx * kvd, &s, 1.5f), *v = rnd(ctx * kvd, &s, 1);
    float *out = malloc(sizeof(float) * ctx * qd), *out2 = malloc(sizeof(float) * ctx * qd);
    float *whole = malloc(sizeof(float) * ctx * qd);
    float *scr = malloc(sizeof(float) * rmu_attention_scratch_floats(H, KV, hd, 2));
    double *ref = calloc((size_t)ctx * qd, sizeof(double)), lse; /* calloc: GCC -O1 cannot see ref_row fill it */
    shape z = {1, ctx, H, KV, hd, window, NULL};
    for (int i = 0; i < ctx; i++)
        for (int h = 0; h < H; h++) ref_row(&z, q, k, v, 0, h, i, ref + ((size_t)i * H + h) * hd, &lse, NULL, 0, 0, 0);
    int pos = 0;
    for (int c = 0; pos < ctx; c++) { /* the chunk sizes repeat until the context is full */
        int n = chunks[c % nchunks] < ctx - pos ? chunks[c % nchunks] : ctx - pos;
        /* head-major cache [KV, cap, hd] holding keys 0..pos+n-1; later rows must not be
         * read: poison them */
        int cap = ctx + 3;
        float *kc = malloc(sizeof(float) * KV * cap * hd), *vc = malloc(sizeof(float) * KV * cap * hd);
        for (int h = 0; h < KV; h++)
            for (int j = 0; j < cap; j++)
                for (int d = 0; d < hd; d++) {
                    size_t at = ((size_t)h * cap + j) * hd + d, from = (size_t)j * kvd + (size_t)h * hd + d;
                    kc[at] = j < pos + n ? k[from] : NAN;
                    vc[at] = j < pos + n ? v[from] : NAN;
                }
        rmu_attention_cached_forward(out + pos * qd, q + pos * qd, kc, vc, cap, n, pos, H, KV, hd, window, scr, 1);
        rmu_attention_cached_forward(out2 + pos * qd, q + pos * qd, kc, vc, cap, n, pos, H, KV, hd, window, scr, 2);
        assert_memory_equal(out + pos * qd, out2 + pos * qd, sizeof(float) * n * qd);
        if (pos + n == ctx) rmu_attention_cached_forward(whole, q, kc, vc, cap, ctx, 0, H, KV, hd, window, scr, 2);
        free(kc), free(vc);
        pos += n;
    }
    expect_close("cached out", out, ref, ctx * qd, 2e-6);
    for (int i = 0; i < ctx; i++)
        if (memcmp(out + i * qd, whole + i * qd, sizeof(float) * qd))
            fail_msg("H %d KV %d hd %d window %d: row %d differs from the one-call row", H, KV, hd, window, i);
    free(q), free(k), free(v), free(out), free(out2), free(whole), free(scr), free(ref);
}

static void cached_cases(void) {
    int prefill_then_decode[] = {33, 1, 1, 1, 1, 1, 1, 1}; /* a chunk then 7 decode steps */
    int ragged[] = {7, 64, 1, 29, 1};
    int one_by_one[130];
    for (int i = 0; i < 130; i++) one_by_one[i] = 1;
    check_cached(4, 4, 16, 0, 40, prefill_then_decode, 8, 1);
    check_cached(8, 2, 12, 9, 102, ragged, 5, 2);
    check_cached(8, 2, 16, 0, 130, one_by_one, 130, 3);
    check_cached(32, 8, 128, 50, 130, ragged, 5, 4);
    int whole[] = {130};
    check_cached(8, 2, 16, 17, 130, whole, 1, 5);
}

static void test_cached_native(void **st) {
    (void)st;
    unsetenv("RMU_SIMD");
    cached_cases();
}

static void test_cached_portable(void **st) {
    (void)st;
    setenv("RMU_SIMD", "portable", 1);
    cached_cases();
    unsetenv("RMU_SIMD");
}

/* The scratch a caller sizes does not grow with the sequence. */
static void test_scratch_size(void **st) {
    (void)st;
    size_t one = rmu_attention_scratch_floats(32, 8, 128, 1);
    assert_true(one > 0);
    assert_true(rmu_attention_scratch_floats(32, 8, 128, 4) == 4 * one);
    assert_true(rmu_attention_scratch_floats(8, 2, 16, 1) < one);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_training_native),  cmocka_unit_test(test_training_portable),
        cmocka_unit_test(test_training_mistral_head), cmocka_unit_test(test_cached_native),
        cmocka_unit_test(test_cached_portable),  cmocka_unit_test(test_scratch_size),
    };
    return cmocka_run_group_tests_name("attention", tests, NULL, NULL);
}

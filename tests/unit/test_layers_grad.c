/* test_layers_grad.c - every *_backward in src/model/layers.c and attention.c against central finite
 * differences of its *_forward. The scalar loss is L = sum_i R_i out_i with fixed random R
 * (so dL/dout = R), summed in double; central differences with a step that balances fp32
 * rounding against truncation error, compared with a relative + absolute tolerance. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <omp.h>

#include "model/attention.h"
#include "model/layers.h"
#include "testutil.h"

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) / (double)(1 << 24) * 2.0 - 1.0);
}

static float *rnd(size_t n, uint64_t *s, float amp) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) p[i] = amp * frand(s);
    return p;
}

static double dotd(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* A forward closure: recomputes the loss from whatever the test perturbed. */
typedef double (*loss_fn)(void *ctx);

/* Compares analytic grad g[n] of parameter p[n] with central differences of f. */
static void check_fd(const char *what, loss_fn f, void *ctx, float *p, const float *g, size_t n, float h,
                     double rtol, double atol) {
    double gmax = 0;
    for (size_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(g[i]));
    /* at most ~256 probes per tensor (a prime stride covers rows and columns) */
    size_t stride = n > 256 ? n / 256 | 1 : 1;
    if (stride > 1 && stride % 7 == 0) stride += 2;
    for (size_t i = 0; i < n; i += stride) {
        float p0 = p[i];
        p[i] = p0 + h;
        double lp = f(ctx);
        p[i] = p0 - h;
        double lm = f(ctx);
        p[i] = p0;
        double num = (lp - lm) / ((double)(p0 + h) - (double)(p0 - h));
        double err = fabs(num - g[i]);
        if (err > rtol * fmax(fabs(num), fabs(g[i])) + atol * (gmax + 1e-3))
            fail_msg("%s[%zu]: analytic %.7g vs finite difference %.7g (max |g| %.3g)", what, i, g[i], num, gmax);
    }
}

static rmu_weight f32w(float *data, int64_t rows, int64_t cols) {
    return (rmu_weight){.data = data, .dtype = RMU_DT_F32, .rows = rows, .cols = cols};
}

/* ---- embedding */
typedef struct {
    float *E, *out, *R;
    int *ids;
    int N, V, C;
} emb_ctx;

static double emb_loss(void *c) {
    emb_ctx *x = c;
    rmu_weight w = f32w(x->E, x->V, x->C);
    rmu_embedding_forward(x->out, x->ids, x->N, &w);
    return dotd(x->out, x->R, (size_t)x->N * x->C);
}

static void test_embedding(void **st) {
    (void)st;
    uint64_t s = 1;
    emb_ctx x = {.N = 9, .V = 6, .C = 70};
    int ids[9] = {0, 3, 3, 5, 1, 3, 0, 2, 5};
    x.ids = ids;
    x.E = rnd((size_t)x.V * x.C, &s, 1);
    x.R = rnd((size_t)x.N * x.C, &s, 1);
    x.out = calloc((size_t)x.N * x.C, sizeof(float));
    float *dE = calloc((size_t)x.V * x.C, sizeof(float));
    rmu_embedding_backward(dE, x.R, ids, x.N, x.C);
    check_fd("dE", emb_loss, &x, x.E, dE, (size_t)x.V * x.C, 1e-2f, 1e-3, 1e-4);
    /* negative ids (padding) are skipped */
    int skip_ids[2] = {-1, 4};
    memset(dE, 0, sizeof(float) * x.V * x.C);
    rmu_embedding_backward(dE, x.R, skip_ids, 2, x.C);
    for (int c = 0; c < x.C; c++) assert_true(dE[4 * x.C + c] == x.R[x.C + c]);
    free(x.E), free(x.R), free(x.out), free(dE);
}

/* ---- RMSNorm */
typedef struct {
    float *x, *w, *out, *rstd, *R;
    int N, C;
} rms_ctx;

static double rms_loss(void *c) {
    rms_ctx *x = c;
    rmu_weight w = f32w(x->w, 1, x->C);
    rmu_rmsnorm_forward(x->out, x->rstd, x->x, &w, x->N, x->C, 1e-5f);
    return dotd(x->out, x->R, (size_t)x->N * x->C);
}

static void test_rmsnorm(void **st) {
    (void)st;
    uint64_t s = 2;
    rms_ctx x = {.N = 5, .C = 67};
    size_t n = (size_t)x.N * x.C;
    x.x = rnd(n, &s, 1.5f);
    x.w = rnd(x.C, &s, 1);
    x.R = rnd(n, &s, 1);
    x.out = malloc(sizeof(float) * n);
    x.rstd = malloc(sizeof(float) * x.N);
    rms_loss(&x);
    float *dx = malloc(sizeof(float) * n), *dw = malloc(sizeof(float) * x.C);
    /* dx and dw accumulate: start from known values and subtract them afterwards */
    for (size_t i = 0; i < n; i++) dx[i] = 0.25f;
    for (int i = 0; i < x.C; i++) dw[i] = -0.5f;
    rmu_weight w = f32w(x.w, 1, x.C);
    rmu_rmsnorm_backward(dx, dw, x.R, x.x, x.rstd, &w, x.N, x.C);
    for (size_t i = 0; i < n; i++) dx[i] -= 0.25f;
    for (int i = 0; i < x.C; i++) dw[i] += 0.5f;
    check_fd("rmsnorm dx", rms_loss, &x, x.x, dx, n, 2e-3f, 2e-3, 2e-4);
    check_fd("rmsnorm dw", rms_loss, &x, x.w, dw, x.C, 2e-3f, 2e-3, 2e-4);
    free(x.x), free(x.w), free(x.R), free(x.out), free(x.rstd), free(dx), free(dw);
}

/* ---- linear */
typedef struct {
    float *x, *W, *y, *R;
    int N, in, out;
} lin_ctx;

static double lin_loss(void *c) {
    lin_ctx *x = c;
    rmu_weight w = f32w(x->W, x->out, x->in);
    rmu_err e;
    if (rmu_linear_forward(x->y, x->x, &w, x->N, 0, RMU_PREC_FP32, &e)) fail_msg("%s", e.msg);
    return dotd(x->y, x->R, (size_t)x->N * x->out);
}

static void test_linear(void **st) {
    (void)st;
    /* shapes around the gemm blocking (256-deep K blocks, 32-wide panels, 8-row tiles) */
    static const int shapes[][3] = {{3, 5, 7}, {9, 40, 33}, {17, 70, 300}};
    for (int t = 0; t < 3; t++) {
        uint64_t s = 3 + t;
        lin_ctx x = {.N = shapes[t][0], .in = shapes[t][1], .out = shapes[t][2]};
        x.x = rnd((size_t)x.N * x.in, &s, 1);
        x.W = rnd((size_t)x.out * x.in, &s, 0.3f);
        x.R = rnd((size_t)x.N * x.out, &s, 1);
        x.y = malloc(sizeof(float) * x.N * x.out);
        float *dx = malloc(sizeof(float) * x.N * x.in), *dW = calloc((size_t)x.out * x.in, sizeof(float));
        rmu_weight w = f32w(x.W, x.out, x.in);
        for (int i = 0; i < x.N * x.in; i++) dx[i] = 123; /* beta 0 overwrites */
        rmu_err e;
        OK(rmu_linear_backward(dx, 0, dW, x.R, x.x, &w, x.N, RMU_PREC_FP32, &e));
        check_fd("linear dx", lin_loss, &x, x.x, dx, (size_t)x.N * x.in, 1e-2f, 1e-3, 1e-4);
        check_fd("linear dW", lin_loss, &x, x.W, dW, (size_t)x.out * x.in, 1e-2f, 1e-3, 1e-4);
        /* beta 1 accumulates; dW accumulates */
        float *dx2 = malloc(sizeof(float) * x.N * x.in), *dW2 = malloc(sizeof(float) * x.out * x.in);
        memcpy(dx2, dx, sizeof(float) * x.N * x.in);
        memcpy(dW2, dW, sizeof(float) * x.out * x.in);
        OK(rmu_linear_backward(dx2, 1, dW2, x.R, x.x, &w, x.N, RMU_PREC_FP32, &e));
        for (int i = 0; i < x.N * x.in; i++) assert_float_equal(dx2[i], 2 * dx[i], 1e-5 * (1 + fabs(dx[i])));
        for (int i = 0; i < x.out * x.in; i++) assert_float_equal(dW2[i], 2 * dW[i], 1e-5 * (1 + fabs(dW[i])));
        /* a bf16 weight: dx = dy W with the rounded weight values (fp32 precision), and
         * with dy rounded to bf16 too (bf16 precision, the default for BF16 weights) */
        uint16_t *wb = malloc(2 * (size_t)x.out * x.in);
        rmu_from_f32(wb, x.W, RMU_DT_BF16, (size_t)x.out * x.in);
        rmu_weight wbf = {.data = wb, .dtype = RMU_DT_BF16, .rows = x.out, .cols = x.in};
        for (int bf = 0; bf < 2; bf++) {
            OK(rmu_linear_backward(dx2, 0, NULL, x.R, x.x, &wbf, x.N, bf ? RMU_PREC_AUTO : RMU_PREC_FP32, &e));
            for (int n = 0; n < x.N; n++)
                for (int i = 0; i < x.in; i++) {
                    double ref = 0;
                    for (int o = 0; o < x.out; o++) {
                        float r = x.R[n * x.out + o];
                        ref += (double)(bf ? rmu_bf16_to_f32(rmu_f32_to_bf16(r)) : r) *
                               rmu_bf16_to_f32(wb[(size_t)o * x.in + i]);
                    }
                    assert_float_equal(dx2[n * x.in + i], ref, 1e-4 * (1 + fabs(ref)));
                }
        }
        free(wb), free(dx2), free(dW2);
        free(x.x), free(x.W), free(x.R), free(x.y), free(dx), free(dW);
    }
}

/* ---- RoPE */
typedef struct {
    float *x, *y, *R, *cs, *sn;
    int *pos;
    int N, nh, hd;
} rope_ctx;

static double rope_loss(void *c) {
    rope_ctx *x = c;
    size_t n = (size_t)x->N * x->nh * x->hd;
    memcpy(x->y, x->x, sizeof(float) * n);
    rmu_rope_forward(x->y, x->pos, x->N, x->nh, x->hd, x->cs, x->sn);
    return dotd(x->y, x->R, n);
}

static void test_rope(void **st) {
    (void)st;
    uint64_t s = 7;
    rope_ctx x = {.N = 6, .nh = 3, .hd = 8};
    int pos[6] = {0, 1, 2, 5, 9, 3};
    x.pos = pos;
    size_t n = (size_t)x.N * x.nh * x.hd;
    x.cs = malloc(sizeof(float) * 10 * x.hd / 2);
    x.sn = malloc(sizeof(float) * 10 * x.hd / 2);
    rmu_rope_table(x.cs, x.sn, 10, x.hd, 10000.0f);
    x.x = rnd(n, &s, 1);
    x.R = rnd(n, &s, 1);
    x.y = malloc(sizeof(float) * n);
    float *dx = malloc(sizeof(float) * n);
    memcpy(dx, x.R, sizeof(float) * n);
    rmu_rope_backward(dx, pos, x.N, x.nh, x.hd, x.cs, x.sn);
    check_fd("rope dx", rope_loss, &x, x.x, dx, n, 1e-2f, 1e-3, 1e-4);
    free(x.cs), free(x.sn), free(x.x), free(x.R), free(x.y), free(dx);
}

/* ---- SwiGLU */
typedef struct {
    float *g, *u, *h, *R;
    size_t n;
} swi_ctx;

static double swi_loss(void *c) {
    swi_ctx *x = c;
    rmu_swiglu_forward(x->h, x->g, x->u, x->n);
    return dotd(x->h, x->R, x->n);
}

static void test_swiglu(void **st) {
    (void)st;
    uint64_t s = 8;
    swi_ctx x = {.n = 200};
    x.g = rnd(x.n, &s, 4);
    x.u = rnd(x.n, &s, 2);
    x.R = rnd(x.n, &s, 1);
    x.h = malloc(sizeof(float) * x.n);
    float *dg = malloc(sizeof(float) * x.n), *du = malloc(sizeof(float) * x.n);
    rmu_swiglu_backward(dg, du, x.R, x.g, x.u, x.n);
    check_fd("swiglu dgate", swi_loss, &x, x.g, dg, x.n, 2e-3f, 2e-3, 2e-4);
    check_fd("swiglu dup", swi_loss, &x, x.u, du, x.n, 2e-3f, 2e-3, 2e-4);
    /* dgate may alias dh */
    float *dh = malloc(sizeof(float) * x.n);
    memcpy(dh, x.R, sizeof(float) * x.n);
    rmu_swiglu_backward(dh, du, dh, x.g, x.u, x.n);
    for (size_t i = 0; i < x.n; i++) assert_true(dh[i] == dg[i]);
    free(x.g), free(x.u), free(x.R), free(x.h), free(dg), free(du), free(dh);
}

/* ---- attention: GQA, sliding window shorter than T, left padding in one row */
typedef struct {
    float *q, *k, *v, *out, *lse, *R, *scratch;
    int *mask;
    int B, T, H, KV, hd, window, nth;
} att_ctx;

static double att_loss(void *c) {
    att_ctx *x = c;
    rmu_attention_forward(x->out, x->lse, x->q, x->k, x->v, x->mask, x->B, x->T, x->H, x->KV, x->hd, x->window,
                          x->scratch, x->nth);
    return dotd(x->out, x->R, (size_t)x->B * x->T * x->H * x->hd);
}

static void att_case(int window, int use_mask) {
    uint64_t s = 11 + window;
    att_ctx x = {.B = 2, .T = 9, .H = 4, .KV = 2, .hd = 6, .window = window, .nth = omp_get_max_threads()};
    size_t nq = (size_t)x.B * x.T * x.H * x.hd, nk = (size_t)x.B * x.T * x.KV * x.hd;
    int mask[18] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1}; /* row 1: 3 pads */
    x.mask = use_mask ? mask : NULL;
    x.q = rnd(nq, &s, 1.5f);
    x.k = rnd(nk, &s, 1.5f);
    x.v = rnd(nk, &s, 1);
    x.R = rnd(nq, &s, 1);
    x.out = malloc(sizeof(float) * nq);
    x.lse = malloc(sizeof(float) * x.B * x.T * x.H);
    x.scratch = malloc(sizeof(float) * rmu_attention_scratch_floats(x.H, x.KV, x.hd, x.nth));
    att_loss(&x);
    for (size_t i = 0; i < nq; i++) assert_true(isfinite(x.out[i]));
    if (use_mask) /* pad query rows output exactly 0 */
        for (int t = 0; t < 3; t++)
            for (int i = 0; i < x.H * x.hd; i++) assert_true(x.out[(size_t)(x.T + t) * x.H * x.hd + i] == 0);
    float *dq = malloc(sizeof(float) * nq), *dk = malloc(sizeof(float) * nk), *dv = malloc(sizeof(float) * nk);
    for (size_t i = 0; i < nk; i++) dk[i] = dv[i] = NAN; /* outputs are overwritten */
    rmu_attention_backward(dq, dk, dv, x.R, x.q, x.k, x.v, x.out, x.lse, x.mask, x.B, x.T, x.H, x.KV, x.hd,
                           x.window, x.scratch, x.nth);
    check_fd("attention dq", att_loss, &x, x.q, dq, nq, 2e-3f, 3e-3, 3e-4);
    check_fd("attention dk", att_loss, &x, x.k, dk, nk, 2e-3f, 3e-3, 3e-4);
    check_fd("attention dv", att_loss, &x, x.v, dv, nk, 2e-3f, 3e-3, 3e-4);
    if (use_mask) /* pad keys get no gradient */
        for (int t = 0; t < 3; t++)
            for (int i = 0; i < x.KV * x.hd; i++) assert_true(dk[(size_t)(x.T + t) * x.KV * x.hd + i] == 0);
    free(x.q), free(x.k), free(x.v), free(x.R), free(x.out), free(x.lse), free(x.scratch);
    free(dq), free(dk), free(dv);
}

static void test_attention(void **st) {
    (void)st;
    att_case(0, 0);
    att_case(0, 1);
    att_case(4, 1);
    att_case(1, 1);
}

/* Attention against a direct reference: softmax over the visible keys in double. */
static void test_attention_reference(void **st) {
    (void)st;
    uint64_t s = 21;
    int B = 2, T = 10, H = 6, KV = 3, hd = 4, window = 3, nth = omp_get_max_threads();
    size_t nq = (size_t)B * T * H * hd, nk = (size_t)B * T * KV * hd;
    int mask[20] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1};
    float *q = rnd(nq, &s, 2), *k = rnd(nk, &s, 2), *v = rnd(nk, &s, 1), *out = malloc(sizeof(float) * nq);
    float *lse = malloc(sizeof(float) * B * T * H);
    float *scr = malloc(sizeof(float) * rmu_attention_scratch_floats(H, KV, hd, nth));
    rmu_attention_forward(out, lse, q, k, v, mask, B, T, H, KV, hd, window, scr, nth);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                if (!mask[b * T + i]) continue;
                double sc[16], mx = -1e300, sum = 0;
                int g = h / (H / KV);
                for (int j = 0; j <= i; j++) {
                    sc[j] = -1e300;
                    if (!mask[b * T + j] || i - j >= window) continue;
                    sc[j] = 0;
                    for (int d = 0; d < hd; d++)
                        sc[j] += (double)q[((size_t)(b * T + i) * H + h) * hd + d] *
                                 k[((size_t)(b * T + j) * KV + g) * hd + d];
                    sc[j] /= sqrt(hd);
                    mx = fmax(mx, sc[j]);
                }
                for (int j = 0; j <= i; j++) sum += sc[j] > -1e299 ? exp(sc[j] - mx) : 0;
                assert_float_equal(lse[(b * T + i) * H + h], mx + log(sum), 1e-5);
                for (int d = 0; d < hd; d++) {
                    double o = 0;
                    for (int j = 0; j <= i; j++)
                        if (sc[j] > -1e299) o += exp(sc[j] - mx) / sum * v[((size_t)(b * T + j) * KV + g) * hd + d];
                    assert_float_equal(out[((size_t)(b * T + i) * H + h) * hd + d], o, 1e-5);
                }
            }
    free(q), free(k), free(v), free(out), free(lse), free(scr);
}

/* ---- cross-entropy */
typedef struct {
    float *logits, *losses;
    int *t;
    int N, V;
} ce_ctx;

static double ce_loss(void *c) {
    ce_ctx *x = c;
    rmu_crossentropy_forward(x->losses, x->logits, x->t, x->N, x->V);
    double s = 0;
    for (int n = 0; n < x->N; n++) s += x->losses[n];
    return s * 0.5; /* scale 0.5 as the mean over 2 rows would */
}

static void test_crossentropy(void **st) {
    (void)st;
    uint64_t s = 31;
    int t[4] = {3, -1, 0, 9};
    ce_ctx x = {.N = 4, .V = 10, .t = t};
    x.logits = rnd(40, &s, 3);
    x.losses = malloc(sizeof(float) * 4);
    ce_loss(&x);
    assert_true(x.losses[1] == 0);
    double ref = -x.logits[3], z = 0;
    for (int i = 0; i < 10; i++) z += exp(x.logits[i]);
    ref += log(z);
    assert_float_equal(x.losses[0], ref, 1e-5);
    float *d = malloc(sizeof(float) * 40);
    rmu_crossentropy_backward(d, x.logits, t, 4, 10, 0.5f);
    for (int i = 10; i < 20; i++) assert_true(d[i] == 0);
    check_fd("crossentropy dlogits", ce_loss, &x, x.logits, d, 40, 2e-3f, 2e-3, 2e-4);
    /* in place */
    float *l2 = malloc(sizeof(float) * 40);
    memcpy(l2, x.logits, sizeof(float) * 40);
    rmu_crossentropy_backward(l2, l2, t, 4, 10, 0.5f);
    for (int i = 0; i < 40; i++) assert_true(l2[i] == d[i]);
    free(x.logits), free(x.losses), free(d), free(l2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedding), cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_linear),    cmocka_unit_test(test_rope),
        cmocka_unit_test(test_swiglu),    cmocka_unit_test(test_attention),
        cmocka_unit_test(test_attention_reference), cmocka_unit_test(test_crossentropy),
    };
    return cmocka_run_group_tests_name("layers_grad", tests, NULL, NULL);
}

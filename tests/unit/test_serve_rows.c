/* test_serve_rows.c - rmu_model_forward_rows, the batched forward of `rmu serve`: a row's
 * logits and K/V are bitwise the same computed alone (rmu_model_forward, what `rmu generate`
 * runs) and inside batches of 2..30 rows with other slots (products on both sides of the
 * GEMM's few-row threshold), whatever the prefill chunking (1-token chunks included), and
 * rows a decode step computed equal rows a prefill computes for the same tokens (so a
 * generated reply's cache is reusable as a prompt prefix). This is what makes greedy serving
 * batch-invariant. Also: the weight panels rmu_model_load makes give the logits of the stored
 * layout, bitwise, and a weight whose data is swapped after load is read from its new data. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"

#include "model/init.h"
#include "model/model.h"

#define NS 9   /* slots */
#define CTX 96

static rmu_model g_m;
static int g_V, g_hd;

static int setup(void **state) {
    if (tu_setup_tmp(state)) return -1;
    rmu_config c;
    rmu_err e;
    if (rmu_cfg_preset(&c, "tiny", &e)) return -1;
    /* w_down's K of 288 spans two 256-deep GEMM blocks; a window of 8 is crossed by the
     * prompts; bf16 weights exercise the conversions of both GEMM paths */
    c.intermediate_size = 288;
    c.sliding_window = 8;
    rmu_init_opts o = {.dtype = RMU_DT_BF16, .seed = 7, .shards = 1, .jitter_norms = 1};
    const char *dir = tu_path(*state, "m");
    if (rmu_init_model_opts(dir, &c, &o, &e) || rmu_model_load(&g_m, dir, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return -1;
    }
    g_V = g_m.cfg.vocab_size;
    g_hd = g_m.cfg.head_dim;
    return 0;
}

static int teardown(void **state) {
    rmu_model_free(&g_m);
    return tu_teardown_tmp(state);
}

/* Deterministic prompt k of length n. */
static void prompt(int k, int n, int *ids) {
    for (int i = 0; i < n; i++) ids[i] = 3 + (int)((k * 7919u + i * 104729u + (unsigned)(i * i) * 31u) % 500u);
}

static void init_states(rmu_state *s, int n, int max_batch) {
    rmu_err e;
    for (int i = 0; i < n; i++)
        if (rmu_state_init(&s[i], &g_m, CTX, max_batch, &e)) fail_msg("%s", e.msg);
}

static void free_states(rmu_state *s, int n) {
    for (int i = 0; i < n; i++) rmu_state_free(&s[i]);
}

/* K/V rows [0, pos) of two states are bitwise equal in every layer and head. */
static void assert_same_cache(const rmu_state *a, const rmu_state *b) {
    assert_int_equal(a->pos, b->pos);
    for (int l = 0; l < g_m.cfg.n_layers * g_m.cfg.n_kv_heads; l++) { /* [layer, kv head, ctx, hd] */
        size_t off = (size_t)l * CTX * g_hd, n = (size_t)a->pos * g_hd * sizeof(float);
        assert_memory_equal(a->kcache + off, b->kcache + off, n);
        assert_memory_equal(a->vcache + off, b->vcache + off, n);
    }
}

/* The reference for sequence k: prompt of plen tokens in one rmu_model_forward, then
 * `steps` greedy decode steps of one token each. logits [steps + 1, V]: after the prompt,
 * then after each fed token; ids [steps]: the fed tokens. */
static void reference(int k, int plen, int steps, float *logits, int *ids, rmu_state *out) {
    rmu_err e;
    int p[CTX];
    prompt(k, plen, p);
    if (rmu_state_init(out, &g_m, CTX, 512, &e)) fail_msg("%s", e.msg);
    if (rmu_model_forward(&g_m, out, p, plen, logits, 0, &e)) fail_msg("%s", e.msg);
    for (int t = 0; t < steps; t++) {
        const float *l = logits + (size_t)t * g_V;
        int best = 0;
        for (int v = 1; v < g_V; v++)
            if (l[v] > l[best]) best = v;
        ids[t] = best;
        if (rmu_model_forward(&g_m, out, &best, 1, logits + (size_t)(t + 1) * g_V, 0, &e)) fail_msg("%s", e.msg);
    }
}

/* Sequences with different prompt lengths run through forward_rows in batches whose mix
 * changes every step: prefills chunked in several ways (chunks of 2..9 rows) interleaved
 * with decode rows of the other slots; slots join late. Every logits row and every cache
 * equals the one-sequence reference bitwise. */
static void test_batches_equal_alone(void **state) {
    (void)state;
    enum { STEPS = 6 };
    static const int plen[NS] = {23, 2, 9, 5, 17, 3, 11, 7, 1};
    static const int chunk[NS] = {4, 2, 9, 2, 5, 3, 6, 7, 1}; /* prefill chunk per slot */
    static const int start[NS] = {0, 0, 1, 1, 2, 3, 3, 4, 5}; /* step at which a slot joins */
    float *ref = malloc(sizeof(float) * NS * (STEPS + 1) * g_V);
    int ids[NS][STEPS];
    rmu_state refst[NS], s[NS];
    for (int k = 0; k < NS; k++) reference(k, plen[k], STEPS, ref + (size_t)k * (STEPS + 1) * g_V, ids[k], &refst[k]);
    init_states(s, NS, 1);
    rmu_batch_ws ws;
    rmu_err e;
    if (rmu_batch_ws_init(&ws, &g_m, 64, NS, &e)) fail_msg("%s", e.msg);
    float *lg = malloc(sizeof(float) * NS * g_V);
    int fed[NS] = {0}, done[NS] = {0}, max_batch_rows = 0, saw_mixed = 0, saw_few = 0, saw_many = 0;
    for (int step = 0; step < 40; step++) {
        rmu_state *sl[NS];
        int toks[64], nr[NS], who[NS], ns = 0, nt = 0, nprefill = 0;
        /* alternate the slot order so a slot's row lands at different places of the batch */
        for (int j = 0; j < NS; j++) {
            int k = step % 2 ? NS - 1 - j : j;
            if (step < start[k] || done[k] > STEPS) continue;
            int p[CTX];
            prompt(k, plen[k], p);
            if (fed[k] < plen[k]) { /* prefill chunk (the last one may be a single token) */
                int n = plen[k] - fed[k] < chunk[k] ? plen[k] - fed[k] : chunk[k];
                memcpy(toks + nt, p + fed[k], sizeof(int) * n);
                nr[ns] = n;
                nprefill += n > 1;
            } else {
                toks[nt] = ids[k][done[k] - 1];
                nr[ns] = 1;
            }
            nt += nr[ns];
            sl[ns] = &s[k];
            who[ns++] = k;
        }
        if (ns == 0) break;
        if (ns > max_batch_rows) max_batch_rows = ns;
        saw_few |= ns > 1 && nt <= 8; /* products on the GEMM's few-row kernels ... */
        saw_many |= nt > 8;          /* ... and on its blocked path */
        saw_mixed |= nprefill > 0 && nprefill < ns;
        if (rmu_model_forward_rows(&g_m, sl, toks, nr, ns, lg, NULL, &ws, &e)) fail_msg("%s", e.msg);
        for (int i = 0; i < ns; i++) {
            int k = who[i];
            fed[k] += nr[i];
            if (fed[k] < plen[k]) continue;
            /* a finished prefill or a decode step: its last-row logits are reference row done[k] */
            const float *want = ref + ((size_t)k * (STEPS + 1) + done[k]) * g_V;
            if (memcmp(lg + (size_t)i * g_V, want, sizeof(float) * g_V))
                fail_msg("slot %d (prompt %d, chunk %d), output %d, step %d in a batch of %d slots: logits differ", k,
                         plen[k], chunk[k], done[k], step, ns);
            done[k]++;
        }
    }
    for (int k = 0; k < NS; k++) {
        assert_int_equal(done[k], STEPS + 1);
        assert_same_cache(&s[k], &refst[k]);
        /* decode rows = prefill rows: the prompt and the fed replies in one forward */
        int all[CTX], n = plen[k] + STEPS;
        prompt(k, plen[k], all);
        memcpy(all + plen[k], ids[k], sizeof(int) * STEPS);
        rmu_state one;
        init_states(&one, 1, 512);
        if (rmu_model_forward(&g_m, &one, all, n, NULL, 0, &e)) fail_msg("%s", e.msg);
        assert_same_cache(&one, &refst[k]);
        rmu_state_free(&one);
    }
    assert_true(max_batch_rows >= 8);
    assert_true(saw_few && saw_many);
    assert_true(saw_mixed);
    free(lg);
    free(ref);
    rmu_batch_ws_free(&ws);
    free_states(s, NS);
    free_states(refst, NS);
}

/* rmu_model_forward itself: any max_batch (chunking) gives the same logits and cache, and
 * want = 2 (every row) in forward_rows equals rmu_model_forward(all = 1). */
static void test_chunking_and_all_rows(void **state) {
    (void)state;
    enum { N = 41 };
    int p[N];
    prompt(3, N, p);
    static const int mbs[] = {512, 1, 2, 3, 4, 5, 8, 9, 40};
    int nmb = sizeof mbs / sizeof mbs[0];
    float *all0 = malloc(sizeof(float) * N * g_V), *all = malloc(sizeof(float) * N * g_V);
    rmu_state s0, s;
    rmu_err e;
    init_states(&s0, 1, mbs[0]);
    if (rmu_model_forward(&g_m, &s0, p, N, all0, 1, &e)) fail_msg("%s", e.msg);
    for (int i = 1; i < nmb; i++) {
        init_states(&s, 1, mbs[i]);
        if (rmu_model_forward(&g_m, &s, p, N, all, 1, &e)) fail_msg("%s", e.msg);
        if (memcmp(all, all0, sizeof(float) * N * g_V)) fail_msg("max_batch %d: all-row logits differ", mbs[i]);
        assert_same_cache(&s, &s0);
        rmu_state_free(&s);
    }
    /* forward_rows, want 2, in chunks of 6 beside a decoding slot */
    rmu_state a, other;
    init_states(&a, 1, 1);
    init_states(&other, 1, 1);
    int q[4];
    prompt(5, 4, q);
    if (rmu_model_forward(&g_m, &other, q, 4, NULL, 0, &e)) fail_msg("%s", e.msg);
    rmu_batch_ws ws;
    if (rmu_batch_ws_init(&ws, &g_m, 16, 2, &e)) fail_msg("%s", e.msg);
    float *lg = malloc(sizeof(float) * 8 * g_V);
    for (int i0 = 0; i0 < N;) {
        int n = N - i0 < 6 ? N - i0 : 6, toks[8], nr[2] = {1, n}, want[2] = {1, 2};
        rmu_state *sl[2] = {&other, &a};
        toks[0] = q[i0 % 4];
        memcpy(toks + 1, p + i0, sizeof(int) * n);
        if (rmu_model_forward_rows(&g_m, sl, toks, nr, 2, lg, want, &ws, &e)) fail_msg("%s", e.msg);
        if (memcmp(lg + g_V, all0 + (size_t)i0 * g_V, sizeof(float) * n * g_V))
            fail_msg("forward_rows want=2: rows %d..%d differ from rmu_model_forward(all)", i0, i0 + n - 1);
        i0 += n;
    }
    assert_same_cache(&a, &s0);
    free(lg);
    free(all);
    free(all0);
    rmu_batch_ws_free(&ws);
    rmu_state_free(&a);
    rmu_state_free(&other);
    rmu_state_free(&s0);
}

/* Logits of the last of n prompt tokens (k-th prompt) on model m. */
static void last_logits(rmu_model *m, int k, int n, float *logits) {
    rmu_state s;
    rmu_err e;
    int ids[CTX];
    prompt(k, n, ids);
    if (rmu_state_init(&s, m, CTX, CTX, &e) || rmu_model_forward(m, &s, ids, n, logits, 0, &e)) fail_msg("%s", e.msg);
    rmu_state_free(&s);
}

static void test_panels_follow_data(void **state) {
    rmu_model m2;
    rmu_err e;
    if (rmu_model_open(&m2, tu_path(*state, "m"), &e)) fail_msg("%s", e.msg);
    rmu_weight *w = &g_m.layers[0].w_up, *w2 = &m2.layers[0].w_up;
    if (!rmu_gemm_panels_used(RMU_DT_BF16)) print_message("note: this kernel path makes no BF16 panels\n");
    else assert_non_null(w->panels);
    assert_null(w2->panels);
    float *a = malloc(sizeof(float) * g_V), *b = malloc(sizeof(float) * g_V), *c = malloc(sizeof(float) * g_V);
    for (int n = 1; n <= 12; n += 11) { /* decode-sized and prefill-sized products */
        last_logits(&g_m, 3, n, a);
        last_logits(&m2, 3, n, b);
        assert_memory_equal(a, b, sizeof(float) * g_V);
    }
    /* swap w_up's data for a changed copy (same dtype: the panels would still "fit") */
    size_t numel = (size_t)w->rows * (size_t)w->cols;
    uint16_t *copy = malloc(2 * numel);
    memcpy(copy, w->data, 2 * numel);
    for (size_t i = 0; i < numel; i += 3) copy[i] ^= 0x8000; /* flip a third of the signs */
    const void *orig = w->data, *orig2 = w2->data;
    w->data = copy, w2->data = copy;
    last_logits(&g_m, 3, 12, c);
    last_logits(&m2, 3, 12, b);
    assert_memory_equal(c, b, sizeof(float) * g_V);
    assert_true(memcmp(a, c, sizeof(float) * g_V) != 0);
    w->data = orig, w2->data = orig2;
    last_logits(&g_m, 3, 12, c);
    assert_memory_equal(a, c, sizeof(float) * g_V);
    free(copy), free(a), free(b), free(c);
    rmu_model_free(&m2);
}

static void test_errors(void **state) {
    (void)state;
    rmu_state s[2];
    init_states(s, 2, 1);
    rmu_batch_ws ws;
    rmu_err e;
    if (rmu_batch_ws_init(&ws, &g_m, 4, 2, &e)) fail_msg("%s", e.msg);
    int toks[8] = {5, 6, 7, 8, 9, 10, 11, 12}, one[2] = {1, 1}, big[2] = {3, 3};
    rmu_state *same[2] = {&s[0], &s[0]}, *two[2] = {&s[0], &s[1]};
    assert_int_equal(rmu_model_forward_rows(&g_m, same, toks, one, 2, NULL, NULL, &ws, &e), -1);
    assert_non_null(strstr(e.msg, "twice"));
    assert_int_equal(rmu_model_forward_rows(&g_m, two, toks, big, 2, NULL, NULL, &ws, &e), -1);
    assert_non_null(strstr(e.msg, "rows"));
    assert_int_equal(rmu_model_forward_rows(&g_m, two, toks, one, 3, NULL, NULL, &ws, &e), -1);
    toks[1] = g_V;
    assert_int_equal(rmu_model_forward_rows(&g_m, two, toks, one, 2, NULL, NULL, &ws, &e), -1);
    assert_non_null(strstr(e.msg, "out of range"));
    s[1].pos = CTX;
    toks[1] = 4;
    assert_int_equal(rmu_model_forward_rows(&g_m, two, toks, one, 2, NULL, NULL, &ws, &e), -1);
    assert_non_null(strstr(e.msg, "context"));
    assert_int_equal(s[0].pos, 0); /* nothing ran */
    rmu_batch_ws_free(&ws);
    free_states(s, 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batches_equal_alone),
        cmocka_unit_test(test_chunking_and_all_rows),
        cmocka_unit_test(test_panels_follow_data),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

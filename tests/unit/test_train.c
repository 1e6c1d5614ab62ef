/* test_train.c - the training engine: tensor-name patterns, AdamW / clipping / schedules
 * against their written-out formulas, corpus reading and packing, and the trainer on a
 * tiny random model: training forward == inference forward, left-padding invariance,
 * whole-model gradients vs finite differences, the layer-range API == the one-call step,
 * frozen vs live weights, bit-identical gradients for 1 and 2 threads, selective training. */
#include <math.h>
#include <omp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "testutil.h"

#include "core/fileio.h"
#include "model/config.h"
#include "model/init.h"
#include "model/model.h"
#include "train/adamw.h"
#include "train/data.h"
#include "train/glob.h"
#include "train/trainer.h"
#include "train/unlearn.h"

/* ---------------------------------------------------------------- glob */

static void test_glob(void **st) {
    (void)st;
    rmu_glob g;
    rmu_err e;
    assert_int_equal(rmu_glob_compile(&g, "model.layers.{5,6,7}.mlp.down_proj.weight", &e), 0);
    assert_int_equal(g.n, 3);
    assert_string_equal(g.pats[1], "model.layers.6.mlp.down_proj.weight");
    assert_true(rmu_glob_match(&g, "model.layers.7.mlp.down_proj.weight"));
    assert_false(rmu_glob_match(&g, "model.layers.8.mlp.down_proj.weight"));
    rmu_glob_free(&g);
    /* ranges, nesting, top-level commas, blanks */
    assert_int_equal(rmu_glob_compile(&g, " a.{1..3}.{x,y{1,2}} , b.* ", &e), 0);
    assert_int_equal(g.n, 3 * 3 + 1);
    assert_string_equal(g.pats[0], "a.1.x");
    assert_string_equal(g.pats[2], "a.1.y2");
    assert_string_equal(g.pats[9], "b.*");
    rmu_glob_free(&g);
    assert_int_equal(rmu_glob_compile(&g, "l.{3..1}", &e), 0);
    assert_string_equal(g.pats[0], "l.3");
    assert_string_equal(g.pats[2], "l.1");
    rmu_glob_free(&g);
    /* '*' crosses dots; ? and classes */
    assert_true(rmu_glob_match_one("model.layers.*.mlp.*", "model.layers.12.mlp.up_proj.weight"));
    assert_false(rmu_glob_match_one("model.layers.*.mlp.*", "model.layers.12.self_attn.q_proj.weight"));
    assert_true(rmu_glob_match_one("*", "anything.at.all"));
    assert_true(rmu_glob_match_one("model.layers.?.mlp*", "model.layers.3.mlp.x"));
    assert_false(rmu_glob_match_one("model.layers.?.mlp*", "model.layers.13.mlp.x"));
    assert_true(rmu_glob_match_one("l.[0-4].w", "l.3.w"));
    assert_false(rmu_glob_match_one("l.[!0-4].w", "l.3.w"));
    assert_true(rmu_glob_match_one("a*b*c", "axxbyybc"));
    assert_false(rmu_glob_match_one("a*b*c", "axxbyyb"));
    /* errors */
    assert_int_equal(rmu_glob_compile(&g, "a.{1,2", &e), -1);
    assert_non_null(strstr(e.msg, "unbalanced"));
    assert_int_equal(rmu_glob_compile(&g, "a.1}", &e), -1);
    assert_non_null(strstr(e.msg, "unbalanced"));
    assert_int_equal(rmu_glob_compile(&g, "a,,b", &e), -1);
    assert_non_null(strstr(e.msg, "empty pattern"));
}

/* ---------------------------------------------------------------- AdamW */

static void test_adamw(void **st) {
    (void)st;
    rmu_adamw_cfg c = {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.3};
    float p[5] = {0.5f, -1, 2, 0, 0.25f}, m[5] = {0}, v[5] = {0};
    double pd[5], md[5] = {0}, vd[5] = {0};
    for (int i = 0; i < 5; i++) pd[i] = p[i];
    for (int s = 1; s <= 4; s++) {
        float g[5];
        for (int i = 0; i < 5; i++) g[i] = (float)(sin(3.0 * i + s) * (i + 1));
        double lr = c.lr * rmu_adamw_lr_factor(RMU_SCHED_LINEAR, s - 1, 1, 4);
        rmu_adamw_update(p, g, m, v, 5, s, lr, &c);
        for (int i = 0; i < 5; i++) { /* torch.optim.AdamW, written out */
            pd[i] *= 1 - lr * c.weight_decay;
            md[i] = 0.9 * md[i] + 0.1 * g[i];
            vd[i] = 0.99 * vd[i] + 0.01 * (double)g[i] * g[i];
            pd[i] -= lr / (1 - pow(0.9, s)) * md[i] / (sqrt(vd[i] / (1 - pow(0.99, s))) + 1e-8);
        }
    }
    for (int i = 0; i < 5; i++) assert_float_equal(p[i], pd[i], 1e-6);
    /* transformers.AdamW (the WMDP reference's): eps added to sqrt(v) before the bias
     * corrections fold into the step size; decay after the update */
    rmu_adamw_cfg h = {.lr = 0.05, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-6, .weight_decay = 0.1};
    float q[5] = {0.5f, -1, 2, 0, 0.25f}, qm[5] = {0}, qv[5] = {0};
    double qd[5], qmd[5] = {0}, qvd[5] = {0};
    for (int i = 0; i < 5; i++) qd[i] = q[i];
    for (int s = 1; s <= 4; s++) {
        float g[5];
        for (int i = 0; i < 5; i++) g[i] = (float)(cos(2.0 * i + s) * (i + 1));
        rmu_adamw_hf_update(q, g, qm, qv, 5, s, h.lr, &h);
        for (int i = 0; i < 5; i++) {
            qmd[i] = 0.9 * qmd[i] + 0.1 * g[i];
            qvd[i] = 0.999 * qvd[i] + 0.001 * (double)g[i] * g[i];
            qd[i] -= h.lr * sqrt(1 - pow(0.999, s)) / (1 - pow(0.9, s)) * qmd[i] / (sqrt(qvd[i]) + 1e-6);
            qd[i] *= 1 - h.lr * h.weight_decay;
        }
    }
    for (int i = 0; i < 5; i++) assert_float_equal(q[i], qd[i], 1e-5); /* fp32 vs double */
    /* schedules: the transformers values (as tests/oracle/torch_ref.py selftest) */
    double lin[7] = {0, 0.5, 1, 0.75, 0.5, 0.25, 0};
    for (int s = 0; s < 7; s++) assert_float_equal(rmu_adamw_lr_factor(RMU_SCHED_LINEAR, s, 2, 6), lin[s], 1e-15);
    double cosv[6] = {0, 1, 0.5 * (1 + cos(M_PI / 4)), 0.5, 0.5 * (1 + cos(3 * M_PI / 4)), 0};
    for (int s = 0; s < 6; s++) assert_float_equal(rmu_adamw_lr_factor(RMU_SCHED_COSINE, s, 1, 5), cosv[s], 1e-15);
    assert_float_equal(rmu_adamw_lr_factor(RMU_SCHED_CONSTANT, 0, 0, 5), 1, 0);
    assert_float_equal(rmu_adamw_lr_factor(RMU_SCHED_CONSTANT, 1, 4, 5), 0.25, 0);
    assert_int_equal(rmu_adamw_sched_parse("cosine"), RMU_SCHED_COSINE);
    assert_int_equal(rmu_adamw_sched_parse("step"), -1);
    /* clip_grad_norm_: norm 13 with clip 1 scales by 1/(13 + 1e-6); below the clip: 1 */
    float gg[3] = {3, 4, 12};
    double n = sqrt(rmu_adamw_sumsq(gg, 3));
    assert_true(n == 13.0);
    assert_true(rmu_adamw_clip_scale(n, 1.0) == 1.0 / (13.0 + 1e-6));
    assert_true(rmu_adamw_clip_scale(n, 20.0) == 1.0);
    assert_true(rmu_adamw_clip_scale(n, 0) == 1.0);
    /* sum of squares over many chunks: same as a plain double sum (to rounding), and the
     * same bits for any thread count */
    size_t N = 1000003;
    float *big = malloc(sizeof(float) * N);
    for (size_t i = 0; i < N; i++) big[i] = (float)sin((double)i);
    double ref = 0;
    for (size_t i = 0; i < N; i++) ref += (double)big[i] * big[i];
    int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    double a1 = rmu_adamw_sumsq(big, N);
    omp_set_num_threads(2);
    double a2 = rmu_adamw_sumsq(big, N);
    omp_set_num_threads(nt);
    assert_true(a1 == a2);
    assert_float_equal(a1, ref, 1e-9 * ref);
    free(big);
}

/* ---------------------------------------------------------------- data */

static char tmpdir[256];

static void write_file(const char *name, const char *text, char *path) {
    sprintf(path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void test_data_read(void **st) {
    (void)st;
    char p1[512], p2[512], p3[512], both[1100];
    rmu_data_docs d;
    rmu_err e;
    write_file("a.jsonl", "{\"text\": \"first doc\"}\n\n{\"text\": \"second\", \"x\": 1}\r\n", p1);
    write_file("b.json", "[\"one\", {\"body\": \"two\"}]", p2);
    write_file("c.txt", "line one\n\nline two\r\nline three", p3);
    snprintf(both, sizeof both, "%s,%s", p1, p3);
    assert_int_equal(rmu_data_read(&d, both, NULL, &e), 0);
    assert_int_equal(d.n, 5);
    assert_string_equal(d.text[0], "first doc");
    assert_string_equal(d.text[1], "second");
    /* plain text keeps each line's break (CRLF -> LF); the last line has none */
    assert_string_equal(d.text[2], "line one\n");
    assert_string_equal(d.text[3], "line two\n");
    assert_int_equal(d.len[3], 9);
    assert_string_equal(d.text[4], "line three");
    rmu_data_docs_free(&d);
    /* JSON array with a mixed element: the field is required in objects */
    assert_int_equal(rmu_data_read(&d, p2, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "element 1"));
    write_file("d.json", "[{\"body\": \"one\"}, {\"body\": \"two\"}]", p2);
    assert_int_equal(rmu_data_read(&d, p2, "body", &e), 0);
    assert_int_equal(d.n, 2);
    rmu_data_docs_free(&d);
    /* a malformed line is named by file and line */
    write_file("bad.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"unterminated}\n", p1);
    assert_int_equal(rmu_data_read(&d, p1, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "bad.jsonl:2: invalid JSON"));
    write_file("nofield.jsonl", "{\"text\": \"ok\"}\n\n{\"content\": \"x\"}\n", p1);
    assert_int_equal(rmu_data_read(&d, p1, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "nofield.jsonl:3:"));
    write_file("empty.txt", "\n\n", p1);
    assert_int_equal(rmu_data_read(&d, p1, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "empty corpus"));
    assert_int_equal(rmu_data_read(&d, "/nonexistent/x.txt", NULL, &e), -1);
    assert_non_null(strstr(e.msg, "/nonexistent/x.txt"));
}

/* One corpus, every format and its edge cases (BOM, CRLF, blank and whitespace-only lines,
 * no final newline), read the same way - same documents, same order - by `rmu train`
 * (rmu_data_read) and `rmu unlearn` (rmu_unl_read_corpus, which the demo's unlearning
 * reads through too; the demo's pretraining reads through rmu_data_read). */
static void test_corpus_one_reader(void **st) {
    (void)st;
    static const struct {
        const char *name, *text;
    } files[] = {
        {"c1.jsonl", "\xEF\xBB\xBF{\"text\": \"a b\\n\"}\r\n\r\n  \n{\"text\": \"\"}\n{\"text\": \"c\\u00e9\\n\"}"},
        {"c2.ndjson", "{\"text\": \"a b\\n\"}\n{\"text\": \"c\\u00e9\\n\"}\n"},
        {"c3.json", "\xEF\xBB\xBF \n [\"a b\\n\", {\"text\": \"c\\u00e9\\n\"}]\n"},
        {"c4.json", "{\"text\": \"a b\\n\"}\r\n\n{\"text\": \"c\\u00e9\\n\"}"}, /* .json holding JSON Lines */
        {"c5.txt", "\xEF\xBB\xBF" "a b\r\n\r\n \t\r\nc\xC3\xA9\n"},
        {"c6.raw", "a b\n\n\nc\xC3\xA9\r\n"},
    };
    char path[512], sha[65], sha2[65];
    rmu_err e;
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        write_file(files[f].name, files[f].text, path);
        rmu_data_docs tr, un;
        if (rmu_data_read(&tr, path, NULL, &e)) fail_msg("%s: %s", files[f].name, e.msg);
        if (rmu_unl_read_corpus(&un, path, 0, sha, &e)) fail_msg("%s: %s", files[f].name, e.msg);
        assert_int_equal(tr.n, 2);
        assert_int_equal(un.n, tr.n);
        for (size_t i = 0; i < tr.n; i++) {
            assert_int_equal(un.len[i], tr.len[i]);
            assert_memory_equal(un.text[i], tr.text[i], tr.len[i]);
        }
        assert_string_equal(tr.text[0], "a b\n");
        assert_string_equal(tr.text[1], "c\xC3\xA9\n");
        /* the SHA-256 comes from the bytes read, and is the file's */
        assert_int_equal(rmu_file_sha256(path, sha2, &e), 0);
        assert_string_equal(sha, sha2);
        rmu_data_docs_free(&tr);
        rmu_data_docs_free(&un);
    }
    /* unlearning's min_len counts characters (as Python's len), not bytes: "c\u00e9\n" has 3 */
    rmu_data_docs un;
    OK(rmu_unl_read_corpus(&un, path, 3, NULL, &e));
    assert_int_equal(un.n, 1);
    assert_string_equal(un.text[0], "a b\n");
    rmu_data_docs_free(&un);
    OK(rmu_unl_read_corpus(&un, path, 2, NULL, &e));
    assert_int_equal(un.n, 2);
    rmu_data_docs_free(&un);
    /* a JSON array whose element lacks the field; a .json that is neither */
    write_file("bad.json", "[\"ok\", {\"x\": 1}]", path);
    assert_int_equal(rmu_unl_read_corpus(&un, path, 0, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "bad.json: element 1"));
    write_file("bad2.json", "{\"text\": \"ok\"}\nnot json\n", path);
    assert_int_equal(rmu_data_read(&un, path, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "bad2.json:2: invalid JSON"));
}

static void test_data_pack(void **st) {
    (void)st;
    int d0[] = {1, 10, 11, 12, 2}, d1[] = {1, 20, 2}, d2[] = {1, 2}, d3[] = {1, 30, 31, 32, 33, 34, 35, 2};
    int *ids[] = {d0, d1, d2, d3}, lens[] = {5, 3, 2, 8};
    rmu_data d;
    rmu_err e;
    /* pack: 18 tokens in chunks of 4 -> 4 full chunks + a 2-token tail */
    assert_int_equal(rmu_data_build(&d, ids, lens, 4, 4, 1, &e), 0);
    assert_int_equal(d.nseq, 5);
    assert_int_equal(d.ntokens, 18);
    assert_int_equal(d.tok[4], 2); /* chunk 1 starts with d0's EOS */
    assert_int_equal((int)(d.off[5] - d.off[4]), 2);
    uint64_t h = d.hash;
    /* batches: left padding with the pad id, mask 0 there */
    int perm[5] = {4, 0, 1, 2, 3}, tok[8], mask[8], B, T;
    rmu_data_batch(&d, perm, 0, 2, 99, tok, mask, &B, &T);
    assert_int_equal(B, 2);
    assert_int_equal(T, 4);
    int want_t[8] = {99, 99, 35, 2, 1, 10, 11, 12}, want_m[8] = {0, 0, 1, 1, 1, 1, 1, 1};
    for (int i = 0; i < 8; i++) assert_int_equal(tok[i], want_t[i]), assert_int_equal(mask[i], want_m[i]);
    rmu_data_batch(&d, perm, 2, 2, 99, tok, mask, &B, &T); /* the last, smaller batch */
    assert_int_equal(B, 1);
    assert_int_equal(rmu_data_steps_per_epoch(&d, 2), 3);
    /* order: a permutation, a pure function of (seed, epoch) */
    int p1[5], p2[5], p3[5];
    rmu_data_epoch_order(&d, 7, 0, p1);
    rmu_data_epoch_order(&d, 7, 0, p2);
    rmu_data_epoch_order(&d, 7, 1, p3);
    int seen[5] = {0}, same = 1;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(p1[i], p2[i]);
        seen[p1[i]]++;
        same &= p1[i] == p3[i];
    }
    for (int i = 0; i < 5; i++) assert_int_equal(seen[i], 1);
    (void)same; /* epochs may coincide for 5 items; only determinism is required */
    rmu_data_free(&d);
    /* no pack: one sequence per document, truncated; 1-token remnants dropped */
    int d4[] = {1};
    int *ids2[] = {d0, d4, d3}, lens2[] = {5, 1, 8};
    assert_int_equal(rmu_data_build(&d, ids2, lens2, 3, 6, 0, &e), 0);
    assert_int_equal(d.nseq, 2);
    assert_int_equal((int)(d.off[1] - d.off[0]), 5);
    assert_int_equal((int)(d.off[2] - d.off[1]), 6);
    assert_true(d.hash != h);
    rmu_data_free(&d);
    int *ids3[] = {d4};
    int lens3[] = {1};
    assert_int_equal(rmu_data_build(&d, ids3, lens3, 1, 6, 1, &e), -1);
    assert_non_null(strstr(e.msg, "empty corpus"));
}

/* ---------------------------------------------------------------- trainer on a tiny model */

static char model_dir[300];

static void make_model(const char *name, int tie, int window) {
    rmu_config c;
    rmu_err e;
    snprintf(model_dir, sizeof model_dir, "%s/%s", tmpdir, name);
    assert_int_equal(rmu_cfg_preset(&c, "tiny", &e), 0);
    c.hidden_size = 16;
    c.intermediate_size = 24;
    c.n_layers = 3;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 4;
    c.vocab_size = 40;
    c.max_position_embeddings = 32;
    c.sliding_window = window;
    c.tie_word_embeddings = tie;
    c.bos_id = 1, c.eos_id = 2, c.pad_id = -1;
    rmu_init_opts o = {.dtype = RMU_DT_F32, .seed = 11, .shards = 1, .jitter_norms = 1, .std = 0.4f};
    assert_int_equal(rmu_init_model_opts(model_dir, &c, &o, &e), 0);
}

static const int TOK[3 * 10] = {
    1, 5, 9, 33, 7, 7, 12, 3, 38, 20, /* row 0: no pad */
    0, 0, 0, 1, 5, 9, 33, 7, 7, 12,   /* row 1: 3 pads (id 0) then a prefix of row 0 */
    1, 17, 4, 4, 4, 30, 2, 22, 6, 11,
};
static const int MASK[3 * 10] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1,
                                 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};

static void test_forward_matches_inference(void **st) {
    (void)st;
    make_model("fwd", 0, 4);
    rmu_model m;
    rmu_err e;
    assert_int_equal(rmu_model_load(&m, model_dir, &e), 0);
    rmu_tr tr;
    rmu_tr_opts o = {.trainable = NULL, .max_batch = 3, .max_seq = 10, .last_layer = -1};
    assert_int_equal(rmu_tr_init(&tr, &m, &o, &e), 0);
    assert_int_equal(rmu_tr_set_batch(&tr, TOK, MASK, 3, 10, &e), 0);
    int C = 16, L = 2;
    float *x = malloc(sizeof(float) * 30 * C), *ref = malloc(sizeof(float) * 10 * C);
    rmu_tr_embed(&tr, 0, x);
    assert_int_equal(rmu_tr_forward_range(&tr, x, 0, L, x, 0, &e), 0);
    rmu_state s;
    assert_int_equal(rmu_state_init(&s, &m, 16, 4, &e), 0);
    /* rows without padding == the inference path (KV cache, chunks of 4) */
    for (int r = 0; r < 3; r += 2) {
        assert_int_equal(rmu_model_hidden(&m, &s, TOK + r * 10, 10, L, ref, &e), 0);
        for (int i = 0; i < 10 * C; i++) assert_float_equal(x[r * 10 * C + i], ref[i], 1e-4 * (1 + fabs(ref[i])));
    }
    /* the left-padded row: its real tokens sit at positions 3..9, yet RoPE is relative and
     * pads are masked, so they equal the unpadded prefix */
    assert_int_equal(rmu_model_hidden(&m, &s, TOK + 13, 7, L, ref, &e), 0);
    for (int i = 0; i < 7 * C; i++) assert_float_equal(x[13 * C + i], ref[i], 1e-4 * (1 + fabs(ref[i])));
    for (int i = 0; i < 3 * C; i++) assert_true(isfinite(x[10 * C + i]));
    rmu_state_free(&s);
    free(x), free(ref);
    rmu_tr_free(&tr);
    rmu_model_free(&m);
}

static double loss_of(rmu_tr *tr) {
    double l;
    rmu_err e;
    assert_int_equal(rmu_tr_loss(tr, &l, &e), 0);
    return l;
}

static void test_grad_fd(void **st) {
    (void)st;
    int ties[2] = {0, 1};
    for (int ti = 0; ti < 2; ti++) {
        make_model(ties[ti] ? "fd_tied" : "fd", ties[ti], 4);
        rmu_model m;
        rmu_err e;
        assert_int_equal(rmu_model_load(&m, model_dir, &e), 0);
        rmu_tr tr;
        rmu_tr_opts o = {.trainable = NULL, .max_batch = 3, .max_seq = 10, .last_layer = -1};
        assert_int_equal(rmu_tr_init(&tr, &m, &o, &e), 0);
        assert_int_equal(rmu_tr_set_batch(&tr, TOK, MASK, 3, 10, &e), 0);
        double loss;
        rmu_tr_zero_grad(&tr);
        assert_int_equal(rmu_tr_loss_and_grad(&tr, &loss, &e), 0);
        assert_true(isfinite(loss));
        /* per tensor: the largest-gradient element and 3 spread-out others */
        for (int pi = 0; pi < tr.nparams; pi++) {
            rmu_tr_param *p = &tr.params[pi];
            for (int k = 0; k < 4; k++) {
                size_t best = ((size_t)k * 7919u) % p->numel;
                if (k == 0)
                    for (size_t i = 0; i < p->numel; i++)
                        if (fabsf(p->grad[i]) > fabsf(p->grad[best])) best = i;
                float w0 = p->master[best], h = 2e-3f * (fabsf(w0) > 1 ? fabsf(w0) : 1);
                p->master[best] = w0 + h;
                double lp = loss_of(&tr);
                p->master[best] = w0 - h;
                double lm = loss_of(&tr);
                p->master[best] = w0;
                double fd = (lp - lm) / (2.0 * h), an = p->grad[best];
                if (fabs(fd - an) > 1e-2 * fabs(an) + 1e-3)
                    fail_msg("%s[%zu]: analytic %.6g vs finite difference %.6g", p->name, best, an, fd);
            }
        }
        rmu_tr_free(&tr);
        rmu_model_free(&m);
    }
}

/* grads of a fresh trainer (patterns) on the batch, copied out as name -> array */
static float *grads_of(const char *pat, int threads, int last_layer, const char *name, double *loss) {
    rmu_model m;
    rmu_err e;
    assert_int_equal(rmu_model_load(&m, model_dir, &e), 0);
    rmu_tr tr;
    rmu_tr_opts o = {.trainable = pat, .max_batch = 3, .max_seq = 10, .last_layer = last_layer};
    assert_int_equal(rmu_tr_init(&tr, &m, &o, &e), 0);
    int nt = omp_get_max_threads();
    omp_set_num_threads(threads);
    assert_int_equal(rmu_tr_set_batch(&tr, TOK, MASK, 3, 10, &e), 0);
    rmu_tr_zero_grad(&tr);
    assert_int_equal(rmu_tr_loss_and_grad(&tr, loss, &e), 0);
    omp_set_num_threads(nt);
    rmu_tr_param *p = rmu_tr_find(&tr, name);
    assert_non_null(p);
    float *g = malloc(sizeof(float) * p->numel);
    memcpy(g, p->grad, sizeof(float) * p->numel);
    rmu_tr_free(&tr);
    rmu_model_free(&m);
    return g;
}

static void test_determinism_and_selective(void **st) {
    (void)st;
    make_model("det", 0, 4);
    const char *names[] = {"model.layers.1.mlp.down_proj.weight", "model.embed_tokens.weight",
                           "model.layers.0.self_attn.q_proj.weight", "lm_head.weight"};
    size_t sizes[] = {16 * 24, 40 * 16, 16 * 16, 40 * 16};
    for (int k = 0; k < 4; k++) {
        double l1, l2, l3;
        float *a = grads_of(NULL, 1, -1, names[k], &l1);
        float *b = grads_of(NULL, 2, -1, names[k], &l2);
        float *c = grads_of(names[k], 2, -1, names[k], &l3);
        assert_true(l1 == l2 && l1 == l3);
        assert_memory_equal(a, b, sizeof(float) * sizes[k]); /* thread count changes no bit */
        assert_memory_equal(a, c, sizeof(float) * sizes[k]); /* training a subset: the same grads */
        free(a), free(b), free(c);
    }
    /* MSE-to-zero proxy at layer 1: trainable down_proj of layer 1 only */
    double l;
    float *g = grads_of("model.layers.1.mlp.down_proj.weight", 2, 1, "model.layers.1.mlp.down_proj.weight", &l);
    double s = 0;
    for (size_t i = 0; i < 16 * 24; i++) s += fabs(g[i]);
    assert_true(s > 0 && isfinite(l));
    free(g);
}

static void test_range_api(void **st) {
    (void)st;
    make_model("range", 1, 4);
    rmu_model m;
    rmu_err e;
    assert_int_equal(rmu_model_load(&m, model_dir, &e), 0);
    rmu_tr tr;
    const void *orig = m.layers[1].w_down.data;
    rmu_tr_opts o = {.trainable = "model.layers.{1,2}.mlp.down_proj.weight,model.embed_tokens.weight",
                     .max_batch = 3, .max_seq = 10, .last_layer = -1};
    assert_int_equal(rmu_tr_init(&tr, &m, &o, &e), 0);
    assert_int_equal(tr.nparams, 3);
    assert_true(m.layers[1].w_down.data == rmu_tr_find(&tr, "model.layers.1.mlp.down_proj.weight")->master);
    assert_true(m.lm_head.data == m.embed.data); /* tied: the head reads the embedding master */
    assert_int_equal(rmu_tr_set_batch(&tr, TOK, MASK, 3, 10, &e), 0);
    double l1, l2;
    rmu_tr_zero_grad(&tr);
    assert_int_equal(rmu_tr_loss_and_grad(&tr, &l1, &e), 0);
    float *g1 = malloc(sizeof(float) * tr.n_trainable);
    memcpy(g1, tr.grad_mem, sizeof(float) * tr.n_trainable);
    /* the same step through the public pieces */
    int N = 30, C = 16;
    float *x = malloc(sizeof(float) * N * C), *dx = malloc(sizeof(float) * N * C);
    rmu_tr_zero_grad(&tr);
    rmu_tr_embed(&tr, 0, x);
    assert_int_equal(rmu_tr_forward_range(&tr, x, 0, 0, x, 1, &e), 0);
    assert_int_equal(rmu_tr_forward_range(&tr, x, 1, 2, x, 1, &e), 0);
    assert_int_equal(rmu_tr_lm_loss(&tr, x, dx, &l2, &e), 0);
    assert_int_equal(rmu_tr_backward_range(&tr, dx, 2, 1, dx, &e), 0);
    assert_int_equal(rmu_tr_backward_range(&tr, dx, 0, 0, dx, &e), 0);
    rmu_tr_embed_backward(&tr, dx);
    assert_true(l1 == l2);
    assert_memory_equal(g1, tr.grad_mem, sizeof(float) * tr.n_trainable);
    /* frozen vs live: equal until a master changes, then only live moves */
    float *hf = malloc(sizeof(float) * N * C), *hl = malloc(sizeof(float) * N * C);
    rmu_tr_embed(&tr, 1, hf);
    assert_int_equal(rmu_tr_forward_range_frozen(&tr, hf, 0, 2, hf, &e), 0);
    rmu_tr_embed(&tr, 0, hl);
    assert_int_equal(rmu_tr_forward_range(&tr, hl, 0, 2, hl, 0, &e), 0);
    assert_memory_equal(hf, hl, sizeof(float) * N * C);
    rmu_tr_find(&tr, "model.layers.2.mlp.down_proj.weight")->master[5] += 0.5f;
    float *hf2 = malloc(sizeof(float) * N * C);
    rmu_tr_embed(&tr, 1, hf2);
    assert_int_equal(rmu_tr_forward_range_frozen(&tr, hf2, 0, 2, hf2, &e), 0);
    rmu_tr_embed(&tr, 0, hl);
    assert_int_equal(rmu_tr_forward_range(&tr, hl, 0, 2, hl, 0, &e), 0);
    assert_memory_equal(hf, hf2, sizeof(float) * N * C);
    assert_memory_not_equal(hf, hl, sizeof(float) * N * C);
    /* guarded misuse */
    assert_int_equal(rmu_tr_backward_range(&tr, dx, 3, 0, NULL, &e), -1);
    assert_int_equal(rmu_tr_backward_range(&tr, dx, 0, 1, NULL, &e), -1);
    int right[10] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
    assert_int_equal(rmu_tr_set_batch(&tr, TOK, right, 1, 10, &e), -1);
    assert_non_null(strstr(e.msg, "pad on the left"));
    assert_int_equal(rmu_tr_set_batch(&tr, TOK, NULL, 1, 11, &e), -1);
    rmu_tr_free(&tr);
    assert_true(m.layers[1].w_down.data == orig); /* file weights back in place */
    assert_true(m.lm_head.data == m.embed.data);
    free(g1), free(x), free(dx), free(hf), free(hl), free(hf2);
    rmu_model_free(&m);
}

static void test_trainer_errors(void **st) {
    (void)st;
    make_model("err", 1, 0);
    rmu_model m;
    rmu_err e;
    assert_int_equal(rmu_model_load(&m, model_dir, &e), 0);
    const void *file_embed = m.embed.data;
    rmu_tr tr;
    rmu_tr_opts o = {.trainable = "model.layers.{1,7}.mlp.down_proj.weight", .max_batch = 2, .max_seq = 8,
                     .last_layer = -1};
    assert_int_equal(rmu_tr_init(&tr, &m, &o, &e), -1);
    assert_non_null(strstr(e.msg, "'model.layers.7.mlp.down_proj.weight' matches no tensor"));
    o.trainable = "lm_head.*";
    assert_int_equal(rmu_tr_init(&tr, &m, &o, &e), -1);
    assert_non_null(strstr(e.msg, "ties to model.embed_tokens.weight"));
    o.trainable = NULL;
    o.max_seq = 33;
    assert_int_equal(rmu_tr_init(&tr, &m, &o, &e), -1);
    assert_non_null(strstr(e.msg, "max_position_embeddings 32"));
    o.max_seq = 8;
    o.trainable = "model.norm.weight";
    o.last_layer = 1;
    assert_int_equal(rmu_tr_init(&tr, &m, &o, &e), -1);
    assert_non_null(strstr(e.msg, "above the loss"));
    /* explicit tensor names (as unlearning builds them from layer ids), with the caller's
     * field name in errors */
    const char *names[2] = {"model.layers.1.mlp.down_proj.weight", "model.layers.2.mlp.down_proj.weight"};
    o = (rmu_tr_opts){.names = names, .n_names = 2, .field = "layer_ids", .max_batch = 2, .max_seq = 8,
                      .last_layer = -1};
    assert_int_equal(rmu_tr_init(&tr, &m, &o, &e), 0);
    assert_int_equal(tr.nparams, 2);
    assert_non_null(rmu_tr_find(&tr, names[1]));
    rmu_tr_free(&tr);
    names[1] = "model.layers.7.mlp.down_proj.weight";
    assert_int_equal(rmu_tr_init(&tr, &m, &o, &e), -1);
    assert_non_null(strstr(e.msg, "layer_ids: model.layers.7.mlp.down_proj.weight is not a trainable tensor"));
    o = (rmu_tr_opts){.trainable = "model.layers.{1,7}.mlp.down_proj.weight", .field = "params", .max_batch = 2,
                      .max_seq = 8, .last_layer = -1};
    assert_int_equal(rmu_tr_init(&tr, &m, &o, &e), -1);
    assert_non_null(strstr(e.msg, "params: pattern 'model.layers.7.mlp.down_proj.weight' matches no tensor"));
    /* failed inits leave the model on its file weights */
    assert_true(m.embed.data == file_embed && m.lm_head.data == file_embed);
    rmu_model_free(&m);
}

static int setup(void **st) {
    (void)st;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rmu_test_train.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **st) {
    (void)st;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_glob),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_data_read),
        cmocka_unit_test(test_corpus_one_reader),
        cmocka_unit_test(test_data_pack),
        cmocka_unit_test(test_forward_matches_inference),
        cmocka_unit_test(test_grad_fd),
        cmocka_unit_test(test_determinism_and_selective),
        cmocka_unit_test(test_range_api),
        cmocka_unit_test(test_trainer_errors),
    };
    return cmocka_run_group_tests_name("train", tests, setup, teardown);
}

/* test_demo_kb.c - the demo's knowledge-base generator: deterministic for a seed, sizes,
 * every gold answer is the fact, distractors distinct and from the attribute's own values,
 * balanced values, names unique, RMU corpora never contain an evaluation question, the
 * question file loads with the `rmu eval` mcq reader; and the demo's outputs (stamp, loss
 * curves from step reports, table, results.json, SVG). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/fileio.h"
#include "app/demo/demo.h"
#include "app/demo/kb.h"
#include "eval/mcq.h"

static void build_k(rmu_kb *kb, uint64_t seed, int n, int a, int k, int copies) {
    rmu_kb_cfg c = {seed, n, a, k, copies};
    rmu_err e;
    int r = rmu_kb_build(kb, &c, &e);
    if (r) fail_msg("%s", e.msg);
}

static void build(rmu_kb *kb, uint64_t seed, int n, int a) { build_k(kb, seed, n, a, 3, 2); }


static char *all_text(const rmu_kb *kb, size_t *len) {
    rmu_err e;
    size_t n[5];
    char *t[5] = {rmu_kb_train_jsonl(kb, &n[0], &e), rmu_kb_corpus_jsonl(kb, 0, 2, &n[1], &e),
                  rmu_kb_corpus_jsonl(kb, 1, 2, &n[2], &e), rmu_kb_mcq_jsonl(kb, 0, &n[3], &e),
                  rmu_kb_mcq_jsonl(kb, 1, &n[4], &e)};
    size_t tot = 0;
    for (int i = 0; i < 5; i++) {
        assert_non_null(t[i]);
        tot += n[i];
    }
    char *all = malloc(tot + 1), *p = all;
    for (int i = 0; i < 5; i++) {
        memcpy(p, t[i], n[i]);
        p += n[i];
        free(t[i]);
    }
    *p = 0;
    *len = tot;
    return all;
}

static void test_deterministic(void **st) {
    (void)st;
    rmu_kb a, b, c;
    build(&a, 7, 24, 4);
    build(&b, 7, 24, 4);
    build(&c, 8, 24, 4);
    size_t na, nb, nc;
    char *ta = all_text(&a, &na), *tb = all_text(&b, &nb), *tc = all_text(&c, &nc);
    assert_int_equal(na, nb);
    assert_memory_equal(ta, tb, na);
    assert_true(na != nc || memcmp(ta, tc, na) != 0);
    free(ta);
    free(tb);
    free(tc);
    rmu_kb_free(&a);
    rmu_kb_free(&b);
    rmu_kb_free(&c);
}

static void test_sizes_and_answers(void **st) {
    (void)st;
    static const int shapes[][3] = {{20, 4, 3}, {24, 4, 1}, {12, 3, 2}, {1, 1, 1}, {100, 4, 3}, {7, 2, 5}, {10, 4, 0}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int N = shapes[s][0], A = shapes[s][1], K = shapes[s][2] ? shapes[s][2] : 1;
        rmu_kb kb;
        build_k(&kb, 1234 + s, N, A, shapes[s][2], 1);
        for (int d = 0; d < RMU_KB_DOMAINS; d++) {
            const rmu_kb_domain *D = &kb.dom[d];
            assert_int_equal(D->n_entities, N);
            assert_int_equal(D->n_attrs, A);
            assert_int_equal(D->nq, N * A * K);
            int count[RMU_KB_MAX_ATTRS][RMU_KB_NVALUES] = {{0}};
            for (int f = 0; f < N * A; f++) {
                int used[RMU_KB_NVALUES] = {0};
                for (int k = 0; k < K; k++) {
                    const rmu_kb_question *q = &D->q[f * K + k];
                    assert_int_equal(q->entity, f / A);
                    assert_int_equal(q->attr, f % A);
                    assert_true(q->answer >= 0 && q->answer < RMU_KB_CHOICES);
                    /* the gold answer is the fact */
                    assert_string_equal(q->choices[q->answer], rmu_kb_fact(&kb, d, q->entity, q->attr));
                    assert_non_null(strstr(q->question, D->entity[q->entity]));
                    for (int c = 0; c < RMU_KB_CHOICES; c++) {
                        /* every choice from the attribute's own value set, all distinct */
                        int found = -1;
                        for (int v = 0; v < RMU_KB_NVALUES; v++)
                            if (!strcmp(q->choices[c], rmu_kb_value(d, q->attr, v))) found = v;
                        assert_true(found >= 0);
                        for (int c2 = 0; c2 < c; c2++) assert_string_not_equal(q->choices[c], q->choices[c2]);
                        /* the first three questions of a fact use disjoint distractor triples */
                        if (c != q->answer && k < 3) {
                            assert_int_equal(used[found], 0);
                            used[found] = 1;
                        }
                    }
                }
                count[f % A][D->value[f]]++;
            }
            /* balanced: every value is the answer floor(N/10) or ceil(N/10) times */
            for (int a = 0; a < A; a++)
                for (int v = 0; v < RMU_KB_NVALUES; v++)
                    assert_true(count[a][v] == N / RMU_KB_NVALUES ||
                                count[a][v] == (N + RMU_KB_NVALUES - 1) / RMU_KB_NVALUES);
            /* names unique within the domain; no letter shared with the other domain's names */
            for (int i = 0; i < N; i++) {
                for (int j = 0; j < i; j++) assert_string_not_equal(D->entity[i], D->entity[j]);
                if (d == 1)
                    for (int j = 0; j < N; j++)
                        for (const char *p = D->entity[i]; *p; p++) {
                            char lc[2] = {(char)(*p | 0x20), 0}, uc[2] = {(char)(*p & ~0x20), 0};
                            assert_null(strstr(kb.dom[0].entity[j], lc));
                            assert_null(strstr(kb.dom[0].entity[j], uc));
                        }
            }
        }
        /* attribute vocabularies of the two domains are disjoint */
        for (int a = 0; a < RMU_KB_MAX_ATTRS; a++)
            for (int b = 0; b < RMU_KB_MAX_ATTRS; b++)
                for (int v = 0; v < RMU_KB_NVALUES; v++)
                    for (int w = 0; w < RMU_KB_NVALUES; w++)
                        assert_string_not_equal(rmu_kb_value(0, a, v), rmu_kb_value(1, b, w));
        rmu_kb_free(&kb);
    }
}

/* Lines of text (each ends with "\n"), sorted, for comparing multisets. */
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char **lines(char *text, int *n) {
    int cap = 0;
    for (char *p = text; *p; p++) cap += *p == '\n';
    char **v = malloc(sizeof(char *) * (size_t)(cap + 1));
    int k = 0;
    for (char *p = text, *nl; (nl = strchr(p, '\n')); p = nl + 1) {
        *nl = 0;
        v[k++] = p;
    }
    *n = k;
    return v;
}

static void test_train_copies(void **st) {
    (void)st;
    rmu_kb one, four;
    build_k(&one, 3, 10, 4, 3, 1);
    build_k(&four, 3, 10, 4, 3, 4);
    rmu_err e;
    size_t n1, n4;
    char *t1 = rmu_kb_train_jsonl(&one, &n1, &e), *t4 = rmu_kb_train_jsonl(&four, &n4, &e);
    assert_non_null(t1);
    assert_non_null(t4);
    int k1, k4;
    char **l1 = lines(t1, &k1), **l4 = lines(t4, &k4);
    /* per fact: the question form + 3 declaratives, in both domains */
    assert_int_equal(k1, 2 * 10 * 4 * 4);
    assert_int_equal(k4, 4 * k1);
    /* each copy is a permutation of the same documents, and not the same order as the first */
    qsort(l1, (size_t)k1, sizeof *l1, cmp_str);
    for (int c = 0; c < 4; c++) {
        char **part = l4 + c * k1;
        char **sorted = malloc(sizeof(char *) * (size_t)k1);
        memcpy(sorted, part, sizeof(char *) * (size_t)k1);
        qsort(sorted, (size_t)k1, sizeof *sorted, cmp_str);
        for (int i = 0; i < k1; i++) assert_string_equal(sorted[i], l1[i]);
        free(sorted);
    }
    for (int c = 1; c < 4; c++) {
        int same = 1;
        for (int i = 0; i < k1 && same; i++) same = !strcmp(l4[i], l4[c * k1 + i]);
        assert_false(same);
    }
    free(l1);
    free(l4);
    free(t1);
    free(t4);
    rmu_kb_free(&one);
    rmu_kb_free(&four);
}

static void test_corpus_never_asks(void **st) {
    (void)st;
    rmu_kb kb;
    build(&kb, 99, 24, 4);
    rmu_err e;
    for (int d = 0; d < RMU_KB_DOMAINS; d++) {
        size_t n;
        char *corp = rmu_kb_corpus_jsonl(&kb, d, 3, &n, &e);
        assert_non_null(corp);
        assert_null(strstr(corp, "Question"));
        assert_null(strchr(corp, '?'));
        for (int dd = 0; dd < RMU_KB_DOMAINS; dd++)
            for (int i = 0; i < kb.dom[dd].nq; i++) assert_null(strstr(corp, kb.dom[dd].q[i].question));
        /* every entity of the domain appears, none of the other domain's */
        for (int i = 0; i < kb.dom[d].n_entities; i++) {
            assert_non_null(strstr(corp, kb.dom[d].entity[i]));
            assert_null(strstr(corp, kb.dom[1 - d].entity[i]));
        }
        free(corp);
    }
    /* the pretraining text holds every question in the cloze layout with its answer */
    size_t n;
    char *train = rmu_kb_train_jsonl(&kb, &n, &e);
    assert_non_null(train);
    for (int d = 0; d < RMU_KB_DOMAINS; d++)
        for (int i = 0; i < kb.dom[d].nq; i++) {
            const rmu_kb_question *q = &kb.dom[d].q[i];
            char want[512];
            snprintf(want, sizeof want, "\"Question: %s\\nAnswer: %s\"", q->question, q->choices[q->answer]);
            assert_non_null(strstr(train, want));
        }
    free(train);
    rmu_kb_free(&kb);
}

static void test_mcq_loads(void **st) {
    (void)st;
    rmu_kb kb;
    build(&kb, 5, 12, 3);
    rmu_err e;
    for (int d = 0; d < RMU_KB_DOMAINS; d++) {
        size_t n;
        char *j = rmu_kb_mcq_jsonl(&kb, d, &n, &e);
        assert_non_null(j);
        rmu_mcq_set s;
        memset(&s, 0, sizeof s);
        int r = rmu_mcq_parse_json(&s, j, n, "kb.jsonl", 4, 4, &e);
        if (r) fail_msg("%s", e.msg);
        assert_int_equal(s.n, kb.dom[d].nq);
        for (int i = 0; i < s.n; i++) {
            assert_string_equal(s.items[i].question, kb.dom[d].q[i].question);
            assert_int_equal(s.items[i].answer, kb.dom[d].q[i].answer);
            for (int c = 0; c < 4; c++) assert_string_equal(s.items[i].choices[c], kb.dom[d].q[i].choices[c]);
        }
        rmu_mcq_set_free(&s);
        free(j);
    }
    rmu_kb_free(&kb);
}

static void test_bad_config(void **st) {
    (void)st;
    rmu_kb kb;
    rmu_err e;
    rmu_kb_cfg c = {1, 0, 4, 0, 0};
    assert_int_equal(rmu_kb_build(&kb, &c, &e), -1);
    assert_non_null(strstr(e.msg, "entities"));
    c = (rmu_kb_cfg){1, 4, RMU_KB_MAX_ATTRS + 1, 0, 0};
    assert_int_equal(rmu_kb_build(&kb, &c, &e), -1);
    assert_non_null(strstr(e.msg, "attributes"));
    c = (rmu_kb_cfg){1, RMU_KB_MAX_ENTITIES + 1, 2, 0, 0};
    assert_int_equal(rmu_kb_build(&kb, &c, &e), -1);
    c = (rmu_kb_cfg){1, 4, 2, RMU_KB_MAX_QPF + 1, 0};
    assert_int_equal(rmu_kb_build(&kb, &c, &e), -1);
    assert_non_null(strstr(e.msg, "questions per fact"));
    c = (rmu_kb_cfg){1, 4, 2, 1, -1};
    assert_int_equal(rmu_kb_build(&kb, &c, &e), -1);
    assert_non_null(strstr(e.msg, "copies"));
}

/* The demo's own outputs: the stamp changes with what pretraining depends on, the unlearn
 * curves grow from step reports, results.json/SVG/table carry the numbers. */
static void test_demo_outputs(void **st) {
    (void)st;
    rmu_demo_cfg a, b;
    char sa[1024], sb[1024];
    rmu_demo_cfg_default(&a, 0, 1);
    rmu_demo_cfg_default(&b, 0, 1);
    assert_int_equal(rmu_demo_stamp(&a, "ab12", sa, sizeof sa), 0);
    assert_int_equal(rmu_demo_stamp(&b, "ab12", sb, sizeof sb), 0);
    assert_string_equal(sa, sb);
    b.steer = 7; /* unlearning settings do not invalidate the pretrained model */
    rmu_demo_stamp(&b, "ab12", sb, sizeof sb);
    assert_string_equal(sa, sb);
    b.train_steps++;
    rmu_demo_stamp(&b, "ab12", sb, sizeof sb);
    assert_string_not_equal(sa, sb);
    rmu_demo_cfg_default(&b, 1, 1);
    rmu_demo_stamp(&b, "ab12", sb, sizeof sb);
    assert_string_not_equal(sa, sb);
    rmu_demo_stamp(&a, "ab13", sb, sizeof sb); /* other pretraining text */
    assert_string_not_equal(sa, sb);
    assert_int_equal(rmu_demo_stamp(&a, "ab12", sa, 16), -1);

    char dir[] = "/tmp/test_demo_XXXXXX", path[256];
    assert_non_null(mkdtemp(dir));
    rmu_err e;
    /* the loss curves come from the unlearning run's step reports */
    rmu_demo_curve c = {0};
    rmu_unl_report s1 = {.step = 1, .unlearn_loss = 80.5, .retain_loss = 0},
                   s2 = {.step = 2, .unlearn_loss = 40.25, .retain_loss = 1.5};
    assert_int_equal(rmu_demo_curve_add(&c, &s1, &e), 0);
    for (int i = 0; i < 100; i++) assert_int_equal(rmu_demo_curve_add(&c, &s2, &e), 0); /* grows */
    assert_int_equal(c.n, 101);
    assert_true(c.unlearn[0] == 80.5 && c.unlearn[1] == 40.25 && c.retain[100] == 1.5);
    c.n = 2;
    rmu_demo_result r = {
        .acc = {{1.0, 0.25}, {0.99, 0.975}}, .n_questions = {240, 240}, .chance = 0.25, .seconds = 12.3,
        .n_split = {120, 120}, .split = {{1.0, 0.25}, {1.0, 0.25}}, .rl_samples = 10,
        .relearn = {.acc = {0.625, 0.95}, .split = {0.75, 0.5}, .recovered = {0.5, -1.666667}},
        .ablate = {.acc = {0.4375, 0.99}, .split = {0.4375, 0.4375}, .recovered = {0.25, 1.0}},
        .rl_npoints = 2, .rl_step = {0, 30}, .rl_curve = {{0.25, 0.25, 0.975}, {0.75, 0.5, 0.95}}};
    char *t = rmu_demo_table(&r);
    assert_non_null(t);
    assert_non_null(strstr(t, "|-------------------------------------|----------:|-------:|-------:|-------:|--------:|-------:|-------:|\n"));
    assert_non_null(strstr(t, "| forget: creatures of the Vell marsh |       240 | 100.0% |  25.0% |  -75.0 |   62.5% |  43.8% |  25.0% |"));
    assert_non_null(strstr(t, "|   named in the 10 relearning texts  |       120 | 100.0% |  25.0% |  -75.0 |   75.0% |  43.8% |"));
    assert_non_null(strstr(t, "| retain: towns of the Ardent coast   |       240 |  99.0% |  97.5% |   -1.5 |   95.0% |  99.0% |"));
    assert_non_null(strstr(t, "relearn 0.50, ablate 0.25"));
    free(t);
    snprintf(path, sizeof path, "%s/unlearn.svg", dir);
    assert_int_equal(rmu_demo_write_svg(path, &c, &r, &e), 0);
    size_t n;
    char *svg = rmu_file_read_all(path, &n, &e);
    assert_non_null(svg);
    assert_non_null(strstr(svg, "<svg"));
    assert_non_null(strstr(svg, "97.5%"));
    assert_non_null(strstr(svg, "</svg>"));
    free(svg);
    unlink(path);
    snprintf(path, sizeof path, "%s/results.json", dir);
    assert_int_equal(rmu_demo_write_results(path, &a, &r, &e), 0);
    char *js = rmu_file_read_all(path, &n, &e);
    assert_non_null(js);
    assert_non_null(strstr(js, "\"forget\": {"));
    assert_non_null(strstr(js, "\"after\": 0.975"));
    assert_non_null(strstr(js, "\"chance\": 0.25"));
    assert_non_null(strstr(js, "\"seconds\": 12.3"));
    assert_non_null(strstr(js, "\"attacks\": {"));
    assert_non_null(strstr(js, "\"recovered\": 0.5"));
    free(js);
    unlink(path);
    rmu_demo_curve_free(&c);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_sizes_and_answers),
        cmocka_unit_test(test_train_copies),
        cmocka_unit_test(test_corpus_never_asks),
        cmocka_unit_test(test_mcq_loads),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_demo_outputs),
    };
    return cmocka_run_group_tests_name("demo_kb", tests, NULL, NULL);
}

/* test_eval_mtbench.c - MT-Bench questions, FastChat answer records, the resumable answer
 * file, temperatures, seeds and answer ids. No model needed. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "core/fileio.h"
#include "eval/mtbench.h"

static char *g_dir; /* the group's temporary folder */

static int setup(void **st) {
    (void)st;
    return (g_dir = tu_mkdtemp("test_mtb")) ? 0 : -1;
}

static int teardown(void **st) {
    (void)st;
    tu_rmtree(g_dir);
    free(g_dir);
    return 0;
}

static void test_questions(void **st) {
    (void)st;
    rmu_mtb_questions qs;
    rmu_err e;
    const char *t = "{\"question_id\": 81, \"category\": \"writing\", \"turns\": [\"a\", \"b\"]}\n"
                    "\n"
                    "{\"question_id\": \"x7\", \"category\": \"math\", \"turns\": [\"c\"]}\n";
    OK(rmu_mtb_parse_questions(&qs, t, strlen(t), "q.jsonl", &e));
    assert_int_equal(qs.n, 2);
    assert_int_equal(json_integer_value(qs.q[0].qid), 81);
    assert_string_equal(qs.q[0].category, "writing");
    assert_int_equal(qs.q[0].nturns, 2);
    assert_string_equal(qs.q[0].turns[1], "b");
    assert_string_equal(json_string_value(qs.q[1].qid), "x7");
    rmu_mtb_questions_free(&qs);

    const char *bad = "{\"question_id\": 1, \"turns\": [\"a\"]}\n{\"question_id\": 2, \"turns\": [3]}\n";
    assert_int_equal(rmu_mtb_parse_questions(&qs, bad, strlen(bad), "q.jsonl", &e), -1);
    assert_string_equal(e.msg, "q.jsonl:2: turn 1 is not a string");
    const char *dup = "{\"question_id\": 1, \"turns\": [\"a\"]}\n{\"question_id\": 1, \"turns\": [\"b\"]}\n";
    assert_int_equal(rmu_mtb_parse_questions(&qs, dup, strlen(dup), "q.jsonl", &e), -1);
    assert_string_equal(e.msg, "q.jsonl:2: question_id 1 appears twice");
    const char *noid = "{\"turns\": [\"a\"]}\n";
    assert_int_equal(rmu_mtb_parse_questions(&qs, noid, strlen(noid), "q.jsonl", &e), -1);
    assert_string_equal(e.msg, "q.jsonl:1: \"question_id\" must be an integer or a string");
}

static void test_temperature_seed_id(void **st) {
    (void)st;
    /* FastChat temperature_config */
    assert_true(rmu_mtb_temperature("writing") == 0.7);
    assert_true(rmu_mtb_temperature("roleplay") == 0.7);
    assert_true(rmu_mtb_temperature("extraction") == 0.0);
    assert_true(rmu_mtb_temperature("math") == 0.0);
    assert_true(rmu_mtb_temperature("coding") == 0.0);
    assert_true(rmu_mtb_temperature("reasoning") == 0.0);
    assert_true(rmu_mtb_temperature("stem") == 0.1);
    assert_true(rmu_mtb_temperature("humanities") == 0.1);
    assert_true(rmu_mtb_temperature("something-else") == 0.7);
    assert_true(rmu_mtb_temperature("") == 0.7);

    json_t *a = json_integer(81), *b = json_integer(82), *s = json_string("81");
    assert_true(rmu_mtb_seed(0, a) == rmu_mtb_seed(0, a));
    assert_true(rmu_mtb_seed(0, a) != rmu_mtb_seed(0, b));
    assert_true(rmu_mtb_seed(0, a) != rmu_mtb_seed(1, a));
    assert_true(rmu_mtb_seed(0, a) != rmu_mtb_seed(0, s));
    assert_true(rmu_mtb_qid_cmp(a, b) < 0);
    assert_true(rmu_mtb_qid_cmp(b, a) > 0);
    assert_true(rmu_mtb_qid_cmp(b, s) < 0); /* integers before strings */

    char *turns[2] = {"one", "two"};
    char id1[23], id2[23], id3[23];
    rmu_mtb_answer_id("m", a, turns, 2, id1);
    rmu_mtb_answer_id("m", a, turns, 2, id2);
    rmu_mtb_answer_id("m", b, turns, 2, id3);
    assert_int_equal(strlen(id1), 22);
    assert_string_equal(id1, id2);
    assert_string_not_equal(id1, id3);
    for (int i = 0; i < 22; i++) /* shortuuid's alphabet: no 0 1 I O l */
        assert_non_null(strchr("23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz", id1[i]));
    json_decref(a);
    json_decref(b);
    json_decref(s);
}

static void test_clean(void **st) {
    (void)st;
    const char *rm[3] = {"<s>", "</s>", "<unk>"};
    char *c = rmu_mtb_clean("  \n<s>Hello</s> world<unk>\xc2\xa0\n", rm, 3);
    assert_string_equal(c, "Hello world");
    free(c);
    c = rmu_mtb_clean("bad \xff byte", rm, 3); /* invalid UTF-8 becomes U+FFFD so JSON can hold it */
    assert_string_equal(c, "bad \xef\xbf\xbd byte");
    free(c);
    c = rmu_mtb_clean(" \t ", rm, 3);
    assert_string_equal(c, "");
    free(c);
}

static void test_answer_file_resume(void **st) {
    (void)st;
    rmu_err e;
    char path[512];
    snprintf(path, sizeof path, "%s/answers.jsonl", g_dir);
    json_t *arr;
    OK(rmu_mtb_answers_load(path, &arr, &e)); /* missing file: empty */
    assert_int_equal(json_array_size(arr), 0);
    char *t1[2] = {"A1", "A2"}, *t2[2] = {"B1", "B\"2\u00e9"};
    json_t *q90 = json_integer(90), *q81 = json_integer(81);
    OK(rmu_mtb_answers_put(arr, rmu_mtb_record(q90, "id90", "mymodel", t1, 2, 1700000000.25), &e));
    OK(rmu_mtb_answers_put(arr, rmu_mtb_record(q81, "id81", "mymodel", t2, 2, 1700000001.5), &e));
    OK(rmu_mtb_answers_save(path, arr, &e));
    json_decref(arr);

    size_t len;
    char *text = rmu_file_read_all(path, &len, &e);
    assert_non_null(text);
    /* sorted by question_id; Python json.dumps spacing; ASCII escapes */
    assert_string_equal(text, "{\"question_id\": 81, \"answer_id\": \"id81\", \"model_id\": \"mymodel\", \"choices\": "
                              "[{\"index\": 0, \"turns\": [\"B1\", \"B\\\"2\\u00e9\"]}], \"tstamp\": 1700000001.5}\n"
                              "{\"question_id\": 90, \"answer_id\": \"id90\", \"model_id\": \"mymodel\", \"choices\": "
                              "[{\"index\": 0, \"turns\": [\"A1\", \"A2\"]}], \"tstamp\": 1700000000.25}\n");
    free(text);

    /* reload; a duplicate appended line replaces the earlier record (FastChat's reorg) */
    FILE *f = fopen(path, "a");
    fputs("{\"question_id\": 90, \"answer_id\": \"new\", \"model_id\": \"m\", \"choices\": [], \"tstamp\": 1}\n", f);
    fclose(f);
    OK(rmu_mtb_answers_load(path, &arr, &e));
    assert_int_equal(json_array_size(arr), 2);
    assert_int_equal(rmu_mtb_answers_find(arr, q81), 0);
    assert_int_equal(rmu_mtb_answers_find(arr, q90), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 1), "answer_id")), "new");
    json_t *q5 = json_integer(5);
    assert_int_equal(rmu_mtb_answers_find(arr, q5), -1);
    json_decref(arr);
    json_decref(q5);
    json_decref(q81);
    json_decref(q90);

    /* a file that is not an answer file is not overwritten */
    snprintf(path, sizeof path, "%s/notes.txt", g_dir);
    f = fopen(path, "w");
    fputs("hello\n", f);
    fclose(f);
    assert_int_equal(rmu_mtb_answers_load(path, &arr, &e), -1);
    char want[700];
    snprintf(want, sizeof want, "%s:1: invalid JSON", path);
    assert_non_null(strstr(e.msg, want));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_questions),
        cmocka_unit_test(test_temperature_seed_id),
        cmocka_unit_test(test_clean),
        cmocka_unit_test(test_answer_file_resume),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

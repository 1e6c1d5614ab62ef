/* test_json.c - the shared JSON conventions (src/core/json.h): the JSON Lines reader's rules
 * (BOM, CRLF, blank lines, PATH:LINE errors, torn tails, early stop, SHA of the bytes read)
 * and the Python-exact encoder (expected strings are what CPython 3.11's json.dumps prints). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"
#include "core/fileio.h"
#include "core/json.h"

typedef struct {
    long lines[16];
    int n, stop_after;
} seen;

static int collect(void *ud, json_t *v, long line, rmu_err *e) {
    seen *s = ud;
    if (!json_is_object(v)) return rmu_errf(e, "line %ld: not an object", line);
    s->lines[s->n++] = line;
    return s->stop_after && s->n == s->stop_after ? 1 : 0;
}

static void test_jsonl_rules(void **state) {
    (void)state;
    rmu_err e;
    seen s = {0};
    const char *t = "\xef\xbb\xbf{\"a\": 1}\r\n\r\n   \n\t{\"b\": 2}  \n{\"c\": 3}";
    OK(rmu_jsonl_parse("x.jsonl", t, strlen(t), 0, collect, &s, &e));
    assert_int_equal(s.n, 3);
    assert_int_equal(s.lines[0], 1);
    assert_int_equal(s.lines[1], 4);
    assert_int_equal(s.lines[2], 5);
    /* errors name the file and the line */
    memset(&s, 0, sizeof s);
    const char *bad = "{\"a\": 1}\n\n{\"a\": \n";
    assert_int_equal(rmu_jsonl_parse("x.jsonl", bad, strlen(bad), 0, collect, &s, &e), -1);
    assert_non_null(strstr(e.msg, "x.jsonl:3: invalid JSON"));
    /* the callback's error stops the walk */
    memset(&s, 0, sizeof s);
    const char *arr = "{\"a\": 1}\n[1]\n{\"a\": 2}\n";
    assert_int_equal(rmu_jsonl_parse("y.jsonl", arr, strlen(arr), 0, collect, &s, &e), -1);
    assert_string_equal(e.msg, "line 2: not an object");
    assert_int_equal(s.n, 1);
    /* early stop */
    memset(&s, 0, sizeof s);
    s.stop_after = 1;
    const char *two = "{\"a\": 1}\n{\"a\": 2}\n";
    OK(rmu_jsonl_parse("z.jsonl", two, strlen(two), 0, collect, &s, &e));
    assert_int_equal(s.n, 1);
    /* a torn last line: an error, unless the caller reads a log cut by a kill */
    memset(&s, 0, sizeof s);
    const char *torn = "{\"a\": 1}\n{\"a\": 2, \"b";
    assert_int_equal(rmu_jsonl_parse("l.jsonl", torn, strlen(torn), 0, collect, &s, &e), -1);
    memset(&s, 0, sizeof s);
    OK(rmu_jsonl_parse("l.jsonl", torn, strlen(torn), RMU_JSONL_TORN_TAIL_OK, collect, &s, &e));
    assert_int_equal(s.n, 1);
    /* a torn line in the middle is always an error */
    const char *mid = "{\"a\": 1\n{\"a\": 2}\n";
    assert_int_equal(rmu_jsonl_parse("l.jsonl", mid, strlen(mid), RMU_JSONL_TORN_TAIL_OK, collect, &s, &e), -1);
    assert_true(rmu_json_is_array_text("\xef\xbb\xbf \n [1]", 9));
    assert_false(rmu_json_is_array_text("{\"a\": [1]}", 10));
}

static void test_jsonl_read_sha(void **state) {
    rmu_err e;
    const char *p = tu_path(*state, "a.jsonl");
    tu_write_file(p, "{\"a\": 1}\n");
    seen s = {0};
    char sha[65];
    OK(rmu_jsonl_read(p, 0, collect, &s, sha, &e));
    char want[65];
    OK(rmu_file_sha256(p, want, &e));
    assert_string_equal(sha, want);
    assert_int_equal(rmu_jsonl_read(tu_path(*state, "missing.jsonl"), 0, collect, &s, sha, &e), -1);
    assert_non_null(strstr(e.msg, "missing.jsonl"));
}

static void test_float_repr(void **state) {
    (void)state;
    static const struct {
        double v;
        const char *want;
    } T[] = {{0.1, "0.1"},
             {0.30000000000000004, "0.30000000000000004"},
             {7.0, "7.0"},
             {1e16, "1e+16"},
             {1.5e-5, "1.5e-05"},
             {123456789012345678.0, "1.2345678901234568e+17"},
             {1686286924.844282, "1686286924.844282"},
             {-2.5, "-2.5"},
             {0.0001, "0.0001"},
             {0.00001, "1e-05"},
             {1e-310, "1e-310"},
             {5e-324, "5e-324"},
             {1.7976931348623157e308, "1.7976931348623157e+308"},
             {100.0, "100.0"},
             {1e15, "1000000000000000.0"},
             {123.456, "123.456"},
             {-0.0, "-0.0"}};
    char out[32];
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        rmu_json_float_repr(T[i].v, out);
        assert_string_equal(out, T[i].want);
    }
}

static void test_dumps_py(void **state) {
    (void)state;
    json_t *o = json_object();
    json_object_set_new(o, "a", json_string("caf\xc3\xa9 \x7f \xf0\x9f\x98\x80 \"/\\\n\t\x01"));
    json_object_set_new(o, "b", json_pack("[i,f,b,n]", 1, 2.5, 1));
    char *s = rmu_json_dumps_py(o);
    assert_string_equal(s, "{\"a\": \"caf\\u00e9 \\u007f \\ud83d\\ude00 \\\"/\\\\\\n\\t\\u0001\", "
                           "\"b\": [1, 2.5, true, null]}");
    free(s);
    json_decref(o);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jsonl_rules),
        cmocka_unit_test_setup_teardown(test_jsonl_read_sha, tu_setup_tmp, tu_teardown_tmp),
        cmocka_unit_test(test_float_repr),
        cmocka_unit_test(test_dumps_py),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_judge.c - MT-Bench judging rules (src/eval/judge.h): FastChat's rating patterns,
 * Python str.format, prompt choice per category/turn, user prompts, judgment lines and
 * show_result's averages. The byte-for-byte comparison with FastChat's own formatting of the
 * shared judge_prompts.jsonl is in tests/integration/judge.sh (Python is the oracle there). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>

#include "testutil.h"
#include "eval/judge.h"

static void test_parse_score(void **state) {
    (void)state;
    static const struct {
        const char *reply;
        double want;
        int is_int;
    } T[] = {
        {"Rating: [[7]]", 7, 1},
        {"Rating: [[8.5]]", 8.5, 0},
        {"I'd say [7] overall.", 7, 1},            /* the backup pattern */
        {"no rating here", -1, 1},
        {"[[3]] then [[9]]", 3, 1},                /* first match wins */
        {"[5] but finally [[9]]", 9, 1},           /* [[x]] is tried before [x] */
        {"Rating: [[10.]]", 10, 0},                /* \d+\.?\d* : "10." is a float */
        {"[[ 7 ]]", -1, 1},                        /* no spaces in the pattern */
        {"[[7/10]]", -1, 1},
        {"[[07]]", -1, 1},                         /* ast.literal_eval rejects it */
        {"[[0]]", 0, 1},
        {"[[[6]]]", 6, 1},
        {"[8.25]", 8.25, 0},
        {"", -1, 1},
    };
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        int is_int;
        double s = rmu_judge_parse_score(T[i].reply, &is_int);
        if (s != T[i].want) fail_msg("'%s': got %g, want %g", T[i].reply, s, T[i].want);
        if (s != -1 && is_int != T[i].is_int) fail_msg("'%s': int-ness %d", T[i].reply, is_int);
    }
}

static void test_format(void **state) {
    (void)state;
    rmu_err e;
    const char *names[] = {"question", "answer"}, *vals[] = {"Q {x}", "A}"};
    char *s = rmu_judge_format("[{question}] {{literal}} ({answer})", "t", names, vals, 2, &e);
    assert_non_null(s);
    assert_string_equal(s, "[Q {x}] {literal} (A})"); /* values are not re-formatted */
    free(s);
    assert_null(rmu_judge_format("{nope}", "tmpl", names, vals, 2, &e));
    assert_non_null(strstr(e.msg, "tmpl: template field {nope}"));
    assert_null(rmu_judge_format("a } b", "tmpl", names, vals, 2, &e));
    assert_non_null(strstr(e.msg, "single '}'"));
    assert_null(rmu_judge_format("a {question", "tmpl", names, vals, 2, &e));
}

static void test_prompt_choice(void **state) {
    (void)state;
    assert_string_equal(rmu_judge_prompt_name("writing", 1), "single-v1");
    assert_string_equal(rmu_judge_prompt_name("math", 1), "single-math-v1");
    assert_string_equal(rmu_judge_prompt_name("reasoning", 2), "single-math-v1-multi-turn");
    assert_string_equal(rmu_judge_prompt_name("coding", 2), "single-math-v1-multi-turn");
    assert_string_equal(rmu_judge_prompt_name("stem", 2), "single-v1-multi-turn");
    assert_true(rmu_judge_needs_ref("arena-hard-200"));
    assert_false(rmu_judge_needs_ref("humanities"));
}

static const char *PROMPTS =
    "{\"name\": \"single-v1\", \"type\": \"single\", \"system_prompt\": \"S1\", \"prompt_template\": "
    "\"Q={question} A={answer}\", \"output_format\": \"[[rating]]\"}\n"
    "{\"name\": \"single-math-v1\", \"type\": \"single\", \"system_prompt\": \"S2\", \"prompt_template\": "
    "\"Q={question} R={ref_answer_1} A={answer}\", \"output_format\": \"[[rating]]\"}\n"
    "{\"name\": \"single-v1-multi-turn\", \"type\": \"single\", \"system_prompt\": \"S3\", \"prompt_template\": "
    "\"{question_1}|{answer_1}|{question_2}|{answer_2}\", \"output_format\": \"[[rating]]\"}\n"
    "{\"name\": \"single-math-v1-multi-turn\", \"type\": \"single\", \"system_prompt\": \"S4\", \"prompt_template\": "
    "\"{question_1}|{ref_answer_1}|{question_2}|{ref_answer_2}|{answer_1}|{answer_2}\", \"output_format\": "
    "\"[[rating]]\"}\n";

static void test_user_prompts(void **state) {
    rmu_err e;
    const char *pp = tu_path(*state, "judge_prompts.jsonl");
    tu_write_file(pp, PROMPTS);
    rmu_judge_prompts jp;
    OK(rmu_judge_prompts_load(&jp, pp, &e));
    rmu_mtb_questions qs;
    const char *qt = "{\"question_id\": 111, \"category\": \"math\", \"turns\": [\"q1\", \"q2\"]}\n";
    OK(rmu_mtb_parse_questions(&qs, qt, strlen(qt), "q.jsonl", &e));
    json_t *ans = json_loads("{\"question_id\": 111, \"choices\": [{\"index\": 0, \"turns\": [\"a1\", \"a2\"]}]}", 0, NULL);
    json_t *ref = json_loads("{\"question_id\": 111, \"choices\": [{\"index\": 0, \"turns\": [\"r1\", \"r2\"]}]}", 0, NULL);
    char *u = rmu_judge_user_prompt(rmu_judge_prompts_get(&jp, "single-math-v1"), &qs.q[0], ans, ref, 1, &e);
    assert_string_equal(u, "Q=q1 R=r1 A=a1");
    free(u);
    u = rmu_judge_user_prompt(rmu_judge_prompts_get(&jp, "single-math-v1-multi-turn"), &qs.q[0], ans, ref, 2, &e);
    assert_string_equal(u, "q1|r1|q2|r2|a1|a2");
    free(u);
    u = rmu_judge_user_prompt(rmu_judge_prompts_get(&jp, "single-v1-multi-turn"), &qs.q[0], ans, NULL, 2, &e);
    assert_string_equal(u, "q1|a1|q2|a2");
    free(u);
    /* an answer missing its second turn is an error naming the question */
    json_t *short_ans = json_loads("{\"question_id\": 111, \"choices\": [{\"index\": 0, \"turns\": [\"a1\"]}]}", 0, NULL);
    assert_null(rmu_judge_user_prompt(rmu_judge_prompts_get(&jp, "single-v1-multi-turn"), &qs.q[0], short_ans, NULL, 2, &e));
    assert_non_null(strstr(e.msg, "question 111"));
    json_decref(short_ans), json_decref(ans), json_decref(ref);
    rmu_mtb_questions_free(&qs);
    rmu_judge_prompts_free(&jp);
    /* a prompt file without the four single prompts is refused */
    tu_write_file(pp, "{\"name\": \"single-v1\", \"type\": \"single\", \"system_prompt\": \"\", \"prompt_template\": "
                      "\"x\", \"output_format\": \"[[rating]]\"}\n");
    assert_int_equal(rmu_judge_prompts_load(&jp, pp, &e), -1);
    assert_non_null(strstr(e.msg, "\"single-math-v1\" is missing"));
}

static void test_record_line(void **state) {
    (void)state;
    json_t *qid = json_integer(81);
    char *l = rmu_judge_record_line(qid, "m", "gpt-4", "single-v1", "p\n\u00e9", "Rating: [[8.5]]", 8.5, 0, 1,
                                    1700000000.25);
    assert_string_equal(l, "{\"question_id\": 81, \"model\": \"m\", \"judge\": [\"gpt-4\", \"single-v1\"], \"user_prompt\": "
                           "\"p\\n\\u00e9\", \"judgment\": \"Rating: [[8.5]]\", \"score\": 8.5, \"turn\": 1, "
                           "\"tstamp\": 1700000000.25}\n");
    free(l);
    l = rmu_judge_record_line(qid, "m", "j", "single-v1", "p", "none", -1, 1, 2, 1.5);
    assert_non_null(strstr(l, "\"score\": -1, \"turn\": 2"));
    free(l);
    json_decref(qid);
}

static void test_stats(void **state) {
    rmu_err e;
    const char *p = tu_path(*state, "j.jsonl");
    tu_write_file(p, "{\"question_id\": 1, \"model\": \"a\", \"score\": 8, \"turn\": 1}\n"
                     "{\"question_id\": 1, \"model\": \"a\", \"score\": 6, \"turn\": 2}\n"
                     "{\"question_id\": 2, \"model\": \"a\", \"score\": -1, \"turn\": 1}\n"
                     "{\"question_id\": 2, \"model\": \"a\", \"score\": 9.5, \"turn\": 1}\n"
                     "{\"question_id\": 1, \"model\": \"b\", \"score\": 3, \"turn\": 1}\n"
                     "{\"question_id\": 2, \"model\": \"b\", \"sco"); /* cut by a kill */
    rmu_mtb_questions qs;
    const char *qt = "{\"question_id\": 1, \"category\": \"writing\", \"turns\": [\"x\"]}\n"
                     "{\"question_id\": 2, \"category\": \"math\", \"turns\": [\"y\"]}\n";
    OK(rmu_mtb_parse_questions(&qs, qt, strlen(qt), "q.jsonl", &e));
    rmu_judge_stats st;
    OK(rmu_judge_stats_load(&st, p, &qs, NULL, &e));
    assert_int_equal(st.nmodels, 2);
    assert_int_equal(st.dropped, 1);
    rmu_judge_model_stats *a = &st.m[0];
    assert_string_equal(a->model, "a");
    assert_near(a->sum[0] / a->n[0], (8 + 6 + 9.5) / 3, 1e-12);
    assert_near(a->sum[1] / a->n[1], (8 + 9.5) / 2, 1e-12);
    assert_near(a->sum[2] / a->n[2], 6, 1e-12);
    assert_int_equal(st.ncats, 2);
    assert_string_equal(st.cats[1], "math");
    assert_near(a->cat_sum[0] / a->cat_n[0], 7, 1e-12);
    assert_near(a->cat_sum[1] / a->cat_n[1], 9.5, 1e-12);
    rmu_judge_stats_free(&st);
    OK(rmu_judge_stats_load(&st, p, NULL, "b", &e));
    assert_int_equal(st.nmodels, 1);
    assert_near(st.m[0].sum[0], 3, 0);
    rmu_judge_stats_free(&st);
    tu_write_file(p, "{\"question_id\": 1, \"model\": \"a\", \"turn\": 1}\n");
    assert_int_equal(rmu_judge_stats_load(&st, p, NULL, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "j.jsonl:1: not a judgment"));
    rmu_mtb_questions_free(&qs);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_score),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_prompt_choice),
        cmocka_unit_test_setup_teardown(test_user_prompts, tu_setup_tmp, tu_teardown_tmp),
        cmocka_unit_test(test_record_line),
        cmocka_unit_test_setup_teardown(test_stats, tu_setup_tmp, tu_teardown_tmp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

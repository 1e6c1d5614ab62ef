/* test_eval.c - multiple-choice data, lm-eval v0.4.2 context strings byte for byte, data
 * lookup, result arithmetic and the error messages of bad input. No model needed. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "eval/eval.h"
#include "eval/mcq.h"

/* ---- helpers ---- */

static char *g_dir; /* the group's temporary folder */

static void mkdirp(const char *rel) { mkdir(tu_path(g_dir, rel), 0755); }

static void put(const char *rel, const char *text) { tu_write_file(tu_path(g_dir, rel), text); }

static const char *at(const char *rel) { return tu_path(g_dir, rel); }

static int setup(void **st) {
    (void)st;
    return (g_dir = tu_mkdtemp("test_eval")) ? 0 : -1;
}

static int teardown(void **st) {
    (void)st;
    tu_rmtree(g_dir);
    free(g_dir);
    return 0;
}

static void assert_contains(const char *hay, const char *needle) {
    if (!strstr(hay, needle)) fail_msg("'%s' does not contain '%s'", hay, needle);
}

/* MMLU CSV: a record spanning two lines (embedded newline), comma and "" inside quotes. */
static const char *ANATOMY_TEST = "\"What is 2+2?\nExplain.\",4,\"three, or so\",\"say \"\"five\"\"\",22,A\n"
                                  "  Plain question  ,x,y,z,w,D\n";
static const char *ANATOMY_DEV = "d1?,a1,b1,c1,d1,B\n"
                                 "d2?,a2,b2,c2,d2,C\n"
                                 "d3?,a3,b3,c3,d3,A\n"
                                 "d4?,a4,b4,c4,d4,D\n"
                                 " d5? ,a5,b5,c5,d5,A\n";

/* ---- CSV ---- */

static void test_csv_quoting(void **st) {
    (void)st;
    rmu_mcq_set s = {0};
    rmu_err e;
    OK(rmu_mcq_parse_csv(&s, ANATOMY_TEST, strlen(ANATOMY_TEST), "x.csv", &e));
    assert_int_equal(s.n, 2);
    assert_string_equal(s.items[0].question, "What is 2+2?\nExplain.");
    assert_string_equal(s.items[0].choices[0], "4");
    assert_string_equal(s.items[0].choices[1], "three, or so");
    assert_string_equal(s.items[0].choices[2], "say \"five\"");
    assert_string_equal(s.items[0].choices[3], "22");
    assert_int_equal(s.items[0].answer, 0);
    assert_int_equal(s.items[0].line, 1);
    assert_string_equal(s.items[1].question, "  Plain question  ");
    assert_int_equal(s.items[1].answer, 3);
    assert_int_equal(s.items[1].line, 3);
    rmu_mcq_set_free(&s);

    /* CRLF line ends, a BOM, no final newline, text after a closing quote (Python keeps it) */
    const char *t = "\xef\xbb\xbfq,\"a\"x,b,c,d,B\r\nq2,a,b,c,d,C";
    OK(rmu_mcq_parse_csv(&s, t, strlen(t), "y.csv", &e));
    assert_int_equal(s.n, 2);
    assert_string_equal(s.items[0].question, "q");
    assert_string_equal(s.items[0].choices[0], "ax");
    assert_string_equal(s.items[1].choices[3], "d");
    assert_int_equal(s.items[1].line, 2);
    rmu_mcq_set_free(&s);
}

static void test_csv_errors(void **st) {
    (void)st;
    rmu_mcq_set s = {0};
    rmu_err e;
    /* record 1 spans lines 1-2, record 2 is line 3, the bad one starts on line 4 */
    const char *t = "\"two\nlines\",a,b,c,d,A\nq,a,b,c,d,B\nq,a,b,c,C\n";
    assert_int_equal(rmu_mcq_parse_csv(&s, t, strlen(t), "data/anatomy_test.csv", &e), -1);
    assert_string_equal(e.msg, "data/anatomy_test.csv:4: expected 6 fields (question,A,B,C,D,answer), got 5");
    rmu_mcq_set_free(&s);

    const char *t2 = "q,a,b,c,d,E\n";
    assert_int_equal(rmu_mcq_parse_csv(&s, t2, strlen(t2), "f.csv", &e), -1);
    assert_string_equal(e.msg, "f.csv:1: answer 'E' is not one of A, B, C, D");
    rmu_mcq_set_free(&s);

    const char *t3 = "q,a,b,c,d,A\n\"open,a,b,c,d,A\n";
    assert_int_equal(rmu_mcq_parse_csv(&s, t3, strlen(t3), "g.csv", &e), -1);
    assert_string_equal(e.msg, "g.csv:2: unterminated quoted field (opened on line 2)");
    rmu_mcq_set_free(&s);
}

/* ---- JSON / JSONL ---- */

static void test_json_forms(void **st) {
    (void)st;
    rmu_mcq_set s = {0};
    rmu_err e;
    const char *jl = "{\"question\": \"q1\", \"choices\": [\"a\",\"b\",\"c\",\"d\"], \"answer\": 3}\n"
                     "\n"
                     "{\"question\": \"q2\", \"choices\": [\"a\",\"b\",\"c\",\"d\"], \"answer\": \"B\", \"subject\": \"virology\"}\n";
    OK(rmu_mcq_parse_json(&s, jl, strlen(jl), "w.jsonl", 4, 4, &e));
    assert_int_equal(s.n, 2);
    assert_int_equal(s.items[0].answer, 3);
    assert_null(s.items[0].subject);
    assert_int_equal(s.items[1].answer, 1);
    assert_string_equal(s.items[1].subject, "virology");
    assert_int_equal(s.items[1].line, 3);
    rmu_mcq_set_free(&s);

    const char *arr = " [ {\"question\": \"q\", \"choices\": [\"x\", 7], \"answer\": 1} ]";
    OK(rmu_mcq_parse_json(&s, arr, strlen(arr), "m.json", 2, 26, &e));
    assert_int_equal(s.n, 1);
    assert_string_equal(s.items[0].choices[1], "7");
    rmu_mcq_set_free(&s);
}

static void test_json_errors(void **st) {
    (void)st;
    rmu_mcq_set s = {0};
    rmu_err e;
    const char *jl = "{\"question\": \"q1\", \"choices\": [\"a\",\"b\",\"c\",\"d\"], \"answer\": 0}\n"
                     "{\"question\": \"q2\", \"choices\": [\"a\",\"b\",\"c\",\"d\"], \"answer\": 4}\n";
    assert_int_equal(rmu_mcq_parse_json(&s, jl, strlen(jl), "bio.jsonl", 4, 4, &e), -1);
    assert_string_equal(e.msg, "bio.jsonl:2: answer 4 is out of range for 4 choices");
    rmu_mcq_set_free(&s);

    const char *neg = "[{\"question\": \"q\", \"choices\": [\"a\",\"b\"], \"answer\": -1}]";
    assert_int_equal(rmu_mcq_parse_json(&s, neg, strlen(neg), "n.json", 2, 26, &e), -1);
    assert_string_equal(e.msg, "n.json: item 0: answer -1 is out of range for 2 choices");
    rmu_mcq_set_free(&s);

    const char *three = "{\"question\": \"q\", \"choices\": [\"a\",\"b\",\"c\"], \"answer\": 0}\n";
    assert_int_equal(rmu_mcq_parse_json(&s, three, strlen(three), "t.jsonl", 4, 4, &e), -1);
    assert_string_equal(e.msg, "t.jsonl:1: expected 4 choices, got 3");
    rmu_mcq_set_free(&s);

    const char *bad = "{\"question\": \"q\",\n";
    assert_int_equal(rmu_mcq_parse_json(&s, bad, strlen(bad), "b.jsonl", 4, 4, &e), -1);
    assert_contains(e.msg, "b.jsonl:1: invalid JSON");
    rmu_mcq_set_free(&s);

    const char *noq = "{\"choices\": [\"a\",\"b\",\"c\",\"d\"], \"answer\": 0}\n";
    assert_int_equal(rmu_mcq_parse_json(&s, noq, strlen(noq), "c.jsonl", 4, 4, &e), -1);
    assert_string_equal(e.msg, "c.jsonl:1: \"question\" must be a string");
    rmu_mcq_set_free(&s);
}

/* ---- strings ---- */

static void test_py_strip(void **st) {
    (void)st;
    /* NBSP, ideographic space, tab, newline around; an inner NBSP stays */
    const char *s = "\xc2\xa0\t Q\xc2\xa0x \xe3\x80\x80\n";
    size_t n = strlen(s);
    size_t off = rmu_py_lstrip_off(s, n), end = rmu_py_rstrip_len(s, n);
    char out[32];
    snprintf(out, sizeof out, "%.*s", (int)(end - off), s + off);
    assert_string_equal(out, "Q\xc2\xa0x");
    /* an accented letter is not whitespace */
    assert_int_equal(rmu_py_rstrip_len("caf\xc3\xa9", 5), 5);
    assert_int_equal(rmu_py_lstrip_off("   ", 3), 3);
    assert_int_equal(rmu_py_rstrip_len("   ", 3), 0);
    assert_int_equal(rmu_utf8_len("caf\xc3\xa9 \xe3\x80\x80"), 6);
}

static void test_doc_text_and_continuations(void **st) {
    (void)st;
    char *ch[5] = {"one", "two", "three", "four", "five"};
    rmu_mcq_item it = {.question = " \n Why?\t ", .choices = ch, .nchoices = 5, .answer = 4};
    char *t = rmu_mcq_doc_text(&it, RMU_MCQ_LETTER);
    assert_string_equal(t, "Why?\nA. one\nB. two\nC. three\nD. four\nE. five\nAnswer:");
    free(t);
    t = rmu_mcq_doc_text(&it, RMU_MCQ_CLOZE);
    assert_string_equal(t, "Question: Why?\nAnswer:");
    free(t);
    t = rmu_mcq_continuation(&it, 2, RMU_MCQ_LETTER);
    assert_string_equal(t, " C");
    free(t);
    t = rmu_mcq_continuation(&it, 2, RMU_MCQ_CLOZE);
    assert_string_equal(t, " three");
    free(t);
    t = rmu_mcq_description("high school biology", 1);
    assert_string_equal(t, "The following are multiple choice questions (with answers) about high school biology.\n");
    free(t);
    t = rmu_mcq_description("", 2);
    assert_string_equal(t, "");
    free(t);
}

/* ---- contexts through the plan (data lookup + strings) ---- */

static void write_wmdp(void) {
    mkdirp("wmdp");
    put("wmdp/wmdp-bio.jsonl",
        "{\"question\": \"\\n  Which agent?  \\t\", \"choices\": [\"a\", \"b\", \"c\", \"d\"], \"answer\": 2}\n"
        "{\"question\": \"Second\", \"choices\": [\"w\", \"x\", \"y\", \"z\"], \"answer\": 0}\n");
    put("wmdp/chem.json", "[{\"question\": \"Chem?\", \"choices\": [\"1\", \"2\", \"3\", \"4\"], \"answer\": \"D\"}]");
    put("wmdp/wmdp_cyber.jsonl", "{\"question\": \"Cyber?\", \"choices\": [\"p\", \"q\", \"r\", \"s\"], \"answer\": 1}\n");
}

static void write_mmlu(void) {
    mkdirp("mmlu");
    mkdirp("mmlu/test");
    mkdirp("mmlu/dev");
    put("mmlu/test/anatomy_test.csv", ANATOMY_TEST);
    put("mmlu/dev/anatomy_dev.csv", ANATOMY_DEV);
}

static void test_wmdp_zero_shot_context(void **st) {
    (void)st;
    write_wmdp();
    rmu_eval_plan p;
    rmu_err e;
    OK(rmu_eval_plan_init(&p, "wmdp", RMU_MCQ_LETTER, &e));
    OK(rmu_eval_plan_load(&p, at("wmdp"), 0, 0, &e));
    assert_int_equal(p.n, 4);
    assert_string_equal(p.nodes[0].name, "wmdp");
    assert_string_equal(p.nodes[1].name, "wmdp_bio");
    int bio = 1, chem = 2, cyber = 3;
    char *c = rmu_eval_context(&p, bio, 0);
    /* v0.4.2: Jinja drops the description's last newline; the question is strip()ped */
    assert_string_equal(c, "The following are multiple choice questions (with answers) about biology.\n"
                           "Which agent?\nA. a\nB. b\nC. c\nD. d\nAnswer:");
    free(c);
    c = rmu_eval_context(&p, chem, 0);
    assert_string_equal(c, "The following are multiple choice questions (with answers) about chemistry.\n"
                           "Chem?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:");
    free(c);
    assert_int_equal(p.nodes[chem].test.items[0].answer, 3);
    c = rmu_eval_context(&p, cyber, 0);
    assert_string_equal(c, "The following are multiple choice questions (with answers) about cybersecurity.\n"
                           "Cyber?\nA. p\nB. q\nC. r\nD. s\nAnswer:");
    free(c);
    /* lm-eval >= 0.4.4 keeps both newlines */
    p.desc_newlines = 2;
    c = rmu_eval_context(&p, bio, 1);
    assert_string_equal(c, "The following are multiple choice questions (with answers) about biology.\n\n"
                           "Second\nA. w\nB. x\nC. y\nD. z\nAnswer:");
    free(c);
    rmu_eval_plan_free(&p);
}

static void test_mmlu_zero_and_five_shot_context(void **st) {
    (void)st;
    write_mmlu();
    rmu_eval_plan p;
    rmu_err e;
    OK(rmu_eval_plan_init(&p, "mmlu_anatomy", RMU_MCQ_LETTER, &e));
    OK(rmu_eval_plan_load(&p, at("mmlu"), 0, 0, &e));
    assert_int_equal(p.n, 1);
    assert_int_equal(p.nodes[0].n, 2);
    char *c = rmu_eval_context(&p, 0, 0);
    assert_string_equal(c, "The following are multiple choice questions (with answers) about anatomy.\n"
                           "What is 2+2?\nExplain.\nA. 4\nB. three, or so\nC. say \"five\"\nD. 22\nAnswer:");
    free(c);
    c = rmu_eval_context(&p, 0, 1);
    assert_string_equal(c, "The following are multiple choice questions (with answers) about anatomy.\n"
                           "Plain question\nA. x\nB. y\nC. z\nD. w\nAnswer:");
    free(c);
    rmu_eval_plan_free(&p);

    OK(rmu_eval_plan_init(&p, "mmlu_anatomy", RMU_MCQ_LETTER, &e));
    OK(rmu_eval_plan_load(&p, at("mmlu"), 5, 0, &e));
    c = rmu_eval_context(&p, 0, 1);
    assert_string_equal(c, "The following are multiple choice questions (with answers) about anatomy.\n"
                           "d1?\nA. a1\nB. b1\nC. c1\nD. d1\nAnswer: B\n\n"
                           "d2?\nA. a2\nB. b2\nC. c2\nD. d2\nAnswer: C\n\n"
                           "d3?\nA. a3\nB. b3\nC. c3\nD. d3\nAnswer: A\n\n"
                           "d4?\nA. a4\nB. b4\nC. c4\nD. d4\nAnswer: D\n\n"
                           "d5?\nA. a5\nB. b5\nC. c5\nD. d5\nAnswer: A\n\n"
                           "Plain question\nA. x\nB. y\nC. z\nD. w\nAnswer:");
    free(c);
    rmu_eval_plan_free(&p);

    /* 2-shot with the later description form, multi-word subject via a tagged JSONL */
    put("tagged.jsonl", "{\"question\": \"T?\", \"choices\": [\"a\",\"b\",\"c\",\"d\"], \"answer\": 1, \"subject\": \"high_school_biology\"}\n"
                        "{\"question\": \"U?\", \"choices\": [\"a\",\"b\",\"c\",\"d\"], \"answer\": 2, \"subject\": \"virology\"}\n");
    put("tagged_dev.jsonl", "{\"question\": \"S1\", \"choices\": [\"e\",\"f\",\"g\",\"h\"], \"answer\": 3, \"subject\": \"high_school_biology\"}\n"
                            "{\"question\": \"V1\", \"choices\": [\"e\",\"f\",\"g\",\"h\"], \"answer\": 0, \"subject\": \"virology\"}\n"
                            "{\"question\": \"S2\", \"choices\": [\"i\",\"j\",\"k\",\"l\"], \"answer\": 0, \"subject\": \"high_school_biology\"}\n");
    char spec[1200];
    snprintf(spec, sizeof spec, "mmlu_high_school_biology=%s,mmlu_high_school_biology_dev=%s", at("tagged.jsonl"),
             at("tagged_dev.jsonl"));
    OK(rmu_eval_plan_init(&p, "mmlu_high_school_biology", RMU_MCQ_LETTER, &e));
    p.desc_newlines = 2;
    OK(rmu_eval_plan_load(&p, spec, 2, 0, &e));
    assert_int_equal(p.nodes[0].n, 1);
    c = rmu_eval_context(&p, 0, 0);
    assert_string_equal(c, "The following are multiple choice questions (with answers) about high school biology.\n\n"
                           "S1\nA. e\nB. f\nC. g\nD. h\nAnswer: D\n\n"
                           "S2\nA. i\nB. j\nC. k\nD. l\nAnswer: A\n\n"
                           "T?\nA. a\nB. b\nC. c\nD. d\nAnswer:");
    free(c);
    rmu_eval_plan_free(&p);
}

static void test_fewshot_skips_the_doc_itself(void **st) {
    (void)st;
    /* lm-eval drops a sampled shot equal to the document (so one shot fewer) */
    put("same_test.csv", "d1?,a1,b1,c1,d1,B\n");
    put("same_dev.csv", "d1?,a1,b1,c1,d1,B\nd2?,a2,b2,c2,d2,C\n");
    char spec[1200];
    snprintf(spec, sizeof spec, "mcq=%s,mcq_dev=%s", at("same_test.csv"), at("same_dev.csv"));
    rmu_eval_plan p;
    rmu_err e;
    OK(rmu_eval_plan_init(&p, "mcq", RMU_MCQ_LETTER, &e));
    OK(rmu_eval_plan_load(&p, spec, 2, 0, &e));
    char *c = rmu_eval_context(&p, 0, 0);
    assert_string_equal(c, "d2?\nA. a2\nB. b2\nC. c2\nD. d2\nAnswer: C\n\nd1?\nA. a1\nB. b1\nC. c1\nD. d1\nAnswer:");
    free(c);
    rmu_eval_plan_free(&p);
}

static void test_mcq_cloze(void **st) {
    (void)st;
    put("gen.jsonl", "{\"question\": \" The sky is \", \"choices\": [\"blue\", \"green\", \"caf\\u00e9\"], \"answer\": 0}\n");
    rmu_eval_plan p;
    rmu_err e;
    OK(rmu_eval_plan_init(&p, "mcq", RMU_MCQ_CLOZE, &e));
    OK(rmu_eval_plan_load(&p, at("gen.jsonl"), 0, 0, &e));
    char *c = rmu_eval_context(&p, 0, 0);
    assert_string_equal(c, "Question: The sky is\nAnswer:");
    free(c);
    c = rmu_mcq_continuation(&p.nodes[0].test.items[0], 2, RMU_MCQ_CLOZE);
    assert_string_equal(c, " caf\xc3\xa9");
    free(c);
    rmu_eval_plan_free(&p);
    /* cloze is not how lm-eval scores WMDP/MMLU */
    assert_int_equal(rmu_eval_plan_init(&p, "wmdp_bio", RMU_MCQ_CLOZE, &e), -1);
    assert_string_equal(e.msg, "format: cloze is only for the mcq task; wmdp_bio is scored on the letters A-D as lm-eval does");
}

/* ---- task names, data lookup errors, limit ---- */

static void test_task_tree(void **st) {
    (void)st;
    rmu_eval_plan p;
    rmu_err e;
    OK(rmu_eval_plan_init(&p, "mmlu", RMU_MCQ_LETTER, &e));
    assert_int_equal(p.n, 1 + 4 + 57);
    int counts[4] = {0};
    for (int i = 0; i < p.n; i++) {
        const rmu_eval_node *d = &p.nodes[i];
        if (d->family != RMU_EVAL_MMLU) continue;
        const char *par = p.nodes[d->parent].name;
        for (int c = 0; c < 4; c++)
            if (!strcmp(par + 5, RMU_MCQ_MMLU_CATEGORIES[c])) counts[c]++;
    }
    /* lm-eval v0.4.2: stem 19, other 13, social_sciences 12, humanities 13 */
    assert_int_equal(counts[0], 19);
    assert_int_equal(counts[1], 13);
    assert_int_equal(counts[2], 12);
    assert_int_equal(counts[3], 13);
    int k = -1;
    for (int i = 0; i < p.n; i++)
        if (!strcmp(p.nodes[i].name, "mmlu_high_school_government_and_politics")) k = i;
    assert_true(k >= 0);
    assert_string_equal(p.nodes[k].topic, "high school government and politics");
    assert_string_equal(p.nodes[k].alias, "high_school_government_and_politics");
    assert_string_equal(p.nodes[p.nodes[k].parent].name, "mmlu_social_sciences");
    assert_string_equal(p.nodes[p.nodes[k].parent].alias, "social_sciences");
    rmu_eval_plan_free(&p);

    assert_int_equal(rmu_eval_plan_init(&p, "wmdp,mmlu_bogus", RMU_MCQ_LETTER, &e), -1);
    assert_string_equal(e.msg, "tasks: unknown MMLU subject 'bogus' in 'mmlu_bogus' (the 57 subjects of lm-eval, e.g. mmlu_anatomy)");
    assert_int_equal(rmu_eval_plan_init(&p, "wmdp_bio,hellaswag", RMU_MCQ_LETTER, &e), -1);
    assert_string_equal(e.msg, "tasks: unknown task 'hellaswag' (known: wmdp, wmdp_bio, wmdp_chem, wmdp_cyber, mmlu, "
                               "mmlu_stem, mmlu_other, mmlu_social_sciences, mmlu_humanities, mmlu_SUBJECT, mcq)");
    assert_int_equal(rmu_eval_plan_init(&p, "mmlu_stem,mmlu_anatomy", RMU_MCQ_LETTER, &e), -1);
    assert_string_equal(e.msg, "tasks: 'mmlu_anatomy' is requested twice (it is part of 'mmlu_stem')");
    assert_int_equal(rmu_eval_plan_init(&p, "", RMU_MCQ_LETTER, &e), -1);
    assert_string_equal(e.msg, "tasks: empty task list");
}

static void test_data_errors(void **st) {
    (void)st;
    write_mmlu();
    rmu_eval_plan p;
    rmu_err e;
    /* virology has no file in the folder */
    OK(rmu_eval_plan_init(&p, "mmlu_anatomy,mmlu_virology", RMU_MCQ_LETTER, &e));
    assert_int_equal(rmu_eval_plan_load(&p, at("mmlu"), 0, 0, &e), -1);
    assert_string_equal(e.msg, "mmlu_virology: no test data for subject 'virology' in the data list (looked for "
                               "test/virology_test.csv, test/virology.jsonl, test/virology_test.jsonl, "
                               "test/virology.json, test.jsonl, ... in each folder); or give mmlu_virology=FILE");
    rmu_eval_plan_free(&p);

    /* more shots than dev rows */
    OK(rmu_eval_plan_init(&p, "mmlu_anatomy", RMU_MCQ_LETTER, &e));
    assert_int_equal(rmu_eval_plan_load(&p, at("mmlu"), 6, 0, &e), -1);
    char want[700];
    snprintf(want, sizeof want, "mmlu_anatomy: num_fewshot 6 but %s has only 5 rows", at("mmlu/dev/anatomy_dev.csv"));
    assert_string_equal(e.msg, want);
    rmu_eval_plan_free(&p);

    /* WMDP has no dev split */
    write_wmdp();
    OK(rmu_eval_plan_init(&p, "wmdp_bio", RMU_MCQ_LETTER, &e));
    assert_int_equal(rmu_eval_plan_load(&p, at("wmdp"), 1, 0, &e), -1);
    assert_string_equal(e.msg, "wmdp_bio: num_fewshot 1 needs few-shot rows, and WMDP has no dev split (lm-eval would "
                               "draw test rows at random); give wmdp_bio_dev=FILE in the data list");
    rmu_eval_plan_free(&p);

    /* a bad row is reported with its file and line through the plan */
    mkdirp("bad");
    mkdirp("bad/test");
    put("bad/test/anatomy_test.csv", "q,a,b,c,d,A\nq,a,b,c,d,A,extra\n");
    OK(rmu_eval_plan_init(&p, "mmlu_anatomy", RMU_MCQ_LETTER, &e));
    assert_int_equal(rmu_eval_plan_load(&p, at("bad"), 0, 0, &e), -1);
    snprintf(want, sizeof want, "%s:2: expected 6 fields (question,A,B,C,D,answer), got 7", at("bad/test/anatomy_test.csv"));
    assert_string_equal(e.msg, want);
    rmu_eval_plan_free(&p);

    /* unknown key, missing path */
    OK(rmu_eval_plan_init(&p, "wmdp_bio", RMU_MCQ_LETTER, &e));
    assert_int_equal(rmu_eval_plan_load(&p, "mmlu=/nonexistent", 0, 0, &e), -1);
    assert_string_equal(e.msg, "data: 'mmlu=' names no task or group of this run (see the task list)");
    assert_int_equal(rmu_eval_plan_load(&p, "/nonexistent/x.jsonl", 0, 0, &e), -1);
    assert_string_equal(e.msg, "data: /nonexistent/x.jsonl: no such file or folder");
    rmu_eval_plan_free(&p);
}

static void test_data_lookup_and_limit(void **st) {
    (void)st;
    write_wmdp();
    write_mmlu();
    rmu_eval_plan p;
    rmu_err e;
    /* folders for two families at once; --limit as a count */
    char spec[1200];
    snprintf(spec, sizeof spec, "%s,%s", at("wmdp"), at("mmlu"));
    OK(rmu_eval_plan_init(&p, "wmdp,mmlu_anatomy", RMU_MCQ_LETTER, &e));
    OK(rmu_eval_plan_load(&p, spec, 0, 1, &e));
    for (int i = 0; i < p.n; i++)
        if (p.nodes[i].family != RMU_EVAL_GROUP) assert_int_equal(p.nodes[i].n, 1);
    assert_int_equal(p.nodes[1].n_orig, 2);
    assert_int_equal(rmu_eval_plan_rows(&p), 4);
    rmu_eval_plan_free(&p);

    /* a lone plain file serves the one task; fraction limit as lm-eval: int(n * f) */
    OK(rmu_eval_plan_init(&p, "wmdp_bio", RMU_MCQ_LETTER, &e));
    OK(rmu_eval_plan_load(&p, at("wmdp/wmdp-bio.jsonl"), 0, 0.5, &e));
    assert_int_equal(p.nodes[0].n, 1);
    rmu_eval_plan_free(&p);

    /* a file named for its task among several tasks */
    snprintf(spec, sizeof spec, "%s,wmdp_chem=%s,wmdp_cyber=%s", at("wmdp/wmdp-bio.jsonl"), at("wmdp/chem.json"),
             at("wmdp/wmdp_cyber.jsonl"));
    OK(rmu_eval_plan_init(&p, "wmdp", RMU_MCQ_LETTER, &e));
    OK(rmu_eval_plan_load(&p, spec, 0, 0, &e));
    assert_int_equal(p.nodes[1].n, 2);
    assert_int_equal(p.nodes[2].n, 1);
    rmu_eval_plan_free(&p);

    /* an unnamed file among several tasks is ambiguous */
    put("misc.jsonl", "{\"question\": \"q\", \"choices\": [\"a\",\"b\",\"c\",\"d\"], \"answer\": 0}\n");
    OK(rmu_eval_plan_init(&p, "wmdp", RMU_MCQ_LETTER, &e));
    assert_int_equal(rmu_eval_plan_load(&p, at("misc.jsonl"), 0, 0, &e), -1);
    assert_string_equal(e.msg, "wmdp_bio: no test data in the data list (looked for wmdp-bio.jsonl, wmdp_bio.jsonl, bio.jsonl "
                               "or .json in each folder); or give wmdp_bio=FILE");
    rmu_eval_plan_free(&p);
}

/* ---- results arithmetic ---- */

static rmu_eval_node mk(const char *name, int parent, int family) {
    rmu_eval_node d;
    memset(&d, 0, sizeof d);
    snprintf(d.name, sizeof d.name, "%s", name);
    snprintf(d.alias, sizeof d.alias, "%s", name);
    d.parent = parent;
    d.family = family;
    return d;
}

static void test_group_aggregation(void **st) {
    (void)st;
    /* top = {g1 = {a, b}, c}; expected values from lm-eval's formulas in Python */
    double a[] = {1, 0, 1, 1}, b[] = {0, 0, 1}, c[] = {1, 1, 0, 0, 1};
    rmu_eval_node nodes[5] = {mk("top", -1, RMU_EVAL_GROUP), mk("g1", 0, RMU_EVAL_GROUP), mk("a", 1, RMU_EVAL_MMLU),
                              mk("b", 1, RMU_EVAL_MMLU), mk("c", 0, RMU_EVAL_MMLU)};
    nodes[2].acc = a;
    nodes[2].n = nodes[2].n_orig = 4;
    nodes[3].acc = b;
    nodes[3].n = nodes[3].n_orig = 3;
    nodes[4].acc = c;
    nodes[4].n = nodes[4].n_orig = 5;
    rmu_eval_plan p = {.nodes = nodes, .n = 5, .cap = 5};
    rmu_eval_aggregate(&p);
    assert_near(nodes[2].st_acc.value, 0.75, 1e-15);
    assert_near(nodes[2].st_acc.stderr, 0.25, 1e-15);
    assert_near(nodes[3].st_acc.stderr, 0.33333333333333337, 1e-15);
    assert_near(nodes[4].st_acc.stderr, 0.24494897427831783, 1e-15);
    assert_near(nodes[1].st_acc.value, 0.5714285714285714, 1e-15);
    assert_near(nodes[1].st_acc.stderr, 0.20118695404073914, 1e-15);
    assert_int_equal(nodes[1].samples, 7);
    assert_near(nodes[0].st_acc.value, 0.5833333333333334, 1e-15);
    /* nested pooling, not the flat stderr of all 12 rows (0.14865) */
    assert_near(nodes[0].st_acc.stderr, 0.15545631755148026, 1e-15);
    assert_int_equal(nodes[0].samples, 12);
    assert_true(nodes[0].st_acc.has_stderr);

    /* JSON shape and lm-eval's alias indentation */
    json_t *j = rmu_eval_results_json(&p, NULL);
    json_t *r = json_object_get(j, "results");
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "top"), "alias")), "top");
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "g1"), "alias")), " - g1");
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "a"), "alias")), "  - a");
    assert_near(json_real_value(json_object_get(json_object_get(r, "top"), "acc_stderr,none")),
                        0.15545631755148026, 1e-15);
    json_t *g = json_object_get(j, "groups");
    assert_int_equal(json_object_size(g), 2);
    assert_non_null(json_object_get(g, "g1"));
    json_t *sub = json_object_get(json_object_get(j, "group_subtasks"), "top");
    assert_int_equal(json_array_size(sub), 2);
    assert_string_equal(json_string_value(json_array_get(sub, 0)), "c");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(json_object_get(j, "n-samples"), "a"), "effective")), 4);
    json_decref(j);

    char *tab = rmu_eval_table(&p);
    assert_contains(tab, "|top  |    12|     0|acc     |0.5833|±  |0.1555|");
    assert_contains(tab, "|  - a|     4|     0|acc     |0.7500|±  |0.2500|");
    free(tab);

    /* a single-row subtask has stderr N/A, and so has every group above it */
    double one[] = {1};
    nodes[3].acc = one;
    nodes[3].n = 1;
    rmu_eval_aggregate(&p);
    assert_false(nodes[3].st_acc.has_stderr);
    assert_false(nodes[1].st_acc.has_stderr);
    assert_false(nodes[0].st_acc.has_stderr);
    assert_near(nodes[1].st_acc.value, 0.8, 1e-15);
    j = rmu_eval_results_json(&p, json_pack("{s:s}", "model", "x"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(j, "results"), "top"),
                                                          "acc_stderr,none")),
                        "N/A");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "config"), "model")), "x");
    json_decref(j);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_quoting),
        cmocka_unit_test(test_csv_errors),
        cmocka_unit_test(test_json_forms),
        cmocka_unit_test(test_json_errors),
        cmocka_unit_test(test_py_strip),
        cmocka_unit_test(test_doc_text_and_continuations),
        cmocka_unit_test(test_wmdp_zero_shot_context),
        cmocka_unit_test(test_mmlu_zero_and_five_shot_context),
        cmocka_unit_test(test_fewshot_skips_the_doc_itself),
        cmocka_unit_test(test_mcq_cloze),
        cmocka_unit_test(test_task_tree),
        cmocka_unit_test(test_data_errors),
        cmocka_unit_test(test_data_lookup_and_limit),
        cmocka_unit_test(test_group_aggregation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/* test_chat.c - chat templates: the Zephyr template from ../shared byte for byte, Llama-2 /
 * Mistral-instruct and ChatML style templates, whitespace control and expressions (expected
 * strings produced by Jinja2 3.1 with HF's apply_chat_template settings: trim_blocks,
 * lstrip_blocks, loopcontrols), the unsupported-construct error, the built-in formats and
 * BOS handling in rmu_chat_encode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "testutil.h"

#include "core/fileio.h"
#include "tokenizer/chat.h"
#include "tokenizer/bpe_train.h"
#include "tokenizer/tokenizer.h"

/* A synthetic tokenizer in DIR/tok whose tokenizer_config.json carries tmpl (NULL: no
 * chat_template); each call rewrites the folder. */
static rmu_tokenizer *make_tok(void **state, const char *tmpl) {
    rmu_err e;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", tu_path(*state, "tok"));
    OK(rmu_bpe_write_synthetic(dir, 300, NULL, 0, &e));
    if (tmpl) {
        json_t *c = json_pack("{s:b, s:s, s:s, s:s, s:s}", "add_bos_token", 1, "bos_token", "<s>", "eos_token", "</s>",
                              "unk_token", "<unk>", "chat_template", tmpl);
        assert_int_equal(json_dump_file(c, tu_path(dir, "tokenizer_config.json"), 0), 0);
        json_decref(c);
    }
    rmu_tokenizer *t = rmu_tok_load(dir, &e);
    if (!t) fail_msg("%s", e.msg);
    return t;
}

static const rmu_chat_msg SU[] = {{"system", "S"}, {"user", "U"}};
static const rmu_chat_msg M2[] = {
    {"system", " Sys prompt "}, {"user", "Hello there"}, {"assistant", " Hi! "}, {"user", "How x?"}};

static void expect_render(const rmu_tokenizer *t, rmu_chat_kind kind, const rmu_chat_msg *m, int n, int agp,
                          const char *want) {
    rmu_err e;
    char *s = rmu_chat_render(t, kind, m, n, agp, &e);
    if (!s) fail_msg("render failed: %s", e.msg);
    if (strcmp(s, want)) {
        fail_msg("rendered\n[%s]\nwant\n[%s]", s, want);
    }
    free(s);
}

static void expect_render_error(const rmu_tokenizer *t, rmu_chat_kind kind, const rmu_chat_msg *m, int n,
                                const char *want) {
    rmu_err e = {{0}};
    char *s = rmu_chat_render(t, kind, m, n, 1, &e);
    if (s) {
        free(s);
        fail_msg("rendered, expected the error '%s'", want);
    }
    if (strcmp(e.msg, want)) fail_msg("message\n[%s]\nwant\n[%s]", e.msg, want);
}

static const char *ZEPHYR_SU = "<|system|>\nS</s>\n<|user|>\nU</s>\n<|assistant|>\n";
static const char *ZEPHYR_M2 =
    "<|system|>\n Sys prompt </s>\n<|user|>\nHello there</s>\n<|assistant|>\n Hi! </s>\n<|user|>\nHow x?</s>\n";

static void test_zephyr_template_file(void **state) {
    TU_NEED_SHARED(p, "data/zephyr-7b-beta/chat_template.jinja");
    rmu_err e;
    char *tmpl = rmu_file_read_all(p, NULL, &e);
    assert_non_null(tmpl);
    rmu_tokenizer *t = make_tok(state, tmpl);
    free(tmpl);
    expect_render(t, RMU_CHAT_AUTO, SU, 2, 1, ZEPHYR_SU);
    expect_render(t, RMU_CHAT_AUTO, M2, 4, 0, ZEPHYR_M2);
    expect_render(t, RMU_CHAT_AUTO, M2, 4, 1, "<|system|>\n Sys prompt </s>\n<|user|>\nHello there</s>\n<|assistant|>\n"
                                              " Hi! </s>\n<|user|>\nHow x?</s>\n<|assistant|>\n");
    expect_render(t, RMU_CHAT_AUTO, NULL, 0, 1, "");
    /* the built-in format renders the same bytes */
    expect_render(t, RMU_CHAT_ZEPHYR, SU, 2, 1, ZEPHYR_SU);
    expect_render(t, RMU_CHAT_ZEPHYR, M2, 4, 0, ZEPHYR_M2);
    /* encoded: BOS first, each "</s>" is the EOS id, not its characters */
    char *s = rmu_chat_render(t, RMU_CHAT_AUTO, SU, 2, 1, &e);
    int *ids, n, eos = 0;
    assert_int_equal(rmu_chat_encode(t, s, &ids, &n, &e), 0);
    assert_int_equal(ids[0], 1);
    for (int i = 0; i < n; i++) eos += ids[i] == 2;
    assert_int_equal(eos, 2);
    char *d = rmu_tok_decode(t, ids, n, 0, &e);
    /* the legacy Prepend normalizer gives each segment after "</s>" its own "▁", as HF does
     * for zephyr's legacy-form tokenizer.json: it shows as a space after each </s> */
    assert_string_equal(d, "<s> <|system|>\nS</s> \n<|user|>\nU</s> \n<|assistant|>\n");
    free(d), free(ids), free(s);
    rmu_tok_free(t);
}

static void test_builtin_formats(void **state) {
    rmu_tokenizer *t = make_tok(state, NULL);
    assert_null(rmu_tok_chat_template(t));
    expect_render(t, RMU_CHAT_ZEPHYR, SU, 2, 1, ZEPHYR_SU);
    expect_render(t, RMU_CHAT_ZEPHYR, M2, 4, 0, ZEPHYR_M2);
    /* no chat_template: auto falls back to plain */
    expect_render(t, RMU_CHAT_AUTO, SU, 2, 1, "System: S\nUser: U\nAssistant:");
    expect_render(t, RMU_CHAT_PLAIN, M2, 4, 0,
                  "System:  Sys prompt \nUser: Hello there\nAssistant:  Hi! \nUser: How x?\n");
    expect_render(t, RMU_CHAT_PLAIN, M2, 4, 1,
                  "System:  Sys prompt \nUser: Hello there\nAssistant:  Hi! \nUser: How x?\nAssistant:");
    rmu_err e;
    assert_null(rmu_chat_render(t, (rmu_chat_kind)7, SU, 2, 1, &e));
    assert_non_null(strstr(e.msg, "unknown template kind 7"));
    rmu_tok_free(t);
    assert_int_equal(rmu_chat_kind_parse("auto"), RMU_CHAT_AUTO);
    assert_int_equal(rmu_chat_kind_parse(NULL), RMU_CHAT_AUTO);
    assert_int_equal(rmu_chat_kind_parse("zephyr"), RMU_CHAT_ZEPHYR);
    assert_int_equal(rmu_chat_kind_parse("plain"), RMU_CHAT_PLAIN);
    assert_int_equal(rmu_chat_kind_parse("chatml"), -1);
}

/* Llama-2-chat style: system folded into the first user turn, bos per turn, .strip() */
static const char *LLAMA2 =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif "
    "%}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
    "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
    "loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if "
    "message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] "
    "== 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}\n";

/* Mistral-instruct style: one BOS, strict alternation, no system role */
static const char *MISTRAL =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
    "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
    "message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
    "'assistant' %}{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and assistant "
    "roles are supported!') }}{% endif %}{% endfor %}\n";

static void test_llama2_template(void **state) {
    rmu_tokenizer *t = make_tok(state, LLAMA2);
    expect_render(t, RMU_CHAT_AUTO, M2, 4, 1,
                  "<s>[INST] <<SYS>>\n Sys prompt \n<</SYS>>\n\nHello there [/INST] Hi! </s><s>[INST] How x? [/INST]");
    expect_render(t, RMU_CHAT_AUTO, M2 + 1, 3, 0, "<s>[INST] Hello there [/INST] Hi! </s><s>[INST] How x? [/INST]");
    const rmu_chat_msg bad[] = {{"user", "a"}, {"user", "b"}};
    expect_render_error(t, RMU_CHAT_AUTO, bad, 2,
                        "tokenizer_config.json: chat_template: raised an error at line 1: Conversation roles must "
                        "alternate user/assistant/user/assistant/...");
    expect_render_error(t, RMU_CHAT_AUTO, NULL, 0,
                        "tokenizer_config.json: chat_template: error at line 1: list object has no element 0");
    /* the prompt starts with "<s>": rmu_chat_encode must not add a second BOS */
    rmu_err e;
    char *s = rmu_chat_render(t, RMU_CHAT_AUTO, M2 + 1, 1, 1, &e);
    int *ids, n;
    assert_int_equal(rmu_chat_encode(t, s, &ids, &n, &e), 0);
    assert_int_equal(ids[0], 1);
    assert_int_not_equal(ids[1], 1);
    free(ids), free(s);
    rmu_tok_free(t);
}

static void test_mistral_instruct_template(void **state) {
    rmu_tokenizer *t = make_tok(state, MISTRAL);
    expect_render(t, RMU_CHAT_AUTO, M2 + 1, 3, 1, "<s>[INST] Hello there [/INST] Hi! </s> [INST] How x? [/INST]");
    expect_render_error(t, RMU_CHAT_AUTO, M2, 4,
                        "tokenizer_config.json: chat_template: raised an error at line 1: Conversation roles must "
                        "alternate user/assistant/user/assistant/...");
    /* a forced kind does not run the template */
    expect_render(t, RMU_CHAT_ZEPHYR, SU, 2, 1, ZEPHYR_SU);
    rmu_tok_free(t);
}

static void test_chatml_template(void **state) {
    rmu_tokenizer *t = make_tok(state, "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                                    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if "
                                    "add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}\n");
    expect_render(t, RMU_CHAT_AUTO, M2, 4, 1,
                  "<|im_start|>system\n Sys prompt <|im_end|>\n<|im_start|>user\nHello there<|im_end|>\n"
                  "<|im_start|>assistant\n Hi! <|im_end|>\n<|im_start|>user\nHow x?<|im_end|>\n<|im_start|>assistant\n");
    expect_render(t, RMU_CHAT_AUTO, M2 + 1, 1, 0, "<|im_start|>user\nHello there<|im_end|>\n");
    /* no BOS in the text: rmu_chat_encode adds it (add_bos_token true) */
    rmu_err e;
    int *ids, n;
    assert_int_equal(rmu_chat_encode(t, "<|im_start|>user", &ids, &n, &e), 0);
    assert_int_equal(ids[0], 1);
    free(ids);
    rmu_tok_free(t);
}

static void test_whitespace_control(void **state) {
    /* "-" on both sides, "+" disabling lstrip_blocks, trim_blocks after %} and #}, comments,
     * indentation before block tags stripped, before {{ }} kept */
    rmu_tokenizer *t = make_tok(state, "{{- bos_token }}\n{%- for m in messages %}\n    {%- if m.role == 'system' %}\n"
                                    "        {{- '### System: ' ~ m.content | trim ~ '\\n' }}\n    {% elif m.role == "
                                    "\"user\" -%}\n        ### User:   {{ m.content }}\n    {%+ else %}\n  ### {{ "
                                    "m.role | upper }}: {{ m['content'] }}{{ eos_token }}\n    {% endif %}\n    {# a "
                                    "comment #}\n  {% if loop.last and add_generation_prompt %}\n### Assistant:\n  "
                                    "{%- endif %}\n{% endfor %}\n");
    expect_render(t, RMU_CHAT_AUTO, M2, 4, 0,
                  "<s>### System: Sys prompt\n\n### User:   Hello there\n      ### ASSISTANT:  Hi! </s>\n### User:   "
                  "How x?\n    ");
    expect_render(t, RMU_CHAT_AUTO, M2, 4, 1,
                  "<s>### System: Sys prompt\n\n### User:   Hello there\n      ### ASSISTANT:  Hi! </s>\n### User:   "
                  "How x?\n    ### Assistant:");
    rmu_tok_free(t);
}

static void test_expressions(void **state) {
    rmu_tokenizer *t = make_tok(
        state, "{%- set n = messages | length -%}\n{%- for m in messages if m.role != 'system' -%}\n[{{ loop.index }}/{{ "
            "loop.length }}{{ '*' if loop.first else '' }}{{ ',last' if loop.last }}] {{ m.content[:3] }}|{{ "
            "m.content[-2:] }}|{{ m['role'][0] }}\n{% if m.content is string and 'x' not in m.content and "
            "m.get('missing') is none %}ok {{ n * 2 - 1 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 'ab' * 2 }}{% endif %}\n{% if "
            "m.content.startswith('He') %}{% continue %}{% endif %}\nafter {{ loop.previtem is defined }} {{ "
            "undefined_var }}{{ undefined_var is defined }} {{ [1, 'a', true, none] }}\n{% endfor %}\n{%- for x in [] "
            "%}never{% else %}empty-else{% endfor %}\n{% for i in [1,2,3,4] %}{% if i == 3 %}{% break %}{% endif %}{{ "
            "i }}{% endfor %}\n{{ \"esc\\t\\\"q\\\"\\\\\" }} {{ 'a' 'b' }} {{ 3 > 2 and 'yes' or 'no' }} {{ not none "
            "}} {{ 'USER'|lower|capitalize }}\n");
    expect_render(t, RMU_CHAT_AUTO, M2, 4, 0,
                  "[1/3*] Hel|re|u\nok 7 -4 2 abab[2/3]  Hi|! |a\nok 7 -4 2 ababafter True False [1, 'a', True, "
                  "None]\n[3/3,last] How|x?|u\nafter True False [1, 'a', True, None]\nempty-else12esc\t\"q\"\\ ab yes "
                  "True User");
    rmu_tok_free(t);
}

static void test_unsupported_and_errors(void **state) {
    /* parse errors say how to get a prompt anyway; errors while rendering do not */
#define CT "tokenizer_config.json: chat_template: "
#define USE "; use template zephyr or plain instead"
    static const struct {
        const char *tmpl, *msg;
    } cases[] = {
        {"{% macro m() %}x{% endmacro %}{{ m() }}", CT "unsupported construct at line 1: {% macro %}" USE},
        {"{{ messages | tojson }}", CT "unsupported construct at line 1: filter 'tojson'" USE},
        {"\n{% set ns = namespace(found=false) %}", CT "unsupported construct at line 2: function 'namespace'" USE},
        {"{{ messages[0].content.split(' ') }}", CT "unsupported construct at line 1: method 'split'" USE},
        {"{% for k, v in x %}{% endfor %}", CT "unsupported construct at line 1: for-loop tuple unpacking" USE},
        {"{{ {'a': 1} }}", CT "unsupported construct at line 1: dict literals" USE},
        {"{% if x is divisibleby(3) %}{% endif %}", CT "unsupported construct at line 1: test 'divisibleby'" USE},
        {"{% generation %}x{% endgeneration %}", CT "unsupported construct at line 1: {% generation %}" USE},
        {"a\n{% if true %}x", CT "syntax error at line 2: {% if %} is never closed (missing {% endif %})" USE},
        {"{{ 'x' }", CT "syntax error at line 1: missing }}" USE},
        {"{{ 1 + }}", CT "syntax error at line 1: expected an expression, got a tag end" USE},
        {"x\n\n{% endfor %}", CT "syntax error at line 3: unexpected {% endfor %}" USE},
        {"{{ x }}\n{{ x +\n 'a' + 2 }}", CT "error at line 2: 'x' is undefined"},
        {"{{ 'a' + 1 }}", CT "error at line 1: cannot add string and integer"},
        {"{{ messages.x.y }}", CT "error at line 1: list object has no attribute 'x'"},
        {"{{ nothing.y }}", CT "error at line 1: 'nothing' is undefined"},
        {"\n\n{{ raise_exception('no ' ~ messages[0].role) }}", CT "raised an error at line 3: no system"},
    };
#undef CT
#undef USE
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rmu_tokenizer *t = make_tok(state, cases[i].tmpl);
        expect_render_error(t, RMU_CHAT_AUTO, SU, 2, cases[i].msg);
        /* forced kinds never look at the template */
        expect_render(t, RMU_CHAT_ZEPHYR, SU, 2, 1, ZEPHYR_SU);
        expect_render(t, RMU_CHAT_PLAIN, SU, 2, 1, "System: S\nUser: U\nAssistant:");
        rmu_tok_free(t);
    }
}

static void test_template_details(void **state) {
    /* one trailing newline of the template is dropped (keep_trailing_newline off), CRLF is
     * normalized, a comment with "-" strips around it, the undefined prints as empty */
    static const struct {
        const char *tmpl, *want;
    } cases[] = {
        {"a\n", "a"},
        {"a\n\n", "a\n"},
        {"a\r\nb", "a\nb"},
        {"x  {#- c -#}  y", "xy"},
        {"[{{ missing }}]", "[]"},
        {"{% if add_generation_prompt %}G{% endif %}", "G"},
        {"{% set x = 1 %}{% for m in messages %}{% set x = 2 %}{{ x }}{% endfor %}{{ x }}", "221"},
        {"{{ messages | length }} {{ messages[-1].content }} {{ messages[1:] | first | string }}", "2 U {'role': 'user', 'content': 'U'}"},
        {"  {% if true %}\n  x\n  {% endif %}\n", "  x\n"},
        {"{{ 'a' ~ 1 ~ none ~ true }}", "a1NoneTrue"},
        {"{{ 'x' if false }}|{{ 1 if 0 else 2 }}", "|2"},
        {"{{ ' a '.strip() }}|{{ 'abc'.rstrip('c') }}|{{ 'Ab'.upper() }}{{ 'Ab'.lower() }}", "a|ab|ABab"},
        {"{{ 'user' in ['user', 'assistant'] }} {{ 'role' in messages[0] }} {{ 'ys' in 'system' }}", "True True True"},
        {"{{ messages[0]['role'] is defined }} {{ messages[0]['nope'] is undefined }} {{ messages[9] is defined }}",
         "True True False"},
        {"{{ bos_token }}{{ eos_token }}{{ unk_token }}{{ pad_token }}", "<s></s><unk>"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rmu_tokenizer *t = make_tok(state, cases[i].tmpl);
        expect_render(t, RMU_CHAT_AUTO, SU, 2, 1, cases[i].want);
        rmu_tok_free(t);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zephyr_template_file), cmocka_unit_test(test_builtin_formats),
        cmocka_unit_test(test_llama2_template),      cmocka_unit_test(test_mistral_instruct_template),
        cmocka_unit_test(test_chatml_template),      cmocka_unit_test(test_whitespace_control),
        cmocka_unit_test(test_expressions),          cmocka_unit_test(test_unsupported_and_errors),
        cmocka_unit_test(test_template_details),
    };
    return cmocka_run_group_tests(tests, tu_setup_tmp, tu_teardown_tmp);
}

/* test_jinja.c - the jinja module on its own: expressions, loops and loop.*, if/elif/else,
 * filters, tests and methods, whitespace control with and without trim_blocks /
 * lstrip_blocks, the JSON variables, undefined values, raise_exception, the error messages
 * (with line numbers) for malformed templates and failing renders, and the step / memory /
 * nesting limits. Expected outputs of the rendering tables were produced by Jinja2 3.1
 * (Environment with the same trim_blocks / lstrip_blocks / keep_trailing_newline and
 * loopcontrols) on the same variables. */
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
#include "tokenizer/jinja.h"

static const char *VARS =
    "{\"messages\": [{\"role\": \"system\", \"content\": \" Sys \"}, {\"role\": \"user\", \"content\": \"Hi\"}, "
    "{\"role\": \"assistant\", \"content\": \"Yo\"}], \"n\": 3, \"s\": \"abc\", \"flag\": true, \"nothing\": null, "
    "\"d\": {\"a\": 1, \"b\": [1, 2]}}";

typedef struct {
    const char *flags; /* t: trim_blocks, l: lstrip_blocks, k: keep_trailing_newline */
    const char *tmpl, *want;
} wcase;

typedef struct {
    const char *tmpl, *want;
} rcase;

static rmu_jinja_opts opts_of(const char *flags) {
    return (rmu_jinja_opts){.trim_blocks = strchr(flags, 't') != NULL, .lstrip_blocks = strchr(flags, 'l') != NULL,
                            .keep_trailing_newline = strchr(flags, 'k') != NULL};
}

/* Parses and renders with VARS (or vars_json), failing the test on any error. */
static char *render(const char *tmpl, const rmu_jinja_opts *o, const char *vars_json, size_t *len) {
    rmu_err e = {{0}};
    json_t *vars = json_loads(vars_json ? vars_json : VARS, 0, NULL);
    assert_non_null(vars);
    rmu_jinja *t = rmu_jinja_parse(tmpl, strlen(tmpl), o, &e);
    if (!t) fail_msg("parse of [%s] failed: %s", tmpl, e.msg);
    char *s = rmu_jinja_render(t, vars, len, &e);
    if (!s) fail_msg("render of [%s] failed: %s", tmpl, e.msg);
    rmu_jinja_free(t);
    json_decref(vars);
    return s;
}

static void expect(const char *tmpl, const rmu_jinja_opts *o, const char *want) {
    char *s = render(tmpl, o, NULL, NULL);
    if (strcmp(s, want)) fail_msg("template\n[%s]\nrendered\n[%s]\nwant\n[%s]", tmpl, s, want);
    free(s);
}

static void expect_table(const rcase *c, size_t n) {
    for (size_t i = 0; i < n; i++) expect(c[i].tmpl, NULL, c[i].want);
}
#define EXPECT_TABLE(c) expect_table(c, sizeof c / sizeof *c)

/* The template must fail (at parse or render) with exactly this message. */
static void expect_error(const char *tmpl, const rmu_jinja_opts *o, const char *want) {
    rmu_err e = {{0}};
    json_t *vars = json_loads(VARS, 0, NULL);
    rmu_jinja *t = rmu_jinja_parse(tmpl, strlen(tmpl), o, &e);
    char *s = t ? rmu_jinja_render(t, vars, NULL, &e) : NULL;
    rmu_jinja_free(t);
    json_decref(vars);
    if (s) {
        size_t k = strlen(s);
        free(s);
        fail_msg("[%s] rendered %zu bytes, expected the error\n[%s]", tmpl, k, want);
    }
    if (strcmp(e.msg, want)) fail_msg("[%s]: message\n[%s]\nwant\n[%s]", tmpl, e.msg, want);
}

static void test_expressions(void **state) {
    static const rcase c[] = {
        {"{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 10 - 2 - 3 }} {{ -n }} {{ +n }}",
         "7 9 3 -4 2 -2 5 -3 3"},
        {"{{ 'a' ~ (1 + 2) }} {{ 'x' ~ none ~ true ~ [1, 'b'] }} {{ 'ab' + 'cd' }} {{ [1] + [2, 'z'] }} {{ 'ab' * 3 }}|{{ 'ab' * 0 }}|{{ 2 * 'ab' }}|",
         "a3 xNoneTrue[1, 'b'] abcd [1, 2, 'z'] ababab||abab|"},
        {"{{ 1 < 2 }} {{ 2 <= 2 }} {{ 'b' > 'a' }} {{ 'ab' >= 'abc' }} {{ 1 == true }} {{ 'a' != 'a' }} {{ [1, 2] == [1, 2] }} {{ d == d }} {{ messages[0] == messages[1] }}",
         "True True True False True False True True False"},
        {"{{ 0 or 'x' }} {{ 'a' and 'b' }} [{{ '' and undefined_thing.x }}] {{ 1 or undefined_thing.x }} {{ not 0 }} {{ not not 'a' }} {{ 'y' if n > 2 else 'n' }} [{{ 'x' if false }}]",
         "x b [] 1 True True y []"},
        {"{{ 's' in s }} {{ 'z' not in s }} {{ 2 in [1, 2] }} {{ 'a' in d }} {{ 'c' in d }} {{ '' in s }} {{ [1] in [[1], 2] }} {{ not 'a' in s }}",
         "False True True True False True True False"},
        {"{{ s[0] }}{{ s[-1] }}{{ s[1:] }}{{ s[:-1] }}{{ s[5:] }}|{{ messages[1:][0].role }} {{ messages[-1]['content'] }} {{ d.b[1] }} {{ d['b'] }} {{ messages[1:2] | length }}",
         "acbcab|user Yo 2 [1, 2] 1"},
        {"{{ \"esc\\t\\\"q\\\"\\\\ \\d\" }} {{ 'a' 'b' \"c\" }} {{ 'it\\'s' }} {{ ['it\\'s', \"a\\nb\", 'say \"x\"', '\\x01'] }} {{ none }} {{ True }} {{ d }} {{ 1_000 }} {{ '\\u00e9\\x41' }}",
         "esc\t\"q\"\\ \\d abc it's [\"it's\", 'a\\nb', 'say \"x\"', '\\x01'] None True {'a': 1, 'b': [1, 2]} 1000 \303\251A"},
    };
    EXPECT_TABLE(c);
    /* ~ binds tighter than +, as in Jinja: 'a' ~ 1 + 2 is ('a' ~ 1) + 2 */
    expect_error("{{ 'a' ~ 1 + 2 }}", NULL, "template: error at line 1: cannot add string and integer");
}

static void test_for_loops(void **state) {
    static const rcase c[] = {
        {"{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}/{{ loop.length }} {{ loop.first }} {{ loop.last }} {{ loop.previtem.role if loop.previtem is defined else '-' }} {{ loop.nextitem.role if loop.nextitem is defined else '-' }} {{ m.role }};{% endfor %}",
         "1032/3 True False - user system;2121/3 False False system assistant user;3210/3 False True user - assistant;"},
        {"{% for m in messages if m.role != 'system' %}{{ loop.index }}:{{ m.role }}{{ ',' if not loop.last }}{% endfor %}|{% for x in [] %}x{% else %}empty{% endfor %}|{% for x in undefined_var %}x{% endfor %}|",
         "1:user,2:assistant|empty||"},
        {"{% for i in range(3) %}{{ i }}{% endfor %} {% for i in range(1, 7, 2) %}{{ i }}{% endfor %} {% for i in range(5, 0, -2) %}{{ i }}{% endfor %} {% for i in range(2, 2) %}x{% endfor %}|{{ range(3) | length }}",
         "012 135 531 |3"},
        {"{% for i in range(6) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %} {% for a in [1, 2] %}{% for b in 'xy' %}{{ a }}{{ b }}{{ loop.index }}{% endfor %}{{ loop.index }} {% endfor %}",
         "023 1x11y21 2x12y22 "},
        {"{% for k in d %}{{ k }}={{ d[k] }};{% endfor %} {% set x = 1 %}{% for i in [5, 6] %}{% set x = i %}{{ x }}{% endfor %}{{ x }}",
         "a=1;b=[1, 2]; 561"},
    };
    EXPECT_TABLE(c);
}

static void test_if(void **state) {
    static const rcase c[] = {
        {"{% if n == 1 %}one{% elif n == 2 %}two{% elif n == 3 %}three{% else %}many{% endif %} {% if nothing %}a{% elif flag %}{% if s %}nested{% endif %}{% endif %} {% if false %}x{% else %}else{% endif %}",
         "three nested else"},
        {"{% for v in [0, 1, 2, 5] %}{% if v == 0 %}zero{% elif v is odd %}odd{% elif v > 4 %}big{% else %}even{% endif %} {% endfor %}",
         "zero odd even odd "},
    };
    EXPECT_TABLE(c);
}

static void test_filters_tests_methods(void **state) {
    static const rcase c[] = {
        {"{{ '  a b  ' | trim }}|{{ 'xxaxx' | trim('x') }}|{{ messages | length }} {{ s | count }} {{ d | length }} {{ undefined_var | length }}|{{ 'aBc' | upper }} {{ 'aBc' | lower }} {{ 'aBC dE' | capitalize }}|{{ 5 | string ~ 'x' }} {{ [1] | string }}",
         "a b|a|3 3 2 0|ABC abc Abc de|5x [1]"},
        {"{{ undefined_var | default('dflt') }} {{ s | d('no') }} {{ '' | default('empty', true) }} {{ '' | default('empty') }}| {{ none | default('n') }} {{ messages | first | string }} {{ messages | last }} {{ s | first }}{{ s | last }} {{ [] | first }}|",
         "dflt abc empty | None {'role': 'system', 'content': ' Sys '} {'role': 'assistant', 'content': 'Yo'} ac |"},
        {"{{ s is defined }} {{ zz is undefined }} {{ nothing is none }} {{ s is string }} {{ n is number }} {{ flag is boolean }} {{ d is mapping }} {{ s is sequence }} {{ d is iterable }} {{ flag is true }} {{ flag is false }} {{ n is odd }} {{ n is even }} {{ n is not odd }} {{ s is not none }}",
         "True True True True True True True True True True False True False False True"},
        {"{{ ' x '.strip() }}|{{ ' x '.lstrip() }}|{{ ' x '.rstrip() }}|{{ 'xyx'.strip('x') }}|{{ 'aB'.upper() }}{{ 'aB'.lower() }}|{{ s.startswith('ab') }} {{ s.endswith('bc') }} {{ s.startswith('abcd') }}|{{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 7) }} {{ d.get(1) }}",
         "x|x | x|y|ABab|True True False|1 None 7 None"},
    };
    EXPECT_TABLE(c);
}

static void test_whitespace_control(void **state) {
    static const wcase c[] = {
        {"", "a  {%- if true -%}  b  {%- endif -%}  c {{- ' d ' -}} e {#- comment -#} f\n  {{- 'g' }}",
         "abc d efg"},
        {"", "<ul>\n  {% for i in [1, 2] %}\n    <li>{{ i }}</li>\n  {% endfor %}\n</ul>",
         "<ul>\n  \n    <li>1</li>\n  \n    <li>2</li>\n  \n</ul>"},
        {"tl", "<ul>\n  {% for i in [1, 2] %}\n    <li>{{ i }}</li>\n  {% endfor %}\n</ul>",
         "<ul>\n    <li>1</li>\n    <li>2</li>\n</ul>"},
        {"t", "<ul>\n  {% for i in [1, 2] %}\n    <li>{{ i }}</li>\n  {% endfor %}\n</ul>",
         "<ul>\n      <li>1</li>\n      <li>2</li>\n  </ul>"},
        {"l", "<ul>\n  {% for i in [1, 2] %}\n    <li>{{ i }}</li>\n  {% endfor %}\n</ul>",
         "<ul>\n\n    <li>1</li>\n\n    <li>2</li>\n\n</ul>"},
        {"tl", "a\n  {%+ if true %}\nb\n  {% endif +%}\nc\n  {# note #}\nd {% if true %}x{% endif %}",
         "a\n  b\n\nc\nd x"},
        {"tl", "  {{ 'kept' }}\n\t{% if true %}y{% endif %}  {% if true %}z{% endif %}\n",
         "  kept\ny  z"},
        {"", "end\n",
         "end"},
        {"k", "end\n",
         "end\n"},
        {"", "end\n\n",
         "end\n"},
        {"", "a\r\nb\rc\r\n",
         "a\nb\nc"},
        {"tl", "{% if true %}\r\nx\r\n{% endif %}\r\n",
         "x\n"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        rmu_jinja_opts o = opts_of(c[i].flags);
        expect(c[i].tmpl, &o, c[i].want);
    }
}

static void test_undefined(void **state) {
    /* printing, testing, defaulting and iterating an undefined value are fine ... */
    expect("[{{ undefined_var }}] [{{ undefined_var is defined }}] [{{ d.zz }}] [{{ messages[7] }}] [{{ s.nope }}] "
           "[{{ nothing.x is defined if nothing else 'n' }}]",
           NULL, "[] [False] [] [] [] [n]");
    /* ... using it is an error naming it, at the line where it is used */
    expect_error("line 1\n{{ undefined_var.x }}", NULL, "template: error at line 2: 'undefined_var' is undefined");
    expect_error("{{ undefined_var + 1 }}", NULL, "template: error at line 1: 'undefined_var' is undefined");
    expect_error("{{ 1 < undefined_var }}", NULL, "template: error at line 1: 'undefined_var' is undefined");
    expect_error("{{ d.zz.y }}", NULL, "template: error at line 1: dict object has no attribute 'zz'");
    expect_error("{{ messages[7]['role'] }}", NULL, "template: error at line 1: list object has no element 7");
    expect_error("{{ 'a' in undefined_var }}", NULL, "template: error at line 1: 'undefined_var' is undefined");
    expect_error("{{ undefined_var.strip() }}", NULL, "template: error at line 1: 'undefined_var' is undefined");
}

static void test_raise_exception(void **state) {
    expect_error("ok\n{% if n > 2 %}{{ raise_exception('too many: ' ~ n) }}{% endif %}", NULL,
                 "template: raised an error at line 2: too many: 3");
    expect_error("{{ raise_exception() }}", NULL, "template: raised an error at line 1: ");
    /* not raised when the branch is not taken; output before it does not leak out */
    expect("{% if false %}{{ raise_exception('no') }}{% endif %}fine", NULL, "fine");
    rmu_jinja_opts o = {.name = "chat_template"};
    expect_error("{{ raise_exception('x') }}", &o, "chat_template: raised an error at line 1: x");
}

static void test_runtime_errors(void **state) {
    static const rcase c[] = {
        {"{% for x in nothing %}{% endfor %}", "template: error at line 1: cannot loop over none"},
        {"\n{% for x in 5 %}{% endfor %}", "template: error at line 2: cannot loop over an integer"},
        {"{{ 1 // 0 }}", "template: error at line 1: division by zero"},
        {"{{ 1 % 0 }}", "template: error at line 1: division by zero"},
        {"{{ 'a' < 1 }}", "template: error at line 1: cannot compare string and integer"},
        {"{{ -'a' }}", "template: error at line 1: cannot negate a string"},
        {"{{ 2 in 'abc' }}", "template: error at line 1: 'in <string>' needs a string on the left"},
        {"{{ 'a' in 5 }}", "template: error at line 1: 'in' needs a string, list or dict on the right, got integer"},
        {"{{ 'a' - 1 }}", "template: error at line 1: '-' needs numbers, got string and integer"},
        {"{{ n.strip() }}", "template: error at line 1: strip() is a string method, called on an integer"},
        {"{{ s.startswith(1) }}", "template: error at line 1: startswith() needs one string argument"},
        {"{{ s.get('a') }}", "template: error at line 1: get() needs a dict and a key"},
        {"{{ n | length }}", "template: error at line 1: length of an integer"},
        {"{{ n | first }}", "template: error at line 1: first of an integer"},
        {"{{ s is odd }}", "template: error at line 1: 'odd' test needs an integer"},
        {"{{ range(1, 2, 0) }}", "template: error at line 1: range() step must not be zero"},
        {"{{ range('a') }}", "template: error at line 1: range() needs integers, got string"},
        {"{{ range() }}", "template: error at line 1: range() takes 1 to 3 arguments, got 0"},
        {"{{ n[1:] }}", "template: error at line 1: cannot slice an integer"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) expect_error(c[i].tmpl, NULL, c[i].want);
}

static void test_syntax_errors(void **state) {
    static const rcase c[] = {
        {"a\n{% if true %}x", "template: syntax error at line 2: {% if %} is never closed (missing {% endif %})"},
        {"{% for x in s %}\n{% if x %}{% endfor %}",
         "template: syntax error at line 2: unexpected {% endfor %}"},
        {"{% for x in s %}{% else %}", "template: syntax error at line 1: {% else %} is never closed (missing {% endfor "
                                       "%})"},
        {"x\n\n{% endif %}", "template: syntax error at line 3: unexpected {% endif %}"},
        {"{{ 'x' }", "template: syntax error at line 1: missing }}"},
        {"\n{% if true }x{% endif %}", "template: syntax error at line 2: expected %}, got '}'"},
        {"x\n{% if true", "template: syntax error at line 2: missing %}"},
        {"{{ 'abc }}", "template: syntax error at line 1: unterminated string literal"},
        {"a {# note", "template: syntax error at line 1: unterminated comment"},
        {"{{ 1 + }}", "template: syntax error at line 1: expected an expression, got a tag end"},
        {"{{ }}", "template: syntax error at line 1: expected an expression, got a tag end"},
        {"{% %}", "template: syntax error at line 1: expected a statement name after {%, got a tag end"},
        {"{{ a b }}", "template: syntax error at line 1: expected }}, got 'b'"},
        {"{{ s[] }}", "template: syntax error at line 1: expected an expression, got ']'"},
        {"{{ [1, 2 }}", "template: syntax error at line 1: expected ',' or ']', got a tag end"},
        {"{{ f(1 }}", "template: unsupported construct at line 1: function 'f'"},
        {"{{ range(1 }}", "template: syntax error at line 1: expected ',' or ')', got a tag end"},
        {"{{ 1 $ 2 }}", "template: syntax error at line 1: character '$'"},
        {"{% set = 1 %}", "template: syntax error at line 1: expected a variable name after set, got '='"},
        {"{% for in s %}{% endfor %}", "template: syntax error at line 1: expected 'in', got 's'"},
        {"{{ 99999999999999999999 }}", "template: syntax error at line 1: integer literal too large"},
        {"\n\n{{ 1.5 }}", "template: unsupported construct at line 3: float literal"},
        {"{% macro m() %}x{% endmacro %}", "template: unsupported construct at line 1: {% macro %}"},
        {"{{ x | tojson }}", "template: unsupported construct at line 1: filter 'tojson'"},
        {"{% if x is divisibleby(3) %}{% endif %}", "template: unsupported construct at line 1: test 'divisibleby'"},
        {"{{ s.split(' ') }}", "template: unsupported construct at line 1: method 'split'"},
        {"{{ {'a': 1} }}", "template: unsupported construct at line 1: dict literals"},
        {"{{ (1, 2) }}", "template: unsupported construct at line 1: tuples"},
        {"{{ 1 / 2 }}", "template: unsupported construct at line 1: '/' (true division gives floats; use //)"},
        {"{{ s.upper(x=1) }}", "template: unsupported construct at line 1: keyword arguments"},
        {"{% set ns.x = 1 %}", "template: unsupported construct at line 1: namespace attribute assignment (set ns.x "
                               "= ...)"},
        {"{% for x in s recursive %}{% endfor %}", "template: unsupported construct at line 1: recursive loops"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) expect_error(c[i].tmpl, NULL, c[i].want);
    /* the name in messages is the caller's */
    rmu_jinja_opts o = {.name = "cfg.json: chat_template"};
    expect_error("{% generation %}", &o, "cfg.json: chat_template: unsupported construct at line 1: {% generation %}");
}

static void test_variables(void **state) {
    /* JSON types become template values; a template renders again with other variables */
    const char *tmpl = "{{ a }}|{{ b }}|{{ c }}|{{ l }}|{{ o }}|{{ o.k[1] }}|{{ missing is defined }}";
    rmu_err e;
    rmu_jinja *t = rmu_jinja_parse(tmpl, strlen(tmpl), NULL, &e);
    assert_non_null(t);
    json_t *v1 = json_loads("{\"a\": \"x\", \"b\": -5, \"c\": false, \"l\": [null, true], \"o\": {\"k\": [1, 2]}}", 0,
                            NULL);
    json_t *v2 = json_loads("{\"a\": \"y\", \"b\": 7, \"c\": null, \"l\": [], \"o\": {\"k\": \"zw\"}}", 0, NULL);
    char *s1 = rmu_jinja_render(t, v1, NULL, &e), *s2 = rmu_jinja_render(t, v2, NULL, &e);
    assert_string_equal(s1, "x|-5|False|[None, True]|{'k': [1, 2]}|2|False");
    assert_string_equal(s2, "y|7|None|[]|{'k': 'zw'}|w|False");
    free(s1), free(s2);
    /* no variables at all: everything is undefined, so o.k fails */
    assert_null(rmu_jinja_render(t, NULL, NULL, &e));
    assert_string_equal(e.msg, "template: error at line 1: 'o' is undefined");
    /* bad variables: not an object, a fraction, nesting past the limit */
    json_t *arr = json_array(), *real = json_pack("{s:f}", "temp", 0.5), *deep = json_array(), *cur = deep;
    for (int i = 0; i < 150; i++) {
        json_t *in = json_array();
        json_array_append_new(cur, in);
        cur = in;
    }
    json_t *dv = json_pack("{s:O}", "deep", deep);
    assert_null(rmu_jinja_render(t, arr, NULL, &e));
    assert_string_equal(e.msg, "template: the variables must be a JSON object");
    assert_null(rmu_jinja_render(t, real, NULL, &e));
    assert_string_equal(e.msg, "template: variable 'temp' holds a number with a fraction; only integers are supported");
    assert_null(rmu_jinja_render(t, dv, NULL, &e));
    assert_string_equal(e.msg, "template: variable 'deep' is nested more than 100 levels deep");
    json_decref(arr), json_decref(real), json_decref(deep), json_decref(dv), json_decref(v1), json_decref(v2);
    rmu_jinja_free(t);
    /* bytes pass through as they are (not UTF-8, NUL inside); *len counts them */
    json_t *bin = json_object();
    json_object_set_new(bin, "b", json_stringn_nocheck("\xff\x00z", 3));
    const char *t2 = "<{{ b }}{{ '\\0' }}>";
    t = rmu_jinja_parse(t2, strlen(t2), NULL, &e);
    size_t len = 0;
    char *s4 = rmu_jinja_render(t, bin, &len, &e);
    assert_int_equal(len, 6);
    assert_memory_equal(s4, "<\xff\x00z\x00>", 6);
    free(s4);
    rmu_jinja_free(t);
    json_decref(bin);
    /* parse needs no NUL terminator: only len bytes are read */
    t = rmu_jinja_parse("{{ 1 }}garbage", 7, NULL, &e);
    char *s5 = rmu_jinja_render(t, NULL, NULL, &e);
    assert_string_equal(s5, "1");
    free(s5);
    rmu_jinja_free(t);
}

static void test_limits(void **state) {
    /* every render ends: huge loops hit max_bytes or max_steps, with the option named */
    expect_error("{% for i in range(999999999) %}x{% endfor %}", NULL,
                 "template: error at line 1: rendering needs more than 268435456 bytes (max_bytes)");
    expect_error("{% set r = range(5000) %}\n{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}", NULL,
                 "template: error at line 2: rendering takes more than 5000000 steps (max_steps)");
    rmu_jinja_opts o = {.max_steps = 1000, .max_bytes = 1 << 20};
    expect_error("{% for i in range(2000) %}{% endfor %}", &o,
                 "template: error at line 1: rendering takes more than 1000 steps (max_steps)");
    expect("{% for i in range(300) %}{% endfor %}done", &o, "done");
    expect_error("{% set s = 'x' * 600000 %}{{ s }}{{ s }}", &o,
                 "template: error at line 1: rendering needs more than 1048576 bytes (max_bytes)");
    expect_error("{{ 'x' * 2000000 }}", &o, "template: error at line 1: rendering needs more than 1048576 bytes (max_bytes)");
    /* nesting: the parser stops at 200 levels, evaluation of a long chain at 1000 */
    char deep[1200];
    size_t k = (size_t)snprintf(deep, sizeof deep, "{{ ");
    for (int i = 0; i < 250; i++) deep[k++] = '(';
    snprintf(deep + k, sizeof deep - k, "1 }}");
    expect_error(deep, NULL, "template: syntax error at line 1: nested more than 200 levels deep");
    char *blocks = malloc(250 * 30 + 1), *chain = malloc(1200 * 2 + 16);
    blocks[0] = chain[0] = 0;
    for (int i = 0; i < 250; i++) strcat(blocks, "{% if true %}");
    expect_error(blocks, NULL, "template: syntax error at line 1: nested more than 200 levels deep");
    strcpy(chain, "{{ 0");
    for (int i = 0; i < 999; i++) strcat(chain, "+1");
    strcat(chain, " }}");
    expect(chain, NULL, "999");
    chain[strlen(chain) - 3] = 0;
    strcat(chain, "+1+1 }}");
    expect_error(chain, NULL, "template: error at line 1: expression nested more than 1000 levels deep");
    free(blocks), free(chain);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expressions),    cmocka_unit_test(test_for_loops),
        cmocka_unit_test(test_if),             cmocka_unit_test(test_filters_tests_methods),
        cmocka_unit_test(test_whitespace_control), cmocka_unit_test(test_undefined),
        cmocka_unit_test(test_raise_exception), cmocka_unit_test(test_runtime_errors),
        cmocka_unit_test(test_syntax_errors),  cmocka_unit_test(test_variables),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* jinja.h - a small engine for the subset of Jinja2 that chat templates use: parse a
 * template once, render it any number of times with a JSON object of variables. It knows
 * nothing about tokenizers or chats. Prefix rmu_jinja_.
 *
 * Supported: text, {{ expr }}, {# comments #}, {% if/elif/else/endif %}, {% for x in expr
 * [if cond] %}...{% else %}...{% endfor %}, {% set x = expr %}, {% break %}, {% continue %},
 * "-" and "+" whitespace control, trim_blocks / lstrip_blocks / keep_trailing_newline as
 * options. Expressions: string/int/bool/none literals, lists, variables, x.attr, x['key'],
 * x[i], x[a:b], + - * // % ~, comparisons, in / not in, and / or / not, a if c else b,
 * range(), raise_exception(msg); filters trim length count upper lower string default (d)
 * first last capitalize; tests defined undefined none string number boolean mapping
 * sequence iterable true false odd even; methods strip lstrip rstrip upper lower startswith
 * endswith (strings) and get (dicts); loop.index index0 first last length revindex
 * revindex0 previtem nextitem. Anything else (macros, namespace(), tojson, dict literals,
 * floats, ...) is rejected when the template is parsed, naming the construct and its line.
 *
 * Errors: "NAME: syntax error at line L: ...", "NAME: unsupported construct at line L: ...",
 * "NAME: error at line L: ..." (while rendering), "NAME: raised an error at line L: MSG"
 * (raise_exception). A render that takes more than max_steps evaluation steps or more than
 * max_bytes of memory stops with an error naming the limit, so no template can hang or
 * exhaust memory. */
#ifndef RMU_JINJA_H
#define RMU_JINJA_H

#include <jansson.h>
#include <stddef.h>

#include "core/err.h"

typedef struct rmu_jinja rmu_jinja; /* a parsed template */

#define RMU_JINJA_MAX_STEPS 5000000L          /* ~1 s of rendering; real chats need thousands */
#define RMU_JINJA_MAX_BYTES ((size_t)256 << 20) /* values + output of one render */

typedef struct rmu_jinja_opts {
    const char *name;          /* names the template in messages; NULL: "template" */
    int trim_blocks;           /* drop the newline right after a block or comment tag */
    int lstrip_blocks;         /* drop spaces/tabs between a line start and a block tag */
    int keep_trailing_newline; /* 0: one trailing newline of the template is dropped */
    long max_steps;            /* per render; 0: RMU_JINJA_MAX_STEPS */
    size_t max_bytes;          /* per render; 0: RMU_JINJA_MAX_BYTES */
} rmu_jinja_opts;

/* Parses src[0..len) (need not be NUL-terminated; "\r\n" and "\r" read as "\n"). opts may
 * be NULL (Jinja's defaults: no trim_blocks, no lstrip_blocks). NULL + e on error. */
rmu_jinja *rmu_jinja_parse(const char *src, size_t len, const rmu_jinja_opts *opts, rmu_err *e);

/* Renders with vars, a JSON object (NULL: no variables): strings, integers, booleans,
 * null (none), arrays (lists) and objects (dicts, in their key order); a variable it does
 * not hold is undefined. Returns the malloc'd NUL-terminated text (*len its length when
 * len is not NULL), or NULL + e. */
char *rmu_jinja_render(const rmu_jinja *t, const json_t *vars, size_t *len, rmu_err *e);

void rmu_jinja_free(rmu_jinja *t);

#endif

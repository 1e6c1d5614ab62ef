/* jinja.c - rendering a parsed template (jinja_parse.c) with a JSON object of variables:
 * values, Python/Jinja printing, expressions, filters, tests, methods, loops.
 *
 * Values of one render live in an arena freed at the end (nothing is global). Strings
 * point into the template, the caller's JSON or the arena; nothing is NUL-terminated. An
 * undefined value carries the reason it is undefined, so using it ("'x' is undefined")
 * names the variable as Jinja's StrictUndefined messages do, while printing it gives ""
 * and testing it gives false, as Jinja's default Undefined does. Every expression and
 * statement counts one step against max_steps, and the arena plus the output are held to
 * max_bytes, so a render always ends. */
#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"
#include "tokenizer/jinja_impl.h"

#define MAX_NEST 100 /* nested values (printing, comparing, variables) */
#define MAX_EVAL 1000 /* nested evaluation: a chain a + b + ... nests one level per operator */

typedef struct scope {
    struct scope *up;
    const char **k;
    size_t *kn;
    jv *v;
    int n, cap;
} scope;

typedef struct {
    const rmu_jinja *T;
    rmu_jinja_arena A;
    rmu_jinja_diag d;
    rmu_sb out;
    scope *sc;
    int brk, cont; /* loop control in flight */
    int depth;
    long steps;
    size_t at; /* source offset of the expression being evaluated, for messages */
} ctx;

/* ---------------------------------------------------------------- errors */

#define fail(c, ...) rmu_jinja_failf(&(c)->d, __VA_ARGS__)

static int rt_fail(ctx *c, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int rt_fail(ctx *c, size_t pos, const char *fmt, ...) {
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return fail(c, "error at line %d: %s", rmu_jinja_line(c->T, pos), msg);
}

/* An allocation failed: past max_bytes, or the system is out of memory. */
static int nomem(ctx *c) {
    if (c->A.over || c->A.total + c->out.n > c->T->max_bytes)
        return rt_fail(c, c->at, "rendering needs more than %zu bytes (max_bytes)", c->T->max_bytes);
    return fail(c, "out of memory");
}

static void *alloc(ctx *c, size_t n) {
    void *p = rmu_jinja_alloc(&c->A, n);
    if (!p) nomem(c);
    return p;
}

/* ---------------------------------------------------------------- values */

static const char *type_name(jv v) {
    static const char *n[] = {"undefined", "none", "boolean", "integer", "string", "list", "dict"};
    return n[v.t];
}

static const char *a_type(jv v) {
    static const char *n[] = {"an undefined value", "none", "a boolean", "an integer", "a string", "a list", "a dict"};
    return n[v.t];
}

static int truthy(jv v) {
    switch (v.t) {
    case JV_BOOL:
    case JV_INT: return v.i != 0;
    case JV_STR: return v.n != 0;
    case JV_LIST: return v.l->n != 0;
    case JV_DICT: return v.d->n != 0;
    default: return 0;
    }
}

static jv undef_why(ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static jv undef_why(ctx *c, const char *fmt, ...) {
    char *m = alloc(c, 128);
    if (m) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(m, 128, fmt, ap);
        va_end(ap);
    }
    return jv_undef(m);
}

static int use_undef(ctx *c, size_t pos, jv u) { return rt_fail(c, pos, "%s", u.name ? u.name : "value is undefined"); }

static jv new_list(ctx *c, long long n) {
    if (n < 0 || n > INT_MAX / 2 || (size_t)n > c->T->max_bytes / sizeof(jv)) {
        c->A.over = 1;
        return nomem(c), jv_none();
    }
    jv_list *l = alloc(c, sizeof *l);
    jv *v = l ? alloc(c, sizeof(jv) * (size_t)(n ? n : 1)) : NULL;
    if (!v) return jv_none();
    l->v = v;
    l->n = (int)n;
    return (jv){.t = JV_LIST, .l = l};
}

static jv new_dict(ctx *c, int n) {
    jv_dict *d = alloc(c, sizeof *d);
    if (!d || !(d->k = alloc(c, sizeof(char *) * (size_t)(n ? n : 1))) ||
        !(d->kn = alloc(c, sizeof(size_t) * (size_t)(n ? n : 1))) || !(d->v = alloc(c, sizeof(jv) * (size_t)(n ? n : 1))))
        return jv_none();
    return (jv){.t = JV_DICT, .d = d};
}

/* Appends to a dict made by new_dict with room for it. */
static void dict_put(jv d, const char *k, size_t kn, jv v) {
    d.d->k[d.d->n] = k;
    d.d->kn[d.d->n] = kn;
    d.d->v[d.d->n++] = v;
}

static jv dict_get(jv d, const char *k, size_t kn, int *found) {
    *found = 0;
    for (int i = 0; i < d.d->n; i++)
        if (d.d->kn[i] == kn && !memcmp(d.d->k[i], k, kn)) {
            *found = 1;
            return d.d->v[i];
        }
    return jv_undef(NULL);
}

static int nest_fail(ctx *c) { return rt_fail(c, c->at, "value nested more than %d levels deep", MAX_NEST); }

static int to_text(ctx *c, jv v, rmu_sb *b, int depth);

/* repr() of a list item or dict key/value, as Python prints containers */
static int repr(ctx *c, jv v, rmu_sb *b, int depth) {
    if (v.t != JV_STR) return to_text(c, v, b, depth);
    /* Python quotes with ' unless the text has ' and no " */
    char q = memchr(v.s, '\'', v.n) && !memchr(v.s, '"', v.n) ? '"' : '\'';
    rmu_sb_putc(b, q);
    for (size_t i = 0; i < v.n; i++) {
        unsigned char ch = (unsigned char)v.s[i];
        if (ch == q || ch == '\\') rmu_sb_putc(b, '\\'), rmu_sb_putc(b, (char)ch);
        else if (ch == '\n') rmu_sb_puts(b, "\\n");
        else if (ch == '\r') rmu_sb_puts(b, "\\r");
        else if (ch == '\t') rmu_sb_puts(b, "\\t");
        else if (ch < 0x20 || ch == 0x7f) rmu_sb_printf(b, "\\x%02x", ch);
        else rmu_sb_putc(b, (char)ch);
    }
    return rmu_sb_putc(b, q);
}

/* str(v) as Python/Jinja print it; -1 on allocation failure or too deep a value */
static int to_text(ctx *c, jv v, rmu_sb *b, int depth) {
    if (depth > MAX_NEST) return nest_fail(c);
    switch (v.t) {
    case JV_UNDEF: return rmu_sb_add(b, "", 0);
    case JV_NONE: return rmu_sb_puts(b, "None");
    case JV_BOOL: return rmu_sb_puts(b, v.i ? "True" : "False");
    case JV_INT: return rmu_sb_printf(b, "%lld", v.i);
    case JV_STR: return rmu_sb_add(b, v.s, v.n);
    case JV_LIST:
        rmu_sb_putc(b, '[');
        for (int i = 0; i < v.l->n; i++)
            if ((i && rmu_sb_puts(b, ", ")) || repr(c, v.l->v[i], b, depth + 1)) return -1;
        return rmu_sb_putc(b, ']');
    case JV_DICT:
        rmu_sb_putc(b, '{');
        for (int i = 0; i < v.d->n; i++)
            if ((i && rmu_sb_puts(b, ", ")) || repr(c, jv_str(v.d->k[i], v.d->kn[i]), b, depth + 1) ||
                rmu_sb_puts(b, ": ") || repr(c, v.d->v[i], b, depth + 1))
                return -1;
        return rmu_sb_putc(b, '}');
    }
    return 0;
}

/* a value as an arena string */
static jv stringify(ctx *c, jv v) {
    if (v.t == JV_STR) return v;
    rmu_sb b = {0};
    if (to_text(c, v, &b, 0)) {
        rmu_sb_free(&b);
        return nomem(c), jv_none();
    }
    char *s = alloc(c, b.n + 1);
    if (s && b.n) memcpy(s, b.p, b.n);
    jv r = s ? jv_str(s, b.n) : jv_none();
    rmu_sb_free(&b);
    return r;
}

static int values_equal(ctx *c, jv a, jv b, int depth) {
    if ((a.t == JV_INT || a.t == JV_BOOL) && (b.t == JV_INT || b.t == JV_BOOL)) return a.i == b.i;
    if (a.t != b.t) return 0;
    if (depth > MAX_NEST) return nest_fail(c), 0;
    switch (a.t) {
    case JV_UNDEF:
    case JV_NONE: return 1;
    case JV_STR: return a.n == b.n && !memcmp(a.s, b.s, a.n);
    case JV_LIST:
        if (a.l->n != b.l->n) return 0;
        for (int i = 0; i < a.l->n; i++)
            if (!values_equal(c, a.l->v[i], b.l->v[i], depth + 1)) return 0;
        return 1;
    case JV_DICT:
        if (a.d->n != b.d->n) return 0;
        for (int i = 0; i < a.d->n; i++) {
            int f;
            jv o = dict_get(b, a.d->k[i], a.d->kn[i], &f);
            if (!f || !values_equal(c, a.d->v[i], o, depth + 1)) return 0;
        }
        return 1;
    }
    return 0;
}

/* The variables: a JSON value as a template value. */
static jv from_json(ctx *c, const json_t *j, const char *var, int depth) {
    if (depth > MAX_NEST) return fail(c, "variable '%s' is nested more than %d levels deep", var, MAX_NEST), jv_none();
    switch (json_typeof(j)) {
    case JSON_STRING: return jv_str(json_string_value(j), json_string_length(j));
    case JSON_INTEGER: return jv_int(json_integer_value(j));
    case JSON_TRUE: return jv_bool(1);
    case JSON_FALSE: return jv_bool(0);
    case JSON_NULL: return jv_none();
    case JSON_REAL: return fail(c, "variable '%s' holds a number with a fraction; only integers are supported", var), jv_none();
    case JSON_ARRAY: {
        jv l = new_list(c, (long long)json_array_size(j));
        for (int i = 0; l.t == JV_LIST && i < l.l->n && !c->d.failed; i++)
            l.l->v[i] = from_json(c, json_array_get(j, (size_t)i), var, depth + 1);
        return l;
    }
    case JSON_OBJECT: {
        if (json_object_size(j) > INT_MAX / 2) return nomem(c), jv_none();
        jv d = new_dict(c, (int)json_object_size(j));
        const char *k;
        const json_t *v;
        if (d.t == JV_DICT)
            json_object_foreach((json_t *)j, k, v) {
                if (c->d.failed) break;
                dict_put(d, k, strlen(k), from_json(c, v, var, depth + 1));
            }
        return d;
    }
    }
    return jv_none();
}

/* ---------------------------------------------------------------- scopes */

static int scope_set(ctx *c, scope *s, const char *k, size_t kn, jv v) {
    for (int i = 0; i < s->n; i++)
        if (s->kn[i] == kn && !memcmp(s->k[i], k, kn)) {
            s->v[i] = v;
            return 0;
        }
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 8;
        const char **nk = alloc(c, sizeof(char *) * (size_t)cap);
        size_t *nn = nk ? alloc(c, sizeof(size_t) * (size_t)cap) : NULL;
        jv *nv = nn ? alloc(c, sizeof(jv) * (size_t)cap) : NULL;
        if (!nv) return -1;
        if (s->n) {
            memcpy(nk, s->k, sizeof(char *) * (size_t)s->n);
            memcpy(nn, s->kn, sizeof(size_t) * (size_t)s->n);
            memcpy(nv, s->v, sizeof(jv) * (size_t)s->n);
        }
        s->k = nk, s->kn = nn, s->v = nv, s->cap = cap;
    }
    s->k[s->n] = k, s->kn[s->n] = kn, s->v[s->n] = v;
    s->n++;
    return 0;
}

static jv lookup(ctx *c, const char *k, size_t kn) {
    for (scope *s = c->sc; s; s = s->up)
        for (int i = s->n - 1; i >= 0; i--)
            if (s->kn[i] == kn && !memcmp(s->k[i], k, kn)) return s->v[i];
    return undef_why(c, "'%.*s' is undefined", (int)(kn > 60 ? 60 : kn), k);
}

/* ---------------------------------------------------------------- operations */

static jv eval(ctx *c, jexpr *x);

static jv get_item(ctx *c, jexpr *x, jv o, jv key) {
    if (o.t == JV_UNDEF) return use_undef(c, x->pos, o), jv_none();
    if (o.t == JV_DICT && key.t == JV_STR) {
        int f;
        jv v = dict_get(o, key.s, key.n, &f);
        return f ? v : undef_why(c, "dict object has no attribute '%.*s'", (int)(key.n > 60 ? 60 : key.n), key.s);
    }
    if ((o.t == JV_LIST || o.t == JV_STR) && (key.t == JV_INT || key.t == JV_BOOL)) {
        long long n = o.t == JV_LIST ? o.l->n : (long long)o.n, i = key.i;
        if (i < 0) i += n;
        if (i < 0 || i >= n) /* Jinja: an out-of-range index is undefined, not an error */
            return undef_why(c, "%s object has no element %lld", o.t == JV_LIST ? "list" : "str", key.i);
        return o.t == JV_LIST ? o.l->v[i] : jv_str(o.s + i, 1);
    }
    return undef_why(c, "%s object has no element or attribute of that kind", type_name(o));
}

static jv do_slice(ctx *c, jexpr *x, jv o, jv lo, jv hi) {
    if (o.t != JV_LIST && o.t != JV_STR) return rt_fail(c, x->pos, "cannot slice %s", a_type(o)), jv_none();
    long long n = o.t == JV_LIST ? o.l->n : (long long)o.n;
    long long a = 0, b = n;
    if (lo.t == JV_INT) a = lo.i < 0 ? lo.i + n : lo.i;
    if (hi.t == JV_INT) b = hi.i < 0 ? hi.i + n : hi.i;
    if (a < 0) a = 0;
    if (b > n) b = n;
    if (b < a) b = a;
    if (o.t == JV_STR) return jv_str(o.s + a, (size_t)(b - a));
    jv r = new_list(c, b - a);
    if (r.t == JV_LIST && b > a) memcpy(r.l->v, o.l->v + a, sizeof(jv) * (size_t)(b - a));
    return r;
}

static int is_ws(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v'; }

static jv strip_str(jv s, int left, int right, jv chars) {
    size_t a = 0, b = s.n;
    if (chars.t == JV_STR) {
        while (left && a < b && memchr(chars.s, s.s[a], chars.n)) a++;
        while (right && b > a && memchr(chars.s, s.s[b - 1], chars.n)) b--;
    } else {
        while (left && a < b && is_ws(s.s[a])) a++;
        while (right && b > a && is_ws(s.s[b - 1])) b--;
    }
    return jv_str(s.s + a, b - a);
}

static jv change_case(ctx *c, jv s, int mode) { /* 0 lower 1 upper 2 capitalize (ASCII) */
    char *p = alloc(c, s.n + 1);
    if (!p) return jv_none();
    for (size_t i = 0; i < s.n; i++) {
        unsigned char ch = (unsigned char)s.s[i];
        p[i] = (char)(mode == 1 || (mode == 2 && i == 0) ? toupper(ch) : tolower(ch));
    }
    return jv_str(p, s.n);
}

static jv concat_str(ctx *c, jv a, jv b) {
    if (c->d.failed) return jv_none();
    char *p = alloc(c, a.n + b.n + 1);
    if (!p) return jv_none();
    memcpy(p, a.s, a.n);
    memcpy(p + a.n, b.s, b.n);
    return jv_str(p, a.n + b.n);
}

static int name_is(const jexpr *x, const char *s) { return x->nlen == strlen(s) && !memcmp(x->name, s, x->nlen); }

/* Evaluates the arguments of a call, filter or method into args[RMU_JINJA_MAX_ARGS]. */
static int eval_args(ctx *c, jexpr *x, jv *args) {
    for (int i = 0; i < x->nargs && !c->d.failed; i++) args[i] = eval(c, x->args[i]);
    return c->d.failed ? -1 : 0;
}

static jv eval_method(ctx *c, jexpr *x) {
    jv o = eval(c, x->a), args[RMU_JINJA_MAX_ARGS];
    if (eval_args(c, x, args)) return jv_none();
    if (name_is(x, "get")) {
        if (o.t != JV_DICT || x->nargs < 1 || x->nargs > 2)
            return rt_fail(c, x->pos, "get() needs a dict and a key"), jv_none();
        int f = 0; /* dict keys are strings: any other key is not there */
        jv v = args[0].t == JV_STR ? dict_get(o, args[0].s, args[0].n, &f) : jv_none();
        return f ? v : x->nargs == 2 ? args[1] : jv_none();
    }
    if (o.t == JV_UNDEF) return use_undef(c, x->pos, o), jv_none();
    if (o.t != JV_STR)
        return rt_fail(c, x->pos, "%.*s() is a string method, called on %s", (int)x->nlen, x->name, a_type(o)),
               jv_none();
    if (name_is(x, "strip") || name_is(x, "lstrip") || name_is(x, "rstrip"))
        return strip_str(o, !name_is(x, "rstrip"), !name_is(x, "lstrip"), x->nargs ? args[0] : jv_none());
    if (name_is(x, "upper")) return change_case(c, o, 1);
    if (name_is(x, "lower")) return change_case(c, o, 0);
    /* startswith / endswith */
    if (x->nargs != 1 || args[0].t != JV_STR)
        return rt_fail(c, x->pos, "%.*s() needs one string argument", (int)x->nlen, x->name), jv_none();
    jv a = args[0];
    if (a.n > o.n) return jv_bool(0);
    return jv_bool(!memcmp(name_is(x, "startswith") ? o.s : o.s + o.n - a.n, a.s, a.n));
}

static jv eval_filter(ctx *c, jexpr *x) {
    jv v = eval(c, x->a), args[RMU_JINJA_MAX_ARGS];
    if (eval_args(c, x, args)) return jv_none();
    if (name_is(x, "default") || name_is(x, "d")) {
        int boolean = x->nargs > 1 && truthy(args[1]);
        if (v.t == JV_UNDEF || (boolean && !truthy(v))) return x->nargs ? args[0] : jv_str("", 0);
        return v;
    }
    if (name_is(x, "string")) return stringify(c, v);
    if (name_is(x, "length") || name_is(x, "count")) {
        if (v.t == JV_STR) return jv_int((long long)v.n); /* bytes: exact for ASCII */
        if (v.t == JV_LIST) return jv_int(v.l->n);
        if (v.t == JV_DICT) return jv_int(v.d->n);
        if (v.t == JV_UNDEF) return jv_int(0);
        return rt_fail(c, x->pos, "length of %s", a_type(v)), jv_none();
    }
    if (name_is(x, "first") || name_is(x, "last")) {
        int first = name_is(x, "first");
        if (v.t == JV_LIST) return v.l->n ? v.l->v[first ? 0 : v.l->n - 1] : jv_undef(NULL);
        if (v.t == JV_STR) return v.n ? jv_str(first ? v.s : v.s + v.n - 1, 1) : jv_undef(NULL);
        return rt_fail(c, x->pos, "%.*s of %s", (int)x->nlen, x->name, a_type(v)), jv_none();
    }
    v = stringify(c, v); /* trim upper lower capitalize work on the text */
    if (c->d.failed) return jv_none();
    if (name_is(x, "trim")) return strip_str(v, 1, 1, x->nargs ? args[0] : jv_none());
    if (name_is(x, "upper")) return change_case(c, v, 1);
    if (name_is(x, "lower")) return change_case(c, v, 0);
    return change_case(c, v, 2);
}

static int test_value(ctx *c, jexpr *x, jv v) {
    if (name_is(x, "defined")) return v.t != JV_UNDEF;
    if (name_is(x, "undefined")) return v.t == JV_UNDEF;
    if (name_is(x, "none")) return v.t == JV_NONE;
    if (name_is(x, "string")) return v.t == JV_STR;
    if (name_is(x, "number")) return v.t == JV_INT;
    if (name_is(x, "boolean")) return v.t == JV_BOOL;
    if (name_is(x, "mapping")) return v.t == JV_DICT;
    if (name_is(x, "sequence") || name_is(x, "iterable")) return v.t == JV_LIST || v.t == JV_STR || v.t == JV_DICT;
    if (name_is(x, "true")) return v.t == JV_BOOL && v.i;
    if (name_is(x, "false")) return v.t == JV_BOOL && !v.i;
    if (v.t != JV_INT) return rt_fail(c, x->pos, "'%.*s' test needs an integer", (int)x->nlen, x->name), 0;
    return name_is(x, "odd") ? (v.i % 2 != 0) : (v.i % 2 == 0);
}

/* range(stop), range(start, stop[, step]) as Python's, materialized as a list */
static jv eval_range(ctx *c, jexpr *x, const jv *a) {
    for (int i = 0; i < x->nargs; i++)
        if (a[i].t != JV_INT && a[i].t != JV_BOOL) return rt_fail(c, x->pos, "range() needs integers, got %s", type_name(a[i])), jv_none();
    if (x->nargs < 1 || x->nargs > 3) return rt_fail(c, x->pos, "range() takes 1 to 3 arguments, got %d", x->nargs), jv_none();
    long long lo = x->nargs > 1 ? a[0].i : 0, hi = x->nargs > 1 ? a[1].i : a[0].i, step = x->nargs > 2 ? a[2].i : 1;
    if (!step) return rt_fail(c, x->pos, "range() step must not be zero"), jv_none();
    /* the count in unsigned arithmetic: hi - lo may not fit a long long */
    unsigned long long span = 0, ustep = step > 0 ? (unsigned long long)step : 0ull - (unsigned long long)step, n = 0;
    if (step > 0 && hi > lo) span = (unsigned long long)hi - (unsigned long long)lo;
    if (step < 0 && lo > hi) span = (unsigned long long)lo - (unsigned long long)hi;
    if (span) n = (span - 1) / ustep + 1;
    jv l = new_list(c, n > (unsigned long long)LLONG_MAX ? -1 : (long long)n);
    for (int i = 0; l.t == JV_LIST && i < l.l->n; i++) l.l->v[i] = jv_int(lo + (long long)i * step);
    return l;
}

static jv eval_call(ctx *c, jexpr *x) {
    jv args[RMU_JINJA_MAX_ARGS];
    if (eval_args(c, x, args)) return jv_none();
    if (name_is(x, "range")) return eval_range(c, x, args);
    jv m = x->nargs ? stringify(c, args[0]) : jv_str("", 0); /* raise_exception(msg) */
    if (!c->d.failed)
        fail(c, "raised an error at line %d: %.*s", rmu_jinja_line(c->T, x->pos), (int)(m.n > 300 ? 300 : m.n),
             m.s ? m.s : "");
    return jv_none();
}

static jv contains(ctx *c, jexpr *x, jv needle, jv hay) {
    if (hay.t == JV_STR) {
        if (needle.t != JV_STR) return rt_fail(c, x->pos, "'in <string>' needs a string on the left"), jv_none();
        return jv_bool(needle.n == 0 || (needle.n <= hay.n && memmem(hay.s, hay.n, needle.s, needle.n)));
    }
    if (hay.t == JV_LIST) {
        for (int i = 0; i < hay.l->n; i++)
            if (values_equal(c, needle, hay.l->v[i], 0)) return jv_bool(1);
        return jv_bool(0);
    }
    if (hay.t == JV_DICT) {
        int f = 0;
        if (needle.t == JV_STR) dict_get(hay, needle.s, needle.n, &f);
        return jv_bool(f);
    }
    if (hay.t == JV_UNDEF) return use_undef(c, x->pos, hay), jv_none();
    return rt_fail(c, x->pos, "'in' needs a string, list or dict on the right, got %s", type_name(hay)), jv_none();
}

static jv compare(ctx *c, jexpr *x, const char *op, jv a, jv b, int nums) {
    int cmp;
    if (nums) cmp = (a.i > b.i) - (a.i < b.i);
    else if (a.t == JV_STR && b.t == JV_STR) {
        int m = memcmp(a.s, b.s, a.n < b.n ? a.n : b.n);
        cmp = m ? (m > 0) - (m < 0) : (a.n > b.n) - (a.n < b.n);
    } else
        return rt_fail(c, x->pos, "cannot compare %s and %s", type_name(a), type_name(b)), jv_none();
    if (!strcmp(op, "<")) return jv_bool(cmp < 0);
    if (!strcmp(op, ">")) return jv_bool(cmp > 0);
    if (!strcmp(op, "<=")) return jv_bool(cmp <= 0);
    return jv_bool(cmp >= 0);
}

static jv add(ctx *c, jexpr *x, jv a, jv b, int nums) {
    if (nums) return jv_int((long long)((unsigned long long)a.i + (unsigned long long)b.i)); /* wraps, no UB */
    if (a.t == JV_STR && b.t == JV_STR) return concat_str(c, a, b);
    if (a.t == JV_LIST && b.t == JV_LIST) {
        jv r = new_list(c, (long long)a.l->n + b.l->n);
        if (r.t != JV_LIST) return r;
        if (a.l->n) memcpy(r.l->v, a.l->v, sizeof(jv) * (size_t)a.l->n);
        if (b.l->n) memcpy(r.l->v + a.l->n, b.l->v, sizeof(jv) * (size_t)b.l->n);
        return r;
    }
    return rt_fail(c, x->pos, "cannot add %s and %s", type_name(a), type_name(b)), jv_none();
}

static jv repeat(ctx *c, jexpr *x, jv s, long long k) {
    if (k < 0) k = 0;
    if (s.n && (unsigned long long)k > (c->T->max_bytes / s.n)) {
        c->A.over = 1;
        return nomem(c), jv_none();
    }
    char *p = alloc(c, s.n * (size_t)k + 1);
    if (!p) return jv_none();
    for (long long i = 0; i < k; i++) memcpy(p + s.n * (size_t)i, s.s, s.n);
    return jv_str(p, s.n * (size_t)k);
}

static jv eval_bin(ctx *c, jexpr *x) {
    const char *op = x->op;
    if (!strcmp(op, "and") || !strcmp(op, "or")) {
        jv a = eval(c, x->a);
        return truthy(a) == (op[0] == 'a') ? eval(c, x->b) : a;
    }
    jv a = eval(c, x->a), b = c->d.failed ? jv_none() : eval(c, x->b);
    if (c->d.failed) return jv_none();
    if (!strcmp(op, "==")) return jv_bool(values_equal(c, a, b, 0));
    if (!strcmp(op, "!=")) return jv_bool(!values_equal(c, a, b, 0));
    if (!strcmp(op, "in")) return contains(c, x, a, b);
    if (!strcmp(op, "nin")) {
        jv r = contains(c, x, a, b);
        return r.t == JV_BOOL ? jv_bool(!r.i) : r;
    }
    if (!strcmp(op, "~")) {
        a = stringify(c, a);
        return concat_str(c, a, stringify(c, b));
    }
    /* arithmetic and ordering on an undefined value fail as Jinja's Undefined does */
    if (a.t == JV_UNDEF || b.t == JV_UNDEF) return use_undef(c, x->pos, a.t == JV_UNDEF ? a : b), jv_none();
    int nums = (a.t == JV_INT || a.t == JV_BOOL) && (b.t == JV_INT || b.t == JV_BOOL);
    if (op[0] == '<' || op[0] == '>') return compare(c, x, op, a, b, nums);
    if (!strcmp(op, "+")) return add(c, x, a, b, nums);
    if (!strcmp(op, "*") && a.t == JV_STR && b.t == JV_INT) return repeat(c, x, a, b.i);
    if (!strcmp(op, "*") && a.t == JV_INT && b.t == JV_STR) return repeat(c, x, b, a.i);
    if (!nums) return rt_fail(c, x->pos, "'%s' needs numbers, got %s and %s", op, type_name(a), type_name(b)), jv_none();
    unsigned long long ua = (unsigned long long)a.i, ub = (unsigned long long)b.i;
    if (!strcmp(op, "-")) return jv_int((long long)(ua - ub));
    if (!strcmp(op, "*")) return jv_int((long long)(ua * ub));
    if (b.i == 0) return rt_fail(c, x->pos, "division by zero"), jv_none();
    if (b.i == -1) return jv_int(!strcmp(op, "//") ? (long long)(0ull - ua) : 0); /* LLONG_MIN / -1 overflows */
    /* Python floor semantics for // and % */
    long long q = a.i / b.i, r = a.i % b.i;
    if (r != 0 && ((r < 0) != (b.i < 0))) q--, r += b.i;
    return jv_int(!strcmp(op, "//") ? q : r);
}

static int step(ctx *c, size_t pos) {
    if (++c->steps <= c->T->max_steps) return 0;
    return rt_fail(c, pos, "rendering takes more than %ld steps (max_steps)", c->T->max_steps);
}

static jv eval(ctx *c, jexpr *x) {
    if (c->d.failed || step(c, x->pos)) return jv_none();
    if (++c->depth > MAX_EVAL) {
        c->depth--;
        return rt_fail(c, x->pos, "expression nested more than %d levels deep", MAX_EVAL), jv_none();
    }
    c->at = x->pos;
    jv r = jv_none(), o;
    switch (x->kind) {
    case E_LIT: r = x->lit; break;
    case E_VAR: r = lookup(c, x->name, x->nlen); break;
    case E_ATTR:
        o = eval(c, x->a);
        if (c->d.failed) break;
        if (o.t == JV_UNDEF) use_undef(c, x->pos, o);
        else if (o.t == JV_DICT) r = get_item(c, x, o, jv_str(x->name, x->nlen));
        else r = undef_why(c, "%s object has no attribute '%.*s'", type_name(o), (int)(x->nlen > 60 ? 60 : x->nlen), x->name);
        break;
    case E_ITEM: {
        o = eval(c, x->a);
        jv k = eval(c, x->b);
        if (!c->d.failed) r = get_item(c, x, o, k);
        break;
    }
    case E_SLICE: {
        o = eval(c, x->a);
        jv lo = x->b ? eval(c, x->b) : jv_none(), hi = x->c ? eval(c, x->c) : jv_none();
        if (!c->d.failed) r = do_slice(c, x, o, lo, hi);
        break;
    }
    case E_CALL: r = eval_call(c, x); break;
    case E_METHOD: r = eval_method(c, x); break;
    case E_FILTER: r = eval_filter(c, x); break;
    case E_TEST:
        o = eval(c, x->a);
        if (!c->d.failed) r = jv_bool(test_value(c, x, o) != x->neg);
        break;
    case E_NOT: r = jv_bool(!truthy(eval(c, x->a))); break;
    case E_NEG:
        o = eval(c, x->a);
        if (o.t == JV_INT || o.t == JV_BOOL) r = jv_int((long long)(0ull - (unsigned long long)o.i));
        else if (!c->d.failed) rt_fail(c, x->pos, "cannot negate %s", a_type(o));
        break;
    case E_BIN: r = eval_bin(c, x); break;
    case E_COND: r = truthy(eval(c, x->a)) ? eval(c, x->b) : x->c ? eval(c, x->c) : jv_undef(NULL); break;
    case E_LIST:
        r = new_list(c, x->nargs);
        for (int i = 0; i < x->nargs && r.t == JV_LIST; i++) r.l->v[i] = eval(c, x->args[i]);
        break;
    }
    c->depth--;
    return c->d.failed ? jv_none() : r;
}

/* ---------------------------------------------------------------- statements */

static int exec(ctx *c, jnode *n);

/* The sequence a for loop walks: lists as they are, dict keys, string characters. */
static jv loop_items(ctx *c, jnode *n) {
    jv it = eval(c, n->e);
    if (c->d.failed) return jv_none();
    if (it.t == JV_UNDEF) return new_list(c, 0); /* Jinja iterates an undefined as empty (but not none) */
    if (it.t == JV_DICT) {
        jv keys = new_list(c, it.d->n);
        for (int i = 0; i < it.d->n && keys.t == JV_LIST; i++) keys.l->v[i] = jv_str(it.d->k[i], it.d->kn[i]);
        return keys;
    }
    if (it.t == JV_STR) {
        jv chars = new_list(c, (long long)it.n);
        for (size_t i = 0; i < it.n && chars.t == JV_LIST; i++) chars.l->v[i] = jv_str(it.s + i, 1);
        return chars;
    }
    if (it.t != JV_LIST) rt_fail(c, n->e->pos, "cannot loop over %s", a_type(it));
    if (it.t != JV_LIST || !n->filter) return it;
    /* the loop filter is applied first, so loop.* counts only the kept items (as in Jinja) */
    jv items = new_list(c, it.l->n);
    if (items.t != JV_LIST) return items;
    items.l->n = 0;
    scope fs = {.up = c->sc};
    c->sc = &fs;
    for (int i = 0; i < it.l->n && !c->d.failed; i++) {
        fs.n = 0;
        if (scope_set(c, &fs, n->name, n->nlen, it.l->v[i])) break;
        if (truthy(eval(c, n->filter))) items.l->v[items.l->n++] = it.l->v[i];
    }
    c->sc = fs.up;
    return items;
}

static int exec_for(ctx *c, jnode *n) {
    jv items = loop_items(c, n);
    if (c->d.failed) return -1;
    int len = items.l->n;
    if (!len) return n->els ? exec(c, n->els) : 0;
    /* one loop object and one scope, refilled per iteration (Jinja's loop is one object too) */
    jv loop = new_dict(c, 9);
    if (c->d.failed) return -1;
    scope s = {.up = c->sc};
    for (int i = 0; i < len; i++) {
        if (step(c, n->e->pos)) return -1; /* an empty body still costs its iterations */
        loop.d->n = 0;
        dict_put(loop, "index0", 6, jv_int(i));
        dict_put(loop, "index", 5, jv_int(i + 1));
        dict_put(loop, "first", 5, jv_bool(i == 0));
        dict_put(loop, "last", 4, jv_bool(i == len - 1));
        dict_put(loop, "length", 6, jv_int(len));
        dict_put(loop, "revindex", 8, jv_int(len - i));
        dict_put(loop, "revindex0", 9, jv_int(len - i - 1));
        dict_put(loop, "previtem", 8, i ? items.l->v[i - 1] : jv_undef("'loop.previtem' is undefined"));
        dict_put(loop, "nextitem", 8, i + 1 < len ? items.l->v[i + 1] : jv_undef("'loop.nextitem' is undefined"));
        s.n = 0;
        c->sc = &s;
        int r = scope_set(c, &s, n->name, n->nlen, items.l->v[i]);
        if (!r) r = scope_set(c, &s, "loop", 4, loop);
        if (!r) r = exec(c, n->body);
        c->sc = s.up;
        if (r) return -1;
        c->cont = 0;
        if (c->brk) {
            c->brk = 0;
            break;
        }
    }
    return 0;
}

/* Output so far plus the arena must stay within max_bytes. */
static int emitted(ctx *c, size_t pos) {
    if (c->out.oom) return fail(c, "out of memory");
    if (c->out.n + c->A.total > c->T->max_bytes)
        return rt_fail(c, pos, "rendering needs more than %zu bytes (max_bytes)", c->T->max_bytes);
    return 0;
}

static int exec(ctx *c, jnode *n) {
    for (; n && !c->d.failed && !c->brk && !c->cont; n = n->next) {
        size_t pos = n->e ? n->e->pos : n->text ? (size_t)(n->text - c->T->src) : c->at;
        if (step(c, pos)) return -1;
        switch (n->kind) {
        case N_TEXT:
            rmu_sb_add(&c->out, n->text, n->len);
            if (emitted(c, pos)) return -1;
            break;
        case N_OUT: {
            jv v = eval(c, n->e);
            if (!c->d.failed) to_text(c, v, &c->out, 0); /* an allocation failure stays in out.oom */
            if (c->d.failed || emitted(c, pos)) return -1;
            break;
        }
        case N_IF: {
            int done = 0;
            for (int i = 0; i < n->nbr && !done; i++) {
                jv v = eval(c, n->conds[i]);
                if (c->d.failed) return -1;
                if (truthy(v)) {
                    done = 1;
                    if (exec(c, n->bodies[i])) return -1;
                }
            }
            if (!done && n->els && exec(c, n->els)) return -1;
            break;
        }
        case N_FOR:
            if (exec_for(c, n)) return -1;
            break;
        case N_SET: {
            jv v = eval(c, n->e);
            if (c->d.failed || scope_set(c, c->sc, n->name, n->nlen, v)) return -1;
            break;
        }
        case N_BREAK: c->brk = 1; break;
        case N_CONTINUE: c->cont = 1; break;
        }
    }
    return c->d.failed ? -1 : 0;
}

/* ---------------------------------------------------------------- API */

char *rmu_jinja_render(const rmu_jinja *t, const json_t *vars, size_t *len, rmu_err *e) {
    ctx c = {.T = t, .d = {.T = t, .e = e}, .A = {.limit = t->max_bytes}};
    scope globals = {0};
    c.sc = &globals;
    char *result = NULL;
    if (vars && !json_is_object(vars)) {
        fail(&c, "the variables must be a JSON object");
        goto out;
    }
    if (vars) {
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)vars, k, v) {
            jv x = from_json(&c, v, k, 0);
            if (c.d.failed || scope_set(&c, &globals, k, strlen(k), x)) goto out;
        }
    }
    if (exec(&c, t->root)) goto out;
    if (len) *len = c.out.n;
    if (!(result = rmu_sb_take(&c.out))) fail(&c, "out of memory");
out:
    rmu_sb_free(&c.out);
    rmu_jinja_arena_free(&c.A);
    return result;
}

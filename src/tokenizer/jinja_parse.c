/* jinja_parse.c - the Jinja-subset front end: source -> tokens -> tree (jinja_impl.h).
 * Whitespace control is settled by the lexer (it trims the text tokens), so the tree holds
 * exactly the text to output. Nesting is bounded (MAX_DEPTH) so no template can exhaust the
 * stack, and every construct outside the subset is rejected here, before rendering. */
#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja_impl.h"

#define MAX_DEPTH 200 /* nested expressions and blocks */

/* ---------------------------------------------------------------- arena */

struct rmu_jinja_block {
    rmu_jinja_block *next;
    size_t used, cap;
    max_align_t data[];
};

void *rmu_jinja_alloc(rmu_jinja_arena *a, size_t n) {
    if (n > ((size_t)1 << 40)) return a->over = 1, NULL;
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (!a->head || a->head->used + n > a->head->cap) {
        size_t cap = n > 65536 ? n : 65536;
        if (a->limit && a->total + cap > a->limit) return a->over = 1, NULL;
        rmu_jinja_block *b = malloc(sizeof(rmu_jinja_block) + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
        a->total += cap;
    }
    void *p = (char *)a->head->data + a->head->used;
    a->head->used += n;
    memset(p, 0, n);
    return p;
}

void rmu_jinja_arena_free(rmu_jinja_arena *a) {
    while (a->head) {
        rmu_jinja_block *n = a->head->next;
        free(a->head);
        a->head = n;
    }
    a->total = 0;
}

int rmu_jinja_line(const rmu_jinja *t, size_t pos) {
    int l = 1;
    for (size_t i = 0; i < pos && i < t->len; i++) l += t->src[i] == '\n';
    return l;
}

/* ---------------------------------------------------------------- lexer */

enum { T_TEXT, T_VBEGIN, T_VEND, T_BBEGIN, T_BEND, T_NAME, T_INT, T_STR, T_OP, T_EOF };

typedef struct {
    int type;
    const char *p; /* text / name / op (into the source or the arena) */
    size_t n;
    long long ival;
    size_t pos; /* offset in the source */
} token;

typedef struct {
    rmu_jinja *T;
    rmu_jinja_arena *A;
    rmu_jinja_diag d;
    const char *src;
    size_t len;
    int trim, lstrip;
    token *tok;
    int ntok, cap;
    int pos;   /* parser position */
    int depth; /* parser nesting */
} lexer;

int rmu_jinja_failf(rmu_jinja_diag *d, const char *fmt, ...) {
    if (d->failed) return -1;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rmu_errf(d->e, "%s: %s", d->T->name, msg);
    d->failed = 1;
    return -1;
}

#define fail(L, ...) rmu_jinja_failf(&(L)->d, __VA_ARGS__)

static int nomem(lexer *L) { return fail(L, "out of memory"); }

static int syntax(lexer *L, size_t pos, const char *what) {
    return fail(L, "syntax error at line %d: %s", rmu_jinja_line(L->T, pos), what);
}

static int unsupported(lexer *L, const char *what) {
    return fail(L, "unsupported construct at line %d: %s", rmu_jinja_line(L->T, L->tok[L->pos].pos), what);
}

static int push_tok(lexer *L, token t) {
    if (L->ntok == L->cap) {
        int cap = L->cap ? L->cap * 2 : 256;
        token *nt = rmu_jinja_alloc(L->A, sizeof(token) * (size_t)cap);
        if (!nt) return nomem(L);
        if (L->ntok) memcpy(nt, L->tok, sizeof(token) * (size_t)L->ntok);
        L->tok = nt;
        L->cap = cap;
    }
    L->tok[L->ntok++] = t;
    return 0;
}

/* Writes code point cp (< 0x10000 here) as UTF-8; returns its length. */
static size_t utf8_put(char *o, unsigned cp) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3F)), 2;
    o[0] = (char)(0xE0 | cp >> 12), o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
}

/* \xNN / \uNNNN: nd hex digits at s (avail bytes) -> UTF-8 at out + *n. 0 when they are not. */
static int hex_escape(const char *s, size_t avail, int nd, char *out, size_t *n) {
    unsigned cp = 0;
    for (int h = 0; h < nd; h++) {
        if ((size_t)h >= avail || !isxdigit((unsigned char)s[h])) return 0;
        cp = cp * 16 + (unsigned)(isdigit((unsigned char)s[h]) ? s[h] - '0' : tolower((unsigned char)s[h]) - 'a' + 10);
    }
    if (cp >= 0xD800 && cp < 0xE000) return 0; /* a lone surrogate has no UTF-8 form */
    *n += utf8_put(out + *n, cp);
    return 1;
}

/* Decodes a Python/Jinja string literal starting at src[*i] (a quote). */
static int lex_string(lexer *L, size_t *i, token *t) {
    char q = L->src[*i];
    size_t start = *i, end = *i + 1;
    while (end < L->len && L->src[end] != q) end += L->src[end] == '\\' ? 2 : 1;
    if (end >= L->len) return syntax(L, start, "unterminated string literal");
    char *out = rmu_jinja_alloc(L->A, end - start); /* the decoded text is never longer */
    if (!out) return nomem(L);
    size_t n = 0;
    for (size_t k = start + 1; k < end; k++) {
        char c = L->src[k];
        if (c != '\\') {
            out[n++] = c;
            continue;
        }
        char d = L->src[++k];
        switch (d) {
        case 'n': out[n++] = '\n'; break;
        case 't': out[n++] = '\t'; break;
        case 'r': out[n++] = '\r'; break;
        case '0': out[n++] = '\0'; break;
        case '\\': out[n++] = '\\'; break;
        case '\'': out[n++] = '\''; break;
        case '"': out[n++] = '"'; break;
        case '\n': break; /* line continuation */
        default:
            if ((d == 'x' || d == 'u') && hex_escape(L->src + k + 1, end - k - 1, d == 'x' ? 2 : 4, out, &n)) {
                k += d == 'x' ? 2 : 4;
                break;
            }
            out[n++] = '\\'; /* Python keeps unknown escapes as written */
            out[n++] = d;
        }
    }
    *t = (token){.type = T_STR, .p = out, .n = n, .pos = start};
    *i = end + 1;
    return 0;
}

static int lex_number(lexer *L, size_t *i, token *t) {
    size_t s = *i, k = *i;
    long long v = 0;
    while (k < L->len && (isdigit((unsigned char)L->src[k]) || L->src[k] == '_')) {
        if (L->src[k] != '_') {
            if (v > (INT64_MAX - 9) / 10) return syntax(L, s, "integer literal too large");
            v = v * 10 + (L->src[k] - '0');
        }
        k++;
    }
    if (k + 1 < L->len && (L->src[k] == '.' || L->src[k] == 'e' || L->src[k] == 'E') &&
        isdigit((unsigned char)L->src[k + 1]))
        return fail(L, "unsupported construct at line %d: float literal", rmu_jinja_line(L->T, s));
    *t = (token){.type = T_INT, .ival = v, .p = L->src + s, .n = k - s};
    *i = k;
    return 0;
}

/* Tokens inside {{ }} or {% %} up to the closing marker; *i ends after it. *rflag gets the
 * '-' / '+' found before the marker. */
static int lex_inner(lexer *L, size_t *i, char close, int *rflag) {
    size_t k = *i;
    while (k < L->len) {
        char c = L->src[k];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            k++;
            continue;
        }
        if ((c == '-' || c == '+') && k + 2 < L->len && L->src[k + 1] == close && L->src[k + 2] == '}') {
            *rflag = c;
            *i = k + 3;
            return 0;
        }
        if (c == close && k + 1 < L->len && L->src[k + 1] == '}') {
            *rflag = 0;
            *i = k + 2;
            return 0;
        }
        token t = {.pos = 0};
        size_t tok_start = k;
        if (c == '\'' || c == '"') {
            if (lex_string(L, &k, &t)) return -1;
        } else if (isalpha((unsigned char)c) || c == '_') {
            size_t s = k;
            while (k < L->len && (isalnum((unsigned char)L->src[k]) || L->src[k] == '_')) k++;
            t = (token){.type = T_NAME, .p = L->src + s, .n = k - s};
        } else if (isdigit((unsigned char)c)) {
            if (lex_number(L, &k, &t)) return -1;
        } else {
            static const char *ops2[] = {"==", "!=", "<=", ">=", "//", "**"};
            size_t n = 1;
            for (int o = 0; o < 6; o++)
                if (k + 1 < L->len && L->src[k] == ops2[o][0] && L->src[k + 1] == ops2[o][1]) n = 2;
            if (n == 1 && !strchr("()[]{}.,:+-*/%~<>|=", c)) {
                char what[32];
                snprintf(what, sizeof what, isprint((unsigned char)c) ? "character '%c'" : "byte 0x%02x",
                         (unsigned char)c);
                return syntax(L, k, what);
            }
            t = (token){.type = T_OP, .p = L->src + k, .n = n};
            k += n;
        }
        t.pos = tok_start;
        if (push_tok(L, t)) return -1;
    }
    return syntax(L, *i, close == '%' ? "missing %}" : "missing }}");
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static int lex(lexer *L) {
    size_t i = 0;
    int line_starting = 1, pending_lstrip = 0; /* '-' on the previous tag's right side */
    while (i < L->len) {
        size_t q = i; /* next tag start */
        int kind = 0;
        while (q + 1 < L->len) {
            if (L->src[q] == '{' && (L->src[q + 1] == '{' || L->src[q + 1] == '%' || L->src[q + 1] == '#')) {
                kind = L->src[q + 1];
                break;
            }
            q++;
        }
        if (!kind) q = L->len;
        size_t ts = i, te = q;
        if (pending_lstrip)
            while (ts < te && is_ws(L->src[ts])) ts++;
        pending_lstrip = 0;
        char lflag = 0;
        if (kind && q + 2 < L->len && (L->src[q + 2] == '-' || L->src[q + 2] == '+')) lflag = L->src[q + 2];
        if (kind) {
            if (lflag == '-') {
                while (te > ts && is_ws(L->src[te - 1])) te--;
            } else if (L->lstrip && lflag != '+' && kind != '{') {
                size_t l = te;
                while (l > ts && (L->src[l - 1] == ' ' || L->src[l - 1] == '\t')) l--;
                int at_line_start = (l > ts) ? L->src[l - 1] == '\n' : (ts == i && line_starting);
                if (at_line_start) te = l;
            }
        }
        if (te > ts && push_tok(L, (token){.type = T_TEXT, .p = L->src + ts, .n = te - ts, .pos = ts})) return -1;
        if (!kind) break;
        size_t k = q + 2 + (lflag ? 1 : 0);
        int rflag = 0;
        if (kind == '#') {
            const char *end = k < L->len ? memmem(L->src + k, L->len - k, "#}", 2) : NULL;
            if (!end) return syntax(L, q, "unterminated comment");
            size_t m = (size_t)(end - L->src);
            if (m > k && (L->src[m - 1] == '-' || L->src[m - 1] == '+')) rflag = L->src[m - 1];
            k = m + 2;
        } else {
            if (push_tok(L, (token){.type = kind == '{' ? T_VBEGIN : T_BBEGIN, .pos = q})) return -1;
            if (lex_inner(L, &k, kind == '{' ? '}' : '%', &rflag)) return -1;
            if (push_tok(L, (token){.type = kind == '{' ? T_VEND : T_BEND, .pos = k})) return -1;
        }
        if (rflag == '-') pending_lstrip = 1;
        else if (L->trim && rflag != '+' && kind != '{' && k < L->len && L->src[k] == '\n')
            k++; /* trim_blocks: the newline right after a block or comment tag */
        line_starting = k > 0 && L->src[k - 1] == '\n';
        i = k;
    }
    return push_tok(L, (token){.type = T_EOF, .pos = L->len});
}

/* ---------------------------------------------------------------- parser helpers */

static token *peek(lexer *L) { return &L->tok[L->pos]; }
static token *advance(lexer *L) { return &L->tok[L->pos < L->ntok - 1 ? L->pos++ : L->pos]; }

static int tok_is(const token *t, int type, const char *s) {
    return t->type == type && (!s || (t->n == strlen(s) && !memcmp(t->p, s, t->n)));
}
static int is_name(lexer *L, const char *s) { return tok_is(peek(L), T_NAME, s); }
static int is_op(lexer *L, const char *s) { return tok_is(peek(L), T_OP, s); }

static int syntax_tok(lexer *L, const char *what) {
    token *t = peek(L);
    char got[48];
    if (t->type == T_NAME || t->type == T_OP || t->type == T_INT)
        snprintf(got, sizeof got, "'%.*s'", (int)(t->n > 20 ? 20 : t->n), t->p);
    else
        snprintf(got, sizeof got, "%s",
                 t->type == T_STR ? "a string" : t->type == T_EOF ? "the end" : t->type == T_TEXT ? "text" : "a tag end");
    return fail(L, "syntax error at line %d: %s, got %s", rmu_jinja_line(L->T, t->pos), what, got);
}

static int expect_op(lexer *L, const char *s) {
    if (is_op(L, s)) {
        advance(L);
        return 0;
    }
    char msg[64];
    snprintf(msg, sizeof msg, "expected '%s'", s);
    return syntax_tok(L, msg);
}

static int name_in(const char *s, size_t n, const char *const *list) {
    for (; *list; list++)
        if (strlen(*list) == n && !memcmp(*list, s, n)) return 1;
    return 0;
}

static int unsupported_named(lexer *L, const char *kind, const char *s, size_t n) {
    char what[96];
    snprintf(what, sizeof what, "%s '%.*s'", kind, (int)(n > 40 ? 40 : n), s);
    return unsupported(L, what);
}

/* Enter / leave one nesting level of the recursive descent. */
static int enter(lexer *L) {
    if (++L->depth <= MAX_DEPTH) return 0;
    return fail(L, "syntax error at line %d: nested more than %d levels deep", rmu_jinja_line(L->T, peek(L)->pos),
                MAX_DEPTH);
}

static jexpr *new_expr(lexer *L, int kind) {
    jexpr *x = rmu_jinja_alloc(L->A, sizeof *x);
    if (!x) return nomem(L), NULL;
    x->kind = kind;
    x->pos = peek(L)->pos;
    return x;
}

/* Copies k parsed expressions into the arena. */
static int store_exprs(lexer *L, jexpr **tmp, int k, jexpr ***out) {
    *out = rmu_jinja_alloc(L->A, sizeof(jexpr *) * (size_t)(k ? k : 1));
    if (!*out) return nomem(L);
    memcpy(*out, tmp, sizeof(jexpr *) * (size_t)k);
    return 0;
}

static const char *const FILTERS[] = {"trim", "length", "count", "upper", "lower", "string", "default", "d",
                                      "first", "last", "capitalize", NULL};
static const char *const TESTS[] = {"defined", "undefined", "none", "string", "number", "boolean", "mapping",
                                    "sequence", "iterable", "true", "false", "odd", "even", NULL};
static const char *const METHODS[] = {"strip", "lstrip", "rstrip", "upper", "lower", "startswith", "endswith",
                                      "get", NULL};
static const char *const FUNCTIONS[] = {"raise_exception", "range", NULL};

/* ---------------------------------------------------------------- expressions */

static jexpr *parse_expr(lexer *L);

/* Items up to the closing op (after the opening one): call arguments or list items. */
static int parse_items(lexer *L, const char *close, int max, const char *what, jexpr ***out, int *n) {
    jexpr *tmp[64];
    int k = 0;
    while (!is_op(L, close)) {
        if (!strcmp(close, ")") && peek(L)->type == T_NAME && L->pos + 1 < L->ntok &&
            tok_is(&L->tok[L->pos + 1], T_OP, "="))
            return unsupported(L, "keyword arguments");
        if (k == max) return unsupported(L, what);
        if (!(tmp[k++] = parse_expr(L))) return -1;
        if (is_op(L, ",")) advance(L);
        else if (!is_op(L, close)) {
            char msg[32];
            snprintf(msg, sizeof msg, "expected ',' or '%s'", close);
            return syntax_tok(L, msg);
        }
    }
    advance(L);
    *n = k;
    return store_exprs(L, tmp, k, out);
}

static jexpr *parse_primary(lexer *L) {
    token *t = peek(L);
    jexpr *x;
    if (t->type == T_STR) { /* adjacent literals concatenate, as in Python */
        size_t total = 0;
        for (int k = L->pos; L->tok[k].type == T_STR; k++) total += L->tok[k].n;
        char *s = rmu_jinja_alloc(L->A, total + 1);
        if (!s) return nomem(L), NULL;
        if (!(x = new_expr(L, E_LIT))) return NULL;
        size_t o = 0;
        while (peek(L)->type == T_STR) {
            token *u = advance(L);
            memcpy(s + o, u->p, u->n);
            o += u->n;
        }
        x->lit = jv_str(s, total);
        return x;
    }
    if (t->type == T_INT) {
        if (!(x = new_expr(L, E_LIT))) return NULL;
        x->lit = jv_int(advance(L)->ival);
        return x;
    }
    if (t->type == T_NAME) {
        if (!(x = new_expr(L, E_LIT))) return NULL;
        advance(L);
        if (tok_is(t, T_NAME, "true") || tok_is(t, T_NAME, "True")) x->lit = jv_bool(1);
        else if (tok_is(t, T_NAME, "false") || tok_is(t, T_NAME, "False")) x->lit = jv_bool(0);
        else if (tok_is(t, T_NAME, "none") || tok_is(t, T_NAME, "None")) x->lit = jv_none();
        else {
            x->kind = E_VAR;
            x->name = t->p;
            x->nlen = t->n;
        }
        return x;
    }
    if (tok_is(t, T_OP, "(")) {
        advance(L);
        if (!(x = parse_expr(L))) return NULL;
        if (is_op(L, ",")) return unsupported(L, "tuples"), NULL;
        return expect_op(L, ")") ? NULL : x;
    }
    if (tok_is(t, T_OP, "[")) {
        if (!(x = new_expr(L, E_LIST))) return NULL;
        advance(L);
        return parse_items(L, "]", 64, "list literals of more than 64 items", &x->args, &x->nargs) ? NULL : x;
    }
    if (tok_is(t, T_OP, "{")) return unsupported(L, "dict literals"), NULL;
    return syntax_tok(L, "expected an expression"), NULL;
}

static jexpr *parse_call(lexer *L, jexpr *x) {
    jexpr *y = new_expr(L, E_CALL);
    if (!y) return NULL;
    y->pos = x->pos;
    if (x->kind == E_ATTR) {
        if (!name_in(x->name, x->nlen, METHODS)) return unsupported_named(L, "method", x->name, x->nlen), NULL;
        y->kind = E_METHOD;
        y->a = x->a;
    } else if (x->kind == E_VAR) {
        if (!name_in(x->name, x->nlen, FUNCTIONS)) return unsupported_named(L, "function", x->name, x->nlen), NULL;
    } else
        return unsupported(L, "calling an expression"), NULL;
    y->name = x->name;
    y->nlen = x->nlen;
    advance(L); /* ( */
    if (parse_items(L, ")", RMU_JINJA_MAX_ARGS, "more than 16 arguments", &y->args, &y->nargs)) return NULL;
    return y;
}

static jexpr *parse_postfix(lexer *L, jexpr *x) {
    while (x) {
        jexpr *y;
        if (is_op(L, ".")) {
            advance(L);
            token *t = peek(L);
            if (t->type != T_NAME) return syntax_tok(L, "expected an attribute name after '.'"), NULL;
            if (!(y = new_expr(L, E_ATTR))) return NULL;
            advance(L);
            y->name = t->p;
            y->nlen = t->n;
        } else if (is_op(L, "[")) {
            advance(L);
            jexpr *lo = NULL, *hi = NULL;
            if (!is_op(L, ":") && !(lo = parse_expr(L))) return NULL;
            if (!(y = new_expr(L, E_ITEM))) return NULL;
            if (is_op(L, ":")) {
                advance(L);
                if (!is_op(L, "]") && !is_op(L, ":") && !(hi = parse_expr(L))) return NULL;
                if (is_op(L, ":")) return unsupported(L, "slice steps ([a:b:c])"), NULL;
                y->kind = E_SLICE;
            }
            y->b = lo, y->c = hi;
            if (expect_op(L, "]")) return NULL;
        } else if (is_op(L, "(")) {
            x = parse_call(L, x);
            continue;
        } else
            return x;
        y->a = x;
        y->pos = x->pos;
        x = y;
    }
    return NULL;
}

/* filters and tests after a postfix expression: x | f(args) | g, x is [not] t */
static jexpr *parse_filters(lexer *L, jexpr *x) {
    while (x) {
        int filter = is_op(L, "|");
        if (!filter && !is_name(L, "is")) return x;
        advance(L);
        jexpr *y = new_expr(L, filter ? E_FILTER : E_TEST);
        if (!y) return NULL;
        if (!filter && is_name(L, "not")) advance(L), y->neg = 1;
        token *t = peek(L);
        if (t->type != T_NAME) return syntax_tok(L, filter ? "expected a filter name after '|'" : "expected a test name after 'is'"), NULL;
        if (!name_in(t->p, t->n, filter ? FILTERS : TESTS))
            return unsupported_named(L, filter ? "filter" : "test", t->p, t->n), NULL;
        advance(L);
        y->a = x;
        y->pos = x->pos;
        y->name = t->p;
        y->nlen = t->n;
        if (filter && is_op(L, "(")) {
            advance(L);
            if (parse_items(L, ")", RMU_JINJA_MAX_ARGS, "more than 16 arguments", &y->args, &y->nargs)) return NULL;
        }
        x = y;
    }
    return NULL;
}

static jexpr *parse_unary(lexer *L) {
    if (enter(L)) return NULL;
    jexpr *x;
    if (is_op(L, "-") || is_op(L, "+")) {
        int neg = is_op(L, "-");
        advance(L);
        jexpr *a = parse_unary(L);
        x = a;
        if (a && neg && (x = new_expr(L, E_NEG))) x->a = a, x->pos = a->pos;
    } else
        x = parse_filters(L, parse_postfix(L, parse_primary(L)));
    L->depth--;
    return x;
}

static jexpr *bin(lexer *L, const char *op, jexpr *a, jexpr *b) {
    if (!a || !b) return NULL;
    jexpr *x = new_expr(L, E_BIN);
    if (!x) return NULL;
    snprintf(x->op, sizeof x->op, "%s", op);
    x->a = a, x->b = b;
    x->pos = a->pos; /* report at the left operand, not at the token after the right one */
    return x;
}

/* Binary operator levels, loosest first; each level's operands are the next level. */
enum { LV_OR, LV_AND, LV_NOT, LV_CMP, LV_ADD, LV_CONCAT, LV_MUL, LV_UNARY };

static jexpr *parse_level(lexer *L, int lv);

/* The operator at the parser position for level lv ("nin" for "not in"); 0 when none. */
static int level_op(lexer *L, int lv, char op[4], int *ntok) {
    static const char *const ops[][6] = {[LV_OR] = {"or"}, [LV_AND] = {"and"},
                                         [LV_CMP] = {"==", "!=", "<", ">", "<=", ">="}, [LV_ADD] = {"+", "-"},
                                         [LV_CONCAT] = {"~"}, [LV_MUL] = {"*", "//", "%", "/", "**"}};
    token *t = peek(L);
    *ntok = 1;
    if (lv == LV_CMP && (tok_is(t, T_NAME, "in") || (tok_is(t, T_NAME, "not") && L->pos + 1 < L->ntok &&
                                                     tok_is(&L->tok[L->pos + 1], T_NAME, "in")))) {
        *ntok = t->n == 3 ? 2 : 1;
        snprintf(op, 4, "%s", t->n == 3 ? "nin" : "in");
        return 1;
    }
    for (int k = 0; k < 6 && ops[lv][k]; k++)
        if (tok_is(t, lv <= LV_AND ? T_NAME : T_OP, ops[lv][k])) {
            snprintf(op, 4, "%s", ops[lv][k]);
            return 1;
        }
    return 0;
}

static jexpr *parse_level(lexer *L, int lv) {
    if (lv == LV_UNARY) return parse_unary(L);
    if (lv == LV_NOT && is_name(L, "not")) {
        if (enter(L)) return NULL;
        advance(L);
        jexpr *a = parse_level(L, LV_NOT), *x = NULL;
        if (a && (x = new_expr(L, E_NOT))) x->a = a, x->pos = a->pos;
        L->depth--;
        return x;
    }
    jexpr *x = parse_level(L, lv + 1);
    char op[4];
    int ntok;
    while (x && lv != LV_NOT && level_op(L, lv, op, &ntok)) {
        if (!strcmp(op, "/")) return unsupported(L, "'/' (true division gives floats; use //)"), NULL;
        if (!strcmp(op, "**")) return unsupported(L, "'**'"), NULL;
        while (ntok--) advance(L);
        x = bin(L, op, x, parse_level(L, lv + 1));
    }
    return x;
}

/* a [if cond [else b]]; parse_level(LV_OR) alone where a trailing "if" means something else */
static jexpr *parse_expr(lexer *L) {
    if (enter(L)) return NULL;
    jexpr *x = parse_level(L, LV_OR);
    while (x && is_name(L, "if")) {
        advance(L);
        jexpr *c = new_expr(L, E_COND);
        if (!c) return NULL;
        c->b = x;
        c->pos = x->pos;
        if (!(c->a = parse_level(L, LV_OR))) return NULL;
        if (is_name(L, "else")) {
            advance(L);
            if (!(c->c = parse_expr(L))) return NULL;
        }
        x = c;
    }
    L->depth--;
    return x;
}

/* ---------------------------------------------------------------- statements */

static jnode *new_node(lexer *L, int kind) {
    jnode *n = rmu_jinja_alloc(L->A, sizeof *n);
    if (!n) return nomem(L), NULL;
    n->kind = kind;
    return n;
}

static int expect_bend(lexer *L) {
    if (peek(L)->type == T_BEND) {
        advance(L);
        return 0;
    }
    return syntax_tok(L, "expected %}");
}

static jnode *parse_body(lexer *L, const char *const *stops, const char *ctx);

/* After "{% else %}" of an if or for: the else body up to and including "{% end %}". */
static jnode *parse_else(lexer *L, const char *end) {
    const char *const stops[] = {end, NULL};
    if (expect_bend(L)) return NULL;
    jnode *b = parse_body(L, stops, "{% else %}");
    if (L->d.failed) return NULL;
    advance(L), advance(L); /* {% end */
    return b;
}

static jnode *parse_if(lexer *L) {
    static const char *const stops[] = {"elif", "else", "endif", NULL};
    jnode *n = new_node(L, N_IF);
    if (!n) return NULL;
    jexpr *conds[64];
    jnode *bodies[64];
    int k = 0;
    for (;;) { /* at the condition, after "if" or "elif" */
        if (k == 64) return unsupported(L, "more than 64 elif branches"), NULL;
        if (!(conds[k] = parse_expr(L)) || expect_bend(L)) return NULL;
        bodies[k++] = parse_body(L, stops, "{% if %}");
        if (L->d.failed) return NULL;
        advance(L); /* {% */
        token *w = advance(L);
        if (tok_is(w, T_NAME, "elif")) continue;
        if (tok_is(w, T_NAME, "else") && !(n->els = parse_else(L, "endif")) && L->d.failed) return NULL;
        if (expect_bend(L)) return NULL;
        break;
    }
    n->conds = rmu_jinja_alloc(L->A, sizeof(jexpr *) * (size_t)k);
    n->bodies = rmu_jinja_alloc(L->A, sizeof(jnode *) * (size_t)k);
    if (!n->conds || !n->bodies) return nomem(L), NULL;
    memcpy(n->conds, conds, sizeof(jexpr *) * (size_t)k);
    memcpy(n->bodies, bodies, sizeof(jnode *) * (size_t)k);
    n->nbr = k;
    return n;
}

/* A node of that kind named by the variable that follows ("for x", "set x"). */
static jnode *named_node(lexer *L, int kind, const char *what) {
    jnode *n = new_node(L, kind);
    token *v = peek(L);
    if (n && v->type != T_NAME) return syntax_tok(L, what), NULL;
    if (!n) return NULL;
    advance(L);
    n->name = v->p;
    n->nlen = v->n;
    return n;
}

static jnode *parse_for(lexer *L) {
    static const char *const stops[] = {"else", "endfor", NULL};
    jnode *n = named_node(L, N_FOR, "expected a loop variable");
    if (!n) return NULL;
    if (is_op(L, ",")) return unsupported(L, "for-loop tuple unpacking"), NULL;
    if (!is_name(L, "in")) return syntax_tok(L, "expected 'in'"), NULL;
    advance(L);
    if (!(n->e = parse_level(L, LV_OR))) return NULL; /* a trailing "if" is the loop filter */
    if (is_name(L, "if")) {
        advance(L);
        if (!(n->filter = parse_expr(L))) return NULL;
    }
    if (is_name(L, "recursive")) return unsupported(L, "recursive loops"), NULL;
    if (expect_bend(L)) return NULL;
    n->body = parse_body(L, stops, "{% for %}");
    if (L->d.failed) return NULL;
    advance(L);
    if (tok_is(advance(L), T_NAME, "else") && !(n->els = parse_else(L, "endfor")) && L->d.failed) return NULL;
    if (expect_bend(L)) return NULL;
    return n;
}

static jnode *parse_set(lexer *L) {
    jnode *n = named_node(L, N_SET, "expected a variable name after set");
    if (!n) return NULL;
    if (is_op(L, ".")) return unsupported(L, "namespace attribute assignment (set ns.x = ...)"), NULL;
    if (is_op(L, ",")) return unsupported(L, "tuple assignment"), NULL;
    if (peek(L)->type == T_BEND) return unsupported(L, "block set ({% set x %}...{% endset %})"), NULL;
    if (expect_op(L, "=") || !(n->e = parse_expr(L)) || expect_bend(L)) return NULL;
    return n;
}

/* One statement after "{% name": the node, or NULL (failed). */
static jnode *parse_statement(lexer *L, const token *w) {
    jnode *n;
    if (tok_is(w, T_NAME, "if")) return parse_if(L);
    if (tok_is(w, T_NAME, "for")) return parse_for(L);
    if (tok_is(w, T_NAME, "set")) return parse_set(L);
    if (tok_is(w, T_NAME, "break") || tok_is(w, T_NAME, "continue")) {
        n = new_node(L, tok_is(w, T_NAME, "break") ? N_BREAK : N_CONTINUE);
        return !n || expect_bend(L) ? NULL : n;
    }
    char what[64];
    if (name_in(w->p, w->n, (const char *const[]){"endif", "endfor", "elif", "else", NULL})) {
        snprintf(what, sizeof what, "unexpected {%% %.*s %%}", (int)w->n, w->p);
        return syntax(L, w->pos, what), NULL;
    }
    snprintf(what, sizeof what, "{%% %.*s %%}", (int)(w->n > 30 ? 30 : w->n), w->p);
    L->pos--; /* report at the statement name */
    return unsupported(L, what), NULL;
}

/* Parses nodes until "{% w" with w in stops (left unconsumed) or the end. NULL is also an
 * empty body: callers check L->d.failed. */
static jnode *parse_body(lexer *L, const char *const *stops, const char *ctx) {
    jnode *head = NULL, **tail = &head;
    if (enter(L)) return NULL;
    while (!L->d.failed) {
        token *t = peek(L);
        jnode *n = NULL;
        if (t->type == T_EOF) {
            if (stops) {
                char msg[96];
                const char *last = stops[0];
                for (int k = 0; stops[k]; k++) last = stops[k];
                snprintf(msg, sizeof msg, "%s is never closed (missing {%% %s %%})", ctx, last);
                syntax(L, L->len, msg);
                return NULL;
            }
            break;
        }
        if (t->type == T_TEXT) {
            advance(L);
            if (!(n = new_node(L, N_TEXT))) return NULL;
            n->text = t->p;
            n->len = t->n;
        } else if (t->type == T_VBEGIN) {
            advance(L);
            if (!(n = new_node(L, N_OUT)) || !(n->e = parse_expr(L))) return NULL;
            if (peek(L)->type != T_VEND) return syntax_tok(L, "expected }}"), NULL;
            advance(L);
        } else if (t->type == T_BBEGIN) {
            token *w = &L->tok[L->pos + 1];
            if (w->type != T_NAME) return advance(L), syntax_tok(L, "expected a statement name after {%"), NULL;
            if (stops && name_in(w->p, w->n, stops)) break;
            advance(L), advance(L);
            if (!(n = parse_statement(L, w))) return NULL;
        } else
            return syntax_tok(L, "unexpected token"), NULL;
        *tail = n;
        tail = &n->next;
    }
    L->depth--;
    return L->d.failed ? NULL : head;
}

/* ---------------------------------------------------------------- API */

rmu_jinja *rmu_jinja_parse(const char *src, size_t len, const rmu_jinja_opts *o, rmu_err *e) {
    rmu_jinja_opts d = {0};
    if (!o) o = &d;
    rmu_jinja *t = calloc(1, sizeof *t);
    if (!t) return rmu_errf(e, "%s: out of memory", o->name ? o->name : "template"), NULL;
    snprintf(t->name, sizeof t->name, "%s", o->name ? o->name : "template");
    t->max_steps = o->max_steps > 0 ? o->max_steps : RMU_JINJA_MAX_STEPS;
    t->max_bytes = o->max_bytes > 0 ? o->max_bytes : RMU_JINJA_MAX_BYTES;
    char *s = rmu_jinja_alloc(&t->A, len + 1);
    if (!s) {
        rmu_errf(e, "%s: out of memory", t->name);
        rmu_jinja_free(t);
        return NULL;
    }
    size_t n = 0; /* Jinja reads "\r\n" and "\r" as "\n" */
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else
            s[n++] = src[i];
    }
    if (!o->keep_trailing_newline && n && s[n - 1] == '\n') n--;
    t->src = s;
    t->len = n;
    lexer L = {.T = t, .A = &t->A, .d = {.T = t, .e = e}, .src = s, .len = n};
    L.trim = o->trim_blocks, L.lstrip = o->lstrip_blocks;
    if (!lex(&L)) t->root = parse_body(&L, NULL, NULL);
    if (L.d.failed) {
        rmu_jinja_free(t);
        return NULL;
    }
    return t;
}

void rmu_jinja_free(rmu_jinja *t) {
    if (!t) return;
    rmu_jinja_arena_free(&t->A);
    free(t);
}

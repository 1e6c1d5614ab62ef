/* jinja_impl.h - internal interface between jinja_parse.c (lexer, parser: source -> tree)
 * and jinja.c (values, evaluation, rendering). Not installed. */
#ifndef RMU_JINJA_IMPL_H
#define RMU_JINJA_IMPL_H

#include <stddef.h>

#include "tokenizer/jinja.h"

/* ---- arena: every node of a template, and every value of one render, lives in one and
 * is freed with it. A limit (0: none) makes an allocation past it fail with over set. */
typedef struct rmu_jinja_block rmu_jinja_block;
typedef struct rmu_jinja_arena {
    rmu_jinja_block *head;
    size_t total, limit;
    int over;
} rmu_jinja_arena;

/* n zeroed bytes, or NULL (out of memory, or past the limit: over = 1). */
void *rmu_jinja_alloc(rmu_jinja_arena *a, size_t n);
void rmu_jinja_arena_free(rmu_jinja_arena *a);

/* ---- values */
enum { JV_UNDEF, JV_NONE, JV_BOOL, JV_INT, JV_STR, JV_LIST, JV_DICT };

typedef struct jv jv;
typedef struct {
    jv *v;
    int n;
} jv_list;
typedef struct {
    const char **k;
    size_t *kn;
    jv *v;
    int n;
} jv_dict;

struct jv {
    int t;
    long long i;      /* bool, int */
    const char *s;    /* str (not NUL-terminated) */
    size_t n;
    jv_list *l;
    jv_dict *d;
    const char *name; /* undefined: why ("'x' is undefined"), for messages; may be NULL */
};

static inline jv jv_undef(const char *why) { return (jv){.t = JV_UNDEF, .name = why}; }
static inline jv jv_none(void) { return (jv){.t = JV_NONE}; }
static inline jv jv_bool(int b) { return (jv){.t = JV_BOOL, .i = !!b}; }
static inline jv jv_int(long long i) { return (jv){.t = JV_INT, .i = i}; }
static inline jv jv_str(const char *s, size_t n) { return (jv){.t = JV_STR, .s = s, .n = n}; }

/* ---- the tree */
enum { E_LIT, E_VAR, E_ATTR, E_ITEM, E_SLICE, E_CALL, E_METHOD, E_FILTER, E_TEST, E_NOT, E_NEG, E_BIN, E_COND,
       E_LIST };

#define RMU_JINJA_MAX_ARGS 16

typedef struct jexpr jexpr;
struct jexpr {
    int kind;
    char op[4];       /* E_BIN: "+", "==", "and", "in", "nin" (not in), ... */
    jv lit;           /* E_LIT */
    const char *name; /* variable / attribute / function / filter / test / method name */
    size_t nlen;
    jexpr *a, *b, *c;
    jexpr **args; /* at most RMU_JINJA_MAX_ARGS for calls, filters and methods */
    int nargs;
    int neg;    /* E_TEST: "is not" */
    size_t pos; /* offset in the source, for line numbers */
};

enum { N_TEXT, N_OUT, N_IF, N_FOR, N_SET, N_BREAK, N_CONTINUE };

typedef struct jnode jnode;
struct jnode {
    int kind;
    jnode *next;
    const char *text; /* N_TEXT */
    size_t len;
    jexpr *e;         /* OUT, SET value, FOR iterable */
    jexpr *filter;    /* FOR ... if cond */
    const char *name; /* SET target, FOR variable */
    size_t nlen;
    jexpr **conds; /* IF: one condition and body per if/elif branch */
    jnode **bodies;
    int nbr;
    jnode *body, *els; /* FOR body / else, IF else */
};

struct rmu_jinja {
    rmu_jinja_arena A; /* the source copy, tokens and tree */
    const char *src;   /* normalized source: line numbers are counted here */
    size_t len;
    jnode *root;
    char name[160];
    long max_steps;
    size_t max_bytes;
};

/* Error state of one parse or render: the first failure is the one reported. */
typedef struct rmu_jinja_diag {
    const rmu_jinja *T;
    rmu_err *e;
    int failed;
} rmu_jinja_diag;

/* "NAME: message" into d->e unless d already failed; returns -1. */
int rmu_jinja_failf(rmu_jinja_diag *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* 1-based line of source offset pos. */
int rmu_jinja_line(const rmu_jinja *t, size_t pos);

#endif

#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rmu_sb_reserve(rmu_sb *b, size_t extra) {
    if (b->oom) return -1;
    if (b->n + extra + 1 <= b->cap) return 0;
    if (extra > ((size_t)-1) / 4 - b->n) return b->oom = 1, -1;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return b->oom = 1, -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int rmu_sb_add(rmu_sb *b, const void *s, size_t n) {
    if (rmu_sb_reserve(b, n)) return -1;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

int rmu_sb_puts(rmu_sb *b, const char *s) { return rmu_sb_add(b, s, strlen(s)); }

int rmu_sb_putc(rmu_sb *b, char c) { return rmu_sb_add(b, &c, 1); }

int rmu_sb_printf(rmu_sb *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0) return b->oom = 1, -1;
    if (rmu_sb_reserve(b, (size_t)k)) return -1;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
    return 0;
}

void rmu_sb_truncate(rmu_sb *b, size_t n) {
    if (n < b->n) {
        b->n = n;
        b->p[n] = 0;
    }
}

char *rmu_sb_take(rmu_sb *b) {
    char *p = b->oom ? NULL : b->p ? b->p : strdup("");
    if (b->oom) free(b->p);
    *b = (rmu_sb){0};
    return p;
}

void rmu_sb_free(rmu_sb *b) {
    free(b->p);
    *b = (rmu_sb){0};
}

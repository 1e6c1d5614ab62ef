/* strbuf.h - a growable, NUL-terminated byte buffer (the one string builder of the tree).
 * Prefix rmu_sb_. An allocation failure is sticky: the buffer keeps what it had, sets oom,
 * and every later call is a no-op returning -1, so a builder can check once at the end. */
#ifndef RMU_STRBUF_H
#define RMU_STRBUF_H

#include <stddef.h>

typedef struct rmu_sb {
    char *p;      /* NULL until the first write; then always NUL-terminated */
    size_t n;     /* bytes written (without the NUL) */
    size_t cap;
    int oom;
} rmu_sb;

/* Make room for `extra` more bytes (plus the NUL). 0, or -1 on allocation failure. */
int rmu_sb_reserve(rmu_sb *b, size_t extra);
int rmu_sb_add(rmu_sb *b, const void *s, size_t n);
int rmu_sb_puts(rmu_sb *b, const char *s);
int rmu_sb_putc(rmu_sb *b, char c);
int rmu_sb_printf(rmu_sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drop everything after the first n bytes (n <= b->n). */
void rmu_sb_truncate(rmu_sb *b, size_t n);
/* Hands the buffer to the caller (free() it; "" when nothing was written, NULL after an
 * allocation failure) and resets b. */
char *rmu_sb_take(rmu_sb *b);
void rmu_sb_free(rmu_sb *b);

#endif

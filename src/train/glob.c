#include "train/glob.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PATS 65536

static int push(rmu_glob *g, int *cap, const char *s, size_t len, rmu_err *e) {
    if (g->n >= MAX_PATS) return rmu_errf(e, "brace expansion gives more than %d patterns", MAX_PATS);
    if (g->n == *cap) {
        int nc = *cap ? *cap * 2 : 16;
        char **np = realloc(g->pats, sizeof(char *) * nc);
        if (!np) return rmu_errf(e, "out of memory");
        g->pats = np;
        *cap = nc;
    }
    char *p = malloc(len + 1);
    if (!p) return rmu_errf(e, "out of memory");
    memcpy(p, s, len);
    p[len] = 0;
    g->pats[g->n++] = p;
    return 0;
}

/* "A..B" with integers A, B: fills lo/hi. */
static int parse_range(const char *s, size_t len, long *lo, long *hi) {
    char buf[64];
    if (len >= sizeof buf) return 0;
    memcpy(buf, s, len);
    buf[len] = 0;
    char *dots = strstr(buf, "..");
    if (!dots || dots == buf) return 0;
    *dots = 0;
    char *end;
    *lo = strtol(buf, &end, 10);
    if (*end) return 0;
    *hi = strtol(dots + 2, &end, 10);
    if (*end || dots[2] == 0) return 0;
    return 1;
}

/* Expands the first top-level brace group of s[0..len) and recurses on each result. */
static int expand(rmu_glob *g, int *cap, const char *item, const char *s, size_t len, rmu_err *e) {
    size_t open = len;
    int depth = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '{') {
            if (depth++ == 0) open = i;
        } else if (s[i] == '}') {
            if (--depth < 0) return rmu_errf(e, "unbalanced '}' in '%s'", item);
            if (depth == 0) {
                const char *in = s + open + 1;
                size_t inlen = i - open - 1, suf = len - i - 1;
                long lo, hi;
                char *buf = malloc(len + 64);
                if (!buf) return rmu_errf(e, "out of memory");
                int rc = 0;
                if (parse_range(in, inlen, &lo, &hi)) {
                    if (labs(hi - lo) >= MAX_PATS) {
                        free(buf);
                        return rmu_errf(e, "range {%ld..%ld} too large in '%s'", lo, hi, item);
                    }
                    long step = lo <= hi ? 1 : -1;
                    for (long v = lo;; v += step) {
                        int n = snprintf(buf, len + 64, "%.*s%ld%.*s", (int)open, s, v, (int)suf, s + i + 1);
                        if ((rc = expand(g, cap, item, buf, (size_t)n, e))) break;
                        if (v == hi) break;
                    }
                } else {
                    /* alternatives split at commas of depth 0 inside the group */
                    size_t a0 = 0;
                    int d = 0;
                    for (size_t j = 0; j <= inlen && !rc; j++) {
                        if (j < inlen && in[j] == '{') d++;
                        else if (j < inlen && in[j] == '}') d--;
                        else if (j == inlen || (in[j] == ',' && d == 0)) {
                            size_t n = 0;
                            memcpy(buf, s, open);
                            n = open;
                            memcpy(buf + n, in + a0, j - a0);
                            n += j - a0;
                            memcpy(buf + n, s + i + 1, suf);
                            n += suf;
                            rc = expand(g, cap, item, buf, n, e);
                            a0 = j + 1;
                        }
                    }
                }
                free(buf);
                return rc;
            }
        }
    }
    if (depth) return rmu_errf(e, "unbalanced '{' in '%s'", item);
    return push(g, cap, s, len, e);
}

int rmu_glob_compile(rmu_glob *g, const char *spec, rmu_err *e) {
    memset(g, 0, sizeof *g);
    int cap = 0, depth = 0;
    size_t len = strlen(spec), a0 = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && spec[i] == '{') depth++;
        else if (i < len && spec[i] == '}') depth--;
        else if (i == len || (spec[i] == ',' && depth <= 0)) {
            /* trim blanks around an item */
            size_t s = a0, t = i;
            while (s < t && isspace((unsigned char)spec[s])) s++;
            while (t > s && isspace((unsigned char)spec[t - 1])) t--;
            char item[1024];
            if (t - s >= sizeof item) {
                rmu_glob_free(g);
                return rmu_errf(e, "pattern too long (%zu characters)", t - s);
            }
            memcpy(item, spec + s, t - s);
            item[t - s] = 0;
            if (!*item) {
                rmu_glob_free(g);
                return rmu_errf(e, "empty pattern in '%s'", spec);
            }
            if (expand(g, &cap, item, item, t - s, e)) {
                rmu_glob_free(g);
                return -1;
            }
            a0 = i + 1;
        }
    }
    return 0;
}

void rmu_glob_free(rmu_glob *g) {
    for (int i = 0; i < g->n; i++) free(g->pats[i]);
    free(g->pats);
    memset(g, 0, sizeof *g);
}

/* [...] class at p (p points after '['); returns the position after ']' or NULL when the
 * class is unterminated (then '[' is literal). */
static const char *match_class(const char *p, char c, int *hit) {
    int neg = 0;
    if (*p == '!' || *p == '^') neg = 1, p++;
    const char *start = p;
    *hit = 0;
    while (*p && (*p != ']' || p == start)) {
        if (p[1] == '-' && p[2] && p[2] != ']') {
            if (c >= p[0] && c <= p[2]) *hit = 1;
            p += 3;
        } else {
            if (c == *p) *hit = 1;
            p++;
        }
    }
    if (!*p) return NULL;
    if (neg) *hit = !*hit;
    return p + 1;
}

int rmu_glob_match_one(const char *p, const char *s) {
    /* iterative with one backtrack point for the last '*': linear for typical names */
    const char *star = NULL, *star_s = NULL;
    while (*s) {
        if (*p == '*') {
            star = ++p;
            star_s = s;
            continue;
        }
        if (*p == '?') {
            p++, s++;
            continue;
        }
        if (*p == '[') {
            int hit;
            const char *after = match_class(p + 1, *s, &hit);
            if (after && hit) {
                p = after, s++;
                continue;
            }
            if (!after && *s == '[') {
                p++, s++;
                continue;
            }
        } else if (*p == *s) {
            p++, s++;
            continue;
        }
        if (!star) return 0;
        p = star;
        s = ++star_s;
    }
    while (*p == '*') p++;
    return *p == 0;
}

int rmu_glob_match(const rmu_glob *g, const char *name) {
    for (int i = 0; i < g->n; i++)
        if (rmu_glob_match_one(g->pats[i], name)) return 1;
    return 0;
}

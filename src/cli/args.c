#include "cli.h"
#include "sig.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int cli_vfail(const char *cmd, int status, const char *fmt, va_list ap) {
    if (cli_sig_caught()) return status; /* the error is the interruption: cli_sig_end says it once */
    cli_sig_error_said();
    fprintf(stderr, "rmu %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    return status;
}

int cli_fail(const char *cmd, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cli_vfail(cmd, status, fmt, ap);
    va_end(ap);
    return status;
}

int cli_int(const char *cmd, const char *flag, const char *val, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || end == val || *end || v < lo || v > hi) {
        cli_fail(cmd, 2, "%s: expected an integer in [%ld, %ld], got '%s'", flag, lo, hi, val);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_float(const char *cmd, const char *flag, const char *val, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(val, &end);
    if (errno || end == val || *end || !isfinite(v) || v < lo || v > hi) {
        cli_fail(cmd, 2, "%s: expected a number in [%g, %g], got '%s'", flag, lo, hi, val);
        return -1;
    }
    *out = v;
    return 0;
}

void cli_model_note(const char *cmd, const rmu_config *c) {
    if (c->quant_note[0]) fprintf(stderr, "rmu %s: note: %s\n", cmd, c->quant_note);
}

int cli_precision(const char *cmd, const char *val, rmu_prec *out) {
    const char *flag = "--precision";
    if (!val && (val = getenv("RMU_PRECISION")) && *val) flag = "RMU_PRECISION";
    if (!val || !*val) {
        *out = RMU_PREC_AUTO;
        return 0;
    }
    rmu_err e;
    if (rmu_prec_parse(val, out, &e)) {
        cli_fail(cmd, 2, "%s: expected auto, bf16 or fp32, got '%s'", flag, val);
        return -1;
    }
    return 0;
}

const char *cli_value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        cli_fail(cmd, 2, "%s: missing value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

int cli_parse_ids(const char *cmd, const char *flag, const char *s, int **ids, int *n) {
    int cap = 16, k = 0;
    int *v = malloc(sizeof(int) * cap);
    if (!v) return cli_fail(cmd, 1, "out of memory"), -1;
    while (*s) {
        while (*s == ' ' || *s == ',' || *s == '\t' || *s == '\n') s++;
        if (!*s) break;
        char *end;
        errno = 0;
        long x = strtol(s, &end, 10);
        if (end == s || errno || x < 0 || x > 0x7fffffff) {
            free(v);
            cli_fail(cmd, 2, "%s: expected token ids (non-negative integers), got '%.20s'", flag, s);
            return -1;
        }
        if (k == cap) {
            int *nv = realloc(v, sizeof(int) * (cap *= 2));
            if (!nv) { free(v); return cli_fail(cmd, 1, "out of memory"), -1; }
            v = nv;
        }
        v[k++] = (int)x;
        s = end;
    }
    *ids = v;
    *n = k;
    return 0;
}

long cli_read_line(FILE *f, int delim, size_t max, char **buf, size_t *cap) {
    size_t n = 0;
    int c, any = 0, over = 0;
    while ((c = getc_unlocked(f)) != EOF) {
        any = 1;
        if (c == delim) break;
        if (n >= max) { /* too long: keep reading to the end of it, storing nothing */
            over = 1;
            continue;
        }
        if (n + 2 > *cap) {
            size_t nc = *cap ? *cap * 2 : 4096;
            char *nb = realloc(*buf, nc);
            if (!nb) return -2;
            *buf = nb, *cap = nc;
        }
        (*buf)[n++] = (char)c;
    }
    if (!any) return -1;
    if (over) return -2;
    if (!*buf && !(*buf = malloc(*cap = 1))) return -2;
    (*buf)[n] = 0;
    return (long)n;
}

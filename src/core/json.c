#include "json.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"

static size_t skip_bom(const char *t, size_t n) { return n >= 3 && !memcmp(t, "\xef\xbb\xbf", 3) ? 3 : 0; }

int rmu_json_is_array_text(const char *text, size_t len) {
    size_t i = skip_bom(text, len);
    while (i < len && isspace((unsigned char)text[i])) i++;
    return i < len && text[i] == '[';
}

int rmu_jsonl_parse(const char *path, const char *text, size_t len, unsigned flags, rmu_jsonl_fn fn, void *ud,
                    rmu_err *e) {
    long line = 0;
    for (size_t i = skip_bom(text, len); i < len;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t j = nl ? (size_t)(nl - text) : len, b = i, end = j;
        line++;
        while (b < end && isspace((unsigned char)text[b])) b++;
        while (end > b && isspace((unsigned char)text[end - 1])) end--;
        i = nl ? j + 1 : len;
        if (b == end) continue;
        json_error_t je;
        json_t *v = json_loadb(text + b, end - b, JSON_DECODE_ANY, &je);
        if (!v) {
            if (!nl && (flags & RMU_JSONL_TORN_TAIL_OK)) break;
            return rmu_errf(e, "%s:%ld: invalid JSON: %s", path, line, je.text);
        }
        int rc = fn(ud, v, line, e);
        json_decref(v);
        if (rc < 0) return -1;
        if (rc > 0) break;
    }
    return 0;
}

int rmu_jsonl_read(const char *path, unsigned flags, rmu_jsonl_fn fn, void *ud, char *sha_hex, rmu_err *e) {
    size_t len;
    char *text = rmu_file_read_all(path, &len, e);
    if (!text) return -1;
    if (sha_hex) rmu_sha256_hex(text, len, sha_hex);
    int rc = rmu_jsonl_parse(path, text, len, flags, fn, ud, e);
    free(text);
    return rc;
}

char *rmu_json_dumps_line(const json_t *j, size_t flags) {
    char *s = json_dumps(j, flags);
    if (!s) return NULL;
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) {
        free(s);
        return NULL;
    }
    t[n] = '\n', t[n + 1] = 0;
    return t;
}

int rmu_json_write_file(const char *path, const json_t *j, size_t flags, rmu_err *e) {
    char *s = rmu_json_dumps_line(j, flags);
    if (!s) return rmu_errf(e, "%s: out of memory encoding JSON", path);
    int rc = rmu_file_write_atomic(path, s, strlen(s), e);
    free(s);
    return rc;
}

int rmu_json_write_line(rmu_afile *a, const json_t *j, size_t flags, rmu_err *e) {
    char *s = rmu_json_dumps_line(j, flags);
    if (!s) {
        rmu_afile_abort(a);
        return rmu_errf(e, "%s: out of memory encoding JSON", a->path);
    }
    int rc = rmu_afile_write(a, s, strlen(s), e);
    free(s);
    return rc;
}

void rmu_json_float_repr(double v, char out[32]) {
    if (isnan(v)) return (void)snprintf(out, 32, "NaN");
    if (isinf(v)) return (void)snprintf(out, 32, v < 0 ? "-Infinity" : "Infinity");
    if (v == 0) return (void)snprintf(out, 32, signbit(v) ? "-0.0" : "0.0");
    char buf[40];
    for (int p = 1; p <= 17; p++) { /* shortest round trip, as Python's repr */
        snprintf(buf, sizeof buf, "%.*e", p - 1, v);
        if (strtod(buf, NULL) == v) break;
    }
    /* buf = [-]D[.DDD]e(+|-)XX */
    char dig[24];
    int nd = 0, neg = buf[0] == '-';
    const char *q = buf + neg;
    for (; *q && *q != 'e'; q++)
        if (*q != '.') dig[nd++] = *q;
    int ex = atoi(q + 1);
    while (nd > 1 && dig[nd - 1] == '0') nd--;
    char *w = out;
    if (neg) *w++ = '-';
    if (ex >= -4 && ex < 16) { /* fixed notation, with at least one fractional digit */
        if (ex < 0) {
            w += sprintf(w, "0.");
            for (int i = 0; i < -ex - 1; i++) *w++ = '0';
            for (int i = 0; i < nd; i++) *w++ = dig[i];
        } else {
            for (int i = 0; i <= ex; i++) *w++ = i < nd ? dig[i] : '0';
            *w++ = '.';
            if (nd > ex + 1)
                for (int i = ex + 1; i < nd; i++) *w++ = dig[i];
            else
                *w++ = '0';
        }
        *w = 0;
    } else {
        *w++ = dig[0];
        if (nd > 1) {
            *w++ = '.';
            for (int i = 1; i < nd; i++) *w++ = dig[i];
        }
        sprintf(w, "e%c%02d", ex < 0 ? '-' : '+', ex < 0 ? -ex : ex);
    }
}

/* Python's json string encoder with ensure_ascii. The text is valid UTF-8 (jansson holds
 * nothing else). */
static int py_string(rmu_sb *b, const char *s, size_t n) {
    rmu_sb_putc(b, '"');
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        uint32_t cp;
        int len = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
        if (i + (size_t)len > n) len = 1;
        cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
        for (int k = 1; k < len; k++) cp = (cp << 6) | ((unsigned char)s[i + k] & 0x3f);
        i += (size_t)len;
        switch (cp) {
        case '"': rmu_sb_puts(b, "\\\""); continue;
        case '\\': rmu_sb_puts(b, "\\\\"); continue;
        case '\n': rmu_sb_puts(b, "\\n"); continue;
        case '\r': rmu_sb_puts(b, "\\r"); continue;
        case '\t': rmu_sb_puts(b, "\\t"); continue;
        case '\b': rmu_sb_puts(b, "\\b"); continue;
        case '\f': rmu_sb_puts(b, "\\f"); continue;
        }
        if (cp >= 0x20 && cp <= 0x7e) rmu_sb_putc(b, (char)cp);
        else if (cp < 0x10000) rmu_sb_printf(b, "\\u%04x", cp);
        else {
            cp -= 0x10000;
            rmu_sb_printf(b, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
        }
    }
    return rmu_sb_putc(b, '"');
}

static void py_value(rmu_sb *b, const json_t *j) {
    char num[32];
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *v;
        int first = 1;
        rmu_sb_putc(b, '{');
        json_object_foreach((json_t *)j, k, v) { /* insertion order (jansson >= 2.13) */
            if (!first) rmu_sb_puts(b, ", ");
            first = 0;
            py_string(b, k, strlen(k));
            rmu_sb_puts(b, ": ");
            py_value(b, v);
        }
        rmu_sb_putc(b, '}');
        break;
    }
    case JSON_ARRAY:
        rmu_sb_putc(b, '[');
        for (size_t i = 0; i < json_array_size(j); i++) {
            if (i) rmu_sb_puts(b, ", ");
            py_value(b, json_array_get(j, i));
        }
        rmu_sb_putc(b, ']');
        break;
    case JSON_STRING: py_string(b, json_string_value(j), json_string_length(j)); break;
    case JSON_INTEGER: rmu_sb_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(j)); break;
    case JSON_REAL:
        rmu_json_float_repr(json_real_value(j), num);
        rmu_sb_puts(b, num);
        break;
    case JSON_TRUE: rmu_sb_puts(b, "true"); break;
    case JSON_FALSE: rmu_sb_puts(b, "false"); break;
    default: rmu_sb_puts(b, "null"); break;
    }
}

char *rmu_json_dumps_py(const json_t *j) {
    rmu_sb b = {0};
    py_value(&b, j);
    return rmu_sb_take(&b);
}

#include "json.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

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

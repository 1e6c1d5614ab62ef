/* data.c - corpus reader, tokenizing, packing and batch order (see data.h). */
#include "train/data.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/json.h"
#include "core/rng.h"
#include "core/util.h"
#include "tokenizer/tokenizer.h"

static int add_doc(rmu_data_docs *d, const char *s, size_t len, rmu_err *e) {
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 64;
        char **nt = realloc(d->text, nc * sizeof *nt);
        if (!nt) return rmu_errf(e, "out of memory reading the corpus");
        d->text = nt;
        size_t *nl = realloc(d->len, nc * sizeof *nl);
        if (!nl) return rmu_errf(e, "out of memory reading the corpus");
        d->len = nl;
        d->cap = nc;
    }
    char *t = malloc(len + 1);
    if (!t) return rmu_errf(e, "out of memory reading the corpus");
    memcpy(t, s, len);
    t[len] = 0;
    d->text[d->n] = t;
    d->len[d->n++] = len;
    return 0;
}

/* The text of one JSON value: a string, or an object's string field. */
static int json_text(json_t *v, const char *field, const char **s, size_t *len) {
    if (json_is_object(v)) v = json_object_get(v, field);
    if (!json_is_string(v)) return -1;
    *s = json_string_value(v);
    *len = json_string_length(v);
    return 0;
}

typedef struct {
    rmu_data_docs *d;
    const char *path, *field;
} line_ctx;

static int on_line(void *ud, json_t *v, long line, rmu_err *e) {
    line_ctx *c = ud;
    const char *s;
    size_t len;
    if (!json_is_object(v) || json_text(v, c->field, &s, &len))
        return rmu_errf(e, "%s:%ld: expected a JSON object with a string field \"%s\"", c->path, line, c->field);
    return len ? add_doc(c->d, s, len, e) : 0; /* empty texts carry nothing */
}

static int read_array(rmu_data_docs *d, const char *path, const char *buf, size_t n, const char *field,
                      rmu_err *e) {
    json_error_t je;
    json_t *root = json_loadb(buf, n, 0, &je);
    if (!root) return rmu_errf(e, "%s:%d: invalid JSON: %s", path, je.line, je.text);
    if (!json_is_array(root)) {
        json_decref(root);
        return rmu_errf(e, "%s: expected a JSON array of strings or of objects with a string field \"%s\"", path,
                        field);
    }
    size_t i;
    json_t *v;
    json_array_foreach(root, i, v) {
        const char *s;
        size_t len;
        if (json_text(v, field, &s, &len)) {
            json_decref(root);
            return rmu_errf(e, "%s: element %zu is not a string or an object with a string field \"%s\"", path, i,
                            field);
        }
        if (len && add_doc(d, s, len, e)) {
            json_decref(root);
            return -1;
        }
    }
    json_decref(root);
    return 0;
}

/* One document per non-blank line, with its line break ("\r\n" -> "\n"). */
static int read_text(rmu_data_docs *d, const char *buf, size_t n, rmu_err *e) {
    size_t i = 0;
    while (i < n) {
        const char *nl = memchr(buf + i, '\n', n - i);
        size_t j = nl ? (size_t)(nl - buf) : n, end = j, k = i;
        if (end > i && buf[end - 1] == '\r') end--;
        while (k < end && (buf[k] == ' ' || buf[k] == '\t' || buf[k] == '\r' || buf[k] == '\f' || buf[k] == '\v')) k++;
        if (k < end) {
            /* with the byte after the text: "\n", or the "\r" of a CRLF, written as "\n" */
            if (add_doc(d, buf + i, end - i + (nl ? 1 : 0), e)) return -1;
            if (nl) d->text[d->n - 1][end - i] = '\n';
        }
        i = j + 1;
    }
    return 0;
}

static void docs_truncate(rmu_data_docs *d, size_t n) {
    while (d->n > n) free(d->text[--d->n]);
}

int rmu_data_read_file(rmu_data_docs *d, const char *path, const char *field, char *sha_hex, rmu_err *e) {
    if (!field) field = "text";
    size_t n0 = d->n, n;
    char *buf = rmu_file_read_all(path, &n, e);
    if (!buf) return -1;
    if (sha_hex) rmu_sha256_hex(buf, n, sha_hex);
    int rc;
    if (rmu_ends_with(path, ".jsonl") || rmu_ends_with(path, ".ndjson") ||
        (rmu_ends_with(path, ".json") && !rmu_json_is_array_text(buf, n))) {
        line_ctx c = {d, path, field};
        rc = rmu_jsonl_parse(path, buf, n, 0, on_line, &c, e);
    } else {
        const char *b = buf;
        size_t m = n;
        if (m >= 3 && !memcmp(b, "\xEF\xBB\xBF", 3)) b += 3, m -= 3; /* UTF-8 byte order mark */
        rc = rmu_ends_with(path, ".json") ? read_array(d, path, b, m, field, e) : read_text(d, b, m, e);
    }
    free(buf);
    if (!rc && d->n == n0) rc = rmu_errf(e, "%s: no training text in this file (empty corpus)", path);
    if (rc) docs_truncate(d, n0);
    return rc;
}

int rmu_data_read(rmu_data_docs *d, const char *files, const char *field, rmu_err *e) {
    memset(d, 0, sizeof *d);
    const char *p = files;
    if (!files || !*files) return rmu_errf(e, "no corpus file given");
    while (*p) {
        const char *c = strchr(p, ',');
        size_t l = c ? (size_t)(c - p) : strlen(p);
        char path[4096];
        if (l == 0 || l >= sizeof path) {
            rmu_data_docs_free(d);
            return rmu_errf(e, "empty or too long file name in '%s'", files);
        }
        memcpy(path, p, l);
        path[l] = 0;
        if (rmu_data_read_file(d, path, field, NULL, e)) {
            rmu_data_docs_free(d);
            return -1;
        }
        p += l;
        if (*p == ',') p++;
    }
    return 0;
}

void rmu_data_docs_free(rmu_data_docs *d) {
    for (size_t i = 0; i < d->n; i++) free(d->text[i]);
    free(d->text);
    free(d->len);
    memset(d, 0, sizeof *d);
}

int rmu_data_build(rmu_data *d, int *const *ids, const int *lens, size_t ndocs, int seq_len, int pack, rmu_err *e) {
    memset(d, 0, sizeof *d);
    if (seq_len < 2) return rmu_errf(e, "seq_len: must be at least 2, got %d", seq_len);
    size_t total = 0;
    for (size_t i = 0; i < ndocs; i++) total += (size_t)lens[i];
    size_t maxseq = pack ? total / seq_len + 1 : ndocs;
    d->tok = malloc(sizeof(int) * (total ? total : 1));
    d->off = malloc(sizeof(size_t) * (maxseq + 1));
    if (!d->tok || !d->off) {
        rmu_data_free(d);
        return rmu_errf(e, "out of memory for %zu training tokens", total);
    }
    d->ndocs = ndocs;
    size_t w = 0;
    int ns = 0;
    d->off[0] = 0;
    if (pack) {
        for (size_t i = 0; i < ndocs; i++) {
            memcpy(d->tok + w, ids[i], sizeof(int) * lens[i]);
            w += lens[i];
        }
        for (size_t s = 0; s < w; s += seq_len) {
            size_t l = w - s < (size_t)seq_len ? w - s : (size_t)seq_len;
            if (l < 2) break;
            d->off[++ns] = s + l;
        }
        w = d->off[ns];
    } else {
        for (size_t i = 0; i < ndocs; i++) {
            int l = lens[i] < seq_len ? lens[i] : seq_len;
            if (l < 2) continue;
            memcpy(d->tok + w, ids[i], sizeof(int) * l);
            w += l;
            d->off[++ns] = w;
        }
    }
    d->nseq = ns;
    d->ntokens = w;
    if (ns == 0) {
        rmu_data_free(d);
        return rmu_errf(e, "the corpus gives no sequence of at least 2 tokens (empty corpus)");
    }
    uint64_t h = 1469598103934665603ull;
    for (int s = 0; s < ns; s++) {
        int l = (int)(d->off[s + 1] - d->off[s]);
        if (l > d->max_len) d->max_len = l;
        h = (h ^ (uint64_t)l) * 1099511628211ull;
    }
    for (size_t i = 0; i < w; i++) h = (h ^ (uint32_t)d->tok[i]) * 1099511628211ull;
    d->hash = h;
    return 0;
}

int rmu_data_tokenize(rmu_data *d, const rmu_data_docs *docs, const rmu_tokenizer *t, int add_bos, int eos_id,
                      int seq_len, int pack, rmu_err *e) {
    int **ids = calloc(docs->n ? docs->n : 1, sizeof *ids);
    int *lens = calloc(docs->n ? docs->n : 1, sizeof *lens);
    int rc = -1;
    if (!ids || !lens) {
        rmu_errf(e, "out of memory tokenizing the corpus");
        goto out;
    }
    for (size_t i = 0; i < docs->n; i++) {
        int *v, n;
        if (rmu_tok_encode(t, docs->text[i], docs->len[i], add_bos, &v, &n, e)) {
            rmu_err_prefix(e, "document %zu", i + 1);
            goto out;
        }
        if (eos_id >= 0 && (n == 0 || v[n - 1] != eos_id)) {
            int *nv = realloc(v, sizeof(int) * (n + 1));
            if (!nv) {
                free(v);
                rmu_errf(e, "out of memory tokenizing the corpus");
                goto out;
            }
            v = nv;
            v[n++] = eos_id;
        }
        ids[i] = v;
        lens[i] = n;
    }
    rc = rmu_data_build(d, ids, lens, docs->n, seq_len, pack, e);
out:
    if (ids)
        for (size_t i = 0; i < docs->n; i++) free(ids[i]);
    free(ids);
    free(lens);
    return rc;
}

void rmu_data_free(rmu_data *d) {
    free(d->tok);
    free(d->off);
    memset(d, 0, sizeof *d);
}

long rmu_data_steps_per_epoch(const rmu_data *d, int B) { return ((long)d->nseq + B - 1) / B; }

uint64_t rmu_data_epoch_seed(uint64_t seed, long epoch) { return seed ^ ((uint64_t)(epoch + 1) * 0xd1b54a32d192ed03ull); }

void rmu_data_epoch_order(const rmu_data *d, uint64_t seed, long epoch, int *perm) {
    uint64_t st = rmu_data_epoch_seed(seed, epoch);
    for (int i = 0; i < d->nseq; i++) perm[i] = i;
    for (int i = d->nseq - 1; i > 0; i--) {
        /* unbiased enough: 64-bit draw modulo a 31-bit range */
        int j = (int)(rmu_rng_next(&st) % (uint64_t)(i + 1));
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

void rmu_data_batch(const rmu_data *d, const int *perm, long index, int B, int pad_id, int *tokens, int *mask,
                    int *rows, int *T) {
    long s0 = index * B;
    int nr = (int)(d->nseq - s0 < B ? d->nseq - s0 : B), mx = 0;
    for (int r = 0; r < nr; r++) {
        int s = perm[s0 + r], l = (int)(d->off[s + 1] - d->off[s]);
        if (l > mx) mx = l;
    }
    for (int r = 0; r < nr; r++) {
        int s = perm[s0 + r], l = (int)(d->off[s + 1] - d->off[s]), pad = mx - l;
        for (int t = 0; t < pad; t++) {
            tokens[(size_t)r * mx + t] = pad_id;
            mask[(size_t)r * mx + t] = 0;
        }
        memcpy(tokens + (size_t)r * mx + pad, d->tok + d->off[s], sizeof(int) * l);
        for (int t = pad; t < mx; t++) mask[(size_t)r * mx + t] = 1;
    }
    *rows = nr;
    *T = mx;
}

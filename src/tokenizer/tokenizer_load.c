/* tokenizer_load.c - building a tokenizer (tokenizer_impl.h) from tokenizer.json and
 * tokenizer_config.json: the vocab and added tokens, merge ranks, the normalizer /
 * pre-tokenizer / decoder steps rmu supports, and the special-token settings. Every
 * unsupported or inconsistent field is an error naming the file and the field. */
#include <ctype.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/strbuf.h"
#include "tokenizer/tokenizer_impl.h"

static uint32_t pow2_at_least(size_t n) {
    uint32_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

/* "<0xNN>" (either hex case, as HF's decoder accepts) -> byte value, else -1. */
static int parse_byte_piece(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>' || !isxdigit((unsigned char)s[3]) ||
        !isxdigit((unsigned char)s[4]))
        return -1;
    char h[3] = {s[3], s[4], 0};
    return (int)strtol(h, NULL, 16);
}

/* Inserts id (its piece must be set); returns the id already holding that piece, or -1. */
static int vmap_insert(rmu_tokenizer *t, int id) {
    for (uint32_t h = tok_hash(t->piece[id], t->plen[id]) & t->vmask;; h = (h + 1) & t->vmask) {
        int o = t->vmap[h];
        if (o < 0) {
            t->vmap[h] = id;
            return -1;
        }
        if (t->plen[o] == t->plen[id] && !memcmp(t->piece[o], t->piece[id], t->plen[id])) return o;
    }
}

static void merge_put(rmu_tokenizer *t, int a, int b, int rank, int id) {
    uint64_t k = tok_pair(a, b);
    uint32_t h = (uint32_t)rmu_mix64(k) & t->merges_mask;
    while (t->merges[h].key != UINT64_MAX && t->merges[h].key != k) h = (h + 1) & t->merges_mask;
    if (t->merges[h].key == UINT64_MAX) t->n_merges++;
    /* a repeated pair takes the later rank, as HF's HashMap collect does */
    t->merges[h] = (merge_slot){k, rank, id};
}

void rmu_tok_free(rmu_tokenizer *t) {
    if (!t) return;
    if (t->piece)
        for (int i = 0; i < t->n; i++) free(t->piece[i]);
    free(t->piece);
    free(t->plen);
    free(t->byte_of);
    free(t->special);
    free(t->vmap);
    free(t->merges);
    free(t->added);
    for (int i = 0; i < t->n_ops; i++) free(t->ops[i].a), free(t->ops[i].b);
    for (int i = 0; i < t->n_dec_rep; i++) free(t->dec_rep[i].a), free(t->dec_rep[i].b);
    free(t->chat_template);
    free(t);
}

/* Human-readable (truncated) form of a piece for messages. */
static const char *show(const char *s, size_t n, char out[64]) {
    size_t k = n < 40 ? n : 40;
    memcpy(out, s, k);
    out[k] = 0;
    if (n > 40) strcpy(out + 40, "...");
    for (size_t i = 0; i < k; i++)
        if ((unsigned char)out[i] < 0x20) out[i] = '?';
    return out;
}

/* (strndup copies whole: jansson rejects "\u0000" in strings and keys without
 * JSON_ALLOW_NUL, which rmu never passes.) */
static int add_op(rmu_tokenizer *t, norm_op *ops, int *n, int type, const char *a, size_t alen, const char *b,
                  size_t blen, rmu_err *e) {
    if (*n >= TOK_MAX_OPS) return rmu_errf(e, "%s: too many normalizer/decoder steps (at most %d)", t->name, TOK_MAX_OPS);
    norm_op *o = &ops[*n];
    o->type = type;
    o->a = strndup(a, alen);
    o->alen = alen;
    o->b = b ? strndup(b, blen) : NULL;
    o->blen = blen;
    (*n)++;
    if (!o->a || (b && !o->b)) return rmu_errf(e, "%s: out of memory", t->name);
    return 0;
}

static const char *jstr(json_t *o, const char *key, size_t *len) {
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v)) return NULL;
    if (len) *len = json_string_length(v);
    return json_string_value(v);
}

/* Replace's pattern: {"String": "x"}; a Regex pattern is outside what we support. */
static const char *pattern_string(json_t *o, size_t *len) {
    json_t *p = json_object_get(o, "pattern");
    if (json_is_string(p)) {
        *len = json_string_length(p);
        return json_string_value(p);
    }
    return json_is_object(p) ? jstr(p, "String", len) : NULL;
}

typedef int (*step_parser)(rmu_tokenizer *t, json_t *j, int depth, rmu_err *e);

/* The common frame of normalizer / pre_tokenizer / decoder: null (nothing), or an object
 * with a "type"; a Sequence runs fn on each item of its `list` array. Returns 1 when that
 * settled j, 0 with *type set for the caller to handle, -1 on error. */
static int step_frame(rmu_tokenizer *t, json_t *j, const char *what, const char *list, int depth, step_parser fn,
                      const char **type, rmu_err *e) {
    if (!j || json_is_null(j)) return 1;
    if (!(*type = json_is_object(j) ? jstr(j, "type", NULL) : NULL))
        return rmu_errf(e, "%s: %s must be null or an object with a \"type\"", t->name, what);
    if (strcmp(*type, "Sequence") || depth >= 4) return 0;
    json_t *arr = json_object_get(j, list), *v;
    if (!json_is_array(arr)) return rmu_errf(e, "%s: %s Sequence needs a \"%s\" array", t->name, what, list);
    size_t i;
    json_array_foreach(arr, i, v) if (fn(t, v, depth + 1, e)) return -1;
    return 1;
}

static int parse_normalizer(rmu_tokenizer *t, json_t *n, int depth, rmu_err *e) {
    const char *type;
    int r = step_frame(t, n, "normalizer", "normalizers", depth, parse_normalizer, &type, e);
    if (r) return r < 0 ? -1 : 0;
    if (!strcmp(type, "Prepend")) {
        size_t l;
        const char *p = jstr(n, "prepend", &l);
        if (!p) return rmu_errf(e, "%s: normalizer Prepend needs a \"prepend\" string", t->name);
        return add_op(t, t->ops, &t->n_ops, OP_PREPEND, p, l, NULL, 0, e);
    }
    if (!strcmp(type, "Replace")) {
        size_t la, lb;
        const char *a = pattern_string(n, &la), *b = jstr(n, "content", &lb);
        if (!a || !b || !la)
            return rmu_errf(e, "%s: normalizer Replace needs a non-empty {\"String\": ...} pattern and a \"content\" "
                               "string (regex patterns are not supported)",
                            t->name);
        return add_op(t, t->ops, &t->n_ops, OP_REPLACE, a, la, b, lb, e);
    }
    return rmu_errf(e, "%s: normalizer type '%s' is not supported (rmu supports Sequence, Prepend, Replace)", t->name,
                    type);
}

static int parse_scheme(rmu_tokenizer *t, json_t *p, rmu_err *e) {
    const char *s = jstr(p, "prepend_scheme", NULL);
    if (s) {
        if (!strcmp(s, "always")) t->meta_scheme = SCHEME_ALWAYS;
        else if (!strcmp(s, "first")) t->meta_scheme = SCHEME_FIRST;
        else if (!strcmp(s, "never")) t->meta_scheme = SCHEME_NEVER;
        else return rmu_errf(e, "%s: Metaspace prepend_scheme '%s' is not one of always, first, never", t->name, s);
        return 0;
    }
    /* older files: add_prefix_space true/false */
    json_t *a = json_object_get(p, "add_prefix_space");
    t->meta_scheme = (!a || json_is_true(a)) ? SCHEME_ALWAYS : SCHEME_NEVER;
    return 0;
}

static int parse_pretok(rmu_tokenizer *t, json_t *p, int depth, rmu_err *e) {
    const char *type;
    int r = step_frame(t, p, "pre_tokenizer", "pretokenizers", depth, parse_pretok, &type, e);
    if (r) return r < 0 ? -1 : 0;
    if (!strcmp(type, "Metaspace")) {
        if (t->meta) return rmu_errf(e, "%s: more than one Metaspace pre-tokenizer", t->name);
        size_t l;
        const char *rep = jstr(p, "replacement", &l);
        if (!rep || !l || l >= sizeof t->meta_rep || rmu_tok_utf8_len((const unsigned char *)rep, l) != (int)l)
            return rmu_errf(e, "%s: Metaspace replacement must be one character", t->name);
        memcpy(t->meta_rep, rep, l);
        t->meta_rep_len = l;
        t->meta = 1;
        json_t *sp = json_object_get(p, "split");
        t->meta_split = !sp || json_is_true(sp);
        return parse_scheme(t, p, e);
    }
    return rmu_errf(e, "%s: pre_tokenizer type '%s' is not supported (rmu supports Metaspace or null)", t->name, type);
}

static int parse_decoder(rmu_tokenizer *t, json_t *d, int depth, rmu_err *e) {
    const char *type;
    int r = step_frame(t, d, "decoder", "decoders", depth, parse_decoder, &type, e);
    if (r) return r < 0 ? -1 : 0;
    if (!strcmp(type, "Replace")) {
        size_t la, lb;
        const char *a = pattern_string(d, &la), *b = jstr(d, "content", &lb);
        if (!a || !b || !la) return rmu_errf(e, "%s: decoder Replace needs a String pattern and a content", t->name);
        return add_op(t, t->dec_rep, &t->n_dec_rep, OP_REPLACE, a, la, b, lb, e);
    }
    if (!strcmp(type, "ByteFallback")) {
        t->dec_bytes = 1;
        return 0;
    }
    if (!strcmp(type, "Fuse")) return 0; /* our decoder always works on the joined text */
    if (!strcmp(type, "Strip")) {
        size_t l;
        const char *c = jstr(d, "content", &l);
        json_t *st = json_object_get(d, "start"), *sp = json_object_get(d, "stop");
        if (!c || l != 1 || !json_is_integer(st) || json_integer_value(st) < 0 || json_integer_value(st) > 64 ||
            (sp && json_integer_value(sp) != 0))
            return rmu_errf(e, "%s: decoder Strip: only a one-byte content, start 0..64 and stop 0 are supported",
                            t->name);
        t->dec_strip = (int)json_integer_value(st);
        t->dec_strip_ch = c[0];
        return 0;
    }
    if (!strcmp(type, "Metaspace")) {
        size_t l;
        const char *r = jstr(d, "replacement", &l);
        if (!r || !l) return rmu_errf(e, "%s: decoder Metaspace needs a replacement", t->name);
        rmu_tokenizer tmp = {.meta_scheme = SCHEME_ALWAYS};
        memcpy(tmp.name, t->name, sizeof t->name);
        if (parse_scheme(&tmp, d, e)) return -1;
        if (tmp.meta_scheme != SCHEME_NEVER) {
            t->dec_strip = 1;
            t->dec_strip_ch = ' ';
        }
        return add_op(t, t->dec_rep, &t->n_dec_rep, OP_REPLACE, r, l, " ", 1, e);
    }
    return rmu_errf(e, "%s: decoder type '%s' is not supported (rmu supports Sequence, Replace, ByteFallback, Fuse, "
                       "Strip, Metaspace)",
                    t->name, type);
}

static int set_piece(rmu_tokenizer *t, int id, const char *s, size_t n, rmu_err *e) {
    if (!(t->piece[id] = strndup(s, n))) return rmu_errf(e, "%s: out of memory", t->name);
    t->plen[id] = (uint32_t)n;
    return 0;
}

static int cmp_added(const void *a, const void *b) {
    const added_tok *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id - y->id;
}

static int parse_merge(rmu_tokenizer *t, json_t *m, size_t i, const char **a, size_t *la, const char **b,
                       size_t *lb, rmu_err *e) {
    if (json_is_string(m)) {
        const char *s = json_string_value(m);
        size_t n = json_string_length(m);
        const char *sp = memchr(s, ' ', n);
        if (!sp || sp == s || sp == s + n - 1 || memchr(sp + 1, ' ', (size_t)(s + n - (sp + 1))))
            return rmu_errf(e, "%s: model.merges[%zu] '%.60s' is not two pieces separated by one space", t->name, i, s);
        *a = s, *la = (size_t)(sp - s), *b = sp + 1, *lb = (size_t)(s + n - sp - 1);
        return 0;
    }
    if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
        json_is_string(json_array_get(m, 1))) {
        *a = json_string_value(json_array_get(m, 0)), *la = json_string_length(json_array_get(m, 0));
        *b = json_string_value(json_array_get(m, 1)), *lb = json_string_length(json_array_get(m, 1));
        return 0;
    }
    return rmu_errf(e, "%s: model.merges[%zu] must be a \"a b\" string or an [a, b] pair", t->name, i);
}

static int load_model(rmu_tokenizer *t, json_t *root, rmu_err *e) {
    char s1[64], s2[64];
    if (!json_is_object(root)) return rmu_errf(e, "%s: top level must be a JSON object", t->name);
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) return rmu_errf(e, "%s: missing \"model\" object", t->name);
    const char *type = jstr(model, "type", NULL);
    if (json_object_get(model, "type") && !type) return rmu_errf(e, "%s: model.type must be a string", t->name);
    if (type && strcmp(type, "BPE"))
        return rmu_errf(e, "%s: model.type is '%s'; only BPE tokenizers are supported", t->name, type);
    json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab)) return rmu_errf(e, "%s: model.vocab must be an object mapping pieces to ids", t->name);
    json_t *merges = json_object_get(model, "merges");
    if (merges && !json_is_array(merges) && !json_is_null(merges))
        return rmu_errf(e, "%s: model.merges must be an array", t->name);
    if (!type && !merges) return rmu_errf(e, "%s: model has no \"type\" and no merges; only BPE is supported", t->name);
    for (const char *k = "continuing_subword_prefix", *k2 = "end_of_word_suffix"; k; k = k2, k2 = NULL) {
        json_t *v = json_object_get(model, k);
        if (v && !json_is_null(v) && !(json_is_string(v) && !json_string_length(v)))
            return rmu_errf(e, "%s: model.%s is not supported", t->name, k);
    }
    t->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    t->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
    t->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));

    size_t nv = json_object_size(vocab);
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_array(added) && !json_is_null(added))
        return rmu_errf(e, "%s: added_tokens must be an array", t->name);
    size_t na = json_is_array(added) ? json_array_size(added) : 0;
    if (nv == 0) return rmu_errf(e, "%s: model.vocab is empty", t->name);
    if (nv > TOK_MAX_ID) return rmu_errf(e, "%s: model.vocab has %zu pieces, more than %d", t->name, nv, TOK_MAX_ID);
    /* total ids: vocab ids are 0..nv-1; added tokens may extend past them */
    long long n = (long long)nv;
    for (size_t i = 0; i < na; i++) {
        json_t *id = json_object_get(json_array_get(added, i), "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= TOK_MAX_ID)
            return rmu_errf(e, "%s: added_tokens[%zu].id must be an integer in [0, %d)", t->name, i, TOK_MAX_ID);
        if (json_integer_value(id) + 1 > n) n = json_integer_value(id) + 1;
    }
    /* contiguous ids leave room for at most one new id per added token: check before allocating */
    if (n > (long long)(nv + na))
        return rmu_errf(e, "%s: ids are not contiguous: an added token has id %lld but the vocab has %zu pieces and "
                           "there are %zu added tokens",
                        t->name, n - 1, nv, na);
    t->n = (int)n;
    t->piece = calloc((size_t)n, sizeof(char *));
    t->plen = calloc((size_t)n, sizeof(uint32_t));
    t->byte_of = malloc(sizeof(int16_t) * (size_t)n);
    t->special = calloc((size_t)n, 1);
    uint32_t vcap = pow2_at_least((size_t)n * 2);
    t->vmap = malloc(sizeof(int32_t) * vcap);
    if (!t->piece || !t->plen || !t->byte_of || !t->special || !t->vmap)
        return rmu_errf(e, "%s: out of memory", t->name);
    memset(t->vmap, 0xff, sizeof(int32_t) * vcap);
    t->vmask = vcap - 1;

    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        size_t kl = strlen(key); /* jansson keys cannot hold NUL unless JSON_ALLOW_NUL */
        if (!json_is_integer(val))
            return rmu_errf(e, "%s: model.vocab: id of piece '%s' is not an integer", t->name, show(key, kl, s1));
        json_int_t id = json_integer_value(val);
        if (id < 0 || id >= (json_int_t)nv)
            return rmu_errf(e, "%s: model.vocab: id %lld of piece '%s' is out of range [0, %zu)", t->name,
                            (long long)id, show(key, kl, s1), nv);
        if (t->piece[id])
            return rmu_errf(e, "%s: model.vocab: id %lld is used by both '%s' and '%s'", t->name, (long long)id,
                            show(t->piece[id], t->plen[id], s1), show(key, kl, s2));
        if (set_piece(t, (int)id, key, kl, e)) return -1;
    }
    /* duplicate pieces cannot happen in a JSON object we parsed with JSON_REJECT_DUPLICATES */

    if (na) {
        t->added = calloc(na, sizeof(added_tok));
        if (!t->added) return rmu_errf(e, "%s: out of memory", t->name);
    }
    for (size_t i = 0; i < na; i++) {
        json_t *a = json_array_get(added, i);
        size_t cl;
        const char *c = json_is_object(a) ? jstr(a, "content", &cl) : NULL;
        if (!c || !cl) return rmu_errf(e, "%s: added_tokens[%zu] needs a non-empty \"content\" string", t->name, i);
        int id = (int)json_integer_value(json_object_get(a, "id"));
        if (t->piece[id]) {
            if (t->plen[id] != cl || memcmp(t->piece[id], c, cl))
                return rmu_errf(e, "%s: added_tokens[%zu]: id %d is '%s' but the vocab has '%s' there", t->name, i, id,
                                show(c, cl, s1), show(t->piece[id], t->plen[id], s2));
        } else if (set_piece(t, id, c, cl, e))
            return -1;
        added_tok *at = &t->added[t->n_added++];
        at->s = t->piece[id];
        at->len = cl;
        at->id = id;
        at->special = json_is_true(json_object_get(a, "special"));
        at->lstrip = json_is_true(json_object_get(a, "lstrip"));
        at->rstrip = json_is_true(json_object_get(a, "rstrip"));
        if (at->special) t->special[id] = 1;
        t->added_first[(unsigned char)c[0]] = 1;
    }
    if (t->n_added) qsort(t->added, (size_t)t->n_added, sizeof(added_tok), cmp_added);
    for (int i = 0; i < t->n; i++) {
        if (!t->piece[i])
            return rmu_errf(e, "%s: ids are not contiguous: id %d has no piece (vocab has %zu, ids go to %d)", t->name, i,
                            nv, t->n - 1);
        t->byte_of[i] = (int16_t)parse_byte_piece(t->piece[i], t->plen[i]);
        int o = vmap_insert(t, i);
        if (o >= 0 && i >= (int)nv) continue; /* an added token repeating a piece at a new id: lookups find the first */
        if (o >= 0)
            return rmu_errf(e, "%s: piece '%s' appears at ids %d and %d", t->name, show(t->piece[i], t->plen[i], s1), o,
                            i);
    }
    for (int b = 0; b < 256; b++) {
        char bp[8];
        snprintf(bp, sizeof bp, "<0x%02X>", b);
        t->byte_id[b] = tok_vmap_find(t, bp, 6);
    }

    t->unk = -1;
    json_t *unk = json_object_get(model, "unk_token");
    if (json_is_string(unk)) {
        t->unk = tok_vmap_find(t, json_string_value(unk), json_string_length(unk));
        if (t->unk < 0)
            return rmu_errf(e, "%s: model.unk_token '%s' is not in the vocab", t->name,
                            show(json_string_value(unk), json_string_length(unk), s1));
    } else if (unk && !json_is_null(unk))
        return rmu_errf(e, "%s: model.unk_token must be a string or null", t->name);

    size_t nm = json_is_array(merges) ? json_array_size(merges) : 0;
    if (nm > (size_t)TOK_MAX_ID) return rmu_errf(e, "%s: too many merges (%zu)", t->name, nm);
    if (nm) {
        uint32_t mcap = pow2_at_least(nm * 2);
        t->merges = malloc(sizeof(merge_slot) * mcap);
        if (!t->merges) return rmu_errf(e, "%s: out of memory", t->name);
        for (uint32_t i = 0; i < mcap; i++) t->merges[i].key = UINT64_MAX;
        t->merges_mask = mcap - 1;
    }
    rmu_sb cat = {0};
    int rc = 0;
    for (size_t i = 0; i < nm && !rc; i++) {
        const char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        if ((rc = parse_merge(t, json_array_get(merges, i), i, &a, &la, &b, &lb, e))) break;
        int ia = tok_vmap_find(t, a, la), ib = tok_vmap_find(t, b, lb);
        if (ia < 0 || ib < 0) {
            rc = rmu_errf(e, "%s: model.merges[%zu] '%s %s' names unknown piece '%s'", t->name, i, show(a, la, s1),
                          show(b, lb, s2), ia < 0 ? s1 : s2);
            break;
        }
        rmu_sb_truncate(&cat, 0);
        rmu_sb_add(&cat, a, la);
        if (rmu_sb_add(&cat, b, lb)) {
            rc = rmu_errf(e, "%s: out of memory", t->name);
            break;
        }
        int r = tok_vmap_find(t, cat.p, cat.n);
        if (r < 0)
            rc = rmu_errf(e, "%s: model.merges[%zu] '%s %s' makes '%s', which is not in the vocab", t->name, i,
                          show(a, la, s1), show(b, lb, s2), show(cat.p, cat.n, (char[64]){0}));
        else
            merge_put(t, ia, ib, (int)i, r);
    }
    rmu_sb_free(&cat);
    if (rc) return -1;
    t->meta_scheme = SCHEME_ALWAYS;
    if (parse_normalizer(t, json_object_get(root, "normalizer"), 0, e)) return -1;
    if (parse_pretok(t, json_object_get(root, "pre_tokenizer"), 0, e)) return -1;
    if (parse_decoder(t, json_object_get(root, "decoder"), 0, e)) return -1;
    return 0;
}

/* A config token entry: "x", {"content": "x"} or null. Returns 1 found, 0 absent/null, -1 bad. */
static int cfg_token(json_t *cfg, const char *key, const char **s, size_t *len) {
    json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) return 0;
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v)) return -1;
    *s = json_string_value(v);
    *len = json_string_length(v);
    return 1;
}

static int apply_config(rmu_tokenizer *t, json_t *cfg, const char *cname, rmu_err *e) {
    char s1[64];
    t->bos = tok_vmap_find(t, "<s>", 3);
    t->eos = tok_vmap_find(t, "</s>", 4);
    t->pad = -1;
    t->add_bos = 1; /* LlamaTokenizer's default */
    t->add_eos = 0;
    if (!cfg) goto done;
    if (!json_is_object(cfg)) return rmu_errf(e, "%s: top level must be a JSON object", cname);
    static const char *keys[] = {"bos_token", "eos_token", "pad_token", "unk_token"};
    int *dst[] = {&t->bos, &t->eos, &t->pad, NULL};
    for (int k = 0; k < 4; k++) {
        const char *s;
        size_t l;
        int r = cfg_token(cfg, keys[k], &s, &l);
        if (r < 0) return rmu_errf(e, "%s: %s must be a string, {\"content\": ...} or null", cname, keys[k]);
        if (!dst[k]) continue; /* unk comes from tokenizer.json; only its form is checked here */
        if (r == 0) {
            if (json_object_get(cfg, keys[k])) *dst[k] = -1; /* an explicit null: no such token */
            continue;
        }
        int id = tok_vmap_find(t, s, l);
        if (id < 0) return rmu_errf(e, "%s: %s '%s' is not in the vocab of %s", cname, keys[k], show(s, l, s1), t->name);
        *dst[k] = id;
    }
    json_t *ab = json_object_get(cfg, "add_bos_token"), *ae = json_object_get(cfg, "add_eos_token");
    if (ab && !json_is_boolean(ab) && !json_is_null(ab)) return rmu_errf(e, "%s: add_bos_token must be true or false", cname);
    if (ae && !json_is_boolean(ae) && !json_is_null(ae)) return rmu_errf(e, "%s: add_eos_token must be true or false", cname);
    if (json_is_boolean(ab)) t->add_bos = json_is_true(ab);
    if (json_is_boolean(ae)) t->add_eos = json_is_true(ae);
    json_t *ct = json_object_get(cfg, "chat_template");
    const char *tmpl = NULL;
    if (json_is_string(ct)) tmpl = json_string_value(ct);
    else if (json_is_array(ct)) { /* [{"name": "default", "template": "..."}, ...] */
        size_t i;
        json_t *v;
        json_array_foreach(ct, i, v) {
            const char *nm = jstr(v, "name", NULL), *tp = jstr(v, "template", NULL);
            if (tp && (!tmpl || (nm && !strcmp(nm, "default")))) tmpl = tp;
        }
        if (!tmpl) return rmu_errf(e, "%s: chat_template list has no template", cname);
    } else if (ct && !json_is_null(ct))
        return rmu_errf(e, "%s: chat_template must be a string or a list of {name, template}", cname);
    if (tmpl && !(t->chat_template = strdup(tmpl))) return rmu_errf(e, "%s: out of memory", cname);
done:
    if (t->bos < 0) t->add_bos = 0;
    if (t->eos < 0) t->add_eos = 0;
    if (t->bos >= 0) t->special[t->bos] = 1;
    if (t->eos >= 0) t->special[t->eos] = 1;
    if (t->pad >= 0) t->special[t->pad] = 1;
    if (t->unk >= 0) t->special[t->unk] = 1;
    return 0;
}

static json_t *parse_json(const char *text, size_t len, const char *name, int flags, rmu_err *e) {
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES | (size_t)flags, &je);
    if (!root) rmu_errf(e, "%s: not valid JSON: %s (line %d, column %d)", name, je.text, je.line, je.column);
    return root;
}

static rmu_tokenizer *load_impl(const char *text, size_t len, const char *name, const char *ctext, size_t clen,
                                const char *cname, rmu_err *e) {
    rmu_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        rmu_errf(e, "%s: out of memory", name);
        return NULL;
    }
    snprintf(t->name, sizeof t->name, "%s", name);
    json_t *root = parse_json(text, len, name, 0, e), *cfg = NULL;
    if (!root || load_model(t, root, e)) goto fail;
    /* configs hold numbers like model_max_length 1e30 that overflow a JSON integer */
    if (ctext && !(cfg = parse_json(ctext, clen, cname, JSON_DECODE_INT_AS_REAL, e))) goto fail;
    if (apply_config(t, cfg, cname, e)) goto fail;
    json_decref(root);
    json_decref(cfg);
    return t;
fail:
    json_decref(root);
    json_decref(cfg);
    rmu_tok_free(t);
    return NULL;
}

rmu_tokenizer *rmu_tok_load_json_text(const char *text, size_t len, const char *name, rmu_err *e) {
    return load_impl(text, len, name ? name : "tokenizer.json", NULL, 0, NULL, e);
}

rmu_tokenizer *rmu_tok_load_files(const char *tokenizer_json, const char *config_path, rmu_err *e) {
    size_t len, clen = 0;
    char *text = rmu_file_read_all(tokenizer_json, &len, e), *ctext = NULL;
    if (!text) return NULL;
    if (config_path && !(ctext = rmu_file_read_all(config_path, &clen, e))) {
        free(text);
        return NULL;
    }
    rmu_tokenizer *t = load_impl(text, len, tokenizer_json, ctext, clen, config_path, e);
    free(text);
    free(ctext);
    return t;
}

rmu_tokenizer *rmu_tok_load(const char *dir, rmu_err *e) {
    char tj[4096], tc[4096];
    if (rmu_path_join(tj, sizeof tj, dir, "tokenizer.json", e) ||
        rmu_path_join(tc, sizeof tc, dir, "tokenizer_config.json", e))
        return NULL;
    if (!rmu_file_exists(tj)) {
        rmu_errf(e, "%s: not found (a model folder needs its tokenizer.json)", tj);
        return NULL;
    }
    return rmu_tok_load_files(tj, rmu_file_exists(tc) ? tc : NULL, e);
}


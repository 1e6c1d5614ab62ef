/* bpe_train.c - the BPE trainer behind the synthetic tokenizer (bpe_train.h) and the
 * tokenizer.json / tokenizer_config.json it writes. Pair counts are recomputed per merge
 * (simple and deterministic), so the corpus is capped at RMU_BPE_MAX_CORPUS bytes to bound
 * the time. */
#include "tokenizer/bpe_train.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/json.h"
#include "core/rng.h"
#include "core/strbuf.h"
#include "tokenizer/tokenizer.h"

#define META "\xe2\x96\x81" /* U+2581, SentencePiece's space */

static uint32_t pow2_at_least(size_t n) {
    uint32_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

static uint32_t str_hash(const char *s, size_t n) { return (uint32_t)rmu_mix64(rmu_fnv1a(RMU_FNV_INIT, s, n)); }

/* ---------------------------------------------------------------- string table
 * Distinct strings with ids in insertion order, found by an open-addressing map. */

typedef struct {
    char **s;
    size_t *len;
    int n, cap;
    int32_t *map; /* -1 empty */
    uint32_t mask;
} strtab;

static int st_find(const strtab *t, const char *s, size_t n) {
    if (!t->map) return -1;
    for (uint32_t h = str_hash(s, n) & t->mask;; h = (h + 1) & t->mask) {
        int id = t->map[h];
        if (id < 0) return -1;
        if (t->len[id] == n && !memcmp(t->s[id], s, n)) return id;
    }
}

static void st_map(strtab *t, int id) {
    uint32_t h = str_hash(t->s[id], t->len[id]) & t->mask;
    while (t->map[h] >= 0) h = (h + 1) & t->mask;
    t->map[h] = id;
}

/* Adds s (must be new); returns its id or -1 on OOM. */
static int st_add(strtab *t, const char *s, size_t n) {
    if (t->n == t->cap) {
        int cap = t->cap ? t->cap * 2 : 1024;
        char **ns = realloc(t->s, sizeof(char *) * (size_t)cap);
        if (ns) t->s = ns;
        size_t *nl = realloc(t->len, sizeof(size_t) * (size_t)cap);
        if (nl) t->len = nl;
        uint32_t mcap = pow2_at_least((size_t)cap * 2);
        int32_t *m = malloc(sizeof(int32_t) * mcap);
        if (!ns || !nl || !m) return free(m), -1;
        memset(m, 0xff, sizeof(int32_t) * mcap);
        free(t->map);
        t->map = m;
        t->mask = mcap - 1;
        t->cap = cap;
        for (int i = 0; i < t->n; i++) st_map(t, i);
    }
    if (!(t->s[t->n] = malloc(n + 1))) return -1;
    memcpy(t->s[t->n], s, n);
    t->s[t->n][n] = 0;
    t->len[t->n] = n;
    st_map(t, t->n);
    return t->n++;
}

static void st_free(strtab *t) {
    for (int i = 0; i < t->n; i++) free(t->s[i]);
    free(t->s), free(t->len), free(t->map);
    *t = (strtab){0};
}

/* ---------------------------------------------------------------- the corpus */

typedef struct {
    strtab words; /* distinct words */
    long *count;
    int cap;
} word_counts;

static int wc_add(word_counts *w, const char *s, size_t n) {
    if (!n) return 0;
    int id = st_find(&w->words, s, n);
    if (id < 0) {
        if ((id = st_add(&w->words, s, n)) < 0) return -1;
        if (id >= w->cap) {
            int cap = w->cap ? w->cap * 2 : 1024;
            long *c = realloc(w->count, sizeof(long) * (size_t)cap);
            if (!c) return -1;
            w->count = c;
            w->cap = cap;
        }
        w->count[id] = 0;
    }
    w->count[id]++;
    return 0;
}

static int split_corpus(const char *c, size_t n, word_counts *wc) {
    rmu_sb cur = {0};
    int r = rmu_sb_add(&cur, META, 3);
    for (size_t i = 0; i < n && !r;) {
        unsigned char b = (unsigned char)c[i];
        int cl = rmu_tok_utf8_len((const unsigned char *)c + i, n - i);
        if (b == ' ' || !cl || b < 0x20 || b == 0x7f) { /* a space starts a word, a control char ends one */
            r = wc_add(wc, cur.p, cur.n);
            rmu_sb_truncate(&cur, 0);
            if (!r && b == ' ') r = rmu_sb_add(&cur, META, 3);
        } else
            r = rmu_sb_add(&cur, c + i, (size_t)cl);
        i += cl ? (size_t)cl : 1;
    }
    if (!r) r = wc_add(wc, cur.p, cur.n);
    rmu_sb_free(&cur);
    return r;
}

static int cmp_bytes(const char *a, size_t la, const char *b, size_t lb) {
    int c = memcmp(a, b, la < lb ? la : lb);
    return c ? c : (la < lb ? -1 : la > lb);
}

typedef struct {
    const char *s;
    size_t len;
    long count;
} char_count;

static int cmp_char_count(const void *x, const void *y) {
    const char_count *a = x, *b = y;
    if (a->count != b->count) return a->count > b->count ? -1 : 1;
    return cmp_bytes(a->s, a->len, b->s, b->len);
}

/* Adds the characters seen at least twice, most frequent first, up to budget of them. */
static int add_chars(strtab *vocab, const word_counts *wc, int budget) {
    strtab chars = {0};
    long *count = NULL;
    char_count *cc = NULL;
    int rc = -1, ccap = 0;
    for (int i = 0; i < wc->words.n; i++) {
        const char *s = wc->words.s[i];
        size_t n = wc->words.len[i];
        for (size_t k = 0; k < n;) {
            int cl = rmu_tok_utf8_len((const unsigned char *)s + k, n - k);
            int id = st_find(&chars, s + k, (size_t)cl);
            if (id < 0) {
                if ((id = st_add(&chars, s + k, (size_t)cl)) < 0) goto out;
                if (id >= ccap) {
                    long *nc = realloc(count, sizeof(long) * (size_t)(ccap = ccap ? 2 * ccap : 1024));
                    if (!nc) goto out;
                    count = nc;
                }
                count[id] = 0;
            }
            count[id] += wc->count[i];
            k += (size_t)cl;
        }
    }
    if (chars.n && !(cc = malloc(sizeof(char_count) * (size_t)chars.n))) goto out;
    for (int i = 0; i < chars.n; i++) cc[i] = (char_count){chars.s[i], chars.len[i], count[i]};
    if (chars.n) qsort(cc, (size_t)chars.n, sizeof *cc, cmp_char_count);
    for (int i = 0, added = 0; i < chars.n && added < budget && cc[i].count >= 2; i++) {
        if (st_find(vocab, cc[i].s, cc[i].len) >= 0) continue; /* "▁" is already there */
        if (st_add(vocab, cc[i].s, cc[i].len) < 0) goto out;
        added++;
    }
    rc = 0;
out:
    free(cc), free(count);
    st_free(&chars);
    return rc;
}

/* ---------------------------------------------------------------- merges */

typedef struct {
    int *sym; /* piece ids; -1: a character without a piece (a merge barrier) */
    int n;
    long count;
} word;

typedef struct {
    uint64_t key; /* pair; UINT64_MAX empty */
    long count;
} pair_slot;

/* Is a+b a better merge than ba+bb when both occur equally often? x, y: scratch. */
static int better_tie(const strtab *v, rmu_sb *x, rmu_sb *y, int a, int b, int ba, int bb) {
    rmu_sb_truncate(x, 0);
    rmu_sb_truncate(y, 0);
    rmu_sb_add(x, v->s[a], v->len[a]);
    rmu_sb_add(x, v->s[b], v->len[b]);
    rmu_sb_add(y, v->s[ba], v->len[ba]);
    rmu_sb_add(y, v->s[bb], v->len[bb]);
    if (x->oom || y->oom) return 0;
    int c = cmp_bytes(x->p, x->n, y->p, y->n);
    return c < 0 || (c == 0 && a < ba);
}

/* Merges the most frequent pair until the vocab has vocab_size pieces or no pair occurs
 * twice. merge gets room for one merge per corpus symbol (each merge removes at least one). */
static int learn_merges(strtab *vocab, rmu_bpe_vocab *out, const word_counts *wc, int vocab_size) {
    int rc = -1, nw = wc->words.n;
    word *w = nw ? calloc((size_t)nw, sizeof *w) : NULL;
    pair_slot *pm = NULL;
    int *used = NULL;
    rmu_sb cat = {0}, tie = {0};
    size_t total = 0;
    if (nw && !w) return -1;
    for (int i = 0; i < nw; i++) {
        const char *s = wc->words.s[i];
        size_t n = wc->words.len[i];
        if (!(w[i].sym = malloc(sizeof(int) * (n + 1)))) goto out;
        w[i].count = wc->count[i];
        for (size_t k = 0; k < n;) {
            int cl = rmu_tok_utf8_len((const unsigned char *)s + k, n - k);
            w[i].sym[w[i].n++] = st_find(vocab, s + k, (size_t)cl);
            k += (size_t)cl;
        }
        total += (size_t)w[i].n;
    }
    uint32_t pcap = pow2_at_least(total * 2 + 16), pmask = pcap - 1;
    if (!(pm = malloc(sizeof(pair_slot) * pcap)) || !(used = malloc(sizeof(int) * pcap)) ||
        !(out->merge = malloc(sizeof(int) * 2 * (total + 1))))
        goto out;
    for (uint32_t i = 0; i < pcap; i++) pm[i].key = UINT64_MAX;
    while (vocab->n < vocab_size) {
        int nused = 0;
        for (int i = 0; i < nw; i++)
            for (int k = 0; k + 1 < w[i].n; k++) {
                int a = w[i].sym[k], b = w[i].sym[k + 1];
                if (a < 0 || b < 0) continue;
                uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
                uint32_t h = (uint32_t)rmu_mix64(key) & pmask;
                while (pm[h].key != UINT64_MAX && pm[h].key != key) h = (h + 1) & pmask;
                if (pm[h].key == UINT64_MAX) pm[h] = (pair_slot){key, 0}, used[nused++] = (int)h;
                pm[h].count += w[i].count;
            }
        long best = 1;
        int ba = -1, bb = -1;
        for (int u = 0; u < nused; u++) {
            pair_slot *p = &pm[used[u]];
            int a = (int)(p->key >> 32), b = (int)(uint32_t)p->key;
            if (p->count > best || (p->count == best && ba >= 0 && better_tie(vocab, &cat, &tie, a, b, ba, bb)))
                best = p->count, ba = a, bb = b;
            p->key = UINT64_MAX; /* clear for the next round */
        }
        if (cat.oom || tie.oom) goto out;
        if (ba < 0) break; /* no pair occurs twice: the corpus is exhausted */
        rmu_sb_truncate(&cat, 0);
        rmu_sb_add(&cat, vocab->s[ba], vocab->len[ba]);
        if (rmu_sb_add(&cat, vocab->s[bb], vocab->len[bb])) goto out;
        int c = st_find(vocab, cat.p, cat.n);
        if (c < 0 && (c = st_add(vocab, cat.p, cat.n)) < 0) goto out;
        out->merge[2 * out->n_merges] = ba;
        out->merge[2 * out->n_merges++ + 1] = bb;
        for (int i = 0; i < nw; i++) {
            int o = 0;
            for (int k = 0; k < w[i].n; k++) {
                if (k + 1 < w[i].n && w[i].sym[k] == ba && w[i].sym[k + 1] == bb) {
                    w[i].sym[o++] = c;
                    k++;
                } else
                    w[i].sym[o++] = w[i].sym[k];
            }
            w[i].n = o;
        }
    }
    rc = 0;
out:
    for (int i = 0; w && i < nw; i++) free(w[i].sym);
    free(w), free(pm), free(used);
    rmu_sb_free(&cat);
    rmu_sb_free(&tie);
    return rc;
}

void rmu_bpe_vocab_free(rmu_bpe_vocab *v) {
    for (int i = 0; v->piece && i < v->n; i++) free(v->piece[i]);
    free(v->piece), free(v->len), free(v->merge);
    *v = (rmu_bpe_vocab){0};
}

int rmu_bpe_train(const char *corpus, size_t corpus_len, int vocab_size, rmu_bpe_vocab *v, rmu_err *e) {
    *v = (rmu_bpe_vocab){0};
    if (vocab_size < RMU_BPE_MIN_VOCAB || vocab_size > RMU_BPE_MAX_VOCAB)
        return rmu_errf(e, "synthetic tokenizer: vocab_size %d is out of range [%d, %d] (3 special + 256 byte pieces "
                           "+ \"" META "\" need %d)",
                        vocab_size, RMU_BPE_MIN_VOCAB, RMU_BPE_MAX_VOCAB, RMU_BPE_MIN_VOCAB);
    strtab t = {0};
    word_counts wc = {0};
    static const char *special[] = {"<unk>", "<s>", "</s>"};
    char name[32];
    for (int i = 0; i < 3; i++)
        if (st_add(&t, special[i], strlen(special[i])) < 0) goto oom;
    for (int b = 0; b < 256; b++) {
        snprintf(name, sizeof name, "<0x%02X>", b);
        if (st_add(&t, name, 6) < 0) goto oom;
    }
    if (st_add(&t, META, 3) < 0) goto oom;
    if (corpus && corpus_len) {
        if (split_corpus(corpus, corpus_len < RMU_BPE_MAX_CORPUS ? corpus_len : RMU_BPE_MAX_CORPUS, &wc) ||
            add_chars(&t, &wc, (vocab_size - t.n) / 2) || learn_merges(&t, v, &wc, vocab_size))
            goto oom;
    }
    for (int k = t.n; t.n < vocab_size; k++) { /* plain pieces no merge can build: never produced */
        int l = snprintf(name, sizeof name, "<filler_%d>", k);
        if (st_find(&t, name, (size_t)l) < 0 && st_add(&t, name, (size_t)l) < 0) goto oom;
    }
    st_free(&wc.words);
    free(wc.count);
    free(t.map);
    v->piece = t.s, v->len = t.len, v->n = t.n; /* the table's strings become the vocab */
    return 0;
oom:
    st_free(&wc.words);
    free(wc.count);
    st_free(&t);
    rmu_bpe_vocab_free(v);
    return rmu_errf(e, "synthetic tokenizer: out of memory");
}

/* ---------------------------------------------------------------- the files */

static json_t *jobj(const char *type) {
    json_t *o = json_object();
    if (type) json_object_set_new(o, "type", json_string(type));
    return o;
}

static json_t *added_json(int id, const char *s) {
    return json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", id, "content", s, "single_word", 0, "lstrip", 0,
                     "rstrip", 0, "normalized", 0, "special", 1);
}

/* {"type": type, "pattern": {"String": from}, "content": to} */
static json_t *replace_json(const char *from, const char *to) {
    return json_pack("{s:s, s:{s:s}, s:s}", "type", "Replace", "pattern", "String", from, "content", to);
}

static json_t *tokenizer_json(const rmu_bpe_vocab *v) {
    json_t *root = json_object();
    json_object_set_new(root, "version", json_string("1.0"));
    json_object_set_new(root, "truncation", json_null());
    json_object_set_new(root, "padding", json_null());
    json_t *added = json_array();
    for (int i = 0; i < 3; i++) json_array_append_new(added, added_json(i, v->piece[i]));
    json_object_set_new(root, "added_tokens", added);
    json_object_set_new(root, "normalizer",
                        json_pack("{s:s, s:[{s:s, s:s}, o]}", "type", "Sequence", "normalizers", "type", "Prepend",
                                  "prepend", META, replace_json(" ", META)));
    json_object_set_new(root, "pre_tokenizer", json_null());
    /* post_processor: <s> $A, as in the Llama files */
    json_t *single = json_pack("[{s:{s:s, s:i}}, {s:{s:s, s:i}}]", "SpecialToken", "id", "<s>", "type_id", 0,
                               "Sequence", "id", "A", "type_id", 0);
    json_object_set_new(root, "post_processor",
                        json_pack("{s:s, s:o, s:O, s:{s:{s:s, s:[i], s:[s]}}}", "type", "TemplateProcessing", "single",
                                  single, "pair", single, "special_tokens", "<s>", "id", "<s>", "ids", 1, "tokens",
                                  "<s>"));
    json_object_set_new(root, "decoder",
                        json_pack("{s:s, s:[o, {s:s}, {s:s}, {s:s, s:s, s:i, s:i}]}", "type", "Sequence", "decoders",
                                  replace_json(META, " "), "type", "ByteFallback", "type", "Fuse", "type", "Strip",
                                  "content", " ", "start", 1, "stop", 0));
    json_t *m = jobj("BPE"), *vocab = json_object(), *ml = json_array();
    json_object_set_new(m, "dropout", json_null());
    json_object_set_new(m, "unk_token", json_string("<unk>"));
    json_object_set_new(m, "continuing_subword_prefix", json_null());
    json_object_set_new(m, "end_of_word_suffix", json_null());
    json_object_set_new(m, "fuse_unk", json_true());
    json_object_set_new(m, "byte_fallback", json_true());
    json_object_set_new(m, "ignore_merges", json_false());
    for (int i = 0; i < v->n; i++) json_object_setn_new(vocab, v->piece[i], v->len[i], json_integer(i));
    rmu_sb line = {0};
    for (int k = 0; k < v->n_merges; k++) {
        int a = v->merge[2 * k], b = v->merge[2 * k + 1];
        rmu_sb_truncate(&line, 0);
        rmu_sb_printf(&line, "%s %s", v->piece[a], v->piece[b]);
        json_array_append_new(ml, line.oom ? NULL : json_stringn(line.p, line.n));
    }
    int oom = line.oom;
    rmu_sb_free(&line);
    json_object_set_new(m, "vocab", vocab);
    json_object_set_new(m, "merges", ml);
    json_object_set_new(root, "model", m);
    /* a json_pack that ran out of memory leaves its key out */
    if (oom || json_array_size(ml) != (size_t)v->n_merges || !json_object_get(root, "normalizer") ||
        !json_object_get(root, "post_processor") || !json_object_get(root, "decoder")) {
        json_decref(root);
        return NULL;
    }
    return root;
}

static int write_json(const char *dir, const char *name, json_t *j, rmu_err *e) {
    char path[4096];
    if (rmu_path_join(path, sizeof path, dir, name, e)) return -1;
    if (!j) return rmu_errf(e, "%s: out of memory", path);
    return rmu_json_write_file(path, j, JSON_INDENT(2) | JSON_PRESERVE_ORDER, e);
}

int rmu_bpe_write_synthetic(const char *dir, int vocab_size, const char *corpus, size_t corpus_len, rmu_err *e) {
    rmu_bpe_vocab v;
    if (rmu_bpe_train(corpus, corpus_len, vocab_size, &v, e)) return -1;
    json_t *tj = NULL, *cj = NULL;
    int rc = -1;
    if (rmu_mkdirs(dir, e) || write_json(dir, "tokenizer.json", tj = tokenizer_json(&v), e)) goto out;
    cj = json_pack("{s:b, s:b, s:s, s:s, s:s, s:n, s:b, s:s, s:b}", "add_bos_token", 1, "add_eos_token", 0, "bos_token",
                   "<s>", "eos_token", "</s>", "unk_token", "<unk>", "pad_token", "legacy", 1, "tokenizer_class",
                   "LlamaTokenizer", "clean_up_tokenization_spaces", 0);
    rc = write_json(dir, "tokenizer_config.json", cj, e);
out:
    json_decref(tj);
    json_decref(cj);
    rmu_bpe_vocab_free(&v);
    return rc;
}

/* test_tokenizer.c - tokenizer.json loading, BPE encoding, decoding, streaming, the
 * synthetic tokenizer writer and the validation messages. Tests on the real Mistral and
 * stories260K files read ../shared (or $SHARED) and skip with a message when it is absent;
 * the rest run on tokenizers written here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include <jansson.h>

#include "testutil.h"

#include "core/fileio.h"
#include "tokenizer/bpe_train.h"
#include "tokenizer/tokenizer.h"

/* ---------------------------------------------------------------- helpers */

/* Loads the tokenizer folder ../shared/SUB, or skips the test when it is absent. */
#define LOAD_SHARED_OR_SKIP(var, sub)   \
    TU_NEED_SHARED(var##_dir_, sub);    \
    var = load_or_fail(var##_dir_)

static rmu_tokenizer *load_or_fail(const char *dir) {
    rmu_err e;
    rmu_tokenizer *t = rmu_tok_load(dir, &e);
    if (!t) fail_msg("%s", e.msg);
    return t;
}

/* The folder NAME under the group's temporary folder, created; its path goes to buf. */
static const char *tmp_dir(void **state, const char *name, char *buf, size_t cap) {
    rmu_err e;
    snprintf(buf, cap, "%s", tu_path(*state, name));
    OK(rmu_mkdirs(buf, &e));
    return buf;
}

static void check_ids(const rmu_tokenizer *t, const char *text, size_t len, int bos, const int *want, int nwant) {
    int *ids = NULL, n = 0;
    rmu_err e;
    if (rmu_tok_encode(t, text, len, bos, &ids, &n, &e)) fail_msg("%s", e.msg);
    int same = n == nwant;
    for (int i = 0; same && i < n; i++) same = ids[i] == want[i];
    if (!same) {
        char got[2048] = "", exp[2048] = "";
        for (int i = 0; i < n && strlen(got) < 2000; i++) snprintf(got + strlen(got), 24, "%d ", ids[i]);
        for (int i = 0; i < nwant && strlen(exp) < 2000; i++) snprintf(exp + strlen(exp), 24, "%d ", want[i]);
        free(ids);
        fail_msg("encode('%.*s'): got [%s] want [%s]", (int)len, text, got, exp);
    }
    free(ids);
}
#define IDS(...) ((const int[]){__VA_ARGS__}), (int)(sizeof((const int[]){__VA_ARGS__}) / sizeof(int))
#define CHECK(t, s, ...) check_ids(t, s, strlen(s), 1, IDS(__VA_ARGS__))

static char *decode(const rmu_tokenizer *t, const int *ids, int n, int skip) {
    rmu_err e;
    char *s = rmu_tok_decode(t, ids, n, skip, &e);
    if (!s) fail_msg("%s", e.msg);
    return s;
}

/* stream every id, flush, and return the concatenation */
static char *stream_all(const rmu_tokenizer *t, const int *ids, int n, size_t cap) {
    size_t total = 0, room = 1024;
    char *all = malloc(room), piece[512];
    assert_true(cap <= sizeof piece);
    all[0] = 0;
    rmu_tok_stream st;
    rmu_tok_stream_init(&st, t);
    for (int i = 0; i <= n; i++) {
        int k = i < n ? rmu_tok_stream_push(&st, ids[i], piece, cap) : rmu_tok_stream_flush(&st, piece, cap);
        assert_true(k >= 0 && (size_t)k < cap);
        assert_int_equal(strlen(piece), (size_t)k);
        if (total + (size_t)k + 1 > room) all = realloc(all, room = 2 * (total + (size_t)k + 1));
        memcpy(all + total, piece, (size_t)k + 1);
        total += (size_t)k;
    }
    return all;
}

static int utf8_ok(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 : (*p >> 4) == 14 ? 3 : (*p >> 3) == 30 ? 4 : 0;
        if (!n) return 0;
        for (int i = 1; i < n; i++)
            if ((p[i] & 0xC0) != 0x80) return 0;
        p += n;
    }
    return 1;
}

static uint64_t rng(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

/* a random valid UTF-8 character of 1..4 bytes into out; returns its length */
static int rand_char(uint64_t *s, unsigned char *out) {
    int kind = (int)(rng(s) % 4);
    uint32_t cp;
    if (kind == 0) cp = 0x20 + (uint32_t)(rng(s) % 0x5f);
    else if (kind == 1) cp = 0x80 + (uint32_t)(rng(s) % (0x800 - 0x80));
    else if (kind == 2) {
        do cp = 0x800 + (uint32_t)(rng(s) % (0x10000 - 0x800));
        while (cp >= 0xD800 && cp <= 0xDFFF);
    } else
        cp = 0x10000 + (uint32_t)(rng(s) % (0x110000 - 0x10000));
    if (cp < 0x80) return out[0] = (unsigned char)cp, 1;
    if (cp < 0x800) return out[0] = (unsigned char)(0xC0 | cp >> 6), out[1] = (unsigned char)(0x80 | (cp & 63)), 2;
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | cp >> 12), out[1] = (unsigned char)(0x80 | (cp >> 6 & 63));
        out[2] = (unsigned char)(0x80 | (cp & 63));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | cp >> 18), out[1] = (unsigned char)(0x80 | (cp >> 12 & 63));
    out[2] = (unsigned char)(0x80 | (cp >> 6 & 63)), out[3] = (unsigned char)(0x80 | (cp & 63));
    return 4;
}

static int byte_id(const rmu_tokenizer *t, int b) {
    char p[8];
    snprintf(p, sizeof p, "<0x%02X>", b);
    return rmu_tok_piece_id(t, p);
}

/* Random id sequences whose byte pieces always spell whole characters: the stream must
 * equal the full decode exactly. */
static void stream_matches_decode(const rmu_tokenizer *t, uint64_t seed, int rounds) {
    int V = rmu_tok_vocab_size(t);
    for (int r = 0; r < rounds; r++) {
        int ids[200], n = 0, len = 1 + (int)(rng(&seed) % 60);
        while (n < len) {
            int id = (int)(rng(&seed) % (uint64_t)V);
            const char *p = rmu_tok_piece(t, id);
            if (!strncmp(p, "<0x", 3) && strlen(p) == 6) {
                unsigned char c[4];
                int k = rand_char(&seed, c);
                for (int i = 0; i < k; i++) ids[n++] = byte_id(t, c[i]);
            } else
                ids[n++] = id;
        }
        char *full = decode(t, ids, n, 1);
        char *st = stream_all(t, ids, n, 256);
        if (strcmp(full, st)) fail_msg("round %d: stream '%s' != decode '%s'", r, st, full);
        assert_true(utf8_ok(st));
        free(full), free(st);
    }
}

static void write_text(const char *path, const char *text) {
    rmu_err e;
    if (rmu_file_write_atomic(path, text, strlen(text), &e)) fail_msg("%s", e.msg);
}

/* Mistral's tokenizer.json rewritten into the legacy normalizer form, in a temp folder. */
static rmu_tokenizer *load_mistral_legacy(void **state, const char *src) {
    char dir[4096], dst[4200];
    tmp_dir(state, "legacy", dir, sizeof dir);
    json_error_t je;
    json_t *j = json_load_file(src, 0, &je);
    assert_non_null(j);
    json_t *norm = json_pack("{s:s, s:[{s:s, s:s}, {s:s, s:{s:s}, s:s}]}", "type", "Sequence", "normalizers", "type",
                             "Prepend", "prepend", "\xe2\x96\x81", "type", "Replace", "pattern", "String", " ",
                             "content", "\xe2\x96\x81");
    json_object_set_new(j, "normalizer", norm);
    json_object_set_new(j, "pre_tokenizer", json_null());
    snprintf(dst, sizeof dst, "%s/tokenizer.json", dir);
    assert_int_equal(json_dump_file(j, dst, 0), 0);
    json_decref(j);
    rmu_err e;
    rmu_tokenizer *t = rmu_tok_load(dir, &e);
    if (!t) fail_msg("%s", e.msg);
    return t;
}

/* ---------------------------------------------------------------- Mistral */

static void mistral_vectors(const rmu_tokenizer *t) {
    /* shared/README.md */
    CHECK(t, "Hello world!", 1, 22557, 1526, 28808);
    CHECK(t, "grabbed", 1, 13300);
    CHECK(t, " grabbed", 1, 28705, 13300);
    CHECK(t, "\n", 1, 28705, 13);
    /* mistral-tokenizer-js's own vectors: space runs, byte fallback, equal-rank order */
    CHECK(t, "           grabbed", 1, 17422, 13300);
    CHECK(t, " \n", 1, 259, 13);
    CHECK(t, "\ttabs\t\t\t\tout here", 1, 28705, 12, 24856, 12, 12, 12, 12, 406, 1236);
    CHECK(t, "ax\n####\nboo", 1, 6056, 13, 2000, 13, 1798, 28709);
    CHECK(t, "\xe9\x95\x87", 1, 28705, 29780);
    CHECK(t, "\xf0\x9f\xa6\x99", 1, 28705, 243, 162, 169, 156);
    CHECK(t, "\xf0\x9f\xa6\x99\xea\x99\x8a", 1, 28705, 243, 162, 169, 156, 237, 156, 141);
    CHECK(t, "\xea\x99\x8a\xf0\x9f\xa6\x99", 1, 28705, 237, 156, 141, 243, 162, 169, 156);
    check_ids(t, "grabbed", 7, 0, IDS(13300));
    int *ids, n;
    rmu_err e;
    assert_int_equal(rmu_tok_encode(t, "", 0, 1, &ids, &n, &e), 0);
    assert_int_equal(n, 1); /* HF: "" -> [BOS] */
    assert_int_equal(ids[0], 1);
    free(ids);
    assert_int_equal(rmu_tok_encode(t, "", 0, 0, &ids, &n, &e), 0);
    assert_int_equal(n, 0);
    free(ids);
    assert_int_equal(rmu_tok_vocab_size(t), 32000);
    assert_int_equal(rmu_tok_bos_id(t), 1);
    assert_int_equal(rmu_tok_eos_id(t), 2);
    assert_int_equal(rmu_tok_unk_id(t), 0);
    assert_string_equal(rmu_tok_bos_str(t), "<s>");
    assert_string_equal(rmu_tok_eos_str(t), "</s>");
    assert_string_equal(rmu_tok_piece(t, 13), "<0x0A>");
    assert_null(rmu_tok_piece(t, 32000));
    assert_true(rmu_tok_is_special(t, 2));
    assert_false(rmu_tok_is_special(t, 13300));
}

static void test_mistral_metaspace(void **state) {
    rmu_tokenizer *t;
    LOAD_SHARED_OR_SKIP(t, "data/mistral-7b-v0.1");
    mistral_vectors(t);
    assert_int_equal(rmu_tok_add_bos(t), 1);
    assert_int_equal(rmu_tok_add_eos(t), 0);
    assert_int_equal(rmu_tok_pad_id(t), -1); /* pad_token null */
    assert_null(rmu_tok_chat_template(t));
    /* prepend_scheme "first": no "▁" for the text after an added token */
    CHECK(t, "a</s>b", 1, 264, 2, 28726);
    CHECK(t, "</s>b", 1, 2, 28726);
    rmu_tok_free(t);
}

static void test_mistral_legacy_form(void **state) {
    rmu_tokenizer *m;
    LOAD_SHARED_OR_SKIP(m, "data/mistral-7b-v0.1");
    rmu_tokenizer *t = load_mistral_legacy(state, tu_shared("data/mistral-7b-v0.1/tokenizer.json"));
    mistral_vectors(t);
    /* legacy Prepend normalizes each segment between added tokens: "b" gets its "▁" */
    CHECK(t, "a</s>b", 1, 264, 2, 287);
    CHECK(t, "</s>b", 1, 2, 287);
    /* identical to the Metaspace form on texts without added tokens */
    const char *texts[] = {"  two  spaces ", "Caf\xc3\xa9 na\xc3\xafve \xe2\x82\xac" "5", "tab\tand\r\nCRLF", "x",
                           "The quick brown fox jumps over the lazy dog.", "\xe2\x96\x81 literal metaspace"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        int *a, *b, na, nb;
        rmu_err e;
        assert_int_equal(rmu_tok_encode(m, texts[i], strlen(texts[i]), 1, &a, &na, &e), 0);
        assert_int_equal(rmu_tok_encode(t, texts[i], strlen(texts[i]), 1, &b, &nb, &e), 0);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, sizeof(int) * (size_t)na);
        free(a), free(b);
    }
    rmu_tok_free(t);
    rmu_tok_free(m);
}

static void test_mistral_specials_in_text(void **state) {
    rmu_tokenizer *t;
    LOAD_SHARED_OR_SKIP(t, "data/mistral-7b-v0.1");
    /* added tokens are matched in the raw text first; the rest is normalized + BPE'd */
    int *ids, n;
    rmu_err e;
    const char *s = "<|user|>\nhi</s>";
    assert_int_equal(rmu_tok_encode(t, s, strlen(s), 1, &ids, &n, &e), 0);
    assert_int_equal(ids[n - 1], 2);
    for (int i = 1; i < n - 1; i++) assert_int_not_equal(ids[i], 2);
    char *d = decode(t, ids, n, 0);
    assert_string_equal(d, "<s> <|user|>\nhi</s>");
    free(d);
    d = decode(t, ids, n, 1);
    assert_string_equal(d, "<|user|>\nhi");
    free(d), free(ids);
    CHECK(t, "x</s></s>y", 1, 1318, 2, 2, 28724);
    CHECK(t, "<s>", 1, 1);
    CHECK(t, "<unk>", 1, 0);
    check_ids(t, "< /s>", 5, 0, IDS(523, 732, 28713, 28767));
    rmu_tok_free(t);
}

static void test_mistral_decode(void **state) {
    rmu_tokenizer *t;
    LOAD_SHARED_OR_SKIP(t, "data/mistral-7b-v0.1");
    char *d = decode(t, IDS(1, 22557, 1526, 28808), 0);
    assert_string_equal(d, "<s> Hello world!"); /* HF decode keeps specials; Strip only at the start */
    free(d);
    d = decode(t, IDS(1, 22557, 1526, 28808), 1);
    assert_string_equal(d, "Hello world!");
    free(d);
    d = decode(t, IDS(1, 28705, 13300), 1);
    assert_string_equal(d, " grabbed");
    free(d);
    /* byte fallback runs: valid UTF-8 fuses; an invalid run is U+FFFD per byte (HF) */
    int euro[] = {3 + 0xE2, 3 + 0x82, 3 + 0xAC};
    d = decode(t, euro, 3, 1);
    assert_string_equal(d, "\xe2\x82\xac");
    free(d);
    d = decode(t, euro, 2, 1);
    assert_string_equal(d, "\xef\xbf\xbd\xef\xbf\xbd");
    free(d);
    d = decode(t, IDS(3 + 0x41, 3 + 0xFF), 1);
    assert_string_equal(d, "\xef\xbf\xbd\xef\xbf\xbd"); /* the valid 'A' goes with its run */
    free(d);
    /* a skipped special token does not split a byte run (HF drops it before decoding) */
    d = decode(t, IDS(3 + 0xE2, 2, 3 + 0x82, 3 + 0xAC), 1);
    assert_string_equal(d, "\xe2\x82\xac");
    free(d);
    /* the bytes of "▁" decode to a literal "▁": Replace runs on pieces, before ByteFallback */
    d = decode(t, IDS(22557, 3 + 0xE2, 3 + 0x96, 3 + 0x81), 1);
    assert_string_equal(d, "Hello\xe2\x96\x81");
    free(d);
    rmu_err e;
    assert_null(rmu_tok_decode(t, IDS(1, 32000), 0, &e));
    assert_non_null(strstr(e.msg, "token id 32000 is out of range [0, 32000)"));
    assert_null(rmu_tok_decode(t, IDS(-1), 0, &e));
    /* round trips */
    const char *texts[] = {"Hello world!", " leading", "two  spaces", "caf\xc3\xa9 \xf0\x9f\xa6\x99 \xe9\x95\x87",
                           "line\nbreak\ttab", "", " "};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        int *ids, n;
        assert_int_equal(rmu_tok_encode(t, texts[i], strlen(texts[i]), 1, &ids, &n, &e), 0);
        d = decode(t, ids, n, 1);
        assert_string_equal(d, texts[i]);
        free(d), free(ids);
    }
    rmu_tok_free(t);
}

static void test_mistral_stream(void **state) {
    rmu_tokenizer *t;
    LOAD_SHARED_OR_SKIP(t, "data/mistral-7b-v0.1");
    stream_matches_decode(t, 0x9e3779b97f4a7c15ull, 300);
    /* a byte run of lone continuation bytes: U+FFFD per byte in both */
    int bad[] = {3 + 0x80, 3 + 0xBF, 22557, 3 + 0x90};
    char *full = decode(t, bad, 4, 1), *st = stream_all(t, bad, 4, 64);
    assert_string_equal(full, st);
    assert_string_equal(st, "\xef\xbf\xbd\xef\xbf\xbd Hello\xef\xbf\xbd");
    free(full), free(st);
    /* the documented HF corner: a valid character followed by a bad byte in one run. HF turns
     * the whole run into U+FFFD; a stream has already shown the 'A' */
    int mixed[] = {3 + 0x41, 3 + 0xFF};
    st = stream_all(t, mixed, 2, 64);
    assert_string_equal(st, "A\xef\xbf\xbd");
    free(st);
    /* an incomplete character at the end comes out of flush as U+FFFD per byte */
    st = stream_all(t, IDS(22557, 3 + 0xE2, 3 + 0x82), 64);
    assert_string_equal(st, "Hello\xef\xbf\xbd\xef\xbf\xbd");
    free(st);
    /* continuation (started = 1): the first space is kept */
    rmu_tok_stream s;
    char piece[64];
    rmu_tok_stream_init(&s, t);
    s.started = 1;
    assert_int_equal(rmu_tok_stream_push(&s, 22557, piece, sizeof piece), 6);
    assert_string_equal(piece, " Hello");
    /* nothing is printed for specials and out-of-range ids */
    assert_int_equal(rmu_tok_stream_push(&s, 2, piece, sizeof piece), 0);
    assert_int_equal(rmu_tok_stream_push(&s, 99999, piece, sizeof piece), 0);
    assert_string_equal(piece, "");
    /* a small cap cuts at a character boundary, never inside one */
    rmu_tok_stream_init(&s, t);
    int k = rmu_tok_stream_push(&s, 29780, piece, 3); /* "镇" is 3 bytes: no room */
    assert_int_equal(k, 0);
    rmu_tok_free(t);
}

static void test_mistral_speed(void **state) {
    TU_NEED_SHARED(path, "data/wikitext-2-raw/wiki.test.raw");
    rmu_tokenizer *t;
    LOAD_SHARED_OR_SKIP(t, "data/mistral-7b-v0.1");
    rmu_err e;
    size_t len;
    char *text = rmu_file_read_all(path, &len, &e);
    if (!text) fail_msg("%s", e.msg);
    /* CPU time, not wall time: the test machines are shared */
    clock_t c0 = clock();
    int *ids, n;
    assert_int_equal(rmu_tok_encode(t, text, len, 1, &ids, &n, &e), 0); /* the whole file as one text */
    double s = (double)(clock() - c0) / CLOCKS_PER_SEC;
    print_message("wikitext-2 test: %zu bytes -> %d tokens in %.3f s CPU (one text)\n", len, n, s);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__OPTIMIZE_SIZE__)
    assert_true(s < 5.0); /* about 1 s at -O2; sanitizer builds are exempt */
#endif
    char *d = decode(t, ids, n, 1);
    assert_string_equal(d, text);
    free(d), free(ids), free(text);
    rmu_tok_free(t);
}

/* ---------------------------------------------------------------- stories260K */

static void test_stories260k(void **state) {
    TU_NEED_SHARED(path, "models/stories260K/reference.json");
    rmu_tokenizer *t;
    LOAD_SHARED_OR_SKIP(t, "models/stories260K");
    CHECK(t, "Once upon a time", 1, 403, 407, 261, 378);
    json_error_t je;
    json_t *ref = json_load_file(path, 0, &je);
    if (ref) { /* decode(prompt + greedy continuation) is llama2.c's recorded text */
        json_t *p = json_object_get(ref, "prompt_ids"), *g = json_object_get(ref, "greedy_ids");
        int n = (int)(json_array_size(p) + json_array_size(g)), *ids = malloc(sizeof(int) * (size_t)n), k = 0;
        for (size_t i = 0; i < json_array_size(p); i++) ids[k++] = (int)json_integer_value(json_array_get(p, i));
        for (size_t i = 0; i < json_array_size(g); i++) ids[k++] = (int)json_integer_value(json_array_get(g, i));
        char *d = decode(t, ids, n, 1), *st = stream_all(t, ids, n, 64);
        assert_string_equal(d, json_string_value(json_object_get(ref, "greedy_text")));
        assert_string_equal(st, d);
        free(d), free(st), free(ids);
        json_decref(ref);
    }
    stream_matches_decode(t, 12345, 100);
    rmu_tok_free(t);
}

/* ---------------------------------------------------------------- hand-written tokenizers */

#define HDR "{\"version\": \"1.0\", "
#define LEGACY_NORM                                                                                  \
    "\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": "  \
    "\"\xe2\x96\x81\"}, {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": "       \
    "\"\xe2\x96\x81\"}]}, "
#define LLAMA_DEC                                                                                    \
    "\"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": "       \
    "{\"String\": \"\xe2\x96\x81\"}, \"content\": \" \"}, {\"type\": \"ByteFallback\"}, {\"type\": "   \
    "\"Fuse\"}, {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]}, "

static rmu_tokenizer *load_text(const char *json) {
    rmu_err e;
    rmu_tokenizer *t = rmu_tok_load_json_text(json, strlen(json), "hand.json", &e);
    if (!t) fail_msg("%s", e.msg);
    return t;
}

static void test_handmade_bpe(void **state) {
    /* merges as [a, b] pairs; no byte fallback: unknown characters are <unk>, fused or not */
    const char *base = HDR LEGACY_NORM LLAMA_DEC
        "\"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": true}, {\"id\": 1, \"content\": "
        "\"<s>\", \"special\": true}, {\"id\": 9, \"content\": \"<|user|>\", \"special\": true, \"lstrip\": true, "
        "\"rstrip\": true}],"
        "\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"fuse_unk\": %s, \"vocab\": {\"<unk>\": 0, "
        "\"<s>\": 1, \"\xe2\x96\x81\": 2, \"a\": 3, \"b\": 4, \"\xe2\x96\x81" "a\": 5, \"ab\": 6, "
        "\"\xe2\x96\x81" "ab\": 7, \"bb\": 8}, \"merges\": [[\"\xe2\x96\x81\", \"a\"], [\"a\", \"b\"], "
        "[\"\xe2\x96\x81" "a\", \"b\"], [\"b\", \"b\"]]}}";
    char json[2048];
    snprintf(json, sizeof json, base, "true");
    rmu_tokenizer *t = load_text(json);
    assert_int_equal(rmu_tok_vocab_size(t), 10);
    CHECK(t, "ab ab", 1, 7, 7);
    CHECK(t, "bbb", 1, 2, 8, 4); /* equal ranks go left to right */
    CHECK(t, "a xyz", 1, 5, 2, 0);
    CHECK(t, "a  <|user|>  b", 1, 5, 9, 2, 4); /* lstrip/rstrip eat the spaces around it */
    assert_true(rmu_tok_is_special(t, 9));
    assert_string_equal(rmu_tok_piece(t, 9), "<|user|>");
    assert_int_equal(rmu_tok_piece_id(t, "<|user|>"), 9);
    rmu_tok_free(t);
    snprintf(json, sizeof json, base, "false");
    t = load_text(json);
    CHECK(t, "a xyz", 1, 5, 2, 0, 0, 0);
    rmu_tok_free(t);
}

static void test_handmade_metaspace(void **state) {
    /* Metaspace split true: words start at each "▁"; scheme first vs always after an added token */
    const char *base = HDR LLAMA_DEC
        "\"added_tokens\": [{\"id\": 1, \"content\": \"<s>\", \"special\": true}],"
        "\"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\", \"prepend_scheme\": "
        "\"%s\", \"split\": %s},"
        "\"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"vocab\": {\"<unk>\": 0, \"<s>\": 1, "
        "\"\xe2\x96\x81\": 2, \"a\": 3, \"\xe2\x96\x81" "a\": 4, \"a\xe2\x96\x81\": 5, %s}, \"merges\": "
        "[\"a \xe2\x96\x81\", \"\xe2\x96\x81 a\"]}}";
    char bytes[8192] = "", json[16384];
    for (int b = 0; b < 256; b++)
        snprintf(bytes + strlen(bytes), 32, "%s\"<0x%02X>\": %d", b ? ", " : "", b, 6 + b);
    snprintf(json, sizeof json, base, "first", "false", bytes);
    rmu_tokenizer *t = load_text(json);
    CHECK(t, "a a", 1, 2, 5, 3);      /* one word: "a ▁" (rank 0) wins over "▁ a" */
    CHECK(t, "a<s>a", 1, 4, 1, 3);    /* first: no "▁" after <s> */
    CHECK(t, "b", 1, 2, 6 + 'b');     /* byte fallback */
    rmu_tok_free(t);
    snprintf(json, sizeof json, base, "always", "true", bytes);
    t = load_text(json);
    CHECK(t, "a a", 1, 4, 4);         /* split: ▁a | ▁a, "a▁" can no longer form */
    CHECK(t, "a<s>a", 1, 4, 1, 4);    /* always: every segment gets "▁" */
    rmu_tok_free(t);
    snprintf(json, sizeof json, base, "never", "true", bytes);
    t = load_text(json);
    CHECK(t, "a a", 1, 3, 4);
    rmu_tok_free(t);
}

/* ---------------------------------------------------------------- validation */

static void expect_load_error(const char *json, const char *want) {
    rmu_err e = {{0}};
    rmu_tokenizer *t = rmu_tok_load_json_text(json, strlen(json), "bad/tokenizer.json", &e);
    if (t) {
        rmu_tok_free(t);
        fail_msg("loaded %s, expected an error containing '%s'", json, want);
    }
    if (!strstr(e.msg, want) || strncmp(e.msg, "bad/tokenizer.json: ", 20))
        fail_msg("message '%s' does not name the file and contain '%s'", e.msg, want);
}

static void test_malformed(void **state) {
    expect_load_error("{\"model\": ", "not valid JSON: ");
    expect_load_error("[1, 2]", "top level must be a JSON object");
    expect_load_error("{\"version\": \"1.0\"}", "missing \"model\" object");
    expect_load_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", 0.0]]}}",
                      "model.type is 'Unigram'; only BPE tokenizers are supported");
    expect_load_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", "model.type is 'WordPiece'");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": [\"a\", \"b\"]}}",
                      "model.vocab must be an object mapping pieces to ids");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {}}}", "model.vocab is empty");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 2}}}",
                      "model.vocab: id 2 of piece 'b' is out of range [0, 2)");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}}}", "id -1 of piece 'a' is out of range");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}}}",
                      "model.vocab: id 0 is used by both 'a' and 'b'");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"a\": 1}}}", "duplicate object key");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"0\"}}}", "id of piece 'a' is not an integer");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a c\"]}}",
                      "model.merges[0] 'a c' names unknown piece 'c'");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [[\"x\", \"b\"]]}}",
                      "model.merges[0] 'x b' names unknown piece 'x'");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}",
                      "model.merges[0] 'a b' makes 'ab', which is not in the vocab");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"ab\"]}}",
                      "model.merges[0] 'ab' is not two pieces separated by one space");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [7]}}",
                      "model.merges[0] must be a \"a b\" string or an [a, b] pair");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"unk_token\": \"<unk>\"}}",
                      "model.unk_token '<unk>' is not in the vocab");
    expect_load_error("{\"added_tokens\": [{\"id\": 0, \"content\": \"<s>\"}], \"model\": {\"type\": \"BPE\", "
                      "\"vocab\": {\"a\": 0}}}",
                      "added_tokens[0]: id 0 is '<s>' but the vocab has 'a' there");
    expect_load_error("{\"added_tokens\": [{\"id\": 5, \"content\": \"<s>\"}], \"model\": {\"type\": \"BPE\", "
                      "\"vocab\": {\"a\": 0}}}",
                      "ids are not contiguous: an added token has id 5 but the vocab has 1 pieces");
    expect_load_error("{\"added_tokens\": [{\"id\": 2, \"content\": \"<s>\"}, {\"id\": 0, \"content\": \"a\"}], "
                      "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}",
                      "ids are not contiguous: id 1 has no piece");
    expect_load_error("{\"added_tokens\": [{\"content\": \"<s>\"}], \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}",
                      "added_tokens[0].id must be an integer");
    expect_load_error("{\"normalizer\": {\"type\": \"NFKC\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}",
                      "normalizer type 'NFKC' is not supported");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"vocab\": "
                      "{\"a\": 0}}}",
                      "pre_tokenizer type 'ByteLevel' is not supported");
    expect_load_error("{\"decoder\": {\"type\": \"WordPiece\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}",
                      "decoder type 'WordPiece' is not supported");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"continuing_subword_prefix\": \"##\"}}",
                      "model.continuing_subword_prefix is not supported");
}

static void test_load_errors(void **state) {
    rmu_err e;
    assert_null(rmu_tok_load("/nonexistent/model", &e));
    assert_string_equal(e.msg, "/nonexistent/model/tokenizer.json: not found (a model folder needs its tokenizer.json)");
    char dir[4096], p[4200];
    tmp_dir(state, "cfg", dir, sizeof dir);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    write_text(p, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"<s>\": 0, \"</s>\": 1, \"a\": 2}}}");
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    write_text(p, "{\"bos_token\": \"<bos>\"}");
    assert_null(rmu_tok_load(dir, &e));
    assert_non_null(strstr(e.msg, "tokenizer_config.json: bos_token '<bos>' is not in the vocab of"));
    write_text(p, "{\"add_bos_token\": \"yes\"}");
    assert_null(rmu_tok_load(dir, &e));
    assert_non_null(strstr(e.msg, "tokenizer_config.json: add_bos_token must be true or false"));
    write_text(p, "{\"add_bos_token\": tr");
    assert_null(rmu_tok_load(dir, &e));
    assert_non_null(strstr(e.msg, "tokenizer_config.json: not valid JSON"));
    /* a working config: objects for tokens, no BOS, a pad, a chat template list, a huge int */
    write_text(p, "{\"add_bos_token\": false, \"add_eos_token\": true, \"bos_token\": {\"content\": \"<s>\"}, "
                  "\"pad_token\": \"a\", \"model_max_length\": 1000000000000000019884624838656, "
                  "\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"}, {\"name\": \"default\", "
                  "\"template\": \"D\"}]}");
    rmu_tokenizer *t = rmu_tok_load(dir, &e);
    if (!t) fail_msg("%s", e.msg);
    assert_int_equal(rmu_tok_add_bos(t), 0);
    assert_int_equal(rmu_tok_add_eos(t), 1);
    assert_int_equal(rmu_tok_bos_id(t), 0);
    assert_int_equal(rmu_tok_eos_id(t), 1);
    assert_int_equal(rmu_tok_pad_id(t), 2);
    assert_string_equal(rmu_tok_chat_template(t), "D");
    rmu_tok_free(t);
}

/* ---------------------------------------------------------------- synthetic */

static const char *CORPUS =
    "The cat sat on the mat. The dog sat on the log. A cat and a dog met on the mat, and the cat ran.\n"
    "Caf\xc3\xa9 au lait, caf\xc3\xa9 noir: the caf\xc3\xa9 opens at nine. \xe2\x82\xac 5 for two caf\xc3\xa9s.\n"
    "Then the dog and the cat sat together on the mat until the sun set over the log.\n";

static char *slurp(const char *dir, const char *name) {
    rmu_err e;
    char *s = rmu_file_read_all(tu_path(dir, name), NULL, &e);
    if (!s) fail_msg("%s", e.msg);
    return s;
}

static void test_synthetic(void **state) {
    char dir[4096], dir2[4096];
    snprintf(dir, sizeof dir, "%s", tu_path(*state, "syn"));
    snprintf(dir2, sizeof dir2, "%s", tu_path(*state, "syn2"));
    rmu_err e;
    size_t clen = strlen(CORPUS);
    /* repeat the corpus so pairs are frequent */
    char *big = malloc(clen * 20 + 1);
    for (int i = 0; i < 20; i++) memcpy(big + clen * (size_t)i, CORPUS, clen);
    big[clen * 20] = 0;
    if (rmu_bpe_write_synthetic(dir, 512, big, clen * 20, &e)) fail_msg("%s", e.msg);
    rmu_tokenizer *t = rmu_tok_load(dir, &e);
    if (!t) fail_msg("%s", e.msg);
    assert_int_equal(rmu_tok_vocab_size(t), 512);
    assert_string_equal(rmu_tok_piece(t, 0), "<unk>");
    assert_string_equal(rmu_tok_piece(t, 1), "<s>");
    assert_string_equal(rmu_tok_piece(t, 2), "</s>");
    assert_string_equal(rmu_tok_piece(t, 3), "<0x00>");
    assert_string_equal(rmu_tok_piece(t, 258), "<0xFF>");
    assert_string_equal(rmu_tok_piece(t, 259), "\xe2\x96\x81");
    assert_int_equal(rmu_tok_bos_id(t), 1);
    assert_int_equal(rmu_tok_eos_id(t), 2);
    assert_int_equal(rmu_tok_add_bos(t), 1);
    assert_true(rmu_tok_is_special(t, 2));
    assert_true(rmu_tok_piece_id(t, "\xe2\x96\x81the") > 259); /* learned */
    assert_true(rmu_tok_piece_id(t, "\xc3\xa9") > 259);        /* a frequent non-ASCII char */
    /* frequent text compresses; random text (incl. non-ASCII) round trips exactly */
    int *ids, n;
    assert_int_equal(rmu_tok_encode(t, CORPUS, clen, 1, &ids, &n, &e), 0);
    assert_true(n < (int)clen / 2);
    char *d = decode(t, ids, n, 1);
    assert_string_equal(d, CORPUS);
    free(d), free(ids);
    uint64_t seed = 77;
    for (int r = 0; r < 100; r++) {
        unsigned char text[400];
        size_t k = 0;
        int len = (int)(rng(&seed) % 80);
        for (int i = 0; i < len; i++) {
            if (rng(&seed) % 3 == 0) text[k++] = " \n\tthe cat"[rng(&seed) % 10];
            else k += (size_t)rand_char(&seed, text + k);
        }
        text[k] = 0;
        assert_int_equal(rmu_tok_encode(t, (char *)text, k, 1, &ids, &n, &e), 0);
        for (int i = 0; i < n; i++) assert_true(ids[i] >= 0 && ids[i] < 512);
        d = decode(t, ids, n, 1);
        assert_string_equal(d, (char *)text);
        char *st = stream_all(t, ids, n, 64);
        assert_string_equal(st, d);
        free(st), free(d), free(ids);
    }
    stream_matches_decode(t, 4242, 200);
    /* special tokens in the text of a synthetic tokenizer */
    CHECK(t, "</s>", 1, 2);
    rmu_tok_free(t);
    /* deterministic: the same inputs give the same files */
    if (rmu_bpe_write_synthetic(dir2, 512, big, clen * 20, &e)) fail_msg("%s", e.msg);
    char *a = slurp(dir, "tokenizer.json"), *b = slurp(dir2, "tokenizer.json");
    assert_string_equal(a, b);
    free(a), free(b);
    a = slurp(dir, "tokenizer_config.json");
    assert_non_null(strstr(a, "\"add_bos_token\": true"));
    assert_non_null(strstr(a, "\"unk_token\": \"<unk>\""));
    free(a);
    /* no corpus: bytes + "▁" + unreachable fillers, still exactly vocab_size and usable */
    if (rmu_bpe_write_synthetic(dir2, 300, NULL, 0, &e)) fail_msg("%s", e.msg);
    t = rmu_tok_load(dir2, &e);
    if (!t) fail_msg("%s", e.msg);
    assert_int_equal(rmu_tok_vocab_size(t), 300);
    CHECK(t, "hi", 1, 259, 3 + 'h', 3 + 'i');
    rmu_tok_free(t);
    /* a corpus too small to fill 2048 pieces is completed with fillers */
    if (rmu_bpe_write_synthetic(dir2, 2048, CORPUS, clen, &e)) fail_msg("%s", e.msg);
    t = rmu_tok_load(dir2, &e);
    if (!t) fail_msg("%s", e.msg);
    assert_int_equal(rmu_tok_vocab_size(t), 2048);
    assert_int_equal(rmu_tok_encode(t, CORPUS, clen, 0, &ids, &n, &e), 0);
    d = decode(t, ids, n, 1);
    assert_string_equal(d, CORPUS);
    free(d), free(ids);
    rmu_tok_free(t);
    assert_int_equal(rmu_bpe_write_synthetic(dir2, 259, NULL, 0, &e), -1);
    assert_non_null(strstr(e.msg, "vocab_size 259 is out of range [260,"));
    free(big);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mistral_metaspace), cmocka_unit_test(test_mistral_legacy_form),
        cmocka_unit_test(test_mistral_specials_in_text), cmocka_unit_test(test_mistral_decode),
        cmocka_unit_test(test_mistral_stream), cmocka_unit_test(test_mistral_speed),
        cmocka_unit_test(test_stories260k), cmocka_unit_test(test_handmade_bpe),
        cmocka_unit_test(test_handmade_metaspace), cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_load_errors), cmocka_unit_test(test_synthetic),
    };
    return cmocka_run_group_tests(tests, tu_setup_tmp, tu_teardown_tmp);
}

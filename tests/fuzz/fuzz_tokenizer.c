/* fuzz_tokenizer.c - libFuzzer entry for the tokenizer. An even first byte: the rest is
 * tokenizer.json text for rmu_tok_load_json_text, which must fail with a message or give a
 * tokenizer that encodes sample texts to in-range ids. An odd first byte: the rest is text
 * encoded with a small fixed tokenizer (byte fallback, merges, added tokens with lstrip/
 * rstrip); the ids must decode back to exactly that text when it is valid UTF-8, and the
 * stream decoder must agree with the full decoder. Only the first TEXT_MAX bytes of a text
 * are encoded: the JSON seeds make libFuzzer grow inputs to ~15 KB, and a text that long
 * reaches no code a shorter one does not while costing 10x the time per execution.
 * `make fuzz`, then build-fuzz/fuzz_tokenizer [corpus dir]. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

static int valid_utf8(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        int k = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        if (!k || i + (size_t)k > n) return 0;
        unsigned lo = 0x80, hi = 0xBF;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
        if (k > 1 && (s[i + 1] < lo || s[i + 1] > hi)) return 0;
        for (int j = 2; j < k; j++)
            if (s[i + (size_t)j] < 0x80 || s[i + (size_t)j] > 0xBF) return 0;
        i += (size_t)k;
    }
    return 1;
}

/* encode, check ids, decode both ways and stream; returns the skip-special decode */
static char *exercise(const rmu_tokenizer *t, const char *text, size_t len) {
    int *ids = NULL, n = 0;
    rmu_err e;
    e.msg[0] = 0;
    if (rmu_tok_encode(t, text, len, 1, &ids, &n, &e)) {
        if (!e.msg[0]) abort();
        return NULL;
    }
    int V = rmu_tok_vocab_size(t);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V) abort();
    char *d0 = rmu_tok_decode(t, ids, n, 0, &e), *d1 = rmu_tok_decode(t, ids, n, 1, &e);
    if (!d0 || !d1) abort();
    /* stream: every piece fits and the whole is valid UTF-8 */
    rmu_tok_stream st;
    rmu_tok_stream_init(&st, t);
    char piece[256];
    for (int i = 0; i <= n; i++) {
        int k = i < n ? rmu_tok_stream_push(&st, ids[i], piece, sizeof piece) : rmu_tok_stream_flush(&st, piece, sizeof piece);
        if (k < 0 || (size_t)k >= sizeof piece || piece[k]) abort(); /* (a <0x00> piece is a NUL inside) */
        if (!valid_utf8((const unsigned char *)piece, (size_t)k)) abort();
    }
    free(ids);
    free(d0);
    return d1;
}

/* ▁-prefixed words, a few merges, byte fallback, specials and an lstrip/rstrip added token */
static const char TINY[] =
    "{\"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": true}, {\"id\": 1, \"content\": \"<s>\", "
    "\"special\": true}, {\"id\": 2, \"content\": \"</s>\", \"special\": true}, {\"id\": 265, \"content\": "
    "\"<|user|>\", \"special\": true, \"lstrip\": true, \"rstrip\": true}],"
    "\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \"\xe2\x96\x81\"}, "
    "{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\xe2\x96\x81\"}]},"
    "\"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": "
    "\"\xe2\x96\x81\"}, \"content\": \" \"}, {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}, {\"type\": "
    "\"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]},"
    "\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"fuse_unk\": true, \"byte_fallback\": true, "
    "\"vocab\": {%s, \"\xe2\x96\x81\": 259, \"a\": 260, \"b\": 261, \"\xe2\x96\x81" "a\": 262, \"ab\": 263, "
    "\"\xe2\x96\x81" "ab\": 264}, \"merges\": [\"\xe2\x96\x81 a\", \"a b\", \"\xe2\x96\x81" "a b\"]}}";

/* made once: building it on every input took half of each execution */
static const rmu_tokenizer *tiny(void) {
    static rmu_tokenizer *t;
    if (t) return t;
    char vocab[8192] = "\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2";
    for (int b = 0; b < 256; b++) snprintf(vocab + strlen(vocab), 24, ", \"<0x%02X>\": %d", b, 3 + b);
    char json[16384];
    snprintf(json, sizeof json, TINY, vocab);
    rmu_err e;
    if (!(t = rmu_tok_load_json_text(json, strlen(json), "tiny.json", &e))) abort();
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    rmu_err e;
    e.msg[0] = 0;
    if (!(data[0] & 1)) {
        rmu_tokenizer *t = rmu_tok_load_json_text((const char *)data + 1, size - 1, "fuzz.json", &e);
        if (!t) {
            if (!e.msg[0] || !memchr(e.msg, 0, sizeof e.msg)) abort(); /* every failure explains itself */
            return 0;
        }
        static const char *samples[] = {"Hello world!", " a  b\n\tc", "</s><s>x", "\xf0\x9f\xa6\x99\xe2\x96\x81", ""};
        for (size_t i = 0; i < sizeof samples / sizeof *samples; i++) free(exercise(t, samples[i], strlen(samples[i])));
        rmu_tok_free(t);
        return 0;
    }
    const rmu_tokenizer *t = tiny();
    enum { TEXT_MAX = 512 };
    const char *text = (const char *)data + 1;
    size_t len = size - 1 < TEXT_MAX ? size - 1 : TEXT_MAX;
    char *d = exercise(t, text, len);
    if (!d) abort();
    /* round trip holds for valid UTF-8 without added-token text (those are decoded as
     * special, and lstrip/rstrip eat spaces) and without a literal "▁" (which decodes to a
     * space, as in HF and SentencePiece) */
    if (valid_utf8((const unsigned char *)text, len) && !memchr(text, 0, len) && !memmem(text, len, "<s>", 3) &&
        !memmem(text, len, "</s>", 4) && !memmem(text, len, "<unk>", 5) && !memmem(text, len, "<|user|>", 8) &&
        !memmem(text, len, "\xe2\x96\x81", 3) &&
        (strlen(d) != len || memcmp(d, text, len)))
        abort();
    free(d);
    return 0;
}

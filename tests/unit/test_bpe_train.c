/* test_bpe_train.c - the BPE trainer directly: the fixed head of the vocab, characters
 * kept only when seen twice, words cut as the encoder sees them, merge order by count
 * then by the byte-wise smaller merged string, fillers, determinism and the vocab_size
 * range. (The synthetic tokenizer it writes is loaded and round-tripped in
 * test_tokenizer.c.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "testutil.h"
#include "tokenizer/bpe_train.h"

#define META "\xe2\x96\x81"

static int find(const rmu_bpe_vocab *v, const char *s) {
    for (int i = 0; i < v->n; i++)
        if (v->len[i] == strlen(s) && !memcmp(v->piece[i], s, v->len[i])) return i;
    return -1;
}

/* "a b" for merge k */
static const char *merge_str(const rmu_bpe_vocab *v, int k, char *buf, size_t cap) {
    snprintf(buf, cap, "%s %s", v->piece[v->merge[2 * k]], v->piece[v->merge[2 * k + 1]]);
    return buf;
}

static void test_head_and_fillers(void **state) {
    rmu_bpe_vocab v;
    rmu_err e;
    OK(rmu_bpe_train(NULL, 0, 300, &v, &e));
    assert_int_equal(v.n, 300);
    assert_int_equal(v.n_merges, 0);
    assert_string_equal(v.piece[0], "<unk>");
    assert_string_equal(v.piece[1], "<s>");
    assert_string_equal(v.piece[2], "</s>");
    assert_string_equal(v.piece[3], "<0x00>");
    assert_string_equal(v.piece[3 + 0x41], "<0x41>");
    assert_string_equal(v.piece[258], "<0xFF>");
    assert_string_equal(v.piece[259], META);
    assert_string_equal(v.piece[260], "<filler_260>");
    assert_string_equal(v.piece[299], "<filler_299>");
    for (int i = 0; i < v.n; i++) assert_int_equal(strlen(v.piece[i]), v.len[i]);
    rmu_bpe_vocab_free(&v);
    /* the smallest vocab is the fixed head alone; one less is an error naming the range */
    OK(rmu_bpe_train("ab ab", 5, RMU_BPE_MIN_VOCAB, &v, &e));
    assert_int_equal(v.n, 260);
    rmu_bpe_vocab_free(&v);
    assert_int_equal(rmu_bpe_train(NULL, 0, 259, &v, &e), -1);
    assert_string_equal(e.msg, "synthetic tokenizer: vocab_size 259 is out of range [260, 16777216] (3 special + 256 "
                               "byte pieces + \"" META "\" need 260)");
    assert_int_equal(rmu_bpe_train(NULL, 0, RMU_BPE_MAX_VOCAB + 1, &v, &e), -1);
}

static void test_merge_order(void **state) {
    /* every pair occurs twice: ties go to the byte-wise smaller merged string, so "ab" and
     * "cd" (ASCII) come before "▁a" / "▁c" (0xE2 ...), then "▁ab" before "▁cd" */
    rmu_bpe_vocab v;
    rmu_err e;
    const char *corpus = "ab ab cd cd";
    OK(rmu_bpe_train(corpus, strlen(corpus), 268, &v, &e));
    assert_int_equal(v.n, 268);
    char b[64];
    assert_int_equal(v.n_merges, 4);
    assert_string_equal(merge_str(&v, 0, b, sizeof b), "a b");
    assert_string_equal(merge_str(&v, 1, b, sizeof b), "c d");
    assert_string_equal(merge_str(&v, 2, b, sizeof b), META " ab");
    assert_string_equal(merge_str(&v, 3, b, sizeof b), META " cd");
    /* the characters come first, most frequent first ("▁" is already in the head) */
    assert_string_equal(v.piece[260], "a");
    assert_string_equal(v.piece[263], "d");
    assert_int_equal(find(&v, META "cd"), 267);
    rmu_bpe_vocab_free(&v);
    /* a higher count wins over a smaller string: "zy" (3 times) before "ab" (twice) */
    corpus = "zy zy zy ab ab";
    OK(rmu_bpe_train(corpus, strlen(corpus), 266, &v, &e));
    assert_string_equal(merge_str(&v, 0, b, sizeof b), "z y");
    assert_string_equal(merge_str(&v, 1, b, sizeof b), META " zy");
    rmu_bpe_vocab_free(&v);
}

static void test_words_and_characters(void **state) {
    rmu_bpe_vocab v;
    rmu_err e;
    /* "x" is seen once: no piece, so no merge can cross it; a newline ends a word and the
     * next word has no "▁" (the encoder only turns spaces into "▁") */
    const char *corpus = "abxab\nab\nab";
    OK(rmu_bpe_train(corpus, strlen(corpus), 400, &v, &e));
    assert_int_equal(find(&v, "x"), -1);
    assert_true(find(&v, "ab") >= 0);
    assert_int_equal(find(&v, "abxab"), -1);
    assert_int_equal(find(&v, META "ab"), -1); /* the first word "▁abxab" has it once */
    /* every merge builds a piece of the vocab from two earlier ones */
    for (int k = 0; k < v.n_merges; k++) {
        int a = v.merge[2 * k], c = v.merge[2 * k + 1];
        assert_true(a >= 0 && a < v.n && c >= 0 && c < v.n);
        char cat[128];
        snprintf(cat, sizeof cat, "%s%s", v.piece[a], v.piece[c]);
        assert_true(find(&v, cat) > (a > c ? a : c));
    }
    /* the free room is filled: learned pieces stop when no pair occurs twice */
    assert_int_equal(v.n, 400);
    assert_non_null(strstr(v.piece[399], "<filler_"));
    rmu_bpe_vocab_free(&v);
    /* non-ASCII characters are pieces of their own (whole UTF-8 characters) */
    corpus = "caf\xc3\xa9 caf\xc3\xa9";
    OK(rmu_bpe_train(corpus, strlen(corpus), 300, &v, &e));
    assert_true(find(&v, "\xc3\xa9") >= 260);
    assert_true(find(&v, META "caf\xc3\xa9") >= 260);
    rmu_bpe_vocab_free(&v);
}

static void test_deterministic(void **state) {
    /* a pure function of (corpus, vocab_size) */
    size_t n = 0;
    char *corpus = malloc(64 * 1024);
    uint64_t s = 5;
    static const char *words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "ran", "caf\xc3\xa9", "\xe2\x82\xac"};
    while (n < 60000) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        const char *w = words[(s >> 33) % 10];
        memcpy(corpus + n, w, strlen(w));
        n += strlen(w);
        corpus[n++] = (s >> 20) % 7 ? ' ' : '\n';
    }
    rmu_bpe_vocab a, b;
    rmu_err e;
    OK(rmu_bpe_train(corpus, n, 1000, &a, &e));
    OK(rmu_bpe_train(corpus, n, 1000, &b, &e));
    assert_int_equal(a.n, b.n);
    assert_int_equal(a.n_merges, b.n_merges);
    assert_true(a.n_merges > 0);
    for (int i = 0; i < a.n; i++) assert_string_equal(a.piece[i], b.piece[i]);
    assert_memory_equal(a.merge, b.merge, sizeof(int) * 2 * (size_t)a.n_merges);
    assert_true(find(&a, META "the") > 259);
    rmu_bpe_vocab_free(&a);
    rmu_bpe_vocab_free(&b);
    free(corpus);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_and_fillers),
        cmocka_unit_test(test_merge_order),
        cmocka_unit_test(test_words_and_characters),
        cmocka_unit_test(test_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

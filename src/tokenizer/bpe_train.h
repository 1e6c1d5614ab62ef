/* bpe_train.h - a small SentencePiece-like BPE trainer and the synthetic Llama-style
 * tokenizer folder it writes (for `rmu init` and the demo). Prefix rmu_bpe_. */
#ifndef RMU_BPE_TRAIN_H
#define RMU_BPE_TRAIN_H

#include <stddef.h>

#include "core/err.h"

/* A trained vocab: piece i has id i. */
typedef struct rmu_bpe_vocab {
    char **piece;  /* NUL-terminated */
    size_t *len;
    int n;
    int *merge;    /* merge k (rank k) joins pieces merge[2k] and merge[2k + 1] */
    int n_merges;
} rmu_bpe_vocab;

#define RMU_BPE_MIN_VOCAB 260 /* <unk> <s> </s>, 256 byte pieces, "▁" */
#define RMU_BPE_MAX_VOCAB (1 << 24)
#define RMU_BPE_MAX_CORPUS (4u << 20) /* bytes of corpus used; the rest is ignored */

/* The vocab of exactly vocab_size pieces: <unk> <s> </s>, <0x00>..<0xFF>, "▁", then the
 * pieces learned from corpus (may be NULL) and "<filler_N>" pieces no merge builds. The
 * corpus is cut into words as the encoder sees them ("▁" + word after a space or at the
 * start; a control character ends a word); characters seen at least twice become pieces
 * (at most half the free room), then the most frequent adjacent pair is merged until the
 * vocab is full. Ties go to the byte-wise smaller merged string, then to the smaller left
 * id, so the result is a pure function of (corpus, vocab_size). */
int rmu_bpe_train(const char *corpus, size_t corpus_len, int vocab_size, rmu_bpe_vocab *v, rmu_err *e);
void rmu_bpe_vocab_free(rmu_bpe_vocab *v);

/* Trains as above and writes DIR/tokenizer.json (legacy Prepend/Replace normalizer, byte
 * fallback, Llama's decoder and post-processor) + DIR/tokenizer_config.json (add_bos_token,
 * <s> </s> <unk>), atomically; DIR is created. */
int rmu_bpe_write_synthetic(const char *dir, int vocab_size, const char *corpus, size_t corpus_len, rmu_err *e);

#endif

/* data.h - training corpora: the one corpus reader of the tree (`rmu train`, `rmu unlearn`
 * and the demo all read through it), tokenizing, packing into fixed-length sequences and the
 * deterministic batch order. Prefix rmu_data_.
 *
 * Corpus files: one meaning per file name, for every command.
 *   *.jsonl, *.ndjson - JSON Lines: one object per line, its text in a string field ("text"
 *     unless another field is named).
 *   *.json - a JSON array (of strings, or of objects with that field) when the file starts
 *     with '[' (after a BOM and whitespace); otherwise JSON Lines as above (the `datasets`
 *     "json" loader accepts both under .json).
 *   anything else - plain text: one document per line that is not blank (whitespace only),
 *     each keeping its line break, "\r\n" normalised to "\n" (the last line keeps none if the
 *     file has none) - the rows of Hugging Face's wikitext, which the WMDP reference trains on.
 * Everywhere: a UTF-8 BOM at the start is skipped; JSON Lines follow src/core/json.h (blank
 * lines skipped, a "\r" before "\n" dropped, errors name PATH:LINE); empty texts are skipped;
 * documents keep file order; a file with no document is an error. A file is read once: its
 * SHA-256 comes from the same bytes.
 *
 * Sequences: every document is tokenized with BOS when the tokenizer adds one
 * (tokenizer_config add_bos_token) and EOS appended, so the model learns where texts end.
 *   pack (default): documents are concatenated and cut into seq_len-token chunks, as
 *     transformers' run_clm group_texts does (attention crosses document boundaries; the
 *     EOS/BOS pair marks them). The last, shorter chunk is kept (left-padded in its batch)
 *     so small corpora lose nothing.
 *   no pack: one sequence per document, truncated to its first seq_len tokens; a batch is
 *     left-padded to its longest row.
 * Sequences shorter than 2 tokens (nothing to predict) are dropped.
 *
 * Order: every epoch is a fresh Fisher-Yates permutation of the sequences drawn from a
 * SplitMix64 stream (src/core/rng.h) seeded by (seed, epoch), cut into batches of B (the last
 * batch of an epoch may be smaller). Batch k is a pure function of (seed, k), so a resumed
 * run needs only the step count. */
#ifndef RMU_DATA_H
#define RMU_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

typedef struct rmu_tokenizer rmu_tokenizer;

typedef struct rmu_data_docs {
    size_t n, cap;
    char **text;
    size_t *len;
} rmu_data_docs;

/* Appends the documents of one file (formats above; field NULL = "text"). sha_hex (65 bytes,
 * may be NULL) gets the SHA-256 of the file's bytes. Errors name the file (and line for JSON
 * Lines): unreadable file, malformed JSON, a missing or non-string field, no document. On
 * error d keeps what it had before the call. */
int rmu_data_read_file(rmu_data_docs *d, const char *path, const char *field, char *sha_hex, rmu_err *e);
/* Reads every file of the comma-separated list into a fresh d. */
int rmu_data_read(rmu_data_docs *d, const char *files, const char *field, rmu_err *e);
void rmu_data_docs_free(rmu_data_docs *d);

typedef struct rmu_data {
    int nseq;
    int *tok;        /* all sequences back to back */
    size_t *off;     /* [nseq + 1] */
    size_t ntokens;  /* real tokens over all sequences */
    size_t ndocs;
    int max_len;     /* longest sequence */
    uint64_t hash;   /* FNV-1a of the sequences: resume refuses different data */
} rmu_data;

/* Builds sequences from already tokenized documents (ids[i] of len[i], BOS/EOS included). */
int rmu_data_build(rmu_data *d, int *const *ids, const int *lens, size_t ndocs, int seq_len, int pack, rmu_err *e);
/* Tokenizes docs (BOS per add_bos, EOS id appended when eos_id >= 0) and builds. */
int rmu_data_tokenize(rmu_data *d, const rmu_data_docs *docs, const rmu_tokenizer *t, int add_bos, int eos_id,
                      int seq_len, int pack, rmu_err *e);
void rmu_data_free(rmu_data *d);

/* Batches per epoch: ceil(nseq / B). */
long rmu_data_steps_per_epoch(const rmu_data *d, int B);
/* perm[nseq] = the sequence order of epoch `epoch`. */
void rmu_data_epoch_order(const rmu_data *d, uint64_t seed, long epoch, int *perm);
/* Batch `index` of the epoch with order perm: tokens/mask [B*T] left-padded with pad_id
 * (capacity B * max_len); *rows and *T receive the shape. */
void rmu_data_batch(const rmu_data *d, const int *perm, long index, int B, int pad_id, int *tokens, int *mask,
                    int *rows, int *T);

/* The SplitMix64 state an epoch's order starts from (the whole RNG state of a run is
 * seed + epoch + batch index). */
uint64_t rmu_data_epoch_seed(uint64_t seed, long epoch);

#endif

/* tokenizer.h - Hugging Face tokenizer.json (BPE with merge ranks and byte fallback, as
 * used by Llama and Mistral) plus the tokenizer_config.json settings. Prefix rmu_tok_. */
#ifndef RMU_TOKENIZER_H
#define RMU_TOKENIZER_H

#include <stddef.h>

#include "core/err.h"

typedef struct rmu_tokenizer rmu_tokenizer;

/* Loads DIR/tokenizer.json and, if present, DIR/tokenizer_config.json (add_bos_token,
 * add_eos_token, bos/eos/pad tokens, chat_template). */
rmu_tokenizer *rmu_tok_load(const char *dir, rmu_err *e);
/* Same from explicit paths; config_path may be NULL. */
rmu_tokenizer *rmu_tok_load_files(const char *tokenizer_json, const char *config_path, rmu_err *e);
void rmu_tok_free(rmu_tokenizer *t);

int rmu_tok_vocab_size(const rmu_tokenizer *t);
int rmu_tok_bos_id(const rmu_tokenizer *t);   /* -1 if none */
int rmu_tok_eos_id(const rmu_tokenizer *t);   /* -1 if none */
int rmu_tok_pad_id(const rmu_tokenizer *t);   /* -1 if none */
int rmu_tok_add_bos(const rmu_tokenizer *t);  /* tokenizer_config.json add_bos_token (default 1 for Llama) */
const char *rmu_tok_bos_str(const rmu_tokenizer *t); /* "<s>" or NULL */
const char *rmu_tok_eos_str(const rmu_tokenizer *t);
/* chat_template string from tokenizer_config.json, or NULL. */
const char *rmu_tok_chat_template(const rmu_tokenizer *t);
/* The raw vocab string of a piece (e.g. "▁the", "<0x0A>"), NULL when out of range. */
const char *rmu_tok_piece(const rmu_tokenizer *t, int id);
int rmu_tok_is_special(const rmu_tokenizer *t, int id);

/* Encode like HF tokenizer(text) with add_special_tokens: added/special tokens are
 * matched in the raw text first; BOS prepended when add_bos != 0. *ids is malloc'd. */
int rmu_tok_encode(const rmu_tokenizer *t, const char *text, size_t len, int add_bos,
                   int **ids, int *n, rmu_err *e);

/* Decode like HF tokenizer.decode(ids) (skip_special: skip_special_tokens). malloc'd. */
char *rmu_tok_decode(const rmu_tokenizer *t, const int *ids, int n, int skip_special, rmu_err *e);

/* Incremental decoder for streaming: emits only complete UTF-8 characters, fuses byte
 * fallback pieces, strips the very first leading space of the stream as the decoder does.
 * Special tokens are skipped. */
typedef struct rmu_tok_stream {
    const rmu_tokenizer *t;
    int started;            /* any character emitted yet */
    unsigned char pend[8];  /* bytes of an incomplete UTF-8 character */
    int npend;
} rmu_tok_stream;

void rmu_tok_stream_init(rmu_tok_stream *s, const rmu_tokenizer *t);
/* Appends the text completed by id to out (NUL-terminated, at most cap-1 bytes; cap >= 64
 * is always enough for one token of a normal vocab). Returns bytes written. */
int rmu_tok_stream_push(rmu_tok_stream *s, int id, char *out, size_t cap);
/* Emits any pending incomplete bytes as U+FFFD. Returns bytes written. */
int rmu_tok_stream_flush(rmu_tok_stream *s, char *out, size_t cap);

/* Length of the valid UTF-8 character at s (strict, as Rust's from_utf8: no overlongs, no
 * surrogates, at most U+10FFFF; avail >= 1 bytes readable), or 0 when the bytes there are
 * not one. */
int rmu_tok_utf8_len(const unsigned char *s, size_t avail);

/* Loads tokenizer.json from text already in memory (len bytes, need not be NUL-terminated);
 * name is the file name used in messages. tokenizer_config.json defaults apply (BOS "<s>"
 * and EOS "</s>" when the vocab has them, add_bos_token true). Used by the fuzz target. */
rmu_tokenizer *rmu_tok_load_json_text(const char *text, size_t len, const char *name, rmu_err *e);
/* Id of an exact vocab piece or added token (e.g. "<|user|>", "\xe2\x96\x81the"), -1 if none. */
int rmu_tok_piece_id(const rmu_tokenizer *t, const char *piece);
int rmu_tok_unk_id(const rmu_tokenizer *t);   /* -1 if none */
/* tokenizer_config.json add_eos_token (default 0). rmu_tok_encode never appends EOS itself
 * (a chat prompt or a generation prompt must not end in one); callers that want HF's
 * add_special_tokens behaviour append rmu_tok_eos_id when this is set. */
int rmu_tok_add_eos(const rmu_tokenizer *t);

#endif

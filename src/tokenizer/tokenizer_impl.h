/* tokenizer_impl.h - the tokenizer's internal state, shared by tokenizer_load.c (builds it
 * from tokenizer.json / tokenizer_config.json) and tokenizer.c (encode, decode, stream).
 * Not installed. */
#ifndef RMU_TOKENIZER_IMPL_H
#define RMU_TOKENIZER_IMPL_H

#include <stdint.h>
#include <string.h>

#include "core/rng.h"
#include "tokenizer/tokenizer.h"

#define TOK_META "\xe2\x96\x81" /* U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's space */
#define TOK_MAX_OPS 16
#define TOK_MAX_ID (1 << 24)

enum { OP_PREPEND, OP_REPLACE };
enum { SCHEME_ALWAYS, SCHEME_FIRST, SCHEME_NEVER };

typedef struct {
    int type;
    char *a, *b; /* prepend: a; replace: a -> b */
    size_t alen, blen;
} norm_op;

typedef struct {
    const char *s; /* the piece's string */
    size_t len;
    int id, special, lstrip, rstrip;
} added_tok;

typedef struct {
    uint64_t key; /* (left id << 32) | right id; UINT64_MAX when empty */
    int32_t rank, id;
} merge_slot;

struct rmu_tokenizer {
    char name[1024]; /* tokenizer.json path, for messages */
    int n;           /* vocab size (model vocab + added tokens beyond it) */
    char **piece;
    uint32_t *plen;
    int16_t *byte_of;       /* byte value of a <0xNN> piece, else -1 */
    unsigned char *special; /* 1 for special tokens */
    int byte_id[256];       /* id of "<0xNN>" (upper case) or -1 */
    int32_t *vmap;          /* open addressing: piece -> id, -1 empty */
    uint32_t vmask;
    merge_slot *merges; /* open addressing: (left, right) -> rank and merged id */
    uint32_t merges_mask;
    int n_merges;
    added_tok *added; /* sorted longest first, so the first match is the longest */
    int n_added;
    unsigned char added_first[256];
    norm_op ops[TOK_MAX_OPS];
    int n_ops;
    int meta, meta_scheme, meta_split;
    char meta_rep[8];
    size_t meta_rep_len;
    int byte_fallback, fuse_unk, ignore_merges, unk;
    /* decoder: Replace pairs on non-byte pieces, ByteFallback, Strip of leading chars */
    norm_op dec_rep[TOK_MAX_OPS];
    int n_dec_rep, dec_bytes, dec_strip;
    char dec_strip_ch;
    /* tokenizer_config.json */
    int bos, eos, pad, add_bos, add_eos;
    char *chat_template;
};

static inline uint32_t tok_hash(const char *s, size_t n) { return (uint32_t)rmu_mix64(rmu_fnv1a(RMU_FNV_INIT, s, n)); }

static inline uint64_t tok_pair(int a, int b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

/* Id of piece s[0..n), -1 if none. */
static inline int tok_vmap_find(const rmu_tokenizer *t, const char *s, size_t n) {
    for (uint32_t h = tok_hash(s, n) & t->vmask;; h = (h + 1) & t->vmask) {
        int id = t->vmap[h];
        if (id < 0) return -1;
        if (t->plen[id] == n && !memcmp(t->piece[id], s, n)) return id;
    }
}

/* The merge of pieces a and b, NULL if none. */
static inline const merge_slot *tok_merge_find(const rmu_tokenizer *t, int a, int b) {
    if (!t->merges) return NULL;
    uint64_t k = tok_pair(a, b);
    for (uint32_t h = (uint32_t)rmu_mix64(k) & t->merges_mask;; h = (h + 1) & t->merges_mask) {
        const merge_slot *s = &t->merges[h];
        if (s->key == UINT64_MAX) return NULL;
        if (s->key == k) return s;
    }
}

#endif

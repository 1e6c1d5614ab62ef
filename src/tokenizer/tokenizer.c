/* tokenizer.c - encoding, decoding and streaming with a Hugging Face tokenizer.json (BPE
 * + byte fallback, the Llama/Mistral kind; loading is in tokenizer_load.c).
 *
 * Encoding follows HF `tokenizers`: added tokens are cut out of the raw text first, each
 * text segment between them is normalized on its own (so the legacy Prepend("▁") normalizer
 * gives every segment a leading "▁"), then BPE runs over each word with a min-heap of
 * (merge rank, position) on a linked list of symbols, so a 1 MB text encodes in linear-log
 * time. Characters missing from the vocab become <0xNN> byte pieces (byte_fallback) or
 * <unk> (fused when fuse_unk).
 *
 * One deliberate difference from HF: the Metaspace pre-tokenizer in HF skips its prepend
 * when the segment already starts with a space (" grabbed" -> "▁grabbed"), while the legacy
 * Prepend normalizer, SentencePiece itself (tokenizer.model) and the published vectors for
 * Mistral (" grabbed" -> 28705 13300) always prepend. We always prepend (scheme "always", or
 * "first" for the segment at offset 0), so both Mistral tokenizer.json forms tokenize text
 * without added tokens identically and as SentencePiece does. After an added token the two
 * forms differ as in HF: legacy prepends "▁" to every segment, "first" only to the first. */
#include "tokenizer/tokenizer.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"
#include "tokenizer/tokenizer_impl.h"

/* ---------------------------------------------------------------- small helpers */

typedef struct {
    int *v;
    int n, cap;
} ivec;

static int iv_push(ivec *a, int x) {
    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 64;
        int *v = realloc(a->v, sizeof(int) * (size_t)cap);
        if (!v) return -1;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

int rmu_tok_utf8_len(const unsigned char *s, size_t avail) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if (avail < (size_t)need) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (int i = 2; i < need; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return need;
}

static int utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        int l = rmu_tok_utf8_len(s + i, n - i);
        if (!l) return 0;
        i += (size_t)l;
    }
    return 1;
}

int rmu_tok_vocab_size(const rmu_tokenizer *t) { return t->n; }
int rmu_tok_bos_id(const rmu_tokenizer *t) { return t->bos; }
int rmu_tok_eos_id(const rmu_tokenizer *t) { return t->eos; }
int rmu_tok_pad_id(const rmu_tokenizer *t) { return t->pad; }
int rmu_tok_unk_id(const rmu_tokenizer *t) { return t->unk; }
int rmu_tok_add_bos(const rmu_tokenizer *t) { return t->add_bos; }
int rmu_tok_add_eos(const rmu_tokenizer *t) { return t->add_eos; }
const char *rmu_tok_bos_str(const rmu_tokenizer *t) { return t->bos >= 0 ? t->piece[t->bos] : NULL; }
const char *rmu_tok_eos_str(const rmu_tokenizer *t) { return t->eos >= 0 ? t->piece[t->eos] : NULL; }
const char *rmu_tok_chat_template(const rmu_tokenizer *t) { return t->chat_template; }
const char *rmu_tok_piece(const rmu_tokenizer *t, int id) { return id >= 0 && id < t->n ? t->piece[id] : NULL; }
int rmu_tok_is_special(const rmu_tokenizer *t, int id) { return id >= 0 && id < t->n && t->special[id]; }
int rmu_tok_piece_id(const rmu_tokenizer *t, const char *piece) { return tok_vmap_find(t, piece, strlen(piece)); }

/* ---------------------------------------------------------------- encoding */

/* Scratch space reused across the segments and words of one encode call. */
typedef struct {
    rmu_sb a, b;        /* normalization ping-pong */
    int *id, *prev, *next;
    uint64_t *heap;
    size_t cap, nheap;
} scratch;

static void scratch_free(scratch *s) {
    rmu_sb_free(&s->a), rmu_sb_free(&s->b);
    free(s->id), free(s->prev), free(s->next), free(s->heap);
}

static int scratch_reserve(scratch *s, size_t n) {
    if (n <= s->cap) return 0;
    size_t cap = s->cap ? s->cap : 256;
    while (cap < n) cap *= 2;
    int *a = realloc(s->id, sizeof(int) * cap);
    if (a) s->id = a;
    int *b = realloc(s->prev, sizeof(int) * cap);
    if (b) s->prev = b;
    int *c = realloc(s->next, sizeof(int) * cap);
    if (c) s->next = c;
    uint64_t *h = realloc(s->heap, sizeof(uint64_t) * cap * 3);
    if (h) s->heap = h;
    if (!a || !b || !c || !h) return -1;
    s->cap = cap;
    return 0;
}

/* Min-heap of (rank << 32 | position): lowest rank first, leftmost on ties (as HF). */
static void heap_push(scratch *s, uint64_t v) {
    size_t i = s->nheap++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (s->heap[p] <= v) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = v;
}

static uint64_t heap_pop(scratch *s) {
    uint64_t top = s->heap[0], v = s->heap[--s->nheap];
    size_t i = 0, n = s->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && s->heap[c + 1] < s->heap[c]) c++;
        if (s->heap[c] >= v) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n) s->heap[i] = v;
    return top;
}

static void try_pair(const rmu_tokenizer *t, scratch *s, int i) {
    int j = s->next[i];
    if (j < 0) return;
    const merge_slot *m = tok_merge_find(t, s->id[i], s->id[j]);
    /* pushes: n-1 at the start + 2 per merge, and every merge pops one: < 2n live entries */
    if (m && s->nheap < s->cap * 3) heap_push(s, ((uint64_t)(uint32_t)m->rank << 32) | (uint32_t)i);
}

static int bpe_word(const rmu_tokenizer *t, scratch *s, const char *w, size_t n, ivec *out) {
    if (!n) return 0;
    if (t->ignore_merges) {
        int id = tok_vmap_find(t, w, n);
        if (id >= 0) return iv_push(out, id);
    }
    if (scratch_reserve(s, n + 1)) return -1;
    int ns = 0, unk_pending = 0;
    for (size_t i = 0; i < n;) {
        int cl = rmu_tok_utf8_len((const unsigned char *)w + i, n - i);
        if (!cl) cl = 1; /* an invalid byte stands alone and falls back to its byte piece */
        int id = tok_vmap_find(t, w + i, (size_t)cl);
        int bytes_ok = t->byte_fallback;
        for (int k = 0; id < 0 && bytes_ok && k < cl; k++)
            if (t->byte_id[(unsigned char)w[i + k]] < 0) bytes_ok = 0;
        if (id >= 0 || bytes_ok) {
            if (unk_pending) s->id[ns++] = t->unk, unk_pending = 0;
            if (id >= 0) s->id[ns++] = id;
            else
                for (int k = 0; k < cl; k++) s->id[ns++] = t->byte_id[(unsigned char)w[i + k]];
        } else if (t->unk >= 0) {
            if (unk_pending && !t->fuse_unk) s->id[ns++] = t->unk;
            unk_pending = 1;
        } /* no unk token: HF drops the character */
        i += (size_t)cl;
    }
    if (unk_pending) s->id[ns++] = t->unk;
    for (int i = 0; i < ns; i++) {
        s->prev[i] = i - 1;
        s->next[i] = i + 1 < ns ? i + 1 : -1;
    }
    s->nheap = 0;
    for (int i = 0; i + 1 < ns; i++) try_pair(t, s, i);
    while (s->nheap) {
        uint64_t top = heap_pop(s);
        int i = (int)(uint32_t)top, rank = (int)(top >> 32);
        if (s->id[i] < 0) continue; /* merged away */
        int j = s->next[i];
        if (j < 0) continue;
        const merge_slot *m = tok_merge_find(t, s->id[i], s->id[j]);
        if (!m || m->rank != rank) continue; /* stale: the pair changed since it was queued */
        s->id[i] = m->id;
        s->id[j] = -1;
        s->next[i] = s->next[j];
        if (s->next[j] >= 0) s->prev[s->next[j]] = i;
        if (s->prev[i] >= 0) try_pair(t, s, s->prev[i]);
        try_pair(t, s, i);
    }
    for (int i = ns ? 0 : -1; i >= 0; i = s->next[i])
        if (iv_push(out, s->id[i])) return -1;
    return 0;
}

/* dst = src with every occurrence of a replaced by b. */
static int replace_all(rmu_sb *dst, const char *src, size_t n, const char *a, size_t alen, const char *b, size_t blen) {
    rmu_sb_truncate(dst, 0);
    rmu_sb_reserve(dst, n);
    for (size_t i = 0; i < n;) {
        const char *hit = alen <= n - i ? memmem(src + i, n - i, a, alen) : NULL;
        size_t upto = hit ? (size_t)(hit - src) : n;
        rmu_sb_add(dst, src + i, upto - i);
        if (!hit) break;
        rmu_sb_add(dst, b, blen);
        i = upto + alen;
    }
    return rmu_sb_add(dst, "", 0); /* sticky: -1 when any step ran out of memory */
}

static void sb_swap(rmu_sb *x, rmu_sb *y) {
    rmu_sb t = *x;
    *x = *y;
    *y = t;
}

/* Normalize + pre-tokenize + BPE one text segment that lies between added tokens;
 * offset is its position in the whole input (Metaspace "first" prepends only at 0). */
static int encode_segment(const rmu_tokenizer *t, scratch *s, const char *seg, size_t n, size_t offset, ivec *out) {
    if (!n) return 0;
    rmu_sb_truncate(&s->a, 0);
    if (rmu_sb_add(&s->a, seg, n)) return -1;
    for (int k = 0; k < t->n_ops; k++) {
        const norm_op *o = &t->ops[k];
        if (o->type == OP_PREPEND) {
            if (!s->a.n) continue;
            rmu_sb_truncate(&s->b, 0);
            rmu_sb_add(&s->b, o->a, o->alen);
            if (rmu_sb_add(&s->b, s->a.p, s->a.n)) return -1;
        } else if (replace_all(&s->b, s->a.p, s->a.n, o->a, o->alen, o->b, o->blen))
            return -1;
        sb_swap(&s->a, &s->b);
    }
    if (t->meta) {
        if (replace_all(&s->b, s->a.p, s->a.n, " ", 1, t->meta_rep, t->meta_rep_len)) return -1;
        sb_swap(&s->a, &s->b);
        if (s->a.n && (t->meta_scheme == SCHEME_ALWAYS || (t->meta_scheme == SCHEME_FIRST && offset == 0))) {
            rmu_sb_truncate(&s->b, 0);
            rmu_sb_add(&s->b, t->meta_rep, t->meta_rep_len);
            if (rmu_sb_add(&s->b, s->a.p, s->a.n)) return -1;
            sb_swap(&s->a, &s->b);
        }
        if (t->meta_split) { /* each replacement character starts a word (MergedWithNext) */
            const char *w = s->a.p, *q = s->a.p, *end = s->a.p + s->a.n, *hit;
            while ((hit = memmem(q, (size_t)(end - q), t->meta_rep, t->meta_rep_len))) {
                if (hit > w && bpe_word(t, s, w, (size_t)(hit - w), out)) return -1;
                w = hit;
                q = hit + t->meta_rep_len;
            }
            return bpe_word(t, s, w, (size_t)(end - w), out);
        }
    }
    return bpe_word(t, s, s->a.p, s->a.n, out);
}

/* Leftmost-longest added token starting at p (added[] is sorted longest first). */
static const added_tok *match_added(const rmu_tokenizer *t, const char *text, size_t len, size_t p) {
    if (!t->added_first[(unsigned char)text[p]]) return NULL;
    for (int k = 0; k < t->n_added; k++) {
        const added_tok *a = &t->added[k];
        if (a->len <= len - p && !memcmp(text + p, a->s, a->len)) return a;
    }
    return NULL;
}

int rmu_tok_encode(const rmu_tokenizer *t, const char *text, size_t len, int add_bos, int **ids, int *n,
                   rmu_err *e) {
    ivec out = {0};
    scratch s = {0};
    *ids = NULL;
    *n = 0;
    if (!text && len) return rmu_errf(e, "%s: encode: NULL text", t->name);
    if (add_bos && t->bos >= 0 && iv_push(&out, t->bos)) goto oom;
    size_t seg = 0;
    for (size_t p = 0; p < len;) {
        const added_tok *a = t->n_added ? match_added(t, text, len, p) : NULL;
        if (!a) {
            p++;
            continue;
        }
        size_t st = p, en = p + a->len;
        if (a->lstrip)
            while (st > seg && isspace((unsigned char)text[st - 1])) st--;
        if (a->rstrip)
            while (en < len && isspace((unsigned char)text[en])) en++;
        if (encode_segment(t, &s, text + seg, st - seg, seg, &out) || iv_push(&out, a->id)) goto oom;
        p = seg = en;
    }
    if (encode_segment(t, &s, text + seg, len - seg, seg, &out)) goto oom;
    scratch_free(&s);
    if (!out.v && !(out.v = malloc(sizeof(int)))) return rmu_errf(e, "out of memory");
    *ids = out.v;
    *n = out.n;
    return 0;
oom:
    scratch_free(&s);
    free(out.v);
    return rmu_errf(e, "%s: out of memory while encoding %zu bytes", t->name, len);
}

/* ---------------------------------------------------------------- decoding */

static const char REPL[] = "\xef\xbf\xbd"; /* U+FFFD */

/* Appends a piece with the decoder's Replace steps applied (cur, tmp: scratch). */
static int add_piece_text(const rmu_tokenizer *t, rmu_sb *out, rmu_sb *cur, rmu_sb *tmp, const char *p, size_t n) {
    if (!t->n_dec_rep) return rmu_sb_add(out, p, n);
    rmu_sb_truncate(cur, 0);
    rmu_sb_add(cur, p, n);
    for (int k = 0; k < t->n_dec_rep; k++) {
        const norm_op *o = &t->dec_rep[k];
        replace_all(tmp, cur->p, cur->n, o->a, o->alen, o->b, o->blen);
        sb_swap(cur, tmp);
    }
    if (cur->oom || tmp->oom) return -1;
    return rmu_sb_add(out, cur->p, cur->n);
}

/* HF ByteFallback: a run of byte pieces that is valid UTF-8 becomes its text, otherwise one
 * U+FFFD per byte. */
static int flush_bytes(rmu_sb *out, rmu_sb *run) {
    if (!run->n) return 0;
    if (utf8_valid((unsigned char *)run->p, run->n)) rmu_sb_add(out, run->p, run->n);
    else
        for (size_t i = 0; i < run->n; i++) rmu_sb_add(out, REPL, 3);
    rmu_sb_truncate(run, 0);
    return out->oom ? -1 : 0;
}

char *rmu_tok_decode(const rmu_tokenizer *t, const int *ids, int n, int skip_special, rmu_err *e) {
    rmu_sb out = {0}, run = {0}, cur = {0}, tmp = {0};
    char *r = NULL;
    for (int i = 0; i < n; i++) {
        int id = ids[i];
        if (id < 0 || id >= t->n) {
            rmu_errf(e, "token id %d is out of range [0, %d) of %s", id, t->n, t->name);
            goto out;
        }
        if (skip_special && t->special[id]) continue; /* dropped before the decoder runs, as in HF */
        if (t->dec_bytes && t->byte_of[id] >= 0) {
            rmu_sb_putc(&run, (char)t->byte_of[id]);
            continue;
        }
        if (run.oom || flush_bytes(&out, &run) || add_piece_text(t, &out, &cur, &tmp, t->piece[id], t->plen[id]))
            goto oom;
    }
    if (run.oom || flush_bytes(&out, &run)) goto oom;
    size_t k = 0;
    while ((int)k < t->dec_strip && k < out.n && out.p[k] == t->dec_strip_ch) k++;
    if (k) memmove(out.p, out.p + k, out.n - k + 1), out.n -= k;
    if ((r = rmu_sb_take(&out))) goto out;
oom:
    rmu_errf(e, "out of memory while decoding %d tokens", n);
out:
    rmu_sb_free(&out), rmu_sb_free(&run), rmu_sb_free(&cur), rmu_sb_free(&tmp);
    return r;
}

/* ---------------------------------------------------------------- streaming
 * Emits text as soon as it is complete. Pieces go through the same Replace/Strip steps as
 * rmu_tok_decode; byte pieces are held until they form a whole UTF-8 character. A byte that
 * cannot continue the pending character turns each pending byte into U+FFFD. Concatenated
 * output equals rmu_tok_decode(..., skip_special=1) except in one HF corner: HF replaces a
 * whole run of byte pieces with U+FFFD per byte when any part of the run is invalid, even the
 * characters inside it that were valid (and which a stream has already shown). */

typedef struct {
    char *p;
    size_t n, cap;
} obuf;

static void ob_add(rmu_tok_stream *s, obuf *o, const char *p, size_t n) {
    const rmu_tokenizer *t = s->t;
    if (!s->started && n) {
        /* the decoder's Strip: drop the first leading strip characters of the stream */
        int k = 0;
        while (k < t->dec_strip && (size_t)k < n && p[k] == t->dec_strip_ch) k++;
        p += k;
        n -= (size_t)k;
        s->started = 1;
    }
    if (!o->cap) return;
    size_t room = o->cap - 1 - o->n;
    if (n > room) { /* cut at a character boundary */
        n = room;
        while (n && ((unsigned char)p[n] & 0xC0) == 0x80) n--;
    }
    memcpy(o->p + o->n, p, n);
    o->n += n;
    o->p[o->n] = 0;
}

static void stream_flush_pending(rmu_tok_stream *s, obuf *o) {
    for (int i = 0; i < s->npend; i++) ob_add(s, o, REPL, 3);
    s->npend = 0;
}

/* Is p[0..n) (n >= 1) the start of a valid UTF-8 character? *need gets its full length. */
static int utf8_prefix_ok(const unsigned char *p, int n, int *need) {
    unsigned c = p[0], lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) *need = 2;
    else if (c >= 0xE0 && c <= 0xEF) *need = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) *need = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return 0;
    if (n > *need) return 0;
    if (n >= 2 && (p[1] < lo || p[1] > hi)) return 0;
    for (int i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return 1;
}

static void stream_byte(rmu_tok_stream *s, obuf *o, unsigned char b) {
    int need;
    if (s->npend) {
        s->pend[s->npend] = b;
        if (utf8_prefix_ok(s->pend, s->npend + 1, &need)) {
            if (++s->npend == need) {
                ob_add(s, o, (const char *)s->pend, (size_t)need);
                s->npend = 0;
            }
            return;
        }
        stream_flush_pending(s, o); /* b cannot continue it: the pending bytes are invalid */
    }
    s->pend[0] = b;
    if (b < 0x80) {
        ob_add(s, o, (const char *)s->pend, 1);
    } else if (utf8_prefix_ok(s->pend, 1, &need)) {
        s->npend = 1;
    } else
        ob_add(s, o, REPL, 3);
}

void rmu_tok_stream_init(rmu_tok_stream *s, const rmu_tokenizer *t) {
    memset(s, 0, sizeof *s);
    s->t = t;
    if (!t->dec_strip) s->started = 1;
}

int rmu_tok_stream_push(rmu_tok_stream *s, int id, char *out, size_t cap) {
    const rmu_tokenizer *t = s->t;
    obuf o = {out, 0, cap};
    if (cap) out[0] = 0;
    if (id < 0 || id >= t->n || t->special[id]) return 0;
    if (t->dec_bytes && t->byte_of[id] >= 0) {
        stream_byte(s, &o, (unsigned char)t->byte_of[id]);
        return (int)o.n;
    }
    stream_flush_pending(s, &o);
    rmu_sb txt = {0}, cur = {0}, tmp = {0};
    if (add_piece_text(t, &txt, &cur, &tmp, t->piece[id], t->plen[id]) == 0 && txt.n) ob_add(s, &o, txt.p, txt.n);
    rmu_sb_free(&txt), rmu_sb_free(&cur), rmu_sb_free(&tmp);
    return (int)o.n;
}

int rmu_tok_stream_flush(rmu_tok_stream *s, char *out, size_t cap) {
    obuf o = {out, 0, cap};
    if (cap) out[0] = 0;
    stream_flush_pending(s, &o);
    return (int)o.n;
}

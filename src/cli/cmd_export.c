/* cmd_export.c - `rmu export`: a Hugging Face Mistral/Llama folder as a GGUF file for
 * llama.cpp and ollama (architecture "llama", tokenizer model "llama" = SentencePiece-style
 * BPE with scores). Tensors are streamed one chunk of rows at a time through
 * src/io/gguf.h's writer: a 7B export keeps one tensor's source pages and a few MiB of
 * staging resident, never a model. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "core/util.h"
#include "io/gguf.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_impl.h" /* merges and normalizer steps: scores, add_space_prefix */

static const char USAGE[] =
    "usage: rmu export -m DIR --gguf OUT.gguf [--type f32|f16|bf16|q8_0] [--name NAME] [--quiet]\n"
    "writes the model as GGUF v3 for llama.cpp / ollama (architecture llama). --type sets the\n"
    "matrices' precision (default f16); norm weights stay f32; q8_0 keeps f16 for matrices whose\n"
    "rows are not a multiple of 32. --name sets general.name (default: the folder's name).";

typedef struct {
    const char *name;
    rmu_ggml_type type;
    uint32_t ftype;
} out_type;

static const out_type TYPES[] = {{"f32", RMU_GGML_F32, RMU_GGUF_FTYPE_F32},
                                 {"f16", RMU_GGML_F16, RMU_GGUF_FTYPE_F16},
                                 {"bf16", RMU_GGML_BF16, RMU_GGUF_FTYPE_BF16},
                                 {"q8_0", RMU_GGML_Q8_0, RMU_GGUF_FTYPE_Q8_0}};

/* One GGUF tensor and the model weight it comes from. */
typedef struct {
    char name[64];
    char hf[96]; /* the HF name, for messages */
    const rmu_weight *w;
    int rope;    /* attn_q / attn_k: rows reordered for GGML's RoPE */
    rmu_ggml_type type;
} xtensor;

typedef struct {
    int n_tensors, n_f32_norms, n_fallback;
    uint64_t bytes;
} export_stats;

/* ---------------------------------------------------------------- tensors */

/* ==== The one place a stored weight becomes float32 (every output type is encoded from
 * that): F32/F16/BF16, and FP8 dequantized (code x its row's or tensor's scale) by the
 * model's weight conversion. */
static int weight_readable(rmu_dtype t) {
    return t == RMU_DT_F32 || t == RMU_DT_F16 || t == RMU_DT_BF16 || t == RMU_DT_F8_E4M3;
}

static void weight_row_f32(const rmu_weight *w, int64_t row, float *dst) { rmu_weight_row_f32(w, row, dst); }
/* ==== */

static void add_x(xtensor *x, int *n, const rmu_weight *w, int rope, const char *hf, const char *fmt, int layer) {
    xtensor *t = &x[(*n)++];
    snprintf(t->name, sizeof t->name, fmt, layer);
    snprintf(t->hf, sizeof t->hf, hf, layer);
    t->w = w;
    t->rope = rope;
}

/* The GGUF tensor list in llama.cpp's names; an untied lm_head becomes `output`, a tied one
 * is left out (llama.cpp then uses token_embd). */
static int build_tensors(const rmu_model *m, const out_type *ot, xtensor **out, int *n, export_stats *st,
                         rmu_err *e) {
    const rmu_config *c = &m->cfg;
    xtensor *x = calloc((size_t)(3 + 9 * c->n_layers), sizeof *x);
    if (!x) return rmu_errf(e, "out of memory");
    int k = 0;
    add_x(x, &k, &m->embed, 0, "model.embed_tokens.weight", "token_embd.weight", 0);
    for (int l = 0; l < c->n_layers; l++) {
        const rmu_layer *L = &m->layers[l];
        add_x(x, &k, &L->attn_norm, 0, "model.layers.%d.input_layernorm.weight", "blk.%d.attn_norm.weight", l);
        add_x(x, &k, &L->wq, 1, "model.layers.%d.self_attn.q_proj.weight", "blk.%d.attn_q.weight", l);
        add_x(x, &k, &L->wk, 1, "model.layers.%d.self_attn.k_proj.weight", "blk.%d.attn_k.weight", l);
        add_x(x, &k, &L->wv, 0, "model.layers.%d.self_attn.v_proj.weight", "blk.%d.attn_v.weight", l);
        add_x(x, &k, &L->wo, 0, "model.layers.%d.self_attn.o_proj.weight", "blk.%d.attn_output.weight", l);
        add_x(x, &k, &L->mlp_norm, 0, "model.layers.%d.post_attention_layernorm.weight", "blk.%d.ffn_norm.weight", l);
        add_x(x, &k, &L->w_gate, 0, "model.layers.%d.mlp.gate_proj.weight", "blk.%d.ffn_gate.weight", l);
        add_x(x, &k, &L->w_up, 0, "model.layers.%d.mlp.up_proj.weight", "blk.%d.ffn_up.weight", l);
        add_x(x, &k, &L->w_down, 0, "model.layers.%d.mlp.down_proj.weight", "blk.%d.ffn_down.weight", l);
    }
    add_x(x, &k, &m->final_norm, 0, "model.norm.weight", "output_norm.weight", 0);
    if (!c->tie_word_embeddings) add_x(x, &k, &m->lm_head, 0, "lm_head.weight", "output.weight", 0);
    for (int i = 0; i < k; i++) {
        xtensor *t = &x[i];
        if (!weight_readable(t->w->dtype)) {
            rmu_errf(e, "%s: %s has dtype %s; export reads F32, F16, BF16 and FP8 weights", m->dir, t->hf,
                     rmu_dtype_name(t->w->dtype) ? rmu_dtype_name(t->w->dtype) : "(unknown)");
            free(x);
            return -1;
        }
        if (t->w->rows == 1) { /* 1-D norms stay F32, as llama.cpp's converter keeps them */
            t->type = RMU_GGML_F32;
            st->n_f32_norms++;
        } else if (ot->type == RMU_GGML_Q8_0 && t->w->cols % RMU_GGUF_QK8_0) {
            t->type = RMU_GGML_F16; /* llama.cpp's converter falls back the same way */
            st->n_fallback++;
        } else {
            t->type = ot->type;
        }
    }
    *out = x;
    *n = k;
    st->n_tensors = k;
    return 0;
}

/* First value of row x[0..n) the output type cannot hold (non-finite, or rounding to inf in
 * F16/BF16), -1 when all fit. */
static int64_t bad_value(const float *x, int64_t n, rmu_ggml_type t) {
    for (int64_t j = 0; j < n; j++) {
        if (!isfinite(x[j])) return j;
        if (t == RMU_GGML_F16 && fabsf(x[j]) >= 65520.0f) return j; /* rounds to f16 inf */
        if (t == RMU_GGML_BF16 && (rmu_f32_to_bf16(x[j]) & 0x7fff) == 0x7f80) return j;
    }
    return -1;
}

static void encode_row(const float *x, int64_t n, rmu_ggml_type t, uint8_t *out) {
    switch (t) {
    case RMU_GGML_F32: memcpy(out, x, (size_t)n * 4); break;
    case RMU_GGML_F16: rmu_from_f32(out, x, RMU_DT_F16, (size_t)n); break;
    case RMU_GGML_BF16: rmu_from_f32(out, x, RMU_DT_BF16, (size_t)n); break;
    case RMU_GGML_Q8_0: rmu_gguf_quantize_q8_0(x, n, out); break;
    }
}

#define CHUNK_ELEMS (4 << 20) /* rows staged per write: ~4M elements */

/* Streams tensor t: chunks of rows converted in parallel (one float row per thread),
 * written in order. */
static int write_tensor(rmu_gguf_writer *g, const xtensor *t, int64_t head_dim, float *rowbuf, uint8_t *outbuf,
                        rmu_err *e) {
    const rmu_weight *w = t->w;
    int64_t cols = w->cols, rows = w->rows;
    size_t row_bytes = rmu_ggml_nbytes(t->type, cols);
    int64_t per = CHUNK_ELEMS / cols > 0 ? CHUNK_ELEMS / cols : 1;
    for (int64_t r0 = 0; r0 < rows; r0 += per) {
        int64_t nr = rows - r0 < per ? rows - r0 : per;
        int64_t bad_row = -1, bad_col = -1;
#pragma omp parallel for schedule(static)
        for (int64_t r = r0; r < r0 + nr; r++) {
            float *x = rowbuf + (size_t)omp_get_thread_num() * (size_t)cols;
            weight_row_f32(w, t->rope ? rmu_gguf_rope_src_row(r, head_dim) : r, x);
            int64_t j = bad_value(x, cols, t->type);
            if (j >= 0) {
#pragma omp critical(export_bad)
                if (bad_row < 0 || r < bad_row) bad_row = r, bad_col = j;
                continue;
            }
            encode_row(x, cols, t->type, outbuf + (size_t)(r - r0) * row_bytes);
        }
        if (bad_row >= 0) {
            int64_t src = t->rope ? rmu_gguf_rope_src_row(bad_row, head_dim) : bad_row;
            weight_row_f32(w, src, rowbuf);
            float v = rowbuf[bad_col];
            if (!isfinite(v)) return rmu_errf(e, "%s[%lld, %lld] is %g: not exportable", t->hf, (long long)src,
                                             (long long)bad_col, v);
            return rmu_errf(e, "%s[%lld, %lld] = %g does not fit in %s; use --type %s", t->hf, (long long)src,
                            (long long)bad_col, v, rmu_ggml_type_name(t->type),
                            t->type == RMU_GGML_F16 ? "bf16 or f32" : "f32");
        }
        if (rmu_gguf_write(g, outbuf, (size_t)nr * row_bytes, e)) return -1;
    }
    /* The source pages are clean file pages of the read-only mapping: dropping them loses
     * nothing and keeps the resident set at about one tensor for a model of any size. */
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)w->data + pg - 1) / pg * pg;
    uintptr_t z = ((uintptr_t)w->data + (size_t)rows * (size_t)cols * rmu_dtype_size(w->dtype)) / pg * pg;
    if (z > a) madvise((void *)a, z - a, MADV_DONTNEED);
    return 0;
}

/* ---------------------------------------------------------------- tokenizer */

/* llama.cpp's "llama" tokenizer is SentencePiece's algorithm: spaces become U+2581, an
 * optional leading U+2581 (add_space_prefix), then the adjacent pair whose joined piece has
 * the highest score merges first. HF's BPE form merges by rank instead; scores = -rank of
 * the first merge that builds each piece give the same order, so llama.cpp tokenizes as HF
 * does. Checks the normalizer steps have that form and returns add_space_prefix. */
static int space_prefix(const rmu_tokenizer *t, const char *dir, int *prefix, rmu_err *e) {
    static const char *const form = "rmu exports SentencePiece-style tokenizers (Metaspace \"\xe2\x96\x81\", or "
                                    "Prepend \"\xe2\x96\x81\" + Replace \" \" -> \"\xe2\x96\x81\")";
    int rep = 0, pre = 0;
    for (int k = 0; k < t->n_ops; k++) {
        const norm_op *o = &t->ops[k];
        if (o->type == OP_PREPEND && o->alen == 3 && !memcmp(o->a, TOK_META, 3)) pre = 1;
        else if (o->type == OP_REPLACE && o->alen == 1 && o->a[0] == ' ' && o->blen == 3 && !memcmp(o->b, TOK_META, 3))
            rep = 1;
        else
            return rmu_errf(e, "%s/tokenizer.json: a normalizer step has no GGUF equivalent; %s", dir, form);
    }
    if (t->meta) {
        if (t->n_ops || t->meta_rep_len != 3 || memcmp(t->meta_rep, TOK_META, 3))
            return rmu_errf(e, "%s/tokenizer.json: this Metaspace form has no GGUF equivalent; %s", dir, form);
        *prefix = t->meta_scheme != SCHEME_NEVER;
        return 0;
    }
    if (!rep) return rmu_errf(e, "%s/tokenizer.json: spaces are not mapped to \"\xe2\x96\x81\"; %s", dir, form);
    if (t->ignore_merges) return rmu_errf(e, "%s/tokenizer.json: model.ignore_merges has no GGUF equivalent", dir);
    *prefix = pre;
    return 0;
}

typedef struct {
    const char **tok;
    size_t *len;
    float *score;
    int32_t *type;
    char **pad; /* "[PADn]" names of ids past the tokenizer */
    int n, n_tok;
} vocab_arrays;

static void vocab_free(vocab_arrays *v) {
    if (v->pad)
        for (int i = v->n_tok; i < v->n; i++) free(v->pad[i - v->n_tok]);
    free(v->pad);
    free(v->tok), free(v->len), free(v->score), free(v->type);
}

static int vocab_build(const rmu_tokenizer *t, int n_vocab, const char *dir, vocab_arrays *v, rmu_err *e) {
    memset(v, 0, sizeof *v);
    v->n = n_vocab;
    v->n_tok = t->n;
    v->tok = calloc((size_t)n_vocab, sizeof *v->tok);
    v->len = calloc((size_t)n_vocab, sizeof *v->len);
    v->score = calloc((size_t)n_vocab, sizeof *v->score);
    v->type = calloc((size_t)n_vocab, sizeof *v->type);
    v->pad = calloc((size_t)(n_vocab - t->n + 1), sizeof *v->pad);
    int32_t *rank = malloc(sizeof *rank * (size_t)t->n);
    unsigned char *added = calloc((size_t)t->n, 1);
    if (!v->tok || !v->len || !v->score || !v->type || !v->pad || !rank || !added) goto oom;
    for (int b = 0; b < 256; b++)
        if (t->byte_id[b] < 0) {
            free(rank), free(added);
            return rmu_errf(e, "%s/tokenizer.json: no <0x%02X> piece; llama.cpp's llama tokenizer needs all 256 byte "
                               "pieces",
                            dir, b);
        }
    for (int i = 0; i < t->n; i++) rank[i] = INT32_MAX;
    for (uint32_t h = 0; t->merges && h <= t->merges_mask; h++) {
        const merge_slot *s = &t->merges[h];
        if (s->key != UINT64_MAX && s->rank < rank[s->id]) rank[s->id] = s->rank;
    }
    for (int k = 0; k < t->n_added; k++) added[t->added[k].id] = 1;
    for (int i = 0; i < n_vocab; i++) {
        if (i >= t->n) {
            char buf[32];
            snprintf(buf, sizeof buf, "[PAD%d]", i);
            if (!(v->pad[i - t->n] = strdup(buf))) goto oom;
            v->tok[i] = v->pad[i - t->n];
            v->len[i] = strlen(buf);
            v->type[i] = RMU_GGUF_TOK_UNUSED;
            continue;
        }
        v->tok[i] = t->piece[i];
        v->len[i] = t->plen[i];
        if (i == t->unk) v->type[i] = RMU_GGUF_TOK_UNKNOWN;
        else if (t->byte_of[i] >= 0 && t->byte_id[t->byte_of[i]] == i) v->type[i] = RMU_GGUF_TOK_BYTE;
        else if (t->special[i]) v->type[i] = RMU_GGUF_TOK_CONTROL;
        else if (added[i]) v->type[i] = RMU_GGUF_TOK_USER_DEFINED; /* split out of the text as HF does */
        else v->type[i] = RMU_GGUF_TOK_NORMAL;
        /* pieces no merge builds are only ever single characters: below every merge */
        if (v->type[i] == RMU_GGUF_TOK_NORMAL)
            v->score[i] = rank[i] == INT32_MAX ? -(float)t->n_merges - 1.0f : -(float)rank[i];
    }
    free(rank), free(added);
    return 0;
oom:
    free(rank), free(added);
    vocab_free(v);
    return rmu_errf(e, "out of memory");
}

/* ---------------------------------------------------------------- metadata */

static int set_metadata(rmu_gguf_writer *g, const rmu_model *m, const rmu_tokenizer *t, const out_type *ot,
                        const char *name, const char *dir, rmu_err *e) {
    const rmu_config *c = &m->cfg;
    int prefix = 0;
    vocab_arrays v;
    if (space_prefix(t, dir, &prefix, e) || vocab_build(t, c->vocab_size, dir, &v, e)) return -1;
    int bos = rmu_tok_bos_id(t) >= 0 ? rmu_tok_bos_id(t) : c->bos_id;
    int eos = rmu_tok_eos_id(t) >= 0 ? rmu_tok_eos_id(t) : c->eos_id;
    int pad = rmu_tok_pad_id(t) >= 0 ? rmu_tok_pad_id(t) : c->pad_id;
    int rc = rmu_gguf_set_str(g, "general.architecture", "llama", e) || rmu_gguf_set_str(g, "general.name", name, e) ||
             rmu_gguf_set_u32(g, "general.file_type", ot->ftype, e) ||
             (ot->type == RMU_GGML_Q8_0 && rmu_gguf_set_u32(g, "general.quantization_version", 2, e)) ||
             rmu_gguf_set_u32(g, "llama.context_length", (uint32_t)c->max_position_embeddings, e) ||
             rmu_gguf_set_u32(g, "llama.embedding_length", (uint32_t)c->hidden_size, e) ||
             rmu_gguf_set_u32(g, "llama.block_count", (uint32_t)c->n_layers, e) ||
             rmu_gguf_set_u32(g, "llama.feed_forward_length", (uint32_t)c->intermediate_size, e) ||
             rmu_gguf_set_u32(g, "llama.attention.head_count", (uint32_t)c->n_heads, e) ||
             rmu_gguf_set_u32(g, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads, e) ||
             /* head_dim need not be hidden / heads (llama.cpp's default) */
             rmu_gguf_set_u32(g, "llama.attention.key_length", (uint32_t)c->head_dim, e) ||
             rmu_gguf_set_u32(g, "llama.attention.value_length", (uint32_t)c->head_dim, e) ||
             rmu_gguf_set_f32(g, "llama.attention.layer_norm_rms_epsilon", c->rms_norm_eps, e) ||
             rmu_gguf_set_f32(g, "llama.rope.freq_base", c->rope_theta, e) ||
             rmu_gguf_set_u32(g, "llama.rope.dimension_count", (uint32_t)c->head_dim, e) ||
             rmu_gguf_set_u32(g, "llama.vocab_size", (uint32_t)c->vocab_size, e) ||
             rmu_gguf_set_str(g, "tokenizer.ggml.model", "llama", e) ||
             rmu_gguf_set_array(g, "tokenizer.ggml.tokens", RMU_GGUF_STRING, v.tok, v.len, (uint64_t)v.n, e) ||
             rmu_gguf_set_array(g, "tokenizer.ggml.scores", RMU_GGUF_F32, v.score, NULL, (uint64_t)v.n, e) ||
             rmu_gguf_set_array(g, "tokenizer.ggml.token_type", RMU_GGUF_I32, v.type, NULL, (uint64_t)v.n, e) ||
             (bos >= 0 && rmu_gguf_set_u32(g, "tokenizer.ggml.bos_token_id", (uint32_t)bos, e)) ||
             (eos >= 0 && rmu_gguf_set_u32(g, "tokenizer.ggml.eos_token_id", (uint32_t)eos, e)) ||
             (rmu_tok_unk_id(t) >= 0 && rmu_gguf_set_u32(g, "tokenizer.ggml.unknown_token_id", (uint32_t)rmu_tok_unk_id(t), e)) ||
             (pad >= 0 && rmu_gguf_set_u32(g, "tokenizer.ggml.padding_token_id", (uint32_t)pad, e)) ||
             rmu_gguf_set_bool(g, "tokenizer.ggml.add_bos_token", rmu_tok_add_bos(t), e) ||
             rmu_gguf_set_bool(g, "tokenizer.ggml.add_eos_token", rmu_tok_add_eos(t), e) ||
             rmu_gguf_set_bool(g, "tokenizer.ggml.add_space_prefix", prefix, e) ||
             (rmu_tok_chat_template(t) && rmu_gguf_set_str(g, "tokenizer.chat_template", rmu_tok_chat_template(t), e));
    vocab_free(&v);
    return rc ? -1 : 0;
}

/* ---------------------------------------------------------------- the command */

/* The output's folder must exist (nothing is created for it) and the path must not be one. */
static int check_out_path(const char *path, rmu_err *e) {
    struct stat st;
    if (!*path) return rmu_errf(e, "--gguf: empty path");
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return rmu_errf(e, "--gguf %s: is a folder", path);
    char d[4096];
    snprintf(d, sizeof d, "%s", path);
    char *s = strrchr(d, '/');
    if (!s) return 0;
    if (s == d) s[1] = 0;
    else *s = 0;
    if (stat(d, &st) != 0 || !S_ISDIR(st.st_mode)) return rmu_errf(e, "--gguf %s: folder %s does not exist", path, d);
    if (access(d, W_OK) != 0) return rmu_errf(e, "--gguf %s: folder %s is not writable", path, d);
    return 0;
}

static int export_gguf(const rmu_model *m, const rmu_tokenizer *t, const out_type *ot, const char *name,
                       const char *path, int progress, export_stats *st, rmu_err *e) {
    xtensor *x = NULL;
    int n = 0, rc = -1;
    float *rowbuf = NULL;
    uint8_t *outbuf = NULL;
    rmu_gguf_writer *g = rmu_gguf_writer_new(e);
    if (!g || build_tensors(m, ot, &x, &n, st, e) || set_metadata(g, m, t, ot, name, m->dir, e)) goto out;
    size_t max_out = 0;
    int64_t max_cols = 1;
    for (int i = 0; i < n; i++) {
        const rmu_weight *w = x[i].w;
        int64_t ne[2] = {w->cols, w->rows};
        if (rmu_gguf_add_tensor(g, x[i].name, x[i].type, w->rows == 1 ? 1 : 2, ne, e)) goto out;
        int64_t per = CHUNK_ELEMS / w->cols > 0 ? CHUNK_ELEMS / w->cols : 1;
        size_t chunk = rmu_ggml_nbytes(x[i].type, w->cols) * (size_t)(per < w->rows ? per : w->rows);
        if (chunk > max_out) max_out = chunk;
        if (w->cols > max_cols) max_cols = w->cols;
    }
    rowbuf = malloc(sizeof(float) * (size_t)max_cols * (size_t)omp_get_max_threads());
    outbuf = malloc(max_out ? max_out : 1);
    if (!rowbuf || !outbuf) {
        rmu_errf(e, "out of memory");
        goto out;
    }
    if (rmu_gguf_begin(g, path, e)) goto out;
    for (int i = 0; i < n; i++) {
        if (progress) fprintf(stderr, "\rrmu export: tensor %d/%d %-28s", i + 1, n, x[i].name);
        if (write_tensor(g, &x[i], m->cfg.head_dim, rowbuf, outbuf, e)) goto out;
    }
    if (progress) fputc('\n', stderr);
    progress = 0;
    rc = rmu_gguf_finish(g, &st->bytes, e);
out:
    if (progress) fputc('\n', stderr);
    rmu_gguf_writer_free(g); /* removes the temporary file unless finished */
    free(x), free(rowbuf), free(outbuf);
    return rc;
}

int rmu_cmd_export(int argc, char **argv) {
    const char *cmd = "export", *dir = NULL, *out = NULL, *tname = "f16", *name = NULL;
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-m") || !strcmp(f, "--model")) {
            if (!(dir = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--gguf")) {
            if (!(out = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--type")) {
            if (!(tname = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--name")) {
            if (!(name = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--quiet")) {
            quiet = 1;
        } else if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            puts(USAGE);
            return 0;
        } else {
            return cli_fail(cmd, 2, "unknown option '%s' (rmu export --help)", f);
        }
    }
    if (!dir || !out) return cli_fail(cmd, 2, "-m DIR and --gguf OUT.gguf are required (rmu export --help)");
    const out_type *ot = NULL;
    for (size_t k = 0; k < sizeof TYPES / sizeof TYPES[0]; k++)
        if (!strcmp(tname, TYPES[k].name)) ot = &TYPES[k];
    if (!ot) return cli_fail(cmd, 2, "--type: expected f32, f16, bf16 or q8_0, got '%s'", tname);
    rmu_err e;
    if (check_out_path(out, &e)) return cli_fail(cmd, 2, "%s", e.msg);
    char base[256];
    if (!name) { /* the folder's own name, trailing slashes ignored */
        char d[4096];
        snprintf(d, sizeof d, "%s", dir);
        size_t l = strlen(d);
        while (l > 1 && d[l - 1] == '/') d[--l] = 0;
        const char *s = strrchr(d, '/');
        snprintf(base, sizeof base, "%s", s && s[1] ? s + 1 : d);
        name = base;
    }
    rmu_model m;
    if (rmu_model_open(&m, dir, &e)) return cli_fail(cmd, 1, "%s", e.msg);
    cli_model_note(cmd, &m.cfg);
    rmu_tokenizer *t = rmu_tok_load(dir, &e);
    if (!t) {
        rmu_model_free(&m);
        return cli_fail(cmd, 1, "%s", e.msg);
    }
    int rc = 1;
    if (rmu_tok_vocab_size(t) > m.cfg.vocab_size) {
        cli_fail(cmd, 1, "%s: tokenizer has %d pieces but config.json vocab_size is %d", dir, rmu_tok_vocab_size(t),
                 m.cfg.vocab_size);
        goto done;
    }
    double t0 = rmu_now_s();
    export_stats st = {0};
    if (export_gguf(&m, t, ot, name, out, !quiet && isatty(2), &st, &e)) {
        cli_fail(cmd, 1, "%s", e.msg);
        goto done;
    }
    double secs = rmu_now_s() - t0;
    if (!quiet) {
        fprintf(stderr, "rmu export: wrote %s: %d tensors (%d %s, %d F32 norms", out, st.n_tensors,
                st.n_tensors - st.n_f32_norms - st.n_fallback, ot->name, st.n_f32_norms);
        if (st.n_fallback) fprintf(stderr, ", %d F16: rows not a multiple of 32", st.n_fallback);
        fprintf(stderr, "), %.1f MiB in %.1f s\n", st.bytes / 1048576.0, secs);
        if (m.cfg.sliding_window > 0 && m.cfg.sliding_window < m.cfg.max_position_embeddings)
            fprintf(stderr,
                    "rmu export: note: sliding_window %d is not kept: llama.cpp's llama architecture attends to the "
                    "whole context (identical results up to %d tokens)\n",
                    m.cfg.sliding_window, m.cfg.sliding_window);
    }
    rc = 0;
done:
    rmu_tok_free(t);
    rmu_model_free(&m);
    return rc;
}

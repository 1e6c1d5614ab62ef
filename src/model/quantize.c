/* quantize.c - FP8 weight quantization of a model folder (see quantize.h). Two passes per
 * weight: amax (per row or per tensor, which also rejects non-finite values) before the
 * writer starts, then the codes, streamed through the writer's fill callback in its bounded
 * chunks: a 7B model is never in memory, only its scales (a float per output row). */
#include "quantize.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/hfdir.h"
#include "model/model.h"

float rmu_quant_fp8_scale(float amax) {
    float s = amax / RMU_QUANT_FP8_MAX;
    return s > 0 ? s : FLT_EPSILON; /* an all-zero row: any positive scale gives zero codes */
}

void rmu_quant_fp8_encode(uint8_t *dst, const float *src, size_t n, float scale) {
    /* a division as compressed-tensors does (w / scale), not a multiply by the reciprocal,
     * which can round differently */
    for (size_t i = 0; i < n; i++) dst[i] = rmu_f32_to_f8e4m3(src[i] / scale);
}

json_t *rmu_quant_fp8_config(rmu_quant scheme) {
    const char *strategy = scheme == RMU_QUANT_FP8_TENSOR ? "tensor" : "channel";
    return json_pack("{s:{s:{s:s, s:n, s:n, s:[s], s:{s:n, s:n, s:b, s:n, s:i, s:s, s:{}, s:s, s:b, s:s}}}, "
                     "s:s, s:[s], s:n, s:s, s:s}",
                     "config_groups", "group_0", "format", "float-quantized", "input_activations",
                     "output_activations", "targets", "Linear", "weights", "actorder", "block_structure", "dynamic", 0,
                     "group_size", "num_bits", 8, "observer", "minmax", "observer_kwargs", "strategy", strategy,
                     "symmetric", 1, "type", "float", "format", "float-quantized", "ignore", "lm_head",
                     "kv_cache_scheme", "quant_method", "compressed-tensors", "quantization_status", "compressed");
}

/* One weight to quantize: its source (mmapped) and scales. */
typedef struct {
    char name[96];
    const rmu_weight *w;
    float *scale; /* [rows] per channel, [1] per tensor */
    int per_row;
} qtensor;

#define BLOCK 4096 /* elements converted at a time */

/* amax of every row of q->w (per_row) or of all of it into q->scale; a NaN or infinity is
 * an error naming its position. buf: nth * cols floats. */
static int scales_of(qtensor *q, float *buf, int nth, rmu_err *e) {
    const rmu_weight *w = q->w;
    int64_t rows = w->rows, cols = w->cols, bad = -1;
    float tmax = 0;
    size_t es = rmu_dtype_size(w->dtype);
#pragma omp parallel for schedule(static) num_threads(nth) reduction(max : tmax)
    for (int64_t r = 0; r < rows; r++) {
        float *x = buf + (size_t)omp_get_thread_num() * (size_t)cols, amax = 0;
        rmu_to_f32(x, (const char *)w->data + (size_t)r * (size_t)cols * es, w->dtype, (size_t)cols);
        for (int64_t c = 0; c < cols; c++) {
            float a = fabsf(x[c]);
            if (!(a <= FLT_MAX)) { /* NaN or infinity: E4M3 has neither */
#pragma omp critical(quant_bad)
                if (bad < 0 || r * cols + c < bad) bad = r * cols + c;
                break;
            }
            if (a > amax) amax = a;
        }
        if (q->per_row) q->scale[r] = rmu_quant_fp8_scale(amax);
        if (amax > tmax) tmax = amax;
    }
    if (bad >= 0) {
        float v;
        rmu_to_f32(&v, (const char *)w->data + (size_t)bad * es, w->dtype, 1);
        return rmu_errf(e, "%s[%lld, %lld] is %g: FP8 cannot represent it", q->name, (long long)(bad / cols),
                        (long long)(bad % cols), v);
    }
    if (!q->per_row) q->scale[0] = rmu_quant_fp8_scale(tmax);
    return 0;
}

/* hfdir fill: codes of elements [off, off + count) of the row-major weight. */
static int fill_codes(void *ctx, const char *name, size_t off, size_t count, void *buf, rmu_err *e) {
    (void)name, (void)e;
    const qtensor *q = ctx;
    const rmu_weight *w = q->w;
    size_t cols = (size_t)w->cols, es = rmu_dtype_size(w->dtype);
    long nb = (long)((count + BLOCK - 1) / BLOCK);
#pragma omp parallel for schedule(static)
    for (long b = 0; b < nb; b++) {
        float x[BLOCK];
        size_t i0 = off + (size_t)b * BLOCK, i1 = i0 + BLOCK < off + count ? i0 + BLOCK : off + count;
        rmu_to_f32(x, (const char *)w->data + i0 * es, w->dtype, i1 - i0);
        for (size_t i = i0; i < i1;) { /* one row segment at a time: one scale each */
            size_t r = i / cols, end = (r + 1) * cols < i1 ? (r + 1) * cols : i1;
            rmu_quant_fp8_encode((uint8_t *)buf + (i - off), x + (i - i0), end - i, q->scale[q->per_row ? r : 0]);
            i = end;
        }
    }
    return 0;
}

static const char *const LINEAR[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                      "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

int rmu_quant_fp8(const rmu_quant_opts *o, rmu_quant_stats *st, rmu_err *e) {
    rmu_quant_stats s0 = {0};
    if (!st) st = &s0;
    memset(st, 0, sizeof *st);
    if (!o->model_dir) return rmu_errf(e, "model_dir: required");
    if (!o->out_dir) return rmu_errf(e, "out_dir: required");
    if (o->scheme != RMU_QUANT_NONE && o->scheme != RMU_QUANT_FP8_CHANNEL && o->scheme != RMU_QUANT_FP8_TENSOR)
        return rmu_errf(e, "scheme: unknown FP8 scheme %d", (int)o->scheme);
    unsigned flags = o->overwrite ? RMU_HF_REPLACE : 0;
    if (rmu_hf_check_out(o->out_dir, o->model_dir, flags, e)) {
        if (strstr(e->msg, "already exists and is not empty"))
            rmu_errf(e, "%s already exists; pass option overwrite to replace it or choose another folder", o->out_dir);
        return rmu_err_prefix(e, "out_dir");
    }
    rmu_model m;
    if (rmu_model_open(&m, o->model_dir, e)) return rmu_err_prefix(e, "model_dir");
    int per_row = o->scheme != RMU_QUANT_FP8_TENSOR, L = m.cfg.n_layers, n = 7 * L, rc = -1;
    int nth = omp_get_max_threads();
    qtensor *q = calloc((size_t)n, sizeof *q);
    size_t nscales = 0;
    float *scales = NULL, *buf = NULL;
    rmu_hf *w = NULL;
    if (m.cfg.quant != RMU_QUANT_NONE) {
        rmu_errf(e, "model_dir: %s is already quantized (quantization_config %s)", o->model_dir, m.cfg.quant_method);
        goto out;
    }
    if (!q) goto oom;
    int64_t maxcols = 1;
    for (int i = 0; i < n; i++) {
        snprintf(q[i].name, sizeof q[i].name, "model.layers.%d.%s.weight", i / 7, LINEAR[i % 7]);
        q[i].w = rmu_model_weight(&m, q[i].name);
        q[i].per_row = per_row;
        nscales += per_row ? (size_t)q[i].w->rows : 1;
        if (q[i].w->cols > maxcols) maxcols = q[i].w->cols;
    }
    scales = malloc(sizeof(float) * nscales);
    buf = malloc(sizeof(float) * (size_t)maxcols * (size_t)nth);
    if (!scales || !buf) goto oom;
    st->bytes_in = rmu_model_weight_bytes(&m);
    st->bytes_out = st->bytes_in;
    float *sp = scales;
    for (int i = 0; i < n; i++) {
        q[i].scale = sp;
        sp += per_row ? q[i].w->rows : 1;
        if (scales_of(&q[i], buf, nth, e)) goto out;
        size_t elems = (size_t)q[i].w->rows * (size_t)q[i].w->cols;
        st->n_tensors++;
        st->n_params += (long long)elems;
        st->bytes_out = st->bytes_out - elems * rmu_dtype_size(q[i].w->dtype) + elems +
                        (per_row ? (size_t)q[i].w->rows : 1) * sizeof(float);
    }
    free(buf);
    buf = NULL;
    rmu_hf_opts ho = {.in_dir = o->model_dir, .in_st = &m.st, .flags = flags};
    if (!(w = rmu_hf_open(o->out_dir, &ho, e))) {
        rmu_err_prefix(e, "out_dir");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        char sname[112];
        snprintf(sname, sizeof sname, "%s_scale", q[i].name);
        rmu_hf_new t = {.name = sname, .dtype = RMU_DT_F32, .ndim = per_row ? 2 : 1,
                        .shape = {per_row ? q[i].w->rows : 1, 1}, .after = q[i].name, .data = q[i].scale,
                        .data_dtype = RMU_DT_F32};
        if (rmu_hf_set_fill(w, q[i].name, fill_codes, &q[i], e) || rmu_hf_set_dtype(w, q[i].name, RMU_DT_F8_E4M3, e) ||
            rmu_hf_add(w, &t, e))
            goto out;
    }
    json_t *qc = rmu_quant_fp8_config(per_row ? RMU_QUANT_FP8_CHANNEL : RMU_QUANT_FP8_TENSOR);
    if (!qc) goto oom;
    if (rmu_hf_config_set(w, "quantization_config", qc, e)) goto out;
    rc = rmu_hf_commit(w, e);
    w = NULL; /* commit frees it, also on error */
    goto out;
oom:
    rmu_errf(e, "out of memory quantizing %s", o->model_dir);
out:
    rmu_hf_abort(w);
    free(buf);
    free(scales);
    free(q);
    rmu_model_free(&m);
    return rc;
}

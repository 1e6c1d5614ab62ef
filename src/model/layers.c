#include "layers.h"

#include <math.h>
#include <string.h>

#include "kernels/gemm.h"

void rmu_embedding_forward(float *out, const int *ids, int N, const rmu_weight *E) {
    size_t C = (size_t)E->cols, es = rmu_dtype_size(E->dtype);
    for (int n = 0; n < N; n++) rmu_to_f32(out + n * C, (const char *)E->data + (size_t)ids[n] * C * es, E->dtype, C);
}

void rmu_rmsnorm_forward(float *out, float *rstd, const float *x, const rmu_weight *w, int N, int C, float eps) {
    float wf[C];
    rmu_to_f32(wf, w->data, w->dtype, C);
#pragma omp parallel for schedule(static) if ((size_t)N * C > 65536)
    for (int n = 0; n < N; n++) {
        const float *xn = x + (size_t)n * C;
        float *on = out + (size_t)n * C;
        /* double accumulation: the mean of squares over thousands of values */
        double ss = 0;
        for (int i = 0; i < C; i++) ss += (double)xn[i] * xn[i];
        float r = (float)(1.0 / sqrt(ss / C + eps));
        if (rstd) rstd[n] = r;
        for (int i = 0; i < C; i++) on[i] = xn[i] * r * wf[i];
    }
}

/* W as the GEMM's B (with its FP8 scales), stored [out, in]: trans 1 reads it as [N=out, K=in]
 * (through its panels while they were made from its data). */
static rmu_gemm_b weight_b(const rmu_weight *W, int trans, rmu_prec prec) {
    const void *panels = trans && W->panels_of == W->data ? W->panels : NULL;
    return (rmu_gemm_b){.data = W->data, .dtype = W->dtype, .trans = trans, .ld = (long)W->cols, .prec = prec,
                        .scale = W->scale, .nscale = (long)W->nscale, .panels = panels};
}

int rmu_linear_forward(float *y, const float *x, const rmu_weight *W, int N, float beta, rmu_prec prec, rmu_err *e) {
    rmu_gemm_b b = weight_b(W, 1, prec);
    return rmu_gemm(N, (int)W->rows, (int)W->cols, x, (long)W->cols, 1, &b, y, (long)W->rows, beta, e);
}

int rmu_linear_forward_multi(float *const *ys, const rmu_weight *const *Ws, int nw, const float *x, int N,
                             rmu_prec prec, rmu_err *e) {
    rmu_gemm_job jobs[8];
    if (nw < 1 || nw > 8) return rmu_errf(e, "linear_forward_multi: %d layers (1..8)", nw);
    for (int j = 0; j < nw; j++) {
        if (Ws[j]->cols != Ws[0]->cols) return rmu_errf(e, "linear_forward_multi: layers with different inputs");
        jobs[j] = (rmu_gemm_job){weight_b(Ws[j], 1, prec), (int)Ws[j]->rows, ys[j], (long)Ws[j]->rows, 0.0f};
    }
    return rmu_gemm_multi(N, (int)Ws[0]->cols, x, (long)Ws[0]->cols, jobs, nw, e);
}

void rmu_rope_table(float *cos_t, float *sin_t, int npos, int hd, float theta) {
    int half = hd / 2;
    for (int i = 0; i < half; i++) {
        /* HF: inv_freq = 1 / theta^(2i/hd) */
        double inv = 1.0 / pow((double)theta, (2.0 * i) / hd);
        for (int p = 0; p < npos; p++) {
            double a = p * inv;
            cos_t[(size_t)p * half + i] = (float)cos(a);
            sin_t[(size_t)p * half + i] = (float)sin(a);
        }
    }
}

void rmu_rope_forward(float *x, const int *pos, int N, int nh, int hd, const float *cos_t, const float *sin_t) {
    int half = hd / 2;
    for (int n = 0; n < N; n++) {
        const float *c = cos_t + (size_t)pos[n] * half, *s = sin_t + (size_t)pos[n] * half;
        for (int h = 0; h < nh; h++) {
            float *v = x + ((size_t)n * nh + h) * hd;
            /* rotate_half: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin) */
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * s[i];
                v[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

void rmu_swiglu_forward(float *h, const float *gate, const float *up, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        h[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

/* ==== backward passes and training-only ops.
 * Weight-grad reductions over tokens are split over column chunks (each chunk summed over
 * tokens in order by one thread), never over tokens, so results do not depend on the
 * number of threads. */

#define COL_CHUNK 64

void rmu_embedding_backward(float *dE, const float *dout, const int *ids, int N, int C) {
    int nch = (C + COL_CHUNK - 1) / COL_CHUNK;
#pragma omp parallel for schedule(static) if ((size_t)N * C > 65536)
    for (int ch = 0; ch < nch; ch++) {
        int c0 = ch * COL_CHUNK, c1 = c0 + COL_CHUNK < C ? c0 + COL_CHUNK : C;
        for (int n = 0; n < N; n++) {
            if (ids[n] < 0) continue;
            float *d = dE + (size_t)ids[n] * C;
            const float *g = dout + (size_t)n * C;
            for (int c = c0; c < c1; c++) d[c] += g[c];
        }
    }
}

void rmu_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *rstd,
                          const rmu_weight *w, int N, int C) {
    float wf[C];
    rmu_to_f32(wf, w->data, w->dtype, C);
    if (dx) {
        /* y = x r w, r = (mean x^2 + eps)^-1/2, dr/dx_k = -r^3 x_k / C:
         * dx_k = r (dy_k w_k - x_k r^2/C sum_i dy_i w_i x_i) */
#pragma omp parallel for schedule(static) if (N > 16)
        for (int n = 0; n < N; n++) {
            const float *xn = x + (size_t)n * C, *dy = dout + (size_t)n * C;
            float *d = dx + (size_t)n * C;
            float r = rstd[n];
            double dot = 0;
            for (int i = 0; i < C; i++) dot += (double)dy[i] * wf[i] * xn[i];
            float coef = (float)(dot * r * r / C);
            for (int i = 0; i < C; i++) d[i] += r * (dy[i] * wf[i] - xn[i] * coef);
        }
    }
    if (dw) {
        int nch = (C + COL_CHUNK - 1) / COL_CHUNK;
#pragma omp parallel for schedule(static) if ((size_t)N * C > 65536)
        for (int ch = 0; ch < nch; ch++) {
            int c0 = ch * COL_CHUNK, c1 = c0 + COL_CHUNK < C ? c0 + COL_CHUNK : C;
            for (int n = 0; n < N; n++) {
                const float *xn = x + (size_t)n * C, *dy = dout + (size_t)n * C;
                float r = rstd[n];
                for (int i = c0; i < c1; i++) dw[i] += dy[i] * xn[i] * r;
            }
        }
    }
}

int rmu_linear_backward(float *dx, float dx_beta, float *dW, const float *dy, const float *x, const rmu_weight *W,
                        int N, rmu_prec prec, rmu_err *e) {
    int out = (int)W->rows, in = (int)W->cols;
    /* resolved here: the dW product's B is x (fp32), yet follows the weight's precision */
    if (prec == RMU_PREC_AUTO) prec = W->dtype == RMU_DT_BF16 ? RMU_PREC_BF16 : RMU_PREC_FP32;
    if (dx) { /* dx[N,in] = dy[N,out] W[out,in]: W read as B stored [K=out, N=in] */
        rmu_gemm_b b = weight_b(W, 0, prec);
        if (rmu_gemm(N, in, out, dy, out, 1, &b, dx, in, dx_beta, e)) return -1;
    }
    if (dW) { /* dW[out,in] += dy^T x: A = dy^T through strides, B = x stored [K=N, in] */
        rmu_gemm_b b = {.data = x, .dtype = RMU_DT_F32, .trans = 0, .ld = (long)in, .prec = prec};
        if (rmu_gemm(out, in, N, dy, 1, out, &b, dW, in, 1.0f, e)) return -1;
    }
    return 0;
}

void rmu_rope_backward(float *dx, const int *pos, int N, int nh, int hd, const float *cos_t, const float *sin_t) {
    int half = hd / 2;
    for (int n = 0; n < N; n++) {
        const float *c = cos_t + (size_t)pos[n] * half, *s = sin_t + (size_t)pos[n] * half;
        for (int h = 0; h < nh; h++) {
            float *v = dx + ((size_t)n * nh + h) * hd;
            /* transpose of the rotation: (ga, gb) -> (ga cos + gb sin, gb cos - ga sin) */
            for (int i = 0; i < half; i++) {
                float ga = v[i], gb = v[i + half];
                v[i] = ga * c[i] + gb * s[i];
                v[i + half] = gb * c[i] - ga * s[i];
            }
        }
    }
}

void rmu_swiglu_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float g = gate[i], d = dh[i];
        float sg = 1.0f / (1.0f + expf(-g));
        /* d silu(g)/dg = sg (1 + g (1 - sg)) */
        dup[i] = d * g * sg;
        dgate[i] = d * up[i] * sg * (1.0f + g * (1.0f - sg));
    }
}

void rmu_crossentropy_forward(float *losses, const float *logits, const int *targets, int N, int V) {
#pragma omp parallel for schedule(static) if ((size_t)N * V > 65536)
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) {
            losses[n] = 0;
            continue;
        }
        const float *l = logits + (size_t)n * V;
        float mx = l[0];
        for (int i = 1; i < V; i++) mx = l[i] > mx ? l[i] : mx;
        double sum = 0;
        for (int i = 0; i < V; i++) sum += exp((double)l[i] - mx);
        losses[n] = (float)(mx + log(sum) - l[targets[n]]);
    }
}

void rmu_crossentropy_backward(float *dlogits, const float *logits, const int *targets, int N, int V, float scale) {
#pragma omp parallel for schedule(static) if ((size_t)N * V > 65536)
    for (int n = 0; n < N; n++) {
        const float *l = logits + (size_t)n * V;
        float *d = dlogits + (size_t)n * V;
        if (targets[n] < 0) {
            memset(d, 0, sizeof(float) * V);
            continue;
        }
        float mx = l[0];
        for (int i = 1; i < V; i++) mx = l[i] > mx ? l[i] : mx;
        double sum = 0;
        for (int i = 0; i < V; i++) sum += exp((double)l[i] - mx);
        double lse = mx + log(sum);
        for (int i = 0; i < V; i++) d[i] = (float)(exp((double)l[i] - lse) * scale);
        d[targets[n]] -= scale;
    }
}

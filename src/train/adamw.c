#include "train/adamw.h"

#include <math.h>
#include <string.h>

void rmu_adamw_update(float *p, const float *g, float *m, float *v, size_t n, long step, double lr,
                      const rmu_adamw_cfg *c) {
    /* scalars as torch computes them: Python floats (double), used as fp32 in the kernels */
    double bc1 = 1.0 - pow(c->beta1, (double)step), bc2 = 1.0 - pow(c->beta2, (double)step);
    float decay = (float)(1.0 - lr * c->weight_decay);
    float b1 = (float)c->beta1, b2 = (float)c->beta2, ob1 = (float)(1.0 - c->beta1), ob2 = (float)(1.0 - c->beta2);
    float step_size = (float)(lr / bc1), bc2s = (float)sqrt(bc2), eps = (float)c->eps;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float pi = c->weight_decay != 0 ? p[i] * decay : p[i];
        float mi = m[i] * b1 + gi * ob1;
        float vi = v[i] * b2 + gi * gi * ob2;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * (mi / (sqrtf(vi) / bc2s + eps));
    }
}

void rmu_adamw_hf_update(float *p, const float *g, float *m, float *v, size_t n, long step, double lr,
                         const rmu_adamw_cfg *c) {
    double bc1 = 1.0 - pow(c->beta1, (double)step), bc2 = 1.0 - pow(c->beta2, (double)step);
    float step_size = (float)(lr * sqrt(bc2) / bc1), b1 = (float)c->beta1, b2 = (float)c->beta2;
    float eps = (float)c->eps, decay = (float)(1.0 - lr * c->weight_decay);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        p[i] -= step_size * m[i] / (sqrtf(v[i]) + eps);
        if (c->weight_decay > 0) p[i] *= decay;
    }
}

#define SUMSQ_CHUNK 65536

double rmu_adamw_sumsq(const float *g, size_t n) {
    size_t nch = (n + SUMSQ_CHUNK - 1) / SUMSQ_CHUNK;
    double part[256], total = 0;
    /* chunks in groups of 256: each partial in its own slot, then summed in order */
    for (size_t c0 = 0; c0 < nch; c0 += 256) {
        size_t cn = nch - c0 < 256 ? nch - c0 : 256;
#pragma omp parallel for schedule(static) if (n > SUMSQ_CHUNK)
        for (size_t c = 0; c < cn; c++) {
            size_t i0 = (c0 + c) * SUMSQ_CHUNK, i1 = i0 + SUMSQ_CHUNK < n ? i0 + SUMSQ_CHUNK : n;
            double s = 0;
            for (size_t i = i0; i < i1; i++) s += (double)g[i] * g[i];
            part[c] = s;
        }
        for (size_t c = 0; c < cn; c++) total += part[c];
    }
    return total;
}

double rmu_adamw_clip_scale(double norm, double clip) {
    if (clip <= 0 || !(norm > clip)) return 1.0;
    return clip / (norm + 1e-6);
}

void rmu_adamw_scale(float *g, size_t n, float s) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) g[i] *= s;
}

int rmu_adamw_sched_parse(const char *s) {
    if (!strcmp(s, "constant")) return RMU_SCHED_CONSTANT;
    if (!strcmp(s, "linear")) return RMU_SCHED_LINEAR;
    if (!strcmp(s, "cosine")) return RMU_SCHED_COSINE;
    return -1;
}

double rmu_adamw_lr_factor(rmu_sched s, long step, long warmup, long total) {
    if (step < warmup) return (double)step / (double)(warmup > 1 ? warmup : 1);
    long span = total - warmup > 1 ? total - warmup : 1;
    switch (s) {
    case RMU_SCHED_LINEAR: {
        double f = (double)(total - step) / (double)span;
        return f > 0 ? f : 0;
    }
    case RMU_SCHED_COSINE: {
        double progress = (double)(step - warmup) / (double)span;
        double f = 0.5 * (1.0 + cos(M_PI * 2.0 * 0.5 * progress));
        return f > 0 ? f : 0;
    }
    default: return 1.0;
    }
}

#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

int rmu_sampler_init(rmu_sampler *s, int vocab, const rmu_sampler_cfg *cfg, rmu_err *e) {
    memset(s, 0, sizeof *s);
    if (cfg->temp < 0) return rmu_errf(e, "temp: must be >= 0, got %g", cfg->temp);
    if (cfg->top_k < 0) return rmu_errf(e, "top_k: must be >= 0, got %d", cfg->top_k);
    if (!(cfg->top_p > 0 && cfg->top_p <= 1)) return rmu_errf(e, "top_p: must be in (0, 1], got %g", cfg->top_p);
    s->cfg = *cfg;
    s->vocab = vocab;
    s->idx = malloc(sizeof(int) * vocab);
    s->prob = malloc(sizeof(float) * vocab);
    if (!s->idx || !s->prob) {
        rmu_sampler_free(s);
        return rmu_errf(e, "sampler: out of memory");
    }
    rmu_sampler_seed(s, cfg->seed);
    return 0;
}

void rmu_sampler_free(rmu_sampler *s) {
    free(s->idx);
    free(s->prob);
    s->idx = NULL;
    s->prob = NULL;
}

void rmu_sampler_seed(rmu_sampler *s, uint64_t seed) { s->rng = seed ^ RMU_GOLDEN64; }

/* SplitMix64 (core/rng.h); the state is the sampler's own. */
static double next_uniform(rmu_sampler *s) { return rmu_rng_uniform(&s->rng); }

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* qsort context: descending by probability, ties by lower id for determinism. */
static int cmp_desc(const void *a, const void *b, void *ctx) {
    const float *p = ctx;
    int i = *(const int *)a, j = *(const int *)b;
    if (p[i] > p[j]) return -1;
    if (p[i] < p[j]) return 1;
    return i - j;
}

int rmu_sampler_next(rmu_sampler *s, float *logits) {
    int V = s->vocab;
    if (s->cfg.temp <= 0) return argmax(logits, V);
    float mx = logits[argmax(logits, V)];
    double sum = 0;
    for (int i = 0; i < V; i++) {
        s->prob[i] = expf((logits[i] - mx) / s->cfg.temp);
        sum += s->prob[i];
    }
    int n = V;
    for (int i = 0; i < V; i++) s->idx[i] = i;
    if ((s->cfg.top_k > 0 && s->cfg.top_k < V) || s->cfg.top_p < 1) {
        qsort_r(s->idx, V, sizeof(int), cmp_desc, s->prob);
        if (s->cfg.top_k > 0 && s->cfg.top_k < n) n = s->cfg.top_k;
        if (s->cfg.top_p < 1) {
            /* smallest prefix whose mass reaches top_p (of the top-k renormalised mass) */
            double kept = 0, tot = 0;
            for (int i = 0; i < n; i++) tot += s->prob[s->idx[i]];
            int m = 0;
            while (m < n) {
                kept += s->prob[s->idx[m++]];
                if (kept >= s->cfg.top_p * tot) break;
            }
            n = m;
        }
        sum = 0;
        for (int i = 0; i < n; i++) sum += s->prob[s->idx[i]];
    }
    double r = next_uniform(s) * sum, c = 0;
    for (int i = 0; i < n; i++) {
        c += s->prob[s->idx[i]];
        if (r < c) return s->idx[i];
    }
    return s->idx[n - 1];
}

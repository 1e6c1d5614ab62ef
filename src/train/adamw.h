/* adamw.h - AdamW with torch.optim.AdamW semantics (and transformers.AdamW's, which the
 * WMDP reference uses), global-norm gradient clipping as
 * torch.nn.utils.clip_grad_norm_, and the learning-rate schedules of transformers'
 * get_*_schedule_with_warmup. Prefix rmu_adamw_. All reductions are in a fixed order
 * (independent of the thread count) so training is bit-reproducible. */
#ifndef RMU_ADAMW_H
#define RMU_ADAMW_H

#include <stddef.h>

typedef struct rmu_adamw_cfg {
    double lr;           /* base learning rate (the schedule scales it) */
    double beta1, beta2; /* 0.9, 0.999 */
    double eps;          /* 1e-8 */
    double weight_decay; /* decoupled: p -= lr * wd * p before the Adam update */
} rmu_adamw_cfg;

/* One AdamW step on n elements. step is 1-based (bias corrections 1 - beta^step); lr is
 * the scheduled rate for this step. As torch (foreach=False, amsgrad=False):
 *   p *= 1 - lr*wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps) */
void rmu_adamw_update(float *p, const float *g, float *m, float *v, size_t n, long step, double lr,
                      const rmu_adamw_cfg *c);

/* One step of transformers.AdamW (correct_bias=True), the optimizer of the WMDP reference
 * and the source of its eps 1e-6: eps is added to sqrt(v) before the bias corrections are
 * folded into the step size, and weight decay is applied after the update:
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   p -= lr sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps);  p *= 1 - lr*wd */
void rmu_adamw_hf_update(float *p, const float *g, float *m, float *v, size_t n, long step, double lr,
                         const rmu_adamw_cfg *c);

/* Sum of squares of g[n] in double, in fixed chunks. */
double rmu_adamw_sumsq(const float *g, size_t n);
/* clip_grad_norm_: given the global norm, the factor to multiply every grad by
 * (clip / (norm + 1e-6) when norm > clip, else 1; clip <= 0 disables). */
double rmu_adamw_clip_scale(double norm, double clip);
void rmu_adamw_scale(float *g, size_t n, float s);

typedef enum { RMU_SCHED_CONSTANT, RMU_SCHED_LINEAR, RMU_SCHED_COSINE } rmu_sched;
/* "constant" | "linear" | "cosine"; -1 when unknown. */
int rmu_adamw_sched_parse(const char *s);
/* Multiplier of the base lr at optimizer step `step` (0-based, as the LambdaLR of
 * transformers sees it: the first update uses step 0, so warmup > 0 starts at lr 0):
 *   warmup:   step < warmup -> step / max(1, warmup)
 *   constant: 1
 *   linear:   max(0, (total - step) / max(1, total - warmup))
 *   cosine:   max(0, 0.5 (1 + cos(pi * progress))), progress = (step - warmup) / max(1, total - warmup) */
double rmu_adamw_lr_factor(rmu_sched s, long step, long warmup, long total);

#endif

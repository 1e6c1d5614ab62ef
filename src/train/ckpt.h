/* ckpt.h - `rmu train` checkpoints. Prefix rmu_ckpt_.
 *
 * DIR/checkpoint-STEP holds state.safetensors (fp32 masters under their HF names, AdamW
 * moments as NAME.exp_avg / NAME.exp_avg_sq) and trainer_state.json (format, step, data
 * position, the epoch's RNG state, and under "run" the settings a resume must share). It is
 * written as DIR/checkpoint-STEP.tmp and renamed once complete (then DIR is fsynced), and an
 * old one is renamed to checkpoint-STEP.del before it is emptied, so a checkpoint-STEP folder
 * is always whole. */
#ifndef RMU_CKPT_H
#define RMU_CKPT_H

#include <jansson.h>
#include <stdint.h>

#include "core/err.h"
#include "model/model.h"
#include "train/trainer.h"

/* One F32 tensor of a file written by rmu_ckpt_write_f32. */
typedef struct rmu_ckpt_tensor {
    const char *name;
    const float *data;
    int ndim;
    int64_t shape[2];
} rmu_ckpt_tensor;

/* One F32 safetensors file, written atomically (gradient dumps, checkpoint state). */
int rmu_ckpt_write_f32(const char *path, const rmu_ckpt_tensor *t, int n, rmu_err *e);
/* Every trainable tensor's gradient, under its HF name and file shape, to one F32 file. */
int rmu_ckpt_dump_grads(const char *path, const rmu_model *m, const rmu_tr *tr, rmu_err *e);

/* Steps of the complete checkpoints in dir (ascending; none when dir is absent); stale
 * checkpoint-*.tmp folders of cut-off saves are removed. *steps is malloc'd (or NULL). */
int rmu_ckpt_list(const char *dir, long **steps, int *n, rmu_err *e);

/* Saves checkpoint `step` into dir (created if needed): state = {"epoch", "batch_in_epoch",
 * "epoch_rng_state", "loss"} beside "format", "step" and "run" = fp; keeps the newest `keep`. */
int rmu_ckpt_save(const char *dir, long step, const rmu_model *m, const rmu_tr *tr, const json_t *fp, long epoch,
                  long batch_in_epoch, const char *epoch_rng, double loss, int keep, rmu_err *e);
/* Drops all but the newest `keep` checkpoints of dir (a resumed run whose previous process was
 * killed between a save and its pruning finds one too many). */
int rmu_ckpt_prune(const char *dir, int keep, rmu_err *e);
/* Checks that checkpoint `step` of dir was made by a run with fingerprint fp (every key
 * equal). Errors name the first differing setting. */
int rmu_ckpt_check(const char *dir, long step, const json_t *fp, rmu_err *e);
/* rmu_ckpt_check, then loads its masters and AdamW state into tr. */
int rmu_ckpt_load(const char *dir, long step, rmu_tr *tr, const json_t *fp, rmu_err *e);

/* Removes a folder and the files in it (checkpoint folders are flat). */
void rmu_ckpt_rm_flat(const char *dir);

#endif

/* hfdir.h - the one writer of Hugging Face model folders: `rmu train`, `rmu unlearn` and
 * `rmu init` write through it (quantize, export and the relearning attacks will too).
 * Prefix rmu_hf_.
 *
 * A writer starts from an input folder (or from nothing), collects a plan and builds the
 * whole output folder OUT under a staging name beside it, then renames it into place, so
 * OUT is either absent (or its old self) or complete: a crash, SIGKILL or full disk never
 * leaves a half folder.
 *
 * What commit writes into the staging folder:
 *   - every regular file of the input except: names starting with "." (VCS and cache
 *     metadata); weights in any format (*.safetensors, *.safetensors.index.json, *.bin,
 *     *.bin.index.json, *.pt, *.pth, *.ckpt, *.h5, *.msgpack, *.gguf: the tensors are
 *     written again below, and a stale copy in another format would contradict them);
 *     provenance of earlier runs: rmu_*.json (rmu_unlearn.json today; every future rmu_*.json
 *     record describes only the folder its run wrote); and files the caller already wrote
 *     into the staging folder (rmu_hf_dir) under the same name;
 *   - config.json byte for byte, or rewritten (2-space indent, key order kept) when
 *     rmu_hf_config_set edited it;
 *   - every tensor of the input in its shard file and file order, each with its input data,
 *     new data (memory in any dtype, converted; or a streaming fill callback), a changed
 *     dtype, or dropped; extra tensors where the caller puts them;
 *   - the shard index, regenerated (none when the only shard is model.safetensors).
 * Tensors are converted in bounded chunks (two 32 MiB buffers, src/io/safetensors.h): never a
 * whole tensor or shard in memory.
 *
 * Staging folder: DIR/.NAME.rmu-staging.PID for OUT = DIR/NAME (DIR is created if needed).
 * Open removes the staging folders of dead processes for the same OUT; nothing ever loads
 * one. Alternatively the caller names a work folder (opts.work_dir, `rmu train`: it holds
 * the checkpoints during the run): its subfolders are kept and travel into OUT with the
 * rename; loose files in it (the remains of a cut-off commit) are removed at open and on
 * error.
 *
 * An existing OUT: an empty folder counts as absent. Otherwise it is an error unless
 * RMU_HF_REPLACE, and even then only a model folder (one holding config.json) is replaced:
 * the new folder is swapped in atomically (renameat2 RENAME_EXCHANGE; where the filesystem
 * lacks it, rename the old one aside first) and the old one removed.
 * OUT must not be the input folder (same inode; a symlink or another spelling of the path is
 * caught too). */
#ifndef RMU_HFDIR_H
#define RMU_HFDIR_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/err.h"
#include "io/safetensors.h"

#define RMU_HF_REPLACE 1u /* replace an existing model folder OUT as a whole */

/* 1 when a and b name the same existing folder (device and inode), else 0. */
int rmu_hf_same_dir(const char *a, const char *b);

/* The checks open makes, for callers that want to fail before hours of work: out_dir is not
 * in_dir (may be NULL), and is absent, an empty folder, or (with RMU_HF_REPLACE) a model
 * folder. Errors start with the path. */
int rmu_hf_check_out(const char *out_dir, const char *in_dir, unsigned flags, rmu_err *e);

/* 1 when NAME is a provenance file of an earlier run (rmu_*.json), which copies drop. */
int rmu_hf_is_provenance(const char *name);

typedef struct rmu_hf rmu_hf;

typedef struct rmu_hf_opts {
    const char *in_dir;       /* NULL: start empty (the caller adds every tensor and file) */
    const rmu_st_set *in_st;  /* in_dir's tensors when the caller has them open; else opened
                               * here. Must stay open until commit or abort. */
    const char *work_dir;     /* NULL: a PID-named staging folder; else this folder (above) */
    unsigned flags;           /* RMU_HF_REPLACE */
} rmu_hf_opts;

/* Elements [off, off + count) of tensor `name`, in its output dtype, into buf. count is
 * bounded by the writer's chunk; calls for one tensor come in order and never overlap. */
typedef int (*rmu_hf_fill_fn)(void *ctx, const char *name, size_t off, size_t count, void *buf, rmu_err *e);

/* Checks out_dir (rmu_hf_check_out), removes stale staging folders, makes the staging
 * folder and the plan (every input tensor unchanged). NULL on error. */
rmu_hf *rmu_hf_open(const char *out_dir, const rmu_hf_opts *o, rmu_err *e);
/* The staging folder: files the caller writes there (tokenizer, provenance) go into OUT. */
const char *rmu_hf_dir(const rmu_hf *w);

/* New data for tensor `name` (same shape): n elements of dtype dt at data, converted to
 * the tensor's output dtype in chunks. data must stay valid until commit. */
int rmu_hf_set_data(rmu_hf *w, const char *name, const void *data, rmu_dtype dt, rmu_err *e);
/* New data for `name` from a fill callback (in the output dtype). */
int rmu_hf_set_fill(rmu_hf *w, const char *name, rmu_hf_fill_fn fill, void *ctx, rmu_err *e);
/* Output dtype of `name`, or of every tensor when name is NULL (the data is converted). */
int rmu_hf_set_dtype(rmu_hf *w, const char *name, rmu_dtype dt, rmu_err *e);
int rmu_hf_drop(rmu_hf *w, const char *name, rmu_err *e);

/* An extra tensor (e.g. an FP8 *.weight_scale). Placed right after tensor `after` (NULL: at
 * the end), in `shard` (NULL: the shard of `after`, else of the last tensor, else
 * model.safetensors). Data from memory (data, data_dtype) or from fill (which wins). */
typedef struct rmu_hf_new {
    const char *name;
    rmu_dtype dtype;
    int ndim;
    int64_t shape[RMU_ST_MAX_DIMS];
    const char *shard, *after;
    const void *data;
    rmu_dtype data_dtype;
    rmu_hf_fill_fn fill;
    void *ctx;
} rmu_hf_new;
int rmu_hf_add(rmu_hf *w, const rmu_hf_new *t, rmu_err *e);

/* config.json edit: key = value (the reference is stolen), or removed when value is NULL
 * (e.g. "torch_dtype", or a "quantization_config" object). */
int rmu_hf_config_set(rmu_hf *w, const char *key, json_t *value, rmu_err *e);

/* Writes the folder and renames it into place. Frees w, also on error (the staging folder is
 * then removed: OUT is untouched). */
int rmu_hf_commit(rmu_hf *w, rmu_err *e);
/* Drops the staging folder (its loose files for a work_dir) and frees w. NULL is fine. */
void rmu_hf_abort(rmu_hf *w);

/* Removes a folder tree (no symlinks followed). 0, or -1 when something stayed. */
int rmu_hf_rmtree(const char *path);

#endif

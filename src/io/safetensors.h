/* safetensors.h - read (mmap, validated) and write (atomic) safetensors checkpoints,
 * single file or sharded through model.safetensors.index.json. Prefix rmu_st_. */
#ifndef RMU_SAFETENSORS_H
#define RMU_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/err.h"

#define RMU_ST_MAX_DIMS 8
/* Header length cap: real headers are < 1 MiB; 100 MiB as safetensors itself uses. */
#define RMU_ST_MAX_HEADER (100u << 20)

typedef struct rmu_st_tensor {
    char *name;
    rmu_dtype dtype;
    int ndim;
    int64_t shape[RMU_ST_MAX_DIMS];
    size_t nbytes;
    const void *data; /* points into the file's read-only mmap */
    int file;         /* index into rmu_st_set.files */
} rmu_st_tensor;

typedef struct rmu_st_file {
    char *path;
    char *name;       /* base name, e.g. "model-00001-of-00002.safetensors" */
    void *map;
    size_t size;
    size_t data_off;  /* 8 + header length */
} rmu_st_file;

typedef struct rmu_st_set {
    int nfiles;
    rmu_st_file *files;
    int ntensors;
    rmu_st_tensor *tensors; /* sorted by name */
    int sharded;            /* 1 when loaded through model.safetensors.index.json */
} rmu_st_set;

/* Parse and validate one file's header. buf holds the whole file (size bytes).
 * Checks: u64 length vs file size and RMU_ST_MAX_HEADER, JSON well-formed object,
 * known dtypes, shapes, offsets in bounds, nbytes == prod(shape)*dtype size,
 * tensors contiguous and non-overlapping and covering the data section.
 * On success *out is a malloc'd array of *n tensors (data pointers into buf). */
int rmu_st_parse(const uint8_t *buf, size_t size, const char *fname, rmu_st_tensor **out, int *n, rmu_err *e);
void rmu_st_free_tensors(rmu_st_tensor *t, int n);

/* Open DIR/model.safetensors.index.json (sharded) or DIR/model.safetensors. */
int rmu_st_open_dir(rmu_st_set *s, const char *dir, rmu_err *e);
/* Open one .safetensors file. */
int rmu_st_open_file(rmu_st_set *s, const char *path, rmu_err *e);
const rmu_st_tensor *rmu_st_get(const rmu_st_set *s, const char *name);
void rmu_st_close(rmu_st_set *s);
/* Drop the resident pages wholly inside [p, p + n) of a tensor's mapped data (its values
 * stay: a later read faults them in from the file again) - for data copied elsewhere. */
void rmu_st_release(const void *p, size_t n);

/* A tensor to write. data holds prod(shape) elements of dtype. shard is the file name
 * it goes to (NULL = "model.safetensors"). */
typedef struct rmu_st_out {
    const char *name;
    rmu_dtype dtype;
    int ndim;
    int64_t shape[RMU_ST_MAX_DIMS];
    const void *data;
    const char *shard;
} rmu_st_out;

/* Write tensors into DIR, one file per distinct shard name, each atomically (tmp, fsync,
 * rename). When more than one shard is used, also writes model.safetensors.index.json
 * (metadata.total_size + weight_map). Header metadata {"format":"pt"}. */
int rmu_st_write_dir(const char *dir, const rmu_st_out *t, int n, rmu_err *e);

/* Streaming variant for data that does not exist in memory yet (random init, format
 * conversion): fill writes elements [off, off + count) of tensor t[index], in its dtype,
 * into buf (count is bounded: two 32 MiB staging chunks, one filled while the other is
 * written, so fill runs concurrently with file I/O but never with itself).
 * t[i].data is ignored when fill is non-NULL; with fill NULL this is rmu_st_write_dir.
 * A single shard not named model.safetensors also gets an index (so rmu_st_open_dir finds
 * it); writing a single model.safetensors removes a stale index left in DIR. */
typedef int (*rmu_st_fill_fn)(void *ctx, int index, size_t off, size_t count, void *buf, rmu_err *e);
int rmu_st_write_dir_cb(const char *dir, const rmu_st_out *t, int n, rmu_st_fill_fn fill, void *ctx, rmu_err *e);

#endif

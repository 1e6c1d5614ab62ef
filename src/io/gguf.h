/* gguf.h - GGUF v3, the file format llama.cpp and ollama load: a streaming writer (all
 * metadata and tensor shapes first, then the tensor data in order, so a 7B export holds one
 * chunk of one tensor at a time; written under a temporary name and renamed when complete),
 * a validating reader (tests, validation, fuzzing), and the two tensor transforms an
 * HF -> GGUF export needs: Q8_0 quantization and the Q/K RoPE row order. Prefix rmu_gguf_.
 *
 * Layout (little-endian): "GGUF", u32 version 3, u64 tensor count, u64 metadata count,
 * metadata (key string, u32 value type, value), tensor infos (name, u32 ndim, u64 ne[ndim],
 * u32 ggml type, u64 offset into the data section), zero padding to the alignment, then
 * each tensor's data at its offset, each padded to the alignment. Strings are u64 length +
 * bytes, no NUL. ne[0] is the innermost (row) length: an HF [rows, cols] matrix is
 * ne = {cols, rows}. */
#ifndef RMU_GGUF_H
#define RMU_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define RMU_GGUF_VERSION 3
#define RMU_GGUF_ALIGN 32 /* llama.cpp's default (general.alignment absent) */
#define RMU_GGUF_MAX_DIMS 4
#define RMU_GGUF_QK8_0 32 /* elements per Q8_0 block */
#define RMU_GGUF_Q8_0_BLOCK 34 /* bytes per Q8_0 block: fp16 scale + 32 int8 */

/* Metadata value types (gguf_type). */
typedef enum rmu_gguf_vtype {
    RMU_GGUF_U8 = 0,
    RMU_GGUF_I8 = 1,
    RMU_GGUF_U16 = 2,
    RMU_GGUF_I16 = 3,
    RMU_GGUF_U32 = 4,
    RMU_GGUF_I32 = 5,
    RMU_GGUF_F32 = 6,
    RMU_GGUF_BOOL = 7,
    RMU_GGUF_STRING = 8,
    RMU_GGUF_ARRAY = 9,
    RMU_GGUF_U64 = 10,
    RMU_GGUF_I64 = 11,
    RMU_GGUF_F64 = 12,
    RMU_GGUF_NVTYPES
} rmu_gguf_vtype;

/* Tensor element types (ggml_type) rmu writes and reads. */
typedef enum rmu_ggml_type {
    RMU_GGML_F32 = 0,
    RMU_GGML_F16 = 1,
    RMU_GGML_Q8_0 = 8,
    RMU_GGML_BF16 = 30,
} rmu_ggml_type;

/* general.file_type values (llama.cpp's LLAMA_FTYPE_MOSTLY_*). */
enum {
    RMU_GGUF_FTYPE_F32 = 0,
    RMU_GGUF_FTYPE_F16 = 1,
    RMU_GGUF_FTYPE_Q8_0 = 7,
    RMU_GGUF_FTYPE_BF16 = 32,
};

/* tokenizer.ggml.token_type values (llama.cpp's llama_token_type). */
enum {
    RMU_GGUF_TOK_NORMAL = 1,
    RMU_GGUF_TOK_UNKNOWN = 2,
    RMU_GGUF_TOK_CONTROL = 3,
    RMU_GGUF_TOK_USER_DEFINED = 4,
    RMU_GGUF_TOK_UNUSED = 5,
    RMU_GGUF_TOK_BYTE = 6,
};

/* "F32", "F16", "Q8_0", "BF16"; NULL for a type rmu does not know. */
const char *rmu_ggml_type_name(rmu_ggml_type t);
/* Bytes of n elements of type t (n a multiple of the block size); 0 when t is unknown or
 * n is not a whole number of blocks. */
size_t rmu_ggml_nbytes(rmu_ggml_type t, int64_t n);
/* Bytes of one metadata scalar of type t (0 for STRING, ARRAY and unknown types). */
size_t rmu_gguf_vtype_size(rmu_gguf_vtype t);

/* ---------------------------------------------------------------- writer */

typedef struct rmu_gguf_writer rmu_gguf_writer;

rmu_gguf_writer *rmu_gguf_writer_new(rmu_err *e);
/* Frees; a file begun but not finished is removed (its temporary name). NULL is fine. */
void rmu_gguf_writer_free(rmu_gguf_writer *w);

/* Metadata, kept in the order given. Keys must be unique and non-empty. A scalar's value
 * points to one value of the type (STRING: a const char *, NUL-terminated; BOOL: a uint8_t
 * 0/1). An array's vals point to n values of elem_type (STRING: an array of n const char *;
 * lens, when non-NULL, gives their byte lengths, so pieces may hold any bytes). Nested
 * arrays are not written. */
int rmu_gguf_set(rmu_gguf_writer *w, const char *key, rmu_gguf_vtype type, const void *value, rmu_err *e);
int rmu_gguf_set_array(rmu_gguf_writer *w, const char *key, rmu_gguf_vtype elem_type, const void *vals,
                       const size_t *lens, uint64_t n, rmu_err *e);
/* Typed shorthands for rmu_gguf_set. */
int rmu_gguf_set_u32(rmu_gguf_writer *w, const char *key, uint32_t v, rmu_err *e);
int rmu_gguf_set_f32(rmu_gguf_writer *w, const char *key, float v, rmu_err *e);
int rmu_gguf_set_bool(rmu_gguf_writer *w, const char *key, int v, rmu_err *e);
int rmu_gguf_set_str(rmu_gguf_writer *w, const char *key, const char *v, rmu_err *e);

/* Declares the next tensor: ne in GGML order (ne[0] = row length), 1 <= ndim <= 4, every
 * ne[d] >= 1; ne[0] a multiple of 32 for Q8_0. Offsets follow from the sizes. */
int rmu_gguf_add_tensor(rmu_gguf_writer *w, const char *name, rmu_ggml_type type, int ndim, const int64_t *ne,
                        rmu_err *e);
/* Bytes of tensor i's data as declared (0 when out of range). */
size_t rmu_gguf_tensor_nbytes(const rmu_gguf_writer *w, int i);

/* Writes the header (metadata, tensor infos, padding) to PATH's temporary name; after this
 * no metadata or tensor can be added. */
int rmu_gguf_begin(rmu_gguf_writer *w, const char *path, rmu_err *e);
/* Appends tensor data: the tensors in the order declared, each exactly its size, cut into
 * pieces of any size; the alignment padding after each tensor is written here. More bytes
 * than declared is an error (and drops the file). */
int rmu_gguf_write(rmu_gguf_writer *w, const void *data, size_t n, rmu_err *e);
/* Checks that every tensor byte arrived, fsyncs and renames onto PATH. *size (may be NULL)
 * gets the file's size. */
int rmu_gguf_finish(rmu_gguf_writer *w, uint64_t *size, rmu_err *e);

/* ---------------------------------------------------------------- reader */

typedef struct rmu_gguf_kv {
    char *key;              /* NUL-terminated copy */
    rmu_gguf_vtype type;
    rmu_gguf_vtype arr_type; /* ARRAY: element type (never ARRAY) */
    uint64_t n;             /* ARRAY: element count; STRING: byte length */
    /* scalars, widened: unsigned types and BOOL in u, signed in i, F32/F64 in f */
    uint64_t u;
    int64_t i;
    double f;
    const uint8_t *data;    /* STRING: its bytes; ARRAY of numbers: the first element */
    const uint8_t **str;    /* ARRAY of STRING: n pointers to the bytes ... */
    uint64_t *str_len;      /* ... and their lengths */
} rmu_gguf_kv;

typedef struct rmu_gguf_tensor {
    char *name;
    rmu_ggml_type type;
    int ndim;
    int64_t ne[RMU_GGUF_MAX_DIMS];
    uint64_t offset;        /* from the start of the data section */
    size_t nbytes;
    const uint8_t *data;    /* into the buffer */
} rmu_gguf_tensor;

typedef struct rmu_gguf_file {
    uint32_t version;
    int n_kv, n_tensors;
    rmu_gguf_kv *kv;        /* file order */
    rmu_gguf_tensor *tensors; /* file order */
    size_t alignment;       /* general.alignment or 32 */
    size_t data_off;        /* start of the data section */
    void *map;              /* rmu_gguf_open's mmap */
    size_t size;
} rmu_gguf_file;

/* Parses and validates buf[0..size) (fname names it in messages): magic, version 3, counts
 * bounded by the size, metadata types, strings and arrays within the buffer, unique keys,
 * general.alignment a power of two, tensor names unique, 1..4 dims, known types, Q8_0 rows
 * whole blocks, offsets aligned and consecutive in file order (as llama.cpp requires), every
 * tensor inside the buffer. Pointers in *f point into buf, which must outlive f. */
int rmu_gguf_parse(const uint8_t *buf, size_t size, const char *fname, rmu_gguf_file *f, rmu_err *e);
/* mmaps PATH read-only and parses it. */
int rmu_gguf_open(const char *path, rmu_gguf_file *f, rmu_err *e);
void rmu_gguf_close(rmu_gguf_file *f);
const rmu_gguf_kv *rmu_gguf_find(const rmu_gguf_file *f, const char *key);
const rmu_gguf_tensor *rmu_gguf_tensor_find(const rmu_gguf_file *f, const char *name);
/* Element i of a numeric array as a double (BOOL as 0/1); 0 when i or the type is out of range. */
double rmu_gguf_arr_num(const rmu_gguf_kv *kv, uint64_t i);

/* ---------------------------------------------------------------- tensor transforms */

/* Q8_0 as ggml's quantize_row_q8_0_ref: per block of 32, d = amax / 127, stored as fp16,
 * q[j] = roundf(x[j] * (1/d)) (0 when d is 0). n must be a multiple of 32; out gets
 * n / 32 * 34 bytes. */
void rmu_gguf_quantize_q8_0(const float *x, int64_t n, uint8_t *out);
/* Row r of the GGML-layout q/k weight comes from this row of the HF weight. HF's RoPE
 * rotates dim pairs (k, k + head_dim/2) of each head (rotate_half); llama.cpp's llama
 * architecture rotates adjacent pairs (2k, 2k + 1), so each head's rows are interleaved:
 * GGML row 2k + s of a head = HF row s * head_dim/2 + k. head_dim is even. */
static inline int64_t rmu_gguf_rope_src_row(int64_t r, int64_t head_dim) {
    int64_t h = r / head_dim, i = r % head_dim;
    return h * head_dim + (i % 2) * (head_dim / 2) + i / 2;
}

#endif

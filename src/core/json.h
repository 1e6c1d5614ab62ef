/* json.h - the JSON and JSON Lines conventions every reader and writer of the tree shares
 * (on jansson). Prefix rmu_json_ / rmu_jsonl_. Internal: not part of include/rmu.h.
 *
 * JSON Lines, as read everywhere: a UTF-8 BOM at the start of the file is skipped; lines
 * end at "\n" (a "\r" before it is dropped); lines holding only whitespace are skipped;
 * every other line must be one JSON value (errors name PATH:LINE). */
#ifndef RMU_JSON_H
#define RMU_JSON_H

#include <jansson.h>
#include <stddef.h>

#include "core/err.h"
#include "core/fileio.h"

/* Called once per JSON line; line is 1-based. Return 0 to go on, 1 to stop early without
 * error, -1 (with e filled) to fail. The value is borrowed: incref it to keep it. */
typedef int (*rmu_jsonl_fn)(void *ud, json_t *v, long line, rmu_err *e);

/* A last line without "\n" that does not parse is ignored instead of an error: a log
 * whose writer was killed mid-line. */
#define RMU_JSONL_TORN_TAIL_OK 1u

/* Iterates the JSON lines of text[len] (path names it in errors). Returns 0, or -1. */
int rmu_jsonl_parse(const char *path, const char *text, size_t len, unsigned flags, rmu_jsonl_fn fn, void *ud,
                    rmu_err *e);
/* Reads PATH and iterates it; with sha_hex (65 bytes) also the SHA-256 of the bytes read. */
int rmu_jsonl_read(const char *path, unsigned flags, rmu_jsonl_fn fn, void *ud, char *sha_hex, rmu_err *e);

/* 1 when text (after a BOM and whitespace) starts with '[': a whole-file JSON array rather
 * than JSON Lines (the datasets "json" loader accepts both under .json). */
int rmu_json_is_array_text(const char *text, size_t len);

/* Python's repr() of a float, as json.dumps prints it: the shortest digits that read back
 * to v ("0.30000000000000004", "7.0", "1e+16", "1.5e-05"); NaN, Infinity, -Infinity. */
void rmu_json_float_repr(double v, char out[32]);
/* j as Python's json.dumps(j) writes it with the default settings: ", " and ": "
 * separators, ensure_ascii (\u escapes with lowercase hex, surrogate pairs, DEL escaped),
 * floats by repr, object keys in insertion order. What FastChat's files hold byte for byte.
 * NULL on allocation failure. */
char *rmu_json_dumps_py(const json_t *j);

/* json_dumps + "\n"; NULL on allocation failure. */
char *rmu_json_dumps_line(const json_t *j, size_t flags);
/* Whole JSON document + "\n" to PATH atomically (temporary name, fsync, rename). */
int rmu_json_write_file(const char *path, const json_t *j, size_t flags, rmu_err *e);
/* One JSON line (flags as json_dumps: pass JSON_COMPACT for the compact form) appended to
 * an open atomic file; on failure the file is aborted, as rmu_afile_write does. */
int rmu_json_write_line(rmu_afile *a, const json_t *j, size_t flags, rmu_err *e);

#endif

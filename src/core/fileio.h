/* fileio.h - whole-file reads, atomic writes, paths, hashing. */
#ifndef RMU_FILEIO_H
#define RMU_FILEIO_H

#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "strbuf.h"

/* Read a whole file into a NUL-terminated malloc'd buffer; *len gets the size
 * (without the NUL). Returns NULL and fills e on failure. */
char *rmu_file_read_all(const char *path, size_t *len, rmu_err *e);
/* The same with an explicit size limit: a longer file is an error naming PATH, its size and
 * the limit, found before anything is read (bad input never costs more memory than max). */
char *rmu_file_read_max(const char *path, size_t max, size_t *len, rmu_err *e);

/* Calls fn for every line of PATH, without its "\n" (has_nl: one followed; a "\r" before it
 * stays), a UTF-8 BOM at the start skipped. The file is read in chunks: memory is one line,
 * and a line longer than max_line bytes (at least 1 MiB) is an error naming PATH:LINE and the limit, found
 * before more than max_line bytes of it are held. sha_hex (65 bytes, or NULL) gets the
 * SHA-256 of every byte of the file. fn returns 0 to go on, 1 to stop, -1 (e filled) to fail.
 * Returns 0 or -1. */
typedef int (*rmu_line_fn)(void *ud, const char *s, size_t n, long line, int has_nl, rmu_err *e);
int rmu_file_lines(const char *path, size_t max_line, rmu_line_fn fn, void *ud, char *sha_hex, rmu_err *e);

/* Atomic output: writes go to "PATH.tmp.PID", rmu_afile_commit fsyncs, renames
 * onto PATH and fsyncs the folder, so PATH is either the old or the new whole file. Open
 * also removes "PATH.tmp.N" files of dead processes N (writers killed before their rename). */
typedef struct rmu_afile {
    FILE *f;
    char path[4096];
    char tmp[4200];
} rmu_afile;

int rmu_afile_open(rmu_afile *a, const char *path, rmu_err *e);
int rmu_afile_write(rmu_afile *a, const void *buf, size_t n, rmu_err *e);
int rmu_afile_commit(rmu_afile *a, rmu_err *e);
/* Drops the temporary file (after an error). Safe to call twice. */
void rmu_afile_abort(rmu_afile *a);

/* Whole buffer to PATH atomically. */
int rmu_file_write_atomic(const char *path, const void *buf, size_t n, rmu_err *e);
/* A built text to PATH atomically, then frees the builder whatever happens: a builder that
 * ran out of memory is an error naming PATH (nothing written). */
int rmu_file_write_sb(const char *path, rmu_sb *s, rmu_err *e);
/* Copy SRC to DST atomically. */
int rmu_file_copy(const char *src, const char *dst, rmu_err *e);
int rmu_file_exists(const char *path);
/* mkdir -p */
int rmu_mkdirs(const char *path, rmu_err *e);
/* dst = dir + "/" + name (truncation is an error). */
int rmu_path_join(char *dst, size_t cap, const char *dir, const char *name, rmu_err *e);

/* SHA-256 of a file, as 64 lowercase hex chars + NUL in hex[65]. */
int rmu_file_sha256(const char *path, char hex[65], rmu_err *e);
void rmu_sha256(const void *data, size_t n, uint8_t out[32]);
/* SHA-256 of a buffer as 64 lowercase hex chars + NUL. */
void rmu_sha256_hex(const void *data, size_t n, char hex[65]);

#endif

#include "fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *rmu_file_read_max(const char *path, size_t max, size_t *len, rmu_err *e) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        rmu_errf(e, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    /* a regular file's size is known: one exact allocation, and the limit checked first */
    struct stat st;
    size_t cap = 1 << 16, n = 0;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode)) {
        if ((uint64_t)st.st_size > max) {
            fclose(f);
            rmu_errf(e, "%s: %llu bytes, over the limit of %zu bytes for this file", path,
                     (unsigned long long)st.st_size, max);
            return NULL;
        }
        cap = (size_t)st.st_size + 1; /* + 1: EOF is seen without a second allocation */
    }
    char *buf = malloc(cap + 1);
    if (!buf) { fclose(f); rmu_errf(e, "%s: out of memory", path); return NULL; }
    for (;;) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n > max) {
            free(buf);
            fclose(f);
            rmu_errf(e, "%s: over the limit of %zu bytes for this file", path, max);
            return NULL;
        }
        if (n < cap) break;
        char *nb = realloc(buf, cap * 2 + 1);
        if (!nb) { free(buf); fclose(f); rmu_errf(e, "%s: out of memory", path); return NULL; }
        buf = nb;
        cap *= 2;
    }
    if (ferror(f)) {
        free(buf);
        fclose(f);
        rmu_errf(e, "%s: read error", path);
        return NULL;
    }
    fclose(f);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

char *rmu_file_read_all(const char *path, size_t *len, rmu_err *e) { return rmu_file_read_max(path, SIZE_MAX - 2, len, e); }

/* "BASE.tmp.PID" files of dead processes beside path. */
static void remove_stale_tmp(const char *path) {
    char d[4096], b[4096];
    snprintf(d, sizeof d, "%s", path);
    snprintf(b, sizeof b, "%s", path);
    const char *dir = dirname(d), *base = basename(b);
    size_t bl = strlen(base);
    DIR *dh = opendir(dir);
    if (!dh) return;
    struct dirent *de;
    while ((de = readdir(dh))) {
        const char *n = de->d_name;
        if (strncmp(n, base, bl) || strncmp(n + bl, ".tmp.", 5)) continue;
        char *end;
        long pid = strtol(n + bl + 5, &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to judge */
        char p[8200];
        snprintf(p, sizeof p, "%s/%s", dir, n);
        unlink(p);
    }
    closedir(dh);
}

int rmu_afile_open(rmu_afile *a, const char *path, rmu_err *e) {
    memset(a, 0, sizeof *a);
    if (strlen(path) >= sizeof a->path) return rmu_errf(e, "%s: path too long", path);
    strcpy(a->path, path);
    snprintf(a->tmp, sizeof a->tmp, "%s.tmp.%ld", path, (long)getpid());
    remove_stale_tmp(path);
    a->f = fopen(a->tmp, "wb");
    if (!a->f) return rmu_errf(e, "%s: cannot create: %s", a->tmp, strerror(errno));
    return 0;
}

int rmu_afile_write(rmu_afile *a, const void *buf, size_t n, rmu_err *e) {
    if (n && fwrite(buf, 1, n, a->f) != n) {
        int r = rmu_errf(e, "%s: write failed: %s", a->tmp, strerror(errno));
        rmu_afile_abort(a);
        return r;
    }
    return 0;
}

static void fsync_dir_of(const char *path) {
    char d[4096];
    snprintf(d, sizeof d, "%s", path);
    int fd = open(dirname(d), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int rmu_afile_commit(rmu_afile *a, rmu_err *e) {
    if (!a->f) return rmu_errf(e, "%s: file already closed", a->path);
    int bad = fflush(a->f) != 0 || fsync(fileno(a->f)) != 0;
    bad |= fclose(a->f) != 0;
    a->f = NULL;
    if (bad) {
        unlink(a->tmp);
        return rmu_errf(e, "%s: write failed: %s", a->tmp, strerror(errno));
    }
    if (rename(a->tmp, a->path) != 0) {
        int r = rmu_errf(e, "%s: cannot rename into place: %s", a->path, strerror(errno));
        unlink(a->tmp);
        return r;
    }
    fsync_dir_of(a->path);
    return 0;
}

void rmu_afile_abort(rmu_afile *a) {
    if (a->f) {
        fclose(a->f);
        a->f = NULL;
        unlink(a->tmp);
    }
}

int rmu_file_write_atomic(const char *path, const void *buf, size_t n, rmu_err *e) {
    rmu_afile a;
    if (rmu_afile_open(&a, path, e) || rmu_afile_write(&a, buf, n, e)) return -1;
    return rmu_afile_commit(&a, e);
}

int rmu_file_write_sb(const char *path, rmu_sb *s, rmu_err *e) {
    int rc = s->oom ? rmu_errf(e, "%s: out of memory", path) : rmu_file_write_atomic(path, s->p ? s->p : "", s->n, e);
    rmu_sb_free(s);
    return rc;
}

int rmu_file_copy(const char *src, const char *dst, rmu_err *e) {
    FILE *in = fopen(src, "rb");
    if (!in) return rmu_errf(e, "%s: cannot open: %s", src, strerror(errno));
    rmu_afile a;
    if (rmu_afile_open(&a, dst, e)) { fclose(in); return -1; }
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (rmu_afile_write(&a, buf, n, e)) { fclose(in); return -1; }
    int rerr = ferror(in);
    fclose(in);
    if (rerr) { rmu_afile_abort(&a); return rmu_errf(e, "%s: read error", src); }
    return rmu_afile_commit(&a, e);
}

int rmu_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int rmu_mkdirs(const char *path, rmu_err *e) {
    char p[4096];
    if (strlen(path) >= sizeof p) return rmu_errf(e, "%s: path too long", path);
    strcpy(p, path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) return rmu_errf(e, "%s: cannot create folder: %s", p, strerror(errno));
        *s = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST) return rmu_errf(e, "%s: cannot create folder: %s", p, strerror(errno));
    return 0;
}

int rmu_path_join(char *dst, size_t cap, const char *dir, const char *name, rmu_err *e) {
    int n = snprintf(dst, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) return rmu_errf(e, "%s/%s: path too long", dir, name);
    return 0;
}

/* ---- SHA-256 (FIPS 180-4), small and dependency-free: used only to record corpus
 * hashes in output metadata, not on a hot path. */
typedef struct { uint32_t h[8]; uint64_t len; uint8_t buf[64]; size_t nbuf; } sha256_ctx;

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(sha256_ctx *c, const uint8_t *p) {
    uint32_t w[64], a[8];
    for (int i = 0; i < 16; i++) w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    memcpy(a, c->h, sizeof a);
    for (int i = 0; i < 64; i++) {
        uint32_t S1 = ROR(a[4], 6) ^ ROR(a[4], 11) ^ ROR(a[4], 25);
        uint32_t ch = (a[4] & a[5]) ^ (~a[4] & a[6]);
        uint32_t t1 = a[7] + S1 + ch + K256[i] + w[i];
        uint32_t S0 = ROR(a[0], 2) ^ ROR(a[0], 13) ^ ROR(a[0], 22);
        uint32_t mj = (a[0] & a[1]) ^ (a[0] & a[2]) ^ (a[1] & a[2]);
        uint32_t t2 = S0 + mj;
        memmove(a + 1, a, 7 * sizeof a[0]);
        a[4] += t1;
        a[0] = t1 + t2;
    }
    for (int i = 0; i < 8; i++) c->h[i] += a[i];
}

static void sha256_init(sha256_ctx *c) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, h0, sizeof h0);
    c->len = 0;
    c->nbuf = 0;
}

static void sha256_update(sha256_ctx *c, const uint8_t *p, size_t n) {
    c->len += n;
    while (n) {
        size_t k = 64 - c->nbuf < n ? 64 - c->nbuf : n;
        memcpy(c->buf + c->nbuf, p, k);
        c->nbuf += k;
        p += k;
        n -= k;
        if (c->nbuf == 64) { sha256_block(c, c->buf); c->nbuf = 0; }
    }
}

static void sha256_final(sha256_ctx *c, uint8_t out[32]) {
    uint64_t bits = c->len * 8;
    uint8_t pad = 0x80, z = 0;
    sha256_update(c, &pad, 1);
    while (c->nbuf != 56) sha256_update(c, &z, 1);
    uint8_t L[8];
    for (int i = 0; i < 8; i++) L[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_update(c, L, 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(c->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(c->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)c->h[i];
    }
}

void rmu_sha256(const void *data, size_t n, uint8_t out[32]) {
    sha256_ctx c;
    sha256_init(&c);
    sha256_update(&c, data, n);
    sha256_final(&c, out);
}

static void hex_digest(const uint8_t d[32], char hex[65]) {
    for (int i = 0; i < 32; i++) sprintf(hex + 2 * i, "%02x", d[i]);
}

int rmu_file_sha256(const char *path, char hex[65], rmu_err *e) {
    FILE *f = fopen(path, "rb");
    if (!f) return rmu_errf(e, "%s: cannot open: %s", path, strerror(errno));
    sha256_ctx c;
    sha256_init(&c);
    uint8_t buf[1 << 16], out[32];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) sha256_update(&c, buf, n);
    fclose(f);
    sha256_final(&c, out);
    hex_digest(out, hex);
    return 0;
}

void rmu_sha256_hex(const void *data, size_t n, char hex[65]) {
    uint8_t out[32];
    rmu_sha256(data, n, out);
    hex_digest(out, hex);
}

int rmu_file_lines(const char *path, size_t max_line, rmu_line_fn fn, void *ud, char *sha_hex, rmu_err *e) {
    FILE *f = fopen(path, "rb");
    if (!f) return rmu_errf(e, "%s: cannot open: %s", path, strerror(errno));
    enum { CHUNK = 1 << 20 };
    size_t cap = 2 * (size_t)CHUNK, len = 0, scan = 0; /* buf[0, len): unconsumed; [0, scan) has no "\n" */
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return rmu_errf(e, "%s: out of memory", path);
    }
    sha256_ctx c;
    sha256_init(&c);
    long line = 1;
    int rc = 0, first = 1, eof = 0;
    while (!rc) {
        char *nl = memchr(buf + scan, '\n', len - scan);
        if (nl) {
            size_t n = (size_t)(nl - buf);
            if (n > max_line) {
                rc = rmu_errf(e, "%s:%ld: a line of %zu bytes, over the limit of %zu MiB for one line", path, line, n,
                              max_line >> 20);
                break;
            }
            int r = fn(ud, buf, n, line++, 1, e);
            if (r) {
                rc = r < 0 ? -1 : 0;
                eof = r > 0 ? 2 : eof;
                break;
            }
            memmove(buf, nl + 1, len - n - 1);
            len -= n + 1;
            scan = 0;
            continue;
        }
        scan = len;
        if (len > max_line) {
            rc = rmu_errf(e, "%s:%ld: a line of more than %zu MiB, over the limit for one line", path, line, max_line >> 20);
            break;
        }
        if (eof) {
            if (len) {
                int r = fn(ud, buf, len, line, 0, e);
                rc = r < 0 ? -1 : 0;
            }
            break;
        }
        if (cap - len < CHUNK) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                rc = rmu_errf(e, "%s: out of memory", path);
                break;
            }
            buf = nb, cap *= 2;
        }
        size_t got = fread(buf + len, 1, CHUNK, f);
        if (got < CHUNK) {
            if (ferror(f)) {
                rc = rmu_errf(e, "%s: read error", path);
                break;
            }
            eof = 1;
        }
        sha256_update(&c, (const uint8_t *)buf + len, got);
        if (first) { /* a UTF-8 byte order mark is not part of the first line (len is 0 here) */
            first = 0;
            if (got >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3)) {
                memmove(buf, buf + 3, got - 3);
                got -= 3;
            }
        }
        len += got;
    }
    if (!rc && sha_hex) {
        uint8_t d[32];
        if (eof != 2) sha256_final(&c, d), hex_digest(d, sha_hex);
        else sha_hex[0] = 0; /* stopped early: not the whole file */
    }
    free(buf);
    fclose(f);
    return rc;
}

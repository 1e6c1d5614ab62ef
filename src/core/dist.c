/* dist.c - MPI ranks for data parallelism (see dist.h); without RMU_MPI a single process. */
#include "core/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef RMU_MPI
#include <mpi.h>
#endif

/* Launchers announce themselves through the environment: Open MPI's mpirun, and PMI/PMIx
 * (MPICH's hydra, Slurm's srun --mpi=...). A plain `rmu ...` sets none of them. */
static int launched(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMI_RANK") || getenv("PMIX_RANK");
}

#ifndef RMU_MPI
/* The job's size as the launcher announced it (0: not announced). */
static long announced_size(void) {
    const char *v = getenv("OMPI_COMM_WORLD_SIZE");
    if (!v) v = getenv("PMI_SIZE");
    return v ? strtol(v, NULL, 10) : 0;
}
#endif

int rmu_dist_available(void) {
#ifdef RMU_MPI
    return 1;
#else
    return 0;
#endif
}

static int single(const rmu_dist *d) { return !d || d->size <= 1; }

int rmu_dist_root(const rmu_dist *d) { return !d || d->rank == 0; }

void rmu_dist_split(long n, const rmu_dist *d, long *lo, long *hi) {
    long r = d ? d->rank : 0, s = d && d->size > 0 ? d->size : 1, q = n / s, m = n % s;
    *lo = r * q + (r < m ? r : m);
    *hi = *lo + q + (r < m);
}

#ifdef RMU_MPI
static int mpi_fail(int code, const char *what, rmu_err *e) {
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "error %d", code);
    return rmu_errf(e, "MPI: %s failed: %s", what, s);
}

/* MPI counts are ints: larger buffers go in pieces (a 7B model's three down_proj
 * gradients, 176M floats, are one piece). */
#define PIECE ((size_t)1 << 30)
#define PIECES(n, i, k) for (size_t i = 0, k; i < (n) && (k = (n) - i < PIECE ? (n) - i : PIECE, 1); i += k)
#endif

int rmu_dist_init(rmu_dist *d, rmu_err *e) {
    memset(d, 0, sizeof *d);
    d->size = 1;
#ifdef RMU_MPI
    if (!launched()) return 0;
    int inited = 0, prov = 0;
    MPI_Initialized(&inited);
    /* FUNNELED: OpenMP threads compute, only the main thread talks to MPI */
    if (!inited && MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &prov) != MPI_SUCCESS)
        return rmu_errf(e, "MPI: MPI_Init_thread failed");
    d->mpi = !inited;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
#else
    long n = launched() ? announced_size() : 0;
    if (n > 1)
        return rmu_errf(e, "started as one of %ld MPI ranks, but this rmu was built without MPI, so every rank "
                           "would run the whole job (rebuild with make MPI=1)", n);
#endif
    return 0;
}

void rmu_dist_finish(rmu_dist *d) {
    if (!d) return;
#ifdef RMU_MPI
    if (d->mpi) MPI_Finalize();
#endif
    d->mpi = 0;
}

int rmu_dist_agree(const rmu_dist *d, int rc, rmu_err *e) {
    if (single(d)) return rc;
#ifdef RMU_MPI
    int mine = rc ? d->rank : d->size, first = d->size, c;
    if ((c = MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD)) != MPI_SUCCESS)
        return mpi_fail(c, "MPI_Allreduce (error agreement)", e);
    if (first == d->size) return 0;
    struct {
        int rc;
        char msg[sizeof e->msg];
    } m = {rc, ""};
    if (d->rank == first) memcpy(m.msg, e->msg, sizeof m.msg);
    if ((c = MPI_Bcast(&m, (int)sizeof m, MPI_BYTE, first, MPI_COMM_WORLD)) != MPI_SUCCESS)
        return mpi_fail(c, "MPI_Bcast (error message)", e);
    m.msg[sizeof m.msg - 1] = 0;
    if (first > 0) { /* name the rank, cutting the text rather than the rank when it is long */
        char tail[32];
        size_t n = strlen(m.msg), t = (size_t)snprintf(tail, sizeof tail, " (rank %d)", first);
        if (n + t >= sizeof m.msg) n = sizeof m.msg - 1 - t;
        memcpy(m.msg + n, tail, t + 1);
    }
    memcpy(e->msg, m.msg, sizeof e->msg);
    return m.rc;
#else
    return rc;
#endif
}

#ifdef RMU_MPI
/* In-place sum over all ranks of n elements of esz bytes (type t), in pieces MPI's int counts hold. */
static int sum_pieces(void *buf, size_t n, size_t esz, MPI_Datatype t, rmu_err *e) {
    PIECES(n, i, k) {
        int c = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + i * esz, (int)k, t, MPI_SUM, MPI_COMM_WORLD);
        if (c != MPI_SUCCESS) return mpi_fail(c, "MPI_Allreduce", e);
    }
    return 0;
}
#endif

int rmu_dist_sum_f32(const rmu_dist *d, float *buf, size_t n, rmu_err *e) {
#ifdef RMU_MPI
    if (!single(d)) return sum_pieces(buf, n, sizeof *buf, MPI_FLOAT, e);
#endif
    (void)d, (void)buf, (void)n, (void)e;
    return 0;
}

int rmu_dist_sum_f64(const rmu_dist *d, double *buf, size_t n, rmu_err *e) {
#ifdef RMU_MPI
    if (!single(d)) return sum_pieces(buf, n, sizeof *buf, MPI_DOUBLE, e);
#endif
    (void)d, (void)buf, (void)n, (void)e;
    return 0;
}

int rmu_dist_bcast(const rmu_dist *d, void *buf, size_t n, rmu_err *e) {
    if (single(d)) return 0;
#ifdef RMU_MPI
    PIECES(n, i, k) {
        int c = MPI_Bcast((char *)buf + i, (int)k, MPI_BYTE, 0, MPI_COMM_WORLD);
        if (c != MPI_SUCCESS) return mpi_fail(c, "MPI_Bcast", e);
    }
#endif
    return 0;
}

int rmu_dist_gather_bytes(const rmu_dist *d, const void *buf, size_t n, char **out, size_t *nout, rmu_err *e) {
    *out = NULL;
    *nout = 0;
    if (single(d)) {
        if (!(*out = malloc(n + 1))) return rmu_errf(e, "out of memory gathering %zu bytes", n);
        if (n) memcpy(*out, buf, n);
        (*out)[n] = 0;
        *nout = n;
        return 0;
    }
#ifdef RMU_MPI
    /* the sizes first, so rank 0 allocates once; then each rank's bytes, in rank order */
    unsigned long long mine = n, *sizes = NULL;
    int c, root = d->rank == 0, bad = root && !(sizes = malloc(sizeof *sizes * (size_t)d->size));
    if (rmu_dist_agree(d, bad ? rmu_errf(e, "out of memory gathering sizes") : 0, e)) return -1;
    c = MPI_Gather(&mine, 1, MPI_UNSIGNED_LONG_LONG, sizes, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
    if (c != MPI_SUCCESS) {
        free(sizes);
        return mpi_fail(c, "MPI_Gather", e);
    }
    size_t total = 0;
    for (int r = 0; root && r < d->size; r++) total += sizes[r];
    bad = root && !(*out = malloc(total + 1));
    if (rmu_dist_agree(d, bad ? rmu_errf(e, "out of memory gathering %zu bytes", total) : 0, e)) {
        free(sizes);
        return -1;
    }
    if (!root) {
        PIECES(n, i, k) {
            if ((c = MPI_Send((const char *)buf + i, (int)k, MPI_BYTE, 0, 0, MPI_COMM_WORLD)) != MPI_SUCCESS)
                return mpi_fail(c, "MPI_Send", e);
        }
        return 0;
    }
    if (n) memcpy(*out, buf, n);
    size_t at = n;
    for (int r = 1; r < d->size; r++) {
        PIECES(sizes[r], i, k) {
            if ((c = MPI_Recv(*out + at + i, (int)k, MPI_BYTE, r, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE)) != MPI_SUCCESS) {
                free(sizes);
                free(*out);
                *out = NULL;
                return mpi_fail(c, "MPI_Recv", e);
            }
        }
        at += sizes[r];
    }
    free(sizes);
    (*out)[total] = 0;
    *nout = total;
#endif
    return 0;
}

int rmu_dist_same(const rmu_dist *d, uint64_t hash, const char *what, rmu_err *e) {
    if (single(d)) return 0;
#ifdef RMU_MPI
    uint64_t h0 = hash;
    int c;
    if ((c = MPI_Bcast(&h0, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD)) != MPI_SUCCESS) return mpi_fail(c, "MPI_Bcast", e);
    int mine = h0 != hash ? d->rank : d->size, first = d->size;
    if ((c = MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD)) != MPI_SUCCESS)
        return mpi_fail(c, "MPI_Allreduce", e);
    if (first < d->size)
        return rmu_errf(e, "rank %d: %s differ from rank 0's (every rank must read the same inputs)", first, what);
#endif
    return 0;
}

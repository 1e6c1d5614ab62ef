/* dist.h - data parallelism over MPI ranks: who am I, sums, broadcasts, gathers to rank 0
 * and "all fail together". Prefix rmu_dist_.
 *
 * Built with MPI (make MPI=1, -DRMU_MPI) a process joins MPI_COMM_WORLD when a launcher
 * (mpirun, srun with PMI/PMIx) started it; otherwise, and in the default build, it is one
 * process of one rank and every call below is a no-op that leaves its buffers as they are
 * (a gather copies). A NULL rmu_dist means the same single process, so library code takes
 * `const rmu_dist *` and callers that know nothing of MPI pass NULL.
 *
 * Every function except rmu_dist_root/rmu_dist_split is collective: all ranks must call it,
 * in the same order. Anything that can fail on one rank only (a file, memory, a write on
 * rank 0) must be followed by rmu_dist_agree before the next collective, so a failing rank
 * never leaves the others waiting. MPI errors are returned (MPI_ERRORS_RETURN), not fatal.
 * rmu's own state is this struct; the communicator is MPI_COMM_WORLD. */
#ifndef RMU_DIST_H
#define RMU_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

typedef struct rmu_dist {
    int rank, size;
    int mpi; /* 1 when rmu_dist_init initialised MPI (rmu_dist_finish finalises it) */
} rmu_dist;

/* Joins the job the launcher started (see above), or makes a single process. In the default
 * build a process that a launcher started as one of several ranks is an error (each would
 * run the whole job and write the same outputs). */
int rmu_dist_init(rmu_dist *d, rmu_err *e);
/* Leaves MPI (collective when d->mpi). Safe on a zeroed or single-process d. */
void rmu_dist_finish(rmu_dist *d);
/* 1 when this process is rank 0 (d NULL: yes), the one that writes outputs. */
int rmu_dist_root(const rmu_dist *d);
/* 1 when MPI support was compiled in. */
int rmu_dist_available(void);

/* Every rank passes its own status rc (0 = ok) and e (its message when rc != 0). Returns 0
 * when every rc was 0; otherwise the rc of the lowest failing rank, and every rank's e holds
 * that rank's message (" (rank N)" appended when N > 0). */
int rmu_dist_agree(const rmu_dist *d, int rc, rmu_err *e);
/* Element-wise sums over ranks, in place, every rank getting the same bits. */
int rmu_dist_sum_f32(const rmu_dist *d, float *buf, size_t n, rmu_err *e);
int rmu_dist_sum_f64(const rmu_dist *d, double *buf, size_t n, rmu_err *e);
/* Rank 0's n bytes to every rank. */
int rmu_dist_bcast(const rmu_dist *d, void *buf, size_t n, rmu_err *e);
/* Rank 0 gets every rank's bytes back to back in rank order (*out malloc'd, NUL-terminated,
 * *nout bytes without the NUL); other ranks get *out = NULL. */
int rmu_dist_gather_bytes(const rmu_dist *d, const void *buf, size_t n, char **out, size_t *nout, rmu_err *e);
/* Checks that every rank computed the same hash of what it read or decided (data,
 * settings); otherwise every rank fails with "rank N: WHAT differs from rank 0's". */
int rmu_dist_same(const rmu_dist *d, uint64_t hash, const char *what, rmu_err *e);

/* Rank r's contiguous share [*lo, *hi) of n items: n/size each, the first n%size one more. */
void rmu_dist_split(long n, const rmu_dist *d, long *lo, long *hi);

#endif

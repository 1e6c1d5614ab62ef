/* clidist.h - the commands that run on several MPI ranks (eval, train, unlearn, mtbench)
 * share this: join the job, say how it is laid out, print an agreed error once. */
#ifndef RMU_CLI_CLIDIST_H
#define RMU_CLI_CLIDIST_H

#include "core/dist.h"

/* Joins the MPI job (src/core/dist.h); with more than one rank, rank 0 prints the layout,
 * e.g. "rmu eval: 2 ranks x 1 thread". Returns 0, or prints why not and returns 1. */
int cli_dist_begin(rmu_dist *d, const char *cmd);
/* Leaves the job; returns status. */
int cli_dist_end(rmu_dist *d, int status);
/* The status every rank leaves with after a step that may have failed on some ranks only
 * (each failing rank printed its own message): the lowest failing rank's status, or 0. */
int cli_dist_status(const rmu_dist *d, int status);
/* cli_fail on rank 0 only, for errors every rank holds after an agreement; returns status. */
int cli_dist_fail(const rmu_dist *d, const char *cmd, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif

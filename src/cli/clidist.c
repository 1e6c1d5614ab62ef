/* clidist.c - MPI ranks in the commands (clidist.h). */
#include "clidist.h"

#include <omp.h>
#include <stdarg.h>
#include <stdio.h>

#include "cli.h"

int cli_dist_begin(rmu_dist *d, const char *cmd) {
    rmu_err e;
    if (rmu_dist_init(d, &e)) return cli_fail(cmd, 1, "%s", e.msg);
    if (d->size > 1 && d->rank == 0) {
        int t = omp_get_max_threads();
        fprintf(stderr, "rmu %s: %d ranks x %d thread%s\n", cmd, d->size, t, t == 1 ? "" : "s");
    }
    return 0;
}

int cli_dist_end(rmu_dist *d, int status) {
    rmu_dist_finish(d);
    return status;
}

int cli_dist_status(const rmu_dist *d, int status) {
    rmu_err e = {""};
    return rmu_dist_agree(d, status, &e);
}

int cli_dist_fail(const rmu_dist *d, const char *cmd, int status, const char *fmt, ...) {
    if (!rmu_dist_root(d)) return status;
    va_list ap;
    va_start(ap, fmt);
    cli_vfail(cmd, status, fmt, ap);
    va_end(ap);
    return status;
}

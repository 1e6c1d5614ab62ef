#include "util.h"

#include <string.h>
#include <strings.h>
#include <time.h>

double rmu_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

double rmu_cpu_s(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }
double rmu_thread_cpu_s(void) { return clock_s(CLOCK_THREAD_CPUTIME_ID); }

double rmu_wall_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int rmu_ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcasecmp(s + a - b, suffix);
}

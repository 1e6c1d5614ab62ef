/* util.h - small helpers every layer needs: a monotonic clock and string predicates. */
#ifndef RMU_UTIL_H
#define RMU_UTIL_H

/* Seconds on the monotonic clock (for durations only). */
double rmu_now_s(void);
/* Seconds since the Unix epoch (timestamps written to files, like Python's time.time()). */
double rmu_wall_s(void);
/* CPU seconds of the whole process (all threads) and of the calling thread: on a shared
 * machine, work per CPU-second says what code does while it runs, whatever else runs. */
double rmu_cpu_s(void);
double rmu_thread_cpu_s(void);
/* 1 when s ends with suffix, ignoring ASCII case (file extensions: ".JSONL" is ".jsonl"). */
int rmu_ends_with(const char *s, const char *suffix);

#endif

/* util.h - small helpers every layer needs: a monotonic clock and string predicates. */
#ifndef RMU_UTIL_H
#define RMU_UTIL_H

/* Seconds on the monotonic clock (for durations only). */
double rmu_now_s(void);
/* Seconds since the Unix epoch (timestamps written to files, like Python's time.time()). */
double rmu_wall_s(void);
/* 1 when s ends with suffix, ignoring ASCII case (file extensions: ".JSONL" is ".jsonl"). */
int rmu_ends_with(const char *s, const char *suffix);

#endif

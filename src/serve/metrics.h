/* metrics.h - the server's counters and their Prometheus text (GET /metrics): HTTP
 * requests by endpoint and status, time to first token, plus the engine's counters.
 * Prefix rmu_met_. */
#ifndef RMU_METRICS_H
#define RMU_METRICS_H

#include <pthread.h>

#include "serve/engine.h"

typedef enum rmu_met_route {
    RMU_RT_PAGE = 0,
    RMU_RT_HEALTH,
    RMU_RT_METRICS,
    RMU_RT_MODELS,
    RMU_RT_CHAT,
    RMU_RT_COMPLETIONS,
    RMU_RT_TOKENIZE,
    RMU_RT_DETOKENIZE,
    RMU_RT_OTHER, /* unknown paths */
    RMU_RT_COUNT,
} rmu_met_route;

#define RMU_MET_NCODES 11

typedef struct rmu_met {
    pthread_mutex_t mu;
    long long count[RMU_RT_COUNT][RMU_MET_NCODES];
    double ttft_sum;
    long long ttft_n;
    long long disconnects; /* clients gone before their answer was complete */
} rmu_met;

void rmu_met_init(rmu_met *m);
void rmu_met_free(rmu_met *m);
/* Path of a route ("/v1/chat/completions"), for labels and routing. */
const char *rmu_met_route_path(rmu_met_route r);
void rmu_met_count(rmu_met *m, rmu_met_route r, int status);
void rmu_met_ttft(rmu_met *m, double seconds);
void rmu_met_disconnect(rmu_met *m);
/* The exposition text (malloc'd; NULL when out of memory). st: the engine's counters, NULL
 * while the model loads. */
char *rmu_met_text(rmu_met *m, const rmu_eng_stats *st);

#endif

/* metrics.c - counters and Prometheus text exposition format 0.0.4 (see metrics.h). */
#include "serve/metrics.h"

#include <stddef.h>
#include <stdio.h>

#include "core/strbuf.h"

static const int CODES[RMU_MET_NCODES] = {200, 400, 401, 404, 405, 413, 429, 500, 503, 504, 0 /* other */};
static const char *const PATHS[RMU_RT_COUNT] = {"/",   "/health",   "/metrics",    "/v1/models", "/v1/chat/completions",
                                                 "/v1/completions", "/tokenize", "/detokenize", "other"};

void rmu_met_init(rmu_met *m) {
    *m = (rmu_met){0};
    pthread_mutex_init(&m->mu, NULL);
}

void rmu_met_free(rmu_met *m) { pthread_mutex_destroy(&m->mu); }

const char *rmu_met_route_path(rmu_met_route r) { return r >= 0 && r < RMU_RT_COUNT ? PATHS[r] : "other"; }

void rmu_met_count(rmu_met *m, rmu_met_route r, int status) {
    int k = RMU_MET_NCODES - 1;
    for (int i = 0; i < RMU_MET_NCODES - 1; i++)
        if (CODES[i] == status) k = i;
    if (r < 0 || r >= RMU_RT_COUNT) r = RMU_RT_OTHER;
    pthread_mutex_lock(&m->mu);
    m->count[r][k]++;
    pthread_mutex_unlock(&m->mu);
}

void rmu_met_ttft(rmu_met *m, double seconds) {
    pthread_mutex_lock(&m->mu);
    m->ttft_sum += seconds;
    m->ttft_n++;
    pthread_mutex_unlock(&m->mu);
}

void rmu_met_disconnect(rmu_met *m) {
    pthread_mutex_lock(&m->mu);
    m->disconnects++;
    pthread_mutex_unlock(&m->mu);
}

static void metric(rmu_sb *b, const char *name, const char *type, const char *help) {
    rmu_sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

char *rmu_met_text(rmu_met *m, const rmu_eng_stats *st) {
    rmu_sb b = {0};
    pthread_mutex_lock(&m->mu);
    metric(&b, "rmu_http_requests_total", "counter", "HTTP requests by endpoint and status code.");
    for (int r = 0; r < RMU_RT_COUNT; r++)
        for (int k = 0; k < RMU_MET_NCODES; k++)
            if (m->count[r][k]) {
                char code[8] = "other";
                if (CODES[k]) snprintf(code, sizeof code, "%d", CODES[k]);
                rmu_sb_printf(&b, "rmu_http_requests_total{endpoint=\"%s\",code=\"%s\"} %lld\n", PATHS[r], code,
                              m->count[r][k]);
            }
    metric(&b, "rmu_time_to_first_token_seconds", "summary", "From submission to the first generated token.");
    rmu_sb_printf(&b, "rmu_time_to_first_token_seconds_sum %.6f\nrmu_time_to_first_token_seconds_count %lld\n",
                  m->ttft_sum, m->ttft_n);
    metric(&b, "rmu_client_disconnects_total", "counter", "Clients gone before their answer was complete.");
    rmu_sb_printf(&b, "rmu_client_disconnects_total %lld\n", m->disconnects);
    pthread_mutex_unlock(&m->mu);
    metric(&b, "rmu_model_loaded", "gauge", "1 once the model is loaded and requests are served.");
    rmu_sb_printf(&b, "rmu_model_loaded %d\n", st != NULL);
    if (st) {
        static const struct {
            const char *name, *type, *help;
            size_t off;
        } C[] = {
#define F(f) offsetof(rmu_eng_stats, f)
            {"rmu_requests_total", "counter", "Generation requests accepted by the engine.", F(requests)},
            {"rmu_sequences_total", "counter", "Sequences (choices) finished.", F(seqs_done)},
            {"rmu_prompt_tokens_total", "counter", "Prompt tokens fed through the model.", F(prompt_tokens)},
            {"rmu_prompt_tokens_cached_total", "counter", "Prompt tokens reused from a KV cache.", F(reused_tokens)},
            {"rmu_generation_tokens_total", "counter", "Tokens generated.", F(gen_tokens)},
            {"rmu_forward_steps_total", "counter", "Batched forward passes.", F(steps)},
            {"rmu_forward_rows_total", "counter", "Token rows in all forward passes.", F(rows)},
            {"rmu_sequences_aborted_total", "counter", "Sequences cancelled (client gone, shutdown).", F(aborted)},
            {"rmu_requests_timed_out_total", "counter", "Sequences stopped by the per-request time limit.", F(timed_out)},
#undef F
        };
        for (size_t i = 0; i < sizeof C / sizeof C[0]; i++) {
            metric(&b, C[i].name, C[i].type, C[i].help);
            rmu_sb_printf(&b, "%s %lld\n", C[i].name, *(const long long *)((const char *)st + C[i].off));
        }
        metric(&b, "rmu_queue_depth", "gauge", "Sequences waiting for a slot.");
        rmu_sb_printf(&b, "rmu_queue_depth %d\n", st->queued);
        metric(&b, "rmu_active_slots", "gauge", "Slots running a sequence.");
        rmu_sb_printf(&b, "rmu_active_slots %d\n", st->active);
        metric(&b, "rmu_slots", "gauge", "Slots (--parallel).");
        rmu_sb_printf(&b, "rmu_slots %d\n", st->parallel);
        metric(&b, "rmu_generation_tokens_per_second", "gauge", "Tokens generated per second, last few seconds.");
        rmu_sb_printf(&b, "rmu_generation_tokens_per_second %.3f\n", st->tok_per_s);
        metric(&b, "rmu_forward_seconds_total", "counter", "Seconds spent in forward passes.");
        rmu_sb_printf(&b, "rmu_forward_seconds_total %.6f\n", st->busy_s);
    }
    return rmu_sb_take(&b);
}

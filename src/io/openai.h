/* openai.h - a client for OpenAI-compatible chat-completions servers (OpenAI, vLLM,
 * llama-server, `rmu serve`), on libcurl. Prefix rmu_oai_. One client per thread.
 *
 * Failures that waiting can cure are retried with exponential backoff (first delay
 * backoff_s, doubled each time up to 60 s, +-25% jitter, or the server's Retry-After):
 * HTTP 408, 429, 5xx, timeouts, refused or dropped connections, and a 200 whose body is not
 * a chat completion. Everything else fails at once as permanent: 401/403 (the key), 404
 * (the URL or the model name), other 4xx (the request) — with the server's own message. */
#ifndef RMU_OPENAI_H
#define RMU_OPENAI_H

#include <stdint.h>

#include "core/err.h"

typedef struct rmu_oai_client {
    void *curl;             /* CURL easy handle (reused: keeps the connection alive) */
    char url[2048];         /* the chat-completions endpoint */
    char *auth;             /* "Authorization: Bearer KEY", or NULL */
    long timeout_s;         /* per attempt (default 300) */
    int max_retries;        /* attempts after the first (default 8) */
    double backoff_s;       /* first delay (default 2) */
    const volatile int *cancel; /* optional: nonzero stops retrying at once */
    uint64_t rng;           /* jitter */
} rmu_oai_client;

/* base_url: e.g. "https://api.openai.com/v1" or "http://127.0.0.1:8080/v1"; a URL that
 * already ends in /chat/completions is used as is. api_key may be NULL or "". */
int rmu_oai_init(rmu_oai_client *c, const char *base_url, const char *api_key, rmu_err *e);
void rmu_oai_free(rmu_oai_client *c);

/* One chat completion: [system (when non-empty), user] at the given temperature and
 * max_tokens, n = 1. Returns the reply's message content (malloc'd) or NULL with e filled;
 * *permanent (may be NULL) is 1 when retrying cannot help. */
char *rmu_oai_chat(rmu_oai_client *c, const char *model, const char *system, const char *user, double temperature,
                   int max_tokens, int *permanent, rmu_err *e);

#endif

/* http.h - the HTTP side of `rmu serve` on libmicrohttpd: routing, API-key check, body
 * and connection limits, JSON replies, Server-Sent Events streams, the built-in chat page,
 * /health, /metrics. One thread per connection; a client that goes away is noticed within
 * ~50 ms and its sequences cancelled. Prefix rmu_http_.
 *
 * The server state is an rmu_srv the caller owns. The listener starts before the model is
 * loaded (GET /health answers 503 meanwhile); rmu_http_ready hands it the engine. */
#ifndef RMU_HTTP_H
#define RMU_HTTP_H

#include <pthread.h>
#include <stddef.h>

#include "core/err.h"
#include "serve/engine.h"
#include "serve/metrics.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

typedef struct rmu_http_opts {
    const char *host;      /* address to bind: "127.0.0.1", "::1", "0.0.0.0", a name */
    int port;              /* 0: any free port (see rmu_http_port) */
    const char *api_key;   /* NULL or "": no key needed */
    size_t max_body;       /* request body limit in bytes (413 beyond) */
    int idle_timeout_s;    /* a connection with no traffic for this long is closed */
    int max_connections;
} rmu_http_opts;

/* What requests need once the model is loaded (all must outlive the server). */
typedef struct rmu_http_model {
    rmu_eng *eng;
    const rmu_tokenizer *tok;
    rmu_chat_kind tmpl;
    const char *name;      /* the model id in responses and /v1/models */
    int ctx, vocab;
} rmu_http_model;

typedef struct rmu_srv {
    struct MHD_Daemon *d;
    rmu_http_opts o;
    pthread_mutex_t mu;    /* ready, model, closing, counter, inflight */
    pthread_cond_t idle;   /* inflight reached 0 */
    int ready, closing;
    int inflight;          /* generation replies not yet sent in full */
    rmu_http_model model;
    unsigned long long counter; /* request ids and default seeds */
    long long started;     /* unix seconds */
    rmu_met met;
} rmu_srv;

/* Binds and starts serving (GET /health answers 503 until rmu_http_ready). */
int rmu_http_start(rmu_srv *s, const rmu_http_opts *o, rmu_err *e);
/* The bound port (the one picked when opts.port was 0). */
int rmu_http_port(const rmu_srv *s);
void rmu_http_ready(rmu_srv *s, const rmu_http_model *m);
/* Stops accepting connections; requests in flight go on. New requests on open
 * connections get 503. */
void rmu_http_quiesce(rmu_srv *s);
/* Waits up to wait_s seconds for generation replies still being sent (their sequences
 * have ended: drain the engine first), then closes every connection and frees the server. */
void rmu_http_stop(rmu_srv *s, double wait_s);

#endif

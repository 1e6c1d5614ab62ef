/* http.c - libmicrohttpd glue, routing, auth, limits, SSE (see http.h). */
#include "serve/http.h"

#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/rng.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "serve/api.h"
#include "serve/page_html.h" /* generated from src/serve/page.html by the Makefile */

#define WAIT_SLICE_S 0.05 /* how often a waiting connection checks that its client is there */

typedef struct route {
    const char *path;
    const char *method;
    rmu_met_route id;
    int auth;   /* needs the API key */
    int loaded; /* needs the model */
} route;

static const route ROUTES[] = {
    {"/", "GET", RMU_RT_PAGE, 0, 0},
    {"/health", "GET", RMU_RT_HEALTH, 0, 0},
    {"/metrics", "GET", RMU_RT_METRICS, 0, 0},
    {"/v1/models", "GET", RMU_RT_MODELS, 1, 1},
    {"/v1/chat/completions", "POST", RMU_RT_CHAT, 1, 1},
    {"/v1/completions", "POST", RMU_RT_COMPLETIONS, 1, 1},
    {"/tokenize", "POST", RMU_RT_TOKENIZE, 1, 1},
    {"/detokenize", "POST", RMU_RT_DETOKENIZE, 1, 1},
};

/* Per request (MHD's con_cls). */
typedef struct conn {
    const route *rt;
    rmu_sb body;
    int too_large;
    size_t dropped;  /* body bytes read past the limit */
} conn;

/* ---- replies */

static enum MHD_Result send_buf(rmu_srv *s, struct MHD_Connection *c, rmu_met_route rt, int status, char *buf,
                                size_t n, const char *ctype) {
    struct MHD_Response *r = MHD_create_response_from_buffer(n, buf, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(buf);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (status == 401) MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (status == 405) {
        const char *allow = "GET";
        for (size_t i = 0; i < sizeof ROUTES / sizeof ROUTES[0]; i++)
            if (ROUTES[i].id == rt) allow = ROUTES[i].method;
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    }
    if (status == 429 || status == 503) MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    enum MHD_Result res = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    rmu_met_count(&s->met, rt, status);
    return res;
}

/* Sends j (taking it). */
static enum MHD_Result send_json(rmu_srv *s, struct MHD_Connection *c, rmu_met_route rt, int status, json_t *j) {
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) return MHD_NO;
    return send_buf(s, c, rt, status, text, strlen(text), "application/json");
}

static enum MHD_Result send_err(rmu_srv *s, struct MHD_Connection *c, rmu_met_route rt, const rmu_api_err *err) {
    return send_json(s, c, rt, err->status, rmu_api_error_json(err));
}

static enum MHD_Result send_errf(rmu_srv *s, struct MHD_Connection *c, rmu_met_route rt, int status, const char *type,
                                 const char *code, const char *msg) {
    rmu_api_err err;
    rmu_api_errf(&err, status, type, code, NULL, "%s", msg);
    return send_err(s, c, rt, &err);
}

/* ---- helpers */

/* Compares the secret with what the client sent in time that depends only on the
 * secret's length. */
static int key_matches(const char *want, const char *got) {
    size_t lw = strlen(want), lg = strlen(got);
    volatile unsigned char d = lw != lg;
    for (size_t i = 0; i < lw; i++) d |= (unsigned char)want[i] ^ (unsigned char)(i < lg ? got[i] : 0);
    return d == 0;
}

static int authorized(rmu_srv *s, struct MHD_Connection *c) {
    if (!s->o.api_key || !*s->o.api_key) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h) return 0;
    while (*h == ' ') h++;
    if (strncasecmp(h, "Bearer ", 7)) return 0;
    h += 7;
    while (*h == ' ') h++;
    return key_matches(s->o.api_key, h);
}

/* 1 when the client has closed or reset its side of the connection. */
static int client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 1;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static int model_snapshot(rmu_srv *s, rmu_http_model *m, int *closing) {
    pthread_mutex_lock(&s->mu);
    int ready = s->ready;
    *m = s->model;
    *closing = s->closing;
    pthread_mutex_unlock(&s->mu);
    return ready;
}

static unsigned long long next_id(rmu_srv *s) {
    pthread_mutex_lock(&s->mu);
    unsigned long long k = ++s->counter;
    pthread_mutex_unlock(&s->mu);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return rmu_mix64(k ^ rmu_mix64((unsigned long long)ts.tv_sec * 1000000000ull + ts.tv_nsec));
}

/* ---- simple endpoints */

static enum MHD_Result do_health(rmu_srv *s, struct MHD_Connection *c) {
    rmu_http_model m;
    int closing, ready = model_snapshot(s, &m, &closing);
    const char *st = closing ? "shutting down" : ready ? "ok" : "loading";
    return send_json(s, c, RMU_RT_HEALTH, ready && !closing ? 200 : 503, json_pack("{s:s}", "status", st));
}

static enum MHD_Result do_metrics(rmu_srv *s, struct MHD_Connection *c) {
    rmu_http_model m;
    int closing;
    rmu_eng_stats st;
    int ready = model_snapshot(s, &m, &closing);
    if (ready) rmu_eng_get_stats(m.eng, &st);
    rmu_met_count(&s->met, RMU_RT_METRICS, 200); /* counted before the text so it includes itself */
    char *text = rmu_met_text(&s->met, ready ? &st : NULL);
    if (!text) return MHD_NO;
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
    enum MHD_Result res = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return res;
}

static enum MHD_Result do_page(rmu_srv *s, struct MHD_Connection *c) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(rmu_page_html_len, (void *)rmu_page_html, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
    MHD_add_response_header(r, "Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                                          "script-src 'self' 'unsafe-inline'");
    enum MHD_Result res = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    rmu_met_count(&s->met, RMU_RT_PAGE, 200);
    return res;
}

static enum MHD_Result do_models(rmu_srv *s, struct MHD_Connection *c, const rmu_http_model *m) {
    json_t *j = json_pack("{s:s, s:[{s:s, s:s, s:I, s:s, s:i}]}", "object", "list", "data", "id", m->name, "object",
                          "model", "created", (json_int_t)s->started, "owned_by", "rmu", "max_model_len", m->ctx);
    return send_json(s, c, RMU_RT_MODELS, 200, j);
}

static enum MHD_Result do_tokenize(rmu_srv *s, struct MHD_Connection *c, const rmu_http_model *m, rmu_api_req *r) {
    rmu_api_err err;
    if (rmu_api_encode(r, m->tok, m->tmpl, m->vocab, m->ctx, &err)) return send_err(s, c, RMU_RT_TOKENIZE, &err);
    json_t *ids = json_array();
    for (int i = 0; i < r->prompts[0].n; i++) json_array_append_new(ids, json_integer(r->prompts[0].ids[i]));
    return send_json(s, c, RMU_RT_TOKENIZE, 200,
                     json_pack("{s:o, s:i, s:i}", "tokens", ids, "count", r->prompts[0].n, "max_model_len", m->ctx));
}

static enum MHD_Result do_detokenize(rmu_srv *s, struct MHD_Connection *c, const rmu_http_model *m, rmu_api_req *r) {
    rmu_api_err err;
    rmu_err e;
    if (rmu_api_encode(r, m->tok, m->tmpl, m->vocab, m->ctx, &err)) return send_err(s, c, RMU_RT_DETOKENIZE, &err);
    char *text = rmu_tok_decode(m->tok, r->prompts[0].ids, r->prompts[0].n, 1, &e);
    if (!text) return send_errf(s, c, RMU_RT_DETOKENIZE, 400, "invalid_request_error", NULL, e.msg);
    json_t *js = json_string(text);
    free(text);
    if (!js) js = json_string("\xef\xbf\xbd"); /* ids that decode to broken UTF-8 */
    return send_json(s, c, RMU_RT_DETOKENIZE, 200, json_pack("{s:o}", "prompt", js));
}

/* ---- generation */

/* A generation request after submission: what both the blocking and the streaming reply
 * need. */
typedef struct gen {
    rmu_srv *s;
    rmu_api_req api;
    rmu_api_resp resp;
    rmu_eng_req *req;
    int nseq;
    rmu_met_route rt;
    char id[48];
    struct MHD_Connection *conn;
    /* streaming: per sequence what was sent */
    size_t *sent_text;
    int *sent_lps, *state; /* state: 0 nothing sent, 1 started, 2 finished */
    int ttft_done;
    rmu_sb out;            /* bytes to send */
    size_t out_off;
    int ended;             /* [DONE] queued */
} gen;

static void gen_free(gen *g) {
    rmu_srv *s = g->s;
    pthread_mutex_lock(&s->mu);
    if (--s->inflight == 0) pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
    if (g->req) rmu_eng_req_release(g->req);
    rmu_api_req_free(&g->api);
    rmu_sb_free(&g->out);
    free(g->sent_text), free(g->sent_lps), free(g->state);
    free(g);
}

/* Outputs of all sequences (request locked). */
static const rmu_eng_seq_out **outs_of(gen *g, const rmu_eng_seq_out **o) {
    for (int i = 0; i < g->nseq; i++) o[i] = rmu_eng_req_out(g->req, i);
    return o;
}

/* The first finished-with-error sequence, if any (request locked). */
static const rmu_eng_seq_out *first_error(gen *g) {
    for (int i = 0; i < g->nseq; i++) {
        const rmu_eng_seq_out *o = rmu_eng_req_out(g->req, i);
        if (o->finish == RMU_FINISH_ERROR) return o;
    }
    return NULL;
}

static void note_ttft(gen *g) {
    if (g->ttft_done) return;
    for (int i = 0; i < g->nseq; i++) {
        const rmu_eng_seq_out *o = rmu_eng_req_out(g->req, i);
        if (o->t_first >= 0) {
            rmu_met_ttft(&g->s->met, o->t_first);
            g->ttft_done = 1;
            return;
        }
    }
}

static void sse_json(gen *g, json_t *j) {
    char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!t) return;
    rmu_sb_puts(&g->out, "data: ");
    rmu_sb_puts(&g->out, t);
    rmu_sb_puts(&g->out, "\n\n");
    free(t);
}

/* Turns what the engine produced since the last call into SSE events (request locked). */
static void sse_collect(gen *g) {
    int all_done = 1;
    for (int i = 0; i < g->nseq; i++) {
        const rmu_eng_seq_out *o = rmu_eng_req_out(g->req, i);
        if (g->state[i] == 2) continue;
        all_done = 0;
        if (o->finish == RMU_FINISH_ERROR) {
            rmu_api_err err;
            rmu_api_errf(&err, o->err_status ? o->err_status : 500, o->err_status == 503 ? "server_busy" : "server_error",
                         NULL, NULL, "%s", o->err);
            sse_json(g, rmu_api_error_json(&err));
            g->state[i] = 2;
            continue;
        }
        int echo_ready = !g->api.echo || o->finish || !g->api.logprobs || o->nplps == o->n_prompt;
        if (g->state[i] == 0 && !echo_ready) continue; /* the echo waits for the prompt's logprobs */
        size_t nt = o->text.n - g->sent_text[i];
        int nl = o->nlps - g->sent_lps[i];
        if (g->state[i] == 0 || nt || nl || o->finish) {
            int first = g->state[i] == 0;
            const rmu_eng_seq_out *echo = first && g->api.echo && g->api.kind == RMU_API_COMPLETIONS ? o : NULL;
            if (nt || nl || first || !o->finish) /* content, then a separate finish chunk */
                sse_json(g, rmu_api_chunk(&g->resp, i, first, o->text.p ? o->text.p + g->sent_text[i] : "", nt,
                                          o->lps + g->sent_lps[i], nl, echo, RMU_FINISH_NONE));
            if (o->finish) {
                sse_json(g, rmu_api_chunk(&g->resp, i, 0, "", 0, NULL, 0, NULL, o->finish));
                g->state[i] = 2;
            } else {
                g->state[i] = 1;
            }
            g->sent_text[i] = o->text.n;
            g->sent_lps[i] = o->nlps;
        }
    }
    if (all_done && !g->ended) {
        if (g->api.include_usage && !first_error(g)) {
            const rmu_eng_seq_out *o[g->nseq];
            sse_json(g, rmu_api_usage_chunk(&g->resp, outs_of(g, o)));
        }
        rmu_sb_puts(&g->out, "data: [DONE]\n\n");
        g->ended = 1;
    }
}

static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    gen *g = cls;
    (void)pos;
    for (;;) {
        if (g->out_off < g->out.n) {
            size_t n = g->out.n - g->out_off < max ? g->out.n - g->out_off : max;
            memcpy(buf, g->out.p + g->out_off, n);
            g->out_off += n;
            return (ssize_t)n;
        }
        if (g->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        if (g->out.oom) return MHD_CONTENT_READER_END_WITH_ERROR;
        rmu_sb_truncate(&g->out, 0);
        g->out_off = 0;
        rmu_eng_req_lock(g->req);
        sse_collect(g);
        note_ttft(g);
        if (g->out.n == 0) rmu_eng_req_wait(g->req, WAIT_SLICE_S);
        rmu_eng_req_unlock(g->req);
        if (g->out.n == 0 && client_gone(g->conn)) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
}

static void sse_free(void *cls) {
    gen *g = cls;
    if (!g->ended || g->out_off < g->out.n) rmu_met_disconnect(&g->s->met); /* closed before the end */
    gen_free(g);
}

/* Waits for the whole answer, watching the client. */
static enum MHD_Result reply_blocking(gen *g) {
    rmu_srv *s = g->s;
    rmu_eng_req_lock(g->req);
    while (!rmu_eng_req_done(g->req)) {
        rmu_eng_req_wait(g->req, WAIT_SLICE_S);
        note_ttft(g);
        if (!rmu_eng_req_done(g->req) && client_gone(g->conn)) {
            rmu_eng_req_unlock(g->req);
            rmu_met_disconnect(&s->met);
            rmu_met_count(&s->met, g->rt, 0);
            gen_free(g);
            return MHD_NO; /* nobody to answer: close */
        }
    }
    note_ttft(g);
    const rmu_eng_seq_out *bad = first_error(g);
    enum MHD_Result res;
    if (bad) {
        rmu_api_err err;
        int st = bad->err_status ? bad->err_status : 500;
        rmu_api_errf(&err, st, st == 503 ? "server_busy" : "server_error", NULL, NULL, "%s", bad->err);
        rmu_eng_req_unlock(g->req);
        res = send_err(s, g->conn, g->rt, &err);
    } else {
        const rmu_eng_seq_out *o[g->nseq];
        json_t *j = rmu_api_response(&g->resp, outs_of(g, o));
        rmu_eng_req_unlock(g->req);
        res = send_json(s, g->conn, g->rt, 200, j);
    }
    gen_free(g);
    return res;
}

static enum MHD_Result do_generate(rmu_srv *s, struct MHD_Connection *c, const rmu_http_model *m, rmu_met_route rt,
                                   rmu_api_req *api) {
    rmu_api_err err;
    if (rmu_api_encode(api, m->tok, m->tmpl, m->vocab, m->ctx, &err)) {
        rmu_api_req_free(api);
        return send_err(s, c, rt, &err);
    }
    gen *g = calloc(1, sizeof *g);
    int nseq = api->nprompts * api->n;
    rmu_eng_params *p = calloc(nseq, sizeof *p);
    if (g) {
        g->sent_text = calloc(nseq, sizeof *g->sent_text);
        g->sent_lps = calloc(nseq, sizeof *g->sent_lps);
        g->state = calloc(nseq, sizeof *g->state);
    }
    if (!g || !p || !g->sent_text || !g->sent_lps || !g->state) {
        rmu_api_req_free(api);
        free(p);
        if (g) free(g->sent_text), free(g->sent_lps), free(g->state), free(g);
        return send_errf(s, c, rt, 500, "server_error", NULL, "out of memory");
    }
    g->s = s, g->api = *api, g->rt = rt, g->conn = c, g->nseq = nseq;
    pthread_mutex_lock(&s->mu);
    s->inflight++;
    pthread_mutex_unlock(&s->mu);
    memset(api, 0, sizeof *api); /* now g's */
    unsigned long long id = next_id(s);
    snprintf(g->id, sizeof g->id, "%s-%016llx", rt == RMU_RT_CHAT ? "chatcmpl" : "cmpl", id);
    g->resp = (rmu_api_resp){&g->api, m->tok, g->id, m->name, (long long)time(NULL)};
    for (int i = 0; i < g->api.nprompts; i++)
        for (int j = 0; j < g->api.n; j++) rmu_api_seq_params(&g->api, i, j, rmu_mix64(id), &p[i * g->api.n + j]);
    int busy;
    rmu_err e;
    g->req = rmu_eng_submit(m->eng, p, nseq, &busy, &e);
    free(p);
    if (!g->req) {
        gen_free(g);
        if (busy == 1) return send_errf(s, c, rt, 429, "rate_limit_exceeded", "queue_full", e.msg);
        if (busy == 2) return send_errf(s, c, rt, 503, "server_busy", "shutting_down", e.msg);
        return send_errf(s, c, rt, 400, "invalid_request_error", NULL, e.msg);
    }
    if (!g->api.stream) return reply_blocking(g);
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_reader, g, sse_free);
    if (!r) {
        gen_free(g);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    enum MHD_Result res = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    rmu_met_count(&s->met, rt, 200);
    return res;
}

/* ---- dispatch */

static const route *find_route(const char *url) {
    for (size_t i = 0; i < sizeof ROUTES / sizeof ROUTES[0]; i++)
        if (!strcmp(url, ROUTES[i].path)) return &ROUTES[i];
    return NULL;
}

/* The final call for a request whose body (if any) is in cn->body. */
static enum MHD_Result dispatch(rmu_srv *s, struct MHD_Connection *c, conn *cn) {
    const route *rt = cn->rt;
    rmu_http_model m;
    int closing, ready = model_snapshot(s, &m, &closing);
    if (rt->id == RMU_RT_HEALTH) return do_health(s, c);
    if (rt->id == RMU_RT_METRICS) return do_metrics(s, c);
    if (rt->id == RMU_RT_PAGE) return do_page(s, c);
    if (closing) return send_errf(s, c, rt->id, 503, "server_busy", "shutting_down", "the server is shutting down");
    if (!ready) return send_errf(s, c, rt->id, 503, "server_busy", "model_loading", "the model is still loading");
    if (rt->id == RMU_RT_MODELS) return do_models(s, c, &m);
    static const rmu_api_kind kinds[RMU_RT_COUNT] = {[RMU_RT_CHAT] = RMU_API_CHAT,
                                                      [RMU_RT_COMPLETIONS] = RMU_API_COMPLETIONS,
                                                      [RMU_RT_TOKENIZE] = RMU_API_TOKENIZE,
                                                      [RMU_RT_DETOKENIZE] = RMU_API_DETOKENIZE};
    rmu_api_req api;
    rmu_api_err err;
    if (rmu_api_parse(&api, kinds[rt->id], cn->body.p ? cn->body.p : "", cn->body.n, &err)) {
        rmu_api_req_free(&api);
        return send_err(s, c, rt->id, &err);
    }
    enum MHD_Result res;
    if (rt->id == RMU_RT_TOKENIZE) res = do_tokenize(s, c, &m, &api);
    else if (rt->id == RMU_RT_DETOKENIZE) res = do_detokenize(s, c, &m, &api);
    else return do_generate(s, c, &m, rt->id, &api); /* takes api */
    rmu_api_req_free(&api);
    return res;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    rmu_srv *s = cls;
    conn *cn = *con_cls;
    (void)version;
    if (!cn) { /* headers only: reject early what needs no body */
        const route *rt = find_route(url);
        if (!rt) return send_errf(s, c, RMU_RT_OTHER, 404, "invalid_request_error", "not_found", "no such endpoint");
        if (strcmp(method, rt->method))
            return send_errf(s, c, rt->id, 405, "invalid_request_error", "method_not_allowed",
                             !strcmp(rt->method, "GET") ? "this endpoint takes GET" : "this endpoint takes POST");
        if (rt->auth && !authorized(s, c))
            return send_errf(s, c, rt->id, 401, "invalid_request_error", "invalid_api_key",
                             "Incorrect or missing API key: send the header \"Authorization: Bearer KEY\"");
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->o.max_body) {
            char msg[128];
            snprintf(msg, sizeof msg, "the request body is larger than the limit of %zu bytes", s->o.max_body);
            return send_errf(s, c, rt->id, 413, "invalid_request_error", "request_too_large", msg);
        }
        if (!(cn = calloc(1, sizeof *cn))) return MHD_NO;
        cn->rt = rt;
        *con_cls = cn;
        return MHD_YES;
    }
    if (*upload_data_size) { /* a chunk of the body */
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (cn->too_large || cn->body.n + n > s->o.max_body) {
            /* no Content-Length (chunked): read and drop a while, then give up on the client */
            cn->too_large = 1;
            cn->dropped += n;
            return cn->dropped > 4 * s->o.max_body + (1 << 20) ? MHD_NO : MHD_YES;
        }
        return rmu_sb_add(&cn->body, upload_data, n) ? MHD_NO : MHD_YES;
    }
    if (cn->too_large) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request body is larger than the limit of %zu bytes", s->o.max_body);
        return send_errf(s, c, cn->rt->id, 413, "invalid_request_error", "request_too_large", msg);
    }
    return dispatch(s, c, cn);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c, (void)toe;
    conn *cn = *con_cls;
    if (!cn) return;
    rmu_sb_free(&cn->body);
    free(cn);
    *con_cls = NULL;
}

/* ---- life cycle */

int rmu_http_start(rmu_srv *s, const rmu_http_opts *o, rmu_err *e) {
    memset(s, 0, sizeof *s);
    s->o = *o;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->idle, NULL);
    rmu_met_init(&s->met);
    s->started = (long long)time(NULL);
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
    int gr = getaddrinfo(o->host, port, &hints, &ai);
    if (gr || !ai) {
        rmu_errf(e, "host: cannot resolve '%s': %s", o->host, gai_strerror(gr));
        goto fail;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ITC;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    s->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->idle_timeout_s, MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned)o->max_connections, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->d) {
        rmu_errf(e, "cannot listen on %s port %d (in use, or not an address of this machine?)", o->host, o->port);
        goto fail;
    }
    return 0;
fail:
    rmu_met_free(&s->met);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->idle);
    return -1;
}

int rmu_http_port(const rmu_srv *s) {
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    return di ? di->port : -1;
}

void rmu_http_ready(rmu_srv *s, const rmu_http_model *m) {
    pthread_mutex_lock(&s->mu);
    s->model = *m;
    s->ready = 1;
    pthread_mutex_unlock(&s->mu);
}

void rmu_http_quiesce(rmu_srv *s) {
    pthread_mutex_lock(&s->mu);
    s->closing = 1;
    pthread_mutex_unlock(&s->mu);
    MHD_socket fd = MHD_quiesce_daemon(s->d);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

void rmu_http_stop(rmu_srv *s, double wait_s) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)wait_s;
    pthread_mutex_lock(&s->mu);
    while (s->inflight > 0 && pthread_cond_timedwait(&s->idle, &s->mu, &ts) == 0) {
    }
    pthread_mutex_unlock(&s->mu);
    if (s->d) MHD_stop_daemon(s->d);
    s->d = NULL;
    rmu_met_free(&s->met);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->idle);
}
